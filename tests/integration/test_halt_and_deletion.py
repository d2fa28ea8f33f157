"""Halt enforced by every component, and stuck deletions watched, forced and alerted, on the sandbox.

The sandbox's Chaos Mesh honours the documented `cleanFinalizer: forced` annotation, and its
`fail-recovery` switch (chaos_support.hold_recovery) makes a fault's recovery fail, so that its
records finalizer holds the deleting object: a stuck deletion, its fault still applied.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from types import SimpleNamespace

import pytest

from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering import watchdog
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.emergency import IN_FLIGHT_S, emergency_stop, resume
from chaos_engineering.halt import HaltFlag
from chaos_engineering.heartbeat import Heartbeat
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.operators.monitor import FaultMonitorSensor
from chaos_engineering.policy import ThresholdRule, load_policy
from chaos_engineering.triggers import MIN_EVENT_DELAY_S, FaultMonitorTrigger
from tests.integration.chaos_support import NAMESPACE, create_fault, get, hold_recovery, remove, restart_pods, target_pods, wait_injected
from tests.integration.test_notify_metrics import settles
from sandbox.steady import wait_steady
from tests.sandbox.sandbox_support import PrometheusAPI

POLICY, _ = load_policy()
# Absolute bounds only: judged without a baseline, so the test does not depend on the platform's history.
ABSOLUTE = {n: t.model_dump(mode="json") for n, t in POLICY.safety.thresholds.items()
            if t.rule not in (ThresholdRule.MAX_DROP_PERCENT, ThresholdRule.MAX_INCREASE)}


@pytest.fixture
def cluster(connections):
    """Leaves the halt cleared, our objects and heartbeats gone and any never-recovered target restarted."""
    hook = ChaosMeshHook()
    created: list[dict] = []
    leftovers: list[tuple[str, str]] = []
    yield hook, created, leftovers
    for obj in created:
        Heartbeat(hook, obj["kind"], obj["metadata"]["name"], NAMESPACE).delete()
        if get(obj) is not None:
            remove(obj)
    restart_pods(leftovers)
    if HaltFlag(hook, NAMESPACE).state().halted:
        resume(hook, POLICY, "test-cleanup", "end of test")


@pytest.fixture
def steady(connections) -> None:
    """The monitor judges thresholds: start from a platform within them."""
    wait_steady(POLICY, window_s=20)


def monitor(fault: dict, **kwargs) -> FaultMonitorTrigger:
    return FaultMonitorTrigger(
        prometheus_conn_id="prometheus_default", kubernetes_conn_id="kubernetes_default",
        fault={"kind": fault["kind"], "name": fault["metadata"]["name"], "namespace": NAMESPACE},
        thresholds=ABSOLUTE, baseline={}, interval_s=0.5, max_failed_reads=3, chaos_namespace=NAMESPACE, **kwargs,
    )


def fail_message(event: dict) -> str:
    sensor = FaultMonitorSensor(task_id="monitor", plan={}, fault={}, preflight={})
    with pytest.raises(AirflowFailException) as failed:
        sensor.execute_complete({"ti": SimpleNamespace(xcom_push=lambda **kwargs: None)}, event)
    return str(failed.value)


def test_a_fault_created_while_the_stop_runs_never_outlives_it_by_5_s(cluster):
    """An inject that passed its halt check just before the stop: its create lands after the halt
    (in flight for up to the API timeout). The stop's later sweeps catch it."""
    hook, created, _ = cluster
    landed: dict = {}

    def inject_in_flight() -> None:
        flag, deadline = HaltFlag(ChaosMeshHook(), NAMESPACE), time.monotonic() + 30
        while not flag.state().halted and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(3.0)  # the create request, sent before the halt, is answered now
        landed["fault"] = create_fault("race")
        created.append(landed["fault"])

    racer = threading.Thread(target=inject_in_flight)
    racer.start()
    report = emergency_stop(hook, POLICY, "alice", "race with an inject")
    stopped = time.monotonic()
    racer.join(30)
    fault = landed["fault"]
    while get(fault) is not None:
        assert time.monotonic() - stopped < 5, f"{fault['metadata']['name']} outlived the stop by 5 s:\n{report.summary()}"
        time.sleep(0.1)
    print(f"\n{report.summary()}")
    name = fault["metadata"]["name"]
    (caught,) = [i for i, s in enumerate(report.sweeps) if name in [r.name for r in s.removed]]
    assert caught > 0 and report.sweeps[caught].at_s >= 3  # a later sweep, not the first
    assert report.sweeps[-1].removed == [] and report.sweeps[-1].at_s >= IN_FLIGHT_S and report.errors == []
    assert f"chaos_low_risk/manual__{name}" in report.runs


