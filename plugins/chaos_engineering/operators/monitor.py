"""The kill switch as a deferrable sensor: the trigger watches and deletes on breach; this fails the run."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.chaosmesh.duration import parse_go_duration
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.hooks.prometheus import PrometheusHook
from chaos_engineering.notify import announce
from chaos_engineering.operators.common import catalogue_or_fail, run_identity
from chaos_engineering.render import ANNOTATION_BASELINE, LABEL_EXPERIMENT, LABEL_RUN_KEY, run_key
from chaos_engineering.triggers import FaultMonitorTrigger, created_at
from chaos_engineering.verification import experiment_thresholds


class FaultMonitorSensor(BaseSensorOperator):
    """Watches the fault until Chaos Mesh ends it; a breach or the halt removes it at once and fails the run.

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
        catalogue = catalogue_or_fail()
        policy = catalogue.policy
        # What is watched, and against what, comes from the cluster and the policy: the fault of
        # this run (by its key, whatever inject's XCom says), the baseline inject measured and
        # wrote on it, and the policy's thresholds by name with the experiment's own limits.
        obj = self._fault_of_run(context, policy.chaos_namespace)
        if obj is None:
            raise AirflowSkipException("no fault of this run is on the cluster: nothing to watch")
        meta = obj["metadata"]
        name = (meta.get("labels") or {}).get(LABEL_EXPERIMENT, "")
        experiment = catalogue.get(name)
        if experiment is None:
            # The thresholds it was approved with cannot be known: the teardown removes the fault.
            raise AirflowFailException(f"experiment {name!r} of {meta['namespace']}/{meta['name']} is no longer a valid experiment of the catalogue: not watching it, removing it")
        duration_s = parse_go_duration(obj["spec"].get("duration") or "0s")
        self.defer(
            trigger=FaultMonitorTrigger(
                prometheus_conn_id=self.prometheus_conn_id,
                kubernetes_conn_id=self.kubernetes_conn_id,
                fault={"kind": obj["kind"], "name": meta["name"], "namespace": meta["namespace"], "action": obj["spec"].get("action")},
                thresholds=experiment_thresholds(experiment, policy),
                baseline=recorded_baseline(obj),
                interval_s=policy.safety.check_interval,
                max_failed_reads=policy.safety.max_failed_reads,
                ends_at=(created_at(obj) or time.time()) + duration_s,
                deletion_timeout_s=policy.safety.deletion_timeout,
                chaos_namespace=policy.chaos_namespace,
                query_timeout_s=policy.safety.query_timeout,
            ),
            method_name="execute_complete",
            # Bound the watch: the fault's own duration plus slack, and a stuck deletion's two
            # timeouts (forced, then given up); Chaos Mesh ends the fault anyway.
            timeout=dt.timedelta(seconds=duration_s + 300 + 2 * policy.safety.deletion_timeout),
        )

    def _fault_of_run(self, context: Any, namespace: str) -> dict[str, Any] | None:
        hook = ChaosMeshHook(self.kubernetes_conn_id)
        selector = f"{LABEL_RUN_KEY}={run_key(*run_identity(context))}"
        for kind in ChaosKind:
            for obj in hook.list(kind, namespace, selector):
                return obj | {"kind": obj.get("kind") or kind.value}
        return None

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
            raise AirflowFailException(f"safety breach, {removal}: {breach['message']}{_deletion_note(event)}")
        if event["status"] == "halted":
            halt = event["halt"]
            removal = "" if not event.get("removal_error") else f" (this monitor's delete failed: {event['removal_error']}; the stop and the watchdog delete too)"
            raise AirflowFailException(
                f"chaos experiments were halted by {halt['halted_by']} at {halt['halted_at']} (reason: {halt['halted_reason']}): "
                f"the fault is gone{removal}{_deletion_note(event)}. Nothing is injected until someone runs "
                "`chaosctl resume --reason ...` or the chaos_resume DAG."
            )
        if event["status"] == "deletion_stuck":
            raise AirflowFailException(event["message"])
        if event["status"] == "gone":
            # The trigger named who: the emergency stop's author, the dead-man watchdog, or nobody it could tell.
            # (An event from a trigger of an older release has no message.)
            raise AirflowFailException(f"{event.get('message') or 'the fault was removed from outside the run'}{_deletion_note(event)}")
        self.log.info("fault ended by Chaos Mesh after %d checks with no breach", event["checks"])
        return event


def recorded_baseline(obj: dict[str, Any]) -> dict[str, float | None]:
    """The baseline inject wrote on the object. Unreadable or missing: empty, and every relative
    threshold then fails safe at the first check (the fault is removed)."""
    try:
        baseline = json.loads((obj["metadata"].get("annotations") or {}).get(ANNOTATION_BASELINE) or "{}")
    except ValueError:
        return {}
    return baseline if isinstance(baseline, dict) else {}


def _deletion_note(event: dict[str, Any]) -> str:
    """What the monitor saw of the fault's deletion, when its finalizer held it past the bound."""
    deletion = event.get("deletion") or {}
    if not deletion.get("stuck"):
        return ""
    if deletion.get("forced_at"):
        return (f"; its deletion (requested at {deletion['requested_at']}) outlasted safety.deletion_timeout and Chaos Mesh's finalizer "
                "clean-up was forced: the fault may still be applied, check the targets by hand")
    return f"; its deletion (requested at {deletion['requested_at']}) outlasted safety.deletion_timeout and forcing its clean-up failed: {deletion.get('force_error')}"
