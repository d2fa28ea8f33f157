"""A scenario run's steps: each step's planned and actual window, the worst of every metric while it stood, and the step a breach followed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from chaos_engineering.report.analysis import BreachTiming, RunAnalysis, beyond, moment

SCENARIO_KIND = "Scenario"
#: Where a step's end comes from, in the order it is looked for: Chaos Mesh ended it (its duration), its removal
#: was requested (a breach, a halt), the run's removal (the teardown); `unknown` when none was recorded.
STEP_ENDINGS = ("chaos_mesh", "removal_request", "run_removal", "unknown")
#: What the report keeps of a step's plan (its manifest is the plan's, not the report's).
PLAN_FIELDS = ("experiment", "title", "kind", "actions", "target_service", "starts", "digest")


@dataclass(frozen=True)
class StepImpact:
    """The worst reading of one metric while one step stood, against the metric's baseline and bound."""

    metric: str
    samples: int  # finite samples in the step's window
    worst: float | None
    worst_at: float | None
    baseline: float | None
    bound: float | None
    headroom_used: float | None  # (worst - baseline) / (bound - baseline), as for the whole fault
    beyond_bound: int

    @property
    def change(self) -> float | None:
        return self.worst - self.baseline if self.worst is not None and self.baseline is not None else None


@dataclass
class StepRun:
    """One step: its plan, when it was due, and when the kill switch saw it created, ended and removed."""

    name: str
    plan: dict[str, Any]
    planned_start_s: float | None  # seconds from the scenario's start
    planned_end_s: float | None
    object: dict[str, str] | None
    created_at: float | None  # None: never started
    ended_at: float | None  # Chaos Mesh ended it
    removal_requested_at: float | None
    end: float | None  # the end of the window it stood: ended_at, else the removal request, else the run's removal
    ended_by: str | None  # one of STEP_ENDINGS; None when it never started
    not_started: str | None  # why it was never created
    window: tuple[float, float] | None = None  # the part of its window the series covers
    impact: dict[str, StepImpact] = field(default_factory=dict)

    @property
    def started(self) -> bool:
        return self.created_at is not None

    def stood_at(self, at: float) -> bool:
        return self.created_at is not None and self.created_at <= at and (self.end is None or at < self.end)


@dataclass(frozen=True)
class BreachStep:
    """The step whose start most recently preceded the breach, as the monitor named it (or, in an event
    without the field, as the times say), the gap recomputed from the times."""

    threshold: str
    at: float
    step: str | None
    after_step_s: float | None
    standing: list[str]
    named_by: str  # monitor | times
    sentence: str


@dataclass
class ScenarioAnalysis:
    name: str
    started_at: float | None  # the first create (fault.injected_at): every offset counts from here
    planned_duration_s: float | None
    blast_radius: dict[str, Any] | None
    steps: list[StepRun]
    breach: BreachStep | None = None

    def end(self, run_removal: float | None) -> float | None:
        """The end of the scenario's fault window: the last step's end, or the run's removal if later."""
        ends = [at for at in (run_removal, *(s.end for s in self.steps if s.started)) if at is not None]
        return max(ends) if ends else None

    def step(self, name: str | None) -> StepRun | None:
        return next((s for s in self.steps if s.name == name), None)


def is_scenario(result: Mapping[str, Any]) -> bool:
    return any((result.get(key) or {}).get("kind") == SCENARIO_KIND for key in ("experiment", "fault"))


def _first(*values: Any) -> float | None:
    return next((at for at in map(moment, values) if at is not None), None)


def _not_started(result: Mapping[str, Any], recorded: bool) -> str:
    plan = result.get("experiment") or {}
    if not result.get("fault"):
        return "dry run: nothing was injected" if plan.get("dry_run") else "nothing was injected"
    if not recorded:
        return "the kill switch recorded no start of it"
    return "never created (no reason recorded)"


def _object(record: Mapping[str, Any], made: Mapping[str, Any], planned: Mapping[str, Any]) -> dict[str, str] | None:
    """The step's Chaos Mesh object, from the monitor's record, inject's, or the planned manifest (its name is
    deterministic, so a step never created still has one)."""
    reference = record.get("object")
    given = reference if isinstance(reference, Mapping) else {"name": reference}
    metadata = (planned.get("manifest") or {}).get("metadata") or {}
    name = given.get("name") or made.get("name") or metadata.get("name")
    if not name:
        return None
    kind = record.get("kind") or given.get("kind") or made.get("kind") or (planned.get("manifest") or {}).get("kind") or planned.get("kind")
    return {"kind": str(kind or ""), "name": str(name), "namespace": str(given.get("namespace") or made.get("namespace") or metadata.get("namespace") or "")}


