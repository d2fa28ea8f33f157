"""Recovery validation: one deferrable sensor per stage, each with its deadline from the fault's removal."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from chaos_engineering.chaosmesh.spec import parse_spec
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.hooks.prometheus import PrometheusHook
from chaos_engineering.operators.common import policy_or_fail
from chaos_engineering.reach import selected_namespaces
from chaos_engineering.targets import label_selector
from chaos_engineering.triggers import RecoveryTrigger, stage_status

STAGES = ("immediate", "short_term", "business")


def target_queries(plan: dict[str, Any]) -> list[dict[str, str]]:
    """Namespace and label selector of the targeted pods (names change when pods are replaced):
    of the experiment, or of every step of a scenario."""
    queries: list[dict[str, str]] = []
    for fault in plan.get("steps") or [plan]:
        spec, _ = parse_spec(fault["kind"], fault["manifest"]["spec"])
        if spec is not None:
            queries += [{"namespace": ns, "label_selector": label_selector(spec.selector)} for ns in selected_namespaces(spec.selector)]
    return [dict(q) for q in dict.fromkeys(tuple(sorted(q.items())) for q in queries)]


class RecoveryStageSensor(BaseSensorOperator):
    """Succeeds when the stage's thresholds hold against the baseline again, recording when;
    fails when the stage's deadline (counted from the fault's removal) passes first."""

    template_fields = ("plan", "preflight", "removal")
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        stage: str,
        plan: Any,
        preflight: Any,
        removal: Any,
        prometheus_conn_id: str = PrometheusHook.default_conn_name,
        kubernetes_conn_id: str = ChaosMeshHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        self.stage = stage
        self.plan = plan
        self.preflight = preflight
        self.removal = removal
        self.prometheus_conn_id = prometheus_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        if not self.removal or not self.preflight:
            raise AirflowSkipException("no fault was removed: nothing to recover from")
        policy = policy_or_fail()
        stage = policy.recovery.stages()[self.stage]
        trigger = RecoveryTrigger(
            prometheus_conn_id=self.prometheus_conn_id,
            kubernetes_conn_id=self.kubernetes_conn_id,
            thresholds={n: self.plan["thresholds"][n] for n in stage.thresholds},
            baseline=self.preflight["baseline"],
            interval_s=policy.safety.check_interval,
            deadline_ts=self.removal["removed_at"] + stage.deadline,
            targets=target_queries(self.plan) if stage.require_targets_ready else [],
            query_timeout_s=policy.safety.query_timeout,
        )
        # Often already back by now: then no deferral at all (and no trigger round trip). A stage
        # that starts after its deadline (a retry, a late scheduler) is decided by this check.
        checked_at = time.time()
        pending, values = asyncio.run(trigger.check_once())
        if (status := stage_status(pending, checked_at, time.time(), trigger.deadline_ts)) is not None:
            return self.execute_complete(context, {"status": status, "at": time.time(), "checks": 1, "values": values, "pending": pending})
        self.log.info("%s recovery pending: %s", self.stage, "; ".join(pending))
        self.defer(trigger=trigger, method_name="execute_complete", timeout=dt.timedelta(seconds=stage.deadline + 120))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        policy = policy_or_fail()
        deadline_s = policy.recovery.stages()[self.stage].deadline
        result = {
            "stage": self.stage,
            "status": event["status"],
            "deadline_s": deadline_s,
            "at": event["at"],
            "time_to_recover_s": event["at"] - self.removal["removed_at"],
            "values": event.get("values"),
            "pending": event.get("pending", []),
        }
        context["ti"].xcom_push(key="recovery", value=result)
        if event["status"] == "unobserved":
            raise AirflowFailException(
                f"{self.stage} recovery not observed within its {deadline_s:g} s deadline: first checked "
                f"{result['time_to_recover_s']:.0f} s after the fault's removal (a worker, the triggerer or the scheduler was "
                "down or late), back by then; whether it recovered in time is not known"
            )
        if event["status"] != "recovered":
            raise AirflowFailException(f"{self.stage} recovery missed its {deadline_s:g} s deadline: " + "; ".join(event.get("pending", [])))
        self.log.info("%s recovery after %.1f s (deadline %g s)", self.stage, result["time_to_recover_s"], deadline_s)
        return result
