"""Impact analysis of one run: each metric's baseline, fault and recovery windows compared, bounded and timed."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from chaos_engineering.policy import Threshold, ThresholdRule
from chaos_engineering.safety import bound_of

if TYPE_CHECKING:
    from chaos_engineering.report.scenario import ScenarioAnalysis

#: The recovery stages in the order the tier DAG runs them (operators/recovery.py's STAGES;
#: repeated here because that module imports Airflow and this one must not).
RECOVERY_STAGES = ("immediate", "short_term", "business")

ROSE, FELL, NO_CHANGE, TOO_FEW = "rose", "fell", "no significant change", "insufficient data"


@dataclass(frozen=True)
class AnalysisSettings:
    """The knobs of the analysis and of the finding rules; docs/REPORT.md explains each."""

    alpha: float = 0.05
    #: |Cliff's delta| below this is at most a "small" shift (Romano et al. 2006): with thousands
    #: of autocorrelated 1 s samples almost any shift has a tiny p-value, so p alone is no finding.
    min_effect: float = 0.33
    min_samples: int = 3
    #: A near miss: a significant worsening that used at least this share of the headroom.
    near_miss_headroom: float = 0.8
    late_detection_s: float = 30.0
    #: A metric is back to baseline when its centred rolling median over this span is inside the
    #: baseline's 5th-95th percentile band, widened by `band_tolerance` of the baseline median.
    smoothing_s: float = 30.0
    band_tolerance: float = 0.01
    max_missing_share: float = 0.01
    max_gap_s: float = 30.0


@dataclass(frozen=True)
class WindowStats:
    n: int
    mean: float | None
    median: float | None
    p95: float | None


@dataclass(frozen=True)
class Comparison:
    """One window against the baseline window: Mann-Whitney U (two-sided) and Cliff's delta.

    `cliffs_delta` = P(window > baseline) - P(window < baseline): positive when the metric rose.
    """

    window: str
    u: float | None
    p_value: float | None
    cliffs_delta: float | None
    judgement: str


@dataclass(frozen=True)
class DataQuality:
    expected: int
    present: int
    missing: int
    missing_share: float
    longest_gap_s: float | None
    longest_gap_from: float | None


@dataclass
class MetricAnalysis:
    name: str
    threshold: Threshold
    worse: str  # "higher" or "lower": the direction the threshold guards against
    baseline: float | None  # the kill switch's reference (pre-flight median), else the baseline window's
    baseline_source: str | None
    bound: float | None
    windows: dict[str, WindowStats]
    versus_baseline: dict[str, Comparison]
    beyond_bound: dict[str, int]
    first_beyond_in_fault_at: float | None
    worst_in_fault: float | None
    worst_in_fault_at: float | None
    headroom_used: float | None  # (worst - baseline) / (bound - baseline); 1 = reached the bound
    back_within_bound_at: float | None
    time_to_bound_s: float | None
    band: tuple[float, float] | None
    end_median: float | None
    back_to_baseline_at: float | None
    time_to_baseline_s: float | None
    quality: DataQuality

    @property
    def worsened(self) -> bool:
        """A significant, non-trivial shift in the direction the threshold guards against."""
        judgement = self.versus_baseline["fault"].judgement
        return judgement == (ROSE if self.worse == "higher" else FELL)


@dataclass(frozen=True)
class BreachTiming:
    threshold: str
    rule: str
    value: float | None
    bound: float | None
    at: float
    message: str
    first_beyond_at: float | None
    time_to_detect_s: float | None
    removal_requested_at: float | None
    time_to_remove_s: float | None
    removed_at: float | None
    time_to_removed_s: float | None


@dataclass(frozen=True)
class StageTiming:
    stage: str
    status: str  # recovered | deadline_missed | unobserved | not_run (triggers.stage_status)
    deadline_s: float | None
    at: float | None
    time_to_recover_s: float | None
    thresholds: list[str]
    pending: list[str]
    series_time_to_recover_s: float | None  # when every stage metric was within bound in the series

    @property
    def met_deadline(self) -> bool:
        return (
            self.status == "recovered"
            and self.time_to_recover_s is not None
            and self.deadline_s is not None
            and self.time_to_recover_s <= self.deadline_s
        )


@dataclass
class RunAnalysis:
    settings: AnalysisSettings
    verdict: str
    verdict_reason: str
    failed_tasks: list[str]
    injected_at: float | None
    removed_at: float | None  # end of the fault window, start of the recovery window
    ended_by: str | None  # duration | breach | emergency_stop | watchdog | outside | teardown | unknown
    series_start: float | None
    series_end: float | None
    step_s: float | None
    metrics: dict[str, MetricAnalysis] = field(default_factory=dict)
    breach: BreachTiming | None = None
    stages: list[StageTiming] = field(default_factory=list)
    scenario: ScenarioAnalysis | None = None  # a scenario run's steps (report/scenario.py); None for one experiment


def moment(value: Any) -> float | None:
    """Unix seconds from what result.json holds: unix floats, ISO strings (also `str(datetime)`)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise TypeError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp()
    stamp = pd.Timestamp(value)
    return (stamp if stamp.tzinfo else stamp.tz_localize("UTC")).timestamp()


