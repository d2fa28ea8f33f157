"""AirflowApiHook: Airflow's own records of a run (human-in-the-loop answers), read through its REST
API; and the run's note, the one thing the DAG writes there."""

from __future__ import annotations

import datetime as dt
import json
import time
from functools import cached_property
from typing import Any
from urllib.parse import quote

import requests

from airflow.sdk import BaseHook
from chaos_engineering.hooks.http import connection_base_url

#: Connect and read timeouts of one request, and the total a call may take across its retries.
REQUEST_TIMEOUT_S = (3.0, 10.0)
TOTAL_DEADLINE_S = 30.0


class AirflowApiError(RuntimeError):
    """Airflow's REST API did not answer what we asked (the message says what and how to fix it)."""


class AirflowApiHook(BaseHook):
    """Reads what Airflow itself recorded about a run (human-in-the-loop answers, runs), which the
    inject step trusts instead of what tasks wrote; and, for the maintenance DAG only, the result
    a run kept in XCom while object storage was down (`xcom_value`), which is never used to decide
    an injection.

    A task cannot read another task's human-in-the-loop record through the execution API (its
    token is scoped to itself), so the inject step asks the api-server, as a user would.
    Connection (`http`): `host` is the api-server's URL; `login`/`password` of an account that may
    read DAG runs (Airflow's `viewer` role is enough; never an approver), exchanged for a token at
    `POST /auth/token`; or extra `{"token": "<JWT>"}` for a pre-issued token.
    """

    conn_name_attr = "airflow_api_conn_id"
    default_conn_name = "airflow_api_default"
    #: The account that writes run notes: it may edit DAG runs (Airflow's `user` role), so it is
    #: never the read-only account inject trusts for approvals, and never an approver.
    notes_conn_name = "airflow_api_notes"
    conn_type = "http"
    hook_name = "Airflow REST API (run records)"

    def __init__(self, airflow_api_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.airflow_api_conn_id = airflow_api_conn_id

    @cached_property
    def _connection(self) -> Any:
        return self.get_connection(self.airflow_api_conn_id)

    @cached_property
    def base_url(self) -> str:
        return connection_base_url(self._connection, "http://airflow-apiserver:8080")

    @cached_property
    def _session(self) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self._token()}"
        return session

    def _token(self) -> str:
        conn = self._connection
        token = (conn.extra_dejson or {}).get("token")
        if token:
            return str(token)
        if not conn.login or not conn.password:
            raise AirflowApiError(
                f"connection {self.airflow_api_conn_id!r} has neither a login and password nor extra.token: "
                "give it an Airflow account that may read DAG runs (the viewer role)"
            )
        response = self._call("POST", "/auth/token", json={"username": conn.login, "password": conn.password}, session=requests)
        token = response.json().get("access_token")
        if not token:
            raise AirflowApiError(f"{self.base_url}/auth/token answered no access_token for {conn.login!r}")
        return str(token)

    def _call(self, method: str, path: str, *, session: Any = None, **kwargs: Any) -> requests.Response:
        """One request, retried on connection errors and 5xx until TOTAL_DEADLINE_S; 4xx is final."""
        deadline = time.monotonic() + TOTAL_DEADLINE_S
        url = f"{self.base_url}{path}"
        session = session or self._session
        while True:
            try:
                response = session.request(method, url, timeout=REQUEST_TIMEOUT_S, **kwargs)
            except requests.RequestException as exc:
                problem = f"{method} {url}: {exc}"
            else:
                if response.status_code < 400:
                    return response
                problem = f"{method} {url} answered {response.status_code}: {response.text[:300]}"
                if response.status_code < 500:
                    raise AirflowApiError(problem)
            if time.monotonic() + 1 > deadline:
                raise AirflowApiError(f"{problem} (gave up after {TOTAL_DEADLINE_S:g} s)")
            time.sleep(1)

    def hitl_detail(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any] | None:
        """The human-in-the-loop record of a task's current try, or None when it has none (a task
        marked success or skipped without ever asking)."""
        path = f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances/{quote(task_id, safe='')}/{map_index}/hitlDetails"
        try:
            return self._call("GET", path).json()
        except AirflowApiError as exc:
            if " answered 404" in str(exc):
                return None
            raise

    def set_run_note(self, dag_id: str, run_id: str, note: str) -> None:
        """Replace the run's note (what the runs list and the run's page show)."""
        path = f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
        self._call("PATCH", path, params={"update_mask": "note"}, json={"note": note})

    def dag_runs(self, dag_id: str, *, run_after_gte: dt.datetime, states: tuple[str, ...] = ("success", "failed")) -> list[dict[str, Any]]:
        """The DAG's runs (`dag_run_id`, `run_after`, `state`, ...) from `run_after_gte` on, every page."""
        path = f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns"
        runs: list[dict[str, Any]] = []
        while True:
            params = {"run_after_gte": run_after_gte.isoformat(), "state": list(states), "order_by": "run_after", "limit": 100, "offset": len(runs)}
            page = self._call("GET", path, params=params).json()
            runs += page.get("dag_runs") or []
            if not page.get("dag_runs") or len(runs) >= int(page.get("total_entries") or 0):
                return runs

    def xcom_value(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """A task's XCom value as stored (plain JSON when the task pushed plain JSON), or None when
        it pushed nothing under `key`."""
        path = (
            f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
            f"/taskInstances/{quote(task_id, safe='')}/xcomEntries/{quote(key, safe='')}"
        )
        try:
            value = self._call("GET", path, params={"map_index": map_index}).json().get("value")
        except AirflowApiError as exc:
            if " answered 404" in str(exc):
                return None
            raise
        # The API answers the raw stored value: a JSON document as a string, or already parsed.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value
