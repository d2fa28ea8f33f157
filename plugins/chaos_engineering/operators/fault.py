"""Inject the fault (idempotently) and remove it (whatever happened before)."""

from __future__ import annotations

import datetime as dt
import time
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.heartbeat import INJECT_HOLDER_PREFIX, Heartbeat, default_holder
from chaos_engineering.hooks.airflow_api import AirflowApiHook
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.hooks.prometheus import PrometheusHook
from chaos_engineering.injections import Injection, InjectionRecord
from chaos_engineering.lock import ExperimentLock
from chaos_engineering.notify import announce, metrics
from chaos_engineering.operators.common import catalogue_or_fail, fail_if_halted, lock_holder, policy_or_fail, run_identity
from chaos_engineering.operators.verify import VerifiedInjection, verify_injection
from chaos_engineering.policy import Tier
from chaos_engineering.render import LABEL_RUN_KEY, run_key
from chaos_engineering.verification import VerificationFailed


def fault_ref(obj: dict[str, Any]) -> dict[str, str]:
    return {"kind": obj["kind"], "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"]}


class InjectFaultOperator(BaseOperator):
    """Creates the run's Chaos Mesh object, after verifying everything itself, at the point of no return.

    Nothing upstream is trusted (an Airflow `user` may mark tasks success, clear them, or edit
    XCom): right before the create, this re-derives the object from the catalogue and policy as
    they are now, the approvals from Airflow's human-in-the-loop records, the window for the whole
    fault, the target pods from the cluster and the baseline from Prometheus; it refuses (fails,
    nothing created) on any difference. One injection per run, ever: a claim in the cluster makes
    a cleared or retried task adopt its run's object, or refuse, never create a second fault. The
    halt flag is read again after the create; if set, the object is deleted at once.
    """

    template_fields = ("plan",)
    ui_color = "#fce8e6"

    def __init__(
        self,
        *,
        tier: str,
        plan: Any,
        kubernetes_conn_id: str = ChaosMeshHook.default_conn_name,
        prometheus_conn_id: str = PrometheusHook.default_conn_name,
        airflow_api_conn_id: str = AirflowApiHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.tier = tier
        self.plan = plan
        self.kubernetes_conn_id = kubernetes_conn_id
        self.prometheus_conn_id = prometheus_conn_id
        self.airflow_api_conn_id = airflow_api_conn_id

    @cached_property
    def hook(self) -> ChaosMeshHook:
        return ChaosMeshHook(self.kubernetes_conn_id)

    @cached_property
    def prometheus(self) -> PrometheusHook:
        return PrometheusHook(self.prometheus_conn_id, timeout=policy_or_fail().safety.query_timeout)

    @cached_property
    def airflow_api(self) -> AirflowApiHook:
        return AirflowApiHook(self.airflow_api_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        catalogue = catalogue_or_fail()
        policy = catalogue.policy
        dag_id, run_id = run_identity(context)
        fail_if_halted(self.hook, policy.chaos_namespace)
        key = run_key(dag_id, run_id)
        adopted = self._own_object(policy.chaos_namespace, key)
        if adopted is not None:
            # A retry of this task after its create was answered too late: the fault exists already.
            self.log.warning("the fault of this run already exists (a retry): %s; not creating another", adopted["metadata"]["name"])
            created, verified = adopted, None
        else:
            record = InjectionRecord(self.hook, policy.chaos_namespace, key)
            _refuse_second_injection(record.read())
            self._wait_until_quiet(policy)
            verified = self._verify(context, catalogue, dag_id, run_id)
            self._check_lock(context, policy)
            # Again: verification takes a few seconds, and a stop may have come meanwhile.
            fail_if_halted(self.hook, policy.chaos_namespace)
            # Atomic: of two tries of this run racing here, one claims and the other is refused.
            if record.claim(dag_id=dag_id, run_id=run_id, experiment=verified.experiment.name, digest=verified.digest) is None:
                _refuse_second_injection(record.read() or Injection(dag_id, run_id, verified.experiment.name, "", ""))
            created = self.hook.create(verified.body())
            self._refuse_if_halted_now(created, policy)
        injected_at = time.time()
        self._hand_over(created, policy.safety.monitor_handover)
        self.log.info(
            "injected %s %s/%s (duration %s)%s",
            created["kind"],
            created["metadata"]["namespace"],
            created["metadata"]["name"],
            created["spec"].get("duration"),
            f"; verified: {verified.summary()}" if verified else "",
        )
        fault = fault_ref(created) | {"injected_at": injected_at, "uid": created["metadata"].get("uid")}
        if verified is not None:
            fault |= verified.record()
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

    def _wait_until_quiet(self, policy: Any) -> None:
        """The run that held the lock before may have removed its fault moments ago: its traces
        would be in the baseline taken below. Wait (holding the lock, bounded by one quiet period)
        until they have left the window; what remains is refused by the verification."""
        from chaos_engineering.operators.preflight import fault_lifetime_s, quiet_period_s, wait_until_quiet

        quiet_s = quiet_period_s(policy.safety.thresholds, policy.preflight.healthy_window)
        wait_until_quiet(
            self.hook, self.prometheus, quiet_s, lifetime_s=fault_lifetime_s(policy),
            limit_s=quiet_s + policy.safety.check_interval, poll_s=policy.safety.check_interval,
        )

    def _verify(self, context: Any, catalogue: Any, dag_id: str, run_id: str) -> VerifiedInjection:
        try:
            return verify_injection(
                context,
                catalogue,
                Tier(self.tier),
                planned=self.plan,
                cluster=self.hook,
                prometheus=self.prometheus,
                airflow_api=self.airflow_api,
            )
        except VerificationFailed as exc:
            raise AirflowFailException(str(exc)) from None

    def _own_object(self, namespace: str, key: str) -> dict[str, Any] | None:
        """The live object this run created earlier, if any (a deleting one does not count)."""
        for kind in ChaosKind:
            for obj in self.hook.list(kind, namespace, f"{LABEL_RUN_KEY}={key}"):
                if not obj["metadata"].get("deletionTimestamp"):
                    return obj | {"kind": obj.get("kind") or kind.value}
        return None

    def _check_lock(self, context: Any, policy: Any) -> None:
        state = ExperimentLock(self.hook, policy.chaos_namespace).state()
        if state is None or state.holder != lock_holder(context) or state.expired(dt.datetime.now(dt.timezone.utc)):
            holder = state.holder if state else "nobody"
            raise AirflowFailException(f"this run does not hold the experiment lock (holder: {holder}); not injecting")

    def _refuse_if_halted_now(self, created: dict[str, Any], policy: Any) -> None:
        """An emergency stop that came while the create was in flight: undo it at once."""
        from chaos_engineering.halt import HaltFlag

        try:
            halt = HaltFlag(self.hook, policy.chaos_namespace).state()
            halted, why = halt.halted, f"emergency stop by {halt.halted_by} at {halt.halted_at}: {halt.halted_reason}"
        except Exception as exc:  # cannot tell: fail closed
            halted, why = True, f"the halt flag cannot be read after the create ({exc})"
        if not halted:
            return
        ref = fault_ref(created)
        try:
            self.hook.delete(ChaosKind(ref["kind"]), ref["name"], ref["namespace"])
            undone = "deleted it again"
        except Exception as exc:
            undone = f"COULD NOT DELETE IT ({exc}); the teardown and the watchdog retry"
        raise AirflowFailException(f"created {ref['namespace']}/{ref['name']}, then found chaos halted ({why}); {undone}")

def _refuse_second_injection(earlier: Injection | None) -> None:
    if earlier is not None:
        raise AirflowFailException(
            f"this run has injected once already ({earlier.experiment}, claimed {earlier.claimed_at or 'earlier'}); "
            "a run never injects twice, even after its tasks are cleared: trigger a new run"
        )


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
        # By the run's key, in every kind and namespace: not by the plan's XCom, which may be edited.
        selector = f"{LABEL_RUN_KEY}={run_key(*run_identity(context))}"

        def of_run() -> list[dict[str, Any]]:
            return [o | {"kind": o.get("kind") or kind.value} for kind in ChaosKind for o in self.hook.list(kind, None, selector)]

        objects = of_run()
        for obj in objects:
            self.hook.delete(ChaosKind(obj["kind"]), obj["metadata"]["name"], obj["metadata"]["namespace"])
        deadline = time.monotonic() + self.removal_timeout_s
        while (left := of_run()) and time.monotonic() < deadline:
            time.sleep(self.poll_interval_s)
        if left:
            names = ", ".join(f"{o['kind']} {o['metadata']['namespace']}/{o['metadata']['name']}" for o in left)
            raise AirflowFailException(f"{names} still present {self.removal_timeout_s:g} s after deletion: Chaos Mesh has not recovered it")
        removed_at = time.time()
        self.log.info("removed %d object(s) of this run", len(objects))
        if objects:
            metrics.push("removed", plan=self.plan)
        return {"removed": [o["metadata"]["name"] for o in objects], "removed_at": removed_at}
