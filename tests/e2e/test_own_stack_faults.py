"""The reliability campaign's CI subset (issue #14): one part of our own stack fails at the worst
step of a real low-tier run on the session's Airflow, with the dead-man watchdog running beside it
as deployed; the fault is gone in time, nothing is left behind, nothing is lost.

Each case is one row of benchmarks/campaign.py (tests/e2e/own_stack.py: `one_row` breaks the
stack when the run reaches the step, follows the cluster every 100 ms and puts everything back);
the campaign runs the whole matrix.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from chaos_engineering import watchdog
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from sandbox.airflow_stack import VERIFIER
from tests.e2e.conftest import chaos_page_url, get_as, report_links
from tests.e2e.own_stack import DAG_ID, STOP_FAULT_BOUND_S, WATCHDOG_BOUND_S, Row, Stack, invariants, one_row, p1_s
from tests.e2e.test_tier_runs import Chaos, clean_cluster, policy_of, reports_in  # noqa: F401 (clean_cluster: autouse)
from tests.integration.receivers import S3Server

pytestmark = pytest.mark.e2e

EXPERIMENT = "cache-slow-quick"  # a 5 ms delay on one cache pod for 20 s: low tier, no approval
OUTAGE_S = 30.0  # how long Prometheus or S3 stays down


@pytest.fixture(scope="module")
def watchdog_beside(sandbox) -> Iterator[None]:
    """`chaosctl watchdog` as deployed (default grace and interval), pushing to the sandbox's Pushgateway."""
    conn = "AIRFLOW_CONN_PUSHGATEWAY_WATCHDOG"
    os.environ[conn] = json.dumps({"conn_type": "http", "host": sandbox.pushgateway_url})
    stop = threading.Event()
    sweeper = threading.Thread(target=watchdog.run, args=(ChaosMeshHook(),), daemon=True,
                               kwargs={"stop": stop, "pushgateway_conn_id": "pushgateway_watchdog"})
    sweeper.start()
    try:
        yield
    finally:
        stop.set()
        sweeper.join(30)
        del os.environ[conn]


def row_of(chaos: Chaos, sandbox, s3: S3Server, fault: str, step: str) -> Row:
    """One campaign row; fails on any invariant broken, printing the row."""
    row = one_row(Stack(sandbox, chaos, OUTAGE_S, s3), fault, step, EXPERIMENT, max(p1_s(chaos), WATCHDOG_BOUND_S))
    print(f"\n{fault} at {step} ({row.hit}): run {row.state}, safe after {row.safe_s} s, failed {row.failed}")
    assert row.hit != "-", f"{fault}: the run never reached {step}: {row.note}"
    assert row.safe_s is not None, f"{fault}: a fault of ours is still on the cluster"
    broken = {name: count for name, count in invariants([row]).items() if count}
    assert not broken, f"{fault} at {step}: {broken}; {row}"
    return row


def test_prometheus_killed_mid_monitor_trips_the_fail_safe_within_p1(chaos: Chaos, sandbox, s3_reports: S3Server, watchdog_beside) -> None:
    row = row_of(chaos, sandbox, s3_reports, "prometheus-stop", "during-monitor")
    assert row.safe_s <= p1_s(chaos), f"the fault stood {row.safe_s:.1f} s after Prometheus went down (P1 {p1_s(chaos):.1f} s)"
    assert row.state == "failed" and "monitor" in row.failed, row.failed
    reads = policy_of(chaos.include).safety.max_failed_reads
    assert f"could not be read {reads} times in a row" in row.failed["monitor"], row.failed["monitor"]  # the fail-safe


def test_triggerer_killed_mid_monitor_the_monitor_resumes_and_the_run_holds(chaos: Chaos, sandbox, s3_reports: S3Server, watchdog_beside) -> None:
    row = row_of(chaos, sandbox, s3_reports, "triggerer-kill", "during-monitor")
    assert row.state == "success", row.failed


def test_kubernetes_delete_failing_then_recovering_the_removal_goes_on_until_the_fault_is_gone(chaos: Chaos, sandbox, s3_reports: S3Server, watchdog_beside) -> None:
    row = row_of(chaos, sandbox, s3_reports, "kube-delete-500", "during-monitor")
    assert row.state == "success", row.failed


