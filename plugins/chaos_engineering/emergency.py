"""Emergency stop: halt first, remove every chaos object of ours everywhere, free the lock; and resume."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.halt import HaltFlag, HaltState
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
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

#: How long Chaos Mesh gets to recover the faults before their finalizer is forced off.
RECOVERY_TIMEOUT_S = 15.0
# A fault created between the halt and our list (an inject that had passed its halt check just
# before) is caught by a later sweep; three sweeps cover that race with room to spare.
SWEEPS = 3


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
class StopReport:
    requested_by: str
    reason: str
    halt: HaltState | None = None
    removed: list[ObjectRef] = field(default_factory=list)
    forced: list[ObjectRef] = field(default_factory=list)
    lock_holder: str | None = None
    errors: list[str] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def seconds(self) -> float:
        return self.finished_at - self.started_at

    @property
    def runs(self) -> list[str]:
        """The Airflow runs whose faults were removed: their monitor sees the fault `gone` and fails."""
        return sorted({r.run for r in self.removed if r.run})

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested_by": self.requested_by,
            "reason": self.reason,
            "halt": self.halt.as_dict() if self.halt else None,
            "removed": [asdict(r) for r in self.removed],
            "forced": [asdict(r) for r in self.forced],
            "lock_holder": self.lock_holder,
            "runs": self.runs,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        lines = [f"emergency stop by {self.requested_by} ({self.reason}) in {self.seconds:.1f} s"]
        lines.append(f"  halt: {self.halt.describe() if self.halt else 'NOT SET (see errors)'}")
        lines.append(f"  removed {len(self.removed)} chaos object(s)" + "".join(f"\n    {r.kind} {r.namespace}/{r.name} {r.run}" for r in self.removed))
        if self.forced:
            lines.append(
                f"  FORCED the finalizer off {len(self.forced)} object(s) that Chaos Mesh did not recover in time: "
                "their faults may still be applied, check the targets by hand" + "".join(f"\n    {r.kind} {r.namespace}/{r.name}" for r in self.forced)
            )
        lines.append(f"  lock: {'released (held by ' + self.lock_holder + ')' if self.lock_holder else 'was free'}")
        lines += [f"  ERROR: {e}" for e in self.errors]
        return "\n".join(lines)


def owned_objects(hook: ChaosMeshHook, errors: list[str] | None = None) -> list[dict[str, Any]]:
    """Every chaos object this system created, of the five kinds, in every namespace."""
    found: list[dict[str, Any]] = []
    for kind in ChaosKind:
        try:
            items = hook.list(kind, None, OWNED_SELECTOR)
        except Exception as exc:
            if errors is None:
                raise
            errors.append(f"cannot list {kind.value}: {exc}")
            continue
        found += [item | {"kind": item.get("kind") or kind.value} for item in items]
    return found


def force_finalizers(hook: ChaosMeshHook, ref: ObjectRef) -> None:
    """Drop every finalizer: the object vanishes without Chaos Mesh's recovery (last resort)."""
    hook.patch(ChaosKind(ref.kind), ref.name, ref.namespace, {"metadata": {"finalizers": []}})


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


def emergency_stop(
    hook: ChaosMeshHook,
    policy: SafetyPolicy,
    who: str,
    why: str,
    *,
    recovery_timeout_s: float = RECOVERY_TIMEOUT_S,
    poll_interval_s: float = 0.2,
) -> StopReport:
    """Never raises for a cluster error: each failure is in `errors` and the rest still runs."""
    report = StopReport(requested_by=who, reason=why, started_at=time.time())
    # The halt first: from now on no plan or inject starts, so what we list below stays complete.
    try:
        report.halt = HaltFlag(hook, policy.chaos_namespace).set(who, why)
    except Exception as exc:
        report.errors.append(f"could not set the halt flag: {exc}")
    seen: set[tuple[str, str, str]] = set()
    for _ in range(SWEEPS):
        objects = [o for o in owned_objects(hook, report.errors) if (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) not in seen]
        if not objects:
            break
        refs = [ObjectRef.of(o) for o in objects]
        seen |= {(r.kind, r.namespace, r.name) for r in refs}
        asked = []
        for ref in refs:
            try:
                hook.delete(ChaosKind(ref.kind), ref.name, ref.namespace)
                asked.append(ref)
            except Exception as exc:
                report.errors.append(f"cannot delete {ref.kind} {ref.namespace}/{ref.name}: {exc}")
        deadline = time.monotonic() + recovery_timeout_s
        while (left := _still_there(hook, asked, [])) and time.monotonic() < deadline:
            time.sleep(poll_interval_s)
        for ref in left:
            try:
                force_finalizers(hook, ref)
                report.forced.append(ref)
                log.error("forced the finalizer off %s %s/%s: not recovered within %g s", ref.kind, ref.namespace, ref.name, recovery_timeout_s)
            except Exception as exc:
                report.errors.append(f"{ref.kind} {ref.namespace}/{ref.name} not recovered in {recovery_timeout_s:g} s and its finalizer could not be removed: {exc}")
        report.removed += asked
    try:
        held = ExperimentLock(hook, policy.chaos_namespace).force_release()
        report.lock_holder = held.holder if held else None
    except Exception as exc:
        report.errors.append(f"could not release the experiment lock: {exc}")
    report.finished_at = time.time()
    log.warning("%s", report.summary())
    return report


def resume(hook: ChaosMeshHook, policy: SafetyPolicy, who: str, why: str) -> HaltState:
    """Clear the halt, recording who resumed and why (who halted it stays on record)."""
    from chaos_engineering.notify import metrics

    state = HaltFlag(hook, policy.chaos_namespace).clear(who, why)
    metrics.push("resumed")  # never raises; the watchdog's next sweep reads the flag again anyway
    return state
