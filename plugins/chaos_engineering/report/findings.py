"""Findings and recommendations: explicit rules over the analysis, each citing the numbers behind it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from chaos_engineering.report.analysis import FELL, ROSE, MetricAnalysis, RunAnalysis, StageTiming

SEVERITIES = ("critical", "warning", "info")


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    title: str
    detail: str
    recommendation: str
    evidence: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None
    stage: str | None = None


Rule = Callable[[RunAnalysis], Iterator[Finding]]
RULES: dict[str, Rule] = {}
#: The rules only a scenario's steps can fire (run.scenario), kept apart so that each set's tests pin it.
SCENARIO_RULES: dict[str, Rule] = {}


def rule(rule_id: str, registry: dict[str, Rule] = RULES) -> Callable[[Rule], Rule]:
    def register(function: Rule) -> Rule:
        registry[rule_id] = function
        function.rule_id = rule_id
        return function

    return register


def clock(at: float | None) -> str:
    return "-" if at is None else dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime("%H:%M:%S UTC")


def _seconds(value: float | None) -> str:
    return "unknown" if value is None else f"{value:g} s"


def amount(metric: MetricAnalysis, value: float | None) -> str:
    if value is None:
        return "n/a"
    unit = metric.threshold.unit
    return f"{value:.4g}{'' if unit in ('', '%') else ' '}{unit}"


@rule("safety-breach")
def safety_breach(run: RunAnalysis) -> Iterator[Finding]:
    breach = run.breach
    if breach is None:
        return
    detect = "with no sample beyond the bound in the series before it"
    if breach.time_to_detect_s is not None:
        detect = f"{breach.time_to_detect_s:.1f} s after its first sample beyond the bound"
    remove = "no removal was requested by the kill switch"
    if breach.time_to_remove_s is not None:
        remove = f"removal requested {breach.time_to_remove_s:.1f} s later"
    yield Finding(
        rule="safety-breach",
        severity="critical",
        title=f"Safety breach on {breach.threshold}",
        detail=f"{breach.message}; detected at {clock(breach.at)}, {detect}; {remove}.",
        recommendation=(
            f"The hypothesis did not hold: find why {breach.threshold} crossed its bound under this fault "
            "and fix that weakness before running the experiment again."
        ),
        evidence={
            "value": breach.value,
            "bound": breach.bound,
            "at": breach.at,
            "time_to_detect_s": breach.time_to_detect_s,
            "time_to_remove_s": breach.time_to_remove_s,
        },
        metric=breach.threshold,
    )


def _series_seen(stage: StageTiming) -> str:
    """What the series says of a stage: when every one of its metrics was within bound again."""
    if stage.series_time_to_recover_s is None:
        return ""
    return f" In the series every stage metric was within its bound {stage.series_time_to_recover_s:.1f} s after removal."


@rule("recovery-slow")
def recovery_slow(run: RunAnalysis) -> Iterator[Finding]:
    for stage in run.stages:
        if stage.status in ("not_run", "unobserved") or stage.met_deadline:
            continue
        measured = f"{stage.time_to_recover_s:.1f} s" if stage.time_to_recover_s is not None else "no time recorded"
        how = "recovered only after" if stage.status == "recovered" else "had not recovered after"
        pending = f" Still pending: {'; '.join(stage.pending)}." if stage.pending else ""
        seen = _series_seen(stage)
        yield Finding(
            rule="recovery-slow",
            severity="critical",
            title=f"{stage.stage} recovery slower than its deadline",
            detail=f"The {stage.stage} stage {how} {measured} (deadline {_seconds(stage.deadline_s)}).{pending}{seen}",
            recommendation=(
                f"Find what delays the {stage.stage} recovery ({', '.join(stage.thresholds) or 'its checks'}): readiness probes, "
                f"restart back-off, autoscaling, warm-up. Change recovery.{stage.stage}.deadline only if {measured} is acceptable to the business."
            ),
            evidence={
                "time_to_recover_s": stage.time_to_recover_s,
                "deadline_s": stage.deadline_s,
                "status": stage.status,
                "series_time_to_recover_s": stage.series_time_to_recover_s,
            },
            stage=stage.stage,
        )


@rule("recovery-unobserved")
def recovery_unobserved(run: RunAnalysis) -> Iterator[Finding]:
    for stage in run.stages:
        if stage.status != "unobserved":
            continue
        first = f"{stage.time_to_recover_s:.1f} s" if stage.time_to_recover_s is not None else "an unrecorded time"
        yield Finding(
            rule="recovery-unobserved",
            severity="warning",
            title=f"{stage.stage} recovery not observed in time",
            detail=(f"The {stage.stage} stage was first checked {first} after the fault's removal, after its "
                    f"{_seconds(stage.deadline_s)} deadline, and found back: whether it recovered in time is not known.{_series_seen(stage)}"),
            recommendation=(
                f"Find why the {stage.stage} check ran late (this run's worker, triggerer and scheduler logs), then run the experiment "
                "again: the hypothesis was not judged."
            ),
            evidence={"time_to_recover_s": stage.time_to_recover_s, "deadline_s": stage.deadline_s, "status": stage.status,
                      "series_time_to_recover_s": stage.series_time_to_recover_s},
            stage=stage.stage,
        )


@rule("not-back-to-baseline")
def not_back_to_baseline(run: RunAnalysis) -> Iterator[Finding]:
    for metric in run.metrics.values():
        if metric.band is None or metric.end_median is None or metric.band[0] <= metric.end_median <= metric.band[1]:
            continue
        side = "above" if metric.end_median > metric.band[1] else "below"
        harmful = (side == "above") == (metric.worse == "higher")
        yield Finding(
            rule="not-back-to-baseline",
            severity="warning" if harmful else "info",
            title=f"{metric.name} did not return to its baseline",
            detail=(
                f"At the end of the series ({run.settings.smoothing_s:g} s median) {metric.name} was {amount(metric, metric.end_median)}, "
                f"{side} its baseline band {amount(metric, metric.band[0])}..{amount(metric, metric.band[1])} "
                f"(baseline {amount(metric, metric.baseline)})."
            ),
            recommendation=(
                f"Watch {metric.name} after the run and look for state the fault left behind (caches, connection pools, queues); "
                "extend the observation past the business stage if it keeps drifting."
                if harmful
                else f"{metric.name} settled on the better side of its baseline; check whether the fault changed the system's steady state "
                "(for example, load moved elsewhere)."
            ),
            evidence={"end_median": metric.end_median, "band_low": metric.band[0], "band_high": metric.band[1], "baseline": metric.baseline},
            metric=metric.name,
        )


@rule("late-detection")
def late_detection(run: RunAnalysis) -> Iterator[Finding]:
    breach = run.breach
    if breach is None or breach.time_to_detect_s is None or breach.time_to_detect_s <= run.settings.late_detection_s:
        return
    yield Finding(
        rule="late-detection",
        severity="warning",
        title=f"Breach of {breach.threshold} detected late",
        detail=(
            f"{breach.threshold} was first beyond its bound at {clock(breach.first_beyond_at)}; "
            f"the breach was declared at {clock(breach.at)}, "
            f"{breach.time_to_detect_s:.1f} s later (more than {run.settings.late_detection_s:g} s)."
        ),
        recommendation=(
            f"Shorten safety.check_interval or the range of {breach.threshold}'s query (its rate window delays the signal): "
            f"customers felt {breach.time_to_detect_s:.0f} s of the fault before the kill."
        ),
        evidence={
            "first_beyond_at": breach.first_beyond_at,
            "at": breach.at,
            "time_to_detect_s": breach.time_to_detect_s,
            "limit_s": run.settings.late_detection_s,
        },
        metric=breach.threshold,
    )


@rule("near-miss")
def near_miss(run: RunAnalysis) -> Iterator[Finding]:
    for metric in run.metrics.values():
        used = metric.headroom_used
        breached = run.breach is not None and run.breach.threshold == metric.name
        if breached or not metric.worsened or used is None or not run.settings.near_miss_headroom <= used <= 1:
            continue
        test = metric.versus_baseline["fault"]
        yield Finding(
            rule="near-miss",
            severity="warning",
            title=f"Near miss on {metric.name}",
            detail=(
                f"{metric.name} {test.judgement} during the fault (p = {test.p_value:.2g}, Cliff's delta = {test.cliffs_delta:+.2f}) "
                f"and reached {amount(metric, metric.worst_in_fault)} at {clock(metric.worst_in_fault_at)}: {used:.0%} of the headroom "
                f"between its baseline {amount(metric, metric.baseline)} and its bound {amount(metric, metric.bound)}, without a breach."
            ),
            recommendation=(
                "Treat this as a warning: before the next run, reduce the fault's duration or blast radius, "
                f"or add capacity to what {metric.name} depends on; the margin left was {1 - used:.0%}."
            ),
            evidence={
                "worst": metric.worst_in_fault,
                "bound": metric.bound,
                "baseline": metric.baseline,
                "headroom_used": used,
                "p_value": test.p_value,
                "cliffs_delta": test.cliffs_delta,
            },
            metric=metric.name,
        )


@rule("excursion-not-caught")
def excursion_not_caught(run: RunAnalysis) -> Iterator[Finding]:
    for metric in run.metrics.values():
        count, first = metric.beyond_bound.get("fault", 0), metric.first_beyond_in_fault_at
        # After a breach the kill switch stops judging: only an excursion before it went unnoticed.
        if not count or (run.breach is not None and (run.breach.threshold == metric.name or first >= run.breach.at)):
            continue
        yield Finding(
            rule="excursion-not-caught",
            severity="warning",
            title=f"{metric.name} crossed its bound unnoticed",
            detail=(
                f"{count} sample(s) of {metric.name} were beyond its bound {amount(metric, metric.bound)} during the fault, "
                f"the first at {clock(first)}, the worst {amount(metric, metric.worst_in_fault)}; "
                f"the kill switch never declared a breach of {metric.name}."
            ),
            recommendation="Shorten safety.check_interval: excursions shorter than a check interval pass between two checks.",
            evidence={"samples_beyond": count, "first_at": first, "worst": metric.worst_in_fault, "bound": metric.bound},
            metric=metric.name,
        )


@rule("held-but-moved")
def held_but_moved(run: RunAnalysis) -> Iterator[Finding]:
    if run.verdict != "held":
        return
    for metric in run.metrics.values():
        test = metric.versus_baseline["fault"]
        if test.judgement not in (ROSE, FELL):
            continue
        fault, base = metric.windows["fault"], metric.windows["baseline"]
        yield Finding(
            rule="held-but-moved",
            severity="info",
            title=f"Hypothesis held, but {metric.name} {test.judgement}",
            detail=(
                f"{metric.name} {test.judgement} from a median of {amount(metric, base.median)} to {amount(metric, fault.median)} "
                "during the fault "
                f"(Mann-Whitney p = {test.p_value:.2g}, Cliff's delta = {test.cliffs_delta:+.2f}) while staying within its bound."
            ),
            recommendation=(
                f"State the expected effect on {metric.name} in the hypothesis, "
                "or tighten its limit in the experiment's `thresholds` if this shift is not acceptable."
            ),
            evidence={"baseline_median": base.median, "fault_median": fault.median, "p_value": test.p_value, "cliffs_delta": test.cliffs_delta},
            metric=metric.name,
        )


@rule("run-aborted")
def run_aborted(run: RunAnalysis) -> Iterator[Finding]:
    if run.verdict != "aborted":
        return
    failed = f" Tasks that did not pass: {', '.join(run.failed_tasks)}." if run.failed_tasks else ""
    yield Finding(
        rule="run-aborted",
        severity="warning",
        title="The run was aborted",
        detail=f"{run.verdict_reason}.{failed}",
        recommendation="Resolve the cause above (the task logs say more) before triggering the experiment again; an aborted run tested nothing.",
        evidence={"reason": run.verdict_reason, "failed_tasks": run.failed_tasks},
    )


@rule("data-gaps")
def data_gaps(run: RunAnalysis) -> Iterator[Finding]:
    settings = run.settings
    for metric in run.metrics.values():
        quality = metric.quality
        if not quality.expected:
            continue
        gap = quality.longest_gap_s or 0.0
        if quality.missing_share <= settings.max_missing_share and gap <= settings.max_gap_s:
            continue
        yield Finding(
            rule="data-gaps",
            severity="warning",
            title=f"Missing samples of {metric.name}",
            detail=(
                f"{quality.missing} of {quality.expected} expected samples of {metric.name} are missing "
                f"({quality.missing_share:.1%}); "
                f"the longest stretch without a sample lasted {gap:.0f} s from {clock(quality.longest_gap_from)}."
            ),
            recommendation=(
                f"Check the scrape targets and the query of {metric.name}: conclusions drawn from this metric are weaker, "
                "and the kill switch removes the fault when it cannot read it for a few checks in a row."
            ),
            evidence={"missing": quality.missing, "expected": quality.expected, "missing_share": quality.missing_share, "longest_gap_s": gap},
            metric=metric.name,
        )


@rule("breach-after-step", SCENARIO_RULES)
def breach_after_step(run: RunAnalysis) -> Iterator[Finding]:
    """A scenario's breach, tied to the step whose start preceded it."""
    found = run.scenario.breach if run.scenario is not None else None
    if found is None:
        return
    step = run.scenario.step(found.step)
    others = [name for name in found.standing if name != found.step]
    if step is None:
        advice = f"Look at what moved {found.threshold} before the scenario's first step: its baseline may not be steady enough to run on."
    else:
        alone = f"Run step {step.name}'s experiment ({step.plan.get('experiment') or 'its own'}) alone"
        combined = f" the weakness is in its combination with {', '.join(others)}" if others else " the weakness is in what the earlier steps left behind"
        advice = f"{alone}: if {found.threshold} holds then,{combined}; if it breaks again, fix that first."
    yield Finding(
        rule="breach-after-step",
        severity="critical",
        title=f"Breach of {found.threshold} " + (f"after step {found.step}" if found.step else "before any step"),
        detail=found.sentence,
        recommendation=advice,
        evidence={"step": found.step, "after_step_s": found.after_step_s, "at": found.at, "standing": found.standing, "named_by": found.named_by},
        metric=found.threshold,
    )


@rule("step-not-started", SCENARIO_RULES)
def step_not_started(run: RunAnalysis) -> Iterator[Finding]:
    """A step never created in a scenario that did start: the hypothesis was not tested against it."""
    if run.scenario is None or run.injected_at is None:
        return
    for step in run.scenario.steps:
        if step.started:
            continue
        due = f" (due {step.planned_start_s:g} s after the scenario's start)" if step.planned_start_s is not None else ""
        yield Finding(
            rule="step-not-started",
            severity="info",
            title=f"Step {step.name} never started",
            detail=f"Step {step.name}{due} was never created: {step.not_started}.",
            recommendation="The scenario ran without the steps that never started: run it again, whole, once the cause above is resolved.",
            evidence={"step": step.name, "planned_start_s": step.planned_start_s, "reason": step.not_started},
        )


def evaluate(run: RunAnalysis) -> list[Finding]:
    """Every rule's findings, the most severe first (rules keep their order within a severity, a scenario's after
    the others)."""
    findings = [finding for check in (*RULES.values(), *SCENARIO_RULES.values()) for finding in check(run)]
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))
