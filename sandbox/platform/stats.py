"""Request, booking and payment counters of a pod, the platform-wide ledger, and measurements."""

from __future__ import annotations

import copy
import math
from bisect import bisect_left
from dataclasses import dataclass, field

# Fine enough for a p95 anywhere between 50 ms and 5 s (CONTRACT.md).
BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5,
    0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0,
)
# Codes every route exports from the start, so that "5xx share" queries return 0, not nothing.
PRESET_CODES = ("200", "500", "502", "503", "504")
BOOKING_OUTCOMES = ("confirmed", "failed")
PAYMENT_OUTCOMES = ("succeeded", "failed")


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[int]:
        running, out = 0, []
        for count in self.counts:
            running += count
            out.append(running)
        return out


@dataclass
class HttpStats:
    """Requests by (route, code) and latency by route, of one pod or one whole service."""

    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    latency: dict[str, Histogram] = field(default_factory=dict)

    def preset(self, routes: tuple[str, ...]) -> None:
        for route in routes:
            self.latency.setdefault(route, Histogram())
            for code in PRESET_CODES:
                self.requests.setdefault((route, code), 0)

    def record(self, route: str, code: int, seconds: float) -> None:
        key = (route, str(code))
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = Histogram()
        histogram.observe(seconds)


@dataclass
class PodStats:
    """Everything a pod exports, as counters since its container started."""

    http: HttpStats = field(default_factory=HttpStats)
    bookings: dict[str, int] = field(default_factory=dict)
    payments: dict[str, int] = field(default_factory=dict)


@dataclass
class Ledger:
    """Platform-wide totals by service that survive pod deaths: the ground truth tests measure."""

    http: dict[str, HttpStats] = field(default_factory=dict)
    bookings: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BOOKING_OUTCOMES, 0))
    payments: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PAYMENT_OUTCOMES, 0))

    def record(self, service: str, route: str, code: int, seconds: float) -> None:
        stats = self.http.get(service)
        if stats is None:
            stats = self.http[service] = HttpStats()
        stats.record(route, code, seconds)

    def snapshot(self) -> Ledger:
        return copy.deepcopy(self)


@dataclass(frozen=True)
class Measurement:
    """What happened between two ledger snapshots, in the units of the safety policy."""

    seconds: float
    before: Ledger
    after: Ledger

    def _requests(self, service: str, code_prefix: str = "") -> int:
        total = 0
        old = self.before.http.get(service, HttpStats()).requests
        for key, count in self.after.http.get(service, HttpStats()).requests.items():
            if key[1].startswith(code_prefix):
                total += count - old.get(key, 0)
        return total

    def request_rate(self, service: str) -> float:
        return self._requests(service) / self.seconds

    def error_pct(self, service: str = "web-frontend") -> float:
        total = self._requests(service)
        return 100.0 * self._requests(service, "5") / total if total else math.nan

    @property
    def booking_rate(self) -> float:
        return (self.after.bookings["confirmed"] - self.before.bookings["confirmed"]) / self.seconds

    @property
    def booking_failures(self) -> int:
        return self.after.bookings["failed"] - self.before.bookings["failed"]

    @property
    def payment_failure_pct(self) -> float:
        failed = self.after.payments["failed"] - self.before.payments["failed"]
        total = failed + self.after.payments["succeeded"] - self.before.payments["succeeded"]
        return 100.0 * failed / total if total else math.nan

    def p95_ms(self, service: str = "web-frontend", route: str | None = None) -> float:
        return 1000.0 * self.quantile(0.95, service, route)

    def quantile(self, q: float, service: str, route: str | None = None) -> float:
        """Like PromQL's histogram_quantile over the window (linear inside a bucket)."""
        counts = [0] * (len(BUCKETS) + 1)
        old_stats = self.before.http.get(service, HttpStats())
        for name, histogram in self.after.http.get(service, HttpStats()).latency.items():
            if route is not None and name != route:
                continue
            old = old_stats.latency.get(name, Histogram()).counts
            for i, count in enumerate(histogram.counts):
                counts[i] += count - old[i]
        total = sum(counts)
        if not total:
            return math.nan
        rank, running = q * total, 0
        for i, count in enumerate(counts):
            if running + count >= rank and count:
                if i == len(BUCKETS):
                    return BUCKETS[-1]
                lower = BUCKETS[i - 1] if i else 0.0
                return lower + (BUCKETS[i] - lower) * (rank - running) / count
            running += count
        return BUCKETS[-1]
