"""What an SRE does in the Airflow UI, in Chromium, on one real Airflow on the sandbox.

The steps run in file order and share two runs, to keep the module to one Airflow and two faults:

- the **medium** run, a chosen experiment triggered from the form, approved by clicking in the
  Required Action view, followed to its verdict ("held"), its report opened by the extra link;
- the **rotation** run of the low tier, triggered from the form with the default choice once the
  medium run holds the lock (so it queues behind it instead of taking the lock first). Its fault
  is the live one of the Chaos page: a viewer sees it and cannot stop it, then the SRE stops it
  with the button (asserted on the cluster), and the run ends halted.

A stopped run cannot also show a held verdict, hence two runs; the rotation's five-minute fault
leaves time for both Chaos page steps whatever the machine's speed. Every step saves a numbered
screenshot in the module's output folder (printed at the end); with CHAOS_SAVE_DOCS_SCREENSHOTS=1
the approval view and the Chaos page also go to docs/ for the README.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, urlparse

import pytest
from playwright.sync_api import Browser, FrameLocator, Page, expect

from chaos_engineering.chaosmesh.duration import parse_go_duration
from chaos_engineering.halt import HaltFlag
from sandbox.airflow_stack import VERIFIER
from sandbox.steady import wait_steady
from tests.e2e.browser_support import AirflowUI, Screenshots, chromium, in_viewport_without_scrolling, wait_until
from tests.e2e.test_tier_runs import ALL_DAY, NAMESPACE, Chaos, active_faults, clean_up_after, policy_of

pytestmark = pytest.mark.e2e

LOW, MEDIUM, HIGH = "chaos_low_risk", "chaos_medium_risk", "chaos_high_risk"
CHOSEN = "email-service-quick-abort"  # 20 s, held on the sandbox
HIGH_CHOSEN = "booking-api-database-partition"  # both sides of a partition: the longest request
SRE, CTO = "sre-oncall", "cto"
# The high tier may run now: no business hours, its window all day.
OPEN_HIGH_WINDOW = {"business_hours.weekly": {}, "business_hours.freeze_dates": [], "tiers.high.window.weekly": ALL_DAY}
STOP_REASON = "e2e browser: bookings at risk"


@dataclass
class Journey:
    """What the steps hand on to the next: run ids, and which steps are done."""

    medium: str | None = None
    rotation: str | None = None
    rotation_experiment: str | None = None
    done: set[str] = field(default_factory=set)

    def need(self, step: str) -> None:
        assert step in self.done, f"step {step!r} did not complete earlier in this module; this step builds on it"


@pytest.fixture(scope="module")
def clean_module(chaos: Chaos) -> Iterator[None]:
    """The module starts and must end with nothing of ours on the cluster, the lock free, no halt."""
    chaos.policy()
    assert chaos.objects() == [] and chaos.lock_holder() is None
    assert not HaltFlag(chaos.cluster, NAMESPACE).state().halted
    wait_steady(policy_of(chaos.include))
    yield
    clean_up_after(chaos, "the browser module")


@pytest.fixture(scope="module")
def browser(clean_module: None) -> Iterator[Browser]:
    # After clean_module's wait: Playwright's sync API keeps an event loop running in this thread,
    # and the Prometheus hook's synchronous calls (asyncio.run) refuse to run beside it.
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Screenshots]:
    shots = Screenshots(tmp_path_factory.mktemp("browser-steps"))
    yield shots
    print(f"\n{len(shots.taken)} screenshots in {shots.folder}")


@pytest.fixture(scope="module")
def journey(clean_module: None) -> Journey:
    return Journey()


@pytest.fixture(autouse=True)
def show_the_pages_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a failed test, what each user's browser showed (the screenshots stay on the machine)."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for name in ("sre", "viewer"):
            if name in request.fixturenames:
                print(f"\n{request.getfixturevalue(name).describe()}")


def ui_of(chaos: Chaos, browser: Browser, username: str) -> AirflowUI:
    return AirflowUI(browser, chaos.stack.base_url, chaos.stack.client(username), chaos.stack.passwords[username])


@pytest.fixture(scope="module")
def sre(chaos: Chaos, browser: Browser) -> Iterator[AirflowUI]:
    ui = ui_of(chaos, browser, SRE)
    yield ui
    ui.close()


@pytest.fixture(scope="module")
def viewer(chaos: Chaos, browser: Browser) -> Iterator[AirflowUI]:
    """The stack's read-only account (the simple auth manager's `viewer` role)."""
    ui = ui_of(chaos, browser, VERIFIER)
    yield ui
    ui.close()


# --- 1. log in ---------------------------------------------------------------------------------


def test_1_sre_logs_in_through_the_login_page(sre: AirflowUI, shots: Screenshots, journey: Journey) -> None:
    sre.log_in()
    expect(sre.page.get_by_role("link", name="Dags")).to_be_visible()
    shots.take(sre.page, "logged in as sre")
    journey.done.add("login")


# --- 2. a chosen experiment from the form -------------------------------------------------------


def test_2_a_chosen_experiment_is_triggered_from_the_form(sre: AirflowUI, chaos: Chaos, shots: Screenshots, journey: Journey) -> None:
    journey.need("login")
    paused = chaos.admin.dag(MEDIUM)["is_paused"]
    dialog = sre.open_trigger_form(MEDIUM)
    # The DAG arrived unpaused (its schedule is a policy switch): the dialog offers no "Unpause on trigger".
    assert paused is False
    expect(dialog.get_by_text(re.compile("unpause", re.IGNORECASE))).to_have_count(0)
    label = sre.choose_experiment(dialog, CHOSEN)
    assert sre.experiment_shown(dialog) == (label, CHOSEN) and label.startswith(f"{CHOSEN}: ")
    shots.take(sre.page, "medium trigger form with a chosen experiment")
    journey.medium = sre.submit_trigger(dialog, MEDIUM)
    shots.take(sre.page, "medium run triggered")
    run = chaos.admin.run(MEDIUM, journey.medium)
    # The form sends its fields; `deploy` is chaos_on_deploy's, empty in a person's run.
    assert {k: v for k, v in run["conf"].items() if k != "deploy"} == {"experiment": CHOSEN, "dry_run": False}, run["conf"]
    assert run["conf"].get("deploy") is None, run["conf"]
    assert run["triggering_user_name"] == SRE
    # Nothing in the dialog was touched but the experiment: a manual run leaves the schedule as it was.
    assert chaos.admin.dag(MEDIUM)["is_paused"] == paused
    journey.done.add("medium triggered")


# --- 3. approve by clicking --------------------------------------------------------------------


def test_3_the_sre_approves_in_the_required_action_view(sre: AirflowUI, chaos: Chaos, shots: Screenshots, journey: Journey) -> None:
    journey.need("medium triggered")
    run_id = journey.medium
    # A person never answers within a second of the request appearing; a test could, and that
    # fails the task in 3.3 (shared/AIRFLOW-NOTES.md): wait until answering is safe.
    sre.client.wait_until_respondable(MEDIUM, run_id, "approve_sre")
    assert chaos.objects() == [], "a fault exists before the approval"
    # The note plan wrote on the run: what runs, at which tier, for real or as a dry run.
    assert chaos.admin.run(MEDIUM, run_id)["note"] == f"{CHOSEN} · medium · real"
    page = sre.open_required_action(MEDIUM, run_id, "approve_sre")
    approve = page.get_by_role("button", name="Approve", exact=True)
    expect(approve).to_be_visible()
    body = page.inner_text("body")
    for words in (CHOSEN, "Blast radius", "Kill switch", "Window:", "Object digest: "):
        assert words in body, f"the approval does not say {words!r}:\n{body}"
    assert in_viewport_without_scrolling(page, approve), "the Approve button is not visible without scrolling at 1440x900"
    assert in_viewport_without_scrolling(page, page.get_by_role("button", name="Reject", exact=True))
    shots.take(page, "approval request", docs_name="approval.png")
    approve.click()
    expect(page.get_by_text(f"from {SRE}")).to_be_visible()
    shots.take(page, "approved")
    detail = chaos.admin.hitl_detail(MEDIUM, run_id, "approve_sre")
    assert detail["chosen_options"] == ["Approve"] and detail["responded_by_user"]["id"] == SRE, detail
    journey.done.add("medium approved")


def test_3b_the_executives_request_of_a_high_tier_run_fits_the_screen(chaos: Chaos, browser: Browser, shots: Screenshots, journey: Journey) -> None:
    """The longest request there is: a high-tier partition (both sides listed) asked of the
    executive once the SRE approved (the earlier approval listed). Rejected: nothing is injected."""
    journey.need("medium approved")
    chaos.policy(**OPEN_HIGH_WINDOW)
    try:
        run_id = chaos.admin.trigger(HIGH, conf={"experiment": HIGH_CHOSEN})
        chaos.approve(chaos.sre, HIGH, run_id, "approve_sre")
        cto = ui_of(chaos, browser, CTO)
        try:
            cto.log_in()
            cto.client.wait_until_respondable(HIGH, run_id, "approve_executive")
            page = cto.open_required_action(HIGH, run_id, "approve_executive")
            reject = page.get_by_role("button", name="Reject", exact=True)
            expect(reject).to_be_visible()
            body = page.inner_text("body")
            for words in (HIGH_CHOSEN, "target: mode", f"Earlier approval: SRE {SRE}: Approve", "Object digest: "):
                assert words in body, f"the executive's request does not say {words!r}:\n{body}"
            assert in_viewport_without_scrolling(page, page.get_by_role("button", name="Approve", exact=True)), (
                "the Approve button of the high-tier request is not visible without scrolling at 1440x900")
            assert in_viewport_without_scrolling(page, reject)
            shots.take(page, "high-tier executive request")
            reject.click()
            expect(page.get_by_text(f"from {CTO}")).to_be_visible()
        finally:
            cto.close()
        chaos.admin.wait_for_run(HIGH, run_id, timeout=240)
        assert chaos.admin.task_states(HIGH, run_id)["inject"] == "skipped"
    finally:
        chaos.policy()


# --- 4. the rotation from the form --------------------------------------------------------------


def test_4_the_rotation_is_triggered_from_the_form(sre: AirflowUI, chaos: Chaos, shots: Screenshots, journey: Journey) -> None:
    journey.need("medium approved")
    # Once the medium run holds the lock, the rotation queues behind it (the low tier needs no
    # human approval and would otherwise take the lock first).
    chaos.admin.wait_for_task_state(MEDIUM, journey.medium, "acquire_lock", ["success"], timeout=240)
    paused = chaos.admin.dag(LOW)["is_paused"]
    dialog = sre.open_trigger_form(LOW)
    shown, value = sre.experiment_shown(dialog)
    assert shown.startswith("(rotation") and value, f"the form's default is {shown!r} ({value!r}), not the rotation"
    expect(dialog.get_by_text("This field is required")).to_have_count(0)
    shots.take(sre.page, "low trigger form with the rotation")
    journey.rotation = sre.submit_trigger(dialog, LOW)
    assert chaos.admin.dag(LOW)["is_paused"] == paused
    conf = chaos.admin.run(LOW, journey.rotation)["conf"]
    chaos.admin.wait_for_task_state(LOW, journey.rotation, "plan", ["success"], timeout=180)
    plan = chaos.admin.xcom(LOW, journey.rotation, "plan")
    assert conf["experiment"] != plan["experiment"], f"the form sent an experiment ({conf}), not the rotation"
    assert plan["tier"] == "low", plan
    # Steps 7 and 8 act on this fault while it is live: the rotation's first pick (by name) lasts 5 min.
    assert parse_go_duration(plan["manifest"]["spec"]["duration"]) >= 120, f"{plan['experiment']} is too short to stop by hand"
    journey.rotation_experiment = plan["experiment"]
    journey.done.add("rotation triggered")


# --- 5. follow the approved run to its verdict -------------------------------------------------


def test_5_the_approved_run_is_followed_to_its_verdict(sre: AirflowUI, chaos: Chaos, shots: Screenshots, journey: Journey) -> None:
    journey.need("medium approved")
    chaos.admin.wait_for_run(MEDIUM, journey.medium, timeout=420, expect="success")
    result = chaos.result(MEDIUM, journey.medium)
    assert result["verdict"] == "held", result["verdict_reason"]
    page = sre.open_run(MEDIUM, journey.medium)
    # The outcome on the run page: its note names what ran, the verdict and the report.
    expect(page.get_by_text(f"{CHOSEN} · medium · real · held: ")).to_be_visible()
    shots.take(page, "medium run with its verdict")
    journey.done.add("medium verdict")


# --- 6. the report, by its extra link ----------------------------------------------------------


def test_6_the_report_opens_by_its_extra_link(sre: AirflowUI, chaos: Chaos, shots: Screenshots, journey: Journey) -> None:
    journey.need("medium verdict")
    page = sre.open_task(MEDIUM, journey.medium, "report", tab="details")
    link = page.get_by_role("link", name="Report (HTML)")
    expect(link).to_be_visible()
    expected = f"/chaos/reports/{MEDIUM}/{quote(journey.medium, safe='')}/report.html"
    if link.get_attribute("target") == "_blank":
        with sre.context.expect_page() as opened:
            link.click()
        report = opened.value
    else:
        link.click()
        report = page
    report.wait_for_load_state()
    assert report.url == sre.base_url + expected, report.url
    text = report.inner_text("body")
    assert CHOSEN in text and "held" in text, text[:2000]
    shots.take(report, "report opened by the extra link")
    if report is not page:
        report.close()


# --- 7. a read-only user sees the Chaos page, cannot stop --------------------------------------


def live_rotation_fault(chaos: Chaos, journey: Journey) -> dict:
    journey.need("rotation triggered")
    chaos.admin.wait_for_task_state(LOW, journey.rotation, "monitor", ["deferred"], timeout=420)
    faults = active_faults(chaos)
    assert len(faults) == 1, [f["metadata"]["name"] for f in faults]
    return faults[0]


def open_chaos_page(ui: AirflowUI, run_id: str) -> Page:
    """The Chaos page itself (`/chaos/`), waited for until it lists the run's live fault."""
    page = ui.goto("/chaos/")
    expect(page.locator(f'#active-faults tr[data-run-id="{run_id}"]')).to_be_visible()
    return page


