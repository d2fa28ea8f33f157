"""The dead man's switch: remove every active fault of ours whose monitor stopped renewing its heartbeat.

Meant to run apart from Airflow (`chaosctl watchdog`, a Deployment in the cluster): when the
scheduler, triggerer or workers die mid-fault, nothing watches the thresholds any more, and the
fault would last until Chaos Mesh's own `duration`. The watchdog bounds that to about
`grace + interval` after the last renewal. The inject task writes the first heartbeat with a
longer promise (the policy's `safety.monitor_handover`): the monitor task has to be scheduled and
its trigger picked up by a triggerer (with the KubernetesExecutor, a pod started) before it beats.

Each sweep also enforces what no single run can:

- the halt: while the emergency-stop halt flag is set, every fault of ours it sees is removed
  (reason `halted by X at T: why`), whatever its heartbeat. An unreadable flag keeps the state this
  watchdog read last (not halted if it never read one) and counts as an error: treating it as set
  would remove every running experiment on one failed Lease read, while the halt is also enforced
  by the stop's own sweeps, by inject's re-check after its create and by every monitor;
- stuck deletions: a fault whose deletion Chaos Mesh has not finished after the policy's
  `safety.deletion_timeout` (its finalizer holds it; the fault may still be applied) is counted in
  `chaos_fault_deletion_stuck` and has Chaos Mesh's clean-up forced (emergency.force_finalizers).

Its liveness: `chaos_watchdog_last_sweep_timestamp_seconds` is pushed only by a successful sweep
(every kind listed: it saw every fault of ours), `chaos_watchdog_errors_total` counts every failed
call. The alerts ChaosWatchdogHeartbeatMissing and ChaosWatchdogErroring read them.

Ages are measured between the heartbeat's `renewTime` (written with the monitor's clock) or the
object's `creationTimestamp`/`deletionTimestamp` (the API server's) and the watchdog's clock: the
hosts must keep time (NTP), as Kubernetes leader election also assumes.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.emergency import ObjectRef, deletion_age_s, force_finalizers, is_forced, owned_objects, parse_time
from chaos_engineering.halt import HaltState
from chaos_engineering.heartbeat import INJECT_HOLDER_PREFIX, Beat, heartbeat_of
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.triggers import DELETION_TIMEOUT_S, WATCHED_STATES, fault_state

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 20.0
DEFAULT_INTERVAL_S = 5.0
_parse_time = parse_time  # maintenance.py reads creation times with it


@dataclass(frozen=True)
class Removal:
    fault: ObjectRef
    reason: str


@dataclass
class Sweep:
    at: float
    checked: int = 0
    removed: list[Removal] = field(default_factory=list)
    #: Faults whose deletion outlasted the deletion timeout (forced now or earlier, still there).
    stuck: list[Removal] = field(default_factory=list)
    #: Those of `stuck` whose clean-up this sweep forced.
    forced: list[Removal] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: How many of the chaos kinds could be listed: a sweep that missed one did not see every fault.
    kinds_listed: int = 0
    # Read in the chaos namespace (None: not read, or unreadable).
    halt: HaltState | None = None
    lock_held: bool | None = None
    #: The halt this sweep enforced came from an earlier sweep (the flag was unreadable now).
    halt_assumed: bool = False

    @property
    def halted(self) -> bool | None:
        return None if self.halt is None or self.halt_assumed else self.halt.halted

    @property
    def successful(self) -> bool:
        return self.kinds_listed == len(ChaosKind)


def stale_reason(obj: dict[str, Any], beat: Beat | None, grace_s: float, now: dt.datetime, halt: HaltState | None = None) -> str | None:
    """Why this fault must go (None: keep it). Pure, for unit tests."""
    state = fault_state(obj)
    if state == "deleting":
        return None  # on its way out already: stuck_reason watches how long that takes
    if halt is not None and halt.halted:
        return halt.cause()
    if state not in WATCHED_STATES:
        return None  # Chaos Mesh ended it (maintenance removes those)
    if beat is not None:
        if beat.fresh(now, grace_s):
            return None
        if beat.holder.startswith(INJECT_HOLDER_PREFIX):
            return (f"heartbeat {beat.age_s(now):.1f} s old, written at injection (hand-over {beat.interval_s} s): "
                    "its monitor never started")
        return f"heartbeat {beat.age_s(now):.1f} s old (grace {grace_s:g} s): its monitor is gone"
    created = parse_time(obj["metadata"].get("creationTimestamp"))
    age = (now - created).total_seconds() if created else float("inf")
    return f"no heartbeat, created {age:.1f} s ago (grace {grace_s:g} s): nothing monitors it" if age > grace_s else None


def stuck_reason(obj: dict[str, Any], deletion_timeout_s: float, now: dt.datetime) -> str | None:
    """Why this fault's deletion counts as stuck (None: not being deleted, or not for long). Pure."""
    age = deletion_age_s(obj, now)
    if age is None or age <= deletion_timeout_s:
        return None
    return (f"deletion requested {age:.1f} s ago (safety.deletion_timeout {deletion_timeout_s:g} s) and Chaos Mesh's finalizer "
            "still holds it: its fault may still be applied")


