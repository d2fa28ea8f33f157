"""A deploy starts the experiments that declare it, end to end: `chaosctl deployed` in a subprocess
posts the asset event through the REST API, chaos_on_deploy triggers the low tier, and that run
goes through its whole chain and records the deploy; the cluster is watched throughout."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.e2e import test_tier_runs
from tests.e2e.test_chaosctl_run import CHAOSCTL, as_admin, user_environment
from tests.e2e.test_tier_runs import Chaos, FaultWatch

pytestmark = pytest.mark.e2e

# Autouse here too: each test starts and must end with nothing of ours in the cluster, the lock free.
clean_cluster = test_tier_runs.clean_cluster

#: The one experiment of the e2e include whose `on_deploy` names booking-api (the shipped catalogue's).
DECLARING = "booking-api-pod-kill"
VERSION = "2026.12.4-e2e"
#: A deploy's run keeps to its window (no manual override): open it for the whole day.
OPEN_WINDOW = {"business_hours.weekly": {}, "business_hours.freeze_dates": []}


def runs_of(chaos: Chaos, dag_id: str) -> dict[str, dict]:
    return {r["dag_run_id"]: r for r in chaos.admin.recent_runs(dag_id, 20)}


def wait_for_new_run(chaos: Chaos, dag_id: str, before: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while not (new := [r for i, r in runs_of(chaos, dag_id).items() if i not in before]):
        assert time.monotonic() < deadline, f"no run of {dag_id} within {timeout} s"
        time.sleep(1)
    assert len(new) == 1, new
    return new[0]


def test_a_booking_api_deploy_runs_the_experiment_declaring_it_and_records_the_deploy(chaos: Chaos, tmp_path) -> None:
    chaos.policy(**OPEN_WINDOW)
    dag = chaos.admin.wait_for_dag("chaos_on_deploy", timeout=180, unpause=False)
    assert dag["is_paused"] is False  # arrives unpaused by itself
    before_deploy, before_low = set(runs_of(chaos, "chaos_on_deploy")), set(runs_of(chaos, "chaos_low_risk"))
    env = user_environment(chaos, tmp_path, **as_admin(chaos))
    with FaultWatch(chaos) as watch:
        posted = subprocess.run([CHAOSCTL, "deployed", "booking-api", "--version", VERSION], capture_output=True, text=True, env=env, timeout=120)
        assert posted.returncode == 0, posted.stdout + posted.stderr
        assert f"posted the deploy of booking-api {VERSION}: asset event " in posted.stdout
        assert f"in the local catalogue: {DECLARING}" in posted.stdout, posted.stdout

        on_deploy = wait_for_new_run(chaos, "chaos_on_deploy", before_deploy, timeout=120)
        assert on_deploy["run_type"] == "asset_triggered"
        chaos.admin.wait_for_run("chaos_on_deploy", on_deploy["dag_run_id"], timeout=180, expect="success")
        low = wait_for_new_run(chaos, "chaos_low_risk", before_low, timeout=60)
        assert low["run_type"] == "operator_triggered"
        assert low["conf"]["experiment"] == DECLARING and low["conf"]["dry_run"] is False
        chaos.admin.wait_for_run("chaos_low_risk", low["dag_run_id"], timeout=600, expect="success")
    # Exactly one tier run, of exactly the declaring experiment, and exactly one fault, now gone.
    assert set(runs_of(chaos, "chaos_low_risk")) - before_low == {low["dag_run_id"]}
    assert watch.most == 1 and len(watch.names) == 1 and chaos.objects() == []
    result = chaos.result("chaos_low_risk", low["dag_run_id"])
    assert result["verdict"] == "held", result["verdict_reason"]
    assert result["run_type"] == "operator_triggered"
    assert result["deploy"]["service"] == "booking-api" and result["deploy"]["version"] == VERSION
    assert result["deploy"]["deploy_run"] == f"chaos_on_deploy/{on_deploy['dag_run_id']}"
    assert result["experiment"]["experiment"] == DECLARING and result["experiment"]["deploy"] == result["deploy"]
    # The full chain ran: approved by policy, judged by the window guard as a scheduled run (never the manual override).
    assert result["approvals"][0]["responded_by_user"]["id"] == "policy"
    assert result["window"]["allowed"] is True and result["window"]["manual"] is False and result["window"]["override_used"] is False
    assert result["fault"]["name"] in watch.names
    report = chaos.report("chaos_low_risk", low["dag_run_id"])
    assert report["deploy"]["service"] == "booking-api" and report["deploy"]["version"] == VERSION
    html = (chaos.folder("chaos_low_risk", low["dag_run_id"]) / "report.html").read_text()
    assert f"Triggered by the deploy of booking-api {VERSION}." in html
