"""The sticky halt flag: a Lease in the cluster that, while set, stops every plan and injection."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta

from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.render import LABEL_MANAGED_BY, LABEL_PREFIX, MANAGED_BY

HALT_NAME = "chaos-halt"
ANNOTATION_HALTED = f"{LABEL_PREFIX}/halted"
ANNOTATION_HALTED_BY = f"{LABEL_PREFIX}/halted-by"
ANNOTATION_HALTED_AT = f"{LABEL_PREFIX}/halted-at"
ANNOTATION_HALTED_REASON = f"{LABEL_PREFIX}/halted-reason"
ANNOTATION_RESUMED_BY = f"{LABEL_PREFIX}/resumed-by"
ANNOTATION_RESUMED_AT = f"{LABEL_PREFIX}/resumed-at"
ANNOTATION_RESUMED_REASON = f"{LABEL_PREFIX}/resumed-reason"
ANNOTATION_HISTORY = f"{LABEL_PREFIX}/halt-history"

#: Events kept in the history annotation (annotations are capped at 256 KiB in total).
HISTORY_LIMIT = 50


@dataclass(frozen=True)
class HaltState:
    halted: bool
    halted_by: str = ""
    halted_at: str = ""
    halted_reason: str = ""
    resumed_by: str = ""
    resumed_at: str = ""
    resumed_reason: str = ""
    history: list[dict[str, str]] = field(default_factory=list)

    def describe(self) -> str:
        if self.halted:
            return f"HALTED by {self.halted_by} at {self.halted_at}: {self.halted_reason}"
        if self.resumed_at:
            return f"not halted (resumed by {self.resumed_by} at {self.resumed_at}: {self.resumed_reason}; last halted by {self.halted_by} at {self.halted_at}: {self.halted_reason})"
        return "not halted"

    def cause(self) -> str:
        """Who halted, when and why, for the messages of every component that enforces the halt."""
        return f"halted by {self.halted_by or 'unknown'} at {self.halted_at or 'unknown time'}: {self.halted_reason or 'no reason given'}"

    def as_dict(self, *, history: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if history or k != "history"}


NOT_HALTED = HaltState(halted=False)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def _state(lease: V1Lease | None) -> HaltState:
    if lease is None:
        return NOT_HALTED
    a = lease.metadata.annotations or {}
    try:
        history = json.loads(a.get(ANNOTATION_HISTORY) or "[]")
    except ValueError:
        history = []
    return HaltState(
        halted=a.get(ANNOTATION_HALTED) == "true",
        halted_by=a.get(ANNOTATION_HALTED_BY, ""),
        halted_at=a.get(ANNOTATION_HALTED_AT, ""),
        halted_reason=a.get(ANNOTATION_HALTED_REASON, ""),
        resumed_by=a.get(ANNOTATION_RESUMED_BY, ""),
        resumed_at=a.get(ANNOTATION_RESUMED_AT, ""),
        resumed_reason=a.get(ANNOTATION_RESUMED_REASON, ""),
        history=history,
    )


class HaltFlag:
    """Stored in the cluster so every Airflow deployment, `chaosctl` and the watchdog see the
    same flag. The Lease is never deleted: resuming flips the flag and records who resumed,
    keeping who halted it and a bounded history of both."""

    def __init__(self, hook: ChaosMeshHook, namespace: str, name: str = HALT_NAME) -> None:
        self.hook = hook
        self.namespace = namespace
        self.name = name

    def state(self) -> HaltState:
        return _state(self.hook.get_lease(self.name, self.namespace))

    def set(self, who: str, why: str) -> HaltState:
        """Halt. Setting it again keeps the first halt's who/when/why (the history gets both)."""

        def change(current: HaltState, annotations: dict[str, str]) -> str | None:
            if not current.halted:
                annotations |= {ANNOTATION_HALTED: "true", ANNOTATION_HALTED_BY: who, ANNOTATION_HALTED_AT: _now(), ANNOTATION_HALTED_REASON: why}
            return annotations[ANNOTATION_HALTED_BY]

        return self._write("halt", who, why, change)

    def clear(self, who: str, why: str) -> HaltState:
        """Resume; records who and why beside (not instead of) who halted it."""

        def change(current: HaltState, annotations: dict[str, str]) -> str | None:
            annotations |= {ANNOTATION_HALTED: "false", ANNOTATION_RESUMED_BY: who, ANNOTATION_RESUMED_AT: _now(), ANNOTATION_RESUMED_REASON: why}
            return None

        return self._write("resume", who, why, change)

    def _write(self, action: str, who: str, why: str, change: Callable[[HaltState, dict[str, str]], str | None]) -> HaltState:
        if not who or not why:
            raise ValueError(f"{action}: say who you are and why (both are recorded)")

        def record(lease: V1Lease | None) -> V1Lease:
            current = _state(lease)
            annotations = dict(lease.metadata.annotations or {}) if lease else {}
            holder = change(current, annotations)
            history = [*current.history, {"action": action, "by": who, "at": _now(), "reason": why}][-HISTORY_LIMIT:]
            annotations[ANNOTATION_HISTORY] = json.dumps(history)
            return V1Lease(
                metadata=V1ObjectMeta(
                    name=self.name,
                    namespace=self.namespace,
                    labels={LABEL_MANAGED_BY: MANAGED_BY},
                    annotations=annotations,
                    resource_version=lease.metadata.resource_version if lease else None,
                ),
                # holderIdentity shows the halter in `kubectl get lease`; the annotations are the record.
                spec=V1LeaseSpec(holder_identity=holder),
            )

        return _state(self.hook.write_lease(self.name, self.namespace, record))
