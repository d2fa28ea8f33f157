"""The disaster-recovery drill end to end: a real Airflow runs `chaos_dr_drill` on the sandbox,
both approvals given through the REST API; the database fails over for real and the run records
RTO and RPO that agree with the sandbox's own account of the failover."""

from __future__ import annotations


import pytest
import requests

from tests.e2e.test_tier_runs import ALL_DAY, Chaos, FaultWatch, clean_cluster  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.e2e

DAG_ID = "chaos_dr_drill"
# Inside the high tier's window now: no business hours, the off-hours window all day.
OPEN_WINDOW = {"business_hours.weekly": {}, "business_hours.freeze_dates": [], "tiers.high.window.weekly": ALL_DAY}


@pytest.fixture(scope="module", autouse=True)
def drill_dag(chaos: Chaos) -> None:
    chaos.admin.wait_for_dag(DAG_ID, timeout=180, unpause=False)
    assert chaos.admin.dag(DAG_ID)["is_paused"] is False  # arrives unpaused: its schedule is a policy switch


def platform_state(sandbox) -> dict:
    return requests.get(f"{sandbox.metrics_url}/sandbox/state", timeout=5).json()


def approved_run(chaos: Chaos) -> str:
    run_id = chaos.admin.trigger(DAG_ID, conf={"experiment": "database-failover"})
    for client, task_id in ((chaos.sre, "approve_sre"), (chaos.cto, "approve_executive")):
        chaos.admin.wait_for_task_state(DAG_ID, run_id, task_id, ["awaiting_input"], timeout=120)
        chaos.approve(client, DAG_ID, run_id, task_id)
    return run_id


def test_the_drill_fails_the_database_over_and_measures_rto_and_rpo(chaos, sandbox):
    chaos.policy(**OPEN_WINDOW)
    before = platform_state(sandbox)
    lost_before = {c["id"] for c in before["replication"]["lost"]}
    with FaultWatch(chaos) as watch:
        run_id = approved_run(chaos)
        chaos.admin.wait_for_run(DAG_ID, run_id, timeout=420, expect="success")
    after = platform_state(sandbox)
    assert watch.most == 1 and len(watch.names) == 1
    assert after["primary"] != before["primary"], "the database did not fail over"

    result = chaos.result(DAG_ID, run_id)
    assert result["verdict"] == "held", result["verdict_reason"]
    drill = result["drill"]
    assert drill["status"] == "met", drill["reasons"]
    assert (drill["primary_before"], drill["primary_after"]) == (before["primary"], after["primary"])
    # The sandbox promotes the replica 1.5 s after the primary dies.
    assert 1.4 <= drill["rto_s"] <= 10, drill
    # Exactly the acknowledged canaries the sandbox lost in this failover.
    assert set(drill["canaries"]["lost_ids"]) == {c["id"] for c in after["replication"]["lost"]} - lost_before
    assert drill["canaries"]["unverified"] == 0 and drill["rpo_s"] <= 1.0
    # The injection waited for the probe's baseline (5 s of acknowledged canaries).
    assert drill["injected_at"] - drill["canaries"]["first_at"] >= 5.0
    assert [a["task_id"] for a in result["approvals"]] == ["approve_sre", "approve_executive"]

    document = chaos.report(DAG_ID, run_id)
    assert document["disaster_recovery"]["rto_s"] == drill["rto_s"]
    assert document["disaster_recovery"]["canaries"]["lost"] == drill["canaries"]["lost"]


def test_a_probe_that_cannot_write_stops_the_drill_before_injection(chaos, sandbox):
    """Fail closed: without a baseline of acknowledged writes, nothing is injected."""
    chaos.policy(**OPEN_WINDOW, **{"disaster_recovery.probe.conn_id": "dr_probe_missing"})
    primary = platform_state(sandbox)["primary"]
    with FaultWatch(chaos) as watch:
        run_id = approved_run(chaos)
        chaos.admin.wait_for_run(DAG_ID, run_id, timeout=300, expect="failed")
    assert watch.most == 0 and platform_state(sandbox)["primary"] == primary
    states = chaos.admin.task_states(DAG_ID, run_id)
    assert states["dr_probe"] == "failed" and states["inject"] == "upstream_failed"
    assert states["remove_fault"] == "success" and states["release_lock"] == "success"
    result = chaos.result(DAG_ID, run_id)
    assert result["fault"] is None and result["verdict"] == "aborted"
    assert "dr_probe failed" in result["verdict_reason"]