def as_threshold(value: Threshold | Mapping[str, Any]) -> Threshold:
    return value if isinstance(value, Threshold) else Threshold.model_validate(dict(value))


def effective_thresholds(result: Mapping[str, Any], thresholds: Mapping[str, Any] | None) -> dict[str, Threshold]:
    """The thresholds given, overridden by the limits the run's plan recorded: an experiment may
    tighten a limit, and the report must judge by what the kill switch actually enforced."""
    merged = {name: as_threshold(t) for name, t in (thresholds or {}).items()}
    recorded = ((result.get("experiment") or {}).get("thresholds")) or {}
    merged.update({name: as_threshold(t) for name, t in recorded.items()})
    return merged


def worse_direction(rule: ThresholdRule) -> str:
    return "lower" if rule in (ThresholdRule.MAX_DROP_PERCENT, ThresholdRule.AT_LEAST) else "higher"


def beyond(values: np.ndarray, bound: float, worse: str) -> np.ndarray:
    """Vectorised `safety.check`: True where a finite reading crosses the bound (NaN is False)."""
    with np.errstate(invalid="ignore"):
        return values < bound if worse == "lower" else values > bound


def series_times(series: pd.DataFrame) -> np.ndarray:
    """The index as unix seconds; a naive index is taken as UTC, as Prometheus answers in UTC."""
    index = series.index
    if not isinstance(index, pd.DatetimeIndex):
        index = pd.to_datetime(index, unit="s", utc=True) if np.issubdtype(index.dtype, np.number) else pd.DatetimeIndex(index)
    if index.tz is None:
        index = index.tz_localize("UTC")
    return index.as_unit("ns").asi8 / 1e9


def window_stats(values: np.ndarray) -> WindowStats:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return WindowStats(0, None, None, None)
    return WindowStats(int(finite.size), float(finite.mean()), float(np.median(finite)), float(np.percentile(finite, 95)))


def compare(window: str, baseline: np.ndarray, other: np.ndarray, settings: AnalysisSettings) -> Comparison:
    x, y = other[np.isfinite(other)], baseline[np.isfinite(baseline)]
    if min(x.size, y.size) < settings.min_samples:
        return Comparison(window, None, None, None, TOO_FEW)
    u, p = mannwhitneyu(x, y, alternative="two-sided")
    # U counts pairs where the window's sample is larger (ties half): delta = 2U/(nx*ny) - 1.
    delta = 2.0 * float(u) / (x.size * y.size) - 1.0
    p = float(p) if math.isfinite(p) else 1.0  # all values tied: no evidence of any change
    judgement = NO_CHANGE
    if p < settings.alpha and abs(delta) >= settings.min_effect:
        judgement = ROSE if delta > 0 else FELL
    return Comparison(window, float(u), p, delta, judgement)


