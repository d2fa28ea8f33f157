"""`chaosctl run` and `chaosctl runs` against a fake Airflow REST API served over real HTTP: exit
codes, progress lines, JSON output, authentication, the timeout, the runs listing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from hypothesis import given
from hypothesis import strategies as st

from chaos_engineering import cli_run
from chaos_engineering.cli import main
from chaos_engineering.cli_run import ENDINGS, ending_of
from chaos_engineering.report.schema import VERDICTS
from tests.integration.receivers import free_port

CHAOSCTL = str(Path(sys.executable).with_name("chaosctl"))
TOKEN = "token-of-the-pipeline"
ISSUED = "jwt-issued-for-ci"
USERS = {"ci": "s3cret-pw"}
CHAIN = ("plan", "dry_run_gate", "approve_sre", "window_guard", "preflight", "acquire_lock", "inject", "monitor", "remove_fault",
         "write_result", "report", "verdict")


def result(verdict: str, *, injected: bool = True, reason: str = "because") -> dict[str, Any]:
    return {"schema_version": 1, "verdict": verdict, "verdict_reason": reason, "experiment": {"experiment": "cache-failure"},
            "fault": {"name": "chaos-x", "injected_at": "2026-12-04T10:00:00+00:00"} if injected else None}


@dataclass
class FakeRun:
    """A run that moves one step of `steps` ({task: state}) per poll of its state, then ends `final`
    (None: never ends); `result` is write_result's XCom `result`, None for none."""

    dag_id: str
    run_id: str
    conf: dict[str, Any]
    steps: list[dict[str, str]]
    final: str | None
    result: dict[str, Any] | None
    run_after: str = "2026-12-04T10:00:00+00:00"
    polls: int = 0

    def state(self) -> str:
        self.polls += 1
        if self.final is None or self.polls <= len(self.steps):
            return "running"
        return self.final

    def tasks(self) -> dict[str, str]:
        seen: dict[str, str] = {}
        for step in self.steps[: self.polls]:
            seen.update(step)
        return seen


