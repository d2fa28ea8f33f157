"""A scenario's run-time target check (`targets.verify_scenario_targets`) against the emulated API
server: every step resolved, protected pods of any level refused, and the pods of the steps
standing together counted as a union; and the static combined count, as a property, never below
what the API server's own resolution lets the steps touch."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos_engineering.catalogue import load_catalogue, load_scenarios
from chaos_engineering.chaosmesh.spec import parse_spec
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.policy import Tier
from chaos_engineering.scenario import Scenario, ScenarioStep, StepEvent
from chaos_engineering.scenario_rules import check_scenario, step_fixed_pods
from chaos_engineering.targets import verify_scenario_targets
from sandbox.platform.topology import ZONE_LABEL
from tests.sandbox.kubeapi_support import CHAOS_NS, serve

kube = pytest.fixture(scope="module", name="kube")(serve)
CATALOGUE = load_catalogue()
POLICY = CATALOGUE.policy
SCENARIOS = load_scenarios(CATALOGUE).scenarios


@pytest.fixture(scope="module")
def cluster(kube) -> ChaosMeshHook:
    connection = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(kube.kubeconfig), "namespace": CHAOS_NS}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_KUBERNETES_SCENARIOS", json.dumps(connection))
        yield ChaosMeshHook("kubernetes_scenarios")


def booking_pods(cluster: ChaosMeshHook) -> dict[str, str]:
    """Every booking pod's name and zone, as the API server lists them."""
    return {p.metadata.name: p.metadata.labels[ZONE_LABEL] for p in cluster.list_pods("booking")}


def test_the_shipped_scenarios_pass_and_the_zone_outage_touches_every_booking_pod(cluster):
    for name, scenario in SCENARIOS.items():
        check = verify_scenario_targets(cluster, POLICY, scenario)
        assert check.problems == [], name
    outage = verify_scenario_targets(cluster, POLICY, SCENARIOS["booking-zone-outage"])
    pods = booking_pods(cluster)
    in_zone_a = sorted(name for name, zone in pods.items() if zone == "zone-a")
    assert sorted(p.name for p in outage.steps["zone-partition"].targets) == in_zone_a
    assert sorted(p.name for p in outage.steps["zone-partition"].peers) == sorted(set(pods) - set(in_zone_a))
    assert sorted(p.name for p in outage.steps["zone-pods-fail"].targets) == in_zone_a
    assert [p.name for p in outage.steps["database-failover"].targets] == ["database-0"]
    # The union, not the sum: the failing zone's pods and the primary are among the partitioned ones.
    assert outage.peak == len(pods) <= POLICY.tiers[Tier.HIGH].scenario_pod_limit
    assert SCENARIOS["cache-then-database"] and verify_scenario_targets(cluster, POLICY, SCENARIOS["cache-then-database"]).peak == 1


def test_steps_standing_together_beyond_the_limit_are_refused_by_their_union(cluster):
    policy = POLICY.model_copy(update={"tiers": {**POLICY.tiers, Tier.HIGH: POLICY.tiers[Tier.HIGH].model_copy(update={"scenario_max_pods": 11})}})
    check = verify_scenario_targets(cluster, policy, SCENARIOS["booking-zone-outage"])
    total = len(booking_pods(cluster))
    assert check.problems == [
        f"steps {standing} standing together from {start} would touch {total} pods ({total} resolved, 0 picked at random), "
        "beyond the high tier's scenario maximum of 11"
        for standing, start in (("'zone-partition'", "0s"), ("'zone-partition', 'zone-pods-fail'", "20s"),
                                ("'zone-partition', 'zone-pods-fail', 'database-failover'", "40s"))
    ]


def _step(name: str, kind: str, spec: dict, tier: Tier = Tier.HIGH, **start) -> ScenarioStep:
    parsed, issues = parse_spec(kind, spec)
    assert not issues, issues
    experiment = dataclasses.replace(CATALOGUE.get("database-failover"), name=name, kind=kind, spec=parsed, tier=tier)
    return ScenarioStep(name, experiment, **start)


def _scenario(*steps: ScenarioStep, tier: Tier = Tier.HIGH) -> Scenario:
    return Scenario("s", tier, "t", "", "h", tuple(steps), Path("s.yaml"))


def test_a_step_reaching_a_protected_pod_of_any_level_is_refused(cluster):
    # Level medium: a high-tier experiment may not touch it, a low one could; a scenario never.
    email = {"namespaces": ["notifications"], "labelSelectors": {"app": "email-service"}}
    step = _step("mail-down", "PodChaos", {"action": "pod-kill", "mode": "one", "selector": email}, tier=Tier.LOW)
    check = verify_scenario_targets(cluster, POLICY, _scenario(step, tier=Tier.LOW))
    pods = sorted(p.metadata.name for p in cluster.list_pods("notifications", label_selector="app=email-service"))
    assert check.problems == [
        f"step 'mail-down': notifications/{pod} carries app=email-service, app.kubernetes.io/name=email-service of protected "
        "service 'email-service' (level medium)"
        for pod in pods
    ]


def test_a_step_with_no_ready_pod_is_refused(cluster):
    nothing = {"namespaces": ["booking"], "labelSelectors": {"app": "no-such-service"}}
    check = verify_scenario_targets(cluster, POLICY, _scenario(_step("void", "PodChaos", {"action": "pod-kill", "mode": "one", "selector": nothing})))
    assert check.problems == ["step 'void': the selector resolves to no ready pod (0 pod(s) found)"]


# The static check against the API server's own resolution: for any scenario of fixed-count
# catalogue steps the static check passes, the union the run-time check resolves never exceeds
# the static count it was allowed by.
FIXED = [
    name for name, e in sorted(CATALOGUE.experiments.items())
    if e.target_service not in POLICY.protected_services and step_fixed_pods(ScenarioStep(name, e)) is not None
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_static_count_bounds_the_resolved_union(cluster, data):
    count = data.draw(st.integers(1, 5))
    steps = []
    for index in range(count):
        experiment = CATALOGUE.get(data.draw(st.sampled_from(FIXED)))
        start = {}
        if index and data.draw(st.booleans()):
            start = {"after": f"s{data.draw(st.integers(0, index - 1))}", "when": data.draw(st.sampled_from(list(StepEvent))),
                     "offset": float(data.draw(st.integers(0, 120)))}
        steps.append(ScenarioStep(f"s{index}", experiment, **start))
    scenario = Scenario("generated", Tier.HIGH, "t", "", "h", tuple(steps), Path("s.yaml"))
    timeline = scenario.timeline(POLICY)
    static_peak = max(
        sum(step_fixed_pods(s) for s in steps if timeline[s.name].start <= w.start < timeline[s.name].end) for w in timeline.values()
    )
    check = verify_scenario_targets(cluster, POLICY, scenario)
    assert check.peak <= static_peak
    combined = [i for i in check_scenario(scenario, POLICY) if i.rule == "combined-blast-radius"]
    over = [p for p in check.problems if "scenario maximum" in p]
    if not combined:
        assert not over, (over, static_peak)
