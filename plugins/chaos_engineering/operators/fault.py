"""Inject the fault (idempotently) and remove it (whatever happened before)."""

from __future__ import annotations

import datetime as dt
import time
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.emergency import ObjectRef, deletion_age_s, force_finalizers, is_forced
from chaos_engineering.heartbeat import INJECT_HOLDER_PREFIX, default_holder, heartbeats_of
from chaos_engineering.hooks.airflow_api import AirflowApiHook
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook, KubernetesApiError, KubernetesRequestError
from chaos_engineering.hooks.prometheus import PrometheusHook
from chaos_engineering.injections import Injection, InjectionRecord
from chaos_engineering.lock import ExperimentLock
from chaos_engineering.notify import announce, metrics
from chaos_engineering.notify.run import experiment_of_object
from chaos_engineering.operators.common import catalogue_or_fail, fail_if_halted, lock_holder, policy_or_fail, run_identity
from chaos_engineering.operators.verify import VerifiedInjection, verify_injection
from chaos_engineering.policy import Tier
from chaos_engineering.render import LABEL_RUN_KEY, run_key
from chaos_engineering.triggers import DELETION_TIMEOUT_S, removal_backoff_s
from chaos_engineering.verification import VerificationFailed


#: Removal failing this long (from its first failed round) sends the critical `removal_failed`.
REMOVAL_ALERT_AFTER_S = 10.0


def fault_ref(obj: dict[str, Any]) -> dict[str, str]:
    return {"kind": obj["kind"], "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"]}


