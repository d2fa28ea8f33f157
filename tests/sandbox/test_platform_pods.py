"""The simulated platform's pods: topology, names, labels and lifecycle as CONTRACT.md fixes them."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from sandbox.platform import Platform, PodNotFound, PodNotServing
from sandbox.platform.effects import ContainerKill, PodFailure, PodKill, PodRef

EXPECTED_REPLICAS = {
    ("booking", "web-frontend"): 3,
    ("booking", "booking-api"): 3,
    ("booking", "booking-worker"): 2,
    ("booking", "cache"): 2,
    ("booking", "database"): 2,
    ("payments", "payment-processor"): 3,
    ("payments", "stripe-webhook-handler"): 2,
    ("notifications", "booking-confirmation"): 2,
    ("notifications", "sms-notifications"): 2,
    ("notifications", "email-service"): 2,
}


@pytest.fixture
def platform() -> Platform:
    return Platform(seed=11, start_time=1_000_000.0, restart_delay_s=3.0)


def by_service(platform: Platform, service: str):
    return sorted((pod for pod in platform.pods() if pod.service == service), key=lambda pod: pod.name)


def test_topology_matches_the_contract(platform):
    pods = platform.pods()
    assert Counter((pod.namespace, pod.service) for pod in pods) == EXPECTED_REPLICAS
    for pod in pods:
        role = {"role": "primary" if pod.name == "database-0" else "replica"} if pod.service == "database" else {}
        assert pod.labels == {
            "app": pod.service,
            "app.kubernetes.io/name": pod.service,
            "app.kubernetes.io/part-of": "booking-platform",
            "topology.kubernetes.io/zone": pod.zone,
            **role,
        }
        assert pod.zone in ("zone-a", "zone-b", "zone-c")
        if pod.service == "database":
            assert re.fullmatch(r"database-[01]", pod.name)
        else:
            assert re.fullmatch(rf"{pod.service}-[a-z0-9]{{5}}", pod.name), pod.name
        assert (pod.phase, pod.ready, pod.restart_count) == ("Running", True, 0)
        assert pod.created < 1_000_000.0 and re.fullmatch(r"10\.244\.\d+\.\d+", pod.pod_ip) and pod.node_name
        assert pod.containers == (pod.service,)
    assert len({pod.uid for pod in pods}) == len({pod.pod_ip for pod in pods}) == len(pods) == 23


def test_a_killed_pod_is_replaced_under_a_new_name_after_the_restart_delay(platform):
    victim = by_service(platform, "booking-api")[0]
    platform.apply("kill", PodKill(pods=(PodRef("booking", victim.name),)))
    names = {pod.name for pod in by_service(platform, "booking-api")}
    assert victim.name not in names and len(names) == 2

    platform.simulate(0.5)
    replacement = [pod for pod in by_service(platform, "booking-api") if pod.name not in names]
    assert len(replacement) == 1 and replacement[0].phase == "Pending" and not replacement[0].ready
    assert replacement[0].uid != victim.uid and replacement[0].restart_count == 0

    platform.simulate(1.5)
    started = platform.pods()
    assert [(p.phase, p.ready) for p in started if p.name == replacement[0].name] == [("Running", False)]
    platform.simulate(1.5)
    assert [p.ready for p in platform.pods() if p.name == replacement[0].name] == [True]


def test_a_database_pod_comes_back_under_its_name_with_one_more_restart(platform):
    platform.delete_pod(PodRef("booking", "database-0"))
    assert [pod.name for pod in by_service(platform, "database")] == ["database-1"]
    platform.simulate(4)
    database_0 = by_service(platform, "database")[0]
    assert (database_0.name, database_0.restart_count, database_0.ready) == ("database-0", 1, True)


def test_killing_the_primary_fails_over_to_the_replica(platform):
    assert platform.primary == "database-0"
    platform.apply("failover", PodKill(pods=(PodRef("booking", "database-0"),)))
    measured = platform.measure(10)
    assert platform.primary == "database-1"
    assert any(event.kind == "Failover" for _, event in platform.recent_events)
    # The driver waits out the failover: bookings slow down briefly but hardly fail.
    assert measured.booking_failures <= 0.03 * measured.booking_rate * 10 + 2


def test_pod_failure_holds_pods_unready_until_cleared(platform):
    targets = tuple(PodRef("booking", pod.name) for pod in by_service(platform, "booking-api")[:2])
    platform.apply("fail", PodFailure(pods=targets))
    platform.simulate(10)
    held = {pod.name: pod for pod in platform.pods() if PodRef(pod.namespace, pod.name) in targets}
    assert len(held) == 2 and all(not pod.ready and pod.phase == "Running" for pod in held.values())
    with pytest.raises(PodNotServing):
        platform.render_pod_metrics("booking", targets[0].name)

    platform.clear("fail")
    platform.simulate(3.5)
    recovered = {pod.name: pod for pod in platform.pods() if PodRef(pod.namespace, pod.name) in targets}
    # The container restarts twice: into the pause image and back.
    assert all(pod.ready and pod.restart_count == 2 for pod in recovered.values())
    assert platform.active_faults() == {}


def test_container_kill_restarts_in_place(platform):
    target = by_service(platform, "cache")[0]
    platform.apply("ck", ContainerKill(pods=(PodRef("booking", target.name),), containers=("cache",)))
    after = {pod.name: pod for pod in by_service(platform, "cache")}[target.name]
    assert not after.ready and after.restart_count == 1 and after.uid == target.uid
    platform.simulate(3.5)
    assert {pod.name: pod for pod in by_service(platform, "cache")}[target.name].ready


def test_container_kill_of_another_container_name_does_nothing(platform):
    target = by_service(platform, "cache")[0]
    platform.apply("ck", ContainerKill(pods=(PodRef("booking", target.name),), containers=("sidecar",)))
    assert {pod.name: pod for pod in by_service(platform, "cache")}[target.name].restart_count == 0


def test_effects_apply_to_exactly_the_pods_given(platform):
    pods = by_service(platform, "web-frontend")
    platform.apply("kill-one", PodKill(pods=(PodRef("booking", pods[1].name),)))
    remaining = {pod.name for pod in by_service(platform, "web-frontend")}
    assert remaining == {pods[0].name, pods[2].name}


def test_unknown_pods_are_ignored_by_effects_and_refused_by_delete(platform):
    platform.apply("ghost", PodKill(pods=(PodRef("booking", "booking-api-zzzzz"),)))
    assert len(platform.pods()) == 23
    with pytest.raises(PodNotFound):
        platform.delete_pod(PodRef("booking", "booking-api-zzzzz"))
    with pytest.raises(PodNotFound):
        platform.render_pod_metrics("booking", "booking-api-zzzzz")


def test_set_labels_replaces_the_pods_labels(platform):
    target = by_service(platform, "cache")[0]
    platform.set_labels(PodRef("booking", target.name), {"app": "cache", "team": "sre"})
    assert {pod.name: pod for pod in platform.pods()}[target.name].labels == {"app": "cache", "team": "sre"}


def test_listeners_hear_platform_events_outside_the_lock(platform):
    heard = []
    # A listener calling back into the platform must not deadlock.
    platform.subscribe(lambda event: heard.append((event.kind, len(platform.pods()))))
    platform.delete_pod(PodRef("booking", by_service(platform, "cache")[0].name))
    platform.simulate(3.5)
    kinds = [kind for kind, _ in heard]
    assert kinds[:1] == ["PodDeleted"] and {"PodCreated", "Started", "Ready"} <= set(kinds)


def test_scrape_targets_follow_the_pods(platform):
    address = "127.0.0.1:9999"
    before = {group["labels"]["pod"] for group in platform.scrape_targets(address)}
    assert len(before) == 23
    victim = by_service(platform, "web-frontend")[0]
    platform.delete_pod(PodRef("booking", victim.name))
    platform.simulate(0.5)
    # The dead pod's target is gone; the Pending replacement has none until it runs.
    assert {group["labels"]["pod"] for group in platform.scrape_targets(address)} == before - {victim.name}
    platform.simulate(1.5)
    groups = platform.scrape_targets(address)
    assert len(groups) == 23
    group = next(g for g in groups if g["labels"]["pod"] not in before)
    assert group["targets"] == [address]
    assert group["labels"]["__metrics_path__"] == f"/pods/booking/{group['labels']['pod']}/metrics"
    assert (group["labels"]["namespace"], group["labels"]["service"]) == ("booking", "web-frontend")