def _step(name: str, planned: Mapping[str, Any], record: Mapping[str, Any] | None, made: Mapping[str, Any] | None,
          result: Mapping[str, Any], run_removal: float | None) -> StepRun:
    fault = result.get("fault") or {}
    created_at = moment((record or {}).get("created_at"))
    if record is None and made is not None:
        # No record from the kill switch (its task failed), but inject created the step: at the scenario's start.
        created_at = moment(fault.get("injected_at"))
    record = record or {}
    ended_at, requested = moment(record.get("ended_at")), moment(record.get("removal_requested_at"))
    end = ended_by = not_started = None
    if created_at is not None:
        end, ended_by = next(
            ((at, by) for at, by in ((ended_at, "chaos_mesh"), (requested, "removal_request"), (run_removal, "run_removal")) if at is not None),
            (None, "unknown"),
        )
    else:
        not_started = record.get("not_started") or _not_started(result, bool(record))
    start_s = planned.get("start_s") if planned.get("start_s") is not None else record.get("planned_start_s")
    end_s = planned.get("end_s") if planned.get("end_s") is not None else record.get("planned_end_s")
    return StepRun(
        name=name,
        plan={k: planned.get(k) for k in PLAN_FIELDS} | {"actions": [str(a) for a in planned.get("actions") or []]},
        planned_start_s=float(start_s) if start_s is not None else None,
        planned_end_s=float(end_s) if end_s is not None else None,
        object=_object(record, made or {}, planned),
        created_at=created_at,
        ended_at=ended_at,
        removal_requested_at=requested,
        end=end,
        ended_by=ended_by,
        not_started=not_started,
    )


def scenario_timeline(result: Mapping[str, Any], run_removal: float | None) -> ScenarioAnalysis:
    """Every step of the plan in planned start order (then any step only the monitor knows), with its times.
    `run_removal` is when the run's removal ended the faults (the end of a step nothing else ended)."""
    plan, fault, monitor = (result.get(key) or {} for key in ("experiment", "fault", "monitor"))
    recorded = monitor.get("steps") or {}
    made = {o.get("step"): o for o in fault.get("objects") or [] if isinstance(o, Mapping)}
    planned = {s["step"]: s for s in plan.get("steps") or [] if isinstance(s, Mapping) and s.get("step")}
    unplanned = sorted((n for n in recorded if n not in planned), key=lambda n: (float(recorded[n].get("planned_start_s") or 0.0), n))
    steps = [_step(n, planned.get(n, {}), recorded.get(n), made.get(n), result, run_removal) for n in [*planned, *unplanned]]
    blast = plan.get("blast_radius")
    return ScenarioAnalysis(
        name=str(plan.get("scenario") or plan.get("experiment") or ""),
        started_at=_first(fault.get("injected_at"), fault.get("started_at"), monitor.get("started_at")),
        planned_duration_s=plan.get("duration_s"),
        blast_radius={"peak": blast.get("peak"), "max_pods": blast.get("max_pods"), "problems": [str(p) for p in blast.get("problems") or []]}
        if isinstance(blast, Mapping) else None,
        steps=steps,
    )


def _impact(metric: Any, times: np.ndarray, values: np.ndarray) -> StepImpact:
    finite = np.isfinite(values)
    worst = worst_at = headroom = None
    if finite.any():
        pick = np.nanargmin(values) if metric.worse == "lower" else np.nanargmax(values)
        worst, worst_at = float(values[pick]), float(times[pick])
        if metric.bound is not None and metric.baseline is not None and metric.bound != metric.baseline:
            headroom = (worst - metric.baseline) / (metric.bound - metric.baseline) + 0.0  # + 0.0: never a "-0 %"
    out = int(beyond(values, metric.bound, metric.worse).sum()) if metric.bound is not None else 0
    return StepImpact(metric.name, int(finite.sum()), worst, worst_at, metric.baseline, metric.bound, headroom, out)


def analyse_steps(scenario: ScenarioAnalysis, run: RunAnalysis, times: np.ndarray, series: pd.DataFrame) -> None:
    """Each started step's window within the series, and every metric's worst reading in it: samples from its
    creation up to (not including) its end, compared with the baseline the whole run is judged by."""
    for step in scenario.steps:
        if not step.started:
            continue
        end = step.end if step.end is not None else math.inf
        inside = (times >= step.created_at) & (times < end)
        if times.size and max(step.created_at, run.series_start) <= min(end, run.series_end):
            step.window = (max(step.created_at, run.series_start), min(end, run.series_end))
        for name, metric in run.metrics.items():
            values = series[name].to_numpy(dtype=float)[inside] if name in series.columns else np.full(int(inside.sum()), np.nan)
            step.impact[name] = _impact(metric, times[inside], values)


def breach_step(scenario: ScenarioAnalysis, monitor: Mapping[str, Any], breach: BreachTiming | None) -> BreachStep | None:
    """Which step's start preceded the breach, and by how long. The monitor names it (`breach_after_step`, None when
    no step had started); an event without that field is judged by the steps' recorded creation times."""
    if breach is None:
        return None
    at = breach.at
    if "breach_after_step" in monitor:
        name, named_by = monitor["breach_after_step"], "monitor"
    else:
        before = [s for s in scenario.steps if s.started and s.created_at <= at]
        name, named_by = (max(before, key=lambda s: s.created_at).name if before else None), "times"
    step = scenario.step(name)
    after = at - step.created_at if step is not None and step.created_at is not None else None
    standing = [s.name for s in scenario.steps if s.stood_at(at)]
    if name is None:
        sentence = f"The breach of {breach.threshold} came before any step had started"
    elif after is None:
        sentence = f"The breach of {breach.threshold} followed step {name}, whose start was not recorded"
    else:
        sentence = f"The breach of {breach.threshold} came {after:.1f} s after step {name} started"
    sentence += f"; standing then: {', '.join(standing)}." if standing else "; no step was standing then."
    return BreachStep(breach.threshold, at, name, after, standing, named_by, sentence)
