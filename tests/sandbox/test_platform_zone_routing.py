"""Routing around a zone: the edge takes out a frontend whose zone lost what a booking needs (its
health check, or its outlier detection), the platform serves from the other zones, and no fault
every frontend shares is routed around."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.platform import Platform
from prometheus_client.parser import text_string_to_metric_families

from sandbox.platform.effects import HTTPFault, IOFault, NetworkFault, PodFailure, PodInfo, PodKill, PodRef
from sandbox.platform.health import HEALTH_CHECK_INTERVAL_S
from sandbox.platform.outliers import (
    BASE_EJECTION_S,
    EJECT_AFTER_CONNECT_FAILURES,
    EDGE_FAILURE_PCT,
    EDGE_INTERVAL_S,
    EDGE_REQUEST_VOLUME,
    OutlierDetection,
)
from sandbox.platform.stats import Measurement
from sandbox.platform.topology import ZONES
from tests.sandbox.kubeapi_support import CHAOS_NS, chaos, conditions, serve, wait_for

kube = pytest.fixture(scope="module", name="kube")(serve)

SCENARIO = Path(__file__).resolve().parents[2] / "include" / "scenarios" / "booking-zone-outage.yaml"
# The services the shipped zone outage selects (its expressionSelectors), all in namespace booking.
BOOKING_SERVICES = ("web-frontend", "booking-api", "booking-worker", "cache", "database")
# A cut zone's frontend fails the edge's health check once its sidecar and its booking-api's found
# their first connections across the cut failing: well within a second.
EJECTION_DELAY_S = 2
# The policy's bound on error_rate over a baseline of about 0 (include/safety_policy.yaml).
ERROR_RATE_BOUND_PCT = 0.5


def new_platform(seed: int = 21) -> Platform:
    platform = Platform(seed=seed, start_time=1_000_000.0)
    platform.simulate(3)
    return platform


def refs(pods: list[PodInfo]) -> tuple[PodRef, ...]:
    return tuple(PodRef(pod.namespace, pod.name) for pod in pods)


def service_pods(platform: Platform, service: str, count: int | None = None) -> tuple[PodRef, ...]:
    pods = sorted((pod for pod in platform.pods() if pod.service == service), key=lambda pod: pod.name)
    return refs(pods[:count] if count else pods)


def booking_pods(platform: Platform, *, inside: str | None = None, outside: str | None = None) -> tuple[PodRef, ...]:
    return refs([pod for pod in platform.pods() if pod.namespace == "booking" and pod.service in BOOKING_SERVICES
                 and (inside is None or pod.zone == inside) and (outside is None or pod.zone != outside)])


def zone_cut(platform: Platform, zone: str, direction: str = "both", swapped: bool = False) -> NetworkFault:
    """The shipped scenario's partition: the zone's booking pods and the other zones' booking pods."""
    pods, peers = booking_pods(platform, inside=zone), booking_pods(platform, outside=zone)
    if swapped:
        pods, peers = peers, pods
    return NetworkFault(pods=pods, peers=peers, direction=direction, partition=True)


def frontends_ejected(platform: Platform) -> dict[str, float]:
    """The edge's ejected frontends by zone, as Prometheus sees them (only the edge calls web-frontend)."""
    exposition = platform.render_kube_state_metrics().decode()
    (family,) = [f for f in text_string_to_metric_families(exposition) if f.name == "platform_zone_endpoints_ejected"]
    return {s.labels["zone"]: s.value for s in family.samples if s.labels["service"] == "web-frontend"}


def primary_zone(platform: Platform) -> str:
    return next(pod.zone for pod in platform.pods() if pod.name == platform.primary)


def until_ejected(platform: Platform, zone: str) -> float:
    """Seconds (virtual) until the edge takes the zone's frontend out; fails past the ejection delay."""
    (frontend,) = [PodRef(p.namespace, p.name) for p in platform.pods() if p.service == "web-frontend" and p.zone == zone]
    waited = 0.0
    while frontend not in platform.ejected_endpoints():
        assert waited < EJECTION_DELAY_S, f"the edge did not eject {zone}'s frontend within {EJECTION_DELAY_S} s"
        platform.simulate(1)
        waited += 1
    return waited


