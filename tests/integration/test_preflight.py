"""Pre-flight and the kill switch against the sandbox's real Prometheus: a platform already failing,
a metric that stops reporting, a booking rate of zero (refused before the fault, a breach at the
monitor's first check), another fault of ours on the cluster or recorded in the window."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.hooks.prometheus import PrometheusHook
from chaos_engineering.notify import Channels, announce
from chaos_engineering.notify import metrics as chaos_metrics
from chaos_engineering.operators import preflight
from chaos_engineering.operators.preflight import PreflightCheckOperator, our_faults_on_cluster, recorded_faults, steady_state
from chaos_engineering.render import render_chaos_object
from chaos_engineering.triggers import FaultMonitorTrigger
from sandbox.steady import wait_steady
from tests.integration.chaos_support import create_fault
from tests.sandbox.sandbox_support import wait_for

CATALOGUE = load_catalogue()
POLICY = CATALOGUE.policy
THRESHOLDS = {n: t.model_dump(mode="json") for n, t in POLICY.safety.thresholds.items()}
NAMESPACE = "chaos-engineering"
WINDOW = 20.0  # step 1 s: 21 samples
NOT_HEALTHY = "the platform is not healthy enough for a fault"


@pytest.fixture(autouse=True)
def steady(connections) -> None:
    wait_steady(POLICY, window_s=WINDOW)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def read(threshold: str) -> float | None:
    return PrometheusHook().query(THRESHOLDS[threshold]["query"])


@pytest.fixture
def http_abort() -> Iterator[Any]:
    """Makes a service abort its requests with an HTTPChaos that is not ours (the platform failing
    for another reason): pre-flight's own check of our faults does not see it."""
    created: list[dict] = []

    def make(service: str, namespace: str, path: str, mode: str) -> dict:
        obj = ChaosMeshHook().create({
            "apiVersion": "chaos-mesh.org/v1alpha1",
            "kind": "HTTPChaos",
            "metadata": {"name": f"preflight-test-{uuid.uuid4().hex[:8]}", "namespace": NAMESPACE},
            "spec": {"mode": mode, "selector": {"namespaces": [namespace], "labelSelectors": {"app": service}},
                     "target": "Request", "port": 8080, "path": path, "abort": True, "duration": "5m"},
        })
        created.append(obj)
        return obj

    yield make
    for obj in created:
        ChaosMeshHook().delete(ChaosKind.HTTP_CHAOS, obj["metadata"]["name"], NAMESPACE)


def test_a_steady_sandbox_passes_with_a_usable_baseline():
    baseline, problems = steady_state(PrometheusHook(), THRESHOLDS, WINDOW, now(), steady_limits=POLICY.preflight.steady_limits)
    assert problems == []
    assert set(baseline) == set(THRESHOLDS) and baseline["booking_rate"] >= 1


def test_a_platform_already_at_a_high_error_rate_fails_preflight(http_abort, monkeypatch):
    http_abort("web-frontend", "booking", "/", mode="one")  # a third of page views answer 503
    wait_for(lambda: (read("error_rate") or 0) > 5, 60, "the error rate to rise above 5 %")
    # The policy as shipped (its 2 min window), but no long wait for another test's recorded fault.
    fast = POLICY.model_copy(update={"safety": POLICY.safety.model_copy(update={"lock_wait": 1.0})})
    monkeypatch.setattr(preflight, "policy_or_fail", lambda: fast)
    experiment = CATALOGUE.get("web-frontend-latency")
    plan = {"tier": experiment.tier.value, "kind": experiment.kind.value, "thresholds": THRESHOLDS,
            "manifest": render_chaos_object(experiment, POLICY, dag_id="chaos_low_risk", run_id="preflight-test")}
    with pytest.raises(AirflowFailException) as failed:
        PreflightCheckOperator(task_id="preflight", plan=plan).execute({})
    lines = str(failed.value).split("\n  ")
    assert lines[0] == "pre-flight check failed, nothing injected:"
    expected = re.compile(
        r"error_rate = [\d.]+ % is above its steady limit 0\.5 % \(preflight\.steady_limits\.error_rate\.at_most\) "
        rf"in \d+ of \d+ samples: {NOT_HEALTHY}"
    )
    assert any(expected.fullmatch(line) for line in lines), lines


def test_a_metric_that_stops_in_the_second_half_fails(sandbox):
    group = f"{sandbox.pushgateway_url}/metrics/job/preflight_test/run/{uuid.uuid4().hex[:8]}"
    query = f'max(preflight_test_up{{run="{group.rsplit("/", 1)[1]}"}})'
    requests.put(group, data="preflight_test_up 1\n", timeout=5).raise_for_status()
    wait_for(lambda: PrometheusHook().query(query) is not None, 30, f"{query} in Prometheus")
    time.sleep(WINDOW + 2)  # a whole window of samples
    requests.delete(group, timeout=5).raise_for_status()
    wait_for(lambda: PrometheusHook().query(query) is None, 30, f"{query} to stop")
    time.sleep(4)  # it stopped a few seconds before the window's end: in its second half
    thresholds = {"test_metric": {"query": query, "rule": "at_least", "limit": 1}}
    _, problems = steady_state(PrometheusHook(), thresholds, WINDOW, now(), steady_limits={})
    gaps = [m for line in problems if (m := re.fullmatch(
        r"test_metric: no data in the last (\d+) s of the window: it stopped reporting "
        r"\(pre-flight needs a sample at most 2 s before the window's end\)", line))]
    assert len(gaps) == 1, problems
    assert 2 < int(gaps[0].group(1)) < WINDOW / 2


