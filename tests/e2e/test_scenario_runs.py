"""Scenario DAGs end to end: a real Airflow on the sandbox, driven through its REST API; the
cluster sampled while each runs (what stood at once, what is left)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chaos_engineering.verification import digests_in

from tests.e2e import test_tier_runs
from tests.e2e.test_tier_runs import ALL_DAY, Chaos, FaultWatch, chaos_on_airflow
from tests.integration.receivers import S3Server

pytestmark = pytest.mark.e2e
# Each test starts on a steady platform with nothing of ours on the cluster, and must leave nothing.
clean_cluster = test_tier_runs.clean_cluster


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory, sandbox, connections, s3_reports: S3Server) -> Iterator[Chaos]:
    """An Airflow of this module's own (tests/conftest.py `OWN_AIRFLOW`): its runs span minutes
    of the sandbox's clock (the zone outage alone 2 min 30 s), which the other worker can spend
    beside the shared Airflow's modules. Stopped at the module's end."""
    with chaos_on_airflow(tmp_path_factory, sandbox, connections, s3=s3_reports) as chaos:
        yield chaos


def approve_when_asked(chaos: Chaos, dag_id: str, run_id: str, task_id: str, client) -> dict:
    chaos.admin.wait_for_task_state(dag_id, run_id, task_id, ["awaiting_input"], timeout=180)
    request = chaos.admin.hitl_detail(dag_id, run_id, task_id)
    chaos.approve(client, dag_id, run_id, task_id)
    return request


def test_the_cascade_is_approved_once_and_its_steps_run_to_held(chaos: Chaos) -> None:
    dag_id = "chaos_scenario_quick-cascade"
    with FaultWatch(chaos) as watch:
        run_id = chaos.admin.trigger(dag_id, conf={})
        request = approve_when_asked(chaos, dag_id, run_id, "approve_sre", chaos.sre)
        chaos.admin.wait_for_run(dag_id, run_id, timeout=420, expect="success")
    result = chaos.result(dag_id, run_id)
    assert result["verdict"] == "held", result["verdict_reason"]
    plan = result["experiment"]
    # One request for the whole scenario, showing every step's digest.
    assert sorted(digests_in(request["body"])) == sorted(s["digest"] for s in plan["steps"])
    assert [a["task_id"] for a in result["approvals"]] == ["approve_sre"]
    steps = result["monitor"]["steps"]
    assert result["monitor"]["status"] == "completed"
    assert all(s["created_at"] is not None and s["ended_at"] is not None for s in steps.values()), steps
    # The later steps started when due, in order: api-slow 5 s after the worker, api-slower after api-slow ended.
    assert steps["api-slow"]["created_at"] - steps["worker-starved"]["created_at"] >= 4
    assert steps["api-slower"]["created_at"] >= steps["api-slow"]["ended_at"] - 1
    assert watch.names == {s["object"] for s in steps.values()}
    # Ended objects stay until the teardown: all three were on the cluster together, but the
    # faults applied at once (created, not yet ended) were the worker's and one booking-api step.
    assert watch.most == 3
    assert watch.most_applied == 2
    assert [result["recovery"][s]["status"] for s in ("immediate", "short_term", "business")] == ["recovered"] * 3
    report = chaos.report(dag_id, run_id)
    assert report["verdict"]["value"] == "held"
    # The report's timeline: each step where it stood, in the order it started.
    assert [s["step"] for s in report["scenario"]["steps"]] == ["worker-starved", "api-slow", "api-slower"]
    assert all(s["started"] is not None and s["ended"] is not None for s in report["scenario"]["steps"])
    assert any("quick-cascade" in t for t in chaos.slack_texts(run_id))


def test_a_breach_on_the_second_step_removes_every_step(chaos: Chaos) -> None:
    dag_id = "chaos_scenario_quick-breach"
    with FaultWatch(chaos) as watch:
        run_id = chaos.admin.trigger(dag_id, conf={})
        approve_when_asked(chaos, dag_id, run_id, "approve_sre", chaos.sre)
        chaos.admin.wait_for_task_state(dag_id, run_id, "monitor", ["failed"], timeout=300)
        # The trigger removed both: none stands (a deletion may still be finishing).
        assert [o for o in chaos.objects() if not o["metadata"].get("deletionTimestamp")] == []
        chaos.admin.wait_for_run(dag_id, run_id, timeout=420, expect="failed")
    result = chaos.result(dag_id, run_id)
    monitor = result["monitor"]
    assert monitor["steps"]["api-abort"]["created_at"] is not None
    assert result["verdict"] == "broken", result["verdict_reason"]
    assert monitor["breach_after_step"] == "api-abort"
    assert all(s["removal_requested_at"] is not None for s in monitor["steps"].values()), monitor["steps"]
    assert monitor["removal_requested_at"] - monitor["breach"]["at"] < 3
    assert watch.most == 2 and len(watch.names) == 2
    report = chaos.report(dag_id, run_id)
    assert report["scenario"]["breach"]["step"] == "api-abort", report["scenario"]["breach"]


def test_the_zone_outage_approved_by_sre_and_executive_runs_its_three_steps(chaos: Chaos) -> None:
    chaos.policy(**{"business_hours.weekly": {}, "business_hours.freeze_dates": [], "tiers.high.window.weekly": ALL_DAY})
    dag_id = "chaos_scenario_booking-zone-outage"
    with FaultWatch(chaos) as watch:
        run_id = chaos.admin.trigger(dag_id, conf={})
        approve_when_asked(chaos, dag_id, run_id, "approve_sre", chaos.sre)
        assert chaos.objects() == []  # one approval of two: nothing yet
        approve_when_asked(chaos, dag_id, run_id, "approve_executive", chaos.cto)
        chaos.admin.wait_for_run(dag_id, run_id, timeout=600)
    result = chaos.result(dag_id, run_id)
    steps = result["monitor"]["steps"]
    assert [a["task_id"] for a in result["approvals"]] == ["approve_sre", "approve_executive"]
    assert result["verdict"] in ("held", "broken"), result["verdict_reason"]
    if result["verdict"] == "held":
        assert all(s["created_at"] is not None for s in steps.values()), steps
        assert watch.names == {s["object"] for s in steps.values()}
    report = chaos.report(dag_id, run_id)
    assert set(steps) == {"zone-partition", "zone-pods-fail", "database-failover"}
    assert {s["step"] for s in report["scenario"]["steps"]} == set(steps)
    assert report["verdict"]["value"] == result["verdict"]