# -- the edge's detector on its own -----------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A stand-in for a pod: all the detector reads of one."""

    ref: PodRef


FRONTENDS = [Endpoint(PodRef("booking", f"web-frontend-{i}")) for i in range(3)]


def sweep(outliers: OutlierDetection, now: float, failure_pct: list[float], volume: int = 100) -> list[str]:
    """One interval of answers from the frontends in the edge's pool (a failure share each), the
    sweep at its end, and the pool left."""
    pool = outliers.pool(None, FRONTENDS, now)
    for endpoint, pct in zip(FRONTENDS, failure_pct):
        if endpoint in pool:
            for i in range(volume):
                outliers.answered("web-frontend", endpoint.ref, i < pct * volume / 100)
    now += EDGE_INTERVAL_S
    outliers.tick(now, lambda service: FRONTENDS)
    return [endpoint.ref.name for endpoint in outliers.pool(None, FRONTENDS, now)]


@pytest.mark.parametrize(
    ("failure_pct", "volume", "left"),
    [
        pytest.param([30, 0, 1], 100, [1, 2], id="one-failing-while-its-peers-do-not-is-ejected"),
        pytest.param([EDGE_FAILURE_PCT - 1, 0, 0], 100, [0, 1, 2], id="under-the-threshold-stays"),
        pytest.param([100, 100, 100], 100, [0, 1, 2], id="all-failing-alike-none-is-ejected"),
        pytest.param([30, 60, 0], 100, [0, 2], id="of-a-failing-majority-only-the-worst-is-ejected"),
        pytest.param([100, 0, 0], EDGE_REQUEST_VOLUME - 1, [0, 1, 2], id="too-few-answers-to-judge"),
    ],
)
def test_the_edge_ejects_a_frontend_failing_where_its_peers_do_not(failure_pct, volume, left):
    outliers = OutlierDetection()
    outliers.tick(0.0, lambda service: FRONTENDS)  # the first sweep is due one interval later
    assert sweep(outliers, 0.0, failure_pct, volume) == [f"web-frontend-{i}" for i in left]


def test_an_ejection_lasts_longer_each_time_in_a_row_and_healthy_intervals_shorten_it_again():
    outliers, now = OutlierDetection(), 0.0
    outliers.tick(now, lambda service: FRONTENDS)
    ejected_at, lasted = None, []
    for failure_pct in [[50, 0, 0]] * 21 + [[0, 0, 0]] * 3 + [[50, 0, 0]] * 4:
        left = sweep(outliers, now, failure_pct)
        now += EDGE_INTERVAL_S
        if "web-frontend-0" not in left and ejected_at is None:
            ejected_at = now
        elif "web-frontend-0" in left and ejected_at is not None:
            lasted.append(now - ejected_at)
            ejected_at = None
    # Failing all along: back after 30 s, then 60, then 90 (each return costs an interval of
    # failures); three healthy intervals later, the next ejection is a first one again.
    assert lasted == [BASE_EJECTION_S, 2 * BASE_EJECTION_S, 3 * BASE_EJECTION_S, BASE_EJECTION_S]


def test_a_caller_ejects_an_endpoint_it_cannot_connect_to_longer_each_time_in_a_row():
    outliers, caller = OutlierDetection(), PodRef("booking", "booking-api-0")
    backends = [Endpoint(PodRef("booking", f"database-{i}")) for i in range(2)]

    def cut_off(now: float) -> None:
        for _ in range(EJECT_AFTER_CONNECT_FAILURES):
            outliers.connected(caller, backends[0].ref, False, now)

    def in_pool(now: float) -> bool:
        return backends[0] in outliers.pool(caller, backends, now)

    cut_off(0.0)
    assert outliers.pool(caller, backends, 1.0) == backends[1:]
    # Another caller's pool is untouched; a pool whose every endpoint is ejected is used whole.
    assert outliers.pool(None, backends, 1.0) == backends and outliers.pool(caller, backends[:1], 1.0) == backends[:1]
    assert not in_pool(BASE_EJECTION_S - 0.1) and in_pool(BASE_EJECTION_S)
    cut_off(BASE_EJECTION_S)
    assert not in_pool(3 * BASE_EJECTION_S - 0.1) and in_pool(3 * BASE_EJECTION_S)
    outliers.connected(caller, backends[0].ref, True, 100.0)  # a connection that succeeds ends the run
    cut_off(100.0)
    assert not in_pool(100.0 + BASE_EJECTION_S - 0.1) and in_pool(100.0 + BASE_EJECTION_S)


