"""The database's asynchronous replication as a disaster-recovery drill sees it: canary bookings,
what a failover loses, and the `role` label that follows the primary."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from sandbox.platform import Platform
from sandbox.platform.effects import PodFailure, PodKill, PodRef
from sandbox.platform.exporter import PROBE_PREFIX, create_exporter_app
from sandbox.platform.platform import WriteFailed

DATABASE_0 = PodRef("booking", "database-0")
DATABASE_1 = PodRef("booking", "database-1")


@pytest.fixture
def platform() -> Platform:
    return Platform(seed=5, start_time=2_000_000.0, restart_delay_s=3.0)


def roles(platform: Platform) -> dict[str, str]:
    return {pod.name: pod.labels.get("role") for pod in platform.pods() if pod.service == "database"}


def test_the_role_label_follows_the_primary(platform):
    assert roles(platform) == {"database-0": "primary", "database-1": "replica"}
    platform.apply("kill", PodKill(pods=(DATABASE_0,)))
    platform.simulate(6)
    assert platform.primary == "database-1"
    assert roles(platform) == {"database-0": "replica", "database-1": "primary"}
    relabelled = [event for _, event in platform.recent_events if event.kind == "LabelsChanged"]
    assert {event.pod.name for event in relabelled} == {"database-1", "database-0"}


def test_canaries_replicated_before_a_crash_survive_and_the_unshipped_ones_are_lost(platform):
    shipped = [platform.write_canary()["id"] for _ in range(5)]
    platform.simulate(1)  # far beyond the replica's lag: shipped and replayed
    unshipped = [platform.write_canary()["id"] for _ in range(3)]  # acknowledged, then the crash
    platform.apply("kill", PodKill(pods=(DATABASE_0,)))

    with pytest.raises(WriteFailed):  # no instance takes writes until the replica is promoted
        platform.write_canary()
    platform.simulate(2)
    assert platform.primary == "database-1"
    after = platform.write_canary()
    assert after["instance"] == "database-1"

    assert [platform.read_canary(i) for i in shipped] == ["present"] * 5
    assert [platform.read_canary(i) for i in unshipped] == ["lost"] * 3
    assert platform.read_canary(after["id"]) == "present"
    assert platform.read_canary(10_000) == "unknown"
    assert [c["id"] for c in platform.state()["replication"]["lost"]] == unshipped
    # The old primary comes back as a replica of the new timeline: the lost rows stay lost.
    platform.simulate(5)
    assert roles(platform)["database-0"] == "replica"
    assert platform.read_canary(unshipped[0]) == "lost"


def test_a_primary_that_comes_back_before_any_promotion_keeps_its_commits(platform):
    # The replica is held down, so nothing can be promoted: the primary's volume is the truth.
    platform.apply("replica-down", PodFailure(pods=(DATABASE_1,)))
    platform.simulate(1)
    written = [platform.write_canary()["id"] for _ in range(3)]
    platform.apply("kill", PodKill(pods=(DATABASE_0,)))
    platform.simulate(6)
    assert platform.primary == "database-0"
    assert [platform.read_canary(i) for i in written] == ["present"] * 3
    assert platform.state()["replication"]["lost"] == []


def test_replication_lag_widens_the_loss_window(platform):
    """IO latency on the replica slows its replay: a crash then loses more of the recent commits."""
    from sandbox.platform.effects import IOFault

    platform.apply("slow-replica", IOFault(pods=(DATABASE_1,), delay_ms=50))
    platform.simulate(3)
    written = []
    for _ in range(6):  # 0.6 s of commits, every 0.1 s
        written.append(platform.write_canary()["id"])
        platform.simulate(0.1)
    platform.apply("kill", PodKill(pods=(DATABASE_0,)))
    platform.simulate(2)
    assert platform.primary == "database-1"
    statuses = [platform.read_canary(i) for i in written]
    # Lag ~0.5 s: the last ~5 commits were not yet replayed (only the oldest may have been).
    assert statuses.count("lost") >= 4, statuses


def test_the_probe_endpoints(platform):
    client = TestClient(create_exporter_app(platform))
    written = client.post(f"{PROBE_PREFIX}/canaries")
    assert written.status_code == 201 and written.json()["instance"] == "database-0"
    canary = written.json()["id"]
    assert client.get(f"{PROBE_PREFIX}/canaries/{canary}").json() == {"id": canary, "status": "present"}
    assert client.get(f"{PROBE_PREFIX}/canaries/999").status_code == 404

    platform.apply("kill", PodKill(pods=(DATABASE_0,)))
    refused = client.post(f"{PROBE_PREFIX}/canaries")
    assert refused.status_code == 503 and "failover" in refused.json()["error"]
    assert client.get(f"{PROBE_PREFIX}/canaries/{canary}").status_code == 503
