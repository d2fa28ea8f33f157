"""Emergency stop: halt first, remove every chaos object of ours everywhere, free the lock; and resume."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.halt import HaltFlag, HaltState
from chaos_engineering.hooks.chaos_mesh import REQUEST_TIMEOUT_S, ChaosMeshHook
from chaos_engineering.lock import ExperimentLock
from chaos_engineering.policy import SafetyPolicy
from chaos_engineering.render import (
    ANNOTATION_DAG_ID,
    ANNOTATION_RUN_ID,
    LABEL_EXPERIMENT,
    LABEL_TARGET,
    LABEL_TIER,
    OWNED_SELECTOR,
)

log = logging.getLogger(__name__)

#: How long Chaos Mesh gets to recover the faults before their finalizer clean-up is forced.
RECOVERY_TIMEOUT_S = 15.0
#: An inject that passed its halt check just before the halt may have its create in flight for up
#: to the client's request timeout: the stop sweeps until a sweep that starts at least this long
#: after the halt was written finds nothing (the second is the request's own latency).
IN_FLIGHT_S = REQUEST_TIMEOUT_S + 1.0
#: Pause between two sweeps while waiting out the in-flight window.
SWEEP_INTERVAL_S = 1.0
#: The stop gives up sweeping after this long, whatever it finds: a creator that ignores the halt
#: must not keep it running forever (the watchdog goes on removing faults while the halt stands).
STOP_BOUND_S = 60.0
#: How long Chaos Mesh's controller gets to act on the forced clean-up before the stop reports it.
FORCED_WAIT_S = 10.0

#: Chaos Mesh's documented forced clean-up (controllers/common/finalizers): on an object being
#: deleted, its controller drops the finalizers without waiting for the recovery.
ANNOTATION_CLEAN_FINALIZER = "chaos-mesh.chaos-mesh.org/cleanFinalizer"
CLEAN_FINALIZER_FORCED = "forced"


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    name: str
    namespace: str
    uid: str = ""
    dag_id: str = ""
    run_id: str = ""
    experiment: str = ""
    tier: str = ""
    target_service: str = ""

    @classmethod
    def of(cls, obj: dict[str, Any]) -> ObjectRef:
        meta = obj["metadata"]
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        return cls(
            kind=obj["kind"],
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta.get("uid", ""),
            dag_id=annotations.get(ANNOTATION_DAG_ID, ""),
            run_id=annotations.get(ANNOTATION_RUN_ID, ""),
            experiment=labels.get(LABEL_EXPERIMENT, ""),
            tier=labels.get(LABEL_TIER, ""),
            target_service=labels.get(LABEL_TARGET, ""),
        )

    @property
    def run(self) -> str:
        return f"{self.dag_id}/{self.run_id}" if self.dag_id else ""


@dataclass
class StopSweep:
    """One pass of the stop: when it started (seconds after the halt was written) and what it did."""

    at_s: float
    removed: list[ObjectRef] = field(default_factory=list)
    forced: list[ObjectRef] = field(default_factory=list)
    listed_every_kind: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"at_s": round(self.at_s, 3), "removed": [asdict(r) for r in self.removed], "forced": [asdict(r) for r in self.forced],
                "listed_every_kind": self.listed_every_kind}


@dataclass
class StopReport:
    requested_by: str
    reason: str
    halt: HaltState | None = None
    removed: list[ObjectRef] = field(default_factory=list)
    forced: list[ObjectRef] = field(default_factory=list)
    sweeps: list[StopSweep] = field(default_factory=list)
    lock_holder: str | None = None
    errors: list[str] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def seconds(self) -> float:
        return self.finished_at - self.started_at

    @property
    def runs(self) -> list[str]:
        """The Airflow runs whose faults were removed: their monitor sees the halt and fails."""
        return sorted({r.run for r in self.removed if r.run})

    def error(self, message: str) -> None:
        """Once each: a sweep that fails the same way twenty times is one error to act on."""
        if message not in self.errors:
            self.errors.append(message)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested_by": self.requested_by,
            "reason": self.reason,
            "halt": self.halt.as_dict() if self.halt else None,
            "removed": [asdict(r) for r in self.removed],
            "forced": [asdict(r) for r in self.forced],
            "sweeps": [s.as_dict() for s in self.sweeps],
            "lock_holder": self.lock_holder,
            "runs": self.runs,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        lines = [f"emergency stop by {self.requested_by} ({self.reason}) in {self.seconds:.1f} s"]
        lines.append(f"  halt: {self.halt.describe() if self.halt else 'NOT SET (see errors)'}")
        lines.append(f"  removed {len(self.removed)} chaos object(s)" + "".join(f"\n    {r.kind} {r.namespace}/{r.name} {r.run}" for r in self.removed))
        lines += _sweep_lines(self.sweeps)
        if self.forced:
            lines.append(
                f"  FORCED Chaos Mesh's finalizer clean-up of {len(self.forced)} object(s) it did not recover in time: "
                "their faults may still be applied, check the targets by hand" + "".join(f"\n    {r.kind} {r.namespace}/{r.name}" for r in self.forced)
            )
        lines.append(f"  lock: {'released (held by ' + self.lock_holder + ')' if self.lock_holder else 'was free'}")
        lines += [f"  ERROR: {e}" for e in self.errors]
        return "\n".join(lines)


def _sweep_lines(sweeps: list[StopSweep]) -> list[str]:
    """One line per sweep that found something; a run of empty sweeps is one line."""
    lines: list[str] = []
    empty: list[tuple[int, StopSweep]] = []

    def flush() -> None:
        if empty:
            (first, a), (last, b) = empty[0], empty[-1]
            which = f"sweep {first}" if first == last else f"sweeps {first}-{last}"
            when = f"+{a.at_s:.1f} s" if first == last else f"+{a.at_s:.1f} to +{b.at_s:.1f} s"
            lines.append(f"  {which} ({when} after the halt): nothing found")
            empty.clear()

    for number, sweep in enumerate(sweeps, 1):
        if not sweep.removed and sweep.listed_every_kind:
            empty.append((number, sweep))
            continue
        flush()
        found = ", ".join(f"{r.kind} {r.namespace}/{r.name}" for r in sweep.removed) or "nothing"
        partial = "" if sweep.listed_every_kind else " (some kinds could not be listed)"
        lines.append(f"  sweep {number} (+{sweep.at_s:.1f} s after the halt): removed {len(sweep.removed)}: {found}{partial}")
    flush()
    return lines


def owned_objects(hook: ChaosMeshHook, errors: list[str] | None = None, listed: list[ChaosKind] | None = None) -> list[dict[str, Any]]:
    """Every chaos object this system created, of the five kinds, in every namespace; `listed`
    receives each kind that could be listed (a failed one is in `errors`)."""
    found: list[dict[str, Any]] = []
    for kind in ChaosKind:
        try:
            items = hook.list(kind, None, OWNED_SELECTOR)
        except Exception as exc:
            if errors is None:
                raise
            errors.append(f"cannot list {kind.value}: {exc}")
            continue
        if listed is not None:
            listed.append(kind)
        found += [item | {"kind": item.get("kind") or kind.value} for item in items]
    return found


def parse_time(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def deletion_age_s(obj: dict[str, Any], now: dt.datetime) -> float | None:
    """Seconds since the API server marked `obj` for deletion; None when it is not being deleted."""
    since = parse_time(obj.get("metadata", {}).get("deletionTimestamp"))
    return None if since is None else (now - since).total_seconds()


def is_forced(obj: dict[str, Any]) -> bool:
    """Whether Chaos Mesh's forced finalizer clean-up was asked for on `obj` (by anyone)."""
    return (obj.get("metadata", {}).get("annotations") or {}).get(ANNOTATION_CLEAN_FINALIZER) == CLEAN_FINALIZER_FORCED


