"""The booking platform's services, namespaces, nodes and zones, as CONTRACT.md fixes them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MiB = 1024 * 1024
GiB = 1024 * MiB

NAMESPACES = ("default", "kube-system", "chaos-engineering", "booking", "payments", "notifications")
NODES = ("sandbox-node-1", "sandbox-node-2", "sandbox-node-3")
ZONES = ("zone-a", "zone-b", "zone-c")
# The well-known label a cloud provider puts on its nodes; the sandbox's pods carry it too.
ZONE_LABEL = "topology.kubernetes.io/zone"
# One node per zone: losing a zone and losing its node are the same thing here.
NODE_ZONES: dict[str, str] = dict(zip(NODES, ZONES))
ZONE_NODES: dict[str, str] = dict(zip(ZONES, NODES))
PART_OF = "booking-platform"


@dataclass(frozen=True)
class ServiceSpec:
    """One Deployment (or the database StatefulSet) and the resources each of its pods gets."""

    name: str
    namespace: str
    replicas: int
    cpu_limit_cores: float
    memory_limit_bytes: int
    # What the app itself uses at the default load; memory stress comes on top of this.
    memory_working_set_bytes: int
    stateful: bool = False

    @property
    def labels(self) -> dict[str, str]:
        return {
            "app": self.name,
            "app.kubernetes.io/name": self.name,
            "app.kubernetes.io/part-of": PART_OF,
        }


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("web-frontend", "booking", 3, 0.5, 512 * MiB, 200 * MiB),
    ServiceSpec("booking-api", "booking", 3, 1.0, 768 * MiB, 350 * MiB),
    ServiceSpec("booking-worker", "booking", 2, 0.5, 512 * MiB, 180 * MiB),
    ServiceSpec("cache", "booking", 2, 0.5, 1 * GiB, 450 * MiB),
    ServiceSpec("database", "booking", 2, 2.0, 4 * GiB, 2560 * MiB, stateful=True),
    ServiceSpec("payment-processor", "payments", 3, 1.0, 512 * MiB, 220 * MiB),
    ServiceSpec("stripe-webhook-handler", "payments", 2, 0.25, 256 * MiB, 120 * MiB),
    ServiceSpec("booking-confirmation", "notifications", 2, 0.5, 384 * MiB, 160 * MiB),
    ServiceSpec("sms-notifications", "notifications", 2, 0.25, 256 * MiB, 110 * MiB),
    ServiceSpec("email-service", "notifications", 2, 0.25, 256 * MiB, 120 * MiB),
)

SERVICES_BY_NAME: dict[str, ServiceSpec] = {spec.name: spec for spec in SERVICES}


def node_labels(node: str) -> dict[str, str]:
    """The labels of a sandbox node, as Chaos Mesh's `nodeSelectors` match them."""
    return {"kubernetes.io/hostname": node, ZONE_LABEL: NODE_ZONES[node]}


def spread(services: Iterable[ServiceSpec]) -> dict[tuple[str, int], str]:
    """The zone of each replica (service, ordinal): round-robin over the zones, carried on from
    one service to the next, as a `topologySpreadConstraints` (maxSkew 1 on the zone) scheduler
    places a fresh cluster. A service of three replicas or more has one in every zone, each
    service is balanced within one pod, and so is the whole platform."""
    placement, slot = {}, 0
    for spec in services:
        for ordinal in range(spec.replicas):
            placement[(spec.name, ordinal)] = ZONES[slot % len(ZONES)]
            slot += 1
    return placement