# -- a zone cut off ---------------------------------------------------------------------------------


@settings(max_examples=8, deadline=None)
@given(zone=st.sampled_from(ZONES), direction=st.sampled_from(["to", "from", "both"]), swapped=st.booleans(),
       seed=st.integers(min_value=1, max_value=10_000), offset=st.floats(min_value=0, max_value=EDGE_INTERVAL_S))
def test_a_zone_cut_off_either_way_is_routed_around_at_the_edge(zone, direction, swapped, seed, offset):
    platform = new_platform(seed)
    platform.simulate(offset)  # anywhere between two of the edge's sweeps
    before = platform.measure(10)
    platform.apply("cut", zone_cut(platform, zone, direction, swapped))
    if zone == primary_zone(platform):
        # Only the cut zone can write: the frontends of the other two fail their bookings. That is
        # a majority of the pool, which the edge never ejects whole: the outage stays visible.
        for _ in range(6):
            during = platform.measure(10)
            assert sum(frontends_ejected(platform).values()) <= 1 and frontends_ejected(platform)[zone] == 0
        assert during.error_pct() > 5 and during.booking_rate < 0.8 * before.booking_rate
        return
    start = platform.ledger.snapshot()
    waited = until_ejected(platform, zone)
    # From the cut's creation to within the first ejection (30 s), the other zones serve every
    # booking: what fails is what the cut zone's frontend took before its health check failed (a
    # fraction of a second); a request whose connection the cut blocks goes to another replica.
    platform.simulate(BASE_EJECTION_S - 5 - waited)
    during = Measurement(BASE_EJECTION_S - 5, start, platform.ledger.snapshot())
    assert frontends_ejected(platform) == {z: float(z == zone) for z in ZONES}
    assert during.error_pct() < ERROR_RATE_BOUND_PCT, during.error_pct()
    assert during.booking_rate > 0.9 * before.booking_rate


def test_a_long_cut_is_tried_again_less_and_less_often():
    platform = new_platform()
    (frontend,) = [pod.name for pod in platform.pods() if pod.service == "web-frontend" and pod.zone == "zone-a"]
    platform.apply("cut", zone_cut(platform, "zone-a"))
    ejected, returned, seen = [], [], False
    for _ in range(1300):
        platform.simulate(0.1)
        now = PodRef("booking", frontend) in platform.ejected_endpoints()
        if now != seen:
            (ejected if now else returned).append(platform.now)
        seen = now
    # The frontend passes its health check again when its sidecar's ejections (and its
    # booking-api's, of the primary) end: after 30 s, then 60 s. Each return lasts until the next
    # check, and costs only the bookings it took meanwhile.
    gaps = [later - earlier for earlier, later in zip(ejected, ejected[1:])]
    assert [round(gap) for gap in gaps] == [BASE_EJECTION_S * n for n in (1, 2)], ejected
    assert all(back_out - back_in <= HEALTH_CHECK_INTERVAL_S + 0.15 for back_in, back_out in zip(returned, ejected[1:])), (
        returned, ejected)


@pytest.mark.parametrize("zone", ZONES)
def test_every_booking_pod_of_a_zone_failed_leaves_bookings_to_the_other_zones(zone):
    platform = new_platform()
    before = platform.measure(20)
    platform.apply("fail", PodFailure(pods=booking_pods(platform, inside=zone)))
    platform.simulate(3)
    during = platform.measure(30)
    assert during.booking_rate > 0.95 * before.booking_rate and during.error_pct() < 0.5
    # Failed pods leave the endpoints: no caller needs to eject them.
    assert sum(frontends_ejected(platform).values()) == 0