def force_finalizers(hook: ChaosMeshHook, ref: ObjectRef) -> bool:
    """Chaos Mesh's documented last resort for a deletion its finalizer holds: annotate the object
    `chaos-mesh.chaos-mesh.org/cleanFinalizer: forced`; Chaos Mesh's controller then drops the
    finalizers without waiting for the recovery, and the object goes. Its fault MAY STAY APPLIED on
    the targets: check them by hand (docs/RUNBOOK.md). The deletion is asked for first (Chaos Mesh
    honours the annotation only on an object being deleted). Idempotent; False when the object was
    already gone. It needs Chaos Mesh's controller running: with it down the object stays, and the
    stuck-deletion alert keeps firing. The one way this system forces a clean-up (stop, watchdog,
    monitor)."""
    kind = ChaosKind(ref.kind)
    if not hook.delete(kind, ref.name, ref.namespace):
        return False
    try:
        hook.patch(kind, ref.name, ref.namespace, {"metadata": {"annotations": {ANNOTATION_CLEAN_FINALIZER: CLEAN_FINALIZER_FORCED}}})
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _still_there(hook: ChaosMeshHook, refs: list[ObjectRef], errors: list[str]) -> list[ObjectRef]:
    left = []
    for ref in refs:
        try:
            obj = hook.get(ChaosKind(ref.kind), ref.name, ref.namespace)
        except Exception as exc:
            errors.append(f"cannot read {ref.kind} {ref.namespace}/{ref.name}: {exc}")
            left.append(ref)
            continue
        if obj is not None and obj["metadata"].get("uid", "") in ("", ref.uid):
            left.append(ref)
    return left


def _wait_gone(hook: ChaosMeshHook, refs: list[ObjectRef], timeout_s: float, poll_interval_s: float) -> list[ObjectRef]:
    deadline = time.monotonic() + timeout_s
    while (left := _still_there(hook, refs, [])) and time.monotonic() < deadline:
        time.sleep(poll_interval_s)
    return left


