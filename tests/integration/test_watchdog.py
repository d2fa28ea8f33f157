"""The dead man's switch on the sandbox: the monitor's heartbeat, and the watchdog removing unwatched faults."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import uuid

import pytest

from chaos_engineering import watchdog
from chaos_engineering.heartbeat import Heartbeat, heartbeat_of
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.triggers import FaultMonitorTrigger
from chaos_engineering.lock import ExperimentLock
from tests.integration.chaos_support import NAMESPACE, chaosctl, create_fault, get, json_out, remove
from tests.integration.inject_support import Run, open_include

GRACE_S = 5.0


@pytest.fixture
def faults(connections):
    created: list[dict] = []
    yield created
    for obj in created:
        heartbeat_of(ChaosMeshHook(), obj).delete()
        if get(obj) is not None:
            remove(obj)


def heartbeat(obj: dict) -> Heartbeat:
    return Heartbeat(ChaosMeshHook(), obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"])


def test_the_watchdog_removes_a_stale_fault_and_leaves_a_watched_one(faults):
    fresh, stale = create_fault("wd-fresh"), create_fault("wd-stale")
    faults += [fresh, stale]
    last_beat = time.time()  # taken before the renewal: never credits the watchdog with time it did not wait
    heartbeat(stale).renew("dead-monitor", 1)
    stop = threading.Event()

    def live_monitor() -> None:
        while not stop.wait(1):
            heartbeat(fresh).renew("live-monitor", 1)

    beats = threading.Thread(target=live_monitor)
    beats.start()
    heartbeat(fresh).renew("live-monitor", 1)
    dog = threading.Thread(target=watchdog.run, args=(ChaosMeshHook(),), kwargs={"grace_s": GRACE_S, "interval_s": 1, "stop": stop})
    dog.start()
    try:
        while get(stale) is not None:
            assert time.time() - last_beat < GRACE_S + 10, "the stale fault outlived grace + 10 s"
            time.sleep(0.2)
        removed_after = time.time() - last_beat
        print(f"\nwatchdog: stale fault gone {removed_after:.1f} s after its last heartbeat (grace {GRACE_S:g} s)")
        assert removed_after > GRACE_S  # never before its grace
        time.sleep(GRACE_S)  # several more sweeps
        assert get(fresh) is not None
    finally:
        stop.set()
        beats.join()
        dog.join(10)


def test_a_scenarios_steps_share_its_runs_heartbeat_and_are_kept_or_removed_together(faults):
    key = uuid.uuid4().hex[:16]
    first, second = (create_fault(step, scenario=("wd-scenario", key)) for step in ("wd-step-a", "wd-step-b"))
    faults += [first, second]
    names = {first["metadata"]["name"], second["metadata"]["name"]}
    beat = heartbeat_of(ChaosMeshHook(), first)
    assert beat.name == heartbeat_of(ChaosMeshHook(), second).name == f"chaos-heartbeat-scenario-{key}"
    beat.renew("scenario-monitor", 1)
    fresh = watchdog.sweep(ChaosMeshHook(), grace_s=GRACE_S)
    assert names.isdisjoint(r.fault.name for r in fresh.removed), fresh.removed
    # The monitor died: its one beat ages for both steps at once.
    stale = watchdog.sweep(ChaosMeshHook(), grace_s=GRACE_S, now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=GRACE_S + 2))
    removed = {r.fault.name: r.reason for r in stale.removed if r.fault.name in names}
    assert set(removed) == names and all(r.startswith("heartbeat ") and r.endswith("its monitor is gone") for r in removed.values()), removed


def test_a_fault_never_watched_goes_after_grace(faults):
    fault = create_fault("wd-orphan")
    faults.append(fault)
    young = watchdog.sweep(ChaosMeshHook(), grace_s=60)
    assert fault["metadata"]["name"] not in [r.fault.name for r in young.removed]
    later = watchdog.sweep(ChaosMeshHook(), grace_s=60, now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=61))
    [removal] = [r for r in later.removed if r.fault.name == fault["metadata"]["name"]]
    assert removal.reason.startswith("no heartbeat, created") and removal.fault.run.startswith("chaos_low_risk/manual__")


@pytest.fixture
def open_window(tmp_path_factory, connections):
    yield from open_include(tmp_path_factory, connections)


def test_the_inject_task_hands_the_fault_over_to_its_monitor(faults, open_window):
    """The inject task's heartbeat keeps the fault past the grace until the monitor's hand-over
    budget (policy `safety.monitor_handover`) runs out; then the watchdog removes it."""
    from chaos_engineering.policy import load_policy

    policy, _ = load_policy()
    handover = policy.safety.monitor_handover
    assert handover > watchdog.DEFAULT_GRACE_S + 10
    run = Run("chaos_low_risk", "cache-slow-long")
    run.lock()
    try:
        ref = run.inject("low")
    finally:
        ExperimentLock(ChaosMeshHook(), NAMESPACE).release(f"{run.dag_id}/{run.run_id}")
    fault = get({"kind": ref["kind"], "metadata": {"name": ref["name"], "namespace": ref["namespace"]}})
    faults.append(fault)
    beat = heartbeat(fault).read()
    assert beat is not None and beat.holder.startswith("inject:") and beat.interval_s == round(handover)

    # What an SRE sees meanwhile: who beat last, and what it promised.
    status = chaosctl("status", "--format", "json")
    assert status.returncode == 0, status.stderr
    [listed] = [f for f in json_out(status)["faults"] if f["name"] == ref["name"]]
    assert listed["heartbeat_by"].startswith("inject:") and listed["heartbeat_promise_s"] == round(handover)
    text = chaosctl("status").stdout
    assert f"{ref['name']} [active]" in text and f"by {listed['heartbeat_by']} (next within {round(handover)} s)" in text

    injected = dt.datetime.now(dt.timezone.utc)
    name = ref["name"]
    past_grace = watchdog.sweep(ChaosMeshHook(), now=injected + dt.timedelta(seconds=watchdog.DEFAULT_GRACE_S + 10))
    assert name not in [r.fault.name for r in past_grace.removed] and get(fault) is not None
    late = watchdog.sweep(ChaosMeshHook(), now=injected + dt.timedelta(seconds=handover + 2))
    [removal] = [r for r in late.removed if r.fault.name == name]
    assert "written at injection" in removal.reason and "its monitor never started" in removal.reason


def test_not_our_faults_are_never_touched(faults):
    foreign = create_fault("wd-foreign", owned=False)
    faults.append(foreign)
    watchdog.sweep(ChaosMeshHook(), grace_s=0, now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
    assert get(foreign) is not None


def test_the_monitor_renews_the_heartbeat_and_deletes_it_at_the_end(faults):
    fault = create_fault("wd-trigger")
    faults.append(fault)
    trigger = FaultMonitorTrigger(
        prometheus_conn_id="prometheus_default", kubernetes_conn_id="kubernetes_default",
        fault={"kind": "NetworkChaos", "name": fault["metadata"]["name"], "namespace": NAMESPACE},
        thresholds={}, baseline={}, interval_s=0.5, max_failed_reads=2,
    )
    renewals: list[dt.datetime] = []

    async def watch() -> dict:
        async def events() -> dict:
            async for event in trigger.run():
                return event.payload
            raise AssertionError("no event")

        task = asyncio.create_task(events())
        while len(renewals) < 3:
            beat = await asyncio.to_thread(heartbeat(fault).read)
            if beat and (not renewals or beat.renewed > renewals[-1]):
                renewals.append(beat.renewed)
            await asyncio.sleep(0.2)
        await asyncio.to_thread(ChaosMeshHook().delete, "NetworkChaos", fault["metadata"]["name"], NAMESPACE)
        return await asyncio.wait_for(task, 30)

    event = asyncio.run(asyncio.wait_for(watch(), 60))
    assert event["status"] == "gone"
    assert len(renewals) >= 3
    assert heartbeat(fault).read() is None


def test_each_sweep_reports_the_halt_and_the_lock_to_prometheus(faults, sandbox, monkeypatch):
    """The watchdog is the periodic reader of the halt flag and the lock: what the alerts
    ChaosHaltSet and ChaosLockHeldWithoutFault need, read back through the real Prometheus."""
    import json

    from chaos_engineering.emergency import resume
    from chaos_engineering.halt import HaltFlag
    from chaos_engineering.lock import ExperimentLock
    from chaos_engineering.policy import load_policy
    from tests.integration.test_notify_metrics import settles
    from tests.sandbox.sandbox_support import PrometheusAPI

    monkeypatch.setenv("AIRFLOW_CONN_PUSHGATEWAY_TEST", json.dumps({"conn_type": "http", "host": sandbox.pushgateway_url}))
    hook, api, policy = ChaosMeshHook(), PrometheusAPI(sandbox.prometheus_url), load_policy()[0]
    lock = ExperimentLock(hook, NAMESPACE)
    try:
        HaltFlag(hook, NAMESPACE).set("watchdog-test", "metrics")
        lock.acquire("watchdog-test/run", 120)
        (result,) = watchdog.run(hook, once=True, pushgateway_conn_id="pushgateway_test", namespace=NAMESPACE)
        assert (result.halted, result.lock_held, result.errors) == (True, True, [])
        settles(api, 'chaos_halt_active{job="chaos_engineering"}', 1)
        settles(api, 'chaos_lock_held{job="chaos_engineering"}', 1)
    finally:
        lock.force_release()
        resume(hook, policy, "watchdog-test", "end of test")
    (result,) = watchdog.run(hook, once=True, pushgateway_conn_id="pushgateway_test", namespace=NAMESPACE)
    assert (result.halted, result.lock_held) == (False, False)
    settles(api, 'chaos_halt_active{job="chaos_engineering"}', 0)
    settles(api, 'chaos_lock_held{job="chaos_engineering"}', 0)
