"""An adversarial Airflow user against the safety promise, through the REST API only.

`mallory` has Airflow's ordinary `user` role and approves nothing. Each bypass she tries
(marking an approval success, editing the plan's XCom, clearing `inject` after a finished run,
resuming after an emergency stop) is asserted on the cluster (no fault of ours, the halt kept)
and by the message the refusing task logs. One person holding both high-tier approvals is made
impossible by the policy itself (and refused at inject, tests/unit/test_verification.py).

The Chaos page the plugin mounts at `/chaos` sits outside Airflow's own routers: each of its
endpoints is called without credentials and as the read-only `chaos-verifier`, and a stop pressed
there by an SRE is asserted on the cluster.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests

from chaos_engineering.halt import HaltFlag
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from sandbox.airflow_client import AirflowApiError, AirflowClient
from sandbox.airflow_stack import VERIFIER
from tests.integration.chaos_support import create_fault, get, remove, wait_injected
from tests.e2e.conftest import chaos_page_url, get_as, needs_steady_platform, report_links
from tests.e2e.test_tier_runs import ALL_DAY, NAMESPACE, Chaos, FaultWatch, clean_up_after, policy_of
from sandbox.steady import wait_steady

pytestmark = pytest.mark.e2e

# Every tier's window open all day, so the refusals below are the bypass's, not the clock's.
OPEN = {"business_hours.weekly": {}, "business_hours.freeze_dates": [], "tiers.medium.window.weekly": ALL_DAY, "tiers.high.window.weekly": ALL_DAY}
MEDIUM = "chaos_medium_risk"


@pytest.fixture(scope="module", autouse=True)
def mallory(chaos: Chaos) -> Iterator[None]:
    chaos.mallory = chaos.stack.client("mallory")
    yield
    clean_up_after(chaos, "the bypass module")


@pytest.fixture(autouse=True)
def open_window(chaos: Chaos, request: pytest.FixtureRequest) -> Iterator[None]:
    chaos.policy(**OPEN)
    assert chaos.objects() == [] and chaos.lock_holder() is None
    if needs_steady_platform(request):
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


@pytest.mark.no_preflight
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


@pytest.mark.no_preflight
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


# --- the Chaos page -------------------------------------------------------------------------------

PAGE_ENDPOINTS = [("GET", "/chaos/"), ("GET", "/chaos/api/status"), ("POST", "/chaos/api/stop"), ("POST", "/chaos/api/resume"),
                  ("GET", "/chaos/reports/chaos_low_risk/manual__x/report.html")]


def page_call(chaos: Chaos, method: str, path: str, client: AirflowClient | None = None, reason: str = "page test") -> requests.Response:
    headers = {"Authorization": f"Bearer {client.token()}"} if client else {}
    return requests.request(method, chaos.stack.base_url.rstrip("/") + path, headers=headers, timeout=60,
                            json={"reason": reason} if method == "POST" else None)


@pytest.mark.no_preflight
def test_every_chaos_page_endpoint_needs_a_session_and_a_viewer_may_only_look(chaos: Chaos) -> None:
    halt = HaltFlag(ChaosMeshHook(), NAMESPACE)
    fault = create_fault("page-e2e-viewer")
    try:
        runs_before = {d: len(chaos.admin.request("GET", f"/dags/{d}/dagRuns")["dag_runs"]) for d in ("chaos_emergency_stop", "chaos_resume")}
        for method, path in PAGE_ENDPOINTS:
            response = page_call(chaos, method, path)
            assert (response.status_code, response.json()) == (401, {"detail": "Not authenticated"}), (method, path)
            forged = requests.request(method, chaos.stack.base_url.rstrip("/") + path, cookies={"_token": "forged"}, json={"reason": "x" * 5}, timeout=60)
            assert (forged.status_code, forged.json()) == (403, {"detail": "Invalid JWT token"}), (method, path)
        viewer = chaos.stack.client(VERIFIER)
        page = page_call(chaos, "GET", "/chaos/", viewer)
        assert page.status_code == 200 and 'id="halt-state"' in page.text and 'id="active-faults"' in page.text
        assert 'id="stop-button"' not in page.text and 'id="resume-button"' not in page.text
        status = page_call(chaos, "GET", "/chaos/api/status", viewer)
        assert status.status_code == 200 and [f["name"] for f in status.json()["active_faults"]] == [fault["metadata"]["name"]]
        for path, dag_id in (("/chaos/api/stop", "chaos_emergency_stop"), ("/chaos/api/resume", "chaos_resume")):
            refused = page_call(chaos, "POST", path, viewer)
            assert (refused.status_code, refused.json()) == (403, {"detail": f"you may not trigger {dag_id}: only users allowed to trigger it may press this"})
        missing = page_call(chaos, "GET", "/chaos/reports/chaos_low_risk/manual__x/report.html", viewer)
        assert (missing.status_code, missing.json()) == (404, {"detail": "no run 'manual__x' of 'chaos_low_risk'"})
        assert not halt.state().halted and get(fault) is not None, "a refused request changed the cluster"
        runs_after = {d: len(chaos.admin.request("GET", f"/dags/{d}/dagRuns")["dag_runs"]) for d in runs_before}
        assert runs_after == runs_before
    finally:
        remove(fault)


@pytest.mark.no_preflight
def test_a_stop_pressed_on_the_chaos_page_halts_in_the_users_name_and_removes_a_live_fault_within_5_s(chaos: Chaos) -> None:
    halt = HaltFlag(ChaosMeshHook(), NAMESPACE)
    fault = create_fault("page-e2e-stop")
    try:
        wait_injected(fault)
        chaos.slack.payloads.clear()
        pressed = time.monotonic()
        response = page_call(chaos, "POST", "/chaos/api/stop", chaos.sre, reason="checkout errors after the deploy")
        assert response.status_code == 200, response.text
        while get(fault) is not None:
            assert time.monotonic() - pressed < 5, "the fault is still on the cluster 5 s after the stop was pressed"
            time.sleep(0.1)
        state = halt.state()
        assert (state.halted, state.halted_by, state.halted_reason) == (True, "sre-oncall", "checkout errors after the deploy")
        follow_up = response.json()["follow_up"]
        assert follow_up["by"] == "dag_run", follow_up
        chaos.admin.wait_for_run("chaos_emergency_stop", follow_up["run_id"], timeout=180, expect="success")
        run = chaos.admin.run("chaos_emergency_stop", follow_up["run_id"])
        assert (run["triggering_user_name"], run["conf"]) == ("sre-oncall", {"reason": "checkout errors after the deploy"})
        alerts = [json.dumps(p) for p in chaos.slack.payloads]
        assert any("sre-oncall" in a and "checkout errors after the deploy" in a for a in alerts), alerts
        assert chaos.lock_holder() is None
    finally:
        if get(fault) is not None:
            remove(fault)
        if halt.state().halted:
            halt.clear("e2e-cleanup", "chaos page test over")


def test_the_report_task_links_open_the_report_through_the_chaos_page(chaos: Chaos) -> None:
    run_id, result = chaos.run("chaos_low_risk", "booking-api-quick-kill", expect="success", dry_run=True)
    links = report_links(chaos, "chaos_low_risk", run_id)
    quoted = quote(run_id, safe="")
    assert links == {"Report (HTML)": chaos_page_url(chaos, f"/reports/chaos_low_risk/{quoted}/report.html"),
                     "Report (PDF)": chaos_page_url(chaos, f"/reports/chaos_low_risk/{quoted}/report.pdf")}
    html = get_as(chaos, VERIFIER, links["Report (HTML)"])
    assert html.status_code == 200 and html.headers["content-type"] == "text/html; charset=utf-8"
    assert html.content == (chaos.folder("chaos_low_risk", run_id) / "report.html").read_bytes()
    pdf = get_as(chaos, VERIFIER, links["Report (PDF)"])
    assert (pdf.status_code, pdf.headers["content-type"], pdf.content[:5]) == (200, "application/pdf", b"%PDF-")
    assert requests.get(links["Report (HTML)"], timeout=60).status_code == 401
