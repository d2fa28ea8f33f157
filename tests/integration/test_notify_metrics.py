"""Chaos metrics pushed at each state change reach the sandbox's real Prometheus through its real
Pushgateway, with their labels; totals survive from one run to the next."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from prometheus_client import delete_from_gateway

from chaos_engineering.notify import Channels, announce
from chaos_engineering.notify import metrics as chaos_metrics
from chaos_engineering.notify.pushgateway import PushgatewayHook
from tests.sandbox.sandbox_support import PrometheusAPI, wait_for

METRICS_ONLY = Channels(slack_conn_id=None, smtp_conn_id=None)
SCRAPED_WITHIN_S = 30  # 1 s scrape interval; generous for a loaded 2-core machine


@pytest.fixture
def pushgateway(sandbox, monkeypatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_PUSHGATEWAY_DEFAULT", json.dumps({"conn_type": "http", "host": sandbox.pushgateway_url}))
    return sandbox.pushgateway_url


@pytest.fixture
def api(sandbox) -> PrometheusAPI:
    return PrometheusAPI(sandbox.prometheus_url)


PUSHED: list[dict[str, str]] = []  # the groups this module's tests created


@pytest.fixture(scope="module", autouse=True)
def forget_pushed_groups(sandbox) -> Iterator[None]:
    """Some tests leave an experiment recorded as injected, which every later pre-flight on this
    sandbox would count as a fault that may still stand: delete the groups this module pushed."""
    yield
    for key in PUSHED:
        delete_from_gateway(sandbox.pushgateway_url, job=chaos_metrics.JOB, grouping_key=key)


def new_plan(tier: str = "medium", target: str = "booking-api") -> dict:
    """An experiment no earlier test (nor an earlier session on this Pushgateway) has pushed."""
    plan = {"experiment": f"notify-test-{uuid.uuid4().hex[:8]}", "tier": tier, "target_service": target, "kind": "PodChaos", "duration_s": 60}
    PUSHED.extend({"tier": t, "experiment": plan["experiment"]} for t in ("low", "medium", "high"))
    return plan


def selector(plan: dict) -> str:
    return f'tier="{plan["tier"]}",experiment="{plan["experiment"]}",target_service="{plan["target_service"]}",job="chaos_engineering"'


def settles(api: PrometheusAPI, promql: str, expected: float) -> None:
    """Poll Prometheus until `promql` reads `expected` (the Pushgateway is scraped every second)."""
    seen: list = []

    def reads() -> bool:
        value = api.value(promql)
        seen[:] = [value]
        return value is not None and abs(value - expected) < 1e-9

    wait_for(reads, SCRAPED_WITHIN_S, f"{promql} = {expected} in Prometheus (last read: {seen})")


def breach(threshold: str = "p95_latency", at: float | None = None) -> dict:
    at = time.time() if at is None else at
    return {"threshold": threshold, "rule": "at_most", "value": 4180.0, "baseline": 212.0, "limit": 3000.0, "bound": 3000.0, "at": at, "message": "p95 above"}


RECOVERY = {
    "immediate": {"status": "recovered", "deadline_s": 60.0, "time_to_recover_s": 12.0},
    "short_term": {"status": "recovered", "deadline_s": 300.0, "time_to_recover_s": 48.0},
    "business": {"status": "recovered", "deadline_s": 900.0, "time_to_recover_s": 95.5},
}
REPORT = {
    "impact_score": {"value": 63.5, "basis": "", "components": {}},
    "system_health_score": {"value": 88.0, "basis": "", "components": {}},
    "breaches": [{"threshold": "p95_latency", "time_to_detect_s": 6.5}],
}


def one_run(plan: dict, *, violation: str | None = "p95_latency") -> dict:
    """The state changes of one run, in order; returns what each push reported."""
    injected = time.time()
    fault = {"kind": "PodChaos", "name": "x", "namespace": "chaos-engineering", "injected_at": injected}
    outcomes = {"approval_requested": announce("approval_requested", plan=plan, channels=METRICS_ONLY)}
    outcomes["started"] = announce("started", plan=plan, extra={"fault": fault}, channels=METRICS_ONLY)
    if violation:
        at = injected + 30
        outcomes["breach_and_kill"] = announce("breach_and_kill", plan=plan, breach=breach(violation, at),
                                               extra={"fault": fault, "removal_requested_at": at + 0.75}, channels=METRICS_ONLY)
    outcomes["recovery_verdict"] = announce("recovery_verdict", plan=plan, extra={"recovery": RECOVERY}, channels=METRICS_ONLY)
    result = {"experiment": plan, "fault": fault, "removal": {"removed_at": injected + 31}, "recovery": RECOVERY,
              "verdict": "broken" if violation else "held", "verdict_reason": ""}
    outcomes["finished"] = announce("finished", result=result, extra={"report": REPORT}, channels=METRICS_ONLY)
    return outcomes


def test_each_state_change_is_queryable_with_its_labels(pushgateway, api):
    plan = new_plan()
    labels = selector(plan)

    assert announce("approval_requested", plan=plan, channels=METRICS_ONLY)["metrics"] == "sent"
    settles(api, f"chaos_approvals_pending{{{labels}}}", 1)
    settles(api, f'chaos_experiment_phase{{{labels},phase="awaiting_approval"}}', 1)

    injected = time.time()
    fault = {"kind": "PodChaos", "name": "x", "namespace": "chaos-engineering", "injected_at": injected}
    assert announce("started", plan=plan, extra={"fault": fault}, channels=METRICS_ONLY)["metrics"] == "sent"
    settles(api, f"chaos_experiment_active{{{labels}}}", 1)
    settles(api, f"chaos_approvals_pending{{{labels}}}", 0)
    settles(api, f"chaos_experiment_fault_start_timestamp_seconds{{{labels}}}", injected)

    at = injected + 30
    announce("breach_and_kill", plan=plan, breach=breach(at=at), extra={"fault": fault, "removal_requested_at": at + 0.75}, channels=METRICS_ONLY)
    settles(api, f"chaos_experiment_active{{{labels}}}", 0)
    settles(api, f'chaos_safety_violation_total{{{labels},threshold="p95_latency"}}', 1)
    settles(api, f"chaos_experiment_time_to_remove_seconds{{{labels}}}", 0.75)
    settles(api, f"chaos_experiment_last_violation_timestamp_seconds{{{labels}}}", at)

    announce("recovery_verdict", plan=plan, extra={"recovery": RECOVERY | {"business": None}}, channels=METRICS_ONLY)
    settles(api, f"chaos_experiment_recovery_success_rate{{{labels}}}", 2 / 3)
    settles(api, f'chaos_experiment_recovery_stage_seconds{{{labels},stage="short_term"}}', 48)
    # Not every stage recovered: no time to recover (NaN), never a partial one.
    wait_for(lambda: api.query(f"chaos_experiment_time_to_recover_seconds{{{labels}}}") and
             api.query(f"chaos_experiment_time_to_recover_seconds{{{labels}}}")[0]["value"][1] == "NaN", SCRAPED_WITHIN_S, "time to recover NaN")

    result = {"experiment": plan, "fault": fault, "removal": {"removed_at": at + 1}, "recovery": RECOVERY, "verdict": "broken", "verdict_reason": ""}
    announce("finished", result=result, extra={"report": REPORT}, channels=METRICS_ONLY)
    settles(api, f"chaos_experiment_customer_impact_score{{{labels}}}", 63.5)
    settles(api, f"chaos_experiment_system_health_score{{{labels}}}", 88)
    settles(api, f"chaos_experiment_time_to_detect_seconds{{{labels}}}", 6.5)
    settles(api, f"chaos_experiment_time_to_recover_seconds{{{labels}}}", 95.5)
    settles(api, f"chaos_experiment_recovery_success_rate{{{labels}}}", 1)
    settles(api, f'chaos_experiment_last_verdict{{{labels},verdict="broken"}}', 1)
    settles(api, f'chaos_experiment_last_verdict{{{labels},verdict="held"}}', 0)
    settles(api, f'chaos_experiment_runs_total{{{labels},verdict="broken"}}', 1)
    settles(api, f'chaos_experiment_phase{{{labels},phase="finished"}}', 1)
    settles(api, f'chaos_experiment_phase{{{labels},phase="awaiting_approval"}}', 0)

    # Every series of the experiment carries exactly the documented labels.
    series = api.query(f'{{experiment="{plan["experiment"]}",__name__=~"chaos_.*"}}')
    assert len(series) >= 20
    for row in series:
        own = set(row["metric"]) - {"__name__", "tier", "experiment", "target_service", "job", "instance"}
        assert own <= {"phase", "verdict", "stage", "threshold"}, row["metric"]
        assert row["metric"]["target_service"] == "booking-api" and row["metric"]["tier"] == "medium"


def test_safety_violation_total_keeps_its_total_across_runs(pushgateway, api):
    plan = new_plan(tier="high", target="booking-confirmation")
    labels = selector(plan)

    first = one_run(plan)
    assert all(o["metrics"] == "sent" for o in first.values()), first
    settles(api, f'chaos_safety_violation_total{{{labels},threshold="p95_latency"}}', 1)

    second = one_run(plan, violation="booking_rate")
    assert all(o["metrics"] == "sent" for o in second.values()), second
    one_run(plan)
    settles(api, f'chaos_safety_violation_total{{{labels},threshold="p95_latency"}}', 2)
    settles(api, f'chaos_safety_violation_total{{{labels},threshold="booking_rate"}}', 1)
    settles(api, f"sum(chaos_safety_violation_total{{{labels}}})", 3)
    settles(api, f'chaos_experiment_runs_total{{{labels},verdict="broken"}}', 3)

    one_run(plan, violation=None)
    settles(api, f'chaos_experiment_runs_total{{{labels},verdict="held"}}', 1)
    settles(api, f'chaos_experiment_runs_total{{{labels},verdict="broken"}}', 3)
    settles(api, f"sum(chaos_safety_violation_total{{{labels}}})", 3)
    # The Pushgateway stores it as a counter, so rate() and increase() apply.
    [family] = [g["chaos_safety_violation_total"] for g in requests.get(f"{pushgateway}/api/v1/metrics", timeout=5).json()["data"]
                if g["labels"].get("experiment") == plan["experiment"]]
    assert family["type"] == "COUNTER"


def test_experiments_and_tiers_do_not_overwrite_each_other(pushgateway, api):
    first, second = new_plan(tier="low"), new_plan(tier="low")
    second_in_medium = dict(second, tier="medium")
    announce("started", plan=first, extra={"fault": {"injected_at": time.time()}}, channels=METRICS_ONLY)
    announce("started", plan=second, extra={"fault": {"injected_at": time.time()}}, channels=METRICS_ONLY)
    announce("approval_requested", plan=second_in_medium, channels=METRICS_ONLY)
    announce("finished", result={"experiment": second, "verdict": "aborted", "fault": None, "recovery": {}}, channels=METRICS_ONLY)

    settles(api, f"chaos_experiment_active{{{selector(first)}}}", 1)
    settles(api, f"chaos_experiment_active{{{selector(second)}}}", 0)
    settles(api, f"chaos_approvals_pending{{{selector(second_in_medium)}}}", 1)


def test_emergency_stop_ends_every_active_experiment(pushgateway, api):
    from chaos_engineering.render import LABEL_EXPERIMENT, LABEL_TARGET, LABEL_TIER

    plans = [new_plan(tier="low"), new_plan(tier="medium", target="cache")]
    for plan in plans:
        announce("started", plan=plan, extra={"fault": {"injected_at": time.time()}}, channels=METRICS_ONLY)
    stops = api.value("sum(chaos_emergency_stops_total)") or 0
    removed = [{"kind": "PodChaos", "metadata": {"name": p["experiment"], "namespace": "chaos-engineering",
                "labels": {LABEL_TIER: p["tier"], LABEL_EXPERIMENT: p["experiment"], LABEL_TARGET: p["target_service"]}}} for p in plans]

    assert announce("emergency_stop", extra={"removed": removed, "requested_by": "alice"}, channels=METRICS_ONLY)["metrics"] == "sent"
    for plan in plans:
        settles(api, f"chaos_experiment_active{{{selector(plan)}}}", 0)
        settles(api, f'chaos_experiment_phase{{{selector(plan)},phase="stopped"}}', 1)
    settles(api, "sum(chaos_emergency_stops_total)", stops + 1)


def test_an_unreadable_total_is_not_guessed(pushgateway, api, monkeypatch):
    """When the running total cannot be read, the increment is dropped (logged) and the other
    metrics of the state change are still pushed."""
    plan = new_plan()
    labels = selector(plan)
    announce("breach_and_kill", plan=plan, breach=breach(), extra={"removal_requested_at": time.time()}, channels=METRICS_ONLY)
    settles(api, f'chaos_safety_violation_total{{{labels},threshold="p95_latency"}}', 1)

    def unreadable(*args, **kwargs):
        raise TimeoutError("timed out")

    monkeypatch.setattr(PushgatewayHook, "metric_in_group", unreadable)
    at = time.time()
    outcome = announce("breach_and_kill", plan=plan, breach=breach(at=at), extra={"removal_requested_at": at}, channels=METRICS_ONLY)

    assert outcome["metrics"] == "failed"
    settles(api, f"chaos_experiment_last_violation_timestamp_seconds{{{labels}}}", at)
    settles(api, f'chaos_safety_violation_total{{{labels},threshold="p95_latency"}}', 1)


def test_a_failed_removal_leaves_the_experiment_active(pushgateway, api):
    plan = new_plan()
    announce("started", plan=plan, extra={"fault": {"injected_at": time.time()}}, channels=METRICS_ONLY)
    announce("breach_and_kill", plan=plan, breach=breach(), extra={"removal_error": "(503)"}, channels=METRICS_ONLY)
    settles(api, f'chaos_safety_violation_total{{{selector(plan)},threshold="p95_latency"}}', 1)
    assert api.value(f"chaos_experiment_active{{{selector(plan)}}}") == 1


def test_metric_catalogue_names_and_types():
    """The names the rules and the dashboard use: a rename here must be a rename there."""
    exposed = {name + ("_total" if spec.kind == "counter" else ""): spec.kind for name, spec in chaos_metrics.METRICS.items()}
    for name in ("chaos_experiment_active", "chaos_experiment_customer_impact_score", "chaos_experiment_system_health_score",
                 "chaos_safety_violation_total", "chaos_experiment_recovery_success_rate", "chaos_experiment_time_to_detect_seconds",
                 "chaos_experiment_time_to_recover_seconds", "chaos_approvals_pending", "chaos_experiment_last_run_timestamp_seconds"):
        assert name in exposed, name
    assert exposed["chaos_safety_violation_total"] == "counter"
