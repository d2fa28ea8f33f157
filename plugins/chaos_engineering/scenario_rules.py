"""The safety policy's rules for a whole scenario: its tier, its span, the pods its steps touch
together and the protected services they may not reach. Each step has passed its own tier's rules."""

from __future__ import annotations

from typing import Any

from chaos_engineering.chaosmesh.duration import format_go_duration
from chaos_engineering.external_targets import PROTECTED, entry_problems
from chaos_engineering.issues import ValidationIssue
from chaos_engineering.policy import ProtectionLevel, SafetyPolicy, Tier
from chaos_engineering.reach import reachable_pairs
from chaos_engineering.rules import fixed_count, network_target, threshold_override_problems
from chaos_engineering.scenario import Scenario, ScenarioStep, StepWindow, format_offset


def tier_rank(tier: Tier) -> int:
    """low < medium < high: a higher tier's rules and approvals cover a lower tier's experiment."""
    return list(Tier).index(tier)


def sides(spec: Any) -> list[tuple[str, Any]]:
    """(field, side) for the pods a fault touches: its selector, and a NetworkChaos's target
    (Chaos Mesh injects into both sides of a partition, and of from/both directions)."""
    target = network_target(spec)
    return [("chaos.spec", spec)] + ([("chaos.spec.target", target)] if target is not None else [])


def step_fixed_pods(step: ScenarioStep) -> int | None:
    """How many pods the step's fault touches when every side's mode fixes it; None when a side's
    count depends on the cluster (all, percentages): plan counts it then, from the pods resolved."""
    counts = [fixed_count(side.mode, side.value) for _, side in sides(step.experiment.spec)]
    return None if None in counts else sum(counts)


def _step_field(index: int, step: ScenarioStep, inner: str) -> str:
    """Where an issue of a step's experiment is: inside the scenario file for an inline step, at
    the step's `experiment` name for a catalogue one (its own file is the catalogue's)."""
    return f"steps[{index}].experiment.{inner}" if step.inline else f"steps[{index}].experiment"


class _ScenarioChecker:
    def __init__(self, scenario: Scenario, policy: SafetyPolicy) -> None:
        self.scenario = scenario
        self.policy = policy
        self.tier_rules = policy.tiers[scenario.tier]
        self.issues: list[ValidationIssue] = []

    def fail(self, field: str, rule: str, message: str) -> None:
        self.issues.append(ValidationIssue(str(self.scenario.source), field, rule, message))

    def run(self) -> list[ValidationIssue]:
        for field, rule, message in threshold_override_problems(self.scenario.threshold_limits, self.policy):
            self.fail(field, rule, message)
        for index, step in enumerate(self.scenario.steps):
            self.step_tier(index, step)
            self.protected(index, step)
        timeline = self.scenario.timeline(self.policy)
        self.span(timeline)
        self.combined_pods(timeline)
        return self.issues

    def step_tier(self, index: int, step: ScenarioStep) -> None:
        tier = self.scenario.tier
        if tier_rank(step.experiment.tier) > tier_rank(tier):
            self.fail(
                f"steps[{index}].experiment",
                "step-tier",
                f"step {step.name!r} runs {step.experiment.name!r}, a {step.experiment.tier.value}-tier experiment; a "
                f"{tier.value}-tier scenario may only run experiments of its tier or below (its approvals and window "
                f"would be too weak): raise the scenario's tier to {step.experiment.tier.value}",
            )

    def protected(self, index: int, step: ScenarioStep) -> None:
        """No step reaches a protected service of any level, whatever the tiers would allow one
        experiment: a cascade must not spread to what the business protects."""
        experiment = step.experiment
        guarded = {name: s for name, s in self.policy.protected_services.items() if s.level is not ProtectionLevel.NONE}
        if experiment.target_service in guarded:
            level = guarded[experiment.target_service].level.value
            self.fail(
                _step_field(index, step, "target.service"),
                "scenario-protected-target",
                f"step {step.name!r} targets protected service {experiment.target_service!r} (level {level}); a "
                "scenario's steps may touch no protected service: run it as an experiment of its own",
            )
        for side_field, side in sides(experiment.spec):
            for name, service in guarded.items():
                pairs = reachable_pairs(side.selector, service)
                if pairs:
                    self.fail(
                        _step_field(index, step, f"{side_field}.selector"),
                        "scenario-protected-reach",
                        f"step {step.name!r} could select a pod carrying {', '.join(pairs)} of protected service "
                        f"{name!r} (level {service.level.value}); a scenario's steps may reach no protected service "
                        "of any level: pin the selector's labels to the step's own service",
                    )
        # Two tiers between them forbid every level but none (low: absolute and high; high: absolute and medium).
        for entry_index, entry in enumerate(getattr(experiment.spec, "externalTargets", None) or []):
            messages = dict.fromkeys(
                message for tier in (Tier.LOW, Tier.HIGH) for rule, message in entry_problems(self.policy, tier, entry) if rule == PROTECTED
            )
            for message in messages:
                self.fail(
                    _step_field(index, step, f"chaos.spec.externalTargets[{entry_index}]"),
                    "scenario-protected-reach",
                    f"step {step.name!r}: a scenario's steps may reach no protected service of any level: {message}",
                )

    def span(self, timeline: dict[str, StepWindow]) -> None:
        tier = self.scenario.tier.value
        limit = self.tier_rules.scenario_max_duration
        if limit is None:
            self.fail(
                "tier",
                "scenario-tier",
                f"the policy's {tier} tier sets no scenario_max_duration, so it runs no scenario; set "
                f"tiers.{tier}.scenario_max_duration in the policy or choose another tier",
            )
            return
        span = max(window.end for window in timeline.values())
        if span > limit:
            last = max(timeline, key=lambda name: timeline[name].end)
            self.fail(
                "steps",
                "scenario-max-duration",
                f"the steps span {format_go_duration(span)} (step {last!r} is planned to end last), beyond the {tier} "
                f"tier's scenario maximum of {format_go_duration(limit)} (tiers.{tier}.scenario_max_duration): "
                "shorten steps or their offsets",
            )

    def combined_pods(self, timeline: dict[str, StepWindow]) -> None:
        """At each step's start, the fixed pod counts of every step standing then, against the
        tier's scenario limit. Counted as distinct pods: which pods a mode picks is only known at
        run time, and two steps may pick two pods of one service."""
        tier = self.scenario.tier.value
        limit = self.tier_rules.scenario_pod_limit
        counts = {step.name: step_fixed_pods(step) for step in self.scenario.steps}
        reported: set[frozenset[str]] = set()
        for name, window in timeline.items():
            standing = [other for other, w in timeline.items() if w.start <= window.start < w.end]
            known = [(other, counts[other]) for other in standing if counts[other] is not None]
            total = sum(count for _, count in known)
            if total <= limit or frozenset(standing) in reported:
                continue
            reported.add(frozenset(standing))
            together = (
                f"steps {', '.join(repr(o) for o, _ in known)} stand together from {format_offset(window.start)}: "
                f"{' + '.join(str(c) for _, c in known)} = {total} pods"
                if len(known) > 1
                else f"step {known[0][0]!r} touches {total} pods"
            )
            self.fail(
                "steps",
                "combined-blast-radius",
                f"{together} (both sides of network faults counted) exceed the {tier} tier's scenario maximum of "
                f"{limit} (tiers.{tier}.scenario_max_pods): start one step after another ends "
                "(start: {after: <step>, when: ended}) or touch fewer pods",
            )


def check_scenario(scenario: Scenario, policy: SafetyPolicy) -> list[ValidationIssue]:
    return _ScenarioChecker(scenario, policy).run()
