"""The RBAC of deploy/kubernetes grants exactly the (verb, resource) pairs ChaosMeshHook calls, in the right namespaces."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from chaos_engineering.chaosmesh.constants import GROUP, PLURALS
from tests.monitoring.metric_names import REPO_ROOT

HOOK = REPO_ROOT / "plugins" / "chaos_engineering" / "hooks" / "chaos_mesh.py"
RBAC = REPO_ROOT / "deploy" / "kubernetes" / "rbac.yaml"
POLICY = yaml.safe_load((REPO_ROOT / "include" / "safety_policy.yaml").read_text())

# kubernetes client method prefix -> RBAC verb
VERBS = {"create": "create", "read": "get", "get": "get", "list": "list", "delete": "delete", "patch": "patch", "replace": "update"}
# kubernetes client resource in a method name -> (api group, resources)
RESOURCES = {
    "custom_object": (GROUP, tuple(PLURALS.values())),
    "pod": ("", ("pods",)),
    "lease": ("coordination.k8s.io", ("leases",)),
}
METHOD = re.compile(r"^(?P<verb>[a-z]+)_(?P<scope>namespaced|cluster)_(?P<resource>[a-z_]+)$")
# `list_lease_for_all_namespaces`: the cluster-wide form of the typed APIs.
ALL_NAMESPACES = re.compile(r"^(?P<verb>list)_(?P<resource>[a-z_]+)_for_all_namespaces$")

Grant = tuple[str, str, str]  # (api group, resource, verb)


def called_grants(source: str) -> dict[str, set[Grant]]:
    """{"namespaced" | "cluster": grants} of every kubernetes client call `self.<api>.<method>(...)`."""
    found: dict[str, set[Grant]] = defaultdict(set)
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        if not (isinstance(owner, ast.Attribute) and isinstance(owner.value, ast.Name) and owner.value.id == "self"):
            continue
        if owner.attr not in {"custom_objects", "core", "coordination"}:
            continue
        match = METHOD.match(node.func.attr)
        everywhere = ALL_NAMESPACES.match(node.func.attr)
        assert match or everywhere, f"unmapped kubernetes client call {owner.attr}.{node.func.attr}: extend the test's map"
        verb, resource, scope = (match["verb"], match["resource"], match["scope"]) if match else (everywhere["verb"], everywhere["resource"], "cluster")
        assert verb in VERBS and resource in RESOURCES, f"unmapped {node.func.attr}"
        group, resources = RESOURCES[resource]
        found[scope] |= {(group, r, VERBS[verb]) for r in resources}
    return found


def granted(kind: str, namespace: str | None = None) -> set[Grant]:
    grants: set[Grant] = set()
    for doc in yaml.safe_load_all(RBAC.read_text()):
        if doc["kind"] == kind and doc["metadata"].get("namespace") == namespace:
            for rule in doc["rules"]:
                grants |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return grants


CALLS = called_grants(HOOK.read_text())
POD_RESOURCES = {"pods"}


def test_hook_calls_are_found() -> None:
    assert ("chaos-mesh.org", "podchaos", "create") in CALLS["namespaced"]
    assert ("coordination.k8s.io", "leases", "update") in CALLS["namespaced"]
    assert ("", "pods", "list") in CALLS["namespaced"]


def test_chaos_namespace_role_grants_exactly_the_chaos_object_and_lease_calls() -> None:
    expected = {g for g in CALLS["namespaced"] if g[1] not in POD_RESOURCES}
    assert granted("Role", POLICY["chaos_namespace"]) == expected


@pytest.mark.parametrize("namespace", POLICY["allowed_target_namespaces"])
def test_target_namespaces_grant_exactly_the_pod_reads(namespace: str) -> None:
    expected = {g for g in CALLS["namespaced"] if g[1] in POD_RESOURCES}
    assert {v for _, _, v in expected} <= {"get", "list", "watch"}, "pods must stay read-only"
    assert granted("Role", namespace) == expected


def test_cluster_role_grants_exactly_the_cluster_wide_calls() -> None:
    assert granted("ClusterRole") == CALLS["cluster"]


def test_no_other_namespace_or_wildcard_is_granted() -> None:
    allowed = {POLICY["chaos_namespace"], *POLICY["allowed_target_namespaces"], None}
    for doc in yaml.safe_load_all(RBAC.read_text()):
        if doc["kind"] in {"Role", "RoleBinding"}:
            assert doc["metadata"]["namespace"] in allowed, doc["metadata"]
        for rule in doc.get("rules", []):
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule


def test_every_role_is_bound_to_the_same_subjects() -> None:
    docs = list(yaml.safe_load_all(RBAC.read_text()))
    roles = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in docs if d["kind"] in {"Role", "ClusterRole"}}
    bound = {(d["roleRef"]["kind"], d["roleRef"]["name"], d["metadata"].get("namespace")) for d in docs if d["kind"].endswith("Binding")}
    assert roles == bound
    subjects = {str(d["subjects"]) for d in docs if d["kind"].endswith("Binding")}
    assert len(subjects) == 1


def test_a_new_hook_verb_would_fail_the_check() -> None:
    """The derivation can fail: a hook that also deletes pods needs a grant the Role lacks."""
    extra = HOOK.read_text() + "\n\ndef _x(self):\n    self.core.delete_namespaced_pod('a', 'b')\n"
    assert ("", "pods", "delete") in called_grants(extra)["namespaced"]
    assert ("", "pods", "delete") not in granted("Role", "booking")


def test_watchdog_uses_its_service_account() -> None:
    deployment = yaml.safe_load((REPO_ROOT / "deploy" / "kubernetes" / "watchdog.yaml").read_text())
    assert deployment["metadata"]["namespace"] == POLICY["chaos_namespace"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "chaos-watchdog"