class InjectFaultOperator(BaseOperator):
    """Creates the run's Chaos Mesh object, after verifying everything itself, at the point of no return.

    Nothing upstream is trusted (an Airflow `user` may mark tasks success, clear them, or edit
    XCom): right before the create, this re-derives the object from the catalogue and policy as
    they are now, the approvals from Airflow's human-in-the-loop records, the window for the whole
    fault, the target pods from the cluster and the baseline from Prometheus; it refuses (fails,
    nothing created) on any difference. One injection per run, ever: a claim in the cluster makes
    a cleared or retried task adopt its run's object, or refuse, never create a second fault; a
    create that failed or timed out but landed is adopted by the same try (`_create`). The
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
            created, verified = [adopted], None
        else:
            record = InjectionRecord(self.hook, policy.chaos_namespace, key)
            _refuse_second_injection(record.read())
            self._wait_until_quiet(policy)
            verified = self._verify(context, catalogue, dag_id, run_id)
            self._check_lock(context, policy)
            # Again: verification takes a few seconds, and a stop may have come meanwhile.
            fail_if_halted(self.hook, policy.chaos_namespace)
            # Atomic: of two tries of this run racing here, one claims and the other is refused.
            if record.claim(dag_id=dag_id, run_id=run_id, experiment=verified.name, digest=verified.digest) is None:
                _refuse_second_injection(record.read() or Injection(dag_id, run_id, verified.name, "", ""))
            created = self._create_verified(verified, policy.chaos_namespace, key)
            self._refuse_if_halted_now(created, policy)
        injected_at = time.time()
        self._hand_over(created, policy.safety.monitor_handover)
        self.log.info(
            "injected %s (duration %s)%s",
            ", ".join(f"{c['kind']} {c['metadata']['namespace']}/{c['metadata']['name']}" for c in created),
            ", ".join(str(c["spec"].get("duration")) for c in created),
            f"; verified: {verified.summary()}" if verified else "",
        )
        fault = self._fault_record(created, injected_at, verified)
        announce("started", context=context, plan=self.plan, extra={"fault": fault})
        return fault

    def _create_verified(self, verified: Any, namespace: str, key: str) -> list[dict[str, Any]]:
        """The objects the verified run starts with (one, for an experiment)."""
        return [self._create(verified.body(), namespace, key)]

    def _fault_record(self, created: list[dict[str, Any]], injected_at: float, verified: Any) -> dict[str, Any]:
        """inject's XCom: what it created and what it verified."""
        fault = fault_ref(created[0]) | {"injected_at": injected_at, "uid": created[0]["metadata"].get("uid")}
        return fault | (verified.record() if verified is not None else {})

    def _create(self, body: dict[str, Any], namespace: str, key: str) -> dict[str, Any]:
        """Create the run's object. A create that failed or got no answer may have landed all the
        same (stored, its reply lost; a 409 AlreadyExists): adopt the run's object now, so the
        monitor watches it, rather than leave it unwatched until a retry or the watchdog. With
        none on the cluster, fail without a retry: the claim would refuse it anyway, and the
        teardown and the result then follow at once."""
        try:
            return self.hook.create(body)
        except (KubernetesRequestError, KubernetesApiError) as failed:
            try:
                landed = self._own_object(namespace, key)
            except Exception as exc:  # cannot tell: a retry adopts the fault if it landed, else is refused
                self.log.error("the create failed (%s) and this run's objects cannot be listed (%s)", failed, exc)
                raise failed from None
            if landed is None:
                raise AirflowFailException(
                    f"{failed}; no object of this run is on the cluster: nothing injected. The run's one injection is "
                    "claimed, so a retry would be refused: trigger a new run"
                ) from failed
            self.log.warning("the create failed (%s) but it landed: adopting %s", failed, landed["metadata"]["name"])
            return landed

    def _hand_over(self, created: list[dict[str, Any]], handover_s: float) -> None:
        """The first beat of each heartbeat watching the faults (`heartbeats_of`: a scenario's steps
        share their run's one), promising the monitor's within `handover_s`: until the monitor's
        trigger beats, the watchdog keeps the faults that long (not only its grace). Best effort:
        without it the watchdog counts from each object's creation (fails closed)."""
        for heartbeat in heartbeats_of(self.hook, created):
            try:
                heartbeat.renew(f"{INJECT_HOLDER_PREFIX}{default_holder()}", handover_s)
            except Exception as exc:
                self.log.warning("cannot write the hand-over heartbeat %s/%s (the watchdog counts from creation): %s", heartbeat.namespace, heartbeat.name, exc)

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

    def _refuse_if_halted_now(self, created: list[dict[str, Any]], policy: Any) -> None:
        """An emergency stop that came while the creates were in flight: undo them at once."""
        from chaos_engineering.halt import HaltFlag

        try:
            halt = HaltFlag(self.hook, policy.chaos_namespace).state()
            halted, why = halt.halted, f"emergency stop by {halt.halted_by} at {halt.halted_at}: {halt.halted_reason}"
        except Exception as exc:  # cannot tell: fail closed
            halted, why = True, f"the halt flag cannot be read after the create ({exc})"
        if not halted:
            return
        undone = []
        for ref in map(fault_ref, created):
            try:
                self.hook.delete(ChaosKind(ref["kind"]), ref["name"], ref["namespace"])
                undone.append("deleted it again")
            except Exception as exc:
                undone.append(f"COULD NOT DELETE IT ({exc}); the teardown and the watchdog retry")
        names = ", ".join(f"{ref['namespace']}/{ref['name']}" for ref in map(fault_ref, created))
        raise AirflowFailException(f"created {names}, then found chaos halted ({why}); {'; '.join(undone)}")

def _refuse_second_injection(earlier: Injection | None) -> None:
    if earlier is not None:
        raise AirflowFailException(
            f"this run has injected once already ({earlier.experiment}, claimed {earlier.claimed_at or 'earlier'}); "
            "a run never injects twice, even after its tasks are cleared: trigger a new run"
        )


