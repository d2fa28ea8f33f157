"""The DR drill's probe on the sandbox: a real failover through the Kubernetes API (the shipped
`database-failover` experiment, selected by the primary's `role` label), measured with canary
bookings and checked against the sandbox's own record of what the failover lost."""

from __future__ import annotations

import time

import pytest
import requests

from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.drill import CanaryProbe, DrillAborted, assess
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.hooks.dr_probe import DrProbeHook
from chaos_engineering.render import render_chaos_object
from sandbox.steady import wait_steady
from tests.integration.chaos_support import remove

CATALOGUE = load_catalogue()
POLICY = CATALOGUE.policy
DRILL = POLICY.disaster_recovery


def platform_state(sandbox) -> dict:
    return requests.get(f"{sandbox.metrics_url}/sandbox/state", timeout=5).json()


@pytest.fixture
def failover(connections, sandbox):
    """Creates the drill's fault on demand; removes it and waits for a steady platform after."""
    created = []

    def inject() -> float:
        manifest = render_chaos_object(CATALOGUE.get(DRILL.experiment), POLICY, dag_id="test_dr_drill", run_id=f"t{time.time_ns()}")
        created.append(ChaosMeshHook().create(manifest))
        return time.time()

    yield inject
    for obj in created:
        remove(obj)
    # The next tests wait for the steadiness they need themselves; this only lets the failover settle.
    wait_steady(POLICY, window_s=30)


def test_the_drill_measures_a_real_failover(sandbox, failover):
    primary = platform_state(sandbox)["primary"]
    lost_before = {c["id"] for c in platform_state(sandbox)["replication"]["lost"]}
    probe = CanaryProbe(DrProbeHook(DRILL.probe.conn_id), DRILL.probe)
    probe.baseline()
    injected = {}
    stopped = probe.observe(
        lambda: injected.setdefault("at", failover()) if len(probe.writes) > 30 else injected.get("at"),
        lambda: None,
        wait_for_injection_s=60,
    )
    record = assess(probe.writes, stopped, probe.verify(), DRILL.probe, DRILL.targets)

    state = platform_state(sandbox)
    assert state["primary"] != primary, "the failover did not happen"
    assert (record["primary_before"], record["primary_after"]) == (primary, state["primary"])
    # The sandbox promotes a replica 1.5 s after the primary stops: RTO at least that, well inside 30 s.
    assert 1.4 <= record["rto_s"] <= 10, record
    assert record["outage"]["failed_writes"] >= 3
    # Exactly the canaries the sandbox says the failover lost, no more, no less.
    ours = {w.canary_id for w in probe.writes if w.ok}
    lost_now = {c["id"] for c in state["replication"]["lost"]} - lost_before
    assert set(record["canaries"]["lost_ids"]) == lost_now & ours
    assert record["canaries"]["unverified"] == 0
    assert record["status"] == "met", record["reasons"]
    # Stopped once writes were back for `settle`, long before `observe`.
    assert probe.writes[-1].answered_at - stopped < DRILL.probe.observe / 2


def test_the_probe_refuses_to_start_when_the_platform_takes_no_writes(sandbox, connections, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_DR_PROBE_DEFAULT", '{"conn_type": "http", "host": "http://127.0.0.1:9"}')
    probe = CanaryProbe(DrProbeHook(), DRILL.probe)
    with pytest.raises(DrillAborted, match="ConnectionError"):
        probe.baseline()
    assert ChaosMeshHook().list(ChaosKind.POD_CHAOS, None, "airflow-chaos.dev/experiment=database-failover") == []
