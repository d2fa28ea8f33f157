"""Shipped scenarios, run as the product runs them on the session's sandbox: the steps rendered
from include/, the first created, and the scenario's kill switch (`ScenarioMonitorTrigger`, 1 s
checks) starting the others. The cascade holds every threshold; in the zone outage the platform
routes around zone-a (sandbox/CONTRACT.md, "Routing around failures"), so the run completes; one
booking-api pod aborting still breaches."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from chaos_engineering.catalogue import load_catalogue, load_scenarios
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.heartbeat import heartbeat_of
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.hooks.prometheus import PrometheusHook
from chaos_engineering.render import LABEL_MANAGED_BY, LABEL_RUN_KEY, MANAGED_BY, render_scenario_objects
from chaos_engineering.scenario_monitor import ScenarioMonitorTrigger
from chaos_engineering.targets import pod_ready
from chaos_engineering.triggers import created_at
from chaos_engineering.verification import scenario_thresholds
from sandbox.steady import wait_steady

CATALOGUE = load_catalogue()
POLICY = CATALOGUE.policy
SCENARIOS = load_scenarios(CATALOGUE).scenarios
ZONE_OUTAGE = SCENARIOS["booking-zone-outage"]
CASCADE = SCENARIOS["booking-api-slow-worker-starved"]
NAMESPACE = POLICY.chaos_namespace
# system_health cannot hold here whatever the routing: its readiness half counts zone-a's four
# failed booking pods of 23 (50 * 19/23 = 41.3, so at most 91.3 against the policy's 95) while
# the zone-pods-fail step stands. It is a question for the policy, not for the platform.
NOT_HOLDABLE = ("system_health",)
# tests/e2e/test_include.py's `booking-api-abort`: one booking-api pod aborts every request.
BOOKING_API_ABORT = {
    "mode": "one", "target": "Request", "port": 8080, "path": "*", "abort": True, "duration": "2m",
    "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "booking-api", "app.kubernetes.io/name": "booking-api"}},
}


class Run:
    """The steps of one run as the scenario's monitor sensor hands them to its trigger; every
    object it may create, and its heartbeat, is deleted after."""

    def __init__(self) -> None:
        self.hook = ChaosMeshHook()
        self.run_id = f"zone-outage-{uuid.uuid4().hex[:8]}"
        self.started = time.time()
        self.steps: list[dict] = []

    def add(self, name: str, body: dict, start_s: float, duration_s: float, after: str | None = None, when: str | None = None) -> None:
        self.steps.append({"step": name, "body": body, "start_at": self.started + start_s, "duration_s": duration_s,
                           "after": after, "when": when, "action": body["spec"].get("action"), "created_at": None})

    def create_first(self) -> None:
        """What inject does: the first step's object, before the monitor starts."""
        first = self.steps[0]
        first["created_at"] = created_at(self.hook.create(first["body"]))

    def monitor(self, span_s: float, thresholds: dict) -> ScenarioMonitorTrigger:
        return ScenarioMonitorTrigger(
            prometheus_conn_id="prometheus_default", kubernetes_conn_id="kubernetes_default", steps=self.steps,
            started_at=self.started, span_end=self.started + span_s, namespace=NAMESPACE, thresholds=thresholds,
            baseline=baseline(thresholds), interval_s=1, max_failed_reads=2, chaos_namespace=NAMESPACE,
        )

    def cleanup(self) -> None:
        for step in self.steps:
            kind, name = step["body"]["kind"], step["body"]["metadata"]["name"]
            self.hook.delete(ChaosKind(kind), name, NAMESPACE)
            heartbeat_of(self.hook, step["body"]).delete()


@pytest.fixture
def run(connections) -> Iterator[Run]:
    wait_steady(POLICY, window_s=20)
    made = Run()
    yield made
    made.cleanup()
    # The next test on this worker's sandbox needs every pod back.
    wait_ready("booking")


def baseline(thresholds: dict) -> dict[str, float]:
    hook = PrometheusHook()
    return {name: hook.query(threshold["query"]) for name, threshold in thresholds.items()}


def first_event(trigger: ScenarioMonitorTrigger, timeout: float) -> dict:
    async def watch() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(watch(), timeout))


def wait_ready(namespace: str, timeout: float = 120) -> None:
    hook, deadline = ChaosMeshHook(), time.monotonic() + timeout
    while not_ready := [p.metadata.name for p in hook.list_pods(namespace) if not pod_ready(p)]:
        assert time.monotonic() < deadline, f"pods not ready after {timeout} s: {not_ready}"
        time.sleep(1)


def run_shipped(run: Run, scenario, thresholds: dict) -> dict:
    """Render `scenario`'s steps at their planned times, create the first, and watch the whole span
    with `thresholds`: the monitor's last event."""
    manifests = render_scenario_objects(scenario, POLICY, dag_id=f"sandbox-{scenario.name}", run_id=run.run_id)
    for name, window in scenario.timeline(POLICY).items():
        step = scenario.step(name)
        run.add(name, manifests[name], window.start, window.end - window.start, step.after,
                step.when.value if step.after else None)
    run.create_first()
    return first_event(run.monitor(scenario.span(POLICY), thresholds), timeout=scenario.span(POLICY) + 90)


def assert_held(event: dict, scenario) -> None:
    assert event["status"] == "completed", event.get("message", event)
    assert all(event["steps"][s]["created_at"] is not None for s in scenario.timeline(POLICY)), event["steps"]
    assert all(event["steps"][s]["ended_at"] is not None for s in scenario.timeline(POLICY)), event["steps"]
    assert event["checks"] >= scenario.span(POLICY) / 2


def test_the_shipped_zone_outage_holds_every_threshold_from_the_partitions_creation(run):
    assert list(ZONE_OUTAGE.timeline(POLICY)) == ["zone-partition", "zone-pods-fail", "database-failover"]
    thresholds = {n: t for n, t in scenario_thresholds(ZONE_OUTAGE, POLICY).items() if n not in NOT_HOLDABLE}
    assert thresholds["error_rate"]["limit"] == 0.5 and len(thresholds) == len(POLICY.safety.thresholds) - len(NOT_HOLDABLE)
    assert_held(run_shipped(run, ZONE_OUTAGE, thresholds), ZONE_OUTAGE)


def test_the_shipped_cascade_holds_every_threshold_through_its_three_steps(run):
    """The cascade a game day runs: a booking-worker pod CPU-starved for 5 minutes while one
    booking-api pod answers 150 ms, then 400 ms late. Every threshold of the policy (p95 tightened
    to 1.5 s by the scenario) holds: the run is *held*."""
    assert list(CASCADE.timeline(POLICY)) == ["worker-starved", "api-slow", "api-slower"]
    thresholds = scenario_thresholds(CASCADE, POLICY)
    assert thresholds["p95_latency"]["limit"] == 1500 and len(thresholds) == len(POLICY.safety.thresholds)
    assert_held(run_shipped(run, CASCADE, thresholds), CASCADE)


def test_one_booking_api_pod_aborting_still_breaches_error_rate(run):
    name = f"booking-api-abort-{run.run_id[-8:]}"
    body = {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "HTTPChaos",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_RUN_KEY: run.run_id}},
            "spec": BOOKING_API_ABORT}
    run.add("api-abort", body, 0, 120)
    run.create_first()
    thresholds = {n: t.model_dump(mode="json") for n, t in POLICY.safety.thresholds.items()}

    event = first_event(run.monitor(120, thresholds), timeout=90)

    assert event["status"] == "breach", event
    assert event["breach"]["threshold"] == "error_rate", event["breach"]