def open_chaos_page_from_the_nav(ui: AirflowUI, run_id: str) -> tuple[Page, FrameLocator]:
    """The Chaos page as the nav entry "Chaos" shows it, inside the Airflow UI (an iframe)."""
    page = ui.goto("/")
    page.get_by_role("link", name="Chaos", exact=True).click()
    # The nav entry's address, not the load of everything on it (the row below waits for that).
    # Airflow 3.3 then writes the iframe's own path after it (`/plugin/chaos` + `/chaos/`), as soon
    # as the iframe has loaded: either address may be the one seen here.
    page.wait_for_url(lambda url: re.fullmatch(r"/plugin/chaos(/chaos/?)?", urlparse(url).path) is not None, wait_until="commit")
    frame = page.frame_locator("iframe")
    expect(frame.locator(f'#active-faults tr[data-run-id="{run_id}"]')).to_be_visible()
    return page, frame


def test_7_a_viewer_sees_the_chaos_page_but_cannot_stop(viewer: AirflowUI, chaos: Chaos, shots: Screenshots, journey: Journey) -> None:
    fault = live_rotation_fault(chaos, journey)
    viewer.log_in()
    page = open_chaos_page(viewer, journey.rotation)
    for part in ("#halt-state", "#lock-state", "#pending-approvals", "#recent-runs"):
        expect(page.locator(part)).to_be_visible()
    expect(page.locator("#stop-button")).to_have_count(0)
    shots.take(page, "chaos page as a viewer")
    halt = HaltFlag(chaos.cluster, NAMESPACE)
    before = halt.state()
    # The viewer's own session (the `_token` cookie the login set), straight at the endpoint.
    response = viewer.context.request.post(
        viewer.base_url + "/chaos/api/stop", data=json.dumps({"reason": "a viewer tries"}), headers={"Content-Type": "application/json"}
    )
    assert response.status == 403, (response.status, response.text())
    assert halt.state() == before and not before.halted
    assert [f["metadata"]["name"] for f in active_faults(chaos)] == [fault["metadata"]["name"]]
    journey.done.add("viewer refused")


