"""The tier DAGs end to end: a real Airflow on the sandbox, driven only through its REST API.

Every test asserts on the cluster (the sandbox's Kubernetes API) as well as on task states:
what was injected, that it is gone, that the lock is free.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.halt import HaltFlag
from chaos_engineering.lock import ExperimentLock
from chaos_engineering.policy import load_policy
from chaos_engineering.render import OWNED_SELECTOR
from chaos_engineering.triggers import WATCHED_STATES, fault_state
from sandbox.airflow_stack import AirflowClient, AirflowStack
from tests.e2e.conftest import needs_steady_platform, start_stack
from tests.e2e.test_include import make_include, write_policy
from tests.integration.receivers import S3Server, SlackReceiver, SmtpServer
from sandbox.steady import wait_steady

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "chaos-engineering"
ALL_DAY = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


class Chaos:
    """The stack, the sandbox, the test's include/ folder and the Slack and SMTP receivers together."""

    def __init__(self, stack: AirflowStack, include: Path, reports: Path, slack: SlackReceiver, smtp: SmtpServer) -> None:
        self.slack = slack
        self.smtp = smtp
        self.stack = stack
        self.include = include
        self.reports = reports
        self.admin = stack.client("admin")
        self.sre = stack.client("sre-oncall")
        self.cto = stack.client("cto")
        self.cluster = ChaosMeshHook()

    def objects(self) -> list[dict]:
        return [o for kind in ChaosKind for o in self.cluster.list(kind, None, OWNED_SELECTOR)]

    def lock_holder(self) -> str | None:
        state = ExperimentLock(self.cluster, NAMESPACE).state()
        return state.holder if state else None

    def slack_texts(self, run_id: str) -> list[str]:
        """The Slack messages about one run, as text."""
        texts = [json.dumps(p) for p in self.slack.payloads]
        return [t for t in texts if run_id in t or quote(run_id, safe="") in t]

    def folder(self, dag_id: str, run_id: str) -> Path:
        (path,) = self.reports.glob(f"{dag_id}/*/*/{run_id}")
        return path

    def result(self, dag_id: str, run_id: str) -> dict:
        return json.loads((self.folder(dag_id, run_id) / "result.json").read_text())

    def report(self, dag_id: str, run_id: str) -> dict:
        """The report set a person opens: every file there and non-trivial, the JSON valid."""
        from chaos_engineering.report import validate_report

        folder = self.folder(dag_id, run_id)
        for name in ("report.html", "report.pdf", "report.json", "metrics.csv"):
            assert (folder / name).stat().st_size > 1000, name
        document = json.loads((folder / "report.json").read_text())
        validate_report(document)
        return document

    def policy(self, **overrides: object) -> None:
        """Rewrite the test policy; every task reads the policy afresh."""
        write_policy(self.include, self.reports, **overrides)

    def run(self, dag_id: str, experiment: str, *, expect: str, timeout: float = 420, **conf: object) -> tuple[str, dict]:
        run_id = self.admin.trigger(dag_id, conf={"experiment": experiment, **conf})
        self.admin.wait_for_run(dag_id, run_id, timeout=timeout, expect=expect)
        return run_id, self.result(dag_id, run_id)

    def approve(self, client: AirflowClient, dag_id: str, run_id: str, task_id: str, option: str = "Approve") -> None:
        client.respond(dag_id, run_id, task_id, [option])

    def end_active_runs(self) -> list[str]:
        """Fail every run of the chaos DAGs still going (queued or running): the tier DAGs run one
        at a time (max_active_runs 1), so one left by a test would hold back the next test's. An
        Airflow a test killed runs nothing (and cannot be asked)."""
        if any(process.poll() is not None for process in self.stack.processes.values()):
            return []
        runs = self.admin.request("GET", "/dags/~/dagRuns", params={"state": ["queued", "running"], "limit": 100})["dag_runs"]
        ended = []
        for run in runs:
            if run["dag_id"].startswith("chaos_"):
                self.admin.request("PATCH", f"/dags/{run['dag_id']}/dagRuns/{quote(run['dag_run_id'], safe='')}", json={"state": "failed"})
                ended.append(f"{run['dag_id']}/{run['dag_run_id']}")
        return ended


