"""The kill switch's and the recovery stages' triggers: serialisation, and real runs on the sandbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest
import structlog.testing

from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.halt import HaltFlag
from chaos_engineering.heartbeat import Heartbeat
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


def first_event(trigger, timeout: float, meanwhile: Callable[[], Awaitable[None]] | None = None) -> dict:
    """The trigger's event; `meanwhile` runs beside it (what someone does to the fault) and must end too."""

    async def run() -> dict:
        actor = asyncio.create_task(meanwhile()) if meanwhile else None
        async for event in trigger.run():
            if actor is not None:
                await actor
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


def monitor(fault: dict[str, str], base: dict, *, conn: str = "prometheus_default", thresholds=THRESHOLDS, **options) -> FaultMonitorTrigger:
    return FaultMonitorTrigger(
        prometheus_conn_id=conn,
        kubernetes_conn_id="kubernetes_default",
        fault=fault,
        thresholds=thresholds,
        baseline=base,
        interval_s=1,
        max_failed_reads=2,
        **options,
    )


def test_serialisation_round_trips():
    trigger = monitor({"kind": "PodChaos", "name": "n", "namespace": NAMESPACE}, {"booking_rate": 20.0}, query_timeout_s=2.5)
    path, kwargs = trigger.serialize()
    assert path == "chaos_engineering.triggers.FaultMonitorTrigger"
    assert kwargs["query_timeout_s"] == 2.5
    assert FaultMonitorTrigger(**kwargs).serialize() == (path, kwargs)
    recovery = RecoveryTrigger(
        prometheus_conn_id="p", kubernetes_conn_id="k", thresholds=THRESHOLDS, baseline={}, interval_s=1, deadline_ts=5.0,
        targets=[{"namespace": "booking", "label_selector": "app=cache"}], query_timeout_s=2.5,
    )
    path, kwargs = recovery.serialize()
    assert path == "chaos_engineering.triggers.RecoveryTrigger"
    assert kwargs["query_timeout_s"] == 2.5
    assert RecoveryTrigger(**kwargs).serialize() == (path, kwargs)
    assert recovery._readings().hook.timeout == 2.5  # each read's total deadline


def test_a_trigger_serialised_without_a_query_timeout_reads_with_the_default():
    # Serialised by a release before `query_timeout_s` (a deferred task across an upgrade).
    _, kwargs = monitor({"kind": "PodChaos", "name": "n", "namespace": NAMESPACE}, {}).serialize()
    del kwargs["query_timeout_s"]
    assert FaultMonitorTrigger(**kwargs).query_timeout_s == 5.0


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


    async def remove_soon() -> None:
        await asyncio.sleep(2)
        await asyncio.to_thread(ChaosMeshHook().delete, ChaosKind.NETWORK_CHAOS, fault["name"], NAMESPACE)

    event = first_event(monitor(fault, baseline()), 60, remove_soon)
    assert event["status"] == "gone"
    # Deleted by hand while the monitor's heartbeat was fresh: neither the stop nor the watchdog.
    assert event["removed_by"]["by"] == "unknown"
    assert event["message"].startswith("the fault was removed by someone outside this system: no emergency stop since ")


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


READING = r"-?[\d.e+]+"


def reading_pattern(name: str, unit: str, keeps_above: bool) -> str:
    """A threshold's reading against its bound in a progress line: `error_rate 0.8% of ≤ 5% (headroom 4.2 pp)`."""
    value = rf"{READING}%" if unit == "%" else rf"{READING} {re.escape(unit)}"
    room = rf"{READING} pp" if unit == "%" else rf"{READING} {re.escape(unit)}"
    return rf"{name} {value} of {'≥' if keeps_above else '≤'} {value} \(headroom {room}\)"


