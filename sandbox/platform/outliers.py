"""Outlier detection: the endpoints each caller has taken out of its pool, why, and until when.

Two detectors share one record of ejections, kept per (caller, endpoint) as Envoy keeps it per
proxy. A caller is a pod (its mesh sidecar) or None: the edge, the load balancer outside the
cluster that sends the customers' requests to web-frontend.

- Every caller ejects an endpoint it failed to *connect* to (Envoy's local-origin errors, split
  from the answers; the request itself goes to another replica where its caller has one, mesh.py).
  Slow or failing answers keep their endpoint inside the cluster, so that a fault on one replica
  (an HTTP abort, a delay, IO errors behind it) shows in full in its callers' metrics. The health
  endpoints the edge checks read these ejections (health.py).
- The edge also ejects a frontend whose *answers* fail far more often than its peers' (Envoy's
  failure-percentage detection, swept every interval): a frontend in a zone that lost what a
  booking needs fails its bookings while the other zones' do not, and the customers' traffic
  goes to those. A fault every frontend suffers alike (a backend failing for all of them) leaves
  no healthy peer to prefer, so nothing is ejected and the errors stay visible.

With every endpoint of a pool ejected, the whole pool is used (Istio's minHealthPercent 0); the
edge also leaves out the frontends failing its health check (health.py), and uses them all while
fewer than half are left (Envoy's healthy panic threshold).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.platform.effects import PodRef
    from sandbox.platform.pods import SimPod

# An ejection lasts BASE_EJECTION_S times the endpoint's ejections in a row, at most
# MAX_EJECTION_S (Envoy's defaults): a lasting outage is tried again less and less often.
BASE_EJECTION_S = 30.0
MAX_EJECTION_S = 300.0
# A caller (a sidecar, or the edge) ejects an endpoint it could not connect to this many times in
# a row (Envoy's `consecutive_local_origin_failure`): one, as a connection not made within the
# connect timeout (mesh.py) only happens across a partition here, and the request was retried
# elsewhere. A connection that succeeds, or a base ejection time back in the pool without another
# ejection, ends the run of ejections.
EJECT_AFTER_CONNECT_FAILURES = 1
# The edge's failure-percentage detection (Envoy's `failure_percentage_*`, `interval` and
# `max_ejection_percent`, set for a pool of a few frontends): every interval, an endpoint that
# answered at least EDGE_REQUEST_VOLUME requests, EDGE_FAILURE_PCT % or more of them with a 5xx
# or no answer, is ejected if another endpoint answered under the threshold. At most
# EDGE_MAX_EJECTION_PCT of the pool is ejected (at least one endpoint), so a failing majority is
# never routed around. An interval back in the pool, answering under the threshold, takes one off
# the endpoint's ejections in a row.
EDGE_INTERVAL_S = 10.0
EDGE_FAILURE_PCT = 15.0
EDGE_REQUEST_VOLUME = 50
EDGE_MAX_EJECTION_PCT = 50.0
# Envoy's healthy panic threshold at the edge: when fewer than this share of the frontends are
# left (ejected here, or failing the edge's health check: health.py), the edge uses them all, so
# that a failing majority is never routed around.
EDGE_PANIC_THRESHOLD_PCT = 50.0

EDGE = None


@dataclass
class _Answers:
    """What one endpoint answered the edge in the current interval, and its ejections in a row."""

    total: int = 0
    failed: int = 0
    ejections: int = 0

    @property
    def failure_pct(self) -> float:
        return 100.0 * self.failed / self.total


class OutlierDetection:
    def __init__(self) -> None:
        # Per (caller, endpoint): connect failures in a row, ejections for them in a row (and when
        # the last one ended), and until when the endpoint is ejected.
        self._connect_failures: dict[tuple[PodRef | None, PodRef], int] = {}
        self._connect_ejections: dict[tuple[PodRef | None, PodRef], tuple[int, float]] = {}
        self._ejected: dict[tuple[PodRef | None, PodRef], float] = {}
        self._ejections_end = 0.0
        # The edge's answers, by service and endpoint; the next sweep.
        self._answers: dict[str, dict[PodRef, _Answers]] = {}
        self._next_sweep: float | None = None

    @property
    def counting_connects(self) -> bool:
        """Whether some caller is on its way to ejecting an endpoint (connect failures in a row)."""
        return bool(self._connect_failures)

    def pool(self, caller: PodRef | None, endpoints: list[SimPod], now: float, *,
             unhealthy: Set[PodRef] = frozenset(), panic_pct: float = 0.0) -> list[SimPod]:
        """The endpoints `caller` picks from: those it has not ejected (nor found `unhealthy`), or
        all of them when that leaves none, or fewer than `panic_pct` % of them."""
        if self._ejected and self._ejections_end <= now:
            self._ejected.clear()  # all served: back to the plain pick (and no entries for dead pods)
        if not self._ejected and not unhealthy:
            return endpoints
        healthy = []
        for pod in endpoints:
            until = self._ejected.get((caller, pod.ref))
            if until is not None and until > now:
                continue
            if until is not None:  # back in the pool, with a clean record
                del self._ejected[(caller, pod.ref)]
            if pod.ref not in unhealthy:
                healthy.append(pod)
        if not healthy or 100 * len(healthy) < panic_pct * len(endpoints):
            return endpoints
        return healthy

    def connected(self, caller: PodRef | None, pod: PodRef, connected: bool, now: float) -> None:
        key = (caller, pod)
        if connected:
            self._connect_failures.pop(key, None)
            self._connect_ejections.pop(key, None)
            return
        if self._ejected.get(key, 0.0) > now:
            return
        failures = self._connect_failures.get(key, 0) + 1
        if failures >= EJECT_AFTER_CONNECT_FAILURES:
            self._connect_failures.pop(key, None)
            ejections, ended = self._connect_ejections.get(key, (0, 0.0))
            ejections = ejections + 1 if now - ended < BASE_EJECTION_S else 1
            until = now + _ejection_s(ejections)
            self._connect_ejections[key] = (ejections, until)
            self._eject(key, until)
        else:
            self._connect_failures[key] = failures

    def unreachable(self, caller: PodRef, pod: PodRef, now: float) -> bool:
        """Whether `caller`'s sidecar holds `pod` ejected now for connect failures."""
        return self._ejected.get((caller, pod), 0.0) > now

    def answered(self, service: str, pod: PodRef, failed: bool) -> None:
        """The edge got an answer (or none: `failed`) from an endpoint it picked."""
        answers = self._answers.setdefault(service, {}).setdefault(pod, _Answers())
        answers.total += 1
        answers.failed += failed

    def tick(self, now: float, endpoints: Callable[[str], list[SimPod]]) -> None:
        """Run the edge's sweeps that are due (`endpoints`: a Service's current endpoints)."""
        if self._next_sweep is None:
            self._next_sweep = now + EDGE_INTERVAL_S
        while self._next_sweep <= now:
            for service, answers in self._answers.items():
                self._sweep(answers, [pod.ref for pod in endpoints(service)], now)
            self._next_sweep += EDGE_INTERVAL_S

    def _sweep(self, answers: dict[PodRef, _Answers], pool: list[PodRef], now: float) -> None:
        counted = [(ref, answers[ref]) for ref in pool if ref in answers and answers[ref].total >= EDGE_REQUEST_VOLUME]
        failing = sorted(
            ((ref, record) for ref, record in counted if record.failure_pct >= EDGE_FAILURE_PCT),
            key=lambda item: -item[1].failure_pct,
        )
        # An outlier needs a peer that does better: a fault every endpoint shares is not routed around.
        if failing and len(failing) < len(counted):
            room = max(1, math.floor(len(pool) * EDGE_MAX_EJECTION_PCT / 100)) - sum(
                self._ejected.get((EDGE, ref), 0.0) > now for ref in pool)
            for ref, record in failing[:max(0, room)]:
                record.ejections += 1
                self._eject((EDGE, ref), now + _ejection_s(record.ejections))
        for ref, record in list(answers.items()):
            whole_interval_in_pool = self._ejected.get((EDGE, ref), 0.0) <= now - EDGE_INTERVAL_S
            if whole_interval_in_pool and (not record.total or record.failure_pct < EDGE_FAILURE_PCT):
                record.ejections = max(0, record.ejections - 1)
            if ref not in pool and not record.ejections:
                del answers[ref]  # gone from the Service with nothing to remember
            else:
                record.total = record.failed = 0

    def _eject(self, key: tuple[PodRef | None, PodRef], until: float) -> None:
        self._ejected[key] = max(until, self._ejected.get(key, 0.0))
        self._ejections_end = max(self._ejections_end, until)

    def ejected(self, now: float, callers: Iterable[PodRef | None]) -> set[PodRef]:
        """The endpoints that at least one of `callers` (None: the edge) has ejected now."""
        callers = set(callers)
        return {pod for (caller, pod), until in self._ejected.items() if until > now and caller in callers}

    def ejections(self, now: float) -> list[tuple[PodRef | None, PodRef, float]]:
        """Every ejection in force: (caller, endpoint, until)."""
        return [(caller, pod, until) for (caller, pod), until in self._ejected.items() if until > now]


def _ejection_s(ejections: int) -> float:
    return min(MAX_EJECTION_S, BASE_EJECTION_S * ejections)
