"""Object storage down at a run's end: the result is kept in XCom first, the write is retried within
a bound, the verdict announces `finished` from XCom, the report skips or fails naming the pending
report, and the maintenance step writes what is pending once storage is back."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pendulum
import pytest

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from chaos_engineering import maintenance
from chaos_engineering.maintenance import MaintenanceReport, write_pending_reports
from chaos_engineering.operators import report as report_module
from chaos_engineering.operators import result as result_module
from chaos_engineering.operators.report import RunReportOperator
from chaos_engineering.operators.result import (
    PENDING_SENTENCE,
    RESULT_KEY,
    RunVerdictOperator,
    StorageUnavailable,
    WriteResultOperator,
    run_folder,
    with_storage_retries,
)

RUN_ID = "manual__2026-11-27T03:00:00+00:00"
RUN_AFTER = pendulum.datetime(2026, 11, 27, 3, tz="UTC")


class FlakyStorage:
    """The storage write that fails `failures` times (storage down), then works."""

    def __init__(self, failures: int, calls: list[str]) -> None:
        self.failures, self.calls = failures, calls

    def __call__(self, folder, result) -> None:
        self.calls.append("storage")
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Could not connect to the endpoint URL")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "result.json").write_text(json.dumps(result))


class FakeTI:
    def __init__(self, calls: list[str]) -> None:
        self.pushed: dict[tuple[str, str], object] = {}
        self.calls = calls

    def xcom_pull(self, task_ids: str, key: str = "return_value"):
        return self.pushed.get((task_ids, key))

    def xcom_push(self, key: str, value) -> None:
        self.calls.append(f"xcom:{key}")
        self.pushed[("write_result", key)] = value

    def get_task_states(self, dag_id, run_ids):
        return {RUN_ID: {"plan": "failed", "write_result": "running"}}


@pytest.fixture
def run(tmp_path, monkeypatch):
    calls: list[str] = []
    policy = SimpleNamespace(reports=SimpleNamespace(base_url=tmp_path.as_uri(), conn_id=None, retention_days=30))
    announced: list[tuple[str, dict]] = []
    notes: list[str] = []
    monkeypatch.setattr(result_module, "policy_or_fail", lambda: policy)
    monkeypatch.setattr(report_module, "policy_or_fail", lambda: policy)
    monkeypatch.setattr(result_module, "announce", lambda event, **kw: announced.append((event, kw)))
    monkeypatch.setattr(result_module, "write_run_note", lambda context, note: notes.append(note))
    ti = FakeTI(calls)
    context = {
        "ti": ti,
        "dag_run": SimpleNamespace(dag_id="chaos_low_risk", run_id=RUN_ID, run_type="manual", run_after=RUN_AFTER),
        "task": SimpleNamespace(task_id="write_result"),
    }
    folder = run_folder(tmp_path.as_uri(), None, "chaos_low_risk", RUN_ID, RUN_AFTER)
    return SimpleNamespace(calls=calls, ti=ti, context=context, announced=announced, notes=notes, folder=folder, policy=policy)


def test_storage_that_fails_twice_then_works_stores_the_result(run, monkeypatch):
    monkeypatch.setattr(result_module, "write_result", FlakyStorage(2, run.calls))
    outcome = WriteResultOperator(task_id="write_result", storage_deadline_s=30).execute(run.context)
    assert run.calls == [f"xcom:{RESULT_KEY}", "storage", "storage", "storage"]
    assert outcome["stored"] is True and outcome["storage_error"] is None
    assert json.loads((run.folder / "result.json").read_text()) == run.ti.pushed[("write_result", RESULT_KEY)]
    assert PENDING_SENTENCE not in run.notes[0]


def test_storage_down_past_the_deadline_keeps_the_result_and_says_so(run, monkeypatch):
    monkeypatch.setattr(result_module, "write_result", FlakyStorage(10**6, run.calls))
    outcome = WriteResultOperator(task_id="write_result", storage_deadline_s=0.5).execute(run.context)
    assert run.calls[0] == f"xcom:{RESULT_KEY}" and run.calls.count("storage") >= 1
    assert outcome["stored"] is False
    assert outcome["storage_error"].startswith(f"writing {run.folder / 'result.json'}: ConnectionError: Could not connect")
    assert "gave up after 0.5 s" in outcome["storage_error"]
    assert outcome["path"] == str(run.folder / "result.json") and not (run.folder / "result.json").exists()
    kept = run.ti.pushed[("write_result", RESULT_KEY)]
    assert kept["run_id"] == RUN_ID and kept["verdict"] == "aborted" and kept["verdict_reason"] == outcome["reason"]
    assert run.notes[0].endswith(PENDING_SENTENCE[0].upper() + PENDING_SENTENCE[1:] + ".")


def test_the_verdict_announces_finished_from_xcom_when_storage_was_down(run, monkeypatch):
    monkeypatch.setattr(result_module, "write_result", FlakyStorage(10**6, run.calls))
    outcome = WriteResultOperator(task_id="write_result", storage_deadline_s=0.1).execute(run.context)
    with pytest.raises(AirflowFailException, match="run aborted: the plan step failed"):
        RunVerdictOperator(task_id="verdict", outcome=outcome).execute(run.context)
    event, kwargs = run.announced[-1]
    assert event == "finished" and kwargs["extra"] == {}
    reason = kwargs["result"]["verdict_reason"]
    assert reason.startswith("the plan step failed: nothing was injected; " + PENDING_SENTENCE + " (writing ")
    assert kwargs["result"]["run_id"] == RUN_ID


def test_the_verdict_falls_back_to_xcom_when_storage_fails_at_read_time(run):
    # stored, but the folder cannot be read now: the message still goes out, from XCom.
    run.ti.pushed[("write_result", RESULT_KEY)] = {"run_id": RUN_ID, "verdict": "held", "verdict_reason": "ok"}
    outcome = {"path": str(run.folder / "result.json"), "verdict": "held", "reason": "ok", "failed_steps": [], "stored": True}
    RunVerdictOperator(task_id="verdict", outcome=outcome).execute(run.context)
    event, kwargs = run.announced[-1]
    assert event == "finished"
    assert kwargs["result"]["verdict_reason"].startswith(f"ok; {PENDING_SENTENCE} (cannot read the run's files: FileNotFoundError")


def test_the_verdict_fails_when_nothing_was_kept_anywhere(run):
    outcome = {"path": str(run.folder / "result.json"), "verdict": "held", "reason": "ok", "failed_steps": [], "stored": False, "storage_error": "down"}
    with pytest.raises(AirflowFailException, match="write_result kept no result in XCom"):
        RunVerdictOperator(task_id="verdict", outcome=outcome).execute(run.context)


def test_the_report_skips_when_the_result_was_not_stored(run):
    outcome = {"path": str(run.folder / "result.json"), "stored": False, "storage_error": "writing x: down"}
    with pytest.raises(AirflowSkipException, match=f"^{PENDING_SENTENCE} \\(write_result: writing x: down\\)$"):
        RunReportOperator(task_id="report", outcome=outcome).execute(run.context)


def test_the_report_fails_naming_the_pending_report_when_storage_stays_down(run):
    outcome = {"path": str(run.folder / "result.json"), "stored": True}
    with pytest.raises(AirflowFailException, match=f"^{PENDING_SENTENCE}: reading .*result.json: FileNotFoundError: .*gave up after 0.2 s"):
        RunReportOperator(task_id="report", outcome=outcome, storage_deadline_s=0.2).execute(run.context)


def test_storage_retries_give_up_at_the_deadline_and_never_retry_airflow_errors():
    attempts = []

    def fail_airflow():
        attempts.append(1)
        raise AirflowFailException("refused")

    with pytest.raises(AirflowFailException):
        with_storage_retries(fail_airflow, "x", deadline_s=5)
    assert len(attempts) == 1
    with pytest.raises(StorageUnavailable, match="^reading y: OSError: down \\(gave up after 0 s\\)$"):
        with_storage_retries(lambda: (_ for _ in ()).throw(OSError("down")), "reading y", deadline_s=0)


class FakeApi:
    """AirflowApiHook's two reads: runs of a DAG, an XCom entry."""

    def __init__(self, runs: dict[str, list[dict]], xcoms: dict[tuple[str, str], dict]) -> None:
        self.runs, self.xcoms, self.asked = runs, xcoms, []

    def dag_runs(self, dag_id, *, run_after_gte):
        self.asked.append((dag_id, run_after_gte))
        if dag_id == "chaos_dr_drill":
            raise RuntimeError("GET /api/v2/dags/chaos_dr_drill/dagRuns answered 503")
        return self.runs.get(dag_id, [])

    def xcom_value(self, dag_id, run_id, task_id, key="return_value"):
        assert (task_id, key) == ("write_result", RESULT_KEY)
        return self.xcoms.get((dag_id, run_id))


