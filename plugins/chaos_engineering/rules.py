"""The safety policy's rules applied to one structurally valid experiment."""

from __future__ import annotations

import enum
from typing import Any

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.chaosmesh.duration import format_go_duration, parse_go_duration
from chaos_engineering.experiment import Experiment
from chaos_engineering.external_targets import entry_problems
from chaos_engineering.issues import ValidationIssue
from chaos_engineering.policy import Mode, ProtectedService, SafetyPolicy, Tier
from chaos_engineering.reach import may_select_service_pod, reachable_pairs, selected_namespaces


def _text(value: Any) -> str | None:
    return value.value if isinstance(value, enum.Enum) else value


def effective_duration(experiment: Experiment, policy: SafetyPolicy) -> float:
    """The duration the fault will get: its own, or the tier's maximum when it names none."""
    duration = getattr(experiment.spec, "duration", None)
    return parse_go_duration(duration) if duration else policy.tiers[experiment.tier].max_duration


# stress-ng options that only tune the stressor they are given to; any other option starts or
# changes a stressor of its own (`--vm 4` inside the cpu stressor's options is a memory stressor).
TUNING_OPTIONS = {
    "cpu": frozenset({"--cpu-method", "--cpu-ops", "--cpu-load-slice"}),
    "memory": frozenset({"--vm-hang", "--vm-keep", "--vm-madvise", "--vm-method", "--vm-ops", "--vm-populate"}),
}


def foreign_options(stressor: str, options: list[str] | None) -> list[str]:
    """The options of a `stressor` (cpu, memory) that are not its tuning options: Chaos Mesh
    appends them to the stress-ng command line as they are, so each may start another stressor."""
    words = [word for option in options or [] for word in option.split()]
    return [word for word in words if word.startswith("-") and word.split("=", 1)[0] not in TUNING_OPTIONS[stressor]]


def _actions(spec: Any) -> list[tuple[str, str, str]]:
    """(action, field, why) for everything the fault does; `why` explains a non-obvious one."""
    action = _text(getattr(spec, "action", None))
    if action is not None:
        return [(action, "chaos.spec.action", "")]
    if hasattr(spec, "stressngStressors"):
        used = []
        for name in ("cpu", "memory"):
            stressor = getattr(spec.stressors, name, None) if spec.stressors is not None else None
            if stressor is None:
                continue
            used.append((name, f"chaos.spec.stressors.{name}", ""))
            foreign = foreign_options(name, stressor.options)
            if foreign:
                why = (
                    f": {', '.join(foreign)} {'is not a tuning option' if len(foreign) == 1 else 'are not tuning options'} "
                    f"of the {name} stressor ({', '.join(sorted(TUNING_OPTIONS[name]))}) and stress-ng runs "
                    f"{'it' if len(foreign) == 1 else 'them'} as given"
                )
                used.append(("stress-ng", f"chaos.spec.stressors.{name}.options", why))
        if spec.stressngStressors is not None:
            used.append(("stress-ng", "chaos.spec.stressngStressors", ""))
        return used
    return [(name, f"chaos.spec.{name}", "") for name in ("abort", "delay", "replace", "patch") if getattr(spec, name, None) not in (None, False)]


def fault_actions(spec: Any) -> list[str]:
    """What a fault does, in the words the policy's `allowed_kinds` uses: the `action` of kinds
    that have one; the stressors of a StressChaos (`cpu`, `memory`, and `stress-ng` for
    `stressngStressors` or for an option beyond a stressor's own tuning); the faults (abort,
    delay, replace, patch) of an HTTPChaos. Empty when the spec names none (never accepted)."""
    return list(dict.fromkeys(action for action, _, _ in _actions(spec)))


def network_target(spec: Any) -> Any:
    """The `target` side of a NetworkChaos (a selector with its own mode and value), else None.
    (An HTTPChaos `target` is Request/Response, not pods.)"""
    target = getattr(spec, "target", None)
    return target if getattr(target, "selector", None) is not None else None


def fixed_count(mode: Any, value: str | None) -> int | None:
    """How many pods a side hits when its mode says so without knowing the cluster."""
    mode = Mode(_text(mode))
    if mode is Mode.ONE:
        return 1
    if mode is Mode.FIXED and value not in (None, ""):
        return int(value)
    return None