@pytest.mark.parametrize("seed", [21, 7, 16])
def test_the_zone_outage_scenario_holds_from_the_partitions_creation(seed):
    """The shipped scenario's timeline: partition at 0 s, zone-a's booking pods fail at 20 s, the
    primary is killed at 40 s; the failure ends at 110 s (the pods are back while the partition
    stands), the partition at 120 s. Every 30 s window from the partition's creation on, as the
    kill switch reads error_rate and booking_rate each second."""
    platform = new_platform(seed)
    seen = [platform.ledger.snapshot()]
    for _ in range(30):
        platform.simulate(1)
        seen.append(platform.ledger.snapshot())
    before = Measurement(30, seen[0], seen[-1])
    steps = {
        0: lambda: platform.apply("zone-partition", zone_cut(platform, "zone-a")),
        20: lambda: platform.apply("zone-pods-fail", PodFailure(pods=booking_pods(platform, inside="zone-a"))),
        40: lambda: platform.apply("database-failover", PodKill(pods=(PodRef("booking", platform.primary),))),
        110: lambda: platform.clear("zone-pods-fail"),
        120: lambda: platform.clear("zone-partition"),
    }
    for second in range(150):
        if second in steps:
            steps[second]()
        platform.simulate(1)
        seen.append(platform.ledger.snapshot())
        window = Measurement(30, seen[-31], seen[-1])
        assert window.error_pct() < ERROR_RATE_BOUND_PCT, (second, window.error_pct())
        assert window.booking_rate > 0.9 * before.booking_rate, (second, window.booking_rate)
        if second == 19:
            assert frontends_ejected(platform)["zone-a"] == 1
        if second == 115:
            # zone-a's frontend is back in the endpoints, cut off still: its health check keeps it out.
            assert frontends_ejected(platform)["zone-a"] == 1
    assert platform.primary == "database-1"


# -- what is not routed around ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "min_error_pct"),
    [
        pytest.param(lambda p: HTTPFault(pods=service_pods(p, "booking-api"), abort=True), 90,
                     id="http-abort-on-every-booking-api"),
        pytest.param(lambda p: HTTPFault(pods=service_pods(p, "booking-api", 1), abort=True), 5,
                     id="http-abort-on-one-booking-api"),
        pytest.param(lambda p: NetworkFault(pods=service_pods(p, "booking-api", 1), peers=service_pods(p, "database"),
                                            direction="both", partition=True), 5,
                     id="one-booking-api-cut-from-the-database"),
        pytest.param(lambda p: NetworkFault(pods=service_pods(p, "booking-api"), delay_ms=2000), 90,
                     id="network-delay-2s-on-booking-api"),
        pytest.param(lambda p: IOFault(pods=service_pods(p, "database"), error_pct=10), 2,
                     id="io-errors-on-the-database"),
    ],
)
def test_a_fault_every_frontend_suffers_alike_keeps_its_errors(make, min_error_pct):
    platform = new_platform()
    platform.apply("fault", make(platform))
    platform.simulate(3)
    # Longer than the edge's ejection delay: every window still shows the errors, nothing ejected.
    windows: list[Measurement] = []
    for _ in range(3):
        windows.append(platform.measure(10))
        assert sum(frontends_ejected(platform).values()) == 0
    assert min(window.error_pct() for window in windows) > min_error_pct, [w.error_pct() for w in windows]


# -- through the emulated Kubernetes API --------------------------------------------------------------


def test_the_shipped_scenarios_partition_is_routed_around(kube):
    step = next(step for step in yaml.safe_load(SCENARIO.read_text())["steps"] if step["name"] == "zone-partition")
    spec = step["experiment"]["chaos"]["spec"]
    name = "zone-routing-partition"
    platform = kube.platform.platform
    before = platform.measure(20)
    kube.create_chaos("networkchaos", chaos(step["experiment"]["chaos"]["kind"], name, spec))
    try:
        wait_for(lambda: conditions(kube.get_chaos("networkchaos", name)).get("AllInjected") == "True")
        ((kind, effect),) = kube.platform.calls_for("networkchaos", name, CHAOS_NS)
        assert kind == "apply" and effect.partition and set(effect.pods) == set(booking_pods(platform, inside="zone-a"))
        until_ejected(platform, "zone-a")
        during = platform.measure(20)
        assert during.error_pct() < ERROR_RATE_BOUND_PCT and during.booking_rate > 0.9 * before.booking_rate, (
            during.error_pct())
    finally:
        kube.delete_chaos("networkchaos", name)
        wait_for(lambda: not platform.active_faults())
