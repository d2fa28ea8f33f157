"""A simulated pod: identity, lifecycle state, resource use and its own metrics."""

from __future__ import annotations

import random
import string
import uuid
from dataclasses import dataclass, field

from sandbox.platform.effects import PodInfo, PodRef
from sandbox.platform.stats import PodStats
from sandbox.platform.topology import ServiceSpec

_NAME_ALPHABET = string.ascii_lowercase + string.digits


def pod_name(spec: ServiceSpec, ordinal: int, rng: random.Random) -> str:
    """`<service>-<5 random>` like a ReplicaSet, `<service>-<ordinal>` like a StatefulSet."""
    if spec.stateful:
        return f"{spec.name}-{ordinal}"
    return f"{spec.name}-{''.join(rng.choices(_NAME_ALPHABET, k=5))}"


@dataclass(eq=False)
class SimPod:
    spec: ServiceSpec
    name: str
    uid: str
    ip: str
    node: str
    # Where the pod runs (its node's zone); routing and the zone metrics go by this, not by the
    # pod's label, which the API lets anyone change.
    zone: str
    created: float
    labels: dict[str, str]
    phase: str = "Pending"
    # The app's process is up: it answers probes and scrapes (a scrape of a pod that is not
    # serving gets 503, so Prometheus records up == 0).
    serving: bool = False
    # In the Service's endpoints: callers may pick it.
    ready: bool = False
    restart_count: int = 0
    # Bumped on every container (re)start so that lifecycle steps scheduled for an earlier
    # incarnation (e.g. "ready" after a restart) are ignored once the container died again.
    incarnation: int = 0
    # Faults (PodFailure) holding the containers down until they are cleared.
    failure_holds: set[str] = field(default_factory=set)
    # Stress faults whose stressor died with an OOM-killed container: Chaos Mesh does not
    # re-inject into the restarted container, so they no longer load this pod.
    spent_stressors: set[str] = field(default_factory=set)
    # CPU seconds the app burnt in the current tick, and the smoothed share of its limit.
    cpu_seconds: float = 0.0
    cpu_utilisation: float = 0.0
    memory_noise: float = 0.0
    # Latency multiplier for the app's own work (CPU contention, memory pressure).
    slowdown: float = 1.0
    # Exported gauges: CPU as a share of the limit, working set in bytes.
    cpu_ratio: float = 0.0
    memory_bytes: float = 0.0
    # Database only: "primary" or "replica", and how far a replica's replay lags behind.
    role: str | None = None
    replication_lag_s: float = 0.0
    # When the pod is expected to turn ready (None: not scheduled, e.g. held down by a fault).
    ready_at: float | None = None
    probe_carry: float = 0.0
    stats: PodStats = field(default_factory=PodStats)
    registry: object = None
    # Set once the pod is gone: until then a dead pod lingers in its Service's endpoints.
    gone: bool = False
    stale_until: float = 0.0

    @property
    def ref(self) -> PodRef:
        return PodRef(self.spec.namespace, self.name)

    @property
    def service(self) -> str:
        return self.spec.name

    def extra_gauges(self) -> dict[str, tuple[str, float]]:
        if self.role is None:
            return {}
        return {
            "database_primary": ("1 on the instance that takes writes.", float(self.role == "primary")),
            "database_replication_lag_seconds": (
                "How far this instance's replay lags the primary (0 on the primary).",
                self.replication_lag_s,
            ),
        }

    def info(self) -> PodInfo:
        return PodInfo(
            namespace=self.spec.namespace,
            name=self.name,
            uid=self.uid,
            service=self.spec.name,
            labels=dict(self.labels),
            phase=self.phase,
            ready=self.ready,
            restart_count=self.restart_count,
            created=self.created,
            pod_ip=self.ip,
            node_name=self.node,
            containers=(self.spec.name,),
            zone=self.zone,
        )


def new_uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))
