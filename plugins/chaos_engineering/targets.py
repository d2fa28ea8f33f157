"""The pods a selector resolves to in the cluster, and the run-time target check: protected pods, namespaces, blast radius."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import V1Pod

from chaos_engineering.external_targets import resolve_addresses, run_time_problems
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.policy import Mode, SafetyPolicy, Tier
from chaos_engineering.reach import forbidden_reasons, selected_namespaces
from chaos_engineering.scenario import Scenario, format_offset


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

    The definition is `reach.forbidden_reasons`, the one the static check is conservative
    against: outside the target namespaces, or carrying ANY label pair of a protected service
    the tier may not reach, wherever the pod runs.
    """
    return [f"{pod.ref} {reason}" for pod in pods for reason in forbidden_reasons(policy, tier, pod.namespace, pod.labels)]


def affected_pods(mode: str, value: str | None, candidates: int) -> int:
    """How many of `candidates` pods Chaos Mesh may hit under `mode` (the most, for random modes)."""
    number = int(value) if value not in (None, "") else 0
    return {
        Mode.ONE: min(1, candidates),
        Mode.ALL: candidates,
        Mode.FIXED: min(number, candidates),
        Mode.FIXED_PERCENT: math.floor(candidates * number / 100),
        Mode.RANDOM_MAX_PERCENT: math.floor(candidates * number / 100),
    }[Mode(_text(mode))]


@dataclass
class TargetCheck:
    """The pods a spec resolves to now, each side, and every reason not to inject (empty: go)."""

    targets: list[TargetPod] = field(default_factory=list)
    peers: list[TargetPod] = field(default_factory=list)  # the NetworkChaos target side
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


Side = tuple[str, list[TargetPod], Any, "str | None"]  # (name, resolved pods, mode, value)


def resolve_sides(hook: ChaosMeshHook, spec: Any, check: TargetCheck) -> list[Side]:
    """Both sides of `spec` resolved now into `check` (targets, and peers for a NetworkChaos
    target), with a problem for a side that has no ready pod: Chaos Mesh needs both."""
    check.targets = resolve_pods(hook, spec.selector)
    sides: list[Side] = [("selector", check.targets, spec.mode, spec.value)]
    target = getattr(spec, "target", None)
    if getattr(target, "selector", None) is not None:
        check.peers = resolve_pods(hook, target.selector)
        sides.append(("target selector", check.peers, target.mode, target.value))
    for name, pods, _, _ in sides:
        if not any(p.ready for p in pods):
            check.problems.append(f"the {name} resolves to no ready pod ({len(pods)} pod(s) found)")
    return sides


def verify_targets(
    hook: ChaosMeshHook,
    policy: SafetyPolicy,
    tier: Tier,
    spec: Any,
    *,
    resolve: Callable[[str], list[str]] = resolve_addresses,
) -> TargetCheck:
    """Resolve both sides of `spec` now and check them against the policy for `tier`.

    Refused: a protected or out-of-namespace pod on either side; no ready pod to inject into (on
    either side of a NetworkChaos: Chaos Mesh needs both); more pods hit than the tier's
    `max_pods`, both sides counted, each under its own mode and value; an externalTarget that is
    or resolves to an address of a protected service or to a non-public one; any remoteCluster,
    whose pods this cluster's API cannot show. The resolved lists are supersets of Chaos Mesh's
    choice, so counting and checking all of them is the conservative side.
    """
    check = TargetCheck()
    if spec.remoteCluster:
        check.problems.append(
            f"remoteCluster {spec.remoteCluster!r}: the fault would select pods in another cluster, which this "
            "run cannot list, so it cannot prove them unprotected; run it without remoteCluster"
        )
        return check
    sides = resolve_sides(hook, spec, check)
    check.problems += protected_violations(policy, tier, check.targets + check.peers)
    affected = [affected_pods(mode, value, len(pods)) for _, pods, mode, value in sides]
    limit = policy.tiers[tier].blast_radius.max_pods
    if sum(affected) > limit:
        detail = " + ".join(
            f"{count} of {len(pods)} ({name}, mode {_text(mode)})" for count, (name, pods, mode, _) in zip(affected, sides)
        )
        check.problems.append(f"{sum(affected)} pods would be hit: {detail}; the {tier.value} tier allows {limit}")
    check.problems += run_time_problems(policy, tier, list(getattr(spec, "externalTargets", None) or []), resolve)
    return check


