"""Fault effects: the interface between the emulated chaos controller and the simulated platform.

The chaos controller (sandbox.kubeapi) turns a Chaos Mesh object into one `Effect` per injection
and calls `PlatformControl.apply(fault_id, effect)`; deleting, pausing or expiring the object calls
`PlatformControl.clear(fault_id)`. Pod identities are `PodRef(namespace, name)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str


@dataclass(frozen=True)
class PodInfo:
    """What the API server needs to present a pod as core/v1 Pod."""

    namespace: str
    name: str
    uid: str
    service: str
    labels: dict[str, str]
    phase: str  # Pending | Running | Failed | Succeeded
    ready: bool
    restart_count: int
    created: float  # unix time
    pod_ip: str
    node_name: str
    containers: tuple[str, ...]
    zone: str = ""  # the node's topology.kubernetes.io/zone


@dataclass(frozen=True)
class PodKill:
    """pod-kill: the pod dies now and is replaced after the platform's restart delay."""

    pods: tuple[PodRef, ...]
    grace_period_s: int = 0


@dataclass(frozen=True)
class PodFailure:
    """pod-failure: the pods stay present but not ready and serve nothing until cleared."""

    pods: tuple[PodRef, ...]


@dataclass(frozen=True)
class ContainerKill:
    """container-kill: the named containers restart (readiness drops briefly, restart count rises)."""

    pods: tuple[PodRef, ...]
    containers: tuple[str, ...]


@dataclass(frozen=True)
class NetworkFault:
    """Traffic between `pods` and `peers` (None = every peer) suffers the given impairments.

    direction: "to" (pods -> peers), "from" (peers -> pods), "both".
    partition: no traffic at all in that direction (requests time out / fail).
    """

    pods: tuple[PodRef, ...]
    peers: tuple[PodRef, ...] | None = None
    direction: str = "to"
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    duplicate_pct: float = 0.0
    corrupt_pct: float = 0.0
    bandwidth_bps: float | None = None
    partition: bool = False


@dataclass(frozen=True)
class StressFault:
    """CPU load (percent of the pod's CPU, summed over workers) and memory pressure (bytes)."""

    pods: tuple[PodRef, ...]
    cpu_load_pct: float = 0.0
    memory_bytes: int = 0


@dataclass(frozen=True)
class IOFault:
    """Filesystem faults on the pods (the database is the only service whose requests touch disk)."""

    pods: tuple[PodRef, ...]
    delay_ms: float = 0.0
    error_pct: float = 0.0  # share of IO operations that fail (fault action with errno)


@dataclass(frozen=True)
class HTTPFault:
    """HTTP faults on requests served by (target=Request) or answered by (target=Response) the pods.

    routes: path patterns ("*" for all, glob syntax), methods: None for all.
    abort: the request fails; delay_ms: added latency; replace/patch: the answer is altered
    (the platform counts a replaced/patched status code >= 500 as an error).
    """

    pods: tuple[PodRef, ...]
    target: str = "Request"
    routes: tuple[str, ...] = ("*",)
    methods: tuple[str, ...] | None = None
    abort: bool = False
    delay_ms: float = 0.0
    replace_code: int | None = None
    patched: bool = False


Effect = PodKill | PodFailure | ContainerKill | NetworkFault | StressFault | IOFault | HTTPFault


@dataclass
class PlatformEvent:
    """Something the platform reports back (a pod died, was replaced, was OOM-killed)."""

    kind: str
    pod: PodRef
    message: str = ""
    details: dict = field(default_factory=dict)


class PlatformControl(Protocol):
    def pods(self) -> list[PodInfo]: ...

    def apply(self, fault_id: str, effect: Effect) -> None: ...

    def clear(self, fault_id: str) -> None: ...

    def active_faults(self) -> dict[str, Effect]: ...

    def delete_pod(self, pod: PodRef) -> None:
        """A DELETE of the pod through the API: the pod dies and is replaced like pod-kill."""

    def set_labels(self, pod: PodRef, labels: dict[str, str]) -> None:
        """A PATCH of the pod's metadata.labels through the API (tests relabel pods)."""
