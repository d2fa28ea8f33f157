"""The dead man's switch's heartbeat: one Lease per active fault, or per scenario run for every
step's object (`heartbeat_of`), renewed by the side that monitors it."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta

from chaos_engineering.chaosmesh.constants import PLURALS, ChaosKind
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.render import LABEL_MANAGED_BY, LABEL_PREFIX, LABEL_RUN_KEY, LABEL_SCENARIO, MANAGED_BY

LABEL_HEARTBEAT_OF = f"{LABEL_PREFIX}/heartbeat-of"
ANNOTATION_FAULT_KIND = f"{LABEL_PREFIX}/fault-kind"
#: On a scenario run's heartbeat: the run key its steps' objects carry (LABEL_RUN_KEY).
ANNOTATION_SCENARIO_RUN_KEY = f"{LABEL_PREFIX}/scenario-run-key"


def heartbeat_name(kind: ChaosKind | str, name: str) -> str:
    """`chaos-heartbeat-<plural>-<fault name>`: the kind is in it, so two kinds never share one."""
    return f"chaos-heartbeat-{PLURALS[ChaosKind(kind)]}-{name}"[:253]


def default_holder() -> str:
    import os

    return f"{socket.gethostname()}/{os.getpid()}"


#: Holder prefix of the beat the inject task writes for the monitor to take over.
INJECT_HOLDER_PREFIX = "inject:"


@dataclass(frozen=True)
class Beat:
    holder: str
    renewed: dt.datetime | None
    #: The Lease's leaseDurationSeconds: the longest its writer promised to go without renewing.
    interval_s: int

    def age_s(self, now: dt.datetime) -> float:
        return float("inf") if self.renewed is None else (now - self.renewed).total_seconds()

    def allowed_age_s(self, grace_s: float) -> float:
        """How old this beat may get before its fault counts as unwatched: the grace, or longer
        when the writer promised longer (the inject task's hand-over to the monitor)."""
        return max(grace_s, float(self.interval_s))

    def fresh(self, now: dt.datetime, grace_s: float) -> bool:
        return self.age_s(now) <= self.allowed_age_s(grace_s)


class Heartbeat:
    """A fault's heartbeat Lease, in the fault's namespace. Renewal is idempotent (create or
    replace the same Lease); deleting one already gone is not an error."""

    def __init__(self, hook: ChaosMeshHook, kind: ChaosKind | str, name: str, namespace: str) -> None:
        self.hook = hook
        self.kind = ChaosKind(kind)
        self.fault_name = name
        self.namespace = namespace
        self.name = heartbeat_name(kind, name)

    def read(self) -> Beat | None:
        lease = self.hook.get_lease(self.name, self.namespace)
        if lease is None or lease.spec is None:
            return None
        return Beat(lease.spec.holder_identity or "", lease.spec.renew_time, lease.spec.lease_duration_seconds or 0)

    def _annotations(self) -> dict[str, str]:
        return {ANNOTATION_FAULT_KIND: self.kind.value}

    def renew(self, holder: str, interval_s: float, now: dt.datetime | None = None) -> None:
        """Beat now, promising the next beat within `interval_s` (the Lease's leaseDurationSeconds).
        A 409 is read again and written again (ChaosMeshHook.write_lease); refused every time, it
        raises, and the callers let the watchdog judge the stale beat."""
        now = now or dt.datetime.now(dt.timezone.utc)

        def beat(lease: V1Lease | None) -> V1Lease:
            return V1Lease(
                metadata=V1ObjectMeta(
                    name=self.name,
                    namespace=self.namespace,
                    labels={LABEL_MANAGED_BY: MANAGED_BY, LABEL_HEARTBEAT_OF: self.fault_name[:63]},
                    annotations=self._annotations(),
                    resource_version=lease.metadata.resource_version if lease else None,
                ),
                # leaseDurationSeconds: the promised cadence; the watchdog allows max(grace, it).
                spec=V1LeaseSpec(holder_identity=holder, renew_time=now, lease_duration_seconds=max(1, round(interval_s)),
                                 acquire_time=(lease.spec.acquire_time if lease and lease.spec else None) or now),
            )

        self.hook.write_lease(self.name, self.namespace, beat)

    def delete(self) -> bool:
        """The monitor is over (its fault gone, finished, or being removed): the heartbeat goes
        whoever renewed it last. A fault still standing without it is the watchdog's to remove."""
        return self.hook.delete_lease_while(self.name, self.namespace, lambda lease: True)


class ScenarioHeartbeat(Heartbeat):
    """The one heartbeat of a scenario run, for every step's object: `chaos-heartbeat-scenario-<run
    key>`, labelled with the scenario's name, annotated with the run key. The scenario's monitor
    renews it while any step's object stands; when the monitor dies it stops for all of them at
    once, and the watchdog removes them all."""

    def __init__(self, hook: ChaosMeshHook, scenario: str, run_key: str, namespace: str) -> None:
        self.hook = hook
        self.fault_name = scenario
        self.run_key = run_key
        self.namespace = namespace
        self.name = f"chaos-heartbeat-scenario-{run_key}"

    def _annotations(self) -> dict[str, str]:
        return {ANNOTATION_SCENARIO_RUN_KEY: self.run_key}


def heartbeat_of(hook: ChaosMeshHook, obj: dict) -> Heartbeat:
    """The heartbeat that watches chaos object `obj`: its scenario run's one Lease when it is a
    scenario's step (it carries the scenario's name and the run's key), else its own."""
    meta = obj["metadata"]
    labels = meta.get("labels") or {}
    if labels.get(LABEL_SCENARIO) and labels.get(LABEL_RUN_KEY):
        return ScenarioHeartbeat(hook, labels[LABEL_SCENARIO], labels[LABEL_RUN_KEY], meta["namespace"])
    return Heartbeat(hook, obj["kind"], meta["name"], meta["namespace"])


def heartbeats_of(hook: ChaosMeshHook, objects: Iterable[dict]) -> list[Heartbeat]:
    """The distinct heartbeats watching `objects` (`heartbeat_of`: one for a scenario run's steps)."""
    return list({h.name: h for h in (heartbeat_of(hook, obj) for obj in objects)}.values())
