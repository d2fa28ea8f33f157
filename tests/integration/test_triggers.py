"""The kill switch's and the recovery stages' triggers: serialisation, and real runs on the sandbox."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.hooks.prometheus import PrometheusHook
from chaos_engineering.triggers import MIN_EVENT_DELAY_S, FaultMonitorTrigger, RecoveryTrigger
from sandbox.steady import wait_steady

POLICY = load_catalogue().policy
THRESHOLDS = {n: t.model_dump(mode="json") for n, t in POLICY.safety.thresholds.items()}
NAMESPACE = "chaos-engineering"


@pytest.fixture(autouse=True)
def steady(connections) -> None:
    wait_steady(POLICY, window_s=20)


def first_event(trigger, timeout: float) -> dict:
    async def run() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(run(), timeout))


def baseline() -> dict[str, float]:
    hook = PrometheusHook()
    return {name: hook.query(t["query"]) for name, t in THRESHOLDS.items()}


def create_fault(spec: dict, kind: str = "PodChaos") -> dict[str, str]:
    name = f"trigger-test-{uuid.uuid4().hex[:8]}"
    ChaosMeshHook().create(
        {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": kind, "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}
    )
    return {"kind": kind, "name": name, "namespace": NAMESPACE}


def wait_gone(fault: dict[str, str], timeout: float = 10) -> float:
    hook, deadline = ChaosMeshHook(), time.monotonic() + timeout
    while hook.get(ChaosKind(fault["kind"]), fault["name"], NAMESPACE) is not None:
        assert time.monotonic() < deadline, f"{fault['name']} still present after {timeout} s"
        time.sleep(0.2)
    return time.time()


def monitor(fault: dict[str, str], base: dict, *, conn: str = "prometheus_default", thresholds=THRESHOLDS) -> FaultMonitorTrigger:
    return FaultMonitorTrigger(
        prometheus_conn_id=conn,
        kubernetes_conn_id="kubernetes_default",
        fault=fault,
        thresholds=thresholds,
        baseline=base,
        interval_s=1,
        max_failed_reads=2,
    )


def test_serialisation_round_trips():
    trigger = monitor({"kind": "PodChaos", "name": "n", "namespace": NAMESPACE}, {"booking_rate": 20.0})
    path, kwargs = trigger.serialize()
    assert path == "chaos_engineering.triggers.FaultMonitorTrigger"
    assert FaultMonitorTrigger(**kwargs).serialize() == (path, kwargs)
    recovery = RecoveryTrigger(
        prometheus_conn_id="p", kubernetes_conn_id="k", thresholds=THRESHOLDS, baseline={}, interval_s=1, deadline_ts=5.0,
        targets=[{"namespace": "booking", "label_selector": "app=cache"}],
    )
    path, kwargs = recovery.serialize()
    assert path == "chaos_engineering.triggers.RecoveryTrigger"
    assert RecoveryTrigger(**kwargs).serialize() == (path, kwargs)


def test_a_breach_removes_the_fault_from_the_trigger(connections):
    base = baseline()
    fault = create_fault({"action": "pod-failure", "mode": "all", "duration": "2m",
                          "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "booking-api"}}})
    event = first_event(monitor(fault, base), timeout=90)
    gone_at = wait_gone(fault)
    assert event["status"] == "breach", event
    assert event["breach"]["threshold"] in ("booking_rate", "error_rate", "payment_failure_rate", "system_health", "p95_latency")
    assert event["removal_requested_at"] is not None and event["removal_error"] == ""
    # The kill is not held back by the event's delay (the Airflow race guard): it follows the breach.
    assert event["removal_requested_at"] - event["breach"]["at"] < 3
    assert gone_at - event["removal_requested_at"] < 5 + MIN_EVENT_DELAY_S


def test_unreadable_metrics_remove_the_fault(connections):
    fault = create_fault({"action": "pod-kill", "mode": "one", "duration": "2m",
                          "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "cache"}}})
    event = first_event(monitor(fault, baseline(), conn="prometheus_dead"), timeout=30)
    wait_gone(fault)
    assert event["status"] == "breach"
    assert event["breach"]["rule"] == "max_failed_reads" and event["breach"]["limit"] == 2


def test_a_fault_that_ends_by_itself_completes(connections):
    base = baseline()
    fault = create_fault({"action": "delay", "mode": "one", "duration": "3s", "delay": {"latency": "1ms"},
                          "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "cache"}}}, kind="NetworkChaos")
    event = first_event(monitor(fault, base), timeout=60)
    assert event["status"] == "completed", event
    assert event["checks"] >= 1
    assert ChaosMeshHook().delete(ChaosKind.NETWORK_CHAOS, fault["name"], NAMESPACE)


def test_a_fault_removed_from_outside_is_reported_gone(connections):
    fault = create_fault({"action": "delay", "mode": "one", "duration": "2m", "delay": {"latency": "1ms"},
                          "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "cache"}}}, kind="NetworkChaos")

    async def run() -> dict:
        async def remove_soon() -> None:
            await asyncio.sleep(2)
            await asyncio.to_thread(ChaosMeshHook().delete, ChaosKind.NETWORK_CHAOS, fault["name"], NAMESPACE)

        remover = asyncio.create_task(remove_soon())
        async for event in monitor(fault, baseline()).run():
            await remover
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(asyncio.wait_for(run(), 60))
    assert event["status"] == "gone"


def test_recovery_when_everything_holds(connections):
    trigger = RecoveryTrigger(
        prometheus_conn_id="prometheus_default", kubernetes_conn_id="kubernetes_default",
        thresholds={n: THRESHOLDS[n] for n in ("error_rate", "p95_latency")}, baseline=baseline(),
        interval_s=1, deadline_ts=time.time() + 60, targets=[{"namespace": "booking", "label_selector": "app=cache"}],
    )
    event = first_event(trigger, timeout=60)
    assert event["status"] == "recovered" and event["checks"] >= 1


def test_recovery_deadline_missed(connections):
    impossible = dict(THRESHOLDS["p95_latency"], rule="at_most", limit=0.0)
    trigger = RecoveryTrigger(
        prometheus_conn_id="prometheus_default", kubernetes_conn_id="kubernetes_default",
        thresholds={"p95_latency": impossible}, baseline={}, interval_s=1, deadline_ts=time.time() + 3,
    )
    event = first_event(trigger, timeout=30)
    assert event["status"] == "deadline_missed"
    assert "p95_latency" in event["pending"][0]
