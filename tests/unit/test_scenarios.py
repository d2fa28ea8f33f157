"""Scenarios (include/scenarios): each refusal's exact message, the timeline, and the rules stated as
properties over generated scenarios (references, cycles, the pods steps touch together)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos_engineering.catalogue import load_catalogue, load_scenarios
from chaos_engineering.cli import main
from chaos_engineering.policy import default_include_dir
from chaos_engineering.render import run_key
from chaos_engineering.scenario import ScenarioStep
from chaos_engineering.scenario_rules import step_fixed_pods
from tests.unit.catalogue_support import DELETE, base_policy, mutated, service_labels, write_yaml

CATALOGUE = load_catalogue()
VALID = ", ".join(sorted(CATALOGUE.experiments))


def base_scenario() -> dict[str, Any]:
    return {
        "name": "cache-then-database",
        "tier": "medium",
        "title": "Cache failure followed by database I/O latency",
        "hypothesis": "Bookings keep succeeding.",
        "steps": [
            {"name": "cache-down", "experiment": "cache-failure"},
            {"name": "database-slow", "experiment": "database-io-latency", "start": {"after": "cache-down", "when": "ended", "offset": "30s"}},
        ],
    }


def notifications_step(tier: str = "high") -> dict[str, Any]:
    """An inline step a high-tier experiment may run alone: booking-confirmation's level is high."""
    return {
        "name": "confirmations-down",
        "experiment": {
            "name": "booking-confirmation-pod-kill",
            "tier": tier,
            "title": "Kill one booking-confirmation pod",
            "hypothesis": "Confirmations are retried.",
            "target": {"service": "booking-confirmation"},
            "chaos": {
                "kind": "PodChaos",
                "spec": {
                    "action": "pod-kill",
                    "mode": "one",
                    "selector": {"namespaces": ["notifications"], "labelSelectors": service_labels("booking-confirmation")},
                    "duration": "60s",
                },
            },
        },
    }


def issues_of(tmp_path: Path, scenario: Any, policy: Any = None) -> list[str]:
    path = write_yaml(tmp_path / "s.yaml", scenario)
    catalogue = CATALOGUE if policy is None else load_catalogue(None, write_yaml(tmp_path / "policy.yaml", policy))
    return [str(issue).replace(str(path), "s.yaml", 1) for issue in load_scenarios(catalogue, [path]).issues]


def with_step(scenario: dict[str, Any], index: int, **changes: Any) -> dict[str, Any]:
    result = copy.deepcopy(scenario)
    result["steps"][index].update(changes)
    return result


def test_the_shipped_scenarios_are_valid_and_their_timelines_as_documented():
    book = load_scenarios(CATALOGUE)
    assert book.issues == []
    assert sorted(book.scenarios) == ["booking-api-slow-worker-starved", "booking-zone-outage", "cache-then-database"]
    policy = CATALOGUE.policy
    spans = {name: {step: (w.start, w.end) for step, w in s.timeline(policy).items()} for name, s in book.scenarios.items()}
    assert spans["cache-then-database"] == {"cache-down": (0, 120), "database-slow": (150, 390)}
    assert spans["booking-zone-outage"] == {"zone-partition": (0, 120), "zone-pods-fail": (20, 110), "database-failover": (40, 70)}
    assert spans["booking-api-slow-worker-starved"] == {"worker-starved": (0, 300), "api-slow": (30, 150), "api-slower": (150, 270)}
    assert {name: s.tier.value for name, s in book.scenarios.items()} == {
        "booking-api-slow-worker-starved": "medium", "booking-zone-outage": "high", "cache-then-database": "medium"
    }


