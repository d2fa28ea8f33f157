"""Zones: pods spread over three zones, routing around a lost or cut-off zone, and the per-zone metrics."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from sandbox.platform import Platform
from sandbox.platform.effects import Effect, NetworkFault, PodFailure, PodInfo, PodKill, PodRef
from sandbox.platform.stats import Measurement
from sandbox.platform.topology import NODE_ZONES, NODES, SERVICES, ZONE_LABEL, ZONES, ServiceSpec, spread
from tests.sandbox.kubeapi_support import CHAOS_NS, chaos, conditions, serve, wait_for

kube = pytest.fixture(scope="module", name="kube")(serve)

PLATFORM_NAMESPACES = ["booking", "payments", "notifications"]


def new_platform(services: tuple[ServiceSpec, ...] = SERVICES) -> Platform:
    platform = Platform(seed=21, start_time=1_000_000.0, services=services)
    platform.simulate(3)
    return platform


def refs(pods: list[PodInfo]) -> tuple[PodRef, ...]:
    return tuple(PodRef(pod.namespace, pod.name) for pod in pods)


def in_zone(platform: Platform, zone: str) -> list[PodInfo]:
    return [pod for pod in platform.pods() if pod.zone == zone]


def outside(platform: Platform, zone: str) -> list[PodInfo]:
    return [pod for pod in platform.pods() if pod.zone != zone]


def primary_zone(platform: Platform) -> str:
    return next(pod.zone for pod in platform.pods() if pod.name == platform.primary)


def lose(platform: Platform, effect: Effect, seconds: float = 30) -> tuple[Measurement, Measurement]:
    """The baseline and the platform's steady state with `effect` on (virtual time)."""
    before = platform.measure(20)
    platform.apply("zone", effect)
    platform.simulate(3)
    return before, platform.measure(seconds)


def dropped(before: Measurement, during: Measurement) -> float:
    return 1 - during.booking_rate / before.booking_rate


def zone_gauge(platform: Platform, name: str) -> dict[tuple[str, str], float]:
    """One of the zone gauges of the kube-state-metrics exposition, by (zone, service)."""
    families = {f.name: f for f in text_string_to_metric_families(platform.render_kube_state_metrics().decode())}
    return {(s.labels["zone"], s.labels["service"]): s.value for s in families[name].samples}


def bookings_answered(platform: Platform, pod: PodInfo) -> tuple[float, float]:
    """(all, 5xx) POST /bookings answers a web-frontend pod has counted since it started."""
    total = errors = 0.0
    for family in text_string_to_metric_families(platform.render_pod_metrics(pod.namespace, pod.name).decode()):
        for sample in family.samples:
            if sample.name == "http_requests_total" and sample.labels["route"] == "/bookings":
                total += sample.value
                errors += sample.value if sample.labels["code"].startswith("5") else 0
    return total, errors


# -- placement ------------------------------------------------------------------------------


def test_pods_spread_over_three_zones_with_the_label_and_a_node_per_zone():
    platform = new_platform()
    pods = platform.pods()
    assert Counter(pod.zone for pod in pods) == {"zone-a": 8, "zone-b": 8, "zone-c": 7}
    for pod in pods:
        assert pod.labels[ZONE_LABEL] == pod.zone == NODE_ZONES[pod.node_name]
        assert pod.pod_ip.startswith(f"10.244.{NODES.index(pod.node_name)}.")
    for spec in SERVICES:
        zones = Counter(pod.zone for pod in pods if pod.service == spec.name)
        # Three replicas: one per zone; two: two zones, so one zone down never takes a whole service.
        assert sorted(zones.values()) == [1] * spec.replicas, (spec.name, zones)
    assert len({pod.pod_ip for pod in pods}) == len(pods)
    # Placement is the topology's, not the seed's: another seed, other names, the same zones.
    again = Platform(seed=99, start_time=0.0).pods()
    assert [(pod.service, pod.zone) for pod in again] == [(pod.service, pod.zone) for pod in pods]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=12))
def test_any_replica_counts_spread_balanced_within_one(replicas):
    services = [ServiceSpec(f"service-{i}", "booking", count, 0.5, 2**29, 2**27) for i, count in enumerate(replicas)]
    placement = spread(services)
    assert placement == spread(services)  # deterministic: no randomness in where a replica goes
    overall = [Counter(placement.values()).get(zone, 0) for zone in ZONES]
    assert max(overall) - min(overall) <= 1
    for spec in services:
        zones = Counter(placement[(spec.name, ordinal)] for ordinal in range(spec.replicas))
        counts = [zones.get(zone, 0) for zone in ZONES]
        assert max(counts) - min(counts) <= 1, (spec.replicas, zones)
        assert len(zones) == min(spec.replicas, len(ZONES))


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=5), min_size=len(SERVICES), max_size=len(SERVICES)))
def test_the_platform_places_pods_where_the_spread_says(replicas):
    services = tuple(dataclasses.replace(spec, replicas=count) for spec, count in zip(SERVICES, replicas))
    platform = Platform(seed=3, start_time=0.0, services=services)
    expected = Counter(spread(services).values())
    assert Counter(pod.zone for pod in platform.pods()) == expected
    assert Counter(pod.labels[ZONE_LABEL] for pod in platform.pods()) == expected
    assert sum(zone_gauge(platform, "platform_zone_replicas").values()) == sum(replicas)


