"""The safety policy's rules applied to one structurally valid experiment."""

from __future__ import annotations

import enum
from typing import Any

from chaos_engineering.chaosmesh.duration import format_go_duration, parse_go_duration
from chaos_engineering.experiment import Experiment
from chaos_engineering.issues import ValidationIssue
from chaos_engineering.policy import Mode, SafetyPolicy
from chaos_engineering.reach import may_select, selected_namespaces


def _text(value: Any) -> str | None:
    return value.value if isinstance(value, enum.Enum) else value


def effective_duration(experiment: Experiment, policy: SafetyPolicy) -> float:
    """The duration the fault will get: its own, or the tier's maximum when it names none."""
    duration = getattr(experiment.spec, "duration", None)
    return parse_go_duration(duration) if duration else policy.tiers[experiment.tier].max_duration


def fault_actions(spec: Any) -> list[str]:
    """What a fault does, in the words the policy's `allowed_kinds` uses: the `action` of kinds
    that have one; the stressors of a StressChaos; the faults (abort, delay, replace, patch) of an
    HTTPChaos."""
    action = _text(getattr(spec, "action", None))
    if action is not None:
        return [action]
    stressors = getattr(spec, "stressors", None)
    if stressors is not None or hasattr(spec, "stressngStressors"):
        used = [name for name in ("cpu", "memory") if stressors is not None and getattr(stressors, name, None) is not None]
        return used + (["stress-ng"] if getattr(spec, "stressngStressors", None) else [])
    return [name for name in ("abort", "delay", "replace", "patch") if getattr(spec, name, None) not in (None, False)]


class _Checker:
    def __init__(self, experiment: Experiment, policy: SafetyPolicy) -> None:
        self.experiment = experiment
        self.policy = policy
        self.tier_rules = policy.tiers[experiment.tier]
        self.issues: list[ValidationIssue] = []

    def fail(self, field: str, rule: str, message: str) -> None:
        self.issues.append(ValidationIssue(str(self.experiment.source), field, rule, message))

    def run(self) -> list[ValidationIssue]:
        self.target_service()
        self.kind_and_action()
        self.duration()
        self.blast_radius()
        spec = self.experiment.spec
        self.selector("chaos.spec.selector", spec.selector, primary=True)
        target = getattr(spec, "target", None)
        if target is not None and getattr(target, "selector", None) is not None:
            self.selector("chaos.spec.target.selector", target.selector, primary=False)
        self.thresholds()
        return self.issues

    def target_service(self) -> None:
        name, tier = self.experiment.target_service, self.experiment.tier
        if self.policy.service(name) is None:
            known = sorted([*self.policy.services, *self.policy.protected_services])
            self.fail("target.service", "unknown-service", f"{name!r} is not a service of the policy (known: {', '.join(known)})")
            return
        level = self.policy.protection_of(name)
        if level.forbids(tier):
            self.fail(
                "target.service",
                "protected-target",
                f"{name!r} has protection level {level.value!r}: a {tier.value}-tier experiment may not target it",
            )

    def kind_and_action(self) -> None:
        kind, tier = self.experiment.kind, self.experiment.tier.value
        allowed = self.tier_rules.allowed_kinds
        if kind not in allowed:
            kinds = ", ".join(k.value for k in allowed)
            self.fail("chaos.kind", "tier-kind", f"{kind.value} is not allowed in the {tier} tier (allowed: {kinds})")
            return
        for action in fault_actions(self.experiment.spec):
            if action not in allowed[kind]:
                self.fail(
                    "chaos.spec.action" if action == _text(getattr(self.experiment.spec, "action", None)) else "chaos.spec",
                    "tier-action",
                    f"{kind.value} {action!r} is not allowed in the {tier} tier "
                    f"(allowed: {', '.join(allowed[kind]) or 'none'}); move it to a tier that allows it",
                )

    def duration(self) -> None:
        seconds = effective_duration(self.experiment, self.policy)
        limit = self.tier_rules.max_duration
        if seconds > limit:
            self.fail(
                "chaos.spec.duration",
                "max-duration",
                f"{format_go_duration(seconds)} exceeds the {self.experiment.tier.value} tier's maximum of "
                f"{format_go_duration(limit)}; shorten it or move the experiment to a tier that allows it",
            )

    def blast_radius(self) -> None:
        spec, radius, tier = self.experiment.spec, self.tier_rules.blast_radius, self.experiment.tier.value
        mode = Mode(_text(spec.mode))
        if mode not in radius.modes:
            allowed = ", ".join(m.value for m in radius.modes)
            self.fail("chaos.spec.mode", "blast-radius-mode", f"mode {mode.value!r} is not allowed in the {tier} tier (allowed: {allowed})")
            return
        value = int(spec.value) if spec.value not in (None, "") else None
        if mode is Mode.FIXED and value is not None and value > radius.max_pods:
            self.fail("chaos.spec.value", "blast-radius", f"{value} pods exceed the {tier} tier's maximum of {radius.max_pods}")
        if mode in (Mode.FIXED_PERCENT, Mode.RANDOM_MAX_PERCENT) and value is not None and value > radius.max_percent:
            self.fail("chaos.spec.value", "blast-radius", f"{value} % of the pods exceeds the {tier} tier's maximum of {radius.max_percent} %")

    def selector(self, field: str, selector: Any, *, primary: bool) -> None:
        namespaces = selected_namespaces(selector)
        if not namespaces:
            self.fail(
                f"{field}.namespaces",
                "explicit-namespaces",
                "name the namespaces explicitly: without them Chaos Mesh selects in the chaos object's own namespace",
            )
        allowed = self.policy.allowed_target_namespaces
        for namespace in namespaces:
            if namespace not in allowed:
                self.fail(
                    f"{field}.namespaces",
                    "allowed-namespace",
                    f"namespace {namespace!r} is not a target namespace of the policy (allowed: {', '.join(allowed)})",
                )
        tier = self.experiment.tier
        for name, service in self.policy.protected_services.items():
            if service.level.forbids(tier) and may_select(selector, service):
                self.fail(
                    field,
                    "protected-reach",
                    f"could select pods of protected service {name!r} (level {service.level.value}, namespace "
                    f"{service.namespace}, labels {service.labels}); exclude it by namespace or labels",
                )
        target = self.policy.service(self.experiment.target_service)
        if primary and target is not None and not may_select(selector, target):
            self.fail(field, "target-mismatch", f"cannot select any pod of the target service {self.experiment.target_service!r}")

    def thresholds(self) -> None:
        known = self.policy.safety.thresholds
        for name, limit in self.experiment.threshold_limits.items():
            threshold = known.get(name)
            if threshold is None:
                self.fail(f"thresholds.{name}", "unknown-threshold", f"no threshold {name!r} in the policy (known: {', '.join(known)})")
            elif not threshold.rule.tightens(limit, threshold.limit):
                self.fail(
                    f"thresholds.{name}.limit",
                    "loosened-threshold",
                    f"{limit:g} is looser than the policy's {threshold.limit:g} ({threshold.rule.value}); an experiment may only tighten a limit",
                )


def check_experiment(experiment: Experiment, policy: SafetyPolicy) -> list[ValidationIssue]:
    return _Checker(experiment, policy).run()