def data_quality(times: np.ndarray, values: np.ndarray, start: float, end: float, step: float | None) -> DataQuality:
    present_at = times[np.isfinite(values)]
    expected = int(round((end - start) / step)) + 1 if step else len(times)
    missing = max(0, expected - present_at.size)
    if present_at.size == 0:
        return DataQuality(expected, 0, expected, 1.0 if expected else 0.0, end - start, start)
    edges = np.concatenate(([start], present_at, [end]))
    gaps = np.diff(edges)
    longest = int(np.argmax(gaps))
    return DataQuality(expected, int(present_at.size), missing, missing / expected if expected else 0.0, float(gaps[longest]), float(edges[longest]))


def _baseline_band(baseline: np.ndarray, reference: float | None, tolerance: float) -> tuple[float, float] | None:
    finite = baseline[np.isfinite(baseline)]
    if finite.size == 0:
        return None
    low, high = np.percentile(finite, [5, 95])
    # Never a zero-width band: a constant baseline would otherwise demand an exact return.
    slack = tolerance * abs(reference if reference is not None else float(np.median(finite))) or 1e-9
    return float(low - slack), float(high + slack)


def _back_to_baseline(
    times: np.ndarray, values: np.ndarray, band: tuple[float, float], settings: AnalysisSettings
) -> tuple[float | None, float | None]:
    """(end median, start of the final stretch whose smoothed value stays inside the band)."""
    finite = np.isfinite(values)
    if finite.sum() < settings.min_samples:
        return None, None
    tail = values[finite & (times >= times[-1] - settings.smoothing_s)]
    end_median = float(np.median(tail))
    smoothed = (
        pd.Series(values, index=pd.to_datetime(times, unit="s"))
        .rolling(f"{settings.smoothing_s}s", center=True, min_periods=1)
        .median()
        .to_numpy()
    )
    # Only where there was data to smooth: a trailing gap is a data gap, not a failure to return.
    known = np.isfinite(smoothed)
    at, inside = times[known], (smoothed[known] >= band[0]) & (smoothed[known] <= band[1])
    if not inside[-1] or not band[0] <= end_median <= band[1]:
        return end_median, None
    outside = np.flatnonzero(~inside)
    return end_median, float(at[outside[-1] + 1] if outside.size else at[0])


def analyse_metric(
    name: str,
    threshold: Threshold,
    times: np.ndarray,
    values: np.ndarray,
    reference: float | None,
    run: RunAnalysis,
) -> MetricAnalysis:
    settings = run.settings
    worse = worse_direction(threshold.rule)
    injected, removed = run.injected_at, run.removed_at
    if injected is None:
        masks = {"baseline": np.ones(times.size, bool), "fault": np.zeros(times.size, bool), "recovery": np.zeros(times.size, bool)}
    else:
        end = removed if removed is not None else math.inf
        masks = {"baseline": times < injected, "fault": (times >= injected) & (times < end), "recovery": times >= end}
    parts = {w: values[m] for w, m in masks.items()}
    windows = {w: window_stats(v) for w, v in parts.items()}
    baseline, source = (reference, "preflight") if reference is not None and math.isfinite(reference) else (windows["baseline"].median, "series")
    if baseline is None:
        source = None
    try:
        bound = bound_of(threshold, baseline)
    except ValueError:
        bound = None
    versus = {w: compare(w, parts["baseline"], parts[w], settings) for w in ("fault", "recovery")}

    out = {w: 0 for w in masks}
    first_beyond = worst = worst_at = headroom = back_bound = band = end_median = back_base = None
    fault_t, fault_v = times[masks["fault"]], parts["fault"]
    if bound is not None:
        out = {w: int(beyond(parts[w], bound, worse).sum()) for w in masks}
        hits = np.flatnonzero(beyond(fault_v, bound, worse))
        first_beyond = float(fault_t[hits[0]]) if hits.size else None
    if np.isfinite(fault_v).any():
        pick = np.nanargmin(fault_v) if worse == "lower" else np.nanargmax(fault_v)
        worst, worst_at = float(fault_v[pick]), float(fault_t[pick])
        if bound is not None and baseline is not None and bound != baseline:
            headroom = (worst - baseline) / (bound - baseline) + 0.0  # + 0.0: never a "-0 %"
    rec_t, rec_v = times[masks["recovery"]], parts["recovery"]
    if removed is not None and rec_t.size:
        if bound is not None:
            within = np.isfinite(rec_v) & ~beyond(rec_v, bound, worse)
            back_bound = float(rec_t[np.argmax(within)]) if within.any() else None
        band = _baseline_band(parts["baseline"], baseline, settings.band_tolerance)
        if band is not None:
            end_median, back_base = _back_to_baseline(rec_t, rec_v, band, settings)
    return MetricAnalysis(
        name=name,
        threshold=threshold,
        worse=worse,
        baseline=baseline,
        baseline_source=source,
        bound=bound,
        windows=windows,
        versus_baseline=versus,
        beyond_bound=out,
        first_beyond_in_fault_at=first_beyond,
        worst_in_fault=worst,
        worst_in_fault_at=worst_at,
        headroom_used=headroom,
        back_within_bound_at=back_bound,
        time_to_bound_s=back_bound - removed if back_bound is not None and removed is not None else None,
        band=band,
        end_median=end_median,
        back_to_baseline_at=back_base,
        time_to_baseline_s=back_base - removed if back_base is not None and removed is not None else None,
        quality=data_quality(times, values, run.series_start, run.series_end, run.step_s) if times.size else DataQuality(0, 0, 0, 0.0, None, None),
    )


