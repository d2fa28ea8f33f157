"""DrProbeHook: writes canary bookings through the platform and reads them back (DR drills)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import requests

from airflow.sdk import BaseHook
from chaos_engineering.hooks.http import connection_base_url

#: Where the endpoints live under the connection's URL, unless its extra says `"path"`.
DEFAULT_PATH = "/dr-probe"


@dataclass(frozen=True)
class Ack:
    """A write the platform acknowledged: the canary's id and the database instance that took it."""

    canary_id: int | str
    instance: str | None


class ProbeWriteFailed(RuntimeError):
    """The platform did not acknowledge a canary write (the reason is the message)."""


class DrProbeHook(BaseHook):
    """The booking platform's disaster-recovery probe, through an `http` connection.

    Contract (docs/RUNBOOK.md, "Disaster-recovery drill"): `POST {url}{path}/canaries` commits one
    synthetic booking the way real bookings are committed and answers 201 `{"id": ..., "instance":
    ...}` only once it is durable on the primary; `GET {url}{path}/canaries/{id}` answers 200 if
    the current primary holds it, 404 if not; anything else means "cannot tell now".

    Connection: `host` is the base URL; `password`, if set, is sent as a bearer token; extra
    `{"path": "/dr-probe", "timeout": 2, "verify": true}`. Nothing is retried here: the drill
    counts every failed write as the outage it is.
    """

    conn_name_attr = "dr_probe_conn_id"
    default_conn_name = "dr_probe_default"
    conn_type = "http"
    hook_name = "Disaster-recovery probe"

    def __init__(self, dr_probe_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.dr_probe_conn_id = dr_probe_conn_id

    @cached_property
    def _conn(self) -> Any:
        return self.get_connection(self.dr_probe_conn_id)

    @cached_property
    def url(self) -> str:
        path = "/" + str(self._conn.extra_dejson.get("path", DEFAULT_PATH)).strip("/")
        return connection_base_url(self._conn, "http://booking-api.booking:8080") + path + "/canaries"

    @cached_property
    def session(self) -> requests.Session:
        session = requests.Session()
        if self._conn.password:
            session.headers["Authorization"] = f"Bearer {self._conn.password}"
        session.verify = bool(self._conn.extra_dejson.get("verify", True))
        return session

    @property
    def timeout(self) -> float:
        return float(self._conn.extra_dejson.get("timeout", 2))

    def write(self) -> Ack:
        try:
            response = self.session.post(self.url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ProbeWriteFailed(f"{type(exc).__name__}") from exc
        if response.status_code not in (200, 201):
            raise ProbeWriteFailed(f"HTTP {response.status_code}: {_reason(response)}")
        try:
            body = response.json()
            return Ack(body["id"], body.get("instance"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ProbeWriteFailed(f"acknowledged without a canary id: {response.text[:200]!r}") from exc

    def present(self, canary_id: int | str) -> bool | None:
        """True: the primary holds it; False: it is missing; None: the platform cannot tell now."""
        try:
            response = self.session.get(f"{self.url}/{canary_id}", timeout=self.timeout)
        except requests.RequestException:
            return None
        return {200: True, 404: False}.get(response.status_code)


def _reason(response: requests.Response) -> str:
    try:
        return str(response.json().get("error") or response.reason)
    except ValueError:
        return response.reason or response.text[:200]
