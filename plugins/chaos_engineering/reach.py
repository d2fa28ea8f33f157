"""What counts as a protected service's pod, and which pods a Chaos Mesh selector could reach, decided statically and conservatively."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chaos_engineering.policy import ProtectedService, SafetyPolicy, Service, Tier

# --- the one definition: whose pod is this? ----------------------------------------------------


def protected_owners(policy: SafetyPolicy, labels: dict[str, str]) -> list[tuple[str, ProtectedService, list[str]]]:
    """The protected services a pod with `labels` counts as, each with the `key=value` pairs that
    make it so.

    A pod carrying ANY identifying label pair of a protected service is that service's, in any
    namespace: a relabelled or misplaced pod keeps its other identity. The run-time check applies
    this to the pods it lists; the static check (`reachable_pairs`) is conservative against it.
    """
    owners = []
    for name, service in policy.protected_services.items():
        pairs = [f"{k}={v}" for k, v in service.labels.items() if labels.get(k) == v]
        if pairs:
            owners.append((name, service, pairs))
    return owners


def forbidden_reasons(policy: SafetyPolicy, tier: Tier, namespace: str, labels: dict[str, str]) -> list[str]:
    """Why a `tier` experiment may not touch a pod in `namespace` with `labels`; empty when it may.

    A pod is out of bounds when it runs outside the policy's target namespaces, or when it counts
    (`protected_owners`) as a protected service whose level forbids the tier.
    """
    reasons = []
    if namespace not in policy.allowed_target_namespaces:
        reasons.append(f"is in namespace {namespace!r}, not a target namespace of the policy")
    reasons += [
        f"carries {', '.join(pairs)} of protected service {name!r} (level {service.level.value})"
        for name, service, pairs in protected_owners(policy, labels)
        if service.level.forbids(tier)
    ]
    return reasons


# --- what a selector could select ------------------------------------------------------------


def selected_namespaces(selector: Any) -> list[str]:
    """The namespaces a selector names: the keys of `pods` when given (Chaos Mesh then selects
    exactly those pods and ignores the other fields), otherwise `namespaces`."""
    if selector.pods:
        return list(selector.pods)
    return list(selector.namespaces or [])


@dataclass
class _KeyRequirements:
    """Everything a selector demands of one label key, from labelSelectors and expressions."""

    allowed: set[str] | None = None  # the value must be one of these (= and In); None: any value
    excluded: set[str] = field(default_factory=set)  # NotIn
    present: bool = False  # =, In, Exists
    absent: bool = False  # DoesNotExist

    def admits(self, value: str) -> bool:
        """Whether a pod carrying this key with `value` meets every requirement on the key."""
        return not self.absent and (self.allowed is None or value in self.allowed) and value not in self.excluded

    def satisfiable(self) -> bool:
        """Whether some pod meets every requirement on the key: without it, or with some value
        (label values are an unbounded set, so a NotIn alone always leaves one)."""
        if not self.present:
            return True  # a pod without the key meets NotIn and DoesNotExist
        return not self.absent and (self.allowed is None or bool(self.allowed - self.excluded))


def _requirements(selector: Any) -> dict[str, _KeyRequirements]:
    by_key: dict[str, _KeyRequirements] = {}

    def restrict(key: str, values: set[str]) -> None:
        rule = by_key.setdefault(key, _KeyRequirements())
        rule.allowed = values if rule.allowed is None else rule.allowed & values
        rule.present = True

    for key, value in (selector.labelSelectors or {}).items():
        restrict(key, {value})
    for expression in selector.expressionSelectors or []:
        operator, key = getattr(expression.operator, "value", expression.operator), expression.key
        values = set(expression.values or [])
        if operator == "In":
            restrict(key, values)
        elif operator == "NotIn":
            by_key.setdefault(key, _KeyRequirements()).excluded |= values
        elif operator == "Exists":
            by_key.setdefault(key, _KeyRequirements()).present = True
        else:  # DoesNotExist
            by_key.setdefault(key, _KeyRequirements()).absent = True
    return by_key


def _may_carry(requirements: dict[str, _KeyRequirements], labels: dict[str, str]) -> bool:
    """Whether a selector's label conditions let a pod carry all of `labels` (and any other
    labels it likes). Annotation, field, node and phase selectors are ignored: they can only
    narrow the choice, and ignoring them keeps the answer an over-approximation."""
    for key, rule in requirements.items():
        if key in labels:
            if not rule.admits(labels[key]):
                return False
        elif not rule.satisfiable():
            return False
    return True


def reachable_pairs(selector: Any, service: Service) -> list[str]:
    """The `key=value` pairs of `service` that some pod the selector selects could carry, in any
    namespace: by `protected_owners`, each one makes that pod the service's.

    Pods named in `selector.pods` could carry anything: their labels are only known at run time.
    """
    pairs = list(service.labels.items())
    if selector.pods:
        return [f"{k}={v}" for k, v in pairs]
    requirements = _requirements(selector)
    return [f"{k}={v}" for k, v in pairs if _may_carry(requirements, {k: v})]


def may_select(selector: Any, service: Service) -> bool:
    """False only when the selector provably selects no pod that counts as `service`'s (see
    `protected_owners`): every one of its label pairs is contradicted by the selector."""
    return bool(reachable_pairs(selector, service))


def may_select_service_pod(selector: Any, service: Service) -> bool:
    """Whether the selector could select an ordinary pod of `service`: one in its namespace that
    carries all of its labels. Used to catch a selector that misses its own target."""
    if selector.pods:
        return service.namespace in selector.pods
    if selector.namespaces and service.namespace not in selector.namespaces:
        return False
    return _may_carry(_requirements(selector), service.labels)
