"""The Chaos page's app on the sandbox's API server and Prometheus, with Airflow's real SimpleAuthManager
tokens and a metadata database of its own: who may see and press what, the stop, the resume, the
status and the reports."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.emergency import resume
from chaos_engineering.halt import HaltFlag
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.lock import ExperimentLock
from chaos_engineering.policy import load_policy
from chaos_engineering.render import ANNOTATION_BASELINE, LABEL_EXPERIMENT
from chaos_engineering.safety import bound_of
from chaos_engineering.ui.reports import file_name_problem
from tests.integration.chaos_support import NAMESPACE, create_fault, get, remove, wait_injected
from tests.integration.receivers import SlackReceiver
from tests.sandbox.sandbox_support import PrometheusAPI

POLICY, _ = load_policy()
ROOT = Path(__file__).resolve().parents[2]
DAGS = ("chaos_emergency_stop.py", "chaos_resume.py", "chaos_medium_risk.py")
NOT_AUTHENTICATED = {"detail": "Not authenticated"}
ENDPOINTS = [("GET", "/"), ("GET", "/api/status"), ("POST", "/api/stop"), ("POST", "/api/resume"), ("GET", "/reports/chaos_medium_risk/r1/report.html")]


@pytest.fixture(scope="module")
def airflow(connections) -> Iterator[object]:
    """A metadata database with the stop, resume and medium-tier DAGs serialised (as the
    dag-processor leaves them, with our plugin loaded for the timetable), and Airflow's
    configured auth manager (SimpleAuthManager)."""
    from airflow import plugins_manager, settings
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.utils.db import initdb

    def reload_plugins() -> None:
        for cached in (plugins_manager._get_plugins, plugins_manager.get_timetables_plugins, plugins_manager._get_extra_operators_links_plugins):
            cached.cache_clear()

    folder, settings.PLUGINS_FOLDER = settings.PLUGINS_FOLDER, str(ROOT / "plugins")
    reload_plugins()
    try:
        initdb()
        DagBundlesManager().sync_bundles_to_db()
        for name in DAGS:
            bag = DagBag(dag_folder=str(ROOT / "dags" / name))
            assert bag.import_errors == {}, bag.import_errors
            sync_bag_to_db(bag, "dags-folder", None)
        yield init_auth_manager()
    finally:
        settings.PLUGINS_FOLDER = folder
        reload_plugins()


@pytest.fixture
def client(airflow):
    from fastapi.testclient import TestClient

    from chaos_engineering.ui.app import app

    with TestClient(app) as client:
        yield client


def bearer(auth_manager, name: str, role: str) -> dict[str, str]:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return {"Authorization": f"Bearer {auth_manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role))}"}


@pytest.fixture
def cluster(connections) -> Iterator[list[dict]]:
    """Faults created by the test are removed; the halt is cleared and the lock freed at the end."""
    hook, created = ChaosMeshHook(), []
    yield created
    for obj in created:
        if get(obj) is not None:
            remove(obj)
    if HaltFlag(hook, NAMESPACE).state().halted:
        resume(hook, POLICY, "test-cleanup", "end of test")
    ExperimentLock(hook, NAMESPACE).force_release()


def halted() -> bool:
    return HaltFlag(ChaosMeshHook(), NAMESPACE).state().halted


def runs_of(dag_id: str) -> list:
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return [(r.run_id, r.triggering_user_name, r.conf) for r in session.scalars(select(DagRun).where(DagRun.dag_id == dag_id))]


def call(client, method: str, path: str, headers: dict | None = None):
    if method == "POST":
        return client.post(path, json={"reason": "an attacker's reason"}, headers=headers or {})
    return client.get(path, headers=headers or {})


# --- authentication and authorisation: every endpoint -------------------------------------------


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_every_endpoint_refuses_a_request_without_a_session_and_changes_nothing(client, cluster, method, path):
    fault = create_fault("page-anon")
    cluster.append(fault)
    before = len(runs_of("chaos_emergency_stop")), len(runs_of("chaos_resume"))
    response = call(client, method, path)
    assert (response.status_code, response.json()) == (401, NOT_AUTHENTICATED)
    forged = call(client, method, path, {"Authorization": "Bearer not-a-token"})
    assert (forged.status_code, forged.json()) == (403, {"detail": "Invalid JWT token"})
    cookie = call(client, method, path, {"Cookie": "_token=not-a-token"})
    assert (cookie.status_code, cookie.json()) == (403, {"detail": "Invalid JWT token"})
    assert not halted() and get(fault) is not None
    assert (len(runs_of("chaos_emergency_stop")), len(runs_of("chaos_resume"))) == before


def test_a_viewer_sees_the_page_and_status_but_no_button_and_cannot_stop_or_resume(client, airflow, cluster):
    fault = create_fault("page-viewer")
    cluster.append(fault)
    before = len(runs_of("chaos_emergency_stop")), len(runs_of("chaos_resume"))
    viewer = bearer(airflow, "vera", "viewer")
    page = client.get("/", headers=viewer)
    assert page.status_code == 200
    for element in ("halt-state", "lock-state", "active-faults", "pending-approvals", "recent-runs"):
        assert f'id="{element}"' in page.text
    assert 'id="stop-button"' not in page.text and 'id="resume-button"' not in page.text
    assert client.get("/api/status", headers=viewer).status_code == 200
    stop = client.post("/api/stop", json={"reason": "viewer tries"}, headers=viewer)
    assert (stop.status_code, stop.json()) == (403, {"detail": "you may not trigger chaos_emergency_stop: only users allowed to trigger it may press this"})
    again = client.post("/api/resume", json={"reason": "viewer tries"}, headers=viewer)
    assert (again.status_code, again.json()) == (403, {"detail": "you may not trigger chaos_resume: only users allowed to trigger it may press this"})
    assert not halted() and get(fault) is not None
    assert (len(runs_of("chaos_emergency_stop")), len(runs_of("chaos_resume"))) == before


def test_a_user_allowed_to_trigger_both_dags_gets_both_buttons(client, airflow):
    page = client.get("/", headers=bearer(airflow, "ada", "user"))
    assert page.status_code == 200
    assert 'id="stop-button"' in page.text and 'id="resume-button"' in page.text and 'id="stop-reason"' in page.text


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/x-www-form-urlencoded", "reason=cross-site+form"), ("text/plain", '{"reason": "cross-site text"}'), ("multipart/form-data; boundary=x", "--x--")],
    ids=["form", "text-plain", "multipart"],
)
def test_stop_and_resume_take_only_a_json_body(client, airflow, cluster, content_type, body):
    user = bearer(airflow, "ada", "user") | {"Content-Type": content_type}
    for path in ("/api/stop", "/api/resume"):
        response = client.post(path, content=body, headers=user)
        assert (response.status_code, response.json()) == (415, {"detail": "send a JSON body (Content-Type: application/json)"})
    assert not halted()


@pytest.mark.parametrize("reason", ["", "  ab  ", "no"], ids=["empty", "blank-padded", "two-chars"])
def test_stop_needs_a_reason_of_three_characters(client, airflow, cluster, reason):
    response = client.post("/api/stop", json={"reason": reason}, headers=bearer(airflow, "ada", "user"))
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "Value error, say why in at least 3 characters (it is recorded with the halt)"
    assert not halted()


# --- the stop and the resume ---------------------------------------------------------------------


def test_stop_writes_the_halt_in_the_users_name_removes_the_fault_within_5_s_and_triggers_the_stop_run(client, airflow, cluster):
    fault = create_fault("page-stop")
    cluster.append(fault)
    wait_injected(fault)
    pressed = time.monotonic()
    response = client.post("/api/stop", json={"reason": "  checkout errors in prod  "}, headers=bearer(airflow, "ada", "user"))
    answered = time.monotonic() - pressed
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["halt"]["halted"], body["halt"]["halted_by"], body["halt"]["halted_reason"]) == (True, "ada", "checkout errors in prod")
    assert [(d["kind"], d["name"]) for d in body["deleting"]] == [("NetworkChaos", fault["metadata"]["name"])] and body["errors"] == []
    state = HaltFlag(ChaosMeshHook(), NAMESPACE).state()
    assert (state.halted, state.halted_by, state.halted_reason) == (True, "ada", "checkout errors in prod")
    while get(fault) is not None:
        assert time.monotonic() - pressed < 5, "the fault is still on the cluster 5 s after the stop"
        time.sleep(0.1)
    assert answered < 5
    follow_up = body["follow_up"]
    assert (follow_up["by"], follow_up["dag_id"], follow_up["paused"]) == ("dag_run", "chaos_emergency_stop", False)
    assert follow_up["url"] == f"/dags/chaos_emergency_stop/runs/{quote(follow_up['run_id'], safe='')}"
    assert (follow_up["run_id"], "ada", {"reason": "checkout errors in prod"}) in runs_of("chaos_emergency_stop")


def test_stop_finishes_in_the_api_server_with_the_alert_when_the_stop_dag_cannot_run(client, airflow, cluster):
    from sqlalchemy import update

    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    fault = create_fault("page-fallback")
    cluster.append(fault)
    ExperimentLock(ChaosMeshHook(), NAMESPACE).acquire("chaos_low_risk/manual__page-fallback", 600)
    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == "chaos_emergency_stop").values(is_paused=True))
    try:
        with SlackReceiver() as slack:
            os.environ["AIRFLOW_CONN_SLACK_CHAOS"] = slack.connection()
            try:
                response = client.post("/api/stop", json={"reason": "stop dag paused"}, headers=bearer(airflow, "ada", "user"))
                body = response.json()
                assert response.status_code == 200 and body["halt"]["halted_by"] == "ada"
                assert body["follow_up"]["by"] == "api-server"
                assert body["follow_up"]["reason"].startswith("no chaos_emergency_stop run: chaos_emergency_stop is paused: its run manual__")
                deadline = time.monotonic() + 60
                while ExperimentLock(ChaosMeshHook(), NAMESPACE).state() is not None or not slack.payloads:
                    assert time.monotonic() < deadline, "the api-server did not finish the stop (lock release and alert) within 60 s"
                    time.sleep(0.5)
            finally:
                del os.environ["AIRFLOW_CONN_SLACK_CHAOS"]
        assert get(fault) is None
        text = json.dumps(slack.payloads)
        assert "ada" in text and "stop dag paused" in text, text
    finally:
        with create_session() as session:
            session.execute(update(DagModel).where(DagModel.dag_id == "chaos_emergency_stop").values(is_paused=False))


def test_resume_triggers_a_chaos_resume_run_and_never_clears_the_halt_itself(client, airflow, cluster):
    HaltFlag(ChaosMeshHook(), NAMESPACE).set("someone", "halted for the test")
    response = client.post("/api/resume", json={"reason": "incident closed"}, headers=bearer(airflow, "ada", "user"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["dag_id"], body["url"]) == ("chaos_resume", f"/dags/chaos_resume/runs/{quote(body['run_id'], safe='')}")
    assert (body["run_id"], "ada", {"reason": "incident closed"}) in runs_of("chaos_resume")
    assert halted(), "the resume endpoint cleared the halt: only the approved chaos_resume run may"


# --- the status ----------------------------------------------------------------------------------


def test_status_shows_halt_lock_and_each_fault_with_live_readings_against_its_bounds(client, airflow, cluster, sandbox):
    experiment = "booking-api-http-delay"
    fault = create_fault("page-status")
    cluster.append(fault)
    prometheus = PrometheusAPI(sandbox.prometheus_url)
    baseline = {name: prometheus.value(t.query) for name, t in POLICY.safety.thresholds.items()}
    ChaosMeshHook().patch(ChaosKind.NETWORK_CHAOS, fault["metadata"]["name"], NAMESPACE,
                          {"metadata": {"labels": {LABEL_EXPERIMENT: experiment}, "annotations": {ANNOTATION_BASELINE: json.dumps(baseline)}}})
    ExperimentLock(ChaosMeshHook(), NAMESPACE).acquire(f"chaos_low_risk/manual__{fault['metadata']['name']}", 600)
    HaltFlag(ChaosMeshHook(), NAMESPACE).set("bob", "status test")
    status = client.get("/api/status", headers=bearer(airflow, "vera", "viewer")).json()
    assert (status["halt"]["halted"], status["halt"]["halted_by"], status["halt"]["halted_reason"]) == (True, "bob", "status test")
    assert (status["lock"]["held"], status["lock"]["holder"]) == (True, f"chaos_low_risk/manual__{fault['metadata']['name']}")
    [shown] = [f for f in status["active_faults"] if f["name"] == fault["metadata"]["name"]]
    assert (shown["dag_id"], shown["run_id"], shown["tier"], shown["experiment"], shown["target"]) == (
        "chaos_low_risk", f"manual__{fault['metadata']['name']}", "low", experiment, "cache")
    assert 250 <= shown["time_left_s"] <= 300  # a 5 min fault created seconds ago
    assert shown["readings_error"] is None
    assert [r["threshold"] for r in shown["readings"]] == list(POLICY.safety.thresholds)
    for row in shown["readings"]:
        threshold = POLICY.safety.thresholds[row["threshold"]]
        assert row["baseline"] == baseline[row["threshold"]]
        assert row["bound"] == pytest.approx(bound_of(threshold, baseline[row["threshold"]]))
        assert row["value"] is not None and row["status"] in ("ok", "breach"), row


def test_status_says_a_fault_of_no_catalogue_experiment_has_no_thresholds(client, airflow, cluster):
    fault = create_fault("page-unknown")
    cluster.append(fault)
    status = client.get("/api/status", headers=bearer(airflow, "vera", "viewer")).json()
    [shown] = [f for f in status["active_faults"] if f["name"] == fault["metadata"]["name"]]
    assert shown["readings"] == []
    assert shown["readings_error"] == "experiment 'cache-latency-test' is not a valid experiment of the catalogue: no thresholds to show"


@pytest.fixture
def medium_run(airflow) -> Iterator[tuple[str, Path]]:
    """A medium-tier run waiting for its SRE approval (as Airflow records it), its result and report written."""
    from sqlalchemy import select

    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType
    from chaos_engineering.operators.result import run_folder

    run_id = f"manual__page-{uuid.uuid4().hex[:8]}"
    with create_session() as session:
        run = trigger_dag("chaos_medium_risk", run_id=run_id, triggered_by=DagRunTriggeredByType.TEST, conf={"experiment": "cache-failure"}, session=session)
        ti = session.scalar(select(TaskInstance).where(TaskInstance.run_id == run_id, TaskInstance.task_id == "approve_sre"))
        ti.state = TaskInstanceState.AWAITING_INPUT
        session.add(HITLDetail(ti_id=ti.id, options=["Approve", "Reject"], subject="Approve cache-failure?", assignees=[{"id": "sre-oncall", "name": "sre-oncall"}]))
        when = run.run_after
    folder = Path(str(run_folder(POLICY.reports.base_url, None, "chaos_medium_risk", run_id, when).path))
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"verdict": "held", "verdict_reason": "no threshold breached", "experiment": {"name": "cache-failure"}}))
    (folder / "report.html").write_text("<html>the report</html>")
    (folder.parent / "secret.txt").write_text("outside the run's folder")
    try:
        yield run_id, folder
    finally:
        shutil.rmtree(folder)
        (folder.parent / "secret.txt").unlink()


def test_status_lists_pending_approvals_with_their_required_action_link_and_last_runs_with_reports(client, airflow, medium_run):
    run_id, _ = medium_run
    status = client.get("/api/status", headers=bearer(airflow, "vera", "viewer")).json()
    quoted = quote(run_id, safe="")
    assert {"dag_id": "chaos_medium_risk", "run_id": run_id, "task_id": "approve_sre", "subject": "Approve cache-failure?", "assignees": ["sre-oncall"],
            "url": f"/dags/chaos_medium_risk/runs/{quoted}/tasks/approve_sre/required_actions?map_index=-1"} in [
        {k: v for k, v in a.items() if k != "created_at"} for a in status["pending_approvals"]]
    [run] = [r for r in status["recent_runs"] if r["run_id"] == run_id]
    assert (run["verdict"], run["verdict_reason"], run["experiment"]) == ("held", "no threshold breached", "cache-failure")
    assert (run["report_html"], run["report_pdf"]) == (f"/chaos/reports/chaos_medium_risk/{quoted}/report.html", f"/chaos/reports/chaos_medium_risk/{quoted}/report.pdf")


# --- the reports ---------------------------------------------------------------------------------


def test_a_report_is_served_from_the_runs_folder_to_a_reader(client, airflow, medium_run):
    run_id, _ = medium_run
    response = client.get(f"/reports/chaos_medium_risk/{quote(run_id, safe='')}/report.html", headers=bearer(airflow, "vera", "viewer"))
    assert (response.status_code, response.text, response.headers["content-type"]) == (200, "<html>the report</html>", "text/html; charset=utf-8")
    missing = client.get(f"/reports/chaos_medium_risk/{quote(run_id, safe='')}/report.pdf", headers=bearer(airflow, "vera", "viewer"))
    assert (missing.status_code, missing.json()) == (404, {"detail": f"report.pdf is not in the report folder of chaos_medium_risk/{run_id} (yet)"})
    unknown = client.get("/reports/chaos_medium_risk/manual__nope/report.html", headers=bearer(airflow, "vera", "viewer"))
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "no run 'manual__nope' of 'chaos_medium_risk'"})


NAMES = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(["..", ".", "/", "\\", "%2e", "%2f", "secret.txt", "report.html", "\x00", "~", " "]), min_size=1, max_size=6).map("".join),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES)
def test_no_name_reaches_outside_the_runs_folder(client, airflow, medium_run, name):
    run_id, folder = medium_run
    response = client.get(f"/reports/chaos_medium_risk/{quote(run_id, safe='')}/{quote(name, safe='')}", headers=bearer(airflow, "vera", "viewer"))
    assert "outside the run's folder" not in response.text
    if response.status_code == 200:
        # Whatever the name (the router may redirect "report.html/" to "report.html"), what is
        # served is one of the run's own files, never anything beside or above its folder.
        assert response.content in {p.read_bytes() for p in folder.iterdir() if p.is_file()}, name
    else:
        assert response.status_code in (404, 405), (name, response.status_code)


@given(name=NAMES)
def test_an_accepted_file_name_is_always_a_file_directly_in_the_folder(name):
    folder = Path("/srv/reports/run")
    if file_name_problem(name) is None:
        assert (folder / name).resolve().parent == folder and "/" not in name and "\\" not in name and not name.startswith(".")
    else:
        assert file_name_problem(name) == (
            f"{name!r} is not a report file name (one plain file name of the run's folder: letters, digits, '.', '_', '-')")


def test_report_links_point_at_the_chaos_page_under_the_api_base_url(monkeypatch):
    from chaos_engineering.ui.links import ReportHtmlLink, ReportPdfLink

    class Key:
        dag_id, run_id = "chaos_low_risk", "manual__2026-12-01T03:00:00+00:00"

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    assert ReportHtmlLink().get_link(None, ti_key=Key()) == "https://airflow.example.com/chaos/reports/chaos_low_risk/manual__2026-12-01T03%3A00%3A00%2B00%3A00/report.html"
    assert ReportPdfLink().get_link(None, ti_key=Key()) == "https://airflow.example.com/chaos/reports/chaos_low_risk/manual__2026-12-01T03%3A00%3A00%2B00%3A00/report.pdf"
    assert (ReportHtmlLink().name, ReportPdfLink().name) == ("Report (HTML)", "Report (PDF)")


def test_the_plugin_mounts_the_page_with_a_nav_entry_and_registers_the_links():
    from chaos_engineering.plugin import ChaosEngineeringPlugin
    from chaos_engineering.ui.app import app
    from chaos_engineering.ui.links import ReportHtmlLink, ReportPdfLink

    plugin = ChaosEngineeringPlugin()
    assert plugin.fastapi_apps == [{"name": "chaos", "app": app, "url_prefix": "/chaos"}]
    assert [(v["name"], v["href"], v["destination"]) for v in plugin.external_views] == [("Chaos", "/chaos/", "nav")]
    assert [type(link) for link in plugin.operator_extra_links] == [ReportHtmlLink, ReportPdfLink]