# --- scenarios -------------------------------------------------------------------------------


@dataclass
class ScenarioTargetCheck:
    """Each step's pods resolved now, the most pods the steps standing at one moment may touch
    together, and every reason not to start the scenario (empty: go)."""

    steps: dict[str, TargetCheck] = field(default_factory=dict)
    peak: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def any_level_violations(policy: SafetyPolicy, pods: list[TargetPod]) -> list[str]:
    """Why each pod may not be touched by a scenario step: protected at any level but none (the low
    and the high tier forbid every such level between them), or outside the target namespaces."""
    return list(dict.fromkeys(v for tier in (Tier.LOW, Tier.HIGH) for v in protected_violations(policy, tier, pods)))


def standing_pods(sides: list[Side]) -> tuple[set[str], int]:
    """The pods some standing sides touch: the exact pods of every side whose mode takes all its
    candidates, and a count for the sides that pick some at random (counted as distinct, since
    which ones is only known when Chaos Mesh picks)."""
    exact: set[str] = set()
    picked = 0
    for _, pods, mode, value in sides:
        affected = affected_pods(mode, value, len(pods))
        if affected >= len(pods):
            exact |= {p.ref for p in pods}
        else:
            picked += affected
    return exact, picked


def verify_scenario_targets(
    hook: ChaosMeshHook,
    policy: SafetyPolicy,
    scenario: Scenario,
    *,
    resolve: Callable[[str], list[str]] = resolve_addresses,
) -> ScenarioTargetCheck:
    """Resolve both sides of every step now and check the scenario against the policy.

    Refused, per step: what `verify_targets` refuses (no ready pod on a side, a pod outside the
    target namespaces, an externalTarget that is or resolves to a protected or non-public address,
    any remoteCluster), and a pod of a protected service of any level. For the whole scenario: at
    each step's planned start, more pods touched by the steps standing then than the tier's
    `scenario_max_pods`, as the union of their resolved pods (a step's own count answers to this
    limit, not to its tier's single-experiment `max_pods`: a zone outage takes every pod of a zone).
    """
    result = ScenarioTargetCheck()
    sides_of: dict[str, list[Side]] = {}
    for step in scenario.steps:
        spec, check = step.experiment.spec, TargetCheck()
        if spec.remoteCluster:
            check.problems.append(f"remoteCluster {spec.remoteCluster!r}: the fault would select pods in another cluster, which this run cannot list")
            sides_of[step.name] = []
        else:
            sides_of[step.name] = resolve_sides(hook, spec, check)
            check.problems += any_level_violations(policy, check.targets + check.peers)
            entries = list(getattr(spec, "externalTargets", None) or [])
            check.problems += list(dict.fromkeys(p for tier in (Tier.LOW, Tier.HIGH) for p in run_time_problems(policy, tier, entries, resolve)))
        result.steps[step.name] = check
        result.problems += [f"step {step.name!r}: {problem}" for problem in check.problems]
    limit, tier = policy.tiers[scenario.tier].scenario_pod_limit, scenario.tier.value
    timeline = scenario.timeline(policy)
    reported: set[frozenset[str]] = set()
    for window in timeline.values():
        standing = [name for name, w in timeline.items() if w.start <= window.start < w.end]
        exact, picked = standing_pods([side for name in standing for side in sides_of[name]])
        total = len(exact) + picked
        result.peak = max(result.peak, total)
        if total > limit and frozenset(standing) not in reported:
            reported.add(frozenset(standing))
            result.problems.append(
                f"steps {', '.join(repr(n) for n in standing)} standing together from {format_offset(window.start)} would touch "
                f"{total} pods ({len(exact)} resolved, {picked} picked at random), beyond the {tier} tier's scenario maximum of {limit}"
            )
    return result
