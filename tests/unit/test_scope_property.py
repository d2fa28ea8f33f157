"""Property: whatever the static scope check accepts, the sandbox API server's own Chaos Mesh
selection never picks a pod that the shared definition (`reach.forbidden_reasons`) forbids.

Differential: the oracle is `sandbox.kubeapi.selection.select_pods`, the code the emulated
API server runs when it resolves a Chaos Mesh selector, imported in-process (no server needed).
"""

from __future__ import annotations

import random
from collections import Counter
from itertools import combinations
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.chaosmesh.spec import parse_spec
from chaos_engineering.experiment import Experiment
from chaos_engineering.policy import Tier, load_policy
from chaos_engineering.reach import forbidden_reasons, selected_namespaces
from chaos_engineering.rules import check_experiment
from chaos_engineering.targets import label_selector
from sandbox.kubeapi.selection import select_pods
from sandbox.kubeapi.selectors import matches_all, parse_label_selector
from sandbox.platform.effects import PodInfo
from sandbox.platform.topology import NODES

POLICY, _ = load_policy()
EXAMPLES = 10_000

# Small alphabets, so selectors and pods collide often: the keys and values of the protected
# services, of ordinary services, and a few others.
PROTECTED = sorted(POLICY.protected_services)
KEYS = ["app", "app.kubernetes.io/name", "app.kubernetes.io/part-of", "role"]
VALUES = [*PROTECTED, "booking-api", "database", "booking-platform", "primary", "x"]
NAMESPACES = ["booking", "notifications", "payments", "default", "chaos-engineering"]
POD_NAMES = [f"pod-{i}" for i in range(6)]
PHASES = ["Running", "Pending", "Failed"]
# The rules whose job is to keep a selector off forbidden pods.
SCOPE_RULES = {"protected-reach", "allowed-namespace", "explicit-namespaces"}
SAFE_SIDE = {"namespaces": ["booking"], "labelSelectors": {"app": "booking-api", "app.kubernetes.io/name": "booking-api"}}


# Every choice below is one draw from a list ordered simple to complex: generation stays cheap
# enough for 10,000 cases, and a failure still shrinks towards the simplest selector.
ALLOWED = list(POLICY.allowed_target_namespaces)
_NAMESPACE_LISTS = [[n] for n in ALLOWED] + [list(c) for c in combinations(ALLOWED, 2)] + [
    [n] for n in NAMESPACES if n not in ALLOWED
] + [[a, b] for a in ALLOWED for b in NAMESPACES if b not in ALLOWED]
_VALUE_SETS = [[v] for v in VALUES] + [list(c) for c in combinations(VALUES, 2)] + [list(c) for c in combinations(VALUES, 3)]
_LABEL_DICTS = [{}] + [{k: v} for k in KEYS for v in VALUES] + [
    {k1: v1, k2: v2} for k1, k2 in combinations(KEYS, 2) for v1 in VALUES for v2 in VALUES
]
_EXPRESSIONS = (
    [{"key": k, "operator": op} for op in ("Exists", "DoesNotExist") for k in KEYS]
    + [{"key": k, "operator": op, "values": vs} for op in ("In", "NotIn") for k in KEYS for vs in _VALUE_SETS]
)
_PROTECTED_SETS = [list(c) for size in range(len(PROTECTED), 0, -1) for c in combinations(PROTECTED, size)]


def _guards(key: str) -> list[dict | None]:
    """What a user writes to keep protected services off one label key: nothing, a NotIn over
    them (all, or only some), DoesNotExist, or an In pinning the key (to any value, protected too)."""
    return (
        [None, {"key": key, "operator": "DoesNotExist"}]
        + [{"key": key, "operator": "NotIn", "values": vs} for vs in _PROTECTED_SETS]
        + [{"key": key, "operator": "In", "values": [v]} for v in VALUES]
    )