def test_the_monitor_removes_its_fault_when_the_halt_is_set_mid_watch(cluster, steady):
    hook, created, _ = cluster
    fault = create_fault("halt-monitor")
    created.append(fault)
    wait_injected(fault)

    async def watch() -> dict:
        async def halt_soon() -> None:
            await asyncio.sleep(1.5)
            # The flag alone, not the stop: the monitor must remove the fault by itself.
            await asyncio.to_thread(HaltFlag(ChaosMeshHook(), NAMESPACE).set, "alice", "bookings failing")

        halting = asyncio.create_task(halt_soon())
        async for event in monitor(fault).run():
            await halting
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(asyncio.wait_for(watch(), 30 + MIN_EVENT_DELAY_S))
    assert event["status"] == "halted", event
    assert (event["halt"]["halted_by"], event["halt"]["halted_reason"]) == ("alice", "bookings failing")
    assert event["removal_requested_at"] is not None and event["removal_error"] == ""
    assert get(fault) is None and Heartbeat(hook, fault["kind"], fault["metadata"]["name"], NAMESPACE).read() is None
    assert event["message"].startswith("chaos halted by alice at ") and event["message"].endswith("this monitor removed the fault")
    assert "chaos experiments were halted by alice at " in fail_message(event)


def test_the_watchdog_removes_every_fault_of_ours_while_halted(cluster):
    hook, created, _ = cluster
    watched, unwatched, foreign = create_fault("halt-wd-watched"), create_fault("halt-wd-young"), create_fault("halt-wd-foreign", owned=False)
    created += [watched, unwatched, foreign]
    Heartbeat(hook, watched["kind"], watched["metadata"]["name"], NAMESPACE).renew("live-monitor", 5)
    before = watchdog.sweep(hook, namespace=NAMESPACE)  # not halted: a watched and a young fault stay
    assert before.removed == [] and before.halted is False
    halt = HaltFlag(hook, NAMESPACE).set("alice", "drill")
    result = watchdog.sweep(hook, namespace=NAMESPACE)
    reasons = {r.fault.name: r.reason for r in result.removed}
    expected = f"halted by alice at {halt.halted_at}: drill"
    assert reasons == {watched["metadata"]["name"]: expected, unwatched["metadata"]["name"]: expected}
    assert result.halted is True and result.successful and result.errors == []
    deadline = time.monotonic() + 5
    while get(watched) is not None or get(unwatched) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert get(foreign) is not None


