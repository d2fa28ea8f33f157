"""A scenario's inject and monitor against the sandbox: every step verified at the point of no return,
only the first steps created, the monitor rebuilding later steps from the file and what inject
verified (never from XCom), and refusing when they differ."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
from chaos_engineering.catalogue import load_catalogue, load_scenarios
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.heartbeat import INJECT_HOLDER_PREFIX, ScenarioHeartbeat, heartbeat_of
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.injections import InjectionRecord
from chaos_engineering.operators.scenario_run import InjectScenarioOperator, ScenarioMonitorSensor, scenario_digest
from chaos_engineering.render import (
    ANNOTATION_APPROVALS,
    ANNOTATION_DIGEST,
    ANNOTATION_SCENARIO_DIGESTS,
    ANNOTATION_SCENARIO_STARTED,
    LABEL_SCENARIO,
    LABEL_STEP,
    render_scenario_objects,
)
from chaos_engineering.scenario_monitor import ScenarioMonitorTrigger
from chaos_engineering.targets import pod_ready
from chaos_engineering.verification import object_digest
from tests.integration.chaos_support import NAMESPACE
from tests.integration.inject_support import Records, Run, made_runs, new_run, open_include
from tests.integration.test_inject import approved

DAG_ID = "chaos_scenario_cache-then-database"
SCENARIO = "cache-then-database"


@pytest.fixture(scope="module")
def include(tmp_path_factory, connections) -> Iterator[None]:
    yield from open_include(tmp_path_factory, connections)


@pytest.fixture
def runs(include) -> Iterator[list[Run]]:
    yield from made_runs()
    # The scenario's first step fails a cache pod: the next test (here or in another module on this
    # worker's sandbox) needs it ready again.
    wait_ready("booking")


def wait_ready(namespace: str, timeout: float = 120) -> None:
    hook, deadline = ChaosMeshHook(), time.monotonic() + timeout
    while not_ready := [p.metadata.name for p in hook.list_pods(namespace) if not pod_ready(p)]:
        assert time.monotonic() < deadline, f"pods not ready after {timeout} s: {not_ready}"
        time.sleep(1)


def digests(run: Run) -> dict[str, str]:
    catalogue = load_catalogue()
    scenario = load_scenarios(catalogue).scenarios[SCENARIO]
    return {s: object_digest(m) for s, m in render_scenario_objects(scenario, catalogue.policy, dag_id=run.dag_id, run_id=run.run_id).items()}


def body_showing(*shown: str) -> dict:
    record = approved("sre-oncall", shown[0])
    return record | {"body": "\n".join(f"- Step, digest `{d}`" for d in shown)}


def inject(run: Run, records: Records, plan: dict | None = None) -> dict:
    operator = InjectScenarioOperator(task_id="inject", scenario=SCENARIO, tier="medium", plan=plan or {"scenario": SCENARIO})
    operator.airflow_api = records
    return operator.execute(run.context)


def sensor() -> ScenarioMonitorSensor:
    return ScenarioMonitorSensor(task_id="monitor", scenario=SCENARIO, plan={}, fault={}, preflight={})


def test_inject_verifies_every_step_and_creates_only_the_first(runs):
    run = new_run(runs, DAG_ID, SCENARIO)
    steps = digests(run)
    fault = inject(run, Records({"approve_sre": body_showing(*steps.values())}))
    [obj] = run.objects()
    meta = obj["metadata"]
    assert meta["labels"][LABEL_SCENARIO] == SCENARIO and meta["labels"][LABEL_STEP] == "cache-down"
    assert meta["annotations"][ANNOTATION_DIGEST] == steps["cache-down"]
    assert json.loads(meta["annotations"][ANNOTATION_SCENARIO_DIGESTS]) == steps
    assert '"user": "sre-oncall"' in meta["annotations"][ANNOTATION_APPROVALS]
    assert fault["kind"] == "Scenario" and fault["digests"] == steps
    assert fault["started_at"] == float(meta["annotations"][ANNOTATION_SCENARIO_STARTED])
    assert [o["step"] for o in fault["objects"]] == ["cache-down"]
    # One injection per run: its claim is the scenario's digest of every step.
    assert InjectionRecord(run.cluster, NAMESPACE, run.key).read().digest == scenario_digest(steps)
    # The hand-over beat is the run's one heartbeat, which every step's object shares.
    heartbeat = heartbeat_of(run.cluster, obj)
    assert isinstance(heartbeat, ScenarioHeartbeat) and heartbeat.name == f"chaos-heartbeat-scenario-{run.key}"
    beat = heartbeat.read()
    assert beat is not None and beat.holder.startswith(INJECT_HOLDER_PREFIX)

    # The monitor rebuilds the later step from the file and what inject wrote: same digest,
    # same approvals, due 30 s after the first ends (2 m), the span from the scenario's start.
    with pytest.raises(TaskDeferred) as deferred:
        sensor().execute(run.context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, ScenarioMonitorTrigger)
    by_step = {s["step"]: s for s in trigger.steps}
    later = by_step["database-slow"]
    assert later["body"]["metadata"]["name"] == f"database-slow-{run.key[:8]}"
    assert later["body"]["metadata"]["annotations"][ANNOTATION_DIGEST] == steps["database-slow"]
    assert later["body"]["metadata"]["annotations"][ANNOTATION_APPROVALS] == meta["annotations"][ANNOTATION_APPROVALS]
    assert later["start_at"] - trigger.started_at == pytest.approx(150)
    assert (later["after"], later["when"]) == ("cache-down", "ended")
    # The step inject created stands from the start; the later one is the trigger's to create.
    assert by_step["cache-down"]["created_at"] is not None and later["created_at"] is None
    assert trigger.span_end - trigger.started_at == pytest.approx(390)


def test_an_approval_that_did_not_show_every_steps_digest_injects_nothing(runs):
    run = new_run(runs, DAG_ID, SCENARIO)
    steps = digests(run)
    with pytest.raises(AirflowFailException) as refused:
        inject(run, Records({"approve_sre": body_showing(steps["cache-down"])}))
    assert "step database-slow: " in str(refused.value)
    assert f"but the object to create now is {steps['database-slow']}" in str(refused.value)
    assert run.objects() == []


def test_a_dry_run_or_an_edited_plan_injects_nothing(runs):
    run = new_run(runs, DAG_ID, SCENARIO, dry_run=True)
    steps = digests(run)
    with pytest.raises(AirflowFailException) as refused:
        inject(run, Records({"approve_sre": body_showing(*steps.values())}), plan={"scenario": "booking-zone-outage"})
    message = str(refused.value)
    assert "this run was triggered as a dry run: it never injects" in message
    assert "this DAG runs scenario 'cache-then-database', but its plan now names 'booking-zone-outage' (the plan's XCom was changed)" in message
    assert run.objects() == []


def test_the_monitor_refuses_steps_that_differ_from_what_inject_verified(runs):
    run = new_run(runs, DAG_ID, SCENARIO)
    steps = digests(run)
    inject(run, Records({"approve_sre": body_showing(*steps.values())}))
    [obj] = run.objects()
    # Someone rewrote the record of what was verified (or the catalogue changed since inject).
    forged = dict(steps, **{"database-slow": "sha256:" + "0" * 64})
    run.cluster.patch(ChaosKind(obj["kind"]), obj["metadata"]["name"], NAMESPACE,
                      {"metadata": {"annotations": {ANNOTATION_SCENARIO_DIGESTS: json.dumps(forged)}}})
    with pytest.raises(AirflowFailException, match="differs from what inject verified \\(steps database-slow\\): no later step starts; removing every step"):
        sensor().execute(run.context)