def _ended_by(result: Mapping[str, Any]) -> str | None:
    if not result.get("fault"):
        return None
    monitor = result.get("monitor") or {}
    status = monitor.get("status")
    if status == "gone":
        # Someone else deleted the object: the monitor's event names who when it could tell.
        by = (monitor.get("removed_by") or {}).get("by")
        return by if by in ("emergency_stop", "watchdog") else "outside"
    return {"completed": "duration", "breach": "breach", "halted": "emergency_stop"}.get(status) or ("teardown" if (result.get("removal") or {}).get("removed_at") else "unknown")


def _fault_end(result: Mapping[str, Any]) -> float | None:
    monitor = result.get("monitor") or {}
    for value in ((result.get("removal") or {}).get("removed_at"), monitor.get("removal_requested_at"), monitor.get("at")):
        if (at := moment(value)) is not None:
            return at
    return None


def _breach_timing(result: Mapping[str, Any], run: RunAnalysis, times: np.ndarray, series: pd.DataFrame) -> BreachTiming | None:
    monitor = result.get("monitor") or {}
    if monitor.get("status") != "breach" or not monitor.get("breach"):
        return None
    breach = monitor["breach"]
    at = moment(breach["at"])
    metric = run.metrics.get(breach["threshold"])
    bound = breach.get("bound") if breach.get("bound") is not None else (metric.bound if metric else None)
    first = None
    if metric is not None and breach["threshold"] in series.columns and run.injected_at is not None:
        in_fault = (times >= run.injected_at) & (times <= at)
        values = series[breach["threshold"]].to_numpy(dtype=float)[in_fault]
        if breach.get("rule") == "max_failed_reads":
            # The fail-safe fires on unreadable metrics: its first "sample beyond" is the first missing one.
            hits = np.flatnonzero(~np.isfinite(values))
        else:
            hits = np.flatnonzero(beyond(values, bound, metric.worse)) if bound is not None else np.array([], int)
        first = float(times[in_fault][hits[0]]) if hits.size else None
    requested = moment(monitor.get("removal_requested_at"))
    removed = moment((result.get("removal") or {}).get("removed_at"))
    return BreachTiming(
        threshold=breach["threshold"],
        rule=breach.get("rule", ""),
        value=breach.get("value"),
        bound=bound,
        at=at,
        message=breach.get("message", ""),
        first_beyond_at=first,
        time_to_detect_s=at - first if first is not None else None,
        removal_requested_at=requested,
        time_to_remove_s=requested - at if requested is not None else None,
        removed_at=removed,
        time_to_removed_s=removed - at if removed is not None else None,
    )


