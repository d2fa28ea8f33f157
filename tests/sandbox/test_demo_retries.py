"""`make demo` (sandbox.demo) when Airflow's API fails for a while: a failed read while the run goes
on is said and outlived; a real failure is one line and exit 1, never a traceback. The sandbox and
the Airflow stack are stand-ins; the REST client is the real one, against a local flaky server."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import demo
from sandbox.airflow_client import AirflowClient
from tests.sandbox.test_airflow_client_retries import BACKOFF_S, TIMEOUT_S, FlakyAirflow

RUN_ID = "manual__2026-03-01T12:00:00+00:00"
RUN = f"/api/v2/dags/{demo.DAG_ID}/dagRuns/{RUN_ID.replace(':', '%3A').replace('+', '%2B')}"


class RunningSandbox:
    """What the demo asks of a sandbox it finds running."""

    kube_url = "http://127.0.0.1:1"
    prometheus_url = "http://127.0.0.1:2"

    def __init__(self, state: Path) -> None:
        self.kubeconfig_path = state / "kubeconfig"
        self.stopped = False

    def health(self) -> dict[str, tuple[bool, str]]:
        return {"kubernetes-api": (True, "ok")}

    def stop(self) -> None:
        self.stopped = True


class StackOn:
    """An Airflow stack that is the flaky server."""

    def __init__(self, airflow: FlakyAirflow) -> None:
        self.base_url, self.passwords, self.stopped = airflow.url, {"admin": "secret"}, False

    def client(self, username: str) -> AirflowClient:
        return AirflowClient(self.base_url, username, "secret", poll_interval=0.05, request_timeout=TIMEOUT_S, backoff_factor=BACKOFF_S)

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def airflow() -> Iterator[FlakyAirflow]:
    flaky = FlakyAirflow(demo.DAG_ID, RUN_ID)
    flaky.run = RUN  # the run id as the client quotes it in the path
    threading.Thread(target=flaky.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield flaky
    flaky.server.shutdown()
    flaky.server.server_close()


@pytest.fixture
def run_demo(airflow, tmp_path, monkeypatch, capsys):
    """`python -m sandbox.demo --once` against the flaky server: (exit code, stdout lines, stack)."""
    sandbox = RunningSandbox(tmp_path)
    stack = StackOn(airflow)
    monkeypatch.setattr(demo.Sandbox, "load", staticmethod(lambda state: sandbox))
    monkeypatch.setattr(demo.AirflowStack, "start", staticmethod(lambda *args, **kwargs: stack))
    monkeypatch.setattr(demo, "wait_for_steady_platform", lambda include: None)
    for name in ("AIRFLOW_CONN_KUBERNETES_DEFAULT", "AIRFLOW_CONN_PROMETHEUS_DEFAULT"):
        monkeypatch.setenv(name, "{}")  # the demo sets them: restored afterwards
    client_log = logging.getLogger("chaos_engineering.airflow_rest")
    handlers, propagate = list(client_log.handlers), client_log.propagate

    def run() -> tuple[int, list[str], StackOn, RunningSandbox]:
        code = demo.main(["--once", "--state-dir", str(tmp_path)])
        return code, capsys.readouterr().out.splitlines(), stack, sandbox

    yield run
    client_log.handlers[:] = handlers
    client_log.propagate = propagate


def test_a_failed_poll_is_said_and_outlived(airflow, run_demo):
    airflow.fail("GET", RUN, *["timeout"] * 5)  # one whole poll: every attempt times out

    def finish() -> None:
        while airflow.count("GET", RUN) < 7:
            threading.Event().wait(0.05)
        airflow.run_state = airflow.task_state = "success"

    threading.Thread(target=finish, daemon=True).start()
    code, lines, stack, sandbox = run_demo()
    assert code == 0, "\n".join(lines)
    text = "\n".join(lines)
    assert f"GET {RUN} timed out after {TIMEOUT_S:g} s; retrying now (attempt 2 of 5)" in text
    assert f"; still waiting for run {demo.DAG_ID}/{RUN_ID} to finish (" in text
    assert lines[-2].endswith("run success: verdict passed (steady state held)")
    assert lines[-1].endswith("stopping Airflow and the sandbox")
    assert stack.stopped and sandbox.stopped


def test_a_trigger_without_an_answer_is_one_line_and_exit_1_never_a_second_run(airflow, run_demo):
    airflow.fail("POST", f"/api/v2/dags/{demo.DAG_ID}/dagRuns", "timeout")
    code, lines, stack, _ = run_demo()
    assert code == 1
    assert lines[-1].endswith(
        f"] demo failed: triggering {demo.DAG_ID}: timed out after {TIMEOUT_S:g} s; a run may have started anyway: see {airflow.url}"
    )
    assert airflow.count("POST", f"/api/v2/dags/{demo.DAG_ID}/dagRuns") == 1
    assert not any("Traceback" in line for line in lines)
    assert stack.stopped


def test_a_run_past_the_demos_timeout_is_one_line_and_exit_1(airflow, run_demo, monkeypatch):
    monkeypatch.setattr(demo, "RUN_TIMEOUT_S", 0.5)
    code, lines, _, _ = run_demo()
    assert code == 1
    assert lines[-1].endswith(f"] demo failed: run {demo.DAG_ID}/{RUN_ID} still 'running' after 0s")
    assert "task states:" in lines  # the details come before it


def test_an_unreadable_verdict_is_said_and_the_run_state_decides(airflow, run_demo):
    airflow.run_state = "success"
    airflow.fail("GET", f"{RUN}/taskInstances/write_result/xcomEntries/return_value", *["503"] * 5)
    code, lines, _, _ = run_demo()
    assert code == 0
    assert any("run success: its verdict could not be read (GET " in line and "HTTP 503" in line for line in lines)
