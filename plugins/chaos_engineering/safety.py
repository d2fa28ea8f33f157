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
    limit: float
    bound: float | None
    at: float  # unix time of the reading
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


def needs_baseline(threshold: Threshold) -> bool:
    return threshold.rule in (ThresholdRule.MAX_DROP_PERCENT, ThresholdRule.MAX_INCREASE)


def bound_of(threshold: Threshold, baseline: float | None) -> float:
    """The value the metric may not cross. Relative rules need a finite baseline."""
    if needs_baseline(threshold):
        if baseline is None or not math.isfinite(baseline):
            raise ValueError(f"threshold rule {threshold.rule.value} needs a baseline, got {baseline!r}")
        if threshold.rule is ThresholdRule.MAX_DROP_PERCENT:
            return baseline * (1 - threshold.limit / 100)
        return baseline + threshold.limit
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
    unit = f" {threshold.unit}" if threshold.unit else ""
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