# Half the time one of the guards that work for every tier, so that many selectors pass.
_GUARDS = {
    key: st.sampled_from(_guards(key))
    | st.sampled_from([_guards(key)[1], _guards(key)[2], {"key": key, "operator": "In", "values": ["booking-api"]}])
    for key in ("app", "app.kubernetes.io/name")
}
_PODS_MAPS = [{n: names} for n in NAMESPACES for names in ([POD_NAMES[0]], POD_NAMES[:2])] + [
    {a: [POD_NAMES[0]], b: [POD_NAMES[1]]} for a, b in combinations(NAMESPACES, 2)
]
_EXTRAS = [None, {"annotationSelectors": {"team": "booking"}}, {"fieldSelectors": {"metadata.name": POD_NAMES[0]}}] + [
    {"podPhaseSelectors": list(p)} for size in (1, 2) for p in combinations(PHASES, size)
] + [{"nodes": list(n)} for size in (1, 2) for n in combinations(NODES, size)]
_rare = st.integers(0, 9)
_pods_map, _namespaces, _labels = st.sampled_from(_PODS_MAPS), st.sampled_from(_NAMESPACE_LISTS), st.sampled_from(_LABEL_DICTS)
_expressions, _extras = st.lists(st.sampled_from(_EXPRESSIONS), max_size=2), st.sampled_from(_EXTRAS)


@st.composite
def selectors(draw) -> dict:
    selector: dict = {}
    if draw(_rare) == 0:
        selector["pods"] = draw(_pods_map)
    if draw(_rare) > 0:
        selector["namespaces"] = draw(_namespaces)
    labels = draw(_labels)
    if labels:
        selector["labelSelectors"] = labels
    # Expressions on keys the labelSelectors pin would mostly contradict them (select nothing).
    terms = [t for t in draw(_expressions) if t["key"] not in labels]
    terms += [g for g in (draw(_GUARDS[k]) for k in _GUARDS if k not in labels) if g is not None]
    if terms:
        selector["expressionSelectors"] = terms
    if draw(_rare) < 3:
        selector.update(draw(_extras) or {})
    return selector


def _satisfying(selector: dict, rng: random.Random) -> dict[str, str]:
    """Labels meeting the selector's label requirements, where they can be met together."""
    wanted: dict[str, list] = {}  # key -> [allowed values or None, excluded values, present, absent]
    for key, value in (selector.get("labelSelectors") or {}).items():
        wanted[key] = [{value}, set(), True, False]
    for term in selector.get("expressionSelectors") or []:
        rule = wanted.setdefault(term["key"], [None, set(), False, False])
        values = set(term.get("values") or [])
        if term["operator"] == "In":
            rule[0], rule[2] = (values if rule[0] is None else rule[0] & values), True
        elif term["operator"] == "NotIn":
            rule[1] |= values
        elif term["operator"] == "Exists":
            rule[2] = True
        else:
            rule[3] = True
    labels = {}
    for key, (allowed, excluded, present, absent) in wanted.items():
        choices = sorted((allowed if allowed is not None else set(VALUES) | {"other"}) - excluded)
        if absent or not choices or (not present and rng.random() < 0.5):
            continue
        labels[key] = rng.choice(choices)
    return labels


def _pod(selector: dict, name: str, seed: int) -> PodInfo:
    """One pod, decoded from a seed: mostly in the selector's namespaces and Running, with labels
    that often meet the selector, any subset of one protected service's label pairs, and extra
    labels, layered in any order (so any of them may win a key)."""
    rng = random.Random(seed)
    home = selector.get("namespaces") or list(selector.get("pods") or {}) or NAMESPACES
    layers = [_satisfying(selector, rng) if rng.random() < 0.8 else {}]
    if rng.random() < 0.5:
        service = POLICY.protected_services[rng.choice(PROTECTED)]
        pairs = sorted(service.labels.items())
        layers.append(dict(rng.sample(pairs, rng.randint(1, len(pairs)))))
    layers.append({rng.choice(KEYS): rng.choice(VALUES) for _ in range(rng.randint(0, 2))})
    rng.shuffle(layers)
    return PodInfo(
        namespace=rng.choice(home) if rng.random() < 0.8 else rng.choice(NAMESPACES),
        name=name,
        uid=f"uid-{name}",
        service="",
        labels={k: v for layer in layers for k, v in layer.items()},
        phase="Running" if rng.random() < 0.8 else rng.choice(PHASES),
        ready=True,
        restart_count=0,
        created=0.0,
        pod_ip="10.0.0.1",
        node_name=rng.choice(NODES),
        containers=("app",),
    )