def test_replacements_come_back_in_the_zone_of_the_pod_they_replace():
    platform = new_platform()
    victims = in_zone(platform, "zone-c")
    platform.apply("kill", PodKill(pods=refs(victims)))
    platform.simulate(4)
    assert Counter(pod.zone for pod in platform.pods()) == {"zone-a": 8, "zone-b": 8, "zone-c": 7}
    assert not {pod.name for pod in victims if pod.service != "database"} & {pod.name for pod in platform.pods()}
    assert all(pod.ready for pod in platform.pods())


# -- losing a zone ----------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ZONES)
def test_failing_every_pod_of_a_zone_leaves_bookings_to_the_other_zones(zone):
    platform = new_platform()
    before, during = lose(platform, PodFailure(pods=refs(in_zone(platform, zone))))
    assert dropped(before, during) < 0.05 and during.error_pct() < 0.5, (before.booking_rate, during.booking_rate)
    assert during.p95_ms() < 1.5 * before.p95_ms() + 50
    served = {pod.zone for pod in platform.pods() if pod.ready}
    assert served == set(ZONES) - {zone}


def test_killing_a_zone_is_absorbed_while_its_pods_are_replaced():
    platform = new_platform()
    before, during = lose(platform, PodKill(pods=refs(in_zone(platform, "zone-b"))), seconds=10)
    assert dropped(before, during) < 0.1 and during.error_pct() < 1


def test_a_zone_only_service_fails_with_its_zone():
    # booking-confirmation with one replica: the whole service lives in a single zone.
    services = tuple(dataclasses.replace(s, replicas=1) if s.name == "booking-confirmation" else s for s in SERVICES)
    platform = new_platform(services)
    (home,) = {pod.zone for pod in platform.pods() if pod.service == "booking-confirmation"}
    before, during = lose(platform, PodFailure(pods=refs(in_zone(platform, home))))
    assert dropped(before, during) > 0.95 and during.error_pct() > 10
    platform.clear("zone")
    platform.simulate(8)
    assert platform.measure(20).booking_rate == pytest.approx(before.booking_rate, rel=0.06)


def test_a_partitioned_zone_is_routed_around_by_the_callers_outside_it():
    platform = new_platform()
    # Not the database primary's zone: across a partition nothing can write there (no failover).
    zone = next(z for z in ZONES if z != primary_zone(platform))
    cut = NetworkFault(pods=refs(in_zone(platform, zone)), peers=refs(outside(platform, zone)),
                       direction="both", partition=True)
    platform.apply("partition", cut)
    platform.simulate(5)
    frontends = [pod for pod in platform.pods() if pod.service == "web-frontend"]
    start = {pod.name: bookings_answered(platform, pod) for pod in frontends}
    platform.simulate(60)
    answered = {pod.name: [now - then for now, then in zip(bookings_answered(platform, pod), start[pod.name])]
                for pod in frontends}
    for pod in frontends:
        total, errors = answered[pod.name]
        if pod.zone == zone:
            # Inside the cut, a booking still needs the primary on the other side: the frontend
            # fails them, so the edge ejects it and tries it again now and then.
            assert errors / total > 0.9, (pod.zone, errors, total)
            assert total < min(answered[other.name][0] for other in frontends if other.zone != zone) / 2
        else:
            # Outside it, each caller ejects the unreachable replicas after a few connect
            # failures (and retries them after 30 s, then 60 s): a third of the calls would fail otherwise.
            assert total > 200 and errors / total < 0.06, (pod.zone, errors, total)
    platform.clear("partition")
    platform.simulate(3)
    assert platform.measure(20).error_pct() < 0.3


def test_partitioning_the_primarys_zone_fails_writes_from_the_others():
    platform = new_platform()
    zone = primary_zone(platform)
    cut = NetworkFault(pods=refs(in_zone(platform, zone)), peers=refs(outside(platform, zone)),
                       direction="both", partition=True)
    before, during = lose(platform, cut)
    # The primary stays ready (its kubelet is on its side), so nothing fails over.
    assert platform.primary == "database-0" and dropped(before, during) > 0.6


