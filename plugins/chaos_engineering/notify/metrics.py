"""The chaos metrics pushed to the Pushgateway at every state change of a run.

Grouping key: `{job="chaos_engineering", tier, experiment}`, one group per experiment. A push
replaces (HTTP POST, `pushadd`) only the metrics it names inside that group, so:

- different experiments and tiers never overwrite each other, and the gauges of a group always
  describe the latest run of that experiment (the Pushgateway keeps no history: Prometheus does);
- a push at one state change leaves the metrics of earlier ones standing (the scores of the last
  run stay until the next run's `finished` replaces them);
- no run id in any label: series stay few and the Pushgateway does not grow run after run.

Emergency stops, resumes, forced finalizer clean-ups and the watchdog's readings (liveness,
errors, halt, lock, stuck deletions) are not about one experiment: they go to the group
`{job="chaos_engineering"}`.

Every per-experiment series carries the labels `tier`, `experiment`, `target_service` (the
grouping key adds `job`, and `instance=""`; scrape the Pushgateway with `honor_labels: true`).

Totals across runs (`chaos_safety_violation_total`, `chaos_experiment_runs_total`,
`chaos_emergency_stops_total`) are real counters kept by the Pushgateway: before a push the
group's current value is read back from its `/api/v1/metrics`, incremented and pushed. When the
read fails the increment is not pushed (the gauges still are), never a guessed total; a lost
Pushgateway (no persistence file) restarts the totals at 0, which `increase()` and `rate()` read
as a counter reset. Read-then-write is safe for safety violations (they happen only while a
fault is injected, under the single-experiment lock); two runs of one experiment finishing in
the same instant (dry runs) could lose one `runs_total` increment.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from chaos_engineering.notify.delivery import CALL_TIMEOUT_S, DISABLED, FAILED, SENT, SKIPPED, Deadline, connection_or_none, log, log_failure, secrets_of
from chaos_engineering.notify.messages import recovery_summary
from chaos_engineering.notify.run import experiment_of_object
from chaos_engineering.safety import FAIL_SAFE

DEFAULT_CONN_ID = "pushgateway_default"
JOB = "chaos_engineering"
LABELS = ("tier", "experiment", "target_service")
PHASES = ("awaiting_approval", "injected", "recovering", "finished", "stopped")
VERDICTS = ("held", "broken", "aborted", "dry_run")
STAGES = ("immediate", "short_term", "business")


@dataclass(frozen=True)
class MetricSpec:
    kind: str  # gauge | counter (a counter's name here has no `_total`: the exposition adds it)
    help: str
    label: str | None = None  # a label beyond LABELS, one series per value


METRICS: dict[str, MetricSpec] = {
    "chaos_experiment_active": MetricSpec("gauge", "1 while a fault of this experiment is injected, 0 once it is removed."),
    "chaos_approvals_pending": MetricSpec("gauge", "Approvals requested and not answered yet for this experiment's current run."),
    "chaos_experiment_phase": MetricSpec("gauge", "1 for the phase the experiment's latest run is in, 0 for the others.", "phase"),
    "chaos_experiment_fault_start_timestamp_seconds": MetricSpec("gauge", "Unix time the latest fault was injected."),
    "chaos_experiment_last_run_timestamp_seconds": MetricSpec("gauge", "Unix time the latest run finished, whatever its verdict."),
    "chaos_experiment_last_verdict": MetricSpec("gauge", "1 for the verdict of the latest run, 0 for the others.", "verdict"),
    "chaos_experiment_runs": MetricSpec("counter", "Runs finished, by verdict.", "verdict"),
    "chaos_safety_violation": MetricSpec("counter", "Safety threshold breaches that triggered the kill switch, by threshold.", "threshold"),
    "chaos_experiment_last_violation_timestamp_seconds": MetricSpec("gauge", "Unix time of the latest safety breach."),
    "chaos_experiment_time_to_detect_seconds": MetricSpec("gauge", "Latest breach: from the first reading beyond the bound to its detection (from the report)."),
    "chaos_experiment_time_to_remove_seconds": MetricSpec("gauge", "Latest breach: from its detection to the fault's removal request."),
    "chaos_experiment_time_to_recover_seconds": MetricSpec("gauge", "Latest run: from the fault's removal until every recovery stage held; NaN if one did not."),
    "chaos_experiment_recovery_stage_seconds": MetricSpec("gauge", "Latest run: from removal until the stage held; NaN when it missed its deadline or did not run.", "stage"),
    "chaos_experiment_recovery_success_rate": MetricSpec("gauge", "Latest run: share (0-1) of the recovery stages that met their deadline."),
    "chaos_experiment_customer_impact_score": MetricSpec("gauge", "Latest run's impact score, 0 (none) to 100 (docs/REPORT.md)."),
    "chaos_experiment_system_health_score": MetricSpec("gauge", "Latest run's system health score, 0 to 100 (docs/REPORT.md)."),
    "chaos_emergency_stops": MetricSpec("counter", "Emergency stops carried out."),
    "chaos_emergency_stop_last_timestamp_seconds": MetricSpec("gauge", "Unix time of the latest emergency stop."),
    "chaos_watchdog_last_sweep_timestamp_seconds": MetricSpec("gauge", "Unix time of the dead-man watchdog's latest successful sweep (every chaos kind listed)."),
    "chaos_watchdog_removals": MetricSpec("counter", "Faults the dead-man watchdog removed: heartbeat stale, or chaos halted."),
    "chaos_watchdog_errors": MetricSpec("counter", "Failed calls in the dead-man watchdog's sweeps (a list, a read, a delete)."),
    "chaos_fault_deletion_stuck": MetricSpec("gauge", "Faults of ours whose deletion outlasted safety.deletion_timeout (Chaos Mesh's finalizer holds them), at the watchdog's latest successful sweep."),
    "chaos_fault_deletions_forced": MetricSpec("counter", "Chaos Mesh finalizer clean-ups forced (cleanFinalizer annotation) on deletions that outlasted their bound, by who forced them.", "by"),
    "chaos_fault_deletion_last_forced_timestamp_seconds": MetricSpec("gauge", "Unix time of the latest forced finalizer clean-up (its fault may still be applied)."),
    "chaos_fault_removal_failing": MetricSpec("gauge", "1 while the teardown of this experiment's latest run cannot remove its fault (it may still be applied); 0 once a teardown removed it or found none."),
    "chaos_halt_active": MetricSpec("gauge", "1 while the emergency-stop halt blocks every injection (set by stop and resume, read back by every watchdog sweep)."),
    "chaos_lock_held": MetricSpec("gauge", "1 while the experiment lock Lease has a live holder (read by every watchdog sweep)."),
    "chaos_experiment_last_failsafe_timestamp_seconds": MetricSpec("gauge", "Unix time the fail-safe last removed this experiment's fault: metrics unreadable for max_failed_reads checks."),
}

Value = float | dict[str, float]  # one series, or one per value of the metric's own label


@dataclass
class Update:
    """What one push changes in one group: gauges set, counters incremented."""

    labels: dict[str, str]  # tier, experiment, target_service; empty = the global group
    gauges: dict[str, Value] = field(default_factory=dict)
    increments: dict[str, Value] = field(default_factory=dict)

    @property
    def grouping_key(self) -> dict[str, str]:
        return {"tier": self.labels["tier"], "experiment": self.labels["experiment"]} if self.labels else {}


def labels_of(plan: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The per-experiment labels, or None when the run never got as far as an experiment."""
    if not plan or not plan.get("experiment") or not plan.get("tier"):
        return None
    return {"tier": str(plan["tier"]), "experiment": str(plan["experiment"]), "target_service": str(plan.get("target_service") or "unknown")}