class FaultWatch:
    """Samples the cluster while a test runs: the most chaos objects of ours seen at once, and the
    most applied at once (not yet ended by Chaos Mesh: an ended object stays until its removal)."""

    def __init__(self, chaos: Chaos) -> None:
        self.chaos = chaos
        self.most = 0
        self.most_applied = 0
        self.names: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            objects = [o for o in self.chaos.objects() if not o["metadata"].get("deletionTimestamp")]
            self.most = max(self.most, len(objects))
            self.most_applied = max(self.most_applied, sum(fault_state(o) in WATCHED_STATES for o in objects))
            self.names.update(o["metadata"]["name"] for o in objects)
            time.sleep(0.3)

    def __enter__(self) -> FaultWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def chaos_on_airflow(
    tmp_path_factory: pytest.TempPathFactory, sandbox, connections, executor: str = "LocalExecutor", *, s3: S3Server | None = None,
    database_url: str | None = None, broker_url: str | None = None,
) -> Iterator[Chaos]:
    """An Airflow with `executor` on the real dags/ and plugins/, every tier DAG loaded; stopped on exit.
    Reports go to a folder; with `s3`, connection `aws_reports` reaches it too (`reports_in(s3)`).
    `database_url` and `broker_url` as `start_stack` takes them."""
    reports = tmp_path_factory.mktemp("reports")
    include = make_include(tmp_path_factory.mktemp("chaos") / "include", reports)
    with SlackReceiver() as slack, SmtpServer() as smtp:
        env = dict(connections) | {
            "CHAOS_INCLUDE_DIR": str(include),
            "AIRFLOW_CONN_SLACK_CHAOS": slack.connection(),
            "AIRFLOW_CONN_SMTP_DEFAULT": smtp.connection(),
            "AIRFLOW_CONN_PUSHGATEWAY_DEFAULT": json.dumps({"conn_type": "http", "host": sandbox.pushgateway_url}),
        } | ({"AIRFLOW_CONN_AWS_REPORTS": s3.connection()} if s3 is not None else {})
        stack = start_stack(tmp_path_factory, ROOT / "dags", ROOT / "plugins", env, executor=executor,
                            database_url=database_url, broker_url=broker_url)
        try:
            admin = stack.client("admin")
            assert admin.import_errors() == [], admin.import_errors()
            for dag_id in ("chaos_low_risk", "chaos_medium_risk", "chaos_high_risk", "chaos_emergency_stop", "chaos_resume"):
                # Not unpaused by the test: they must arrive unpaused by themselves (the tier DAGs'
                # schedules are a policy switch, off here: e2e runs are triggered by the tests).
                admin.wait_for_dag(dag_id, timeout=180, unpause=False)
                assert admin.dag(dag_id)["is_paused"] is False, dag_id
            yield Chaos(stack, include, reports, slack, smtp)
        finally:
            stack.stop()


REPORTS_BUCKET = "chaos-reports"


def reports_in(s3: S3Server) -> dict[str, str]:
    """The policy overrides that put reports in `s3` (connection `aws_reports`, `chaos_on_airflow`)."""
    return {"reports.base_url": f"s3://{s3.bucket}/chaos", "reports.conn_id": "aws_reports"}


def policy_of(include: Path):
    import os

    os.environ["CHAOS_INCLUDE_DIR"] = str(include)
    try:
        return load_policy()[0]
    finally:
        del os.environ["CHAOS_INCLUDE_DIR"]