def test_a_zero_booking_rate_fails_closed_in_preflight(http_abort):
    http_abort("booking-api", "booking", "/bookings", mode="all")  # no booking is confirmed any more
    wait_for(lambda: read("booking_rate") == 0, 90, "the booking rate to fall to 0")
    time.sleep(WINDOW + 1)
    baseline, problems = steady_state(PrometheusHook(), THRESHOLDS, WINDOW, now(), steady_limits=POLICY.preflight.steady_limits)
    assert "booking_rate" not in baseline
    assert (
        "booking_rate = 0 bookings/s is below its steady limit 1 bookings/s (preflight.steady_limits.booking_rate.at_least) "
        f"in 21 of 21 samples: {NOT_HEALTHY}"
    ) in problems
    assert (
        "booking_rate baseline is 0 bookings/s: a relative rule (max_drop_percent 10) cannot be judged against it (no reading "
        "can drop below its bound of 0 bookings/s); pre-flight refuses a fault the kill switch could not stop: check that the "
        "platform is serving and that the query matches its metrics"
    ) in problems


UNUSABLE_BASELINES = [
    ("zero", 0.0, "booking_rate baseline is 0 bookings/s: a relative rule (max_drop_percent 10) cannot be judged against it "
              "(no reading can drop below its bound of 0 bookings/s); removing the fault (fail-safe)"),
    ("missing", None, "booking_rate has no baseline: a relative rule (max_drop_percent 10) cannot be judged without one; "
                      "removing the fault (fail-safe)"),
]


@pytest.mark.parametrize(("booking_baseline", "message"), [c[1:] for c in UNUSABLE_BASELINES], ids=[c[0] for c in UNUSABLE_BASELINES])
def test_the_monitor_removes_the_fault_at_its_first_check(booking_baseline, message):
    baseline = {name: read(name) for name in THRESHOLDS} | {"booking_rate": booking_baseline}
    if booking_baseline is None:
        del baseline["booking_rate"]  # an edited XCom
    obj = ChaosMeshHook().create({
        "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos",
        "metadata": {"name": f"preflight-test-{uuid.uuid4().hex[:8]}", "namespace": NAMESPACE},
        "spec": {"action": "delay", "mode": "one", "duration": "2m", "delay": {"latency": "1ms"},
                 "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "cache"}}},
    })
    name = obj["metadata"]["name"]
    trigger = FaultMonitorTrigger(
        prometheus_conn_id="prometheus_default", kubernetes_conn_id="kubernetes_default",
        fault={"kind": "NetworkChaos", "name": name, "namespace": NAMESPACE}, thresholds=THRESHOLDS, baseline=baseline,
        interval_s=1, max_failed_reads=2,
    )

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    event = asyncio.run(asyncio.wait_for(first_event(), 60))
    assert event["status"] == "breach" and event["checks"] == 1, event
    assert (event["breach"]["threshold"], event["breach"]["rule"], event["breach"]["message"]) == ("booking_rate", "fail_safe", message)
    assert event["removal_requested_at"] is not None and event["removal_error"] == ""
    wait_for(lambda: ChaosMeshHook().get(ChaosKind.NETWORK_CHAOS, name, NAMESPACE) is None, 10, f"{name} to be gone")


def test_another_fault_of_ours_on_the_cluster_is_refused():
    obj = create_fault("preflight-test")
    name = obj["metadata"]["name"]
    try:
        assert our_faults_on_cluster(ChaosMeshHook()) == [
            f"another fault of ours is still on the cluster: NetworkChaos {NAMESPACE}/{name} (run chaos_low_risk/manual__{name}); "
            "wait until it is gone (`chaosctl status`) or remove it (`chaosctl stop`)"
        ]
    finally:
        ChaosMeshHook().delete(ChaosKind.NETWORK_CHAOS, name, NAMESPACE)


def test_a_fault_recorded_in_the_window_keeps_it_closed(sandbox, monkeypatch):
    """Last in the module: it leaves a recorded removal that keeps the next window closed for its quiet period."""
    monkeypatch.setenv("AIRFLOW_CONN_PUSHGATEWAY_DEFAULT", json.dumps({"conn_type": "http", "host": sandbox.pushgateway_url}))
    plan = {"experiment": f"preflight-test-{uuid.uuid4().hex[:8]}", "tier": "low", "target_service": "cache"}
    active = f'chaos_experiment_active{{experiment="{plan["experiment"]}"}}'
    channels = Channels(slack_conn_id=None, smtp_conn_id=None)
    assert announce("started", plan=plan, extra={"fault": {"injected_at": time.time()}}, channels=channels)["metrics"] == "sent"
    wait_for(lambda: PrometheusHook().query(active) == 1, 30, f"{active} = 1")
    ours = [p for p in recorded_faults(PrometheusHook(), 50, now(), lifetime_s=670) if plan["experiment"] in p]
    assert len(ours) == 1 and re.fullmatch(
        rf"a fault of ours \({plan['experiment']}, low tier\) was injected \d+ s ago and is recorded as still injected \(it may "
        r"still stand, or its removal is on its way\): the window and the look-back of its queries must hold none; run again "
        r"50 s after its removal", ours[0]), ours
    assert chaos_metrics.push("removed", plan=plan) == "sent"  # what remove_fault pushes
    wait_for(lambda: PrometheusHook().query(active) == 0, 30, f"{active} = 0")
    assert [p for p in recorded_faults(PrometheusHook(), 50, now(), lifetime_s=670) if plan["experiment"] in p] == [
        f"a fault of ours ({plan['experiment']}, low tier) was removed less than 50 s ago: the window and the look-back of its "
        "queries must hold none; run again 50 s after its removal"
    ]
