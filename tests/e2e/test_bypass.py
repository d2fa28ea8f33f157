"""An adversarial Airflow user against the safety promise, through the REST API only.

`mallory` has Airflow's ordinary `user` role and approves nothing. Each bypass she tries
(marking an approval success, editing the plan's XCom, clearing `inject` after a finished run,
resuming after an emergency stop) is asserted on the cluster (no fault of ours, the halt kept)
and by the message the refusing task logs. One person holding both high-tier approvals is made
impossible by the policy itself (and refused at inject, tests/unit/test_verification.py).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator

import pytest

from chaos_engineering.halt import HaltFlag
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from sandbox.airflow_client import AirflowApiError
from tests.e2e.test_tier_runs import ALL_DAY, NAMESPACE, Chaos, FaultWatch, chaos_on_airflow, policy_of
from sandbox.steady import wait_steady

pytestmark = pytest.mark.e2e

# Every tier's window open all day, so the refusals below are the bypass's, not the clock's.
OPEN = {"business_hours.weekly": {}, "business_hours.freeze_dates": [], "tiers.medium.window.weekly": ALL_DAY, "tiers.high.window.weekly": ALL_DAY}
MEDIUM = "chaos_medium_risk"


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory, sandbox, connections) -> Iterator[Chaos]:
    with chaos_on_airflow(tmp_path_factory, sandbox, connections) as chaos:
        chaos.mallory = chaos.stack.client("mallory")
        yield chaos


@pytest.fixture(autouse=True)
def open_window(chaos: Chaos) -> Iterator[None]:
    chaos.policy(**OPEN)
    assert chaos.objects() == [] and chaos.lock_holder() is None
    wait_steady(policy_of(chaos.include))
    yield
    assert chaos.objects() == [], "a bypass left a fault of ours on the cluster"


def awaiting_sre(chaos: Chaos, experiment: str = "email-service-quick-abort") -> str:
    run_id = chaos.admin.trigger(MEDIUM, conf={"experiment": experiment})
    chaos.admin.wait_for_task_state(MEDIUM, run_id, "approve_sre", ["awaiting_input"], timeout=120)
    return run_id


def refused_at_inject(chaos: Chaos, dag_id: str, run_id: str, *words: str, try_number: int = 1) -> str:
    chaos.admin.wait_for_task_state(dag_id, run_id, "inject", ["failed"], timeout=300)
    log = chaos.admin.task_log(dag_id, run_id, "inject", try_number=try_number)
    for text in words:
        assert text in log, f"{text!r} not in the inject log:\n{log}"
    return log


def test_an_approval_marked_success_is_no_approval(chaos: Chaos) -> None:
    with FaultWatch(chaos) as watch:
        run_id = awaiting_sre(chaos)
        chaos.mallory.set_task_state(MEDIUM, run_id, "approve_sre", "success")
        refused_at_inject(
            chaos, MEDIUM, run_id,
            "inject refused, nothing was created",
            "sre approval: Airflow has no answer recorded for task 'approve_sre' of this run (a task marked success, cleared or skipped is not an approval)",
        )
        chaos.admin.wait_for_run(MEDIUM, run_id, timeout=240, expect="failed")
    assert watch.most == 0


def test_an_edited_plan_is_refused_whatever_was_approved(chaos: Chaos) -> None:
    with FaultWatch(chaos) as watch:
        run_id = awaiting_sre(chaos)
        plan = chaos.mallory.xcom(MEDIUM, run_id, "plan")
        edited = copy.deepcopy(plan)
        # Another experiment and a kill switch that could never fire. (An edited manifest is refused
        # by pre-flight's target check, and ignored by inject: tests/integration/test_inject.py.)
        edited["experiment"] = "booking-api-abort"
        loosest = {"max_drop_percent": 100, "at_least": 0}
        edited["thresholds"] = {name: dict(t, limit=loosest.get(t["rule"], 10_000)) for name, t in plan["thresholds"].items()}
        chaos.mallory.set_xcom(MEDIUM, run_id, "plan", edited)
        chaos.approve(chaos.sre, MEDIUM, run_id, "approve_sre")
        refused_at_inject(
            chaos, MEDIUM, run_id,
            "the run was triggered for 'email-service-quick-abort', but its plan now names 'booking-api-abort' (the plan's XCom was changed)",
        )
        chaos.admin.wait_for_run(MEDIUM, run_id, timeout=240, expect="failed")
    assert watch.most == 0


def test_clearing_inject_after_a_finished_run_never_injects_again(chaos: Chaos) -> None:
    run_id, result = chaos.run("chaos_low_risk", "booking-api-quick-kill", expect="success")
    assert result["fault"]["name"]
    with FaultWatch(chaos) as watch:
        chaos.mallory.clear_tasks("chaos_low_risk", run_id, ["inject"])
        chaos.admin.wait_for_task_state("chaos_low_risk", run_id, "inject", ["failed"], timeout=300)
        ti = chaos.admin.task_instance("chaos_low_risk", run_id, "inject")
        log = chaos.admin.task_log("chaos_low_risk", run_id, "inject", try_number=ti["try_number"])
        assert "this run has injected once already (booking-api-quick-kill" in log, log
        assert "a run never injects twice, even after its tasks are cleared: trigger a new run" in log
        chaos.admin.wait_for_run("chaos_low_risk", run_id, timeout=120)
    assert watch.most == 0


def test_resuming_needs_an_answer_from_an_sre(chaos: Chaos) -> None:
    halt = HaltFlag(ChaosMeshHook(), NAMESPACE)
    halt.set("e2e", "bypass test: halted")
    try:
        asked = chaos.mallory.trigger("chaos_resume", conf={"reason": "mallory wants chaos back"})
        chaos.admin.wait_for_task_state("chaos_resume", asked, "approve_resume", ["awaiting_input"], timeout=120)
        with pytest.raises(AirflowApiError) as forbidden:
            chaos.mallory.respond("chaos_resume", asked, "approve_resume", ["Approve"])
        assert forbidden.value.status_code == 403
        chaos.mallory.set_task_state("chaos_resume", asked, "approve_resume", "success")
        chaos.admin.wait_for_run("chaos_resume", asked, timeout=180, expect="failed")
        log = chaos.admin.task_log("chaos_resume", asked, "resume")
        assert "not resuming, the halt stays set" in log and "Airflow has no answer recorded for task 'approve_resume'" in log, log
        assert halt.state().halted, "the halt was cleared without an SRE's answer"

        approved = chaos.admin.trigger("chaos_resume", conf={"reason": "incident closed"})
        chaos.approve(chaos.sre, "chaos_resume", approved, "approve_resume")
        chaos.admin.wait_for_run("chaos_resume", approved, timeout=180, expect="success")
        state = halt.state()
        assert not state.halted and "approved by sre-oncall" in state.resumed_by
    finally:
        if halt.state().halted:
            halt.clear("e2e-cleanup", "bypass test over")


def test_one_person_cannot_give_both_high_tier_approvals(chaos: Chaos) -> None:
    # Airflow refuses an answer from anyone the policy does not name for the role...
    with FaultWatch(chaos) as watch:
        run_id = chaos.admin.trigger("chaos_high_risk", conf={"experiment": "booking-api-multi-pod-failure"})
        chaos.approve(chaos.sre, "chaos_high_risk", run_id, "approve_sre")
        chaos.admin.wait_for_task_state("chaos_high_risk", run_id, "approve_executive", ["awaiting_input"], timeout=120)
        for who in (chaos.sre, chaos.admin):
            with pytest.raises(AirflowApiError) as forbidden:
                who.respond("chaos_high_risk", run_id, "approve_executive", ["Approve"])
            assert forbidden.value.status_code == 403
        chaos.approve(chaos.cto, "chaos_high_risk", run_id, "approve_executive", option="Reject")
        chaos.admin.wait_for_run("chaos_high_risk", run_id, timeout=180)
    assert watch.most == 0
    # ...and a policy naming one person for both roles is refused as a whole: nothing runs under it.
    chaos.policy(**OPEN, **{"approvers.executive": ["cto", "sre-oncall"]})
    try:
        message = "two approvals must come from two people"
        deadline = time.monotonic() + 120
        while not any(message in e.get("stack_trace", "") for e in chaos.admin.import_errors()):
            assert time.monotonic() < deadline, f"no import error naming the overlap: {chaos.admin.import_errors()}"
            time.sleep(2)
        assert chaos.objects() == []
    finally:
        chaos.policy(**OPEN)
        deadline = time.monotonic() + 120
        while chaos.admin.import_errors():
            assert time.monotonic() < deadline, chaos.admin.import_errors()
            time.sleep(2)
