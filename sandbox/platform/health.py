"""The edge's active health check of the frontends: whether a booking can get through each at all.

The edge asks every frontend's health endpoint four times a second (Envoy's active health
checking). A health endpoint answers for what the service's requests need (routes.py's booking
path) from what its connections showed: a frontend fails while none of the running booking-apis
its sidecar still connects to can write, i.e. has a running database primary, payment-processor
and booking-confirmation its own sidecar still connects to. Only connections count (those that
could not be made across a partition, either way, which outliers.py ejects), never an answer: an
HTTP abort, a slow or failing database are left to the request metrics, so a fault on one replica,
which every frontend suffers alike, fails no health check.

A frontend that fails is left out of the edge's pool until it passes again: when its sidecar
(and its booking-apis') tries the cut endpoints again, after 30 s, then 60 s... (outliers.py), so
a long cut is tried now and then, each time until the next check. While fewer than half of the
frontends pass, the edge ignores the check (outliers.py, EDGE_PANIC_THRESHOLD_PCT): a failing
majority is never routed around.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.platform.effects import PodRef
    from sandbox.platform.outliers import OutlierDetection
    from sandbox.platform.pods import SimPod

# Envoy's `health_checks.interval`, with `unhealthy_threshold` and `healthy_threshold` 1: the
# answer only changes on a connect failure or the end of an ejection, never at random.
HEALTH_CHECK_INTERVAL_S = 0.25
# The services the edge sends customers to, whose endpoints it checks.
CHECKED = ("web-frontend",)
# Where the database's writes go (routes.py's `database_write`).
PRIMARY = "database primary"
# For each service with a health endpoint here, the services its requests need: one endpoint of
# each its sidecar has not ejected for connect failures, itself passing when listed here.
NEEDS: dict[str, tuple[str, ...]] = {
    "web-frontend": ("booking-api",),
    "booking-api": (PRIMARY, "payment-processor", "booking-confirmation"),
}


class EdgeHealthCheck:
    def __init__(self, outliers: OutlierDetection) -> None:
        self.outliers = outliers
        # The frontends whose last check failed.
        self.failing: frozenset[PodRef] = frozenset()
        self._next_check: float | None = None

    def tick(self, now: float, endpoints: Callable[[str], list[SimPod]], primary: SimPod | None) -> None:
        """Check every frontend when a check is due (`endpoints`: a Service's current endpoints)."""
        if self._next_check is not None and now < self._next_check - 1e-9:
            return
        # On the interval's own cadence (not the tick's); a check missed in a stall is not replayed.
        due = (now if self._next_check is None else self._next_check) + HEALTH_CHECK_INTERVAL_S
        self._next_check = due if due > now else now + HEALTH_CHECK_INTERVAL_S

        def passes(pod: SimPod) -> bool:
            if not pod.serving:
                return False
            for need in NEEDS.get(pod.service, ()):
                candidates = ([primary] if primary is not None else []) if need == PRIMARY else endpoints(need)
                if not any(not self.outliers.unreachable(pod.ref, other.ref, now) and passes(other) for other in candidates):
                    return False
            return True

        self.failing = frozenset(pod.ref for service in CHECKED for pod in endpoints(service) if not passes(pod))
