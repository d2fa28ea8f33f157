"""Each fault changes the simulated outcomes in the expected direction and strength; clearing it restores them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from sandbox.platform import Platform
from sandbox.platform.effects import (
    Effect,
    HTTPFault,
    IOFault,
    NetworkFault,
    PodFailure,
    PodKill,
    PodRef,
    StressFault,
)
from sandbox.platform.stats import Measurement

MiB = 2**20


@dataclass
class Impact:
    platform: Platform
    before: Measurement
    during: Measurement
    after: Measurement


def pods(platform: Platform, service: str, count: int | None = None) -> tuple[PodRef, ...]:
    refs = [PodRef(pod.namespace, pod.name) for pod in sorted(platform.pods(), key=lambda pod: pod.name) if pod.service == service]
    return tuple(refs[:count] if count else refs)


def impact(make: Callable[[Platform], Effect], seconds: float = 20, seed: int = 21) -> Impact:
    """Baseline, the fault's steady state, and the platform after the fault was cleared (virtual time)."""
    platform = Platform(seed=seed, start_time=1_000_000.0)
    platform.simulate(3)
    before = platform.measure(20)
    platform.apply("fault", make(platform))
    platform.simulate(2)
    during = platform.measure(seconds)
    platform.clear("fault")
    platform.simulate(8)
    return Impact(platform, before, during, platform.measure(20))


def p95(window: Measurement, service: str = "web-frontend", route: str | None = None) -> float:
    return window.p95_ms(service, route)


def dropped(result: Impact) -> float:
    """Share of confirmed bookings lost while the fault was on."""
    return 1 - result.during.booking_rate / result.before.booking_rate


CASES = [
    pytest.param(
        lambda p: NetworkFault(pods=pods(p, "booking-api"), delay_ms=100),
        lambda r: 200 < p95(r.during) - p95(r.before) < 1500 and r.during.error_pct() < 0.3 and dropped(r) < 0.05,
        id="network-delay-100ms-slows-bookings-without-failing-them",
    ),
    pytest.param(
        lambda p: NetworkFault(pods=pods(p, "booking-api"), delay_ms=2000),
        lambda r: r.during.error_pct() > 50 and dropped(r) > 0.9,
        id="network-delay-2s-times-the-database-out",
    ),
    pytest.param(
        lambda p: NetworkFault(pods=pods(p, "web-frontend", 1), peers=pods(p, "booking-api"), delay_ms=500, jitter_ms=50),
        lambda r: p95(r.during) - p95(r.before) > 100 and p95(r.during, "database") < 1.5 * p95(r.before, "database") + 5,
        id="network-delay-reaches-only-the-target-peers",
    ),
    pytest.param(
        lambda p: NetworkFault(pods=pods(p, "booking-confirmation"), loss_pct=30),
        lambda r: p95(r.during) - p95(r.before) > 50 and dropped(r) < 0.1,
        id="packet-loss-costs-retransmissions",
    ),
    pytest.param(
        lambda p: NetworkFault(pods=pods(p, "booking-api", 1), peers=pods(p, "database"), direction="both", partition=True),
        lambda r: 0.15 < dropped(r) < 0.6 and r.during.error_pct() > 1,
        id="partition-one-booking-api-from-the-database-fails-its-bookings",
    ),
    pytest.param(
        lambda p: NetworkFault(pods=pods(p, "booking-api", 1), bandwidth_bps=1e6),
        lambda r: p95(r.during) > 2 * p95(r.before) and r.during.error_pct() > 1,
        id="bandwidth-1mbps-saturates-the-pod",
    ),
    pytest.param(
        lambda p: NetworkFault(pods=pods(p, "booking-api", 1), bandwidth_bps=1e9),
        lambda r: p95(r.during) - p95(r.before) < 30 and dropped(r) < 0.05,
        id="bandwidth-1gbps-is-harmless",
    ),
    pytest.param(
        lambda p: IOFault(pods=(PodRef("booking", "database-0"),), delay_ms=50),
        lambda r: 20 < p95(r.during) - p95(r.before) < 300 and r.during.error_pct() < 0.3,
        id="io-latency-50ms-on-the-primary-slows-bookings",
    ),
    pytest.param(
        lambda p: IOFault(pods=pods(p, "database"), delay_ms=2000),
        lambda r: dropped(r) > 0.9,
        id="io-latency-2s-fails-every-write",
    ),
    pytest.param(
        lambda p: IOFault(pods=pods(p, "database"), error_pct=10),
        lambda r: r.during.payment_failure_pct > r.before.payment_failure_pct + 5 and 0.05 < dropped(r) < 0.5,
        id="io-errors-fail-payments-and-bookings",
    ),
    pytest.param(
        lambda p: HTTPFault(pods=pods(p, "email-service", 1), routes=("/send*",), abort=True),
        lambda r: r.during.error_pct("email-service") > 30 and r.during.error_pct() < 0.3 and dropped(r) < 0.05,
        id="http-abort-on-email-is-async-and-spares-bookings",
    ),
    pytest.param(
        lambda p: HTTPFault(pods=pods(p, "booking-api"), routes=("/availability*",), methods=("GET",), delay_ms=150),
        lambda r: p95(r.during, "booking-api", "/availability") - p95(r.before, "booking-api", "/availability") > 120
        and p95(r.during, "booking-api", "/bookings") < 1.2 * p95(r.before, "booking-api", "/bookings"),
        id="http-delay-hits-only-the-matching-route",
    ),
    pytest.param(
        lambda p: HTTPFault(pods=pods(p, "booking-api"), routes=("/availability*",), methods=("POST",), delay_ms=500),
        lambda r: p95(r.during, "booking-api", "/availability") < p95(r.before, "booking-api", "/availability") + 10,
        id="http-fault-on-another-method-does-nothing",
    ),
    pytest.param(
        lambda p: HTTPFault(pods=pods(p, "booking-api"), target="Response", replace_code=500),
        # The bookings were made; only their answers were replaced.
        lambda r: r.during.error_pct() > 50 and dropped(r) < 0.05,
        id="http-replace-500-fails-answers-after-the-work",
    ),
    pytest.param(
        lambda p: StressFault(pods=pods(p, "booking-api"), cpu_load_pct=100),
        lambda r: p95(r.during, "booking-api", "/availability") > 1.5 * p95(r.before, "booking-api", "/availability"),
        id="cpu-stress-slows-the-app",
    ),
    pytest.param(
        lambda p: PodKill(pods=pods(p, "booking-api", 1)),
        lambda r: dropped(r) < 0.05 and r.during.error_pct() < 0.5,
        id="pod-kill-of-one-replica-is-absorbed",
    ),
    pytest.param(
        lambda p: PodFailure(pods=pods(p, "payment-processor")),
        lambda r: dropped(r) > 0.95 and r.during.error_pct() > 10,
        id="payment-processor-down-fails-bookings",
    ),
    pytest.param(
        lambda p: PodFailure(pods=pods(p, "cache")),
        lambda r: dropped(r) < 0.05 and r.during.request_rate("database") > 1.6 * r.before.request_rate("database"),
        id="cache-down-reads-through-to-the-database",
    ),
]