def protected_reach_message(tier: Tier, reached: list[tuple[str, ProtectedService, list[str]]], *, by_pod_name: bool) -> str:
    """Why a selector may reach the protected services of `reached` (name, service, the `key=value`
    pairs of it the selector could select) that `tier` may not touch, and the one change that fixes it."""
    pairs = [pair for _, _, service_pairs in reached for pair in service_pairs]
    if len(reached) == 1:
        name, service, _ = reached[0]
        whose = (f"protected service {name!r} (level {service.level.value}, forbidden to the {tier.value} tier): "
                 "a pod with any of its labels counts as the service's")
    else:
        names = ", ".join(f"{name!r} (level {service.level.value})" for name, service, _ in reached)
        whose = (f"protected services {names}, all forbidden to the {tier.value} tier: a pod with any label of a "
                 "protected service counts as that service's")
    if by_pod_name:
        how = "selector.pods names pods whose labels are only known at run time; select them by namespaces and labels instead"
    else:
        values: dict[str, list[str]] = {}
        for key, value in (pair.split("=", 1) for pair in pairs):
            values.setdefault(key, []).append(value)
        excluded = ", ".join(f"{{key: {key}, operator: NotIn, values: [{', '.join(v)}]}}" for key, v in values.items())
        how = (f"pin {', '.join(values)} in labelSelectors to your service's value{'s' if len(values) > 1 else ''}, or "
               f"exclude {'it' if len(reached) == 1 else 'them'}, e.g. expressionSelectors: [{excluded}]")
    return f"could select a pod carrying {', '.join(pairs)} of {whose}, in any namespace; {how}"