def _key(ref: ObjectRef) -> tuple[str, str, str, str]:
    return ref.kind, ref.namespace, ref.name, ref.uid


def _remove(hook: ChaosMeshHook, refs: list[ObjectRef], sweep: StopSweep, report: StopReport, recovery_timeout_s: float, poll_interval_s: float) -> None:
    """Delete, wait for Chaos Mesh's recovery, force the clean-up of what it did not recover."""
    asked = []
    for ref in refs:
        try:
            hook.delete(ChaosKind(ref.kind), ref.name, ref.namespace)
            asked.append(ref)
        except Exception as exc:
            report.error(f"cannot delete {ref.kind} {ref.namespace}/{ref.name}: {exc}")
    sweep.removed += asked
    report.removed += asked
    for ref in _wait_gone(hook, asked, recovery_timeout_s, poll_interval_s):
        try:
            force_finalizers(hook, ref)
        except Exception as exc:
            report.error(f"{ref.kind} {ref.namespace}/{ref.name} not recovered in {recovery_timeout_s:g} s and its clean-up could not be forced: {exc}; "
                         "remove its finalizers by hand and check its targets (docs/RUNBOOK.md#chaos-fault-deletion-stuck)")
            continue
        sweep.forced.append(ref)
        report.forced.append(ref)
        log.error("forced Chaos Mesh's finalizer clean-up of %s %s/%s: not recovered within %g s; its fault may still be applied",
                  ref.kind, ref.namespace, ref.name, recovery_timeout_s)


def emergency_stop(
    hook: ChaosMeshHook,
    policy: SafetyPolicy,
    who: str,
    why: str,
    *,
    recovery_timeout_s: float = RECOVERY_TIMEOUT_S,
    poll_interval_s: float = 0.2,
    in_flight_s: float = IN_FLIGHT_S,
    sweep_interval_s: float = SWEEP_INTERVAL_S,
    bound_s: float = STOP_BOUND_S,
) -> StopReport:
    """Halt, then sweep until a sweep that starts `in_flight_s` after the halt was written lists
    every kind and finds nothing new (a create in flight at the halt has landed or failed by
    then), within `bound_s`. Never raises for a cluster error: each failure is in `errors` and
    the rest still runs."""
    report = StopReport(requested_by=who, reason=why, started_at=time.time())
    # The halt first: from now on no plan or inject starts, and every monitor and the watchdog
    # remove the faults they see.
    try:
        report.halt = HaltFlag(hook, policy.chaos_namespace).set(who, why)
    except Exception as exc:
        report.error(f"could not set the halt flag: {exc}")
    halted = time.monotonic()
    handled: set[tuple[str, str, str, str]] = set()
    while True:
        started = time.monotonic()
        errors: list[str] = []
        listed: list[ChaosKind] = []
        found = [ObjectRef.of(o) for o in owned_objects(hook, errors, listed)]
        for error in errors:
            report.error(error)
        sweep = StopSweep(at_s=started - halted, listed_every_kind=len(listed) == len(ChaosKind))
        new = [r for r in found if _key(r) not in handled]
        handled |= {_key(r) for r in new}
        if new:
            _remove(hook, new, sweep, report, recovery_timeout_s, poll_interval_s)
        report.sweeps.append(sweep)
        if not new and sweep.listed_every_kind and started - halted >= in_flight_s:
            break
        if time.monotonic() - halted >= bound_s:
            report.error(
                f"gave up sweeping after {bound_s:g} s: "
                + ("some kinds could not be listed (see above)" if not sweep.listed_every_kind else "faults of ours kept appearing after the halt")
                + "; the watchdog keeps removing faults while the halt stands: run `chaosctl status` and find who creates them"
            )
            break
        time.sleep(sweep_interval_s)
    for ref in _wait_gone(hook, report.forced, FORCED_WAIT_S, poll_interval_s):
        report.error(
            f"{ref.kind} {ref.namespace}/{ref.name} is still there {FORCED_WAIT_S:g} s after its forced clean-up: Chaos Mesh's controller "
            "did not act on it (is chaos-controller-manager running?); remove its finalizers by hand and check its targets "
            "(docs/RUNBOOK.md#chaos-fault-deletion-stuck)"
        )
    try:
        held = ExperimentLock(hook, policy.chaos_namespace).force_release()
        report.lock_holder = held.holder if held else None
    except Exception as exc:
        report.error(f"could not release the experiment lock: {exc}")
    report.finished_at = time.time()
    log.warning("%s", report.summary())
    return report


def resume(hook: ChaosMeshHook, policy: SafetyPolicy, who: str, why: str) -> HaltState:
    """Clear the halt, recording who resumed and why (who halted it stays on record)."""
    from chaos_engineering.notify import metrics

    state = HaltFlag(hook, policy.chaos_namespace).clear(who, why)
    metrics.push("resumed")  # never raises; the watchdog's next sweep reads the flag again anyway
    return state
