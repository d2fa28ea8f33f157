"""The kill switch's arithmetic: a threshold's bound from its baseline, and whether a reading breaches it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from chaos_engineering.policy import Threshold, ThresholdRule


@dataclass(frozen=True)
class Breach:
    """A threshold that did not hold: which metric, what it read, against what, and when."""

    threshold: str
    rule: str
    value: float | None
    baseline: float | None
    limit: float | None  # None only for a fail-safe breach that no single threshold caused
    bound: float | None
    at: float  # unix time of the reading
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


def needs_baseline(threshold: Threshold) -> bool:
    return threshold.rule in (ThresholdRule.MAX_DROP_PERCENT, ThresholdRule.MAX_INCREASE)


def _unit(threshold: Threshold) -> str:
    return f" {threshold.unit}" if threshold.unit else ""


def baseline_problem(threshold: Threshold, baseline: object) -> str | None:
    """Why a relative rule cannot be judged against `baseline` (None when it can, or when the rule
    is absolute). The one rule, shared by pre-flight (which refuses to inject) and the kill switch
    (which removes the fault): a relative rule needs a finite number, and a drop is measured from
    above zero (from 0 the bound is 0, which no reading can fall below: the rule could never fire).
    A rise may start from 0: its bound is then the limit itself."""
    if not needs_baseline(threshold):
        return None
    rule = f"{threshold.rule.value} {threshold.limit:g}"
    if baseline is None:
        return f"has no baseline: a relative rule ({rule}) cannot be judged without one"
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float)):
        return f"baseline {baseline!r} is not a number: a relative rule ({rule}) cannot be judged"
    if not math.isfinite(baseline):
        return f"baseline is {baseline}: a relative rule ({rule}) cannot be judged"
    if threshold.rule is ThresholdRule.MAX_DROP_PERCENT and baseline <= 0:
        return (
            f"baseline is {baseline:.4g}{_unit(threshold)}: a relative rule ({rule}) cannot be judged against it "
            f"(no reading can drop below its bound of {bound_from(threshold, baseline):.4g}{_unit(threshold)})"
        )
    return None


def bound_from(threshold: Threshold, baseline: float) -> float:
    if threshold.rule is ThresholdRule.MAX_DROP_PERCENT:
        return baseline * (1 - threshold.limit / 100)
    return baseline + threshold.limit


def bound_of(threshold: Threshold, baseline: float | None) -> float:
    """The value the metric may not cross. Raises ValueError for a relative rule whose baseline
    cannot be judged (`baseline_problem`): never a bound that could not fire."""
    if needs_baseline(threshold):
        problem = baseline_problem(threshold, baseline)
        if problem is not None:
            raise ValueError(problem)
        return bound_from(threshold, baseline)
    return threshold.limit


def _crosses(rule: ThresholdRule, value: float, bound: float) -> bool:
    if rule in (ThresholdRule.MAX_DROP_PERCENT, ThresholdRule.AT_LEAST):
        return value < bound
    return value > bound


def check(name: str, threshold: Threshold, value: float | None, baseline: float | None, at: float) -> Breach | None:
    """None when the reading holds. A missing or non-finite reading is not judged here: the caller
    counts it as a failed read (missing data is never healthy)."""
    if value is None or not math.isfinite(value):
        raise ValueError(f"{name}: no finite reading to judge")
    bound = bound_of(threshold, baseline)
    if not _crosses(threshold.rule, value, bound):
        return None
    unit = _unit(threshold)
    relation = "below" if threshold.rule in (ThresholdRule.MAX_DROP_PERCENT, ThresholdRule.AT_LEAST) else "above"
    against = f" (baseline {baseline:.4g}{unit}, {threshold.rule.value} {threshold.limit:g})" if needs_baseline(threshold) else ""
    return Breach(
        threshold=name,
        rule=threshold.rule.value,
        value=value,
        baseline=baseline,
        limit=threshold.limit,
        bound=bound,
        at=at,
        message=f"{name} = {value:.4g}{unit} is {relation} its bound {bound:.4g}{unit}{against}",
    )


def failed_reads_breach(name: str, reads: int, at: float, reason: str) -> Breach:
    """The fail-safe: metrics that cannot be read for N checks in a row count as a breach."""
    return Breach(
        threshold=name,
        rule="max_failed_reads",
        value=None,
        baseline=None,
        limit=reads,
        bound=None,
        at=at,
        message=f"{name} could not be read {reads} times in a row ({reason}); removing the fault (fail-safe)",
    )


#: The rule of a breach raised because the kill switch could not judge a threshold.
FAIL_SAFE = "fail_safe"


def _number_or_none(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def fail_safe_breach(name: str, threshold: Threshold | None, reason: str, at: float, *, value: object = None, baseline: object = None) -> Breach:
    """The fail-safe: a threshold that cannot be judged (no usable baseline, a judging error)
    counts as a breach; what it read and its baseline are kept only when they are numbers."""
    return Breach(
        threshold=name,
        rule=FAIL_SAFE,
        value=_number_or_none(value),
        baseline=_number_or_none(baseline),
        limit=threshold.limit if threshold is not None else None,
        bound=None,
        at=at,
        message=f"{name} {reason}; removing the fault (fail-safe)",
    )