REFUSALS = [
    pytest.param(
        with_step(base_scenario(), 1, experiment="nope"),
        [f"s.yaml:9: steps[1].experiment: [unknown-experiment] 'nope' is not a valid experiment of the catalogue (valid: {VALID}); "
         "name one, or write the experiment here as a mapping"],
        id="unknown-experiment",
    ),
    pytest.param(
        with_step(base_scenario(), 1, start={"after": "cache"}),
        ["s.yaml:11: steps[1].start.after: [step-reference] no step named 'cache' in this scenario (steps: cache-down, database-slow)"],
        id="unknown-step",
    ),
    pytest.param(
        with_step(base_scenario(), 1, start={"after": "database-slow"}),
        ["s.yaml:11: steps[1].start.after: [step-reference] step 'database-slow' cannot start after itself"],
        id="self-reference",
    ),
    pytest.param(
        with_step(base_scenario(), 0, start={"after": "database-slow"}),
        ["s.yaml:9: steps[0].start.after: [step-cycle] steps cache-down -> database-slow -> cache-down each start after the next, "
         "so none can start; start one of them from the scenario's start (leave out `after`)"],
        id="cycle",
    ),
    pytest.param(
        with_step(base_scenario(), 1, name="cache-down", start={}),
        ["s.yaml:8: steps[1].name: [duplicate-step] step 'cache-down' is named twice; name each step once"],
        id="duplicate-step",
    ),
    pytest.param(
        {**base_scenario(), "tier": "low"},
        [
            "s.yaml:7: steps[0].experiment: [step-tier] step 'cache-down' runs 'cache-failure', a medium-tier experiment; a low-tier "
            "scenario may only run experiments of its tier or below (its approvals and window would be too weak): raise the "
            "scenario's tier to medium",
            "s.yaml:9: steps[1].experiment: [step-tier] step 'database-slow' runs 'database-io-latency', a medium-tier experiment; a "
            "low-tier scenario may only run experiments of its tier or below (its approvals and window would be too weak): raise "
            "the scenario's tier to medium",
        ],
        id="step-tier",
    ),
    pytest.param(
        with_step(base_scenario(), 1, start={"after": "cache-down", "when": "ended", "offset": "10m"}),
        ["s.yaml:5: steps: [scenario-max-duration] the steps span 16m (step 'database-slow' is planned to end last), beyond "
         "the medium tier's scenario maximum of 12m (tiers.medium.scenario_max_duration): shorten steps or their offsets"],
        id="span",
    ),
    pytest.param(
        {**base_scenario(), "tier": "high", "steps": [notifications_step()]},
        [
            "s.yaml:13: steps[0].experiment.target.service: [scenario-protected-target] step 'confirmations-down' targets "
            "protected service 'booking-confirmation' (level high); a scenario's steps may touch no protected service: run it "
            "as an experiment of its own",
            "s.yaml:19: steps[0].experiment.chaos.spec.selector: [scenario-protected-reach] step 'confirmations-down' could select "
            "a pod carrying app=booking-confirmation, app.kubernetes.io/name=booking-confirmation of protected service "
            "'booking-confirmation' (level high); a scenario's steps may reach no protected service of any level: pin the "
            "selector's labels to the step's own service",
        ],
        id="protected",
    ),
    pytest.param(
        with_step(base_scenario(), 0, experiment=mutated(notifications_step("medium")["experiment"], {"chaos.spec.mode": "sometimes"})),
        ["s.yaml:18: steps[0].experiment.chaos.spec.mode: [enum] 'sometimes' is not a valid mode; use one of: one, all, "
         "fixed, fixed-percent, random-max-percent."],
        id="inline-step-checked-like-a-file",
    ),
    pytest.param(
        with_step(base_scenario(), 1, start={"after": "cache-down", True: "ended"}),
        ["s.yaml:10: steps[1].start: [unknown-field] a key YAML reads as true or false (on, off, yes, no): to say when a step "
         "starts after another, write `when: started` or `when: ended`"],
        id="yaml-on-key",
    ),
    pytest.param(
        {**base_scenario(), "thresholds": {"p95_latency": {"limit": 5000}}},
        ["s.yaml:16: thresholds.p95_latency.limit: [loosened-threshold] 5000 is looser than the policy's 3000 (at_most); an "
         "experiment may only tighten a limit"],
        id="loosened-threshold",
    ),
    pytest.param({**base_scenario(), "steps": []}, ["s.yaml:5: steps: [range] steps: list should have at least 1 item after validation, not 0."], id="no-step"),
]


@pytest.mark.parametrize(("scenario", "expected"), REFUSALS)
def test_each_refusal_names_file_line_field_and_rule(tmp_path, scenario, expected):
    assert issues_of(tmp_path, scenario) == expected


def test_a_tier_without_scenario_max_duration_runs_no_scenario(tmp_path):
    policy = mutated(base_policy(), {"tiers.medium.scenario_max_duration": DELETE})
    assert issues_of(tmp_path, base_scenario(), policy) == [
        "s.yaml:2: tier: [scenario-tier] the policy's medium tier sets no scenario_max_duration, so it runs no scenario; set "
        "tiers.medium.scenario_max_duration in the policy or choose another tier"
    ]


