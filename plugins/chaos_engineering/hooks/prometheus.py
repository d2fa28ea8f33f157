"""PrometheusHook: instant and range queries through an Airflow HTTP connection."""

from __future__ import annotations

import math
from datetime import datetime
from functools import cached_property
from typing import Any

from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from airflow.sdk import BaseHook
from chaos_engineering.hooks.http import connection_base_url


class PrometheusQueryError(RuntimeError):
    """A query that could not be answered with one number: unreachable, rejected or ambiguous."""


class PrometheusHook(BaseHook):
    """Reads Prometheus through an `http` connection.

    Connection: `host` is the base URL (`http://prometheus:9090`, or a bare host with `schema`
    and `port`); `login`/`password` give basic auth; extra `{"headers": {...}, "verify": true,
    "timeout": 5}`. A kill switch must notice a dead Prometheus at once, so requests are not
    retried: a failed read is counted by the caller, never hidden by back-off.
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
    def base_url(self) -> str:
        return connection_base_url(self.get_connection(self.prometheus_conn_id), "http://prometheus:9090")

    @cached_property
    def client(self) -> PrometheusConnect:
        conn = self.get_connection(self.prometheus_conn_id)
        extra = conn.extra_dejson
        timeout = self._timeout or float(extra.get("timeout", 5))
        return PrometheusConnect(
            url=self.base_url,
            headers=extra.get("headers"),
            disable_ssl=not extra.get("verify", True),
            auth=(conn.login, conn.password) if conn.login else None,
            retry=Retry(total=0),
            timeout=timeout,
        )

    def query(self, promql: str, at: datetime | None = None) -> float | None:
        """The single value of an instant query; None when it returns no series (no data).

        Raises PrometheusQueryError when Prometheus cannot answer or the query returns several
        series (a threshold query must be aggregated to one number).
        """
        params = {"time": at.timestamp()} if at else None
        try:
            result = self.client.custom_query(promql, params=params)
        except Exception as exc:  # requests' and the client's errors alike: a failed read
            raise PrometheusQueryError(f"query failed: {type(exc).__name__}: {exc}") from exc
        return single_value(promql, result)

    def query_range(self, promql: str, start: datetime, end: datetime, step: float) -> list[tuple[float, float]]:
        """(unix time, value) samples of a range query, for one series; [] when there is no data."""
        try:
            result = self.client.custom_query_range(promql, start_time=start, end_time=end, step=f"{step:g}")
        except Exception as exc:
            raise PrometheusQueryError(f"range query failed: {type(exc).__name__}: {exc}") from exc
        if not result:
            return []
        if len(result) > 1:
            raise PrometheusQueryError(f"range query returned {len(result)} series, expected one: {promql}")
        return [(float(t), float(v)) for t, v in result[0]["values"]]

    def series(self, promql: str) -> list[dict[str, Any]]:
        """Every series of an instant query with its labels (e.g. the firing alerts)."""
        try:
            return [{"labels": r.get("metric", {}), "value": float(r["value"][1])} for r in self.client.custom_query(promql)]
        except Exception as exc:
            raise PrometheusQueryError(f"query failed: {type(exc).__name__}: {exc}") from exc

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.query("vector(1)")
        except PrometheusQueryError as exc:
            return False, str(exc)
        return True, f"Prometheus answered at {self.base_url}"


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
