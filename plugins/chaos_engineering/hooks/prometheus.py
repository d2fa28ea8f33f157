"""PrometheusHook: instant and range queries through an Airflow HTTP connection."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from typing import Any

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from airflow.sdk import BaseHook
from chaos_engineering.hooks.http import Deadline, DeadlineHTTPAdapter, connection_base_url, without_credentials

#: The total deadline of one query when neither the caller nor the connection gives one: the
#: shipped policy's `safety.query_timeout`. Callers holding the policy pass theirs.
DEFAULT_QUERY_TIMEOUT_S = 5.0
#: One try per query: a kill switch must notice a dead Prometheus at once.
NO_RETRIES = Retry(total=0)


class PrometheusQueryError(RuntimeError):
    """A query that could not be answered with one number: unreachable, too slow, rejected or ambiguous."""


class PrometheusHook(BaseHook):
    """Reads Prometheus through an `http` connection, with prometheus-api-client.

    Connection: `host` is the base URL (`http://prometheus:9090`, or a bare host with `schema`
    and `port`); `login`/`password` give basic auth; extra `{"headers": {...}, "verify": true,
    "timeout": 5}`. Each query has one total deadline, connect and the whole answer however
    slowly it trickles (`hooks.http.Deadline`, as for the Kubernetes client): `timeout` if given
    (the policy's `safety.query_timeout`), else the connection's extra `timeout`, else
    `DEFAULT_QUERY_TIMEOUT_S`. A kill switch must notice a dead Prometheus at once, so requests
    are not retried: a failed read is counted by the caller, never hidden by back-off.
    """

    conn_name_attr = "prometheus_conn_id"
    default_conn_name = "prometheus_default"
    conn_type = "http"
    hook_name = "Prometheus"

    def __init__(self, prometheus_conn_id: str = default_conn_name, timeout: float | None = None) -> None:
        super().__init__()
        self.prometheus_conn_id = prometheus_conn_id
        self._timeout = timeout

    @cached_property
    def _connection(self) -> Any:
        return self.get_connection(self.prometheus_conn_id)

    @cached_property
    def base_url(self) -> str:
        return connection_base_url(self._connection, "http://prometheus:9090")

    @cached_property
    def timeout(self) -> float:
        """The total deadline of one query, in seconds."""
        timeout = float(self._timeout or self._connection.extra_dejson.get("timeout", DEFAULT_QUERY_TIMEOUT_S))
        if not timeout > 0:
            raise ValueError(f"the query timeout of connection {self.prometheus_conn_id!r} must be positive, not {timeout!r}")
        return timeout

    @cached_property
    def session(self) -> requests.Session:
        """The HTTP session of every request (the client's too): an error answer raises."""
        session = requests.Session()
        session.verify = bool(self._connection.extra_dejson.get("verify", True))
        session.hooks["response"].append(_raise_error_answer)
        return session

    @cached_property
    def client(self) -> PrometheusConnect:
        conn = self._connection
        extra = conn.extra_dejson
        session = self.session
        client = PrometheusConnect(
            url=self.base_url,
            headers=extra.get("headers"),
            auth=(conn.login, conn.password) if conn.login else None,
            retry=NO_RETRIES,
            session=session,
            timeout=self.timeout,
        )
        # PrometheusConnect mounts a plain HTTPAdapter(max_retries=retry) on its URL: this one, at
        # the same prefix, replaces it.
        session.mount(client.url, DeadlineHTTPAdapter(max_retries=NO_RETRIES))
        return client

    def _call(self, what: str, path: str, promql: str, request: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`request(*args, **kwargs)` (one call of `self.client`) under the total deadline;
        PrometheusQueryError naming the query (if any), the URL (no credentials) and the deadline on any failure."""
        shown = f"{without_credentials(self.base_url)}/api/v1/{path}"
        asked = f": {promql}" if promql else ""
        with Deadline(self.timeout) as deadline:
            try:
                return request(*args, **kwargs)
            except requests.HTTPError as exc:  # Prometheus answered, with an error: say which
                response = exc.response
                try:
                    detail = response.json().get("error")
                except (ValueError, AttributeError):  # not Prometheus' JSON
                    detail = None
                detail = detail or " ".join(response.text.split())[:200] or "empty body"
                raise PrometheusQueryError(f"{what} failed at {shown}: HTTP {response.status_code}: {detail}{asked}") from exc
            except (OSError, PrometheusApiClientException, KeyError, TypeError) as exc:  # requests' errors are OSErrors
                if deadline.expired or deadline.passed:  # cut short, or urllib3's own timeout at the deadline
                    raise PrometheusQueryError(
                        f"{what}{f' {promql!r}' if promql else ''} at {shown}: no complete answer within the {self.timeout:g} s deadline"
                    ) from exc
                raise PrometheusQueryError(f"{what} failed at {shown}: {type(exc).__name__}: {exc}{asked}") from exc

    def query(self, promql: str, at: datetime | None = None) -> float | None:
        """The single value of an instant query; None when it returns no series (no data).

        Raises PrometheusQueryError when Prometheus cannot answer within the deadline, or the
        query returns several series (a threshold query must be aggregated to one number).
        """
        params = {"time": at.timestamp()} if at else None
        return single_value(promql, self._call("query", "query", promql, self.client.custom_query, promql, params=params))

    def query_range(self, promql: str, start: datetime, end: datetime, step: float) -> list[tuple[float, float]]:
        """(unix time, value) samples of a range query, for one series; [] when there is no data."""
        result = self._call(
            "range query", "query_range", promql, self.client.custom_query_range, promql, start_time=start, end_time=end, step=f"{step:g}"
        )
        if not result:
            return []
        if len(result) > 1:
            raise PrometheusQueryError(f"range query returned {len(result)} series, expected one: {promql}")
        return [(float(t), float(v)) for t, v in result[0]["values"]]

    def series(self, promql: str) -> list[dict[str, Any]]:
        """Every series of an instant query with its labels (e.g. the firing alerts)."""
        result = self._call("query", "query", promql, self.client.custom_query, promql)
        try:
            return [{"labels": r.get("metric", {}), "value": float(r["value"][1])} for r in result or []]
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise PrometheusQueryError(f"query did not return a vector ({type(exc).__name__}: {exc}): {promql}") from exc

    def started_at(self) -> float | None:
        """When this Prometheus process started (unix time), from its runtime information; None
        where the server does not say (a Prometheus-compatible store without that endpoint).
        Raises PrometheusQueryError when it cannot be reached."""
        path = "status/runtimeinfo"
        client = self.client

        def get() -> requests.Response | None:
            try:
                return self.session.get(f"{client.url}/api/v1/{path}", headers=client.headers, auth=client.auth, timeout=self.timeout)
            except requests.HTTPError as exc:
                if exc.response is not None and exc.response.status_code == 404:
                    return None  # not a Prometheus that tells
                raise

        answer = self._call("runtime information", path, "", get)
        if answer is None:
            return None
        try:
            started = answer.json()["data"]["startTime"]
        except (ValueError, KeyError, TypeError):
            return None
        return datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp() if isinstance(started, str) else None

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.query("vector(1)")
        except PrometheusQueryError as exc:
            return False, str(exc)
        return True, f"Prometheus answered at {without_credentials(self.base_url)}"


def _raise_error_answer(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """A response hook: an error answer raises `requests.HTTPError`, its body (Prometheus' `error`)
    read first, while the call's deadline still bounds the read."""
    if response.status_code >= 400:
        response.content  # read now: a read cut short by the deadline then fails the call like any other
        response.raise_for_status()


def single_value(promql: str, result: Any) -> float | None:
    """One number from a query result: a scalar, or a vector of exactly one sample."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        value = float(result[1])  # a scalar result: [time, "value"]
    elif not result:
        return None
    elif len(result) > 1:
        raise PrometheusQueryError(f"query returned {len(result)} series, expected one (aggregate it): {promql}")
    else:
        value = float(result[0]["value"][1])
    return value if math.isfinite(value) else None
