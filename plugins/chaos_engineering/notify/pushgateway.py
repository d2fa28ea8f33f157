"""PushgatewayHook: pushes a registry to a Prometheus Pushgateway and reads a group back."""

from __future__ import annotations

import base64
import json
import urllib.request
from functools import cached_property
from typing import Any

from prometheus_client import CollectorRegistry, pushadd_to_gateway
from prometheus_client.exposition import basic_auth_handler, default_handler

from airflow.sdk.bases.hook import BaseHook
from chaos_engineering.hooks.http import connection_base_url
from chaos_engineering.notify.delivery import CALL_TIMEOUT_S


class PushgatewayHook(BaseHook):
    """An `http` connection to the Pushgateway: `host` = `http://pushgateway:9091` (or host,
    `port` and `schema`), optional `login`/`password` for basic auth.

    Every call takes an explicit timeout: pushes happen on the safety path.
    """

    conn_name_attr = "pushgateway_conn_id"
    default_conn_name = "pushgateway_default"
    conn_type = "http"
    hook_name = "Prometheus Pushgateway"

    def __init__(self, pushgateway_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.pushgateway_conn_id = pushgateway_conn_id

    @cached_property
    def connection(self) -> Any:
        return self.get_connection(self.pushgateway_conn_id)

    @cached_property
    def url(self) -> str:
        return connection_base_url(self.connection, "http://127.0.0.1:9091")

    def _handler(self) -> Any:
        conn = self.connection
        if not conn.login:
            return default_handler

        def handler(url: str, method: str, timeout: float | None, headers: list, data: bytes) -> Any:
            return basic_auth_handler(url, method, timeout, headers, data, conn.login, conn.password or "")

        return handler

    def pushadd(self, registry: CollectorRegistry, job: str, grouping_key: dict[str, str], *, timeout: float = CALL_TIMEOUT_S) -> None:
        """POST: replaces, in the group, only the metrics named in `registry`."""
        pushadd_to_gateway(self.url, job=job, registry=registry, grouping_key=grouping_key, timeout=timeout, handler=self._handler())

    def metric_in_group(self, job: str, grouping_key: dict[str, str], name: str, *, timeout: float = CALL_TIMEOUT_S) -> list[tuple[dict[str, str], float]]:
        """The series of metric `name` in the group (labels, value), from `/api/v1/metrics`;
        empty when the group or the metric is not there."""
        request = urllib.request.Request(self.url + "/api/v1/metrics", headers={"Accept": "application/json"})
        if self.connection.login:
            token = base64.b64encode(f"{self.connection.login}:{self.connection.password or ''}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.load(response)
        wanted = {"job": job, **grouping_key}
        for group in body.get("data") or []:
            if group.get("labels") == wanted and name in group:
                return [(m.get("labels") or {}, float(m["value"])) for m in group[name].get("metrics") or []]
        return []