def test_steps_standing_together_count_their_pods_against_the_scenario_limit(tmp_path):
    together = with_step(base_scenario(), 1, start={"after": "cache-down"})
    assert issues_of(tmp_path, together) == []  # 1 + 1 within medium's scenario_max_pods 2
    # Unset, the limit is the tier's blast_radius.max_pods (1 for medium).
    policy = mutated(base_policy(), {"tiers.medium.scenario_max_pods": DELETE})
    assert issues_of(tmp_path, together, policy) == [
        "s.yaml:5: steps: [combined-blast-radius] steps 'cache-down', 'database-slow' stand together from 0s: 1 + 1 = 2 pods "
        "(both sides of network faults counted) exceed the medium tier's scenario maximum of 1 (tiers.medium.scenario_max_pods): "
        "start one step after another ends (start: {after: <step>, when: ended}) or touch fewer pods"
    ]
    assert issues_of(tmp_path, base_scenario(), policy) == []  # one after the other ends: never together


def test_two_files_may_not_share_a_scenario_name(tmp_path):
    first, second = write_yaml(tmp_path / "a.yaml", base_scenario()), write_yaml(tmp_path / "b.yaml", base_scenario())
    issues = load_scenarios(CATALOGUE, [first, second]).issues
    assert [(i.file, i.field, i.rule, i.line) for i in issues] == [(str(first), "name", "duplicate-name", 1), (str(second), "name", "duplicate-name", 1)]


def test_an_invalid_policy_lists_no_scenario(tmp_path):
    policy = write_yaml(tmp_path / "policy.yaml", mutated(base_policy(), {"version": 2}))
    book = load_scenarios(load_catalogue(None, policy), [write_yaml(tmp_path / "s.yaml", base_scenario())])
    assert book.scenarios == {}


# --- chaosctl validate covers scenarios ------------------------------------------------------


