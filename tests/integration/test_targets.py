"""Selectors resolved to real pods, and the run-time protected-service check."""

from __future__ import annotations

import pytest
from kubernetes.client import CoreV1Api

from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.chaosmesh.spec import parse_spec
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.policy import Tier
from chaos_engineering.targets import label_selector, protected_violations, resolve_pods

CATALOGUE = load_catalogue()


def selector(spec: dict):
    parsed, issues = parse_spec("PodChaos", {"action": "pod-kill", "mode": "one", "selector": spec})
    assert not issues
    return parsed.selector


def test_label_selector_syntax():
    assert label_selector(selector({"namespaces": ["a"], "labelSelectors": {"app": "x"}, "expressionSelectors": [
        {"key": "tier", "operator": "In", "values": ["a", "b"]},
        {"key": "zone", "operator": "NotIn", "values": ["c"]},
        {"key": "canary", "operator": "DoesNotExist"},
        {"key": "team", "operator": "Exists"},
    ]})) == "app=x,tier in (a,b),zone notin (c),!canary,team"


@pytest.mark.parametrize("name", sorted(CATALOGUE.experiments))
def test_every_catalogue_experiment_resolves_to_unprotected_ready_pods(connections, name):
    experiment = CATALOGUE.get(name)
    pods = resolve_pods(ChaosMeshHook(), experiment.spec.selector)
    assert any(p.ready for p in pods), name
    assert protected_violations(CATALOGUE.policy, experiment.tier, pods) == []


def test_pods_map_and_phase_filters(connections):
    pods = resolve_pods(ChaosMeshHook(), selector({"pods": {"booking": ["database-0", "no-such-pod"]}}))
    assert [p.ref for p in pods] == ["booking/database-0"]
    assert resolve_pods(ChaosMeshHook(), selector({"namespaces": ["booking"], "labelSelectors": {"app": "cache"}, "podPhaseSelectors": ["Pending"]})) == []


def test_a_relabelled_protected_pod_is_caught(connections):
    hook = ChaosMeshHook()
    pod = hook.list_pods("notifications", label_selector="app=booking-confirmation")[0]
    core = CoreV1Api(hook.kubernetes.api_client)
    core.patch_namespaced_pod(pod.metadata.name, "notifications", {"metadata": {"labels": {"app": "email-service"}}})
    try:
        pods = resolve_pods(hook, selector({"namespaces": ["notifications"], "labelSelectors": {"app": "email-service"}}))
        assert pod.metadata.name in [p.name for p in pods]
        problems = protected_violations(CATALOGUE.policy, Tier.MEDIUM, pods)
        assert problems == [
            f"notifications/{pod.metadata.name} carries app.kubernetes.io/name=booking-confirmation of protected service 'booking-confirmation' (level high)"
        ]
    finally:
        core.patch_namespaced_pod(pod.metadata.name, "notifications", {"metadata": {"labels": {"app": "booking-confirmation"}}})
