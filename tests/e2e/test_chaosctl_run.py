"""`chaosctl run` end to end, as a pipeline runs it: the installed command in a subprocess with only
the environment a user sets, against a real Airflow on the sandbox; every test also asserts on the
cluster (what was injected, that it is gone)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.e2e import test_tier_runs
from tests.e2e.test_tier_runs import Chaos, FaultWatch

pytestmark = pytest.mark.e2e

# Autouse here too: each test starts and must end with nothing of ours in the cluster, the lock free.
clean_cluster = test_tier_runs.clean_cluster

CHAOSCTL = str(Path(sys.executable).with_name("chaosctl"))


def user_environment(chaos: Chaos, home: Path, **extra: str) -> dict[str, str]:
    """What a CI job exports: the api-server's URL and credentials, and the catalogue it deploys."""
    return {"PATH": str(Path(sys.executable).parent), "HOME": str(home), "AIRFLOW_HOME": str(home),
            "AIRFLOW_API_URL": chaos.stack.base_url, "CHAOS_INCLUDE_DIR": str(chaos.include), **extra}


def as_admin(chaos: Chaos) -> dict[str, str]:
    return {"AIRFLOW_API_USERNAME": "admin", "AIRFLOW_API_PASSWORD": chaos.stack.passwords["admin"]}


def chaosctl(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([CHAOSCTL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    print(out, err)
    return process.returncode, out, err


def new_run(chaos: Chaos, dag_id: str, before: set[str], timeout: float = 60) -> str:
    """The run chaosctl triggered: the one run of `dag_id` not in `before`."""
    deadline = time.monotonic() + timeout
    while not (new := {r["dag_run_id"] for r in chaos.admin.recent_runs(dag_id, 20)} - before):
        assert time.monotonic() < deadline, f"chaosctl triggered no run of {dag_id} in {timeout} s"
        time.sleep(0.5)
    (run_id,) = new
    return run_id


def run_ids(chaos: Chaos, dag_id: str) -> set[str]:
    return {r["dag_run_id"] for r in chaos.admin.recent_runs(dag_id, 20)}


def test_a_held_low_tier_run_exits_0_with_verdict_and_report_link(chaos: Chaos, tmp_path) -> None:
    env = user_environment(chaos, tmp_path, AIRFLOW_CLI_TOKEN=chaos.admin.token())
    before = run_ids(chaos, "chaos_low_risk")
    with FaultWatch(chaos) as watch:
        code, out, err = finish(chaosctl(env, "run", "booking-api-quick-kill", "--wait", "--timeout", "10m"))
    assert code == 0, out + err
    assert watch.most == 1 and chaos.objects() == []
    run_id = new_run(chaos, "chaos_low_risk", before)
    assert f"run {run_id}" in out and "verdict held: " in out, out
    assert chaos.result("chaos_low_risk", run_id)["verdict"] == "held"
    (report,) = [line.split("report ", 1)[1] for line in out.splitlines() if "] report " in line]
    assert report.startswith(f"{chaos.stack.base_url}/chaos/reports/chaos_low_risk/") and report.endswith("/report.html")
    page = requests.get(report, headers={"Authorization": f"Bearer {chaos.admin.token()}"}, timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower(), page.status_code
    # The runs listing shows it with its verdict and the same link.
    listing = subprocess.run([CHAOSCTL, "runs", "--tier", "low", "--last", "1"], capture_output=True, text=True, env=env, timeout=60)
    assert listing.returncode == 0 and run_id in listing.stdout and "held" in listing.stdout and report in listing.stdout, listing


def test_a_breaching_run_exits_1(chaos: Chaos, tmp_path) -> None:
    before = run_ids(chaos, "chaos_medium_risk")
    process = chaosctl(user_environment(chaos, tmp_path, **as_admin(chaos)), "run", "booking-api-abort", "--wait", "--timeout", "10m")
    try:
        run_id = new_run(chaos, "chaos_medium_risk", before)
        # As a person in front of the pipeline's log: approve once chaosctl says it waits for it.
        shown = []
        for line in process.stdout:
            shown.append(line)
            if "waiting for approval by sre in the Airflow UI: " in line:
                break
        assert "/tasks/approve_sre/required_actions" in shown[-1], "".join(shown)
        chaos.approve(chaos.sre, "chaos_medium_risk", run_id, "approve_sre")
        code, out, err = finish(process)
        out = "".join(shown) + out
    finally:
        process.kill()
    assert code == 1, out + err
    assert "verdict broken: safety breach" in out, out
    result = chaos.result("chaos_medium_risk", run_id)
    assert result["verdict"] == "broken" and result["fault"] is not None
    assert chaos.objects() == []  # the breach removed the fault


def test_no_approval_before_the_timeout_exits_2_and_injects_nothing(chaos: Chaos, tmp_path) -> None:
    before = run_ids(chaos, "chaos_medium_risk")
    with FaultWatch(chaos) as watch:
        started = time.monotonic()
        code, out, err = finish(chaosctl(user_environment(chaos, tmp_path, **as_admin(chaos)), "run", "email-service-quick-abort",
                                         "--wait", "--timeout", "40s"))
        elapsed = time.monotonic() - started
        run_id = new_run(chaos, "chaos_medium_risk", before)
        states = chaos.admin.task_states("chaos_medium_risk", run_id)
        try:
            assert code == 2, out + err
            assert 40 <= elapsed < 60, elapsed
            assert states.get("inject") in (None, "scheduled"), states
            if states.get("approve_sre") == "awaiting_input":  # the usual case; a slow plan ends before it is asked
                assert "waits for approval by sre: nothing injected yet" in err, err
                assert "(exit 2: awaiting_approval)" in err
            else:
                assert "nothing injected yet" in err and "(exit 2: timeout_before_injection)" in err, err
        finally:
            # The run stays open until its own approval deadline: close it as an approver would.
            if chaos.admin.task_states("chaos_medium_risk", run_id).get("approve_sre") != "awaiting_input":
                chaos.admin.wait_for_task_state("chaos_medium_risk", run_id, "approve_sre", ["awaiting_input"], timeout=120)
            chaos.approve(chaos.sre, "chaos_medium_risk", run_id, "approve_sre", option="Reject")
            chaos.admin.wait_for_run("chaos_medium_risk", run_id, timeout=180)
    assert watch.most == 0 and chaos.objects() == []
    assert chaos.result("chaos_medium_risk", run_id)["verdict"] == "aborted"


def test_airflow_on_a_closed_port_exits_3_within_10_s(chaos: Chaos, tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = user_environment(chaos, tmp_path, **as_admin(chaos)) | {"AIRFLOW_API_URL": f"http://127.0.0.1:{closed}"}
    before = run_ids(chaos, "chaos_low_risk")
    started = time.monotonic()
    code, out, err = finish(chaosctl(env, "run", "booking-api-quick-kill", "--wait"), timeout=30)
    assert code == 3, out + err
    assert time.monotonic() - started < 10
    assert "Airflow unreachable" in err and chaos.stack.passwords["admin"] not in out + err
    assert run_ids(chaos, "chaos_low_risk") == before and chaos.objects() == []