@pytest.fixture(autouse=True)
def clean_cluster(chaos: Chaos, request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts and must end with nothing of ours in the cluster and the lock free."""
    chaos.stack.check_alive()
    chaos.policy()
    assert chaos.objects() == [] and chaos.lock_holder() is None
    if needs_steady_platform(request):
        wait_steady(policy_of(chaos.include))
    yield
    clean_up_after(chaos, "a test")


def clean_up_after(chaos: Chaos, who: str) -> None:
    """Remove what `who` left of ours (objects, the lock, the halt), then fail if it left anything.
    Runs it left going are ended (`Chaos.end_active_runs`) and named, not failed on: a test may
    well leave a refused run waiting for an approval nobody will give."""
    if ended := chaos.end_active_runs():
        print(f"\n{who} left runs going, ended: {ended}")
    leftovers = [o["metadata"]["name"] for o in chaos.objects()]
    holder = chaos.lock_holder()
    for obj in chaos.objects():
        chaos.cluster.delete(ChaosKind(obj["kind"]), obj["metadata"]["name"], NAMESPACE)
    ExperimentLock(chaos.cluster, NAMESPACE).force_release()
    halt = HaltFlag(chaos.cluster, NAMESPACE)
    halted = halt.state().halted
    if halted:
        halt.clear("e2e-cleanup", f"{who} left the halt set")
    assert leftovers == [] and holder is None and not halted, f"left behind: objects {leftovers}, lock {holder}, halted {halted}"


def sandbox_value(sandbox, promql: str, timeout: float = 30) -> float:
    """A chaos metric pushed to the Pushgateway, read back through the real Prometheus."""
    from chaos_engineering.hooks.prometheus import PrometheusHook

    deadline = time.monotonic() + timeout
    while (value := PrometheusHook().query(promql)) is None:
        assert time.monotonic() < deadline, f"{promql} not in Prometheus after {timeout} s"
        time.sleep(1)
    return value


def clean_low_risk_run(chaos: Chaos, sandbox) -> str:
    """A low-risk run with no breach, checked in the cluster, the result, the report, Slack and
    Prometheus; returns its run id. One scenario for every executor."""
    with FaultWatch(chaos) as watch:
        run_id, result = chaos.run("chaos_low_risk", "booking-api-quick-kill", expect="success")
    assert watch.most == 1 and len(watch.names) == 1
    assert result["verdict"] == "held", result["verdict_reason"]
    assert result["approvals"][0]["responded_by_user"]["id"] == "policy"
    assert result["window"]["allowed"] is True
    assert set(result["preflight"]["baseline"]) == set(result["experiment"]["thresholds"])
    assert result["monitor"]["status"] == "completed"
    assert [result["recovery"][s]["status"] for s in ("immediate", "short_term", "business")] == ["recovered"] * 3
    assert result["fault"]["name"] in watch.names
    report = chaos.report("chaos_low_risk", run_id)
    assert report["verdict"]["value"] == "held"
    # The run's note, written by the DAG through the REST API: what ran, the verdict, the report.
    note = chaos.admin.run("chaos_low_risk", run_id)["note"]
    assert note.startswith(f"booking-api-quick-kill · low · real · held: {result['verdict_reason']}\n\nReport: [HTML]({chaos.stack.base_url}/chaos/reports/chaos_low_risk/"), note
    texts = chaos.slack_texts(run_id)
    assert any("booking-api-quick-kill" in t and "injected" in t.lower() for t in texts), texts
    assert any("held" in t for t in texts), texts
    active = sandbox_value(sandbox, 'chaos_experiment_active{experiment="booking-api-quick-kill",tier="low"}')
    assert active == 0.0
    return run_id


def test_clean_low_risk_run(chaos: Chaos, sandbox) -> None:
    clean_low_risk_run(chaos, sandbox)


def test_dry_run_injects_nothing(chaos: Chaos) -> None:
    with FaultWatch(chaos) as watch:
        run_id, result = chaos.run("chaos_low_risk", "booking-api-quick-kill", expect="success", dry_run=True)
    assert watch.most == 0
    assert result["verdict"] == "dry_run"
    assert chaos.admin.task_states("chaos_low_risk", run_id)["inject"] == "skipped"


def medium_run_approved_by_an_sre(chaos: Chaos) -> str:
    """A medium-risk run: nothing injected until the SRE approves through the HITL endpoint, then
    held; returns its run id. One scenario for every executor."""
    run_id = chaos.admin.trigger("chaos_medium_risk", conf={"experiment": "email-service-quick-abort"})
    chaos.admin.wait_for_task_state("chaos_medium_risk", run_id, "approve_sre", ["awaiting_input"], timeout=120)
    assert chaos.objects() == []  # nothing before the approval
    chaos.approve(chaos.sre, "chaos_medium_risk", run_id, "approve_sre")
    chaos.admin.wait_for_run("chaos_medium_risk", run_id, timeout=420, expect="success")
    result = chaos.result("chaos_medium_risk", run_id)
    assert result["verdict"] == "held", result["verdict_reason"]
    assert result["approvals"][0]["responded_by_user"]["id"] == "sre-oncall"
    assert any("required_actions" in t for t in chaos.slack_texts(run_id)), "no approval request with its link"
    return run_id


def test_medium_run_approved_by_an_sre(chaos: Chaos) -> None:
    medium_run_approved_by_an_sre(chaos)


@pytest.mark.no_preflight
def test_rejected_run_injects_nothing(chaos: Chaos) -> None:
    with FaultWatch(chaos) as watch:
        run_id = chaos.admin.trigger("chaos_medium_risk", conf={"experiment": "email-service-quick-abort"})
        chaos.admin.wait_for_task_state("chaos_medium_risk", run_id, "approve_sre", ["awaiting_input"], timeout=120)
        chaos.approve(chaos.sre, "chaos_medium_risk", run_id, "approve_sre", option="Reject")
        chaos.admin.wait_for_run("chaos_medium_risk", run_id, timeout=120)
    assert watch.most == 0
    states = chaos.admin.task_states("chaos_medium_risk", run_id)
    assert states["inject"] == "skipped" and states["write_result"] == "success"
    result = chaos.result("chaos_medium_risk", run_id)
    assert result["verdict"] == "aborted" and "rejected by" in result["verdict_reason"]


def test_a_breaching_fault_is_killed_and_recorded(chaos: Chaos) -> None:
    run_id = chaos.admin.trigger("chaos_medium_risk", conf={"experiment": "booking-api-abort"})
    chaos.admin.wait_for_task_state("chaos_medium_risk", run_id, "approve_sre", ["awaiting_input"], timeout=120)
    chaos.approve(chaos.sre, "chaos_medium_risk", run_id, "approve_sre")
    chaos.admin.wait_for_task_state("chaos_medium_risk", run_id, "monitor", ["failed"], timeout=300)
    # The trigger removed it: no worker slot, no teardown needed for that.
    assert [o for o in chaos.objects() if not o["metadata"].get("deletionTimestamp")] == []
    chaos.admin.wait_for_run("chaos_medium_risk", run_id, timeout=420, expect="failed")
    result = chaos.result("chaos_medium_risk", run_id)
    breach = result["monitor"]["breach"]
    assert result["verdict"] == "broken"
    assert breach["threshold"] and breach["value"] is not None and breach["limit"] is not None and breach["at"]
    assert result["monitor"]["removal_requested_at"] >= breach["at"]
    assert result["removal"]["removed_at"] >= result["fault"]["injected_at"]
    chaos.report("chaos_medium_risk", run_id)
    texts = chaos.slack_texts(run_id)
    assert any(breach["threshold"] in t and "breach" in t.lower() for t in texts), texts
    mails = [m for _, _, m in chaos.smtp.messages if run_id in m.as_string() or "booking-api-abort" in str(m["Subject"])]
    assert any(part.get_filename() == "report.pdf" for m in mails for part in m.iter_attachments()), [m["Subject"] for m in mails]


def test_unreadable_metrics_remove_the_fault(chaos: Chaos, sandbox) -> None:
    run_id = chaos.admin.trigger("chaos_low_risk", conf={"experiment": "cache-slow-quick"})
    chaos.admin.wait_for_task_state("chaos_low_risk", run_id, "monitor", ["deferred"], timeout=300)
    sandbox.stop_prometheus()
    try:
        chaos.admin.wait_for_task_state("chaos_low_risk", run_id, "monitor", ["failed"], timeout=60)
        assert [o for o in chaos.objects() if not o["metadata"].get("deletionTimestamp")] == []
    finally:
        sandbox.start_prometheus()
    chaos.admin.wait_for_run("chaos_low_risk", run_id, timeout=300, expect="failed")
    result = chaos.result("chaos_low_risk", run_id)
    assert result["monitor"]["breach"]["rule"] == "max_failed_reads"


@pytest.mark.no_preflight
def test_high_risk_manual_trigger_in_business_hours_is_refused_at_plan(chaos: Chaos) -> None:
    """A high-tier run that cannot inject in its window is refused before anyone is asked."""
    chaos.policy(**{"business_hours.weekly": ALL_DAY, "business_hours.freeze_dates": []})
    with FaultWatch(chaos) as watch:
        run_id = chaos.admin.trigger("chaos_high_risk", conf={"experiment": "booking-api-multi-pod-failure"})
        chaos.admin.wait_for_run("chaos_high_risk", run_id, timeout=180, expect="failed")
    assert watch.most == 0
    states = chaos.admin.task_states("chaos_high_risk", run_id)
    assert states["plan"] == "failed" and states["approve_sre"] == "upstream_failed" and states["inject"] == "upstream_failed"
    assert chaos.admin.pending_approvals("chaos_high_risk") == []
    log = chaos.admin.task_log("chaos_high_risk", run_id, "plan")
    assert "refused at plan, before anyone is asked to approve" in log and "cannot run in the next" in log, log
    result = chaos.result("chaos_high_risk", run_id)
    assert result["verdict"] == "aborted" and result["approvals"] == []


def test_two_tiers_together_never_inject_twice(chaos: Chaos) -> None:
    with FaultWatch(chaos) as watch:
        low = chaos.admin.trigger("chaos_low_risk", conf={"experiment": "cache-slow-quick"})
        medium = chaos.admin.trigger("chaos_medium_risk", conf={"experiment": "email-service-quick-abort"})
        chaos.admin.wait_for_task_state("chaos_medium_risk", medium, "approve_sre", ["awaiting_input"], timeout=120)
        chaos.approve(chaos.sre, "chaos_medium_risk", medium, "approve_sre")
        finals = {
            "low": chaos.admin.wait_for_run("chaos_low_risk", low, timeout=600),
            "medium": chaos.admin.wait_for_run("chaos_medium_risk", medium, timeout=600),
        }
    assert watch.most == 1, f"{watch.most} faults at once: {watch.names}"
    assert finals == {"low": "success", "medium": "success"}, finals
    assert len(watch.names) == 2


def test_an_approver_removed_after_answering_no_longer_counts(chaos: Chaos) -> None:
    """Inject checks each answer against the policy as it is at the point of no return: an SRE
    removed from the approvers after approving (left the team, lost trust) approves nothing.
    (A protected pod can no longer hide behind a selector's labels: tests/unit/test_scope_property.py
    proves the static check against the API server's own resolution.)"""
    with FaultWatch(chaos) as watch:
        run_id = chaos.admin.trigger("chaos_medium_risk", conf={"experiment": "email-service-quick-abort"})
        chaos.approve(chaos.sre, "chaos_medium_risk", run_id, "approve_sre")
        chaos.policy(**{"approvers.sre": ["admin"]})
        chaos.admin.wait_for_run("chaos_medium_risk", run_id, timeout=240, expect="failed")
    assert watch.most == 0
    assert chaos.admin.task_states("chaos_medium_risk", run_id)["inject"] == "failed"
    log = chaos.admin.task_log("chaos_medium_risk", run_id, "inject")
    assert "answered by 'sre-oncall', who is not an approver of role 'sre' in the policy now (approvers: admin)" in log, log


# --- operations: the emergency stop and the dead-man watchdog, on the same Airflow ------------------


def active_faults(chaos: Chaos) -> list[dict]:
    return [o for o in chaos.objects() if not o["metadata"].get("deletionTimestamp")]


def test_emergency_stop_removes_the_fault_fails_the_run_and_blocks_new_runs(chaos: Chaos) -> None:
    run_id = chaos.admin.trigger("chaos_low_risk", conf={"experiment": "cache-slow-long"})
    chaos.admin.wait_for_task_state("chaos_low_risk", run_id, "monitor", ["deferred"], timeout=300)
    assert len(active_faults(chaos)) == 1
    stop = chaos.admin.trigger("chaos_emergency_stop", conf={"reason": "e2e: bookings at risk"})
    try:
        chaos.admin.wait_for_task_state("chaos_emergency_stop", stop, "emergency_stop", ["running", "success"], timeout=120)
        started = time.monotonic()
        while chaos.objects():
            assert time.monotonic() - started < 15, "the fault outlived the emergency stop"
            time.sleep(0.2)
        gone_after = time.monotonic() - started
        chaos.admin.wait_for_run("chaos_emergency_stop", stop, timeout=120, expect="success")
        chaos.admin.wait_for_run("chaos_low_risk", run_id, timeout=300, expect="failed")
        monitor = chaos.result("chaos_low_risk", run_id)["monitor"]
        assert monitor["status"] == "halted" and monitor["halt"]["halted_reason"] == "e2e: bookings at risk", monitor
        print(f"\nfault gone {gone_after:.1f} s after the stop task started")
        assert gone_after < 5
        with FaultWatch(chaos) as watch:
            blocked = chaos.admin.trigger("chaos_low_risk", conf={"experiment": "cache-slow-quick"})
            chaos.admin.wait_for_run("chaos_low_risk", blocked, timeout=180, expect="failed")
        assert watch.most == 0
        assert chaos.admin.task_states("chaos_low_risk", blocked)["plan"] == "failed"
        assert "halted" in chaos.admin.task_log("chaos_low_risk", blocked, "plan")
    finally:
        # Whatever failed above, the halt must not outlive this test (it would fail every later one).
        resume = chaos.admin.trigger("chaos_resume", conf={"reason": "e2e: all clear"})
        chaos.approve(chaos.sre, "chaos_resume", resume, "approve_resume")
        chaos.admin.wait_for_run("chaos_resume", resume, timeout=120, expect="success")
    state = HaltFlag(chaos.cluster, NAMESPACE).state()
    assert not state.halted and state.halted_reason == "e2e: bookings at risk" and state.resumed_reason == "e2e: all clear"


def test_zz_watchdog_removes_the_fault_when_airflow_dies(chaos: Chaos, sandbox, monkeypatch) -> None:
    """Last in the module: it kills the session's shared Airflow (conftest `chaos`), and this module
    is the last to use it (a later one fails at once: `clean_cluster` checks the stack is alive).
    The watchdog records the removal (the experiment no longer active): later pre-flights on this
    sandbox need not wait for the fault's lifetime to pass."""
    import signal
    import threading

    from chaos_engineering import watchdog

    monkeypatch.setenv("AIRFLOW_CONN_PUSHGATEWAY_WATCHDOG", json.dumps({"conn_type": "http", "host": sandbox.pushgateway_url}))

    run_id = chaos.admin.trigger("chaos_low_risk", conf={"experiment": "cache-slow-long"})
    chaos.admin.wait_for_task_state("chaos_low_risk", run_id, "monitor", ["deferred"], timeout=300)
    time.sleep(3)  # a few heartbeats
    assert len(active_faults(chaos)) == 1
    stop = threading.Event()
    sweeper = threading.Thread(target=watchdog.run, args=(chaos.cluster,), kwargs={"grace_s": 20, "interval_s": 2, "stop": stop, "pushgateway_conn_id": "pushgateway_watchdog"}, daemon=True)
    sweeper.start()
    try:
        for process in chaos.stack.stack_processes():
            process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        while active_faults(chaos) or chaos.objects():
            assert time.monotonic() - killed < 20 + 10, "the watchdog did not remove the unwatched fault in grace + 10 s"
            time.sleep(0.5)
        print(f"\nfault removed {time.monotonic() - killed:.1f} s after Airflow was killed (grace 20 s)")
        recorded = 'chaos_experiment_active{experiment="cache-slow-long",tier="low"}'
        deadline = time.monotonic() + 30
        while sandbox_value(sandbox, recorded) != 0.0:
            assert time.monotonic() < deadline, f"{recorded} still 1 30 s after the watchdog removed the fault"
            time.sleep(1)
    finally:
        stop.set()
        sweeper.join(10)
        from chaos_engineering.lock import ExperimentLock

        ExperimentLock(chaos.cluster, NAMESPACE).force_release()  # its holder died with Airflow