class _Checker:
    def __init__(self, experiment: Experiment, policy: SafetyPolicy) -> None:
        self.experiment = experiment
        self.policy = policy
        self.tier_rules = policy.tiers[experiment.tier]
        self.issues: list[ValidationIssue] = []

    def fail(self, field: str, rule: str, message: str) -> None:
        self.issues.append(ValidationIssue(str(self.experiment.source), field, rule, message))

    def run(self) -> list[ValidationIssue]:
        spec = self.experiment.spec
        self.target_service()
        for i, service in enumerate(self.experiment.on_deploy):
            self.unknown_service(f"on_deploy[{i}]", service)
        self.kind_and_action()
        self.stressors()
        self.duration()
        primary_ok = self.blast_radius("chaos.spec", spec.mode, spec.value)
        self.selector("chaos.spec.selector", spec.selector, primary=True)
        target = network_target(spec)
        if target is not None:
            # Chaos Mesh injects into the target pods too (direction from/both, and partition
            # always), so the target side answers to the same rules as the selector.
            target_ok = self.blast_radius("chaos.spec.target", target.mode, target.value)
            if primary_ok and target_ok:
                self.both_sides(spec, target)
            self.selector("chaos.spec.target.selector", target.selector, primary=False)
        self.external_targets()
        self.remote_cluster()
        self.tls_secret()
        self.thresholds()
        return self.issues

    def unknown_service(self, field: str, name: str) -> bool:
        """Fails `field` (rule unknown-service) unless `name` is a service of the policy."""
        if self.policy.service(name) is not None:
            return False
        known = sorted([*self.policy.services, *self.policy.protected_services])
        self.fail(field, "unknown-service", f"{name!r} is not a service of the policy (known: {', '.join(known)})")
        return True

    def target_service(self) -> None:
        name, tier = self.experiment.target_service, self.experiment.tier
        if self.unknown_service("target.service", name):
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
        actions = _actions(self.experiment.spec)
        if not actions:
            self.fail(
                "chaos.spec",
                "tier-action",
                f"{kind.value} names nothing it does (no action, stressor or fault), so it cannot be checked against "
                f"the {tier} tier; add one the tier allows ({', '.join(allowed[kind]) or 'none'})",
            )
        for action, field, why in actions:
            if action not in allowed[kind]:
                self.fail(
                    field if why else ("chaos.spec.action" if field == "chaos.spec.action" else "chaos.spec"),
                    "tier-action",
                    f"{kind.value} {action!r} is not allowed in the {tier} tier "
                    f"(allowed: {', '.join(allowed[kind]) or 'none'}){why}; "
                    f"{'remove them, or move the experiment' if why else 'move it'} to a tier that allows it",
                )

    def stressors(self) -> None:
        """A memory stressor the OOM killer spares makes it kill other processes instead."""
        spec = self.experiment.spec
        memory = spec.stressors.memory if self.experiment.kind is ChaosKind.STRESS_CHAOS and spec.stressors else None
        if memory is not None and (memory.oomScoreAdj or 0) < 0:
            self.fail(
                "chaos.spec.stressors.memory.oomScoreAdj",
                "oom-score-adj",
                f"oomScoreAdj {memory.oomScoreAdj} makes the OOM killer spare the stressor and kill other processes "
                "instead (the pod's own, or other pods' on the node); remove it or set it to 0 or more",
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

    def blast_radius(self, side: str, mode_value: Any, raw_value: str | None) -> bool:
        """`mode` allowed in the tier and `value` within its bounds, for one side; True when both hold."""
        radius, tier = self.tier_rules.blast_radius, self.experiment.tier.value
        mode = Mode(_text(mode_value))
        which = "target mode" if side.endswith(".target") else "mode"
        if mode not in radius.modes:
            allowed = ", ".join(m.value for m in radius.modes)
            self.fail(f"{side}.mode", "blast-radius-mode", f"{which} {mode.value!r} is not allowed in the {tier} tier (allowed: {allowed})")
            return False
        value = int(raw_value) if raw_value not in (None, "") else None
        if mode is Mode.FIXED and value is not None and value > radius.max_pods:
            self.fail(f"{side}.value", "blast-radius", f"{value} pods exceed the {tier} tier's maximum of {radius.max_pods}")
            return False
        if mode in (Mode.FIXED_PERCENT, Mode.RANDOM_MAX_PERCENT) and value is not None and value > radius.max_percent:
            self.fail(f"{side}.value", "blast-radius", f"{value} % of the pods exceeds the {tier} tier's maximum of {radius.max_percent} %")
            return False
        return True

    def both_sides(self, spec: Any, target: Any) -> None:
        """The pods of both sides count against max_pods; decided here when both modes fix a
        count, at run time otherwise (the pods are listed then)."""
        selected, targeted = fixed_count(spec.mode, spec.value), fixed_count(target.mode, target.value)
        limit, tier = self.tier_rules.blast_radius.max_pods, self.experiment.tier.value
        if selected is not None and targeted is not None and selected + targeted > limit:
            self.fail(
                "chaos.spec.target",
                "blast-radius-both-sides",
                f"Chaos Mesh injects into both sides of a NetworkChaos: {selected} selected + {targeted} target pod(s) "
                f"= {selected + targeted} exceed the {tier} tier's maximum of {limit}; drop target (the fault then "
                "applies to all the selected pods' traffic) or move the experiment to a tier that allows it",
            )

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
        reached = [
            (name, service, pairs)
            for name, service in self.policy.protected_services.items()
            if service.level.forbids(tier) and (pairs := reachable_pairs(selector, service))
        ]
        # One issue per fix (the label keys to pin, or pods to select by labels), naming every
        # service that fix keeps out of reach: the same fix said once per service hides the others.
        by_fix: dict[tuple[str, ...], list[tuple[str, ProtectedService, list[str]]]] = {}
        for name, service, pairs in reached:
            fix = () if selector.pods else tuple(dict.fromkeys(pair.split("=", 1)[0] for pair in pairs))
            by_fix.setdefault(fix, []).append((name, service, pairs))
        for group in by_fix.values():
            self.fail(field, "protected-reach", protected_reach_message(tier, group, by_pod_name=bool(selector.pods)))
        target = self.policy.service(self.experiment.target_service)
        if primary and target is not None and not may_select_service_pod(selector, target):
            self.fail(field, "target-mismatch", f"cannot select any pod of the target service {self.experiment.target_service!r}")

    def external_targets(self) -> None:
        for index, entry in enumerate(getattr(self.experiment.spec, "externalTargets", None) or []):
            for rule, message in entry_problems(self.policy, self.experiment.tier, entry):
                self.fail(f"chaos.spec.externalTargets[{index}]", rule, message)

    def remote_cluster(self) -> None:
        cluster = self.experiment.spec.remoteCluster
        allowed = self.policy.allowed_remote_clusters
        if cluster is not None and cluster not in allowed:
            self.fail(
                "chaos.spec.remoteCluster",
                "remote-cluster",
                f"remoteCluster {cluster!r} is not in the policy's allowed_remote_clusters "
                f"({', '.join(allowed) or 'none'}): the fault would land in another cluster, whose pods this system "
                "does not check; remove remoteCluster",
            )

    def tls_secret(self) -> None:
        """An HTTPChaos reads its TLS secret wherever it says: not from a namespace we may not touch."""
        tls = getattr(self.experiment.spec, "tls", None)
        allowed = self.policy.allowed_target_namespaces
        if tls is not None and tls.secretNamespace not in allowed:
            self.fail(
                "chaos.spec.tls.secretNamespace",
                "allowed-namespace",
                f"namespace {tls.secretNamespace!r} is not a target namespace of the policy (allowed: "
                f"{', '.join(allowed)}); Chaos Mesh would read a secret there",
            )

    def thresholds(self) -> None:
        for field, rule, message in threshold_override_problems(self.experiment.threshold_limits, self.policy):
            self.fail(field, rule, message)


def threshold_override_problems(limits: dict[str, float], policy: SafetyPolicy) -> list[tuple[str, str, str]]:
    """(field, rule, message) for each override of `thresholds:` (an experiment's or a scenario's)
    that names no threshold of the policy or loosens its limit: a run may only tighten one."""
    known = policy.safety.thresholds
    problems = []
    for name, limit in limits.items():
        threshold = known.get(name)
        if threshold is None:
            problems.append((f"thresholds.{name}", "unknown-threshold", f"no threshold {name!r} in the policy (known: {', '.join(known)})"))
        elif not threshold.rule.tightens(limit, threshold.limit):
            problems.append(
                (
                    f"thresholds.{name}.limit",
                    "loosened-threshold",
                    f"{limit:g} is looser than the policy's {threshold.limit:g} ({threshold.rule.value}); an experiment may only tighten a limit",
                )
            )
    return problems


def check_experiment(experiment: Experiment, policy: SafetyPolicy) -> list[ValidationIssue]:
    return _Checker(experiment, policy).run()