def test_pending_reports_are_written_from_xcom_and_listed(tmp_path):
    base = tmp_path.as_uri()
    run = lambda run_id: {"dag_run_id": run_id, "run_after": "2026-11-27T03:00:00Z", "state": "failed"}  # noqa: E731
    done = run_folder(base, None, "chaos_low_risk", "manual__done", RUN_AFTER)
    done.mkdir(parents=True)
    (done / "result.json").write_text("{}")
    (done / "report.json").write_text("{}")
    half = run_folder(base, None, "chaos_medium_risk", "manual__half", RUN_AFTER)  # result stored, report failed
    half.mkdir(parents=True)
    (half / "result.json").write_text(json.dumps({"run_id": "manual__half"}))
    api = FakeApi(
        {"chaos_low_risk": [run("manual__done"), run("manual__pending"), run("manual__lost")], "chaos_medium_risk": [run("manual__half")]},
        {("chaos_low_risk", "manual__pending"): {"run_id": "manual__pending", "verdict": "held"}},
    )
    built = []

    def build(result, folder):
        built.append((result["run_id"], str(folder)))
        (folder / "report.json").write_text("{}")
        return [folder / "report.json"]

    report = MaintenanceReport()
    now = pendulum.datetime(2026, 11, 28, tz="UTC")
    write_pending_reports(api, base, None, build, report, lookback_days=7, now=now)

    pending = run_folder(base, None, "chaos_low_risk", "manual__pending", RUN_AFTER)
    assert json.loads((pending / "result.json").read_text()) == {"run_id": "manual__pending", "verdict": "held"}
    assert built == [("manual__pending", str(pending)), ("manual__half", str(half))]
    assert report.pending_reports == [
        f"chaos_low_risk/manual__pending: wrote result.json, report.json into {pending}",
        f"chaos_medium_risk/manual__half: wrote report.json into {half}",
    ]
    assert report.unrecoverable == [f"chaos_low_risk/manual__lost: no result.json in {run_folder(base, None, 'chaos_low_risk', 'manual__lost', RUN_AFTER)} and no result in write_result's XCom ('result')"]
    assert report.errors == ["cannot list the runs of chaos_dr_drill through Airflow's REST API: GET /api/v2/dags/chaos_dr_drill/dagRuns answered 503"]
    assert [d for d, _ in api.asked] == list(maintenance.REPORTED_DAGS)
    assert {since for _, since in api.asked} == {now - pendulum.duration(days=7)}
    assert "PENDING REPORT chaos_low_risk/manual__pending" in report.summary()
    assert "NO RESULT chaos_low_risk/manual__lost" in report.summary()


def test_a_bug_is_raised_at_once_not_taken_for_a_storage_outage():
    from chaos_engineering.operators.result import is_storage_error

    calls = []

    def broken() -> None:
        calls.append(1)
        raise TypeError("write_report() got an unexpected keyword argument")

    with pytest.raises(TypeError):
        with_storage_retries(broken, "writing x", deadline_s=30)
    assert calls == [1]
    assert is_storage_error(ConnectionError("refused")) and not is_storage_error(KeyError("path"))
