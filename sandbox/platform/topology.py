"""The booking platform's services, namespaces and nodes, as CONTRACT.md fixes them."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
GiB = 1024 * MiB

NAMESPACES = ("default", "kube-system", "chaos-engineering", "booking", "payments", "notifications")
NODES = ("sandbox-node-1", "sandbox-node-2", "sandbox-node-3")
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
