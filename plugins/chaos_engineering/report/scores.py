"""The impact score (customer impact) and the system health score of a run, as docs/REPORT.md defines them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from chaos_engineering.report.analysis import RunAnalysis, beyond, series_times


@dataclass(frozen=True)
class Score:
    value: float | None
    basis: str
    components: dict[str, float | None] = field(default_factory=dict)


def business_metrics_of(run: RunAnalysis, named: Iterable[str] | None) -> list[str]:
    """The metrics customers feel: those named, else the business recovery stage's, else all."""
    if named:
        return [n for n in named if n in run.metrics]
    business = next((s.thresholds for s in run.stages if s.stage == "business" and s.thresholds), None)
    return [n for n in business if n in run.metrics] if business else list(run.metrics)


def impact_score(run: RunAnalysis, business: list[str]) -> Score:
    """50 x the largest share of headroom a business metric used while significantly worse than its
    baseline (capped at 2, so 100 = twice as far from baseline as the limit allows); a breached
    business metric counts at least 1 (the kill switch saw it beyond its bound)."""
    if run.injected_at is None:
        return Score(None, "no fault was injected")
    used: dict[str, float | None] = {}
    for name in business:
        metric = run.metrics[name]
        share = metric.headroom_used if metric.worsened and metric.headroom_used is not None else 0.0
        if run.breach is not None and run.breach.threshold == name:
            share = max(share, 1.0)
        used[name] = round(min(2.0, max(0.0, share)), 4)
    if not used:
        return Score(0.0, "no business metric to judge", used)
    worst = max(used, key=used.get)
    if not used[worst]:
        return Score(0.0, f"no business metric ({', '.join(used)}) worsened significantly during the fault", used)
    return Score(round(50 * used[worst], 1), f"{worst} used {used[worst]:.0%} of its headroom during the fault", used)


def health_score(run: RunAnalysis, series: pd.DataFrame) -> Score:
    """100 x (W + R) / 2: W the share of (sample, metric) readings within their bounds from injection
    to the end (a missing reading is not within), R the share of the recovery stages that met their
    deadline (a stage that did not run did not meet it)."""
    if run.injected_at is None:
        return Score(None, "no fault was injected")
    bounded = [m for m in run.metrics.values() if m.bound is not None]
    within = None
    if len(series) and bounded:
        after = series_times(series) >= run.injected_at
        rows = int(after.sum())
        if rows:
            ok = 0
            for metric in bounded:
                values = series[metric.name].to_numpy(dtype=float)[after] if metric.name in series.columns else np.full(rows, np.nan)
                ok += int((np.isfinite(values) & ~beyond(values, metric.bound, metric.worse)).sum())
            within = ok / (rows * len(bounded))
    stages = run.stages or []
    recovered = sum(s.met_deadline for s in stages) / len(stages) if stages else 0.0
    if within is None:
        return Score(round(100 * recovered, 1), "no series to judge: recovery stages only", {"recovery": recovered})
    value = round(100 * (within + recovered) / 2, 1)
    basis = f"{within:.1%} of readings within bounds, {recovered:.0%} of recovery stages on time"
    return Score(value, basis, {"within_bounds": within, "recovery": recovered})
