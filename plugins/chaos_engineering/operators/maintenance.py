"""The daily maintenance pass as an Airflow task."""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, ObjectStoragePath
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.maintenance import ORPHAN_GRACE_S, maintain
from chaos_engineering.operators.common import policy_or_fail
from chaos_engineering.watchdog import DEFAULT_GRACE_S


class ChaosMaintenanceOperator(BaseOperator):
    """Removes finished and orphaned chaos objects, a stale lock, stale heartbeats and old reports.

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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kubernetes_conn_id = kubernetes_conn_id
        self.orphan_grace_s = orphan_grace_s
        self.heartbeat_grace_s = heartbeat_grace_s

    @cached_property
    def hook(self) -> ChaosMeshHook:
        return ChaosMeshHook(self.kubernetes_conn_id)

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
        )
        if report.orphans or report.stale_lock:
            self.log.warning("orphans or a stale lock were cleaned:\n%s", report.summary())
        else:
            self.log.info("%s", report.summary())
        if report.errors:
            raise AirflowFailException("maintenance did not finish cleanly:\n" + "\n".join(report.errors))
        return report.as_dict()