def test_chaosctl_validate_reads_scenarios_by_default_and_by_path(tmp_path, capsys):
    assert main(["validate"]) == 0
    experiments = len(list((default_include_dir() / "experiments").rglob("*.yaml")))
    assert capsys.readouterr().out.splitlines()[-1] == f"{experiments + 3} file(s), {experiments} valid experiment(s), 3 valid scenario(s): valid"

    broken = write_yaml(tmp_path / "broken.yaml", with_step(base_scenario(), 1, experiment="nope"))
    experiment = default_include_dir() / "experiments" / "low" / "booking-api-pod-kill.yaml"
    assert main(["validate", "--format", "json", str(broken), str(experiment)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["valid"], report["experiments"], report["scenarios"]) == (False, ["booking-api-pod-kill"], [])
    assert [(i["file"], i["field"], i["rule"], i["line"]) for i in report["issues"]] == [(str(broken), "steps[1].experiment", "unknown-experiment", 9)]

    assert main(["validate", "--format", "github", str(broken)]) == 1
    assert capsys.readouterr().out.startswith(f"::error file={broken},line=9,title=unknown-experiment::steps[1].experiment: 'nope'")


# --- properties ------------------------------------------------------------------------------

def _step(step: dict[str, Any]) -> ScenarioStep:
    return ScenarioStep(step["name"], CATALOGUE.experiments[step["experiment"]])


# Experiments of the medium tier or below whose every side fixes its pod count, on unprotected services.
FIXED_EXPERIMENTS = [
    name
    for name, e in sorted(CATALOGUE.experiments.items())
    if e.tier.value != "high" and e.target_service not in CATALOGUE.policy.protected_services and step_fixed_pods(ScenarioStep(name, e)) is not None
]


@st.composite
def scenarios(draw: st.DrawFn, acyclic: bool) -> dict[str, Any]:
    """A medium scenario of 1-6 catalogue steps; each may start after another (an earlier one when
    `acyclic`, any other one otherwise), at an event and an offset."""
    count = draw(st.integers(1, 6))
    steps = []
    for index in range(count):
        step: dict[str, Any] = {"name": f"s{index}", "experiment": draw(st.sampled_from(FIXED_EXPERIMENTS))}
        others = list(range(index)) if acyclic else [i for i in range(count) if i != index]
        # Mostly referenced (cycles need several), offsets often 0 (steps meeting end to start).
        if others and draw(st.integers(0, 4)):
            step["start"] = {
                "after": f"s{draw(st.sampled_from(others))}",
                "when": draw(st.sampled_from(["started", "ended"])),
                "offset": f"{draw(st.one_of(st.just(0), st.integers(0, 300)))}s",
            }
        steps.append(step)
    return {**base_scenario(), "name": "generated", "steps": steps}


def _event_times(scenario: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """The timeline computed independently: fixpoint over the steps in file order."""
    policy = CATALOGUE.policy
    times: dict[str, tuple[float, float]] = {}
    while len(times) < len(scenario["steps"]):
        for step in scenario["steps"]:
            start = step.get("start", {})
            after = start.get("after")
            if step["name"] in times or (after is not None and after not in times):
                continue
            offset = float(start.get("offset", "0s")[:-1])
            base = 0.0 if after is None else times[after][0 if start.get("when", "started") == "started" else 1]
            experiment = CATALOGUE.experiments[step["experiment"]]
            duration = getattr(experiment.spec, "duration", None)
            length = policy.tiers[experiment.tier].max_duration if duration is None else _seconds(duration)
            times[step["name"]] = (base + offset, base + offset + length)
    return times


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios(acyclic=True))
def test_the_timeline_starts_each_step_at_its_event_plus_offset(tmp_path, scenario):
    path = write_yaml(tmp_path / "s.yaml", scenario)
    book = load_scenarios(CATALOGUE, [path])
    expected = _event_times(scenario)
    loaded = book.scenarios.get("generated")
    issues = [i.rule for i in book.issues]
    assert set(issues) <= {"scenario-max-duration", "combined-blast-radius"}
    span = max(end for _, end in expected.values())
    assert ("scenario-max-duration" in issues) == (span > CATALOGUE.policy.tiers["medium"].scenario_max_duration)
    # The pods of the steps standing at every boundary of the timeline, against the limit.
    moments = sorted({t for window in expected.values() for t in window})
    most = max(
        sum(step_fixed_pods(_step(s)) for s in scenario["steps"] if expected[s["name"]][0] <= t < expected[s["name"]][1])
        for t in moments
    )
    assert ("combined-blast-radius" in issues) == (most > CATALOGUE.policy.tiers["medium"].scenario_pod_limit)
    if not issues:
        assert {name: (w.start, w.end) for name, w in loaded.timeline(CATALOGUE.policy).items()} == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios(acyclic=False))
def test_a_scenario_is_refused_for_a_cycle_exactly_when_its_references_form_one(tmp_path, scenario):
    after = {s["name"]: s.get("start", {}).get("after") for s in scenario["steps"]}

    def on_cycle(name: str) -> bool:
        seen, current = set(), after[name]
        while current is not None and current not in seen:
            if current == name:
                return True
            seen.add(current)
            current = after[current]
        return False

    def cycle_of(name: str) -> frozenset[str]:
        members, current = {name}, after[name]
        while current != name:
            members.add(current)
            current = after[current]
        return frozenset(members)

    cycles = {cycle_of(name) for name in after if on_cycle(name)}
    issues = load_scenarios(CATALOGUE, [write_yaml(tmp_path / "s.yaml", scenario)]).issues
    refused = [i for i in issues if i.rule == "step-cycle"]
    # One issue per cycle, at a step on it, naming every step of it.
    named = [frozenset(i.message.split(" each ")[0].removeprefix("steps ").split(" -> ")) for i in refused]
    assert sorted(named, key=sorted) == sorted(cycles, key=sorted)
    for issue, members in zip(refused, named):
        assert issue.field.removesuffix(".start.after") in {f"steps[{int(m[1:])}]" for m in members}


def test_chaosctl_render_prints_every_step_object_of_a_scenario(capsys):
    assert main(["render", "cache-then-database", "--dag-id", "d", "--run-id", "r"]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [(d["kind"], d["metadata"]["name"], d["metadata"]["labels"]["airflow-chaos.dev/step"]) for d in documents] == [
        ("PodChaos", f"cache-down-{run_key('d', 'r')[:8]}", "cache-down"),
        ("IOChaos", f"database-slow-{run_key('d', 'r')[:8]}", "database-slow"),
    ]
    assert {d["metadata"]["labels"]["airflow-chaos.dev/scenario"] for d in documents} == {"cache-then-database"}
