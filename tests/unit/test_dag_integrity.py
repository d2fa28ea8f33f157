"""Every DAG parses with no live service, and each tier's chain has the required shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.definitions.param import process_params
from airflow.sdk.exceptions import ParamValidationError
from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.operators.common import ROTATION
from chaos_engineering.policy import Tier, load_policy
from chaos_engineering.tier_chain import CHAIN

DAGS = Path(__file__).resolve().parents[2] / "dags"
TIER_DAGS = {Tier.LOW: "chaos_low_risk", Tier.MEDIUM: "chaos_medium_risk", Tier.HIGH: "chaos_high_risk"}
APPROVALS = {Tier.LOW: ["approve_by_policy"], Tier.MEDIUM: ["approve_sre"], Tier.HIGH: ["approve_sre", "approve_executive"]}


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(TIER_DAGS.values()) <= set(dagbag.dag_ids)


def test_every_dag_is_documented_tagged_and_owned(dagbag):
    for dag in dagbag.dags.values():
        assert dag.doc_md and len(dag.doc_md) > 100, dag.dag_id
        assert "chaos-engineering" in dag.tags, dag.dag_id
        assert all(task.owner == "sre" for task in dag.tasks), dag.dag_id


def _expanded(tier: Tier) -> list[str]:
    return [t for step in CHAIN for t in (APPROVALS[tier] if step == "approvals" else [step])]


@pytest.mark.parametrize("tier", list(Tier), ids=[t.value for t in Tier])
def test_tier_chain_order(dagbag, tier):
    dag = dagbag.dags[TIER_DAGS[tier]]
    expected = _expanded(tier)
    assert sorted(dag.task_ids) == sorted(expected)
    for earlier, later in zip(expected, expected[1:]):
        assert earlier in dag.get_task(later).upstream_task_ids, f"{earlier} must come right before {later}"
    assert dag.max_active_runs == 1
    assert dag.params["dry_run"] is False


@pytest.mark.parametrize("tier", list(Tier), ids=[t.value for t in Tier])
def test_fault_removal_and_lock_release_are_teardowns_of_the_lock(dagbag, tier):
    dag = dagbag.dags[TIER_DAGS[tier]]
    lock = dag.get_task("acquire_lock")
    assert lock.is_setup
    for task_id in ("remove_fault", "release_lock"):
        teardown = dag.get_task(task_id)
        assert teardown.is_teardown and teardown.on_failure_fail_dagrun
        assert "acquire_lock" in teardown.upstream_task_ids
    for task_id in ("write_result", "report", "verdict"):
        assert dag.get_task(task_id).trigger_rule == "all_done", task_id
    assert [t.task_id for t in dag.leaves] == ["verdict"]


@pytest.mark.parametrize("tier", list(Tier), ids=[t.value for t in Tier])
def test_a_recovery_stage_measures_again_when_its_worker_died(dagbag, tier):
    # Safe to retry: a retry after the deadline can only say `unobserved` or `deadline_missed`
    # (triggers.stage_status), never that the stage held.
    dag = dagbag.dags[TIER_DAGS[tier]]
    assert [dag.get_task(f"recovery_{stage}").retries for stage in ("immediate", "short_term", "business")] == [1, 1, 1]


def retry_span_s(task) -> float:
    """How long a task's Airflow retries keep trying: the sum of its waits (Airflow's backoff, capped)."""
    delay, factor = task.retry_delay.total_seconds(), task.retry_exponential_backoff or 1.0
    cap = task.max_retry_delay.total_seconds() if task.max_retry_delay else float("inf")
    return sum(min(delay * factor**n, cap) for n in range(task.retries))


@pytest.mark.parametrize("tier", list(Tier), ids=[t.value for t in Tier])
def test_the_steps_that_must_finish_outlast_an_api_server_restart(dagbag, tier):
    # The campaign's api-server-kill during removal: two tries 5 s apart both fell inside the
    # restart, and the run left its object and its lock.
    dag = dagbag.dags[TIER_DAGS[tier]]
    for task_id in ("remove_fault", "release_lock", "write_result", "report"):
        assert retry_span_s(dag.get_task(task_id)) >= 180, task_id


@pytest.mark.parametrize("tier", list(Tier), ids=[t.value for t in Tier])
def test_safety_steps_never_retry_blindly(dagbag, tier):
    dag = dagbag.dags[TIER_DAGS[tier]]
    for task_id in ("preflight", "monitor", "window_guard", *APPROVALS[tier]):
        assert dag.get_task(task_id).retries == 0, task_id
    assert dag.get_task("monitor").template_fields == ("plan", "fault", "preflight")


def test_trigger_form_offers_the_rotation_first_and_only_the_tiers_valid_experiments(dagbag):
    """The rotation is a real, non-empty choice (3.3's form disables Trigger on ""), the default;
    "" stays valid for API callers, last; every other value is a valid experiment of the tier."""
    catalogue = load_catalogue()
    for tier, dag_id in TIER_DAGS.items():
        param = dagbag.dags[dag_id].params.get_param("experiment")
        names = [e.name for e in catalogue.for_tier(tier)]
        assert param.value == ROTATION
        assert param.schema["enum"] == [ROTATION, *names, ""]
        assert param.schema["values_display"][ROTATION] == "(rotation: the tier's next experiment)"
        assert param.description is None  # the UI renders description_md only without a description


def test_trigger_form_shows_each_experiments_target_action_blast_radius_and_duration(dagbag):
    param = dagbag.dags["chaos_high_risk"].params.get_param("experiment")
    assert param.schema["values_display"]["booking-api-database-partition"] == (
        "booking-api-database-partition: NetworkChaos partition on booking-api "
        "(mode one in booking; target mode all in booking), 1m30s"
    )
    assert param.schema["values_display"]["booking-api-multi-pod-failure"] == (
        "booking-api-multi-pod-failure: PodChaos pod-failure on booking-api (mode fixed 2 in booking), 2m"
    )
    assert "| `cache-failure` | cache | PodChaos pod-failure | mode one in booking | 2m |" in (
        dagbag.dags["chaos_medium_risk"].params.get_param("experiment").schema["description_md"]
    )


@pytest.mark.parametrize("tier", list(Tier), ids=[t.value for t in Tier])
def test_the_rotation_and_the_empty_value_pass_the_forms_validation(dagbag, tier):
    """What each task checks when it starts (a run in flight with "" keeps working)."""
    dag = dagbag.dags[TIER_DAGS[tier]]
    for value in (ROTATION, ""):
        assert process_params(dag, dag.get_task("plan"), {"experiment": value}, suppress_exception=False)["experiment"] == value
    with pytest.raises(ParamValidationError, match="'no-such-experiment' is not one of"):
        process_params(dag, dag.get_task("plan"), {"experiment": "no-such-experiment"}, suppress_exception=False)


def test_approvers_come_from_the_policy(dagbag):
    policy, _ = load_policy()
    high = dagbag.dags["chaos_high_risk"]
    assert [u["id"] for u in high.get_task("approve_executive").assigned_users] == policy.approvers["executive"]
    assert [u["id"] for u in high.get_task("approve_sre").assigned_users] == policy.approvers["sre"]


def test_the_dr_drill_is_the_high_chain_with_a_probe_that_gates_the_injection(dagbag):
    """The drill keeps every step (and teardown) of the high tier; the canary probe starts once
    the lock is held, the injection waits for its baseline, and the lock outlives the probe."""
    policy, _ = load_policy()
    dag = dagbag.dags["chaos_dr_drill"]
    high = dagbag.dags["chaos_high_risk"]
    assert set(dag.task_ids) == set(high.task_ids) | {"dr_probe", "dr_probe_ready"}
    for task_id in high.task_ids:
        assert set(high.get_task(task_id).upstream_task_ids) <= set(dag.get_task(task_id).upstream_task_ids), task_id
    assert dag.get_task("dr_probe").upstream_task_ids == {"acquire_lock"}
    assert dag.get_task("dr_probe_ready").upstream_task_ids == {"acquire_lock"}
    assert "dr_probe_ready" in dag.get_task("inject").upstream_task_ids
    assert "dr_probe" in dag.get_task("release_lock").upstream_task_ids
    assert dag.get_task("dr_probe").retries == 0 and dag.get_task("dr_probe_ready").retries == 0
    assert dag.params.get_param("experiment").schema["enum"] == [policy.disaster_recovery.experiment]
    assert dag.params["experiment"] == "database-failover"
    assert "disaster-recovery" in dag.tags and dag.max_active_runs == 1
    # Off-hours under the high tier's window, announced as far ahead as the high tier.
    assert dag.timetable.announce_ahead.total_seconds() == policy.tiers[Tier.HIGH].announce_ahead
    assert dag.timetable.cron == policy.disaster_recovery.schedule != high.timetable.cron
    assert dag.timetable.window == high.timetable.window


def test_schedules_are_a_policy_switch_and_the_dags_arrive_unpaused(dagbag):
    """Pausing is not the switch (the trigger dialog unpauses a paused DAG by default): every DAG
    that injects arrives unpaused and schedules only what the policy switches on."""
    policy, _ = load_policy()
    switches = {TIER_DAGS[t]: policy.tiers[t].scheduled for t in Tier} | {"chaos_dr_drill": policy.disaster_recovery.scheduled}
    for dag_id, scheduled in switches.items():
        dag = dagbag.dags[dag_id]
        assert dag.is_paused_upon_creation is False, dag_id
        assert dag.timetable.scheduled is scheduled is False, dag_id  # shipped off