# --- 8. the emergency stop, on the Chaos page --------------------------------------------------


def test_8_the_stop_button_removes_the_live_fault(sre: AirflowUI, chaos: Chaos, shots: Screenshots, journey: Journey) -> None:
    live_rotation_fault(chaos, journey)
    page, chaos_page = open_chaos_page_from_the_nav(sre, journey.rotation)
    row = chaos_page.locator(f'#active-faults tr[data-run-id="{journey.rotation}"]')
    expect(row).to_contain_text(journey.rotation_experiment)
    shots.take(page, "chaos page with a live fault", docs_name="chaos-page.png")
    # The stop asks no confirmation (the page calls act() with none: the typed reason is the deliberate
    # step). Were a dialog ever shown, Playwright would dismiss it and so cancel the stop: accept it.
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        chaos_page.locator("#stop-reason").fill(STOP_REASON)
        chaos_page.locator("#stop-button").click()
        clicked = time.monotonic()
        gone = wait_until(lambda: chaos.objects() == [], 5.0, "the fault outlived the stop button", interval=0.05)
        print(f"\nfault gone from the cluster {gone:.2f} s after the click")
        assert time.monotonic() - clicked < 5.0
        expect(chaos_page.locator("#halt-state")).to_contain_text(STOP_REASON)
        expect(row).to_have_count(0)
        shots.take(page, "chaos page after the stop")
        state = HaltFlag(chaos.cluster, NAMESPACE).state()
        assert state.halted and state.halted_reason == STOP_REASON, state
        chaos.admin.wait_for_run(LOW, journey.rotation, timeout=300, expect="failed")
        monitor = chaos.result(LOW, journey.rotation)["monitor"]
        assert monitor["status"] == "halted" and monitor["halt"]["halted_reason"] == STOP_REASON, monitor
        # The page kept refreshing through the stop and the run's end, without an error shown.
        expect(chaos_page.get_by_text("Could not refresh")).to_have_count(0)
    finally:
        # The halt must not outlive this module: resumed the way the runbook says (an SRE approves).
        resume = chaos.admin.trigger("chaos_resume", conf={"reason": "e2e browser: all clear"})
        chaos.approve(chaos.sre, "chaos_resume", resume, "approve_resume")
        chaos.admin.wait_for_run("chaos_resume", resume, timeout=180, expect="success")
    assert not HaltFlag(chaos.cluster, NAMESPACE).state().halted