def _forced(by: str, count: float, at: float) -> Update:
    return Update({}, {"chaos_fault_deletion_last_forced_timestamp_seconds": at}, {"chaos_fault_deletions_forced": {by: count}})


def _one_hot(current: str, values: tuple[str, ...]) -> dict[str, float]:
    return {v: float(v == current) for v in values}


def _nan_if_none(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _recovery_gauges(recovery: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Value]:
    if not any(r is not None for r in recovery.values()):
        return {}
    # A stage that did not run did not meet its deadline (as in the report's health score).
    recovery = {s: None for s in STAGES} | dict(recovery)
    ok, _, total = recovery_summary(recovery)
    return {
        "chaos_experiment_recovery_success_rate": ok / len(recovery),
        "chaos_experiment_time_to_recover_seconds": _nan_if_none(total),
        "chaos_experiment_recovery_stage_seconds": {
            stage: _nan_if_none(r.get("time_to_recover_s") if r and r.get("status") == "recovered" else None)
            for stage, r in recovery.items()
        },
    }


def updates_for(
    event: str,
    *,
    plan: Mapping[str, Any] | None = None,
    result: Mapping[str, Any] | None = None,
    breach: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> list[Update]:
    """What `event` changes, group by group (pure: no I/O)."""
    extra = extra or {}
    now = time.time() if now is None else now
    if plan is None and result is not None:
        plan = result.get("experiment")
    if event == "deletion_forced":
        return [_forced(str(extra.get("by") or "unknown"), float(extra.get("count") or 1), now)]
    if event == "emergency_stop":
        updates = [Update({}, {"chaos_emergency_stop_last_timestamp_seconds": now, "chaos_halt_active": 1.0}, {"chaos_emergency_stops": 1.0})]
        if extra.get("forced"):
            updates.append(_forced("emergency_stop", float(len(extra["forced"])), now))
        for obj in extra.get("removed") or ():
            labels = labels_of(experiment_of_object(obj) if "metadata" in obj else obj)
            if labels:
                updates.append(Update(labels, {"chaos_experiment_active": 0.0, "chaos_approvals_pending": 0.0, "chaos_experiment_phase": _one_hot("stopped", PHASES),
                                               "chaos_fault_removal_failing": 0.0}))
        return updates
    if event == "resumed":
        return [Update({}, {"chaos_halt_active": 0.0})]
    if event in ("removal_failed", "removal_ok"):
        # The plan's group, and the groups the objects' own labels name (the plan XCom may be edited).
        groups = [labels_of(plan), *(labels_of(o) for o in extra.get("still_on_cluster") or extra.get("removed") or ())]
        unique = {(g["tier"], g["experiment"]): g for g in groups if g is not None}
        return [Update(g, {"chaos_fault_removal_failing": float(event == "removal_failed")}) for g in unique.values()]
    labels = labels_of(plan)
    if labels is None:
        return []
    update = Update(labels)
    gauges, increments = update.gauges, update.increments
    if event == "approval_requested":
        gauges |= {"chaos_approvals_pending": 1.0, "chaos_experiment_phase": _one_hot("awaiting_approval", PHASES)}
    elif event == "started":
        injected = (extra.get("fault") or {}).get("injected_at")
        gauges |= {
            "chaos_experiment_active": 1.0,
            "chaos_approvals_pending": 0.0,
            "chaos_experiment_phase": _one_hot("injected", PHASES),
            "chaos_experiment_fault_start_timestamp_seconds": float(injected) if injected is not None else now,
        }
    elif event == "breach_and_kill":
        breach = breach or {}
        at = float(breach["at"]) if breach.get("at") is not None else now
        increments["chaos_safety_violation"] = {str(breach.get("threshold") or "unknown"): 1.0}
        gauges["chaos_experiment_last_violation_timestamp_seconds"] = at
        if breach.get("rule") in ("max_failed_reads", FAIL_SAFE):
            gauges["chaos_experiment_last_failsafe_timestamp_seconds"] = at
        removed_at = extra.get("removal_requested_at")
        if removed_at is not None and not extra.get("removal_error"):
            # Only a removal that happened ends `active`: a failed one leaves the fault (and the 1).
            gauges |= {
                "chaos_experiment_active": 0.0,
                "chaos_experiment_phase": _one_hot("recovering", PHASES),
                "chaos_experiment_time_to_remove_seconds": float(removed_at) - at,
            }
    elif event == "removed":
        # Metrics only (no message): the fault is gone and recovery is being measured.
        gauges |= {"chaos_experiment_active": 0.0, "chaos_experiment_phase": _one_hot("recovering", PHASES)}
    elif event == "recovery_verdict":
        gauges |= {"chaos_experiment_active": 0.0} | _recovery_gauges(extra.get("recovery") or (result or {}).get("recovery") or {})
    elif event == "finished":
        result = result or {}
        verdict = str(result.get("verdict") or "aborted")
        gauges |= {
            "chaos_approvals_pending": 0.0,
            "chaos_experiment_phase": _one_hot("finished", PHASES),
            "chaos_experiment_last_run_timestamp_seconds": now,
            "chaos_experiment_last_verdict": _one_hot(verdict, VERDICTS),
        }
        increments["chaos_experiment_runs"] = {verdict: 1.0}
        removal = result.get("removal") or {}
        if not (result.get("fault") and (not removal or removal.get("failed"))):
            # Injected and never removed: the teardown failed, the fault may still be there.
            gauges["chaos_experiment_active"] = 0.0
        gauges |= _recovery_gauges(result.get("recovery") or {})
        report = extra.get("report") or {}
        for key, name in (("impact_score", "chaos_experiment_customer_impact_score"), ("system_health_score", "chaos_experiment_system_health_score")):
            if (value := (report.get(key) or {}).get("value")) is not None:
                gauges[name] = float(value)
        detected = [b["time_to_detect_s"] for b in report.get("breaches") or [] if b.get("time_to_detect_s") is not None]
        if detected:
            gauges["chaos_experiment_time_to_detect_seconds"] = float(detected[0])
    else:
        raise ValueError(f"unknown event {event!r}")
    return [update] if gauges or increments else []


class _Snapshot:
    """A collector that yields fixed families: one push, one fresh registry."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _family(name: str, value: Value, labels: dict[str, str]) -> Metric:
    spec = METRICS[name]
    names = [*labels, *([spec.label] if spec.label else [])]
    family = (CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily)(name, spec.help, labels=names)
    if isinstance(value, dict):
        for own, v in value.items():
            family.add_metric([*labels.values(), own], v)
    else:
        family.add_metric(list(labels.values()), value)
    return family


def _totals(hook: Any, update: Update, name: str, deadline: Deadline) -> Value:
    """The group's running total of counter `name` plus this update's increment."""
    spec, increment = METRICS[name], update.increments[name]
    current = hook.metric_in_group(JOB, update.grouping_key, f"{name}_total", timeout=deadline.left())
    if spec.label is None:
        return sum(v for _, v in current) + float(increment)
    totals = {labels.get(spec.label, ""): value for labels, value in current}
    for own, inc in increment.items():
        totals[own] = totals.get(own, 0.0) + inc
    return totals


def push_updates(updates: list[Update], *, conn_id: str = DEFAULT_CONN_ID, deadline: Deadline | None = None, event: str = "") -> str:
    """Pushes each update to its group; `sent`, `disabled` or `failed` (logged, never raised)."""
    if not updates:
        return SKIPPED
    conn = connection_or_none(conn_id, "Pushgateway")
    if conn is None:
        return DISABLED
    from chaos_engineering.notify.pushgateway import PushgatewayHook

    deadline = deadline or Deadline(CALL_TIMEOUT_S)
    hook = PushgatewayHook(conn_id)
    status = SENT
    for update in updates:
        try:
            values: dict[str, Value] = dict(update.gauges)
            for name in update.increments:
                try:
                    values[name] = _totals(hook, update, name, deadline)
                except Exception as exc:
                    log.warning("%s_total not incremented for %s: its running total could not be read (%s)", name, update.grouping_key or JOB, type(exc).__name__)
                    status = FAILED
            registry = CollectorRegistry()
            registry.register(_Snapshot([_family(name, value, update.labels) for name, value in values.items()]))
            hook.pushadd(registry, JOB, update.grouping_key, timeout=deadline.left())
        except Exception as exc:
            log_failure("Pushgateway", event, exc, secrets_of(conn))
            status = FAILED
    return status


def push(
    event: str,
    *,
    plan: Mapping[str, Any] | None = None,
    result: Mapping[str, Any] | None = None,
    breach: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    conn_id: str = DEFAULT_CONN_ID,
    deadline: Deadline | None = None,
    now: float | None = None,
) -> str:
    """The metrics of `event` to the Pushgateway of `conn_id`. Never raises."""
    try:
        updates = updates_for(event, plan=plan, result=result, breach=breach, extra=extra, now=now)
    except Exception as exc:
        log_failure("Pushgateway", event, exc)
        return FAILED
    return push_updates(updates, conn_id=conn_id, deadline=deadline, event=event)
