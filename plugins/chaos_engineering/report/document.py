"""The report document (report.json): the run's result, its analysis, scores and findings, in one dict."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from chaos_engineering.report.analysis import RunAnalysis, moment
from chaos_engineering.report.findings import Finding
from chaos_engineering.report.schema import REPORT_SCHEMA_VERSION, STAGE_STATUSES
from chaos_engineering.report.scores import Score

VERDICT_LABELS = {"held": "hypothesis held", "broken": "hypothesis broken", "aborted": "aborted", "dry_run": "dry run"}
ENDING_LABELS = {
    "duration": "its duration running out",
    "breach": "a safety breach",
    "emergency_stop": "an emergency stop",
    "watchdog": "the dead-man watchdog",
    "outside": "a removal from outside the run",
    "teardown": "the run's teardown",
    "unknown": "unknown",
}


def iso(at: Any) -> str | None:
    seconds = moment(at)
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="milliseconds")


def plain(value: Any) -> Any:
    """JSON-ready: numpy scalars as Python numbers, NaN and infinities as null (JSON has neither)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _approvals(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    approvals = []
    for record in result.get("approvals") or []:
        options = [str(o) for o in record.get("chosen_options") or []]
        user = record.get("responded_by_user")
        if isinstance(user, str):
            user = {"id": user, "name": user}
        approvals.append(
            {
                "task_id": record.get("task_id", ""),
                "role": str(record.get("task_id", "")).removeprefix("approve_").removeprefix("by_") or "unknown",
                "decision": "approved" if "Approve" in options else "rejected" if "Reject" in options else "other",
                "options": options,
                "by": {"id": user.get("id"), "name": user.get("name")} if isinstance(user, Mapping) else None,
                "at": iso(record.get("responded_at")),
            }
        )
    return approvals


def _answer(approval: dict[str, Any]) -> str:
    return f"{approval['decision']} by {(approval['by'] or {}).get('name') or 'nobody'}"


def _stage_outcome(stage: Any) -> str:
    if stage.time_to_recover_s is None or stage.deadline_s is None:
        return "not reached" if stage.status == "not_run" else stage.status
    return f"{stage.status} after {stage.time_to_recover_s:.1f} s (deadline {stage.deadline_s:g} s)"


def _check(name: str, decision: str, at: Any, detail: str) -> dict[str, Any]:
    return {"check": name, "decision": decision, "at": iso(at), "detail": detail}


def _safety_checks(result: Mapping[str, Any], run: RunAnalysis, approvals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each decision the run's safety steps took, in order; a step that left no record is judged by its task state."""
    states = result.get("task_states") or {}

    def unrecorded(name: str, task: str, why: str) -> dict[str, Any]:
        # Only a task that ran and failed is a failed check; upstream_failed, skipped or absent never ran.
        state = states.get(task, "not run")
        return _check(name, "fail" if state == "failed" else "not_run", None, f"{why} (task {state})")

    checks = [_check(f"approval ({a['role']})", "pass" if a["decision"] == "approved" else "fail", a["at"], _answer(a)) for a in approvals]
    window = result.get("window")
    if window:
        checks.append(_check("window guard", "pass" if window["allowed"] else "fail", window.get("checked_at"), window.get("reason", "")))
    else:
        checks.append(unrecorded("window guard", "window_guard", "no record"))
    preflight = result.get("preflight")
    if preflight:
        targets = ", ".join(preflight.get("targets") or []) or "none"
        checks.append(_check("pre-flight health", "pass", preflight.get("checked_at"), f"{len(preflight.get('baseline') or {})} thresholds healthy; targets {targets}"))
    else:
        checks.append(unrecorded("pre-flight health", "preflight", "no baseline recorded; the task log lists the problems"))
    if states.get("acquire_lock") == "success":
        checks.append(_check("experiment lock", "pass", None, "acquired"))
    else:
        checks.append(unrecorded("experiment lock", "acquire_lock", "not held"))
    monitor = result.get("monitor")
    if monitor:
        status, count, breach = monitor.get("status"), monitor.get("checks", 0), monitor.get("breach") or {}
        detail = {
            "completed": f"Chaos Mesh ended the fault after {count} checks with no breach",
            "breach": f"breach after {count} checks: {breach.get('message', '')}",
            "gone": f"the fault was removed from outside after {count} checks (emergency stop or watchdog)",
        }.get(status, f"status {status}")
        entry = _check("kill switch", "pass" if status == "completed" else "fail", breach.get("at") if status == "breach" else monitor.get("at"), detail)
        if monitor.get("values"):
            entry["readings"] = plain(monitor["values"])  # what every threshold read at the decision
        checks.append(entry)
    else:
        checks.append(unrecorded("kill switch", "monitor", "no record"))
    for stage in run.stages:
        decision = "not_run" if stage.status == "not_run" else "pass" if stage.met_deadline else "fail"
        checks.append(_check(f"recovery ({stage.stage})", decision, stage.at, _stage_outcome(stage)))
    return checks


def _timeline(result: Mapping[str, Any], run: RunAnalysis, approvals: list[dict[str, Any]], checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    plan, monitor, removal, fault = (result.get(key) or {} for key in ("experiment", "monitor", "removal", "fault"))
    events: list[tuple[Any, str, str, str]] = [(plan.get("planned_at"), "planned", "Planned", plan.get("experiment", ""))]
    events += [(a["at"], "approval", f"Approval ({a['role']})", _answer(a)) for a in approvals]
    guards = {"window guard": "window_guard", "pre-flight health": "preflight"}
    events += [(c["at"], guards[c["check"]], c["check"].capitalize(), c["detail"]) for c in checks if c["check"] in guards]
    if run.scenario is None:
        events.append((fault.get("injected_at"), "fault_injected", "Fault injected", f"{fault.get('kind', '')} {fault.get('namespace', '')}/{fault.get('name', '')}"))
    else:
        events.append((run.injected_at, "fault_injected", "Scenario started", f"{run.scenario.name}: the first step created"))
        events += _step_events(run)
    if run.breach:
        events.append((run.breach.at, "breach", f"Breach: {run.breach.threshold}", run.breach.message))
        events.append((run.breach.removal_requested_at, "kill", "Kill: removal requested", "the kill switch deleted the Chaos Mesh object"))
    elif monitor.get("status") == "completed":
        events.append((monitor.get("at"), "fault_ended", "Fault ended", "Chaos Mesh ended it (duration)"))
    elif monitor.get("status") == "gone":
        events.append((monitor.get("at"), "fault_ended", "Fault ended", "removed from outside (emergency stop or watchdog)"))
    events.append((removal.get("removed_at"), "fault_removed", "Fault removed", f"{len(removal.get('removed') or [])} object(s) confirmed gone"))
    if removal.get("failed"):
        left = ", ".join(f"{o.get('kind')} {o.get('namespace')}/{o.get('name')}" for o in removal.get("still_on_cluster") or []) or "unknown objects"
        events.append((removal.get("at"), "removal_failed", "Fault removal FAILED", f"still on the cluster: {left}; {removal.get('error') or 'deletion not finished'}"))
    events += [(s.at, f"recovery_{s.stage}", f"Recovery: {s.stage}", _stage_outcome(s)) for s in run.stages]
    events.append((result.get("written_at"), "result_written", "Result written", result.get("verdict") or ""))
    timeline = [
        {"at": iso(at), "offset_s": moment(at) - run.injected_at if run.injected_at is not None else None, "event": event, "label": label, "detail": detail}
        for at, event, label, detail in events
        if moment(at) is not None
    ]
    return sorted(timeline, key=lambda e: moment(e["at"]))


def _step_events(run: RunAnalysis) -> list[tuple[Any, str, str, str]]:
    """Each scenario step's creation, end (by Chaos Mesh) and removal request, for the run's timeline."""
    events = []
    for step in run.scenario.steps:
        obj = step.object
        what = f"{obj['kind']} {obj['namespace']}/{obj['name']}" if obj else "its object not recorded"
        due = f"; planned at T+{step.planned_start_s:g} s" if step.planned_start_s is not None else ""
        events.append((step.created_at, "step_started", f"Step started: {step.name}", f"{what}{due}"))
        events.append((step.ended_at, "step_ended", f"Step ended: {step.name}", "Chaos Mesh ended it (duration)"))
        events.append((step.removal_requested_at, "step_removal_requested", f"Step removal requested: {step.name}", "the kill switch deleted its object"))
    return events


def _point(at: float | None, start: float | None) -> dict[str, Any] | None:
    """A moment of a scenario: its time and its offset from the scenario's start."""
    return None if at is None else {"at": iso(at), "offset_s": at - start if start is not None else None}


def _span(start: float | None, end: float | None) -> float | None:
    return end - start if start is not None and end is not None else None


def _scenario_step(step: Any, start: float | None) -> dict[str, Any]:
    due = start + step.planned_start_s if start is not None and step.planned_start_s is not None else None
    started = _point(step.created_at, start)
    if started is not None:
        started["delay_s"] = _span(due, step.created_at)
    end = _point(step.end, start)
    if step.started:
        end = (end or {"at": None, "offset_s": None}) | {"by": step.ended_by}
    return {
        "step": step.name,
        **step.plan,
        "object": step.object,
        "planned": {"start_s": step.planned_start_s, "end_s": step.planned_end_s, "duration_s": _span(step.planned_start_s, step.planned_end_s)},
        "started": started,
        "ended": _point(step.ended_at, start),
        "removal_requested": _point(step.removal_requested_at, start),
        "end": end,
        "stood_s": _span(step.created_at, step.end),
        "not_started": step.not_started,
        "window": {"start": iso(step.window[0]), "end": iso(step.window[1])} if step.window else None,
        "impact": {
            name: {
                "baseline": i.baseline,
                "bound": i.bound,
                "worst": i.worst,
                "worst_at": iso(i.worst_at),
                "change": i.change,
                "headroom_used": i.headroom_used,
                "samples": i.samples,
                "samples_beyond_bound": i.beyond_bound,
            }
            for name, i in step.impact.items()
        },
    }


def _scenario(run: RunAnalysis) -> dict[str, Any]:
    """The scenario's steps: planned and actual times (offsets from its start), and each step's impact."""
    scenario, start = run.scenario, run.scenario.started_at
    breach = scenario.breach
    return {
        "name": scenario.name,
        "start": iso(start),
        "end": iso(run.removed_at) if run.injected_at is not None else None,
        "planned_duration_s": scenario.planned_duration_s,
        "blast_radius": scenario.blast_radius,
        "steps": [_scenario_step(step, start) for step in scenario.steps],
        "breach": {
            "threshold": breach.threshold,
            "at": iso(breach.at),
            "step": breach.step,
            "after_step_s": breach.after_step_s,
            "standing": breach.standing,
            "named_by": breach.named_by,
            "sentence": breach.sentence,
        }
        if breach
        else None,
    }


def _metric_entry(metric: Any) -> dict[str, Any]:
    threshold = metric.threshold
    return {
        "name": metric.name,
        "description": threshold.description,
        "unit": threshold.unit,
        "rule": threshold.rule.value,
        "limit": threshold.limit,
        "worse": metric.worse,
        "baseline": metric.baseline,
        "baseline_source": metric.baseline_source,
        "bound": metric.bound,
        "windows": {w: dataclasses.asdict(s) for w, s in metric.windows.items()},
        "tests": {w: {k: v for k, v in dataclasses.asdict(c).items() if k != "window"} for w, c in metric.versus_baseline.items()},
        "samples_beyond_bound": metric.beyond_bound,
        "worst_in_fault": metric.worst_in_fault,
        "worst_in_fault_at": iso(metric.worst_in_fault_at),
        "headroom_used": metric.headroom_used,
        "time_to_bound_s": metric.time_to_bound_s,
        "baseline_band": list(metric.band) if metric.band else None,
        "end_median": metric.end_median,
        "time_to_baseline_s": metric.time_to_baseline_s,
        "data": {k: v for k, v in dataclasses.asdict(metric.quality).items() if k != "longest_gap_from"},
    }


def _fault(result: Mapping[str, Any], run: RunAnalysis) -> dict[str, Any] | None:
    fault = result.get("fault")
    if not fault:
        return None
    obj = {"kind": fault.get("kind", ""), "name": fault.get("name", ""), "namespace": fault.get("namespace", ""), "uid": fault.get("uid")}
    if run.scenario is not None:
        # Several objects, one per step (the scenario section lists them): the scenario, in its objects' namespace.
        namespaces = sorted({str(o.get("namespace")) for o in fault.get("objects") or [] if isinstance(o, Mapping) and o.get("namespace")})
        obj = {"kind": fault.get("kind") or "Scenario", "name": run.scenario.name, "namespace": ", ".join(namespaces), "uid": None}
    return {
        "object": obj,
        "start": iso(run.injected_at),
        "end": iso(run.removed_at),
        "duration_s": run.removed_at - run.injected_at if run.removed_at is not None else None,
        "planned_duration_s": (result.get("experiment") or {}).get("duration_s"),
        "ended_by": run.ended_by or "unknown",
        "ended_detail": _ended_detail(result, run),
        "manifest": result.get("manifest"),
    }


def _ended_detail(result: Mapping[str, Any], run: RunAnalysis) -> str | None:
    """Why the fault ended when it did, in the words of whoever ended it (the monitor's event names the
    emergency stop's author or the watchdog)."""
    monitor = result.get("monitor") or {}
    if run.ended_by == "duration":
        return "every step's duration elapsed" if run.scenario is not None else "Chaos Mesh's duration elapsed"
    if run.ended_by == "breach" and run.breach is not None:
        return f"removed on a breach: {run.breach.message}"
    if run.ended_by in ("emergency_stop", "watchdog", "outside"):
        return monitor.get("message") or None
    if run.ended_by == "teardown":
        return "the run's teardown removed it: the kill switch recorded no ending"
    return None


def _deploy(deploy: Any) -> dict[str, Any] | None:
    """The deploy that caused the run (result `deploy`), or None."""
    if not isinstance(deploy, Mapping) or not deploy.get("service"):
        return None
    return {"service": str(deploy["service"]), "version": deploy.get("version"), "event_at": iso(deploy.get("event_at")),
            "asset_uri": deploy.get("asset_uri"), "deploy_run": deploy.get("deploy_run")}


def deploy_sentence(document: Mapping[str, Any]) -> str | None:
    """'Triggered by the deploy of booking-api 1.2.3', or None for a run no deploy caused."""
    deploy = document.get("deploy")
    if not deploy:
        return None
    return f"Triggered by the deploy of {deploy['service']} {deploy.get('version') or '(no version given)'}"


def _findings(findings: list[Finding]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Numbered findings, and one recommendation per distinct advice naming every finding behind it."""
    entries, advice = [], {}
    for number, finding in enumerate(findings, start=1):
        fid = f"F{number}"
        fields = {k: v for k, v in dataclasses.asdict(finding).items() if k != "recommendation"}
        entries.append({"id": fid, **fields})
        advice.setdefault(finding.recommendation, []).append(fid)
    recommendations = [{"id": f"R{n}", "findings": ids, "text": text} for n, (text, ids) in enumerate(advice.items(), start=1)]
    return entries, recommendations


def build_document(
    result: Mapping[str, Any],
    run: RunAnalysis,
    findings: list[Finding],
    impact: Score,
    health: Score,
    series: pd.DataFrame,
    generated_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """report.json's content (schema v1): everything a reader needs, without the raw series."""
    plan = result.get("experiment")
    approvals = _approvals(result)
    checks = _safety_checks(result, run, approvals)
    preflight = result.get("preflight")
    breach = run.breach
    monitor_breach = (result.get("monitor") or {}).get("breach") or {}
    found, recommended = _findings(findings)
    verdict = result.get("verdict") or "aborted"
    document = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "generated_at": (generated_at or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="milliseconds"),
        "run": {
            "dag_id": result.get("dag_id"),
            "run_id": result.get("run_id"),
            "run_type": result.get("run_type"),
            "result_schema_version": result.get("schema_version"),
            "result_written_at": iso(result.get("written_at")),
        },
        "deploy": _deploy(result.get("deploy")),
        "experiment": {
            "name": plan.get("experiment", ""),
            **{k: plan.get(k) for k in ("title", "tier", "kind", "target_service", "hypothesis", "description", "source", "duration_s")},
            "dry_run": bool(plan.get("dry_run")),
            "planned_at": iso(plan.get("planned_at")),
        }
        if plan
        else None,
        "tier": (plan or {}).get("tier") or _tier_from_dag(result.get("dag_id")),
        "hypothesis": (plan or {}).get("hypothesis"),
        "approvals": approvals,
        "window_check": {
            "allowed": bool(result["window"].get("allowed")),
            "reason": result["window"].get("reason", ""),
            "override_used": bool(result["window"].get("override_used")),
            "manual": result["window"].get("manual"),
            "checked_at": iso(result["window"].get("checked_at")),
            "planned_injection": iso(result["window"].get("planned_injection")),
            "next_allowed": iso(result["window"].get("next_allowed")),
        }
        if result.get("window")
        else None,
        "preflight": {
            "checked_at": iso(preflight.get("checked_at")),
            "window": {"start": iso(preflight["window"][0]), "end": iso(preflight["window"][1])} if preflight.get("window") else None,
            "targets": list(preflight.get("targets") or []),
            "peers": list(preflight.get("peers") or []),
        }
        if preflight
        else None,
        "baseline": {m.name: {"value": m.baseline, "source": m.baseline_source} for m in run.metrics.values()},
        "fault": _fault(result, run),
        "safety_checks": checks,
        "breaches": [
            {
                "threshold": breach.threshold,
                "rule": breach.rule,
                "value": breach.value,
                "baseline": monitor_breach.get("baseline"),
                "limit": monitor_breach.get("limit"),
                "bound": breach.bound,
                "at": iso(breach.at),
                "message": breach.message,
                "first_beyond_at": iso(breach.first_beyond_at),
                "time_to_detect_s": breach.time_to_detect_s,
                "removal_requested_at": iso(breach.removal_requested_at),
                "time_to_remove_s": breach.time_to_remove_s,
                "removed_at": iso(breach.removed_at),
                "time_to_removed_s": breach.time_to_removed_s,
            }
        ]
        if breach
        else [],
        "recovery": [
            {
                "stage": s.stage,
                "status": s.status if s.status in STAGE_STATUSES else "unknown",
                "deadline_s": s.deadline_s,
                "at": iso(s.at),
                "time_to_recover_s": s.time_to_recover_s,
                "met_deadline": s.met_deadline,
                "thresholds": s.thresholds,
                "pending": s.pending,
                "series_time_to_recover_s": s.series_time_to_recover_s,
            }
            for s in run.stages
        ],
        "metrics": [_metric_entry(m) for m in run.metrics.values()],
        "series": {"start": iso(run.series_start), "end": iso(run.series_end), "step_s": run.step_s, "samples": len(series), "columns": [str(c) for c in series.columns]},
        "timeline": _timeline(result, run, approvals, checks),
        "impact_score": dataclasses.asdict(impact),
        "system_health_score": dataclasses.asdict(health),
        "verdict": {"value": verdict, "label": VERDICT_LABELS.get(verdict, verdict), "reason": result.get("verdict_reason") or ""},
        "findings": found,
        "recommendations": recommended,
        "analysis": {
            "test": "Mann-Whitney U, two-sided, each window against the baseline window",
            "effect_size": "Cliff's delta = P(window > baseline) - P(window < baseline)",
            **dataclasses.asdict(run.settings),
        },
        "task_states": dict(result.get("task_states") or {}),
        "disaster_recovery": _drill(result.get("drill")),
    }
    if run.scenario is not None:
        document["scenario"] = _scenario(run)
    return plain(document)


def _drill(drill: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The DR drill's measurement (chaos_dr_drill runs only), times as ISO strings."""
    if not drill:
        return None
    outage = drill.get("outage")
    canaries = drill.get("canaries") or {}
    return {
        "status": drill["status"],
        "reasons": list(drill.get("reasons") or []),
        "rto_s": drill.get("rto_s"),
        "rpo_s": drill.get("rpo_s"),
        "targets": dict(drill.get("targets") or {"rto_s": None, "rpo_s": None}),
        "primary_before": drill.get("primary_before"),
        "primary_after": drill.get("primary_after"),
        "outage": {
            "started_at": iso(outage["started_at"]),
            "first_failure_at": iso(outage["first_failure_at"]),
            "recovered_at": iso(outage["recovered_at"]),
            "failed_writes": outage["failed_writes"],
        }
        if outage
        else None,
        "canaries": {
            "interval_s": canaries.get("interval_s"),
            "lost_ids": list(canaries.get("lost_ids") or []),
            **{k: int(canaries.get(k) or 0) for k in ("sent", "acknowledged", "failed", "lost", "unverified")},
        },
    }


def _tier_from_dag(dag_id: str | None) -> str | None:
    """A run whose plan failed has no plan; the tier DAGs are named chaos_<tier>_risk."""
    parts = (dag_id or "").split("_")
    return parts[1] if len(parts) == 3 and parts[0] == "chaos" and parts[2] == "risk" else None