# -- what Prometheus sees -------------------------------------------------------------------------


def test_the_zone_gauges_show_a_lost_zone():
    platform = new_platform()
    placed = zone_gauge(platform, "platform_zone_replicas")
    assert zone_gauge(platform, "platform_zone_pods_ready") == placed
    assert sum(placed.values()) == 23 and {zone for zone, _ in placed} == set(ZONES)
    platform.apply("zone", PodFailure(pods=refs(in_zone(platform, "zone-a"))))
    platform.simulate(1)
    ready = zone_gauge(platform, "platform_zone_pods_ready")
    # A zone that lost everything reads 0, not "no data".
    assert {key: value for key, value in ready.items() if key[0] == "zone-a"} == {
        key: 0.0 for key in placed if key[0] == "zone-a"}
    assert {key: value for key, value in ready.items() if key[0] != "zone-a"} == {
        key: value for key, value in placed.items() if key[0] != "zone-a"}
    assert zone_gauge(platform, "platform_zone_replicas") == placed
    platform.clear("zone")
    platform.simulate(4)
    assert zone_gauge(platform, "platform_zone_pods_ready") == placed


def test_kube_state_metrics_keep_their_label_sets():
    families = {f.name: f for f in text_string_to_metric_families(new_platform().render_kube_state_metrics().decode())}
    assert {s.name: set(s.labels) for s in families["kube_pod_status_ready"].samples} == {
        "kube_pod_status_ready": {"namespace", "pod", "condition"}}
    assert {s.name: set(s.labels) for s in families["platform_zone_pods_ready"].samples} == {
        "platform_zone_pods_ready": {"zone", "namespace", "service"}}


# -- through the emulated Kubernetes API -----------------------------------------------------------


def test_pods_show_their_zone_label_and_node_through_the_api(kube):
    pods = kube.core.list_pod_for_all_namespaces(label_selector=f"{ZONE_LABEL}=zone-b").items
    assert pods and {pod.spec.node_name for pod in pods} == {"sandbox-node-2"}
    assert {pod.metadata.name for pod in pods} == {p.name for p in kube.platform.pods() if p.zone == "zone-b"}
    on_node = kube.core.list_pod_for_all_namespaces(field_selector="spec.nodeName=sandbox-node-2").items
    assert {pod.metadata.name for pod in on_node} == {pod.metadata.name for pod in pods}


@pytest.mark.parametrize(
    "selector",
    [
        {"namespaces": PLATFORM_NAMESPACES, "labelSelectors": {ZONE_LABEL: "zone-c"}},
        {"namespaces": PLATFORM_NAMESPACES, "nodeSelectors": {ZONE_LABEL: "zone-c"}},
    ],
    ids=["pod-label", "node-selector"],
)
def test_a_podchaos_on_a_zone_fails_that_zone_and_the_others_serve(kube, selector):
    name = f"zone-c-{'nodes' if 'nodeSelectors' in selector else 'labels'}"
    platform = kube.platform.platform
    zone_c = {PodRef(pod.namespace, pod.name) for pod in platform.pods() if pod.zone == "zone-c"}
    before = platform.measure(10)
    kube.create_chaos("podchaos", chaos("PodChaos", name, {"action": "pod-failure", "mode": "all", "selector": selector}))
    try:
        wait_for(lambda: conditions(kube.get_chaos("podchaos", name)).get("AllInjected") == "True")
        ((kind, effect),) = kube.platform.calls_for("podchaos", name, CHAOS_NS)
        assert kind == "apply" and isinstance(effect, PodFailure) and set(effect.pods) == zone_c
        platform.simulate(3)
        during = platform.measure(20)
        assert dropped(before, during) < 0.05 and during.error_pct() < 0.5
        assert all(value == 0 for (zone, _), value in zone_gauge(platform, "platform_zone_pods_ready").items()
                   if zone == "zone-c")
    finally:
        kube.delete_chaos("podchaos", name)
        wait_for(lambda: not platform.active_faults())
    platform.simulate(4)
    assert all(pod.ready for pod in platform.pods())


def test_a_node_selector_on_another_label_value_selects_nothing(kube):
    name = "zone-nowhere"
    selector = {"namespaces": PLATFORM_NAMESPACES, "nodeSelectors": {ZONE_LABEL: "zone-z"}}
    kube.create_chaos("podchaos", chaos("PodChaos", name, {"action": "pod-failure", "mode": "all", "selector": selector}))
    try:
        wait_for(lambda: conditions(kube.get_chaos("podchaos", name)).get("Selected") == "False")
        assert kube.platform.calls_for("podchaos", name, CHAOS_NS) == []
    finally:
        kube.delete_chaos("podchaos", name)
