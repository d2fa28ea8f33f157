"""The dead man's switch: remove every active fault of ours whose monitor stopped renewing its heartbeat.

Meant to run apart from Airflow (`chaosctl watchdog`, a Deployment in the cluster): when the
scheduler, triggerer or workers die mid-fault, nothing watches the thresholds any more, and the
fault would last until Chaos Mesh's own `duration`. The watchdog bounds that to about
`grace + interval` after the last renewal. The inject task writes the first heartbeat with a
longer promise (the policy's `safety.monitor_handover`): the monitor task has to be scheduled and
its trigger picked up by a triggerer (with the KubernetesExecutor, a pod started) before it beats.

Ages are measured between the heartbeat's `renewTime` (written with the monitor's clock) or the
object's `creationTimestamp` (the API server's) and the watchdog's clock: the hosts must keep time
(NTP), as Kubernetes leader election also assumes.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.emergency import ObjectRef, owned_objects
from chaos_engineering.heartbeat import INJECT_HOLDER_PREFIX, Beat, Heartbeat
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.triggers import _fault_state

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 20.0
DEFAULT_INTERVAL_S = 5.0


@dataclass(frozen=True)
class Removal:
    fault: ObjectRef
    reason: str


@dataclass
class Sweep:
    at: float
    checked: int = 0
    removed: list[Removal] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Read in the chaos namespace for the metrics (None: not read, or unreadable).
    halted: bool | None = None
    lock_held: bool | None = None


def _parse_time(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def stale_reason(obj: dict[str, Any], beat: Beat | None, grace_s: float, now: dt.datetime) -> str | None:
    """Why this fault must go (None: keep it). Pure, for unit tests."""
    state = _fault_state(obj)
    if state != "active":
        return None  # being deleted already, or Chaos Mesh ended it (maintenance removes those)
    if beat is not None:
        if beat.fresh(now, grace_s):
            return None
        if beat.holder.startswith(INJECT_HOLDER_PREFIX):
            return (f"heartbeat {beat.age_s(now):.1f} s old, written at injection (hand-over {beat.interval_s} s): "
                    "its monitor never started")
        return f"heartbeat {beat.age_s(now):.1f} s old (grace {grace_s:g} s): its monitor is gone"
    created = _parse_time(obj["metadata"].get("creationTimestamp"))
    age = (now - created).total_seconds() if created else float("inf")
    return f"no heartbeat, created {age:.1f} s ago (grace {grace_s:g} s): nothing monitors it" if age > grace_s else None


def sweep(hook: ChaosMeshHook, grace_s: float = DEFAULT_GRACE_S, now: dt.datetime | None = None, namespace: str | None = None) -> Sweep:
    """One pass: list our chaos objects, read each heartbeat, delete the unwatched ones; with
    `namespace` (the chaos namespace), also read the halt flag and the lock for the metrics."""
    result = Sweep(at=time.time())
    now = now or dt.datetime.now(dt.timezone.utc)
    if namespace:
        _read_flags(hook, namespace, now, result)
    for obj in owned_objects(hook, result.errors):
        ref = ObjectRef.of(obj)
        result.checked += 1
        try:
            beat = Heartbeat(hook, ref.kind, ref.name, ref.namespace).read()
            reason = stale_reason(obj, beat, grace_s, now)
            if reason is None:
                continue
            hook.delete(ChaosKind(ref.kind), ref.name, ref.namespace)
        except Exception as exc:
            result.errors.append(f"{ref.kind} {ref.namespace}/{ref.name}: {exc}")
            continue
        # The object is on its way out: the record is this log line, the metric and the run's
        # own failure (its monitor, if it ever comes back, sees the fault `gone`).
        log.warning("watchdog removed %s %s/%s of %s: %s", ref.kind, ref.namespace, ref.name, ref.run or "no run", reason)
        result.removed.append(Removal(ref, reason))
    return result


def _read_flags(hook: ChaosMeshHook, namespace: str, now: dt.datetime, result: Sweep) -> None:
    from chaos_engineering.halt import HaltFlag
    from chaos_engineering.lock import ExperimentLock

    try:
        result.halted = HaltFlag(hook, namespace).state().halted
    except Exception as exc:
        result.errors.append(f"cannot read the halt flag: {exc}")
    try:
        lock = ExperimentLock(hook, namespace).state()
        result.lock_held = lock is not None and not lock.expired(now)
    except Exception as exc:
        result.errors.append(f"cannot read the experiment lock: {exc}")


def push_sweep_metrics(result: Sweep, conn_id: str | None) -> None:
    """`chaos_watchdog_last_sweep_timestamp_seconds`, `chaos_watchdog_removals_total`, and the
    halt and lock as read (an unreadable one is not pushed: its last value ages). Never raises."""
    if not conn_id:
        return
    from chaos_engineering.notify.metrics import Update, push_updates

    increments = {"chaos_watchdog_removals": float(len(result.removed))} if result.removed else {}
    gauges = {"chaos_watchdog_last_sweep_timestamp_seconds": result.at}
    gauges |= {name: float(value) for name, value in (("chaos_halt_active", result.halted), ("chaos_lock_held", result.lock_held)) if value is not None}
    push_updates([Update({}, gauges, increments)], conn_id=conn_id, event="watchdog")


def run(
    hook: ChaosMeshHook,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    interval_s: float = DEFAULT_INTERVAL_S,
    stop: threading.Event | None = None,
    once: bool = False,
    pushgateway_conn_id: str | None = None,
    namespace: str | None = None,
) -> list[Sweep]:
    """Sweep every `interval_s` until `stop` is set (or once). A failing sweep is logged and the
    loop goes on: the watchdog must outlive an API server hiccup."""
    stop = stop or threading.Event()
    sweeps: list[Sweep] = []
    log.info("watchdog: grace %g s, sweep every %g s", grace_s, interval_s)
    while True:
        started = time.monotonic()
        try:
            result = sweep(hook, grace_s, namespace=namespace)
        except Exception as exc:
            log.error("watchdog sweep failed: %s", exc)
            result = Sweep(at=time.time(), errors=[str(exc)])
        for error in result.errors:
            log.error("watchdog: %s", error)
        push_sweep_metrics(result, pushgateway_conn_id)
        sweeps.append(result)
        del sweeps[:-100]
        if once or stop.wait(max(0.0, interval_s - (time.monotonic() - started))):
            return sweeps
