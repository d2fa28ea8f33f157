"""The daily maintenance pass as an Airflow task."""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, ObjectStoragePath
from chaos_engineering.hooks.airflow_api import AirflowApiHook
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.hooks.prometheus import PrometheusHook
from chaos_engineering.maintenance import ORPHAN_GRACE_S, PENDING_LOOKBACK_DAYS, MaintenanceReport, maintain, write_pending_reports
from chaos_engineering.operators.common import policy_or_fail
from chaos_engineering.watchdog import DEFAULT_GRACE_S


class ChaosMaintenanceOperator(BaseOperator):
    """Removes finished and orphaned chaos objects, a stale lock, stale heartbeats and old reports;
    writes the reports left pending while object storage was down (runs read through the REST API).

    Orphans and a stale lock are logged as warnings; the task fails only when part of the pass
    could not be done (a listing or a deletion failed), so a clean-up never hides an error.
    """

    ui_color = "#fef7e0"

    def __init__(
        self,
        *,
        kubernetes_conn_id: str = ChaosMeshHook.default_conn_name,
        orphan_grace_s: float = ORPHAN_GRACE_S,
        heartbeat_grace_s: float = DEFAULT_GRACE_S,
        airflow_api_conn_id: str = AirflowApiHook.default_conn_name,
        prometheus_conn_id: str = PrometheusHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kubernetes_conn_id = kubernetes_conn_id
        self.orphan_grace_s = orphan_grace_s
        self.heartbeat_grace_s = heartbeat_grace_s
        self.airflow_api_conn_id = airflow_api_conn_id
        self.prometheus_conn_id = prometheus_conn_id

    @cached_property
    def hook(self) -> ChaosMeshHook:
        return ChaosMeshHook(self.kubernetes_conn_id)

    @cached_property
    def airflow_api(self) -> AirflowApiHook:
        return AirflowApiHook(self.airflow_api_conn_id)

    @cached_property
    def prometheus(self) -> PrometheusHook:
        return PrometheusHook(self.prometheus_conn_id, timeout=policy_or_fail().safety.query_timeout)

    def _write_pending(self, policy: Any, report: MaintenanceReport, now: dt.datetime) -> None:
        from chaos_engineering.operators.report import build_run_report

        def build(result: dict[str, Any], folder: ObjectStoragePath) -> list[Any]:
            # The series up to when the run ended (its result was collected), not up to today.
            written_at = result.get("written_at")
            end = dt.datetime.fromisoformat(written_at) if written_at else now
            return build_run_report(result, folder, self.prometheus, policy, end=end, log=self.log)

        write_pending_reports(
            self.airflow_api, policy.reports.base_url, policy.reports.conn_id, build, report,
            lookback_days=min(policy.reports.retention_days, PENDING_LOOKBACK_DAYS), now=now,
        )

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        policy = policy_or_fail()
        base = ObjectStoragePath(policy.reports.base_url.rstrip("/") + "/", conn_id=policy.reports.conn_id)
        report = maintain(
            self.hook,
            policy.chaos_namespace,
            base,
            policy.reports.retention_days,
            orphan_grace_s=self.orphan_grace_s,
            heartbeat_grace_s=self.heartbeat_grace_s,
            now=dt.datetime.now(dt.timezone.utc),
            pending=lambda report, now: self._write_pending(policy, report, now),
        )
        if report.orphans or report.stale_lock or report.pending_reports or report.unrecoverable:
            self.log.warning("orphans, a stale lock or pending reports were handled:\n%s", report.summary())
        else:
            self.log.info("%s", report.summary())
        if report.errors:
            raise AirflowFailException("maintenance did not finish cleanly:\n" + "\n".join(report.errors))
        return report.as_dict()
