"""The scenario's kill switch (`ScenarioMonitorTrigger`) on the sandbox: it starts later steps when
due, completes when Chaos Mesh has ended every step, and removes every step on a breach, a halt or
a step removed from outside."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.halt import HaltFlag
from chaos_engineering.heartbeat import ScenarioHeartbeat, heartbeat_of
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.render import LABEL_MANAGED_BY, LABEL_RUN_KEY, LABEL_SCENARIO, LABEL_STEP, MANAGED_BY, OWNED_SELECTOR
from chaos_engineering.scenario_monitor import ScenarioMonitorTrigger
from chaos_engineering.triggers import MIN_EVENT_DELAY_S, created_at
from chaos_engineering.watchdog import sweep
from sandbox.steady import wait_steady
from tests.integration.test_triggers import NAMESPACE, POLICY, THRESHOLDS, baseline, first_event

CACHE = {"namespaces": ["booking"], "labelSelectors": {"app": "cache"}}
API = {"namespaces": ["booking"], "labelSelectors": {"app": "booking-api"}}


class Scenario:
    """Steps of one run (a unique run key); every object it may create is deleted after."""

    def __init__(self) -> None:
        self.key = uuid.uuid4().hex[:16]
        self.steps: list[dict] = []
        self.hook = ChaosMeshHook()
        self.started = time.time()

    def step(self, name: str, kind: str, spec: dict, start_s: float, duration_s: float, after: str | None = None, when: str | None = None) -> dict:
        body = {
            "apiVersion": "chaos-mesh.org/v1alpha1",
            "kind": kind,
            "metadata": {"name": f"{name}-{self.key[:8]}", "namespace": NAMESPACE,
                         "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_RUN_KEY: self.key, LABEL_SCENARIO: "test-scenario", LABEL_STEP: name}},
            "spec": spec | {"duration": f"{duration_s:g}s"},
        }
        self.steps.append({"step": name, "body": body, "start_at": self.started + start_s, "duration_s": duration_s,
                           "after": after, "when": when, "action": spec.get("action")})
        return body

    def create(self, name: str) -> None:
        """What inject does: the first step's object, before the monitor starts (the sensor then
        passes its creation time)."""
        step = next(s for s in self.steps if s["step"] == name)
        created = self.hook.create(step["body"])
        step["created_at"] = created_at(created)

    def monitor(self, span_s: float, **options) -> ScenarioMonitorTrigger:
        return ScenarioMonitorTrigger(
            prometheus_conn_id="prometheus_default", kubernetes_conn_id="kubernetes_default", steps=self.steps,
            started_at=self.started, span_end=self.started + span_s, namespace=NAMESPACE, thresholds=THRESHOLDS,
            baseline=baseline(), interval_s=1, max_failed_reads=2, chaos_namespace=NAMESPACE, **options,
        )

    def present(self) -> list[str]:
        kinds = {s["body"]["kind"] for s in self.steps}
        return sorted(o["metadata"]["name"] for k in kinds for o in self.hook.list(ChaosKind(k), NAMESPACE, f"{LABEL_RUN_KEY}={self.key}"))

    def wait_gone(self, timeout: float = 15) -> float:
        deadline = time.monotonic() + timeout
        while self.present():
            assert time.monotonic() < deadline, f"still present after {timeout} s: {self.present()}"
            time.sleep(0.2)
        return time.time()

    def cleanup(self) -> None:
        for s in self.steps:
            self.hook.delete(ChaosKind(s["body"]["kind"]), s["body"]["metadata"]["name"], NAMESPACE)
        self.heartbeat().delete()

    def heartbeat(self) -> ScenarioHeartbeat:
        """The run's one heartbeat, which every step's object shares."""
        return ScenarioHeartbeat(self.hook, "test-scenario", self.key, NAMESPACE)

    def leases(self) -> list[str]:
        """The names of the heartbeat Leases of this run's objects and of the run."""
        names = {s["body"]["metadata"]["name"] for s in self.steps}
        return sorted(lease.metadata.name for lease in self.hook.list_leases(label_selector=OWNED_SELECTOR)
                      if self.key in lease.metadata.name or any(n in lease.metadata.name for n in names))


