"""The simulated booking platform: its pods and their lifecycle, the faults on them, and its load."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sandbox.platform import exposition
from sandbox.platform.effects import (
    ContainerKill,
    Effect,
    PlatformEvent,
    PodFailure,
    PodInfo,
    PodKill,
    PodRef,
)
from sandbox.platform.faults import FaultBook
from sandbox.platform.health import CHECKED
from sandbox.platform.lifecycle import DATABASE, PodLifecycle
from sandbox.platform.load import LoadGenerator, SteadyShare
from sandbox.platform.mesh import Mesh
from sandbox.platform.network import Shapers
from sandbox.platform.pods import SimPod
from sandbox.platform.replication import Replication
from sandbox.platform.routes import DECLINE_RATE, ROUTES
from sandbox.platform.stats import Ledger, Measurement
from sandbox.platform.topology import SERVICES, ServiceSpec, spread

log = logging.getLogger(__name__)

# After a pause longer than this (a suspended laptop), skip ahead instead of replaying the gap.
# Shorter stalls (a loaded machine starving the simulation for a few seconds) are replayed: a
# minute costs about 0.8 s of CPU, and dropping them would show a dip in bookings that no fault
# caused, which a pre-flight check rightly refuses.
MAX_CATCH_UP_S = 60.0
# Customers give up after this; nobody records what they saw (only the pods have metrics).
CLIENT_TIMEOUT_S = 30.0
# CPU an idle app burns anyway (GC, probes, logging), as a share of its limit.
IDLE_CPU = 0.03
# Memory beyond this share of the limit slows the app (GC pressure), up to x2.5 at the limit.
MEMORY_PRESSURE_FROM = 0.85


class PodNotFound(LookupError):
    """No pod of that namespace and name exists (anymore)."""


class PodNotServing(RuntimeError):
    """The pod exists but its app is down: a scrape of it fails."""


class WriteFailed(RuntimeError):
    """No database instance took the write (failover in progress, or the write failed)."""


class Platform(PodLifecycle):
    """Implements `PlatformControl` for the emulated API server, and runs the simulation.

    Time only moves through `step(now)` (the sandbox server calls it with the wall clock every
    tick) or `simulate(seconds)` (tests, in virtual time). Thread-safe: the API server calls in
    from its worker threads.
    """

    def __init__(
        self,
        *,
        rate: float = 20.0,
        restart_delay_s: float = 3.0,
        failover_after_s: float = 1.5,
        probe_interval_s: float = 2.0,
        tick_s: float = 0.1,
        seed: int | None = None,
        start_time: float | None = None,
        services: tuple[ServiceSpec, ...] = SERVICES,
    ) -> None:
        """`services` is CONTRACT.md's topology; tests pass another one (e.g. a service with a
        single replica, so that all of it lives in one zone)."""
        self.rate = rate
        self.restart_delay_s = restart_delay_s
        self.failover_after_s = failover_after_s
        self.probe_interval_s = probe_interval_s
        self.tick_s = tick_s
        self.rng = random.Random(seed)
        self.now = time.time() if start_time is None else float(start_time)
        self.faults = FaultBook()
        self.shapers = Shapers()
        self.ledger = Ledger()
        self.mesh = Mesh(self, ROUTES)
        self.load = LoadGenerator(rate, self.rng)
        self.declines = SteadyShare(DECLINE_RATE, self.rng)
        self.primary = f"{DATABASE}-0"
        self.replication = Replication()
        # Bumped whenever the set of scrape targets changes (the server rewrites file_sd then).
        self.targets_version = 0
        self.recent_events: deque[tuple[float, PlatformEvent]] = deque(maxlen=200)
        self._lock = threading.RLock()
        self._listeners: list[Callable[[PlatformEvent], None]] = []
        self._undelivered: list[PlatformEvent] = []
        self._pods: dict[PodRef, SimPod] = {}
        self._ghosts: list[SimPod] = []
        self._timeline: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._hosts: dict[str, itertools.count] = {}
        self._endpoints: dict[str, list[SimPod]] | None = None
        self._primary_down_since: float | None = None
        self.services = services
        # Replicas per (zone, namespace, service) as the spread placed them; replacements keep it.
        self.zone_replicas: dict[tuple[str, str, str], int] = {}
        placement = spread(services)
        for spec in services:
            for ordinal in range(spec.replicas):
                zone = placement[(spec.name, ordinal)]
                key = (zone, spec.namespace, spec.name)
                self.zone_replicas[key] = self.zone_replicas.get(key, 0) + 1
                pod = self._new_pod(spec, zone, ordinal=ordinal, created=self.now - self.rng.uniform(3_600, 259_200))
                pod.phase, pod.serving, pod.ready = "Running", True, True
        self._assign_roles()
        # The initial pods predate every listener: nobody is told they were "created".
        self._undelivered.clear()

    # -- PlatformControl -----------------------------------------------------------------

    def pods(self) -> list[PodInfo]:
        with self._lock:
            return [pod.info() for pod in self._pods.values()]

    def apply(self, fault_id: str, effect: Effect) -> None:
        with self._transaction():
            if fault_id in self.faults.effects:
                self._clear(fault_id)
            self.faults.add(fault_id, effect)
            targets = [self._pods[ref] for ref in effect.pods if ref in self._pods]
            if isinstance(effect, PodKill):
                for pod in targets:
                    self._terminate(pod, "pod-kill", effect.grace_period_s)
            elif isinstance(effect, ContainerKill):
                for pod in targets:
                    if not effect.containers or pod.spec.name in effect.containers:
                        self._restart_container(pod, "ContainerKilled", f"container-kill by {fault_id}")
            elif isinstance(effect, PodFailure):
                for pod in targets:
                    first = not pod.failure_holds
                    pod.failure_holds.add(fault_id)
                    if first:
                        self._restart_container(pod, "PodFailure", f"pod-failure by {fault_id}")
            for pod in targets:
                self._emit("FaultApplied", pod, f"{type(effect).__name__} {fault_id}")

    def clear(self, fault_id: str) -> None:
        with self._transaction():
            self._clear(fault_id)

    def active_faults(self) -> dict[str, Effect]:
        with self._lock:
            return dict(self.faults.effects)

    def delete_pod(self, pod: PodRef) -> None:
        with self._transaction():
            if pod not in self._pods:
                raise PodNotFound(f"pod {pod.namespace}/{pod.name} does not exist")
            self._terminate(self._pods[pod], "deleted through the API", 0)

    def set_labels(self, pod: PodRef, labels: dict[str, str]) -> None:
        with self._transaction():
            if pod not in self._pods:
                raise PodNotFound(f"pod {pod.namespace}/{pod.name} does not exist")
            self._pods[pod].labels = dict(labels)
            self._emit("LabelsChanged", self._pods[pod])

    # -- the DR probe's canary bookings ------------------------------------------------------

    def write_canary(self) -> dict:
        """Commit one canary booking on the primary, as the booking path's write does (IO faults
        and links included) but without the driver's retries: a drill sees the outage as it is."""
        with self._transaction():
            wait, primary = self.primary_outlook()
            if primary is None or wait > 0:
                raise WriteFailed("no database instance takes writes (failover in progress)")
            reply = self.mesh.call(None, DATABASE, "/write", timeout=2.0, pod=primary)
            if not reply.ok:
                raise WriteFailed(f"the write failed on {primary.name}: {reply.code} {reply.failure or ''}".strip())
            canary = self.replication.commit(primary.name, self.now)
            return {"id": canary.id, "instance": primary.name, "seconds": round(reply.seconds, 6)}

    def read_canary(self, canary_id: int) -> str:
        """Whether the primary holds a canary: "present", "lost" or "unknown" (never acknowledged)."""
        with self._lock:
            wait, primary = self.primary_outlook()
            if primary is None or wait > 0:
                raise WriteFailed("no database instance answers (failover in progress)")
            return self.replication.status(canary_id)

    # -- observers ------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[PlatformEvent], None]) -> None:
        """Call `listener` with every PlatformEvent (outside the platform's lock)."""
        with self._lock:
            self._listeners.append(listener)

    def render_pod_metrics(self, namespace: str, name: str) -> bytes:
        with self._lock:
            pod = self._pods.get(PodRef(namespace, name))
            if pod is None:
                raise PodNotFound(f"pod {namespace}/{name} does not exist")
            if not pod.serving:
                raise PodNotServing(f"pod {namespace}/{name} is not serving (phase {pod.phase})")
            return exposition.pod_metrics(pod)

    def render_kube_state_metrics(self) -> bytes:
        with self._lock:
            return exposition.kube_state_metrics(self._pods.values(), self.zone_replicas, self.ejected_endpoints())

    def ejected_endpoints(self) -> set[PodRef]:
        """Pods out of some caller's pool now: ejected by a running pod's sidecar, or out of the
        edge's pool (ejected, or failing its health check, unless the edge uses them all)."""
        with self._lock:
            edge = {pod.ref for service in CHECKED for pod in self.endpoints(service)
                    if pod not in self.mesh.edge_pool(service, self.endpoints(service))}
            return self.mesh.outliers.ejected(self.now, self._pods) | edge

    def scrape_targets(self, address: str) -> list[dict]:
        with self._lock:
            return exposition.scrape_targets(self._pods.values(), address)

    def state(self) -> dict:
        """A JSON-able view for tests and humans: pods, active faults, recent events."""
        with self._lock:
            return {
                "time": self.now,
                "rate": self.rate,
                "primary": self.primary,
                "pods": [
                    {
                        **dataclasses.asdict(pod.info()),
                        "serving": pod.serving,
                        "role": pod.role,
                        "cpu_ratio": round(pod.cpu_ratio, 4),
                        "memory_bytes": int(pod.memory_bytes),
                    }
                    for pod in self._pods.values()
                ],
                "faults": {
                    fault_id: {"type": type(effect).__name__, **dataclasses.asdict(effect)}
                    for fault_id, effect in self.faults.effects.items()
                },
                "ejections": [
                    {"caller": caller.name if caller is not None else "edge", "pod": pod.name, "until": until}
                    for caller, pod, until in self.mesh.outliers.ejections(self.now)
                ],
                "edge_health_check_failing": sorted(ref.name for ref in self.mesh.health.failing),
                "replication": {
                    "committed": len(self.replication.timeline),
                    "lost": [dataclasses.asdict(canary) for canary in self.replication.lost],
                },
                "events": [
                    {"time": at, "kind": event.kind, "pod": dataclasses.asdict(event.pod), "message": event.message}
                    for at, event in list(self.recent_events)[-50:]
                ],
            }

    # -- time -----------------------------------------------------------------------------

    def step(self, now: float) -> None:
        """Advance the simulation to `now` in ticks."""
        with self._transaction():
            if now - self.now > MAX_CATCH_UP_S:
                log.warning("simulation paused for %.1f s: skipping ahead instead of replaying it", now - self.now)
                self.now = now - self.tick_s
            while self.now < now - 1e-9:
                self._tick(min(now, self.now + self.tick_s))

    def simulate(self, seconds: float) -> None:
        """Run `seconds` of virtual time now (tests): no waiting."""
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.step(min(end, self.now + self.tick_s))

    def measure(self, seconds: float) -> Measurement:
        """Simulate `seconds` and return what the platform did meanwhile."""
        with self._lock:
            before = self.ledger.snapshot()
        self.simulate(seconds)
        with self._lock:
            return Measurement(seconds, before, self.ledger.snapshot())

    # -- used by the request model ----------------------------------------------------------

    def endpoints(self, service: str) -> list[SimPod]:
        """The pods a Service routes to: the ready ones, and dead ones kube-proxy has not dropped yet."""
        if self._endpoints is None:
            self._endpoints = {spec.name: [] for spec in self.services}
            for pod in itertools.chain(self._pods.values(), self._ghosts):
                if pod.ready or pod.stale_until > self.now:
                    self._endpoints[pod.spec.name].append(pod)
        return self._endpoints[service]

    def record(self, pod: SimPod, route: str, code: int, seconds: float) -> None:
        pod.stats.http.record(route, code, seconds)
        self.ledger.record(pod.spec.name, route, code, seconds)

    def count_booking(self, pod: SimPod, outcome: str) -> None:
        pod.stats.bookings[outcome] = pod.stats.bookings.get(outcome, 0) + 1
        self.ledger.bookings[outcome] += 1

    def count_payment(self, pod: SimPod, outcome: str) -> None:
        pod.stats.payments[outcome] = pod.stats.payments.get(outcome, 0) + 1
        self.ledger.payments[outcome] += 1

    # -- one tick -------------------------------------------------------------------------

    def _tick(self, until: float) -> None:
        dt = until - self.now
        while self._timeline and self._timeline[0][0] <= until:
            at, _, action = heapq.heappop(self._timeline)
            self.now = max(self.now, at)
            self._endpoints = None
            action()
        self.now = until
        self._endpoints = None
        self._ghosts = [pod for pod in self._ghosts if pod.stale_until > self.now]
        self._watch_primary()
        self._update_resources(dt)
        self._replicate()
        self._serve_load(dt)
        self.mesh.outliers.tick(self.now, self.endpoints)
        self.mesh.health.tick(self.now, self.endpoints, self._pods.get(PodRef("booking", self.primary)))
        self.shapers.tick(dt)
        for pod in self._pods.values():
            busy = pod.cpu_seconds / (dt * pod.spec.cpu_limit_cores) + (IDLE_CPU if pod.serving else 0.0)
            pod.cpu_utilisation += (busy - pod.cpu_utilisation) * min(1.0, dt / 5.0)
            pod.cpu_seconds = 0.0

    def _serve_load(self, dt: float) -> None:
        arrivals = self.load.arrivals(dt)
        call, serve = self.mesh.call, self.mesh.serve
        for _ in range(arrivals.bookings):
            call(None, "web-frontend", "/bookings", timeout=CLIENT_TIMEOUT_S)
        for _ in range(arrivals.page_views):
            call(None, "web-frontend", "/", timeout=CLIENT_TIMEOUT_S)
        # Workers pull jobs from a queue: any worker whose process runs takes the next one.
        workers = [pod for pod in self._pods.values() if pod.spec.name == "booking-worker" and pod.serving]
        job = ROUTES[("booking-worker", "/jobs/reminder")]
        for _ in range(arrivals.reminders if workers else 0):
            serve(self.rng.choice(workers), job)
        # kubelet probes every running container.
        for pod in list(self._pods.values()):
            if not pod.serving:
                continue
            pod.probe_carry += dt / self.probe_interval_s
            while pod.probe_carry >= 1.0:
                pod.probe_carry -= 1.0
                serve(pod, ROUTES[(pod.spec.name, "/healthz")])

    def _update_resources(self, dt: float) -> None:
        rng, relax = self.rng, min(1.0, dt / 30.0)
        for pod in list(self._pods.values()):
            spec = pod.spec
            if not pod.serving:
                pod.cpu_ratio, pod.memory_bytes, pod.slowdown = 0.0, 0.0, 1.0
                continue
            cpu, memory, memory_faults = (
                self.faults.stress(pod.ref, pod.spent_stressors) if self.faults.effects else (0.0, 0, [])
            )
            pod.memory_noise += -pod.memory_noise * relax + 0.01 * math.sqrt(2 * relax) * rng.gauss(0.0, 1.0)
            working = spec.memory_working_set_bytes * (1 + pod.memory_noise + 0.1 * pod.cpu_utilisation) + memory
            if working > spec.memory_limit_bytes:
                # The kernel kills the container; the stressor dies with it and Chaos Mesh does not
                # re-inject it into the new container, so the pod does not crash-loop.
                pod.spent_stressors.update(memory_faults)
                self._restart_container(
                    pod, "OOMKilled",
                    f"working set {working / 2**20:.0f}Mi over the {spec.memory_limit_bytes / 2**20:.0f}Mi limit",
                )
                continue
            pressure = working / spec.memory_limit_bytes
            memory_factor = 1.0 + 1.5 * max(0.0, pressure - MEMORY_PRESSURE_FROM) / (1 - MEMORY_PRESSURE_FROM)
            # Requests queue for the CPU as the app gets busier (processor sharing); stressor
            # threads take their share of the quota, and once app and stressor want more than
            # the limit, CFS throttling stretches every request further.
            busy = min(pod.cpu_utilisation, 0.9)
            cpu_factor = (1.0 + cpu) * max(1.0, pod.cpu_utilisation + cpu) / (1.0 - busy)
            pod.slowdown = cpu_factor * memory_factor
            pod.cpu_ratio = min(1.0, pod.cpu_utilisation + cpu)
            pod.memory_bytes = working
            if pod.role == "replica":
                io_delay = self.faults.io(pod.ref)[0] if self.faults.effects else 0.0
                pod.replication_lag_s = 0.02 * math.exp(rng.gauss(0.0, 0.3)) + 10 * io_delay
            elif pod.role == "primary":
                pod.replication_lag_s = 0.0

    def _clear(self, fault_id: str) -> None:
        effect = self.faults.remove(fault_id)
        if effect is None:
            return
        for pod in list(self._pods.values()):
            pod.spent_stressors.discard(fault_id)
            if fault_id in pod.failure_holds:
                pod.failure_holds.discard(fault_id)
                if not pod.failure_holds:
                    self._restart_container(pod, "Recovered", f"pod-failure {fault_id} cleared")
        for ref in effect.pods:
            if ref in self._pods:
                self._emit("FaultCleared", self._pods[ref], f"{type(effect).__name__} {fault_id}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # Listeners run after the lock is released, so that one calling back into the platform
        # (or taking a lock of its own) cannot deadlock against the simulation.
        with self._lock:
            yield
            events, self._undelivered = self._undelivered, []
            listeners = list(self._listeners)
        for event in events:
            for listener in listeners:
                try:
                    listener(event)
                except Exception:  # a broken listener must not stop the simulation
                    log.exception("platform event listener failed on %s", event)