def test_a_stuck_deletion_is_watched_forced_and_alerted_by_the_watchdog(cluster, sandbox, monkeypatch):
    hook, created, leftovers = cluster
    monkeypatch.setenv("AIRFLOW_CONN_PUSHGATEWAY_TEST", json.dumps({"conn_type": "http", "host": sandbox.pushgateway_url}))
    api = PrometheusAPI(sandbox.prometheus_url)
    fault = create_fault("wd-stuck")
    created.append(fault)
    wait_injected(fault)
    leftovers += target_pods(fault)
    hold_recovery(fault)
    name = fault["metadata"]["name"]
    hook.delete(ChaosKind(fault["kind"]), name, NAMESPACE)

    # Within the bound: still watched (checked), neither removed again nor forced.
    young = watchdog.sweep(hook, namespace=NAMESPACE, deletion_timeout_s=60)
    assert name not in [r.fault.name for r in young.removed + young.stuck] and get(fault) is not None
    time.sleep(2.5)
    assert get(fault)["metadata"]["deletionTimestamp"], "the sandbox's finalizer should hold the object"
    (result,) = watchdog.run(hook, once=True, pushgateway_conn_id="pushgateway_test", namespace=NAMESPACE, deletion_timeout_s=2)
    assert [r.fault.name for r in result.stuck] == [name] and [r.fault.name for r in result.forced] == [name]
    assert "Chaos Mesh's finalizer still holds it" in result.stuck[0].reason and result.successful
    deadline = time.monotonic() + 5
    while get(fault) is not None:
        assert time.monotonic() < deadline, "Chaos Mesh did not act on the forced clean-up"
        time.sleep(0.1)
    settles(api, 'chaos_fault_deletion_stuck{job="chaos_engineering"}', 1)
    settles(api, 'chaos_fault_deletion_last_forced_timestamp_seconds{job="chaos_engineering"}', result.at)
    settles(api, 'chaos_watchdog_last_sweep_timestamp_seconds{job="chaos_engineering"}', result.at)
    # The next sweep finds it gone: the alert's gauge goes back to 0.
    (after,) = watchdog.run(hook, once=True, pushgateway_conn_id="pushgateway_test", namespace=NAMESPACE, deletion_timeout_s=2)
    assert after.stuck == []
    settles(api, 'chaos_fault_deletion_stuck{job="chaos_engineering"}', 0)


def test_a_stuck_deletion_stays_watched_by_the_monitor_then_is_forced(cluster, steady, sandbox, monkeypatch):
    hook, created, leftovers = cluster
    # The triggerer's own Pushgateway connection, here the sandbox's.
    monkeypatch.setenv("AIRFLOW_CONN_PUSHGATEWAY_DEFAULT", json.dumps({"conn_type": "http", "host": sandbox.pushgateway_url}))
    api = PrometheusAPI(sandbox.prometheus_url)
    forced_before = api.value('chaos_fault_deletions_forced_total{job="chaos_engineering",by="monitor"}') or 0.0
    fault = create_fault("monitor-stuck")
    created.append(fault)
    wait_injected(fault)
    leftovers += target_pods(fault)
    hold_recovery(fault)
    name = fault["metadata"]["name"]
    beat = Heartbeat(hook, fault["kind"], name, NAMESPACE)

    async def watch() -> tuple[dict, list]:
        renewed_while_deleting: list = []
        task = asyncio.create_task(first_event(monitor(fault, deletion_timeout_s=2)))
        while (await asyncio.to_thread(beat.read)) is None:
            await asyncio.sleep(0.1)
        await asyncio.to_thread(hook.delete, ChaosKind(fault["kind"]), name, NAMESPACE)
        deleted_at = time.time()
        while not task.done():
            current = await asyncio.to_thread(beat.read)
            if current and current.renewed.timestamp() > deleted_at and current.renewed not in renewed_while_deleting:
                renewed_while_deleting.append(current.renewed)
            await asyncio.sleep(0.2)
        return await task, renewed_while_deleting

    event, renewals = asyncio.run(asyncio.wait_for(watch(), 60 + MIN_EVENT_DELAY_S))
    deletion = event["deletion"]
    assert event["status"] == "gone", event
    assert deletion["stuck"] and deletion["forced_at"] is not None and (deletion["forced_by"], deletion["force_error"]) == ("this monitor", "")
    assert deletion["checks"] >= 2  # thresholds judged while it was being deleted
    assert len(renewals) >= 2  # and the heartbeat kept up
    assert get(fault) is None  # gone through Chaos Mesh's forced clean-up: its recovery never succeeded
    assert "Chaos Mesh's finalizer clean-up was forced: the fault may still be applied" in fail_message(event)
    settles(api, 'chaos_fault_deletions_forced_total{job="chaos_engineering",by="monitor"}', forced_before + 1)


async def first_event(trigger: FaultMonitorTrigger) -> dict:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("no event")