@pytest.fixture
def scenario(connections):
    wait_steady(POLICY, window_s=20)
    made = Scenario()
    yield made
    made.cleanup()
    halt = HaltFlag(ChaosMeshHook(), NAMESPACE)
    if halt.state().halted:
        halt.clear("test", "test over")


def delay(latency: str = "1ms") -> dict:
    return {"action": "delay", "mode": "one", "delay": {"latency": latency}, "selector": CACHE}


def test_serialisation_round_trips(scenario):
    scenario.step("a", "NetworkChaos", delay(), 0, 5)
    trigger = scenario.monitor(10)
    path, kwargs = trigger.serialize()
    assert path == "chaos_engineering.scenario_monitor.ScenarioMonitorTrigger"
    again = ScenarioMonitorTrigger(**kwargs)
    assert again.serialize() == (path, kwargs)
    assert "fault" not in kwargs and kwargs["steps"] == scenario.steps


def test_a_later_step_starts_after_the_one_it_follows_ended_and_the_run_completes(scenario):
    scenario.step("first", "NetworkChaos", delay(), 0, 4)
    scenario.step("second", "NetworkChaos", delay("2ms"), 5, 3, after="first", when="ended")
    scenario.create("first")
    event = first_event(scenario.monitor(30), timeout=90)
    assert event["status"] == "completed", event
    first, second = event["steps"]["first"], event["steps"]["second"]
    assert first["created_at"] is not None and first["ended_at"] is not None
    # Not before its planned time, nor before the monitor saw `first` ended.
    assert second["created_at"] >= scenario.steps[1]["start_at"] - 1  # Kubernetes keeps whole seconds
    assert second["created_at"] >= first["ended_at"] - 1
    assert second["ended_at"] is not None and second["not_started"] is None
    assert event["started_at"] == scenario.started
    # The run's heartbeat is every step's, and gone with the watch.
    assert {heartbeat_of(scenario.hook, s["body"]).name for s in scenario.steps} == {scenario.heartbeat().name}
    assert scenario.heartbeat().read() is None and scenario.leases() == []


def test_a_breach_after_the_second_step_started_removes_every_step(scenario):
    scenario.step("cache-slow", "NetworkChaos", delay(), 0, 120)
    scenario.step("api-down", "PodChaos", {"action": "pod-failure", "mode": "all", "selector": API}, 3, 60)
    scenario.create("cache-slow")
    event = first_event(scenario.monitor(130), timeout=120)
    gone_at = scenario.wait_gone()
    assert event["status"] == "breach", event
    assert event["breach_after_step"] == "api-down"
    assert event["steps"]["api-down"]["created_at"] <= event["breach"]["at"]
    assert event["removal_error"] == "" and event["removal_requested_at"] is not None
    assert event["removal_requested_at"] - event["breach"]["at"] < 3
    assert gone_at - event["removal_requested_at"] < 5 + MIN_EVENT_DELAY_S
    assert all(s["removal_requested_at"] is not None for s in event["steps"].values())


def test_a_halt_removes_every_step_and_no_later_step_starts(scenario):
    scenario.step("a", "NetworkChaos", delay(), 0, 120)
    scenario.step("b", "NetworkChaos", delay("2ms"), 1, 120)
    scenario.step("c", "NetworkChaos", delay("3ms"), 60, 30)
    scenario.create("a")

    async def halt_soon() -> None:
        await asyncio.sleep(5)
        await asyncio.to_thread(HaltFlag(ChaosMeshHook(), NAMESPACE).set, "carol", "scenario test stop")

    event = first_event(scenario.monitor(130), 90, halt_soon)
    assert event["status"] == "halted", event
    assert scenario.present() == []
    assert event["steps"]["b"]["created_at"] is not None, "b was due before the halt"
    assert event["steps"]["c"]["created_at"] is None
    assert "carol" in event["message"] or event["halt"]["halted_by"] == "carol"