@dataclass
class FakeAirflow:
    """Just the endpoints chaosctl uses, behind bearer tokens like Airflow's api-server."""

    paused: set[str] = field(default_factory=set)
    script: tuple[list[dict[str, str]], str | None, dict[str, Any] | None] = ([], "success", None)
    refuse_conf: bool = False
    runs: dict[tuple[str, str], FakeRun] = field(default_factory=dict)
    headers: list[str | None] = field(default_factory=list)
    logins: list[dict[str, Any]] = field(default_factory=list)
    triggered: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def bearer(request: Request, call_next: Any) -> Any:
            if request.url.path.startswith("/api/v2"):
                header = request.headers.get("authorization")
                self.headers.append(header)
                if header not in (f"Bearer {TOKEN}", f"Bearer {ISSUED}"):
                    return JSONResponse({"detail": "Not authenticated"}, status_code=401)
            return await call_next(request)

        @app.post("/auth/token", status_code=201)
        async def login(request: Request) -> Any:
            body = await request.json()
            self.logins.append(body)
            if USERS.get(body.get("username")) != body.get("password"):
                return JSONResponse({"detail": "Invalid credentials"}, status_code=401)
            return {"access_token": ISSUED}

        @app.get("/api/v2/dags/{dag_id}")
        def dag(dag_id: str) -> Any:
            if dag_id not in ("chaos_low_risk", "chaos_medium_risk", "chaos_high_risk"):
                return JSONResponse({"detail": f"DAG {dag_id} not found"}, status_code=404)
            return {"dag_id": dag_id, "is_paused": dag_id in self.paused}

        @app.post("/api/v2/dags/{dag_id}/dagRuns")
        async def trigger(dag_id: str, request: Request) -> Any:
            conf = (await request.json())["conf"]
            if self.refuse_conf:
                return JSONResponse({"detail": "Invalid input for param experiment: 'nope' is not one of [...]"}, status_code=400)
            run_id = f"manual__2026-12-04T10:00:0{len(self.runs)}+00:00"
            steps, final, outcome = self.script
            self.runs[(dag_id, run_id)] = FakeRun(dag_id, run_id, conf, list(steps), final, outcome)
            self.triggered.append((dag_id, conf))
            return {"dag_run_id": run_id, "dag_id": dag_id, "state": "queued"}

        @app.get("/api/v2/dags/{dag_id}/dagRuns")
        def list_runs(dag_id: str, limit: int = 100, order_by: str = "") -> Any:
            assert order_by == "-run_after"
            mine = sorted((r for (d, _), r in self.runs.items() if d == dag_id), key=lambda r: r.run_after, reverse=True)[:limit]
            return {"dag_runs": [{"dag_run_id": r.run_id, "dag_id": dag_id, "state": r.final or "running", "conf": r.conf,
                                  "run_after": r.run_after} for r in mine], "total_entries": len(mine)}

        @app.get("/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        def run(dag_id: str, run_id: str) -> Any:
            fake = self.runs[(dag_id, run_id)]
            return {"dag_run_id": run_id, "dag_id": dag_id, "state": fake.state()}

        @app.get("/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        def task_instances(dag_id: str, run_id: str) -> Any:
            tasks = self.runs[(dag_id, run_id)].tasks()
            instances = [{"task_id": t, "map_index": -1, "try_number": 1, "state": s} for t, s in tasks.items()]
            return {"task_instances": instances, "total_entries": len(instances)}

        @app.get("/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}")
        def logs(dag_id: str, run_id: str, task_id: str, try_number: int) -> Any:
            return {"content": ["a log line"]}

        @app.get("/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
        def xcom(dag_id: str, run_id: str, task_id: str, key: str) -> Any:
            fake = self.runs[(dag_id, run_id)]
            if (task_id, key) != ("write_result", "result") or fake.result is None or fake.final is None:
                return JSONResponse({"detail": "XCom entry not found"}, status_code=404)
            # The API answers a JSON value stored by a task as a string; chaosctl must parse it.
            return {"key": key, "value": json.dumps(fake.result)}

        return app


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """`app` (a FastAPI app) served over real HTTP by uvicorn in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the fake Airflow did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


@pytest.fixture
def airflow() -> Iterator[tuple[FakeAirflow, str]]:
    fake = FakeAirflow()
    with serve(fake.app()) as url:
        yield fake, url


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, airflow: tuple[FakeAirflow, str]) -> pytest.MonkeyPatch:
    """The environment a pipeline sets: the URL and airflowctl's token variable."""
    for name in ("AIRFLOW_API_USERNAME", "AIRFLOW_API_PASSWORD", "AIRFLOW_CONN_AIRFLOW_API_CHAOSCTL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_API_URL", airflow[1])
    monkeypatch.setenv("AIRFLOW_CLI_TOKEN", TOKEN)
    monkeypatch.setattr(cli_run, "POLL_INTERVAL_S", 0.02)
    return monkeypatch


def steps_to(*states: tuple[str, str]) -> list[dict[str, str]]:
    return [{task: state} for task, state in states]


HELD_STEPS = steps_to(("plan", "running"), ("plan", "success"), ("approve_sre", "awaiting_input"), ("approve_sre", "success"),
                      ("inject", "success"), ("monitor", "deferred"), ("monitor", "success"), ("write_result", "success"))


def chaosctl(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# --- exit codes ------------------------------------------------------------------------------------


def test_a_held_run_exits_0_with_progress_lines_verdict_and_report_link(airflow, env, capsys):
    fake, url = airflow
    fake.script = (HELD_STEPS, "success", result("held", reason="no threshold breached"))
    code, out, err = chaosctl(capsys, "run", "cache-failure", "--tier", "medium", "--wait")
    assert code == 0, out + err
    ((dag_id, run_id),) = fake.runs
    assert dag_id == "chaos_medium_risk"
    assert fake.triggered == [("chaos_medium_risk", {"experiment": "cache-failure", "dry_run": False})]
    assert f"run {run_id}" in out
    assert f"run page {url}/dags/chaos_medium_risk/runs/manual__2026-12-04T10%3A00%3A00%2B00%3A00" in out
    # The demo's progress lines, one per change.
    assert "plan: - -> running" in out and "plan: running -> success" in out and "monitor: deferred -> success" in out
    assert (f"waiting for approval by sre in the Airflow UI: {url}/dags/chaos_medium_risk/runs/"
            "manual__2026-12-04T10%3A00%3A00%2B00%3A00/tasks/approve_sre/required_actions") in out
    assert "verdict held: no threshold breached" in out
    assert f"report {url}/chaos/reports/chaos_medium_risk/manual__2026-12-04T10%3A00%3A00%2B00%3A00/report.html" in out


@pytest.mark.parametrize(
    ("final", "outcome", "code", "ending"),
    [
        ("failed", result("broken", reason="safety breach: error rate"), 1, "broken"),
        ("failed", result("aborted", injected=True, reason="the fault was removed from outside the run"), 1, "aborted_after_injection"),
        ("success", result("aborted", injected=False, reason="rejected by sre-oncall"), 2, "refused"),
        ("failed", result("aborted", injected=False, reason="nothing was injected: approve_sre failed"), 2, "refused"),
        ("success", result("dry_run", injected=False), 0, "dry_run"),
        ("failed", None, 3, "no_result"),
        ("success", result("something-new"), 3, "no_result"),
    ],
    ids=["breached", "aborted-after-inject", "rejected", "approval-timed-out", "dry-run", "no-result", "unknown-verdict"],
)
def test_the_verdict_decides_the_exit_code(airflow, env, capsys, final, outcome, code, ending):
    fake, _ = airflow
    fake.script = (steps_to(("plan", "success"), ("write_result", "success")), final, outcome)
    got, out, err = chaosctl(capsys, "run", "cache-failure", "--tier", "medium", "--wait", "--timeout", "30s")
    assert got == code, out + err
    assert f"(exit {code}: {ending})" in err


def test_json_prints_the_result_document_alone_on_stdout(airflow, env, capsys):
    fake, _ = airflow
    document = result("broken", reason="safety breach")
    fake.script = (HELD_STEPS, "failed", document)
    code, out, err = chaosctl(capsys, "run", "cache-failure", "--tier", "medium", "--wait", "--format", "json")
    assert code == 1
    assert json.loads(out) == document
    assert "monitor: deferred -> success" in err  # the progress lines go to stderr


def test_without_wait_it_prints_the_run_and_exits_0(airflow, env, capsys):
    fake, url = airflow
    fake.script = (HELD_STEPS, None, None)
    code, out, err = chaosctl(capsys, "run", "cache-failure", "--tier", "medium", "--dry-run", "--conf-json", '{"note": "ci"}',
                              "--format", "json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["run_id"] == "manual__2026-12-04T10:00:00+00:00" and shown["ending"] == "triggered"
    assert shown["run_url"].startswith(f"{url}/dags/chaos_medium_risk/runs/")
    assert fake.triggered == [("chaos_medium_risk", {"note": "ci", "experiment": "cache-failure", "dry_run": True})]
    assert fake.runs[("chaos_medium_risk", shown["run_id"])].polls == 0  # not followed


def test_the_timeout_while_an_approval_waits_exits_2_and_says_so(airflow, env, capsys):
    fake, url = airflow
    fake.script = (steps_to(("plan", "success"), ("approve_sre", "awaiting_input")), None, None)
    started = time.monotonic()
    code, out, err = chaosctl(capsys, "run", "cache-failure", "--tier", "medium", "--wait", "--timeout", "1.5s")
    assert code == 2, out + err
    assert 1.5 <= time.monotonic() - started < 10
    assert "waits for approval by sre: nothing injected yet" in err
    assert "/tasks/approve_sre/required_actions" in err and "(exit 2: awaiting_approval)" in err


def test_the_timeout_once_injecting_exits_3(airflow, env, capsys):
    fake, _ = airflow
    fake.script = (steps_to(("plan", "success"), ("inject", "success"), ("monitor", "deferred")), None, None)
    code, out, err = chaosctl(capsys, "run", "cache-failure", "--tier", "medium", "--wait", "--timeout", "1s")
    assert code == 3, out + err
    assert "--timeout 1 s passed: run chaos_medium_risk/manual__2026-12-04T10:00:00+00:00 still 'running' after 1s, inject success" in err
    assert "(exit 3: timeout)" in err


def test_the_timeout_before_injecting_exits_2(airflow, env, capsys):
    fake, _ = airflow
    fake.script = (steps_to(("plan", "success"), ("approve_sre", "success"), ("acquire_lock", "up_for_reschedule")), None, None)
    code, out, err = chaosctl(capsys, "run", "cache-failure", "--tier", "medium", "--wait", "--timeout", "1s")
    assert code == 2, out + err
    assert "still 'running' after 1s, nothing injected yet" in err and "(exit 2: timeout_before_injection)" in err


def test_a_closed_port_exits_3_within_10_s(tmp_path):
    """As a pipeline runs it: the installed command, only the environment, nothing listening."""
    environment = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path),
                   "AIRFLOW_API_URL": f"http://127.0.0.1:{free_port()}", "AIRFLOW_CLI_TOKEN": TOKEN}
    started = time.monotonic()
    done = subprocess.run([CHAOSCTL, "run", "booking-api-pod-kill", "--tier", "low", "--wait"], capture_output=True, text=True,
                          env=environment, timeout=30)
    assert done.returncode == 3, done.stdout + done.stderr
    assert time.monotonic() - started < 10
    assert "Airflow unreachable" in done.stderr and "Connection refused" in done.stderr
    assert TOKEN not in done.stdout + done.stderr


def test_airflow_refusing_the_conf_exits_2(airflow, env, capsys):
    fake, _ = airflow
    fake.refuse_conf = True
    code, _, err = chaosctl(capsys, "run", "nope", "--tier", "low", "--wait")
    assert code == 2 and "Airflow refused the run of chaos_low_risk" in err and "(exit 2: not_triggered)" in err


def test_a_paused_dag_is_not_triggered(airflow, env, capsys):
    fake, _ = airflow
    fake.paused.add("chaos_low_risk")
    code, _, err = chaosctl(capsys, "run", "x", "--tier", "low")
    assert code == 2 and "chaos_low_risk is paused" in err and fake.triggered == []


def test_an_experiment_outside_the_catalogue_is_refused_before_asking_airflow(airflow, env, capsys):
    fake, _ = airflow
    code, _, err = chaosctl(capsys, "run", "no-such-experiment", "--wait")
    assert code == 2 and "no valid experiment named 'no-such-experiment' in the catalogue" in err
    assert fake.headers == []


def test_the_experiment_s_tier_comes_from_the_catalogue(airflow, env, capsys):
    fake, _ = airflow
    code, _, err = chaosctl(capsys, "run", "booking-api-pod-kill")
    assert code == 0, err
    assert fake.triggered == [("chaos_low_risk", {"experiment": "booking-api-pod-kill", "dry_run": False})]


# --- authentication ----------------------------------------------------------------------------------


def test_every_call_carries_the_token_from_the_environment(airflow, env, capsys):
    fake, _ = airflow
    fake.script = (HELD_STEPS, "success", result("held"))
    assert chaosctl(capsys, "run", "x", "--tier", "medium", "--wait")[0] == 0
    assert fake.headers and set(fake.headers) == {f"Bearer {TOKEN}"}
    assert fake.logins == []


def test_a_username_and_password_are_exchanged_for_a_token(airflow, env, capsys):
    fake, _ = airflow
    env.delenv("AIRFLOW_CLI_TOKEN")
    env.setenv("AIRFLOW_API_USERNAME", "ci")
    env.setenv("AIRFLOW_API_PASSWORD", USERS["ci"])
    fake.script = (HELD_STEPS, "success", result("held"))
    code, out, err = chaosctl(capsys, "run", "x", "--tier", "medium", "--wait")
    assert code == 0, err
    assert fake.logins == [{"username": "ci", "password": USERS["ci"]}]
    assert set(fake.headers) == {f"Bearer {ISSUED}"}
    assert USERS["ci"] not in out + err


def test_a_refused_token_exits_3_naming_the_variable_and_not_the_token(airflow, env, capsys):
    fake, _ = airflow
    env.setenv("AIRFLOW_CLI_TOKEN", "expired-token-value")
    code, out, err = chaosctl(capsys, "run", "x", "--tier", "low", "--wait")
    assert code == 3
    assert "Airflow refused the credentials from AIRFLOW_CLI_TOKEN (HTTP 401): set AIRFLOW_CLI_TOKEN" in err
    assert "expired-token-value" not in out + err and fake.triggered == []


def test_a_wrong_password_exits_3(airflow, env, capsys):
    env.delenv("AIRFLOW_CLI_TOKEN")
    env.setenv("AIRFLOW_API_USERNAME", "ci")
    env.setenv("AIRFLOW_API_PASSWORD", "wrong-password")
    code, out, err = chaosctl(capsys, "run", "x", "--tier", "low")
    assert code == 3 and "HTTP 401" in err and "wrong-password" not in out + err


def test_no_credentials_at_all_exits_3_naming_what_to_set(airflow, env, capsys):
    env.delenv("AIRFLOW_CLI_TOKEN")
    code, _, err = chaosctl(capsys, "run", "x", "--tier", "low")
    assert code == 3 and "no Airflow credentials: set AIRFLOW_CLI_TOKEN" in err and "AIRFLOW_API_USERNAME" in err


def test_the_connection_gives_url_and_token_when_the_environment_does_not(airflow, env, capsys):
    fake, url = airflow
    env.delenv("AIRFLOW_API_URL")
    env.delenv("AIRFLOW_CLI_TOKEN")
    env.setenv("AIRFLOW_CONN_AIRFLOW_API_CHAOSCTL", json.dumps({"conn_type": "http", "host": url, "extra": {"token": TOKEN}}))
    code, _, err = chaosctl(capsys, "run", "x", "--tier", "low")
    assert code == 0, err
    assert set(fake.headers) == {f"Bearer {TOKEN}"}


# --- chaosctl runs -------------------------------------------------------------------------------------


def test_runs_lists_recent_runs_with_verdicts_and_report_links(airflow, env, capsys):
    fake, url = airflow
    fake.runs = {
        ("chaos_low_risk", "r1"): FakeRun("chaos_low_risk", "r1", {"experiment": "rotation"}, [], "success", result("held"),
                                          run_after="2026-12-01T10:00:00+00:00"),
        ("chaos_medium_risk", "r2"): FakeRun("chaos_medium_risk", "r2", {"experiment": "cache-failure"}, [], "failed", None,
                                             run_after="2026-12-02T10:00:00+00:00"),
        ("chaos_high_risk", "r3"): FakeRun("chaos_high_risk", "r3", {"experiment": "database-failover"}, [], None, None,
                                           run_after="2026-12-03T10:00:00+00:00"),
    }
    code, out, err = chaosctl(capsys, "runs", "--last", "2")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2  # the newest two, newest first
    assert lines[0] == "2026-12-03T10:00:00  chaos_high_risk  r3  database-failover  running  no result yet  no report"
    assert lines[1] == "2026-12-02T10:00:00  chaos_medium_risk  r2  cache-failure  failed  no result  no report"
    code, out, _ = chaosctl(capsys, "runs", "--tier", "low", "--format", "json")
    (row,) = json.loads(out)
    assert row["experiment"] == "cache-failure"  # the plan's choice, not the form's "rotation"
    assert row["verdict"] == "held" and row["report_url"] == f"{url}/chaos/reports/chaos_low_risk/r1/report.html"


def test_runs_against_a_closed_port_exits_3(monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AIRFLOW_CLI_TOKEN", TOKEN)
    code, _, err = chaosctl(capsys, "runs")
    assert code == 3 and "Airflow unreachable" in err


# --- the exit-code table ---------------------------------------------------------------------------------


def test_the_table_keeps_the_issue_s_codes():
    codes = {name: code for name, (code, _) in ENDINGS.items()}
    assert codes["held"] == 0 and codes["broken"] == 1 and codes["refused"] == 2 and codes["unreachable"] == 3
    assert set(codes.values()) == {0, 1, 2, 3}


@given(verdict=st.one_of(st.sampled_from(VERDICTS), st.text()), fault=st.one_of(st.none(), st.dictionaries(st.text(), st.text())),
       other=st.dictionaries(st.text(), st.text()))
def test_every_result_maps_to_exactly_one_exit_code(verdict, fault, other):
    ending = ending_of({**other, "verdict": verdict, "fault": fault})
    assert ending in ENDINGS
    if verdict in VERDICTS:  # every verdict the product writes has its own meaning, never "unknown"
        assert ending != "no_result"


def test_the_help_shows_the_table(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for name, (code, _) in ENDINGS.items():
        assert f"  {code}  {name} " in out