# Pods are decoded from seeds: one draw each keeps 10,000 cases inside the time budget, while the
# selector, where the bugs would be, is drawn (and shrunk) field by field.
_tiers = st.sampled_from(list(Tier))
_pod_seeds = st.lists(st.integers(0, 2**32 - 1), min_size=2, max_size=len(POD_NAMES))


@st.composite
def cases(draw) -> tuple[Tier, dict, list[PodInfo], bool]:
    selector = draw(selectors())
    pods = [_pod(selector, name, seed) for name, seed in zip(POD_NAMES, draw(_pod_seeds))]
    return draw(_tiers), selector, pods, draw(st.booleans())


def experiment(tier: Tier, kind: ChaosKind, raw_spec: dict) -> Experiment:
    spec, issues = parse_spec(kind.value, raw_spec)
    assert spec is not None, issues  # the strategies only build structurally valid specs
    return Experiment("property", tier, "t", "", "h", "booking-api", kind, spec, Path("property.yaml"))


def scope_case(tier: Tier, selector: dict, as_network_target: bool) -> tuple[Experiment, str]:
    """The experiment carrying `selector` on the side under test, and that side's field."""
    if as_network_target:
        spec = {
            "action": "delay", "delay": {"latency": "10ms"}, "direction": "both", "mode": "one", "selector": SAFE_SIDE,
            "target": {"mode": "fixed-percent", "value": "25", "selector": selector},
        }
        return experiment(tier, ChaosKind.NETWORK_CHAOS, spec), "chaos.spec.target.selector"
    spec = {"action": "pod-kill", "mode": "one", "selector": selector}
    return experiment(tier, ChaosKind.POD_CHAOS, spec), "chaos.spec.selector"


def test_what_the_static_check_accepts_never_selects_a_forbidden_pod():
    seen: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(cases())
    def check(case: tuple[Tier, dict, list[PodInfo], bool]) -> None:
        tier, selector, cluster, as_target = case
        seen["cases"] += 1
        chaos, side = scope_case(tier, selector, as_target)
        refused = [i for i in check_experiment(chaos, POLICY) if i.rule in SCOPE_RULES and i.field.startswith(side)]
        chosen = select_pods(selector, cluster)
        typed = chaos.spec.target.selector if as_target else chaos.spec.selector
        if chosen and not selector.get("pods"):
            # The run-time check lists a superset of what Chaos Mesh selects, then applies the
            # definition to it: the label selector it sends, parsed by the API server's parser.
            sent, namespaces = parse_label_selector(label_selector(typed)), selected_namespaces(typed)
            for pod in chosen:
                assert matches_all(sent, pod.labels) and (not namespaces or pod.namespace in namespaces), (selector, pod)
        if refused:
            return
        seen["accepted"] += 1
        seen["accepted and selecting"] += bool(chosen)
        for pod in chosen:
            reasons = forbidden_reasons(POLICY, tier, pod.namespace, pod.labels)
            assert not reasons, f"{tier.value}: {selector} was accepted but selects {pod.namespace}/{pod.name} {pod.labels}: {reasons}"

    # Its time is a benchmark's business, not an assertion's (it takes ~25 s on a quiet machine).
    check()
    assert seen["cases"] >= EXAMPLES
    # Not vacuous: many selectors pass, and many of those do select pods.
    assert seen["accepted"] >= EXAMPLES // 20, seen
    assert seen["accepted and selecting"] >= EXAMPLES // 50, seen