def sweep(
    hook: ChaosMeshHook,
    grace_s: float = DEFAULT_GRACE_S,
    now: dt.datetime | None = None,
    namespace: str | None = None,
    *,
    deletion_timeout_s: float = DELETION_TIMEOUT_S,
    assumed_halt: HaltState | None = None,
) -> Sweep:
    """One pass: list our chaos objects, remove the unwatched ones (every one while halted), force
    the clean-up of stuck deletions. With `namespace` (the chaos namespace) it reads the halt flag
    and the lock; `assumed_halt` stands in for a flag that cannot be read."""
    result = Sweep(at=time.time())
    now = now or dt.datetime.now(dt.timezone.utc)
    if namespace:
        _read_flags(hook, namespace, now, result)
        if result.halt is None and assumed_halt is not None:
            result.halt, result.halt_assumed = assumed_halt, True
    halt = result.halt
    listed: list[ChaosKind] = []
    for obj in owned_objects(hook, result.errors, listed):
        ref = ObjectRef.of(obj)
        result.checked += 1
        try:
            stuck = stuck_reason(obj, deletion_timeout_s, now)
            if stuck is not None:
                _force(hook, obj, ref, stuck, result)
                continue
            halted = halt is not None and halt.halted
            beat = None if halted or fault_state(obj) not in WATCHED_STATES else heartbeat_of(hook, obj).read()
            reason = stale_reason(obj, beat, grace_s, now, halt)
            if reason is None:
                continue
            hook.delete(ChaosKind(ref.kind), ref.name, ref.namespace)
        except Exception as exc:
            result.errors.append(f"{ref.kind} {ref.namespace}/{ref.name}: {exc}")
            continue
        # The object is on its way out: the record is this log line, the metric and the run's
        # own failure (its monitor sees the halt, or the fault `gone`).
        log.warning("watchdog removed %s %s/%s of %s: %s", ref.kind, ref.namespace, ref.name, ref.run or "no run", reason)
        result.removed.append(Removal(ref, reason))
    result.kinds_listed = len(listed)
    return result


def _force(hook: ChaosMeshHook, obj: dict[str, Any], ref: ObjectRef, stuck: str, result: Sweep) -> None:
    result.stuck.append(Removal(ref, stuck))
    if is_forced(obj):
        # Asked before (by us, the monitor or the stop) and still there: Chaos Mesh is not acting.
        log.error("%s %s/%s: %s; its forced clean-up was requested and Chaos Mesh's controller has not acted "
                  "(is chaos-controller-manager running?): remove its finalizers by hand and check its targets "
                  "(docs/RUNBOOK.md#chaos-fault-deletion-stuck)", ref.kind, ref.namespace, ref.name, stuck)
        return
    if force_finalizers(hook, ref):
        log.error("watchdog forced Chaos Mesh's finalizer clean-up of %s %s/%s of %s: %s; check its targets by hand",
                  ref.kind, ref.namespace, ref.name, ref.run or "no run", stuck)
        result.forced.append(Removal(ref, stuck))


def _read_flags(hook: ChaosMeshHook, namespace: str, now: dt.datetime, result: Sweep) -> None:
    from chaos_engineering.halt import HaltFlag
    from chaos_engineering.lock import ExperimentLock

    try:
        result.halt = HaltFlag(hook, namespace).state()
    except Exception as exc:
        result.errors.append(f"cannot read the halt flag: {exc}")
    try:
        lock = ExperimentLock(hook, namespace).state()
        result.lock_held = lock is not None and not lock.expired(now)
    except Exception as exc:
        result.errors.append(f"cannot read the experiment lock: {exc}")


