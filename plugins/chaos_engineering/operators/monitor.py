"""The kill switch as a deferrable sensor: the trigger watches and deletes on breach; this fails the run."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.hooks.prometheus import PrometheusHook
from chaos_engineering.notify import announce
from chaos_engineering.operators.common import policy_or_fail
from chaos_engineering.triggers import FaultMonitorTrigger


class FaultMonitorSensor(BaseSensorOperator):
    """Watches the fault until Chaos Mesh ends it; a breach removes it at once and fails the run.

    Always deferrable: a kill switch must not depend on a free worker slot.
    """

    template_fields = ("plan", "fault", "preflight")
    ui_color = "#fad2cf"

    def __init__(
        self,
        *,
        plan: Any,
        fault: Any,
        preflight: Any,
        prometheus_conn_id: str = PrometheusHook.default_conn_name,
        kubernetes_conn_id: str = ChaosMeshHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.fault = fault
        self.preflight = preflight
        self.prometheus_conn_id = prometheus_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id

    def execute(self, context: Any) -> None:
        if not self.fault:
            raise AirflowSkipException("no fault was injected")
        policy = policy_or_fail()
        self.defer(
            trigger=FaultMonitorTrigger(
                prometheus_conn_id=self.prometheus_conn_id,
                kubernetes_conn_id=self.kubernetes_conn_id,
                fault={k: self.fault[k] for k in ("kind", "name", "namespace")} | {"action": self.plan["manifest"]["spec"].get("action")},
                thresholds=self.plan["thresholds"],
                baseline=self.preflight["baseline"],
                interval_s=policy.safety.check_interval,
                max_failed_reads=policy.safety.max_failed_reads,
                ends_at=self.fault["injected_at"] + self.plan["duration_s"],
            ),
            method_name="execute_complete",
            # Bound the watch: the fault's own duration plus slack; Chaos Mesh ends it anyway.
            timeout=dt.timedelta(seconds=self.plan["duration_s"] + 300),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        context["ti"].xcom_push(key="monitor", value=event)
        if event["status"] == "breach":
            breach = event["breach"]
            # The trigger already deleted the fault: the alert never delays the kill.
            announce(
                "breach_and_kill",
                context=context,
                plan=self.plan,
                breach=breach,
                extra={"fault": self.fault, "removal_requested_at": event.get("removal_requested_at"), "removal_error": event.get("removal_error")},
            )
            removal = "fault removed" if event.get("removal_requested_at") else f"REMOVAL FAILED: {event.get('removal_error')}"
            raise AirflowFailException(f"safety breach, {removal}: {breach['message']}")
        if event["status"] == "gone":
            raise AirflowFailException(f"the fault was removed by someone else ({event['state']}): emergency stop or watchdog")
        self.log.info("fault ended by Chaos Mesh after %d checks with no breach", event["checks"])
        return event