def test_an_emergency_stop_mid_monitor_leaves_no_fault_applied_after_5_s(chaos: Chaos, sandbox, s3_reports: S3Server, watchdog_beside) -> None:
    row = row_of(chaos, sandbox, s3_reports, "emergency-stop", "during-monitor")  # invariants: stop late 0
    assert row.run_objects == 1 and row.safe_s is not None and row.safe_s <= STOP_FAULT_BOUND_S, row
    assert row.state == "failed" and "monitor" in row.failed, row.failed


def test_s3_down_at_report_time_loses_nothing(chaos: Chaos, sandbox, s3_reports: S3Server, watchdog_beside) -> None:
    chaos.policy(**reports_in(s3_reports))
    row = row_of(chaos, sandbox, s3_reports, "s3-down", "during-report")
    assert row.state == "success", row.failed
    assert row.result_json and row.report_html  # in S3, written once it came back (the storage retries)
    # ...and served from there by the Chaos page to a read-only user, by the report task's link.
    [run] = chaos.admin.recent_runs(DAG_ID, 1)
    assert (run["conf"] or {}).get("experiment") == EXPERIMENT, f"the newest {DAG_ID} run is not the row's: {run}"
    run_id = run["dag_run_id"]
    html = stored_object(s3_reports, run_id, "report.html")
    result = json.loads(stored_object(s3_reports, run_id, "result.json"))
    link = report_links(chaos, DAG_ID, run_id)["Report (HTML)"]
    assert link == chaos_page_url(chaos, f"/reports/{DAG_ID}/{quote(run_id, safe='')}/report.html"), link
    page = get_as(chaos, VERIFIER, link)
    assert (page.status_code, page.headers.get("content-type")) == (200, "text/html; charset=utf-8"), page.text[:500]
    # The report names the experiment by its title (report/html.py title_of), and the run.
    assert page.content == html and result["experiment"]["title"] in page.text and run_id in page.text
    status = get_as(chaos, VERIFIER, chaos_page_url(chaos, "/api/status"))
    assert status.status_code == 200, status.text[:500]
    runs = status.json()["recent_runs"]
    assert isinstance(runs, list), runs  # else {"error": ...}: the page could not list the runs
    [shown] = [r for r in runs if r["run_id"] == run_id]
    assert (shown["verdict"], shown["verdict_reason"], shown["report_html"]) == (result["verdict"], result["verdict_reason"], link), shown


def test_a_create_stored_whose_reply_is_lost_ends_with_one_fault_watched_by_the_monitor(chaos: Chaos, sandbox, s3_reports: S3Server, watchdog_beside) -> None:
    row = row_of(chaos, sandbox, s3_reports, "kube-create-lose-reply", "before-inject")
    # One fault, adopted by the same inject try (no retry, no second create), watched by the
    # monitor to its end and removed by the run: the run holds.
    assert (row.run_objects, row.state, row.failed) == (1, "success", {}), row
    run_id = newest_run_of_the_row(chaos)
    [inject] = [ti for ti in chaos.admin.task_instances(DAG_ID, run_id) if ti["task_id"] == "inject"]
    assert inject["try_number"] == 1, inject
    log = chaos.admin.task_log(DAG_ID, run_id, "inject", 1)
    assert "no complete answer from the Kubernetes API" in log and "but it landed: adopting" in log, log[-2000:]


def newest_run_of_the_row(chaos: Chaos) -> str:
    [run] = chaos.admin.recent_runs(DAG_ID, 1)
    assert (run["conf"] or {}).get("experiment") == EXPERIMENT, f"the newest {DAG_ID} run is not the row's: {run}"
    return run["dag_run_id"]


def stored_object(s3: S3Server, run_id: str, name: str) -> bytes:
    """The bytes of one file of the run's folder in the reports bucket (read straight from S3)."""
    [key] = [k for k in s3.keys() if f"/{DAG_ID}/" in f"/{k}" and k.endswith(f"/{run_id}/{name}")]
    return s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read()
