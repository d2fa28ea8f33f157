"""Chaos Mesh's own example manifests as `chaos:` sections, and random files never crash validation."""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos_engineering.experiment import parse_experiment
from chaos_engineering.issues import ValidationIssue
from tests.conftest import shared_dir
from tests.unit.catalogue_support import base_experiment, base_policy, load

KINDS = ["podchaos", "networkchaos", "stresschaos", "iochaos", "httpchaos"]


def example_manifests() -> list[tuple[str, dict]]:
    root = shared_dir() / "chaos-mesh" / "examples"
    return [(p.name, yaml.safe_load(p.read_text())) for kind in KINDS for p in sorted((root / kind).glob("*.yaml"))]


def permissive_policy(namespaces: list[str]) -> dict:
    """The shipped policy with a high tier that allows every kind, action and mode in `namespaces`."""
    policy = base_policy()
    namespace = namespaces[0]
    policy["allowed_target_namespaces"] = namespaces
    policy["protected_services"] = {}
    # A label key no example uses, so no example's labels contradict the service's.
    policy["services"] = {"example": {"namespace": namespace, "labels": {"example.test/any": "yes"}}}
    high = policy["tiers"]["high"]
    high["max_duration"] = "1h"
    high["allowed_kinds"] = {
        "PodChaos": ["pod-kill", "pod-failure", "container-kill"],
        "NetworkChaos": ["netem", "delay", "loss", "duplicate", "corrupt", "partition", "bandwidth"],
        "StressChaos": ["cpu", "memory", "stress-ng"],
        "IOChaos": ["latency", "fault", "attrOverride", "mistake"],
        "HTTPChaos": ["abort", "delay", "replace", "patch"],
    }
    high["blast_radius"] = {"modes": ["one", "all", "fixed", "fixed-percent", "random-max-percent"], "max_pods": 100, "max_percent": 100}
    return policy


# What no policy accepts, even with no protected service: an externalTarget in a private range
# (10.0.0.0/8, where pod and Service IPs live) cannot be proven outside every protected service;
# a stressor the OOM killer spares (oomScoreAdj < 0) makes it kill other processes, of other pods
# too when the node runs out of memory.
UNSAFE_IN_EVERY_POLICY = {
    "cause-pod-oom.yaml": [("chaos.spec.stressors.memory.oomScoreAdj", "oom-score-adj")],
    "network-delay-with-external-target-example.yaml": [("chaos.spec.externalTargets[5]", "external-target-unprovable")],
    "network-partition-with-external-targets-example.yaml": [("chaos.spec.externalTargets[5]", "external-target-unprovable")],
}


def test_every_example_is_accepted_in_a_tier_that_allows_it(tmp_path):
    """Examples naming their namespaces are accepted unchanged. Examples relying on Chaos Mesh's
    implicit namespace (the object's own) are refused by `explicit-namespaces`: our policy never
    lets a selector default to the chaos namespace; and by nothing else, but for the unsafe
    fields listed in UNSAFE_IN_EVERY_POLICY."""
    examples = example_manifests()
    assert len(examples) == 20
    accepted = []
    for index, (file_name, manifest) in enumerate(examples):
        selectors = [manifest["spec"]["selector"]] + ([manifest["spec"]["target"]["selector"]] if isinstance(manifest["spec"].get("target"), dict) else [])
        namespaces = [n for s in selectors for n in s.get("namespaces", [])] or ["default"]
        experiment = base_experiment() | {"name": f"example-{index}", "tier": "high", "target": {"service": "example"}, "chaos": manifest}
        parsed, issues = parse_experiment(tmp_path / file_name, experiment)
        assert parsed is not None and issues == [], (file_name, issues)
        catalogue = load(tmp_path / file_name, experiment, policy=permissive_policy(namespaces))
        implicit = [f"chaos.spec.{path}selector.namespaces" for path, s in zip(["", "target."], selectors) if not s.get("namespaces")]
        expected = [(f, "explicit-namespaces") for f in implicit] + UNSAFE_IN_EVERY_POLICY.get(file_name, [])
        assert sorted((i.field, i.rule) for i in catalogue.issues) == sorted(expected), (file_name, catalogue.issues)
        if not implicit:
            accepted.append(file_name)
    assert accepted == ["network-delay-with-target-example.yaml", "http-patch-response.yaml"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
KEYS = ["name", "tier", "title", "hypothesis", "target", "chaos", "thresholds", "chaos.kind", "chaos.spec",
        "chaos.spec.mode", "chaos.spec.value", "chaos.spec.selector", "chaos.spec.duration", "chaos.spec.action"]


@st.composite
def mutated_experiments(draw):
    document = copy.deepcopy(base_experiment())
    for _ in range(draw(st.integers(1, 4))):
        *parents, last = draw(st.sampled_from(KEYS)).split(".")
        node = document
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            if draw(st.booleans()):
                node[last] = draw(JSON)
            else:
                node.pop(last, None)
    return document


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated_experiments(), JSON))
def test_random_files_only_ever_give_a_validation_result(tmp_path_factory, document):
    experiment, issues = parse_experiment(tmp_path_factory.mktemp("f") / "x.yaml", document)
    assert (experiment is None) == bool(issues)
    assert all(isinstance(i, ValidationIssue) and i.message for i in issues)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(mutated_experiments())
def test_random_files_through_the_whole_catalogue(tmp_path, document):
    catalogue = load(tmp_path, document)
    assert catalogue.ok == (catalogue.get(str(document.get("name"))) is not None and len(catalogue.experiments) == 1)
