"""Inject the fault (idempotently) and remove it (whatever happened before)."""

from __future__ import annotations

import time
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.heartbeat import INJECT_HOLDER_PREFIX, Heartbeat, default_holder
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.lock import ExperimentLock
from chaos_engineering.notify import announce, metrics
from chaos_engineering.operators.common import fail_if_halted, lock_holder, policy_or_fail
from chaos_engineering.render import ANNOTATION_APPROVALS, LABEL_RUN_KEY


def fault_ref(obj: dict[str, Any]) -> dict[str, str]:
    return {"kind": obj["kind"], "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"]}


class InjectFaultOperator(BaseOperator):
    """Creates the Chaos Mesh object of the plan, with the approvals in its annotations.

    Idempotent: the object carries the run's key, so a retry finds the object an earlier try
    created (even one whose answer was lost) instead of creating a second fault.
    """

    template_fields = ("plan", "approvals")
    ui_color = "#fce8e6"

    def __init__(
        self,
        *,
        plan: Any,
        approvals: Any = None,
        kubernetes_conn_id: str = ChaosMeshHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.approvals = approvals
        self.kubernetes_conn_id = kubernetes_conn_id

    @cached_property
    def hook(self) -> ChaosMeshHook:
        return ChaosMeshHook(self.kubernetes_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        policy = policy_or_fail()
        fail_if_halted(self.hook, policy.chaos_namespace)
        manifest = self.plan["manifest"]
        kind = ChaosKind(manifest["kind"])
        state = ExperimentLock(self.hook, policy.chaos_namespace).state()
        if state is None or state.holder != lock_holder(context):
            raise AirflowFailException(f"this run does not hold the experiment lock (holder: {state.holder if state else 'nobody'}); not injecting")
        run_key = manifest["metadata"]["labels"][LABEL_RUN_KEY]
        existing = self.hook.list(kind, manifest["metadata"]["namespace"], f"{LABEL_RUN_KEY}={run_key}")
        if existing:
            self.log.warning("the fault of this run already exists (a retry): %s", existing[0]["metadata"]["name"])
            created = existing[0]
        else:
            body = dict(manifest)
            body["metadata"] = dict(manifest["metadata"], annotations=dict(manifest["metadata"]["annotations"]))
            body["metadata"]["annotations"][ANNOTATION_APPROVALS] = _approvals_annotation(self.approvals)
            created = self.hook.create(body)
        injected_at = time.time()
        self._hand_over(created, policy.safety.monitor_handover)
        self.log.info("injected %s %s/%s (duration %s)", kind.value, created["metadata"]["namespace"], created["metadata"]["name"], manifest["spec"].get("duration"))
        fault = fault_ref(created) | {"injected_at": injected_at, "uid": created["metadata"].get("uid")}
        announce("started", context=context, plan=self.plan, extra={"fault": fault})
        return fault

    def _hand_over(self, created: dict[str, Any], handover_s: float) -> None:
        """The fault's first heartbeat, promising the monitor's within `handover_s`: until the
        monitor's trigger beats, the watchdog keeps the fault that long (not only its grace).
        Best effort: without it the watchdog counts from the object's creation (fails closed)."""
        ref = fault_ref(created)
        try:
            Heartbeat(self.hook, ref["kind"], ref["name"], ref["namespace"]).renew(f"{INJECT_HOLDER_PREFIX}{default_holder()}", handover_s)
        except Exception as exc:
            self.log.warning("cannot write the hand-over heartbeat of %s/%s (the watchdog counts from creation): %s", ref["namespace"], ref["name"], exc)


def _approvals_annotation(approvals: Any) -> str:
    import json

    return json.dumps(approvals or [], sort_keys=True, default=str)


class RemoveFaultOperator(BaseOperator):
    """Deletes every object of this run and waits until Chaos Mesh has recovered and removed it.

    Finds the objects by the run's key label, not by what the inject step returned: an inject
    that failed halfway may still have created one. Fails (and so fails the run) when an
    object is still there after `removal_timeout_s`.
    """

    template_fields = ("plan",)
    ui_color = "#fce8e6"

    def __init__(
        self,
        *,
        plan: Any,
        kubernetes_conn_id: str = ChaosMeshHook.default_conn_name,
        removal_timeout_s: float = 60,
        poll_interval_s: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.kubernetes_conn_id = kubernetes_conn_id
        self.removal_timeout_s = removal_timeout_s
        self.poll_interval_s = poll_interval_s

    @cached_property
    def hook(self) -> ChaosMeshHook:
        return ChaosMeshHook(self.kubernetes_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        manifest = self.plan["manifest"]
        kind = ChaosKind(manifest["kind"])
        namespace = manifest["metadata"]["namespace"]
        selector = f"{LABEL_RUN_KEY}={manifest['metadata']['labels'][LABEL_RUN_KEY]}"
        objects = self.hook.list(kind, namespace, selector)
        for obj in objects:
            self.hook.delete(kind, obj["metadata"]["name"], namespace)
        deadline = time.monotonic() + self.removal_timeout_s
        while (left := self.hook.list(kind, namespace, selector)) and time.monotonic() < deadline:
            time.sleep(self.poll_interval_s)
        if left:
            names = ", ".join(o["metadata"]["name"] for o in left)
            raise AirflowFailException(f"{kind.value} {names} still present {self.removal_timeout_s:g} s after deletion: Chaos Mesh has not recovered it")
        removed_at = time.time()
        self.log.info("removed %d object(s) of this run", len(objects))
        if objects:
            metrics.push("removed", plan=self.plan)
        return {"removed": [o["metadata"]["name"] for o in objects], "removed_at": removed_at}