def sweep_updates(result: Sweep) -> list[Any]:
    """What one sweep pushes (pure): liveness and stuck deletions only from a successful sweep
    (an unsuccessful one must not look alive: its last values age), errors every sweep (so the
    counter exists from the first), the halt and the lock as read; and each removed fault's
    experiment as no longer active (pre-flight reads that record: notify/metrics.py)."""
    from chaos_engineering.notify.metrics import Update, labels_of

    gauges: dict[str, Any] = {}
    increments: dict[str, Any] = {"chaos_watchdog_errors": float(len(result.errors))}
    if result.successful:
        gauges |= {"chaos_watchdog_last_sweep_timestamp_seconds": result.at, "chaos_fault_deletion_stuck": float(len(result.stuck))}
    if result.halted is not None:
        gauges["chaos_halt_active"] = float(result.halted)
    if result.lock_held is not None:
        gauges["chaos_lock_held"] = float(result.lock_held)
    if result.removed:
        increments["chaos_watchdog_removals"] = float(len(result.removed))
    if result.forced:
        increments["chaos_fault_deletions_forced"] = {"watchdog": float(len(result.forced))}
        gauges["chaos_fault_deletion_last_forced_timestamp_seconds"] = result.at
    removed = [labels_of({"tier": r.fault.tier, "experiment": r.fault.experiment, "target_service": r.fault.target_service}) for r in result.removed]
    return [Update({}, gauges, increments)] + [Update(labels, {"chaos_experiment_active": 0.0}) for labels in removed if labels]


def push_sweep_metrics(result: Sweep, conn_id: str | None) -> None:
    """The sweep's metrics (sweep_updates) to the Pushgateway of `conn_id`. Never raises."""
    if not conn_id:
        return
    from chaos_engineering.notify.metrics import push_updates

    push_updates(sweep_updates(result), conn_id=conn_id, event="watchdog")


def run(
    hook: ChaosMeshHook,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    interval_s: float = DEFAULT_INTERVAL_S,
    stop: threading.Event | None = None,
    once: bool = False,
    pushgateway_conn_id: str | None = None,
    namespace: str | None = None,
    deletion_timeout_s: float = DELETION_TIMEOUT_S,
) -> list[Sweep]:
    """Sweep every `interval_s` until `stop` is set (or once). A failing sweep is logged and the
    loop goes on: the watchdog must outlive an API server hiccup."""
    stop = stop or threading.Event()
    sweeps: list[Sweep] = []
    known_halt: HaltState | None = None
    log.info("watchdog: grace %g s, sweep every %g s, deletions stuck after %g s", grace_s, interval_s, deletion_timeout_s)
    _check_pushgateway(pushgateway_conn_id)
    while True:
        started = time.monotonic()
        try:
            result = sweep(hook, grace_s, namespace=namespace, deletion_timeout_s=deletion_timeout_s, assumed_halt=known_halt)
        except Exception as exc:
            log.error("watchdog sweep failed: %s", exc)
            result = Sweep(at=time.time(), errors=[str(exc)])
        if result.halt is not None and not result.halt_assumed:
            known_halt = result.halt
        for error in result.errors:
            log.error("watchdog: %s", error)
        if result.halt_assumed:
            log.error("watchdog: the halt flag is unreadable; enforcing the last state read (%s)", result.halt.describe())
        if not result.successful:
            log.error("watchdog: this sweep did not list every chaos kind: it is not counted as a sweep "
                      "(chaos_watchdog_last_sweep_timestamp_seconds not advanced); check the service account's RBAC and the API server")
        push_sweep_metrics(result, pushgateway_conn_id)
        sweeps.append(result)
        del sweeps[:-100]
        if once or stop.wait(max(0.0, interval_s - (time.monotonic() - started))):
            return sweeps


def _check_pushgateway(conn_id: str | None) -> None:
    """Say at start when the liveness metrics will not reach Prometheus (its alerts then fire)."""
    if not conn_id:
        log.warning("watchdog: no Pushgateway connection (--pushgateway-conn-id): its liveness is not pushed and "
                    "ChaosWatchdogHeartbeatMissing fires; deploy/kubernetes/watchdog.yaml shows how to pass one")
        return
    from chaos_engineering.notify.delivery import connection_or_none

    if connection_or_none(conn_id, "Pushgateway") is None:
        log.error("watchdog: the Pushgateway connection %r is not defined (AIRFLOW_CONN_%s): its liveness is not pushed and "
                  "ChaosWatchdogHeartbeatMissing fires", conn_id, conn_id.upper())
