"""The sticky emergency stop on the sandbox's Kubernetes API: halt first, remove, force if stuck, resume.

The stop sweeps for one API request timeout after the halt (emergency.IN_FLIGHT_S, about 11 s);
tests whose subject is not that window pass `in_flight_s=1` (test_halt_and_deletion.py races it).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from types import SimpleNamespace

import pytest

from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.emergency import IN_FLIGHT_S, emergency_stop, resume
from chaos_engineering.halt import HaltFlag
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.lock import ExperimentLock
from chaos_engineering.operators.common import fail_if_halted
from chaos_engineering.operators.fault import InjectFaultOperator
from chaos_engineering.operators.monitor import FaultMonitorSensor
from chaos_engineering.operators.plan import PlanExperimentOperator
from chaos_engineering.policy import load_policy
from chaos_engineering.triggers import MIN_EVENT_DELAY_S, FaultMonitorTrigger
from tests.integration.chaos_support import (
    NAMESPACE,
    chaosctl,
    create_fault,
    get,
    hold_recovery,
    json_out,
    remove,
    restart_pods,
    target_pods,
    wait_injected,
)

POLICY, _ = load_policy()


@pytest.fixture
def cluster(connections):
    """Leaves the shared halt flag cleared and our objects gone, whatever the test did."""
    hook = ChaosMeshHook()
    created: list[dict] = []
    yield hook, created
    for obj in created:
        if get(obj) is not None:
            remove(obj)
    if HaltFlag(hook, NAMESPACE).state().halted:
        resume(hook, POLICY, "test-cleanup", "end of test")


def test_stop_removes_an_active_fault_within_5_s_and_halts(cluster):
    hook, created = cluster
    fault = create_fault("estop")
    created.append(fault)
    wait_injected(fault)
    ExperimentLock(hook, NAMESPACE).acquire("chaos_low_risk/manual__x", 600)

    gone_after: list[float] = []

    def watch() -> None:
        while get(fault) is not None and time.monotonic() - started < 30:
            time.sleep(0.05)
        gone_after.append(time.monotonic() - started)

    started = time.monotonic()
    watcher = threading.Thread(target=watch)
    watcher.start()
    report = emergency_stop(hook, POLICY, "alice", "payments look wrong")
    elapsed = time.monotonic() - started
    watcher.join()
    print(f"\nemergency stop: active fault gone in {gone_after[0]:.2f} s, stop done in {elapsed:.1f} s")

    assert get(fault) is None
    assert gone_after[0] < 5
    # It then sweeps out the in-flight window (an inject's create sent just before the halt).
    assert IN_FLIGHT_S <= elapsed < IN_FLIGHT_S + 5
    assert [r.name for r in report.removed] == [fault["metadata"]["name"]] and report.forced == [] and report.errors == []
    assert report.runs == [f"chaos_low_risk/manual__{fault['metadata']['name']}"]
    assert report.lock_holder == "chaos_low_risk/manual__x" and ExperimentLock(hook, NAMESPACE).state() is None
    halt = HaltFlag(hook, NAMESPACE).state()
    assert halt.halted and halt.halted_by == "alice" and halt.halted_reason == "payments look wrong" and halt.halted_at


def test_stop_leaves_objects_that_are_not_ours(cluster):
    hook, created = cluster
    foreign = create_fault("not-ours", owned=False)
    created.append(foreign)
    report = emergency_stop(hook, POLICY, "alice", "drill", in_flight_s=1)
    assert foreign["metadata"]["name"] not in [r.name for r in report.removed]
    assert get(foreign) is not None


def test_plan_and_inject_refuse_while_halted_and_resume_clears_it(cluster):
    hook, _ = cluster
    emergency_stop(hook, POLICY, "bob", "incident INC-42", in_flight_s=1)
    with pytest.raises(AirflowFailException, match=r"halted: emergency stop by bob at .*reason: incident INC-42"):
        fail_if_halted(hook, NAMESPACE)
    # The operators call it before anything else: no lock, no Variable, no object is touched.
    with pytest.raises(AirflowFailException, match="halted: emergency stop by bob"):
        InjectFaultOperator(task_id="inject", tier="low", plan={"manifest": {}}).execute({"dag_run": SimpleNamespace(dag_id="d", run_id="r")})
    with pytest.raises(AirflowFailException, match="halted: emergency stop by bob"):
        PlanExperimentOperator(task_id="plan", tier="low").execute({})

    state = resume(hook, POLICY, "carol", "incident closed")
    fail_if_halted(hook, NAMESPACE)  # no longer raises
    assert not state.halted
    assert (state.halted_by, state.halted_reason) == ("bob", "incident INC-42")  # who halted stays on record
    assert (state.resumed_by, state.resumed_reason) == ("carol", "incident closed")
    assert [(h["action"], h["by"]) for h in state.history[-2:]] == [("halt", "bob"), ("resume", "carol")]


def test_a_second_stop_keeps_the_first_halter(cluster):
    hook, _ = cluster
    emergency_stop(hook, POLICY, "first", "one", in_flight_s=1)
    state = emergency_stop(hook, POLICY, "second", "two", in_flight_s=1).halt
    assert state.halted and state.halted_by == "first"
    assert [(h["action"], h["by"]) for h in state.history[-2:]] == [("halt", "first"), ("halt", "second")]


def test_a_stuck_finalizer_is_forced_only_after_the_bound(cluster):
    hook, created = cluster
    fault = create_fault("stuck")
    created.append(fault)
    name = fault["metadata"]["name"]
    wait_injected(fault)
    pods = target_pods(fault)
    # Chaos Mesh cannot recover this one: its records finalizer holds the object once deleted.
    hold_recovery(fault)
    started = time.monotonic()
    gone_after: list[float] = []

    def watch() -> None:
        while get(fault) is not None and time.monotonic() - started < 30:
            time.sleep(0.05)
        gone_after.append(time.monotonic() - started)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        report = emergency_stop(hook, POLICY, "alice", "stuck test", recovery_timeout_s=2, in_flight_s=1)
        watcher.join()
        assert [r.name for r in report.forced] == [name] and [r.name for r in report.sweeps[0].forced] == [name]
        assert report.errors == []
        # Its recovery always fails: only Chaos Mesh's forced clean-up (cleanFinalizer annotation,
        # asked for once the recovery timeout passed) lets the object go.
        assert 2 <= gone_after[0] < 5 and get(fault) is None
        assert "FORCED Chaos Mesh's finalizer clean-up of 1 object(s)" in report.summary()
    finally:
        restart_pods(pods)  # the fault was never recovered: its pod still carries it


def test_a_monitored_run_fails_naming_who_stopped_it(cluster):
    """How the stop fails running tier runs: the monitor's trigger reads the halt and reports
    `halted`, its sensor raises naming who stopped it (operators/monitor.py), the run fails; no
    Airflow database access needed."""
    hook, created = cluster
    fault = create_fault("estop-run")
    created.append(fault)
    trigger = FaultMonitorTrigger(
        prometheus_conn_id="prometheus_default", kubernetes_conn_id="kubernetes_default",
        fault={"kind": "NetworkChaos", "name": fault["metadata"]["name"], "namespace": NAMESPACE},
        thresholds={}, baseline={}, interval_s=0.5, max_failed_reads=2,
    )

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    stopper = threading.Timer(1.5, emergency_stop, args=(hook, POLICY, "alice", "stop a run"), kwargs={"in_flight_s": 1})
    stopper.start()
    try:
        event = asyncio.run(asyncio.wait_for(first_event(), 30 + MIN_EVENT_DELAY_S))
    finally:
        stopper.join()
    assert event["status"] == "halted", event
    assert (event["halt"]["halted_by"], event["halt"]["halted_reason"]) == ("alice", "stop a run")
    sensor = FaultMonitorSensor(task_id="monitor", plan={}, fault={}, preflight={})
    with pytest.raises(AirflowFailException, match=r"chaos experiments were halted by alice at .* \(reason: stop a run\): the fault is gone"):
        sensor.execute_complete({"ti": SimpleNamespace(xcom_push=lambda **kwargs: None)}, event)


def test_chaosctl_stop_status_resume(cluster, sandbox):
    hook, created = cluster
    fault = create_fault("ctl")
    created.append(fault)
    # Through --kubeconfig, as in a terminal with no Airflow connection defined.
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_CONN_KUBERNETES_DEFAULT"}
    kube = ["--kubeconfig", str(sandbox.kubeconfig_path)]

    status = chaosctl("status", *kube, env=env)
    assert status.returncode == 0, status.stderr
    assert "halt:   not halted" in status.stdout and fault["metadata"]["name"] in status.stdout

    stop = chaosctl("stop", "--reason", "ctl test", "--who", "dave", "--format", "json", *kube, env=env)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    report = json_out(stop)
    assert [r["name"] for r in report["removed"]] == [fault["metadata"]["name"]] and report["halt"]["halted_by"] == "dave"
    assert get(fault) is None

    status = json_out(chaosctl("status", "--format", "json", *kube, env=env))
    assert status["halt"]["halted"] is True and status["faults"] == []
    text = chaosctl("status", *kube, env=env).stdout
    assert "HALTED by dave" in text and "ctl test" in text

    resumed = chaosctl("resume", "--reason", "all clear", "--who", "erin", *kube, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "not halted (resumed by erin" in resumed.stdout and "last halted by dave" in resumed.stdout
    assert not HaltFlag(hook, NAMESPACE).state().halted


def test_chaosctl_refuses_a_stop_without_a_reason():
    result = chaosctl("stop")
    assert result.returncode == 2 and "--reason" in result.stderr
