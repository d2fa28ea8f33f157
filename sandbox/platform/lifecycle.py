"""How pods come, die, restart and come back, and how the database fails over to its replica."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable

from sandbox.platform import exposition
from sandbox.platform.effects import PlatformEvent, PodRef
from sandbox.platform.pods import SimPod, new_uid, pod_name
from sandbox.platform.replication import Replication
from sandbox.platform.routes import ROUTES
from sandbox.platform.stats import BOOKING_OUTCOMES, PAYMENT_OUTCOMES, PodStats
from sandbox.platform.topology import NODES, ZONE_LABEL, ZONE_NODES, ServiceSpec

# kube-proxy removes a dead or unready pod from its Service this late: calls in between are
# refused, and callers retry them on another replica.
ENDPOINT_LAG_S = 0.5
# The ReplicaSet (or StatefulSet) controller creates the replacement this soon after a death.
CONTROLLER_REACTION_S = 0.2
# Of the restart delay, the share until the container runs (answers scrapes); the rest until
# its readiness probe passes.
START_SHARE = 0.4
DATABASE = "database"

ROUTES_BY_SERVICE: dict[str, tuple[str, ...]] = {}
for (_service, _path) in ROUTES:
    ROUTES_BY_SERVICE[_service] = ROUTES_BY_SERVICE.get(_service, ()) + (_path,)


class PodLifecycle:
    """The Platform's pods over time. Mixed into Platform, which owns the state declared here;
    every method runs under the Platform's lock."""

    now: float
    rng: random.Random
    restart_delay_s: float
    failover_after_s: float
    primary: str
    replication: Replication
    targets_version: int
    recent_events: deque[tuple[float, PlatformEvent]]
    _pods: dict[PodRef, SimPod]
    _ghosts: list[SimPod]
    _timeline: list[tuple[float, int, Callable[[], None]]]
    _sequence: itertools.count
    _hosts: dict[str, itertools.count]
    _undelivered: list[PlatformEvent]
    _primary_down_since: float | None

    def _at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timeline, (when, next(self._sequence), action))

    def _new_pod(self, spec: ServiceSpec, zone: str, *, ordinal: int = 0, name: str | None = None,
                 created: float | None = None, restart_count: int = 0) -> SimPod:
        while name is None or PodRef(spec.namespace, name) in self._pods:
            name = pod_name(spec, ordinal, self.rng)
        node = ZONE_NODES[zone]
        # Each node hands out addresses from its own pod CIDR, 10.244.<node>.0/24.
        host = next(self._hosts.setdefault(node, itertools.count()))
        pod = SimPod(
            spec=spec,
            name=name,
            uid=new_uid(self.rng),
            ip=f"10.244.{NODES.index(node)}.{2 + host % 250}",
            node=node,
            zone=zone,
            created=self.now if created is None else created,
            labels={**spec.labels, ZONE_LABEL: zone},
            restart_count=restart_count,
            probe_carry=self.rng.random(),
        )
        self._reset_stats(pod)
        pod.registry = exposition.pod_registry(pod)
        self._pods[pod.ref] = pod
        if spec.name == DATABASE:
            self._assign_roles()
        self._emit("PodCreated", pod)
        return pod

    def _reset_stats(self, pod: SimPod) -> None:
        """A (re)started process exports counters from zero, with every series already present."""
        pod.stats = PodStats()
        pod.stats.http.preset(ROUTES_BY_SERVICE.get(pod.spec.name, ()))
        if pod.spec.name == "booking-api":
            pod.stats.bookings = dict.fromkeys(BOOKING_OUTCOMES, 0)
        if pod.spec.name == "payment-processor":
            pod.stats.payments = dict.fromkeys(PAYMENT_OUTCOMES, 0)

    def _terminate(self, pod: SimPod, reason: str, grace_period_s: float) -> None:
        if grace_period_s <= 0:
            self._kill(pod, reason)
            return
        # Terminating: out of the endpoints at once, the process finishes within the grace period.
        pod.ready = False
        self._stopping(pod)
        pod.stale_until = self.now + ENDPOINT_LAG_S
        self._emit("Killing", pod, f"{reason}, grace period {grace_period_s}s")
        self._at(self.now + grace_period_s, lambda: self._kill(pod, reason))

    def _kill(self, pod: SimPod, reason: str) -> None:
        if pod.gone:
            return
        pod.gone = True
        pod.phase, pod.serving, pod.ready = "Failed", False, False
        self._stopping(pod)
        pod.stale_until = self.now + ENDPOINT_LAG_S
        del self._pods[pod.ref]
        self._ghosts.append(pod)
        self.targets_version += 1
        self._emit("PodDeleted", pod, reason)
        self._at(self.now + CONTROLLER_REACTION_S, lambda: self._replace(pod))

    def _replace(self, old: SimPod) -> None:
        # The replacement lands in the zone the dead pod left short: the one the spread
        # constraint allows (a StatefulSet's pod also follows its zonal volume there).
        if old.spec.stateful:
            # A StatefulSet brings the same identity back; the brief counts it as a restart.
            if old.ref in self._pods:
                return
            pod = self._new_pod(old.spec, old.zone, name=old.name, restart_count=old.restart_count + 1)
        else:
            pod = self._new_pod(old.spec, old.zone)
        self._boot(pod)

    def _boot(self, pod: SimPod) -> None:
        incarnation = pod.incarnation
        pod.ready_at = self.now + self.restart_delay_s
        self._at(self.now + START_SHARE * self.restart_delay_s, lambda: self._started(pod, incarnation))
        self._at(pod.ready_at, lambda: self._ready(pod, incarnation))

    def _current(self, pod: SimPod, incarnation: int) -> bool:
        return not pod.gone and pod.incarnation == incarnation and not pod.failure_holds

    def _started(self, pod: SimPod, incarnation: int) -> None:
        if self._current(pod, incarnation):
            if pod.phase != "Running":
                self.targets_version += 1
            pod.phase, pod.serving = "Running", True
            self._emit("Started", pod)

    def _ready(self, pod: SimPod, incarnation: int) -> None:
        if self._current(pod, incarnation):
            pod.ready, pod.ready_at = True, None
            self._emit("Ready", pod)

    def _restart_container(self, pod: SimPod, kind: str, message: str = "") -> None:
        pod.restart_count += 1
        pod.incarnation += 1
        pod.serving = pod.ready = False
        self._stopping(pod)
        pod.ready_at = None
        pod.stale_until = self.now + ENDPOINT_LAG_S
        pod.cpu_utilisation = 0.0
        self._reset_stats(pod)
        self._emit(kind, pod, message)
        if not pod.failure_holds:
            self._boot(pod)

    # -- the database's primary -------------------------------------------------------------

    def _database_pods(self) -> list[SimPod]:
        return [pod for pod in self._pods.values() if pod.spec.name == DATABASE]

    def _assign_roles(self) -> None:
        """Roles, and the `role` label an operator (Patroni, CloudNativePG) keeps on its pods."""
        for pod in self._database_pods():
            pod.role = "primary" if pod.name == self.primary else "replica"
            if pod.labels.get("role") != pod.role:
                changed = "role" in pod.labels  # a new pod is created with its label
                pod.labels = {**pod.labels, "role": pod.role}
                if changed:
                    self._emit("LabelsChanged", pod)

    def _stopping(self, pod: SimPod) -> None:
        """The primary stops taking (and shipping) writes: a crash, a kill or a failure."""
        if pod.spec.name == DATABASE and pod.name == self.primary:
            self.replication.primary_stopped(self.now)

    def _replicate(self) -> None:
        lags = {pod.name: pod.replication_lag_s for pod in self._database_pods() if pod.serving and pod.role == "replica"}
        self.replication.replay(lags, self.now)

    def _watch_primary(self) -> None:
        """Promote a ready replica once the primary has been unready for `failover_after_s`."""
        primary = self._pods.get(PodRef("booking", self.primary))
        if primary is not None and primary.ready:
            self._primary_down_since = None
            self.replication.primary_running()
            return
        if self._primary_down_since is None:
            self._primary_down_since = self.now
        if self.now < self._primary_down_since + self.failover_after_s:
            return
        replica = next((pod for pod in self._database_pods() if pod.ready and pod is not primary), None)
        if replica is not None:
            self.primary = replica.name
            self._primary_down_since = None
            lost = self.replication.promote(replica.name)
            self._assign_roles()
            self._emit("Failover", replica, f"{replica.name} promoted to primary; {len(lost)} unshipped commit(s) lost")

    def primary_outlook(self) -> tuple[float, SimPod | None]:
        """Seconds until some database instance takes writes, and which (inf, None: none will)."""
        primary = self._pods.get(PodRef("booking", self.primary))
        if primary is not None and primary.ready:
            return 0.0, primary
        down_since = self._primary_down_since if self._primary_down_since is not None else self.now
        failover_at = down_since + self.failover_after_s
        back_at = primary.ready_at if primary is not None and primary.ready_at is not None else math.inf
        replica = next((pod for pod in self._database_pods() if pod.ready and pod is not primary), None)
        if replica is not None and failover_at < back_at:
            return max(0.0, failover_at - self.now), replica
        if back_at < math.inf:
            return max(0.0, back_at - self.now), primary
        return math.inf, None

    # -- events ---------------------------------------------------------------------------

    def _emit(self, kind: str, pod: SimPod, message: str = "") -> None:
        event = PlatformEvent(kind=kind, pod=pod.ref, message=message, details={"service": pod.spec.name})
        self.recent_events.append((self.now, event))
        self._undelivered.append(event)