def _stage_timings(result: Mapping[str, Any], run: RunAnalysis, times: np.ndarray, series: pd.DataFrame) -> list[StageTiming]:
    recorded = result.get("recovery") or {}
    stages = []
    for stage in [*RECOVERY_STAGES, *(s for s in recorded if s not in RECOVERY_STAGES)]:
        record = recorded.get(stage)
        if not record:
            stages.append(StageTiming(stage, "not_run", None, None, None, [], [], None))
            continue
        names = sorted((record.get("values") or {}).keys())
        stages.append(
            StageTiming(
                stage=stage,
                status=record.get("status", "unknown"),
                deadline_s=record.get("deadline_s"),
                at=moment(record.get("at")),
                time_to_recover_s=record.get("time_to_recover_s"),
                thresholds=names,
                pending=list(record.get("pending") or []),
                series_time_to_recover_s=_all_within_bound_after(run, names, times, series),
            )
        )
    return stages


def _all_within_bound_after(run: RunAnalysis, names: list[str], times: np.ndarray, series: pd.DataFrame) -> float | None:
    """Seconds from removal to the first sample where every named metric was within its bound
    (a missing sample is never within: missing data is not healthy)."""
    metrics = [run.metrics[n] for n in names if n in run.metrics and n in series.columns and run.metrics[n].bound is not None]
    if run.removed_at is None or not metrics or len(metrics) < len(names):
        return None
    after = times >= run.removed_at
    ok = np.ones(int(after.sum()), bool)
    for m in metrics:
        values = series[m.name].to_numpy(dtype=float)[after]
        ok &= np.isfinite(values) & ~beyond(values, m.bound, m.worse)
    return float(times[after][np.argmax(ok)] - run.removed_at) if ok.any() else None


def analyse_run(
    result: Mapping[str, Any],
    thresholds: Mapping[str, Any] | None,
    series: pd.DataFrame | None,
    settings: AnalysisSettings | None = None,
) -> RunAnalysis:
    """Analyse one run from its result.json, its thresholds and the series Prometheus returned."""
    settings = settings or AnalysisSettings()
    series = series if series is not None else pd.DataFrame()
    series = series.sort_index() if len(series) else series
    times = series_times(series) if len(series) else np.array([], float)
    fault = result.get("fault") or {}
    states = result.get("task_states") or {}
    # report/scenario.py builds on this module's helpers, hence imported here.
    from chaos_engineering.report.scenario import analyse_steps, breach_step, is_scenario, scenario_timeline

    scenario = scenario_timeline(result, _fault_end(result) if fault else None) if is_scenario(result) else None
    run = RunAnalysis(
        settings=settings,
        verdict=result.get("verdict") or "aborted",
        verdict_reason=result.get("verdict_reason") or "",
        failed_tasks=sorted(t for t, s in states.items() if s in ("failed", "upstream_failed")),
        injected_at=moment(fault.get("injected_at")),
        removed_at=_fault_end(result) if fault else None,
        ended_by=_ended_by(result),
        series_start=float(times[0]) if times.size else None,
        series_end=float(times[-1]) if times.size else None,
        step_s=float(np.median(np.diff(times))) if times.size > 1 else None,
        scenario=scenario,
    )
    if scenario is not None and fault:
        # The fault window spans every step: from the scenario's start to the last step's end or the run's removal.
        run.injected_at = scenario.started_at
        run.removed_at = scenario.end(run.removed_at)
    baseline = (result.get("preflight") or {}).get("baseline") or {}
    for name, threshold in effective_thresholds(result, thresholds).items():
        values = series[name].to_numpy(dtype=float) if name in series.columns else np.full(times.size, np.nan)
        run.metrics[name] = analyse_metric(name, threshold, times, values, baseline.get(name), run)
    run.breach = _breach_timing(result, run, times, series)
    run.stages = _stage_timings(result, run, times, series) if fault else []
    if scenario is not None:
        analyse_steps(scenario, run, times, series)
        scenario.breach = breach_step(scenario, result.get("monitor") or {}, run.breach)
    return run
