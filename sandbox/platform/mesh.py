"""Calls between pods: endpoint choice, network transit, HTTP faults, timeouts and retries.

Nothing travels over a socket: a call computes the outcome and latency its caller would see and
records what the callee served. A pod's metrics are what its callers experience at the pod, as a
mesh sidecar would record them: HTTP faults (aborts, delays, replaced codes) on the pod show in
its own metrics; network faults only show in its callers' latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from sandbox.platform.health import EdgeHealthCheck
from sandbox.platform.network import BASE_ONE_WAY_S, transit
from sandbox.platform.outliers import EDGE, EDGE_PANIC_THRESHOLD_PCT, OutlierDetection

if TYPE_CHECKING:
    from sandbox.platform.platform import Platform
    from sandbox.platform.pods import SimPod

# Maximum segment size: how many TCP segments a message needs decides how exposed it is to loss.
MSS_BYTES = 1448
# What an HTTP fault's abort looks like to the caller's sidecar (Envoy answers 503 on a reset).
ABORT_CODE = 503
# A connection whose handshake does not complete (a partition, either way) is given up after this
# long (the mesh's DestinationRule `connectionPool.tcp.connectTimeout`), and, as a refused one, tried
# once more on another replica (Istio's default retry on `connect-failure`): the request never
# reached the server. A caller whose own timeout is shorter times out first.
CONNECT_TIMEOUT_S = 1.0
# Failures a caller retries on another replica: the connection was never made.
CONNECT_FAILURES = ("refused", "unreachable")


@dataclass(frozen=True)
class Reply:
    code: int
    seconds: float
    # None, or why no proper answer came back: "refused" (dead endpoint), "unreachable" (no
    # connection within the connect timeout), "unavailable" (no endpoint at all), "timeout",
    # "reset" (an aborted request).
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.code < 400


@dataclass(frozen=True)
class Route:
    """One route a service serves: its handler and the size of what crosses the network."""

    service: str
    path: str
    method: str
    request_bytes: int
    response_bytes: int
    handler: Callable[[Mesh, SimPod], tuple[int, float]]
    # Bugs happen: the share of requests the app itself fails with a 500.
    error_rate: float = 4e-5


class Mesh:
    def __init__(self, platform: Platform, routes: dict[tuple[str, str], Route]) -> None:
        self.platform = platform
        self.routes = routes
        self.rng = platform.rng
        self.faults = platform.faults
        self.outliers = OutlierDetection()
        self.health = EdgeHealthCheck(self.outliers)

    # -- the app's own work ---------------------------------------------------------------

    def work(self, pod: SimPod, median_s: float, sigma: float = 0.35) -> float:
        """Seconds the app spends computing, stretched by CPU contention and memory pressure."""
        pod.cpu_seconds += median_s
        return median_s * math.exp(self.rng.gauss(0.0, sigma)) * pod.slowdown

    def external(self, pod: SimPod, median_s: float, sigma: float, timeout: float,
                 request_bytes: int = 1000, response_bytes: int = 1000, error_rate: float = 1e-4) -> Reply:
        """A call out of the cluster (Stripe, an SMS or mail provider): only the network is ours."""
        rng, shapers = self.rng, self.platform.shapers
        out = transit(self.faults.link(pod.ref, None), request_bytes, _segments(request_bytes), rng, shapers)
        back = transit(self.faults.link(None, pod.ref), response_bytes, _segments(response_bytes), rng, shapers)
        if out is None or back is None:
            return Reply(504, timeout, "timeout")
        seconds = out + median_s * math.exp(rng.gauss(0.0, sigma)) + back
        if seconds >= timeout:
            return Reply(504, timeout, "timeout")
        if rng.random() < error_rate:
            return Reply(502, seconds)
        return Reply(200, seconds)

    # -- calls between pods ---------------------------------------------------------------

    def call(self, caller: SimPod | None, service: str, path: str, *, timeout: float, attempts: int = 1,
             retry_5xx: bool = False, pod: SimPod | None = None) -> Reply:
        """Call a service through its ClusterIP: an endpoint of the caller's pool per attempt,
        retrying where a real client would (a connection refused or not made always; a 5xx only for
        idempotent requests). Calls from outside the cluster (caller None) come through the edge, whose
        outlier detection counts the answers of the endpoints it picked."""
        spent, tried, reply = 0.0, [], None
        for _ in range(attempts):
            target = pod or self._pick(caller, service, tried)
            if target is None:
                return Reply(503, spent + 2 * BASE_ONE_WAY_S, "unavailable")
            tried.append(target)
            reply = self.attempt(caller, target, path, timeout)
            if caller is None and pod is None:
                self.outliers.answered(service, target.ref, reply.code >= 500)
            spent += reply.seconds
            if not (reply.failure in CONNECT_FAILURES or (retry_5xx and reply.code >= 500 and reply.failure != "timeout")):
                break
        return Reply(reply.code, spent, reply.failure)

    def _pick(self, caller: SimPod | None, service: str, tried: list[SimPod]) -> SimPod | None:
        endpoints = self.platform.endpoints(service)
        if not endpoints:
            return None
        # A zone cut off from the caller (or, at the edge, a frontend failing its health check or
        # failing where its peers do not) drops out of the caller's pool, and calls go to the
        # endpoints left.
        if caller is None:
            endpoints = self.edge_pool(service, endpoints)
        else:
            endpoints = self.outliers.pool(caller.ref, endpoints, self.platform.now)
        fresh = [pod for pod in endpoints if pod not in tried] or endpoints
        return fresh[0] if len(fresh) == 1 else self.rng.choice(fresh)

    def edge_pool(self, service: str, endpoints: list[SimPod]) -> list[SimPod]:
        """The endpoints the edge picks from: not ejected, and passing its health check."""
        return self.outliers.pool(EDGE, endpoints, self.platform.now, unhealthy=self.health.failing,
                                  panic_pct=EDGE_PANIC_THRESHOLD_PCT)

    def attempt(self, caller: SimPod | None, pod: SimPod, path: str, timeout: float, *,
                assume_up: bool = False) -> Reply:
        route = self.routes[(pod.service, path)]
        if not (pod.serving or assume_up):
            # A dead or restarting pod still listed in the endpoints refuses the connection.
            return Reply(503, 2 * BASE_ONE_WAY_S + 0.0005, "refused")
        caller_ref = caller.ref if caller is not None else None
        rng, shapers = self.rng, self.platform.shapers
        there, back_link = self.faults.link(caller_ref, pod.ref), self.faults.link(pod.ref, caller_ref)
        # A TCP handshake needs both directions: across a partition either way it never completes.
        cut = (there is not None and there.partition) or (back_link is not None and back_link.partition)
        if there is not None or back_link is not None or self.outliers.counting_connects:
            self.outliers.connected(caller_ref, pod.ref, not cut, self.platform.now)
        if cut:
            if timeout <= CONNECT_TIMEOUT_S:
                return Reply(504, timeout, "timeout")
            return Reply(503, CONNECT_TIMEOUT_S, "unreachable")
        out = transit(there, route.request_bytes, _segments(route.request_bytes), rng, shapers)
        if out is None or out >= timeout:
            return Reply(504, timeout, "timeout")
        code, served, aborted = self.serve(pod, route)
        back = transit(back_link, route.response_bytes, _segments(route.response_bytes), rng, shapers)
        if back is None or out + served + back >= timeout:
            return Reply(504, timeout, "timeout")
        return Reply(code, out + served + back, "reset" if aborted else None)

    def serve(self, pod: SimPod, route: Route) -> tuple[int, float, bool]:
        """The pod handles one request and records it: (code, seconds, aborted by an HTTP fault)."""
        faults = self.faults.http(pod.ref, route.path, route.method) if self.faults.effects else ()
        delay, aborted = 0.0, False
        for fault in faults:
            if fault.target == "Request":
                delay += fault.delay_ms / 1000.0
                aborted = aborted or fault.abort
        if aborted:
            self.platform.record(pod, route.path, ABORT_CODE, delay + 0.0002)
            return ABORT_CODE, delay + 0.0002, True
        code, seconds = route.handler(self, pod)
        if code < 500 and self.rng.random() < route.error_rate:
            code = 500
        for fault in faults:
            if fault.target != "Request":
                delay += fault.delay_ms / 1000.0
                if fault.abort:
                    aborted = True
                if fault.replace_code is not None:
                    code = fault.replace_code
        seconds += delay
        if aborted:
            code = ABORT_CODE
        self.platform.record(pod, route.path, code, seconds)
        return code, seconds, aborted


def _segments(nbytes: int) -> int:
    return max(1, -(-nbytes // MSS_BYTES))
