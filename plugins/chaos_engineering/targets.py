"""The pods a selector resolves to in the cluster, and the run-time protected-service check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes.client import V1Pod

from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.policy import SafetyPolicy, Tier
from chaos_engineering.reach import selected_namespaces


@dataclass(frozen=True)
class TargetPod:
    namespace: str
    name: str
    labels: dict[str, str]
    ready: bool

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def label_selector(selector: Any) -> str:
    """Kubernetes' label selector syntax for a Chaos Mesh selector's labels and expressions."""
    terms = [f"{k}={v}" for k, v in sorted((selector.labelSelectors or {}).items())]
    for expression in selector.expressionSelectors or []:
        operator, key, values = _text(expression.operator), expression.key, ",".join(expression.values or [])
        terms.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key, "DoesNotExist": f"!{key}"}[operator]
        )
    return ",".join(terms)


def _text(value: Any) -> str:
    return getattr(value, "value", value)


def pod_ready(pod: V1Pod) -> bool:
    conditions = (pod.status.conditions or []) if pod.status else []
    return pod.status is not None and pod.status.phase == "Running" and any(c.type == "Ready" and c.status == "True" for c in conditions)


def _matches_client_side(selector: Any, pod: V1Pod) -> bool:
    """The selector fields the API cannot filter: annotations, phases, node names."""
    annotations = pod.metadata.annotations or {}
    if any(annotations.get(k) != v for k, v in (selector.annotationSelectors or {}).items()):
        return False
    phases = [_text(p) for p in selector.podPhaseSelectors or []]
    if phases and (pod.status is None or pod.status.phase not in phases):
        return False
    return not selector.nodes or (pod.spec is not None and pod.spec.node_name in selector.nodes)


def resolve_pods(hook: ChaosMeshHook, selector: Any) -> list[TargetPod]:
    """Every pod the selector could select: a superset of Chaos Mesh's choice (which then applies
    `mode`), so checking all of them is the conservative check. Node label selectors are not
    evaluated (that would need node reads); they can only narrow Chaos Mesh's choice further."""
    pods: list[V1Pod] = []
    if selector.pods:
        for namespace, names in selector.pods.items():
            pods += [p for p in (hook.get_pod(namespace, name) for name in names) if p is not None]
    else:
        fields = ",".join(f"{k}={v}" for k, v in sorted((selector.fieldSelectors or {}).items()))
        for namespace in selected_namespaces(selector):
            pods += hook.list_pods(namespace, label_selector=label_selector(selector), field_selector=fields)
    return [
        TargetPod(p.metadata.namespace, p.metadata.name, dict(p.metadata.labels or {}), pod_ready(p))
        for p in pods
        if _matches_client_side(selector, p)
    ]


def protected_violations(policy: SafetyPolicy, tier: Tier, pods: list[TargetPod]) -> list[str]:
    """Why each resolved pod may not be touched by this tier; empty when all are fair game.

    Stricter than the static check on purpose: a pod carrying ANY identifying label of a
    protected service counts as that service's, wherever it runs (a relabelled or misplaced pod
    keeps its other identity).
    """
    problems = []
    for pod in pods:
        if pod.namespace not in policy.allowed_target_namespaces:
            problems.append(f"{pod.ref} is in namespace {pod.namespace!r}, not a target namespace of the policy")
        for name, service in policy.protected_services.items():
            shared = sorted(f"{k}={v}" for k, v in service.labels.items() if pod.labels.get(k) == v)
            if shared and service.level.forbids(tier):
                problems.append(f"{pod.ref} carries {', '.join(shared)} of protected service {name!r} (level {service.level.value})")
    return problems