def test_the_monitor_logs_its_progress_and_its_decision(connections):
    """The deferred task's log while the fault is on: a line at the first check (then every ~30 s) with
    the fault's age and time left and every threshold against its bound, and a line for the decision."""
    base = baseline()
    fault = create_fault({"action": "delay", "mode": "one", "duration": "4s", "delay": {"latency": "1ms"},
                          "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "cache"}}}, kind="NetworkChaos")
    trigger = FaultMonitorTrigger(prometheus_conn_id="prometheus_default", kubernetes_conn_id="kubernetes_default", fault=fault,
                                  thresholds=THRESHOLDS, baseline=base, interval_s=1, max_failed_reads=2, ends_at=time.time() + 4)
    with structlog.testing.capture_logs() as logs:  # a trigger's self.log is structlog's, as the triggerer routes it
        event = first_event(trigger, timeout=60)
    ChaosMeshHook().delete(ChaosKind.NETWORK_CHAOS, fault["name"], NAMESPACE)
    assert event["status"] == "completed", event
    messages = [entry["event"] % tuple(entry.get("positional_args", ())) if entry.get("positional_args") else entry["event"] for entry in logs]
    progress = [m for m in messages if m.startswith("kill switch check ")]
    readings = "; ".join(
        reading_pattern(n, t["unit"], t["rule"] in ("max_drop_percent", "at_least")) for n, t in THRESHOLDS.items()
    )
    # One line: the first check's (the next is due at check 30).
    assert len(progress) == 1, progress
    assert re.fullmatch(rf"kill switch check 1: fault on for \d+ s, [0-4] s left; worst of this check: {readings}", progress[0]), progress[0]
    assert f"kill switch: completed after {event['checks']} checks: Chaos Mesh ended the fault" in messages


def run_while(trigger: FaultMonitorTrigger, action) -> dict:
    """The trigger's event, `action` (a coroutine function) running beside it once its first check renewed the heartbeat."""
    async def run() -> dict:
        async def act() -> None:
            beat = Heartbeat(ChaosMeshHook(), trigger.fault["kind"], trigger.fault["name"], NAMESPACE)
            while await asyncio.to_thread(beat.read) is None:
                await asyncio.sleep(0.05)
            await action()

        actor = asyncio.create_task(act())
        async for event in trigger.run():
            await actor
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(asyncio.wait_for(run(), 60))


LIGHT = {"action": "delay", "mode": "one", "duration": "2m", "delay": {"latency": "1ms"},
         "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "cache"}}}


def test_a_stop_between_two_checks_is_named(connections):
    """Halted, removed and resumed while the monitor slept: the halt history still names the stop."""
    fault = create_fault(LIGHT, kind="NetworkChaos")
    trigger = monitor(fault, baseline())
    trigger.interval_s = 4  # the stop, its removal and the resume all fall between two checks
    flag = HaltFlag(ChaosMeshHook(), NAMESPACE)

    async def stop_and_resume() -> None:
        await asyncio.to_thread(flag.set, "alice", "db on fire")
        await asyncio.to_thread(ChaosMeshHook().delete, ChaosKind.NETWORK_CHAOS, fault["name"], NAMESPACE)
        await asyncio.to_thread(flag.clear, "carol", "all clear")

    event = run_while(trigger, stop_and_resume)
    state = flag.state()
    halted = next(h for h in reversed(state.history) if h["action"] == "halt" and h["by"] == "alice")
    resumed = state.history[-1]
    assert event["status"] == "gone", event
    assert event["removed_by"] == {"by": "emergency_stop", "detail": (
        f"the emergency stop of alice at {halted['at'].replace('+00:00', 'Z')}: 'db on fire' "
        f"(resumed since by carol at {resumed['at'].replace('+00:00', 'Z')})")}
    assert event["message"] == f"the fault was removed by {event['removed_by']['detail']}"


def test_a_removal_by_the_watchdog_is_named(connections, monkeypatch):
    """The monitor's renewals fail (stubbed): its heartbeat ages, and a real watchdog sweep removes the fault."""
    from chaos_engineering import watchdog
    from chaos_engineering.render import LABEL_MANAGED_BY, MANAGED_BY

    fault = create_fault(LIGHT, kind="NetworkChaos")
    ChaosMeshHook().patch(ChaosKind.NETWORK_CHAOS, fault["name"], NAMESPACE, {"metadata": {"labels": {LABEL_MANAGED_BY: MANAGED_BY}}})
    beat = Heartbeat(ChaosMeshHook(), "NetworkChaos", fault["name"], NAMESPACE)
    beat.renew("triggerer/gone", 1, now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=60))

    async def renewals_fail(self, heartbeat, holder) -> None:
        return None

    monkeypatch.setattr(FaultMonitorTrigger, "_renew_heartbeat", renewals_fail)

    async def sweep() -> None:
        result = await asyncio.to_thread(watchdog.sweep, ChaosMeshHook(), 20.0)
        assert [r.fault.name for r in result.removed] == [fault["name"]], result

    event = run_while(monitor(fault, baseline()), sweep)
    assert event["status"] == "gone", event
    assert event["removed_by"]["by"] == "watchdog"
    assert re.fullmatch(r"the dead-man watchdog: heartbeat expired \(6\d s since its last renewal, grace 20 s\)", event["removed_by"]["detail"])


def test_a_paused_fault_is_watched_until_it_is_gone(connections):
    """Chaos Mesh's pause annotation: the sandbox's controller recovers the fault and reports it
    stopped and recovered, as an ended one; removing the annotation injects it again. The monitor
    keeps watching (and beating) through the pause, and ends only when the fault is gone."""
    from chaos_engineering.chaosmesh.constants import PAUSE_ANNOTATION

    hook = ChaosMeshHook()
    fault = create_fault({"action": "delay", "mode": "one", "duration": "2m", "delay": {"latency": "1ms"},
                          "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "cache"}}}, kind="NetworkChaos")
    beats: list[str] = []

    async def pause_then_remove() -> None:
        await asyncio.sleep(2)
        await asyncio.to_thread(hook.patch, ChaosKind.NETWORK_CHAOS, fault["name"], NAMESPACE, {"metadata": {"annotations": {PAUSE_ANNOTATION: "true"}}})
        deadline = time.monotonic() + 20
        while not any(c["type"] == "Paused" and c["status"] == "True"
                      for c in (await asyncio.to_thread(hook.get, ChaosKind.NETWORK_CHAOS, fault["name"], NAMESPACE))["status"].get("conditions", [])):
            assert time.monotonic() < deadline, "the sandbox never reported the fault paused"
            await asyncio.sleep(0.2)
        for _ in range(4):  # paused (and recovered) for four checks: still watched, still beating
            await asyncio.sleep(1)
            beat = await asyncio.to_thread(Heartbeat(hook, ChaosKind.NETWORK_CHAOS, fault["name"], NAMESPACE).read)
            beats.append(beat.renewed.isoformat())
        await asyncio.to_thread(hook.delete, ChaosKind.NETWORK_CHAOS, fault["name"], NAMESPACE)

    event = first_event(monitor(fault, baseline()), 90, pause_then_remove)
    assert event["status"] == "gone", event
    assert len(set(beats)) >= 3, beats


def test_a_breach_removal_refused_by_the_api_server_is_tried_again(connections, sandbox):
    """The API server answers the kill's delete 500 twice (the sandbox's fault table), and hangs
    every heartbeat write: the trigger still judges, keeps trying the delete with backoff, and the
    fault goes."""
    faults = sandbox.api_faults
    fault = create_fault({"action": "pod-failure", "mode": "all", "duration": "2m",
                          "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "booking-api"}}})
    delete = faults.inject(rf".*/networkchaos/{fault['name']}|.*/podchaos/{fault['name']}", "error", verb="DELETE", status=500, times=2)
    faults.inject(r"/apis/coordination\.k8s\.io/v1/namespaces/[^/]+/leases/chaos-heartbeat-.*", "hang", verb="PUT", seconds=30)
    try:
        event = first_event(monitor(fault, baseline()), timeout=120)
        gone_at = wait_gone(fault)
        hits = {rule["id"]: rule["hits"] for rule in faults.list()}
    finally:
        faults.clear()
    assert event["status"] == "breach", event
    assert event["removal_requested_at"] is not None and event["removal_error"] == ""
    assert hits[delete["id"]] == 2
    # Two refusals, then 0.5 + 1 s of backoff: the third delete was accepted.
    assert 1.5 <= event["removal_requested_at"] - event["breach"]["at"] < 5
    assert gone_at - event["removal_requested_at"] < 5 + MIN_EVENT_DELAY_S