@pytest.mark.parametrize(("make", "expected"), CASES)
def test_fault_changes_outcomes_and_clearing_restores_them(make, expected):
    result = impact(make)
    assert expected(result), (
        f"before: rate={result.before.booking_rate:.1f} err={result.before.error_pct():.2f}% "
        f"p95={p95(result.before):.0f}ms; during: rate={result.during.booking_rate:.1f} "
        f"err={result.during.error_pct():.2f}% p95={p95(result.during):.0f}ms "
        f"pay={result.during.payment_failure_pct:.1f}%"
    )
    assert result.platform.active_faults() == {}
    assert result.after.booking_rate == pytest.approx(result.before.booking_rate, rel=0.06)
    assert result.after.error_pct() < 0.3
    assert p95(result.after) < 1.3 * p95(result.before) + 30


def test_a_100ms_delay_hurts_measurably_less_than_2s():
    small = impact(lambda p: NetworkFault(pods=pods(p, "web-frontend"), delay_ms=100))
    large = impact(lambda p: NetworkFault(pods=pods(p, "web-frontend"), delay_ms=2000))
    assert p95(small.before) < p95(small.during) < p95(large.during) - 1000
    assert large.during.booking_rate <= small.during.booking_rate


def test_cpu_stress_strength_follows_the_load():
    route = ("booking-api", "/availability")
    latencies = [
        p95(impact(lambda p, load=load: StressFault(pods=pods(p, "booking-api"), cpu_load_pct=load)).during, *route)
        for load in (0, 100, 400)
    ]
    assert latencies[0] * 1.3 < latencies[1] < latencies[2] / 1.5, latencies


def test_memory_pressure_below_the_limit_only_raises_the_working_set():
    platform = Platform(seed=4, start_time=0.0)
    target = pods(platform, "booking-api", 1)[0]

    def working_set() -> float:
        platform.simulate(1)
        return next(pod["memory_bytes"] for pod in platform.state()["pods"] if pod["name"] == target.name)

    before = working_set()
    platform.apply("mem", StressFault(pods=(target,), memory_bytes=256 * MiB))
    assert working_set() - before == pytest.approx(256 * MiB, rel=0.1)
    assert next(pod.restart_count for pod in platform.pods() if pod.name == target.name) == 0


def test_memory_beyond_the_limit_oom_kills_once():
    platform = Platform(seed=4, start_time=0.0)
    target = pods(platform, "booking-api", 1)[0]
    platform.apply("mem", StressFault(pods=(target,), memory_bytes=512 * MiB))
    platform.simulate(20)
    assert next(pod.restart_count for pod in platform.pods() if pod.name == target.name) == 1
    assert [event.kind for _, event in platform.recent_events if event.kind == "OOMKilled"] == ["OOMKilled"]
    # The restarted container runs without the stressor, ready again.
    assert next(pod.ready for pod in platform.pods() if pod.name == target.name)