class RemoveFaultOperator(BaseOperator):
    """Deletes every object of this run and waits until Chaos Mesh has recovered and removed it.

    Finds the objects by the run's key label, not by what the inject step returned: an inject
    that failed halfway may still have created one. Keeps trying until every object is gone or
    `removal_timeout_s` (default: twice the policy's `safety.deletion_timeout`: one for Chaos Mesh
    to recover, one for its forced clean-up to act) has passed. Each round lists the run's
    objects and asks for the deletion of those not being deleted yet; a refused list or delete
    is a failed round, tried again after `removal_backoff_s` (0.5 s doubling to 8 s); a round that
    only sees deletions under way polls every `poll_interval_s`. A deletion older than
    `safety.deletion_timeout` has Chaos Mesh's finalizer clean-up forced, once. Removal failing
    for `alert_after_s`, or given up, sends one critical `removal_failed` notification (and sets
    `chaos_fault_removal_failing`). Given up, it pushes the XCom `removal` naming what is still
    on the cluster (write_result puts it in the result), then fails.
    """

    template_fields = ("plan",)
    ui_color = "#fce8e6"

    def __init__(
        self,
        *,
        plan: Any,
        kubernetes_conn_id: str = ChaosMeshHook.default_conn_name,
        removal_timeout_s: float | None = None,
        poll_interval_s: float = 0.5,
        alert_after_s: float = REMOVAL_ALERT_AFTER_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.kubernetes_conn_id = kubernetes_conn_id
        self.removal_timeout_s = removal_timeout_s
        self.poll_interval_s = poll_interval_s
        self.alert_after_s = alert_after_s

    @cached_property
    def hook(self) -> ChaosMeshHook:
        return ChaosMeshHook(self.kubernetes_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        try:
            deletion_timeout_s = policy_or_fail().safety.deletion_timeout
        except AirflowFailException as exc:  # an unreadable policy must not keep the fault on the cluster
            deletion_timeout_s = DELETION_TIMEOUT_S
            self.log.error("%s; removing with the default safety.deletion_timeout (%g s)", exc, deletion_timeout_s)
        timeout_s = self.removal_timeout_s if self.removal_timeout_s is not None else 2 * deletion_timeout_s
        # By the run's key, in every kind and namespace: not by the plan's XCom, which may be edited.
        removal = Removal(self.hook, f"{LABEL_RUN_KEY}={run_key(*run_identity(context))}", deletion_timeout_s, self.log)
        deadline = time.monotonic() + timeout_s
        alerted = False
        while True:
            wait = removal.round()
            if removal.gone:
                break
            now = time.monotonic()
            gave_up = now >= deadline
            failing_for = now - removal.failing_since if removal.failing_since is not None else 0.0
            if not alerted and (gave_up or failing_for >= self.alert_after_s):
                alerted = True
                announce("removal_failed", context=context, plan=self.plan, extra=removal.record(timeout_s, gave_up=gave_up))
            if gave_up:
                self._give_up(context, removal, timeout_s)
            time.sleep(min(wait if wait is not None else self.poll_interval_s, deadline - now))
        removed_at = time.time()
        self.log.info("removed %d object(s) of this run%s", len(removal.seen), " after failed attempts" if alerted else "")
        if removal.seen or self._injected(context):
            # Gone, whoever removed it (a stop, the watchdog, a person first): pre-flight reads
            # this record, and a fault recorded as injected blocks every run until it is dated out.
            metrics.push("removed", plan=self.plan)
        # Clears chaos_fault_removal_failing, set by this try or by an earlier one that gave up.
        metrics.push("removal_ok", plan=self.plan, extra={"removed": list(removal.seen.values())})
        return {"removed": [ref["name"] for ref in removal.seen.values()], "removed_at": removed_at}

    def _injected(self, context: Any) -> bool:
        """Whether this run's inject recorded a fault (its XCom); unreadable counts as yes."""
        ti = context.get("ti")
        if ti is None:
            return False
        try:
            return bool(ti.xcom_pull(task_ids="inject"))
        except Exception as exc:
            self.log.warning("cannot read whether inject recorded a fault (%s): recording the run's fault as removed", exc)
            return True

    def _give_up(self, context: Any, removal: Removal, timeout_s: float) -> None:
        record = removal.record(timeout_s, gave_up=True)
        ti = context.get("ti")
        if ti is not None:
            try:
                ti.xcom_push(key=REMOVAL_KEY, value=record)
            except Exception as exc:  # write_result then finds no record; the failure below still names the objects
                self.log.error("cannot record the failed removal in XCom: %s", exc)
        names = ", ".join(_describe(ref) for ref in record["still_on_cluster"]) or "the run's objects (the list itself fails)"
        raise AirflowFailException(
            f"{names} still on the cluster {timeout_s:g} s after the removal started: THE FAULT MAY STILL BE APPLIED "
            f"(last error: {record['error'] or 'none: Chaos Mesh has not finished the deletion'}); "
            "run `chaosctl stop` (docs/RUNBOOK.md#chaos-fault-removal-failing)"
        )


#: XCom key of the teardown's record when it gives up (its return value when it succeeds).
REMOVAL_KEY = "removal"


def _describe(ref: dict[str, Any]) -> str:
    return f"{ref['kind']} {ref['namespace']}/{ref['name']}"


class Removal:
    """The state of one teardown: the run's objects as last listed, the last error, since when
    removal has been failing. `round()` lists and deletes once and says how long to wait."""

    def __init__(self, hook: ChaosMeshHook, selector: str, deletion_timeout_s: float, log: Any) -> None:
        self.hook = hook
        self.selector = selector
        self.deletion_timeout_s = deletion_timeout_s
        self.log = log
        self.left: list[dict[str, Any]] = []  # as last listed (kept when a list fails)
        self.seen: dict[str, dict[str, Any]] = {}  # every object of the run met, by uid or name
        self.gone = False
        self.error = ""
        self.failing_since: float | None = None  # monotonic time of the first failed round in a row
        self.failing_since_wall: float | None = None
        self.failed_rounds = 0
        self.forced: set[str] = set()

    def round(self) -> float | None:
        """One list and the deletes it calls for; the wait before the next round (None: the poll
        interval, while deletions are under way; 0: at once, after deletes were accepted)."""
        errors: list[str] = []
        requested = False
        try:
            self.left = [o | {"kind": o.get("kind") or kind.value} for kind in ChaosKind for o in self.hook.list(kind, None, self.selector)]
        except Exception as exc:
            errors.append(f"listing the run's objects failed: {exc}")
            self.log.error("cannot list the objects of this run (%s): %s; trying again", self.selector, exc)
        else:
            if not self.left:
                self.gone = True
                return 0.0
            for obj in self.left:
                ref = _ref_of(obj)
                self.seen.setdefault(obj["metadata"].get("uid") or _describe(ref), ref)
                if not obj["metadata"].get("deletionTimestamp"):
                    try:
                        self.hook.delete(ChaosKind(obj["kind"]), ref["name"], ref["namespace"])
                        requested = True
                    except Exception as exc:
                        errors.append(f"deleting {_describe(ref)} failed: {exc}")
                        self.log.error("could not delete %s: %s; trying again", _describe(ref), exc)
                else:
                    errors += self._force_if_stuck(obj, ref)
        if errors:
            self.error = "; ".join(errors)
            self.failed_rounds += 1
            if self.failing_since is None:
                self.failing_since, self.failing_since_wall = time.monotonic(), time.time()
            return removal_backoff_s(self.failed_rounds)
        # A round that worked ends the failure: deletions under way are Chaos Mesh's to finish.
        self.failed_rounds, self.failing_since, self.failing_since_wall = 0, None, None
        return 0.0 if requested else None

    def _force_if_stuck(self, obj: dict[str, Any], ref: dict[str, Any]) -> list[str]:
        """Past `safety.deletion_timeout` Chaos Mesh's finalizer holds the object: force its
        clean-up once (as the watchdog, the monitor and the stop do). A failed force is an error."""
        age = deletion_age_s(obj, dt.datetime.now(dt.timezone.utc))
        key = obj["metadata"].get("uid") or _describe(ref)
        if age is None or age <= self.deletion_timeout_s or key in self.forced or is_forced(obj):
            return []
        try:
            force_finalizers(self.hook, ObjectRef.of(obj))
        except Exception as exc:
            self.log.error("deletion of %s stuck for %.0f s and its clean-up could not be forced: %s", _describe(ref), age, exc)
            return [f"forcing the finalizer clean-up of {_describe(ref)} failed: {exc}"]
        self.forced.add(key)
        self.log.error("deletion of %s stuck for %.0f s (safety.deletion_timeout %g s): forced Chaos Mesh's finalizer clean-up; "
                       "its fault may still be applied, check the targets", _describe(ref), age, self.deletion_timeout_s)
        metrics.push("deletion_forced", extra={"by": "teardown"})
        return []

    def record(self, timeout_s: float, *, gave_up: bool) -> dict[str, Any]:
        """What `removal_failed` and the result say: every object still there, since when, the last error."""
        since = self.failing_since_wall
        return {
            "failed": gave_up,
            "still_on_cluster": [_ref_of(o) | {"deleting_since": o["metadata"].get("deletionTimestamp")} for o in self.left],
            "error": self.error,
            "failing_since": since,
            "timeout_s": timeout_s,
            "at": time.time(),
        }


def _ref_of(obj: dict[str, Any]) -> dict[str, Any]:
    """kind, namespace, name and what the object says of its run (experiment, tier, dag_id, run_id...)."""
    return {k: v for k, v in experiment_of_object(obj).items() if v is not None}