def test_a_step_removed_from_outside_stops_the_scenario(scenario):
    scenario.step("a", "NetworkChaos", delay(), 0, 120)
    scenario.step("b", "NetworkChaos", delay("2ms"), 1, 120)
    scenario.step("c", "NetworkChaos", delay("3ms"), 40, 30)
    scenario.create("a")

    async def remove_a() -> None:
        await asyncio.sleep(5)
        await asyncio.to_thread(scenario.hook.delete, ChaosKind.NETWORK_CHAOS, scenario.steps[0]["body"]["metadata"]["name"], NAMESPACE)

    event = first_event(scenario.monitor(130), 90, remove_a)
    assert event["status"] == "gone", event
    assert event["message"].startswith("step a's fault was removed by someone outside this system")
    assert scenario.present() == []
    assert event["steps"]["b"]["removal_requested_at"] is not None
    assert event["steps"]["c"]["created_at"] is None


def test_a_refused_create_is_tried_again_at_the_next_check(scenario, sandbox):
    scenario.step("a", "NetworkChaos", delay(), 0, 6)
    scenario.step("b", "NetworkChaos", delay("2ms"), 2, 4)
    scenario.create("a")
    rule = sandbox.api_faults.inject(r".*/networkchaos$", "error", verb="POST", status=500, times=1)
    try:
        event = first_event(scenario.monitor(30), timeout=90)
        hits = {r["id"]: r["hits"] for r in sandbox.api_faults.list()}
    finally:
        sandbox.api_faults.clear()
    assert hits[rule["id"]] == 1
    assert event["status"] == "completed", event
    assert event["steps"]["b"]["created_at"] is not None


def test_unreadable_metrics_remove_every_step(scenario):
    scenario.step("a", "NetworkChaos", delay(), 0, 120)
    scenario.step("b", "NetworkChaos", delay("2ms"), 0, 120)
    scenario.create("a")
    scenario.create("b")
    trigger = scenario.monitor(130)
    trigger.prometheus_conn_id = "prometheus_dead"
    event = first_event(trigger, timeout=60)
    scenario.wait_gone()
    assert event["status"] == "breach" and event["breach"]["rule"] == "max_failed_reads"
    assert all(s["created_at"] is not None and s["removal_requested_at"] is not None for s in event["steps"].values())


def test_a_breach_at_the_first_check_records_and_removes_what_inject_created(scenario):
    """Before any look at the cluster has answered: the steps inject created count as started."""
    scenario.step("a", "NetworkChaos", delay(), 0, 120)
    scenario.step("b", "NetworkChaos", delay("2ms"), 30, 60)
    scenario.create("a")
    impossible = dict(THRESHOLDS, p95_latency=dict(THRESHOLDS["p95_latency"], rule="at_most", limit=0))
    trigger = scenario.monitor(130)
    trigger.thresholds = impossible
    event = first_event(trigger, timeout=60)
    scenario.wait_gone()
    assert event["status"] == "breach" and event["checks"] == 1, event
    assert event["breach_after_step"] == "a"
    assert event["steps"]["a"]["removal_requested_at"] is not None
    assert event["steps"]["b"]["created_at"] is None


def test_a_one_shot_step_that_ended_keeps_its_heartbeat_while_the_scenario_goes_on(scenario):
    """A pod kill stays `Run` for Chaos Mesh after its kill: the watchdog cannot tell it ended, so
    the monitor keeps its heartbeat; otherwise the watchdog would remove it and the monitor take
    that for the run being stopped."""
    worker = {"namespaces": ["booking"], "labelSelectors": {"app": "booking-worker"}}
    scenario.step("kill", "PodChaos", {"action": "pod-kill", "mode": "one", "selector": worker}, 0, 3)
    scenario.step("slow", "NetworkChaos", delay(), 0, 16)
    scenario.create("kill")
    scenario.create("slow")
    swept = []

    async def sweep_later() -> None:
        await asyncio.sleep(12)  # the kill's 3 s are long over, its last beat would be 9 s old
        swept.append(await asyncio.to_thread(sweep, ChaosMeshHook(), 5.0))
        swept.append(await asyncio.to_thread(scenario.leases))

    event = first_event(scenario.monitor(30), 90, sweep_later)
    assert swept[0].removed == [] and swept[0].checked >= 2, swept[0]
    # One heartbeat for the run, not one per object.
    assert swept[1] == [scenario.heartbeat().name], swept[1]
    assert event["status"] == "completed", event
    assert event["steps"]["kill"]["ended_at"] is not None
