"""Synthetic runs for the report tests: a result.json as the tier DAG writes it, and the series of the run."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from chaos_engineering.operators.result import verdict
from chaos_engineering.policy import load_policy
from chaos_engineering.safety import check

POLICY, _ = load_policy()
THRESHOLDS = POLICY.safety.thresholds
STAGE_DEADLINES = {name: stage.deadline for name, stage in POLICY.recovery.stages().items()}
T0 = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC: the first sample

BASE = {"booking_rate": 20.0, "payment_failure_rate": 1.0, "error_rate": 0.2, "p95_latency": 250.0, "availability": 100.0, "system_health": 99.5}
NOISE = {"booking_rate": 0.1, "payment_failure_rate": 0.05, "error_rate": 0.02, "p95_latency": 10.0, "availability": 0.0, "system_health": 0.05}


@dataclass(frozen=True)
class Shape:
    """How a metric departs from its baseline: `during` is added from injection (reached after
    `ramp_s`) to removal; `after` (default: `during`) is added for `lingers_s` after removal."""

    during: float = 0.0
    ramp_s: float = 0.0
    lingers_s: float = 0.0
    after: float | None = None

    def offset(self, since_injection: np.ndarray, fault_s: float) -> np.ndarray:
        ramp = np.clip(since_injection / self.ramp_s, 0, 1) if self.ramp_s else 1.0
        during = (since_injection >= 0) & (since_injection < fault_s)
        lingering = (since_injection >= fault_s) & (since_injection < fault_s + self.lingers_s)
        return np.where(during, self.during * ramp, 0.0) + np.where(lingering, self.during if self.after is None else self.after, 0.0)


def iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).isoformat()


def plan(dry_run: bool = False) -> dict:
    return {
        "experiment": "booking-api-pod-kill",
        "tier": "medium",
        "title": "Kill one booking-api pod",
        "hypothesis": "Bookings keep flowing; the killed pod is replaced within 60 s.",
        "description": "One booking-api replica is killed.",
        "target_service": "booking-api",
        "kind": "PodChaos",
        "source": "include/experiments/medium/booking-api-pod-kill.yaml",
        "duration_s": 120.0,
        "thresholds": {name: t.model_dump(mode="json") for name, t in THRESHOLDS.items()},
        "dry_run": dry_run,
        "planned_at": iso(T0 - 900),
    }


def base_result(**changes) -> dict:
    """A result.json of a run that stopped before injection; `changes` fill in the rest."""
    result = {
        "schema_version": 1,
        "dag_id": "chaos_medium_risk",
        "run_id": "manual__2026-05-28T20:10:00+00:00",
        "run_type": "manual",
        "experiment": plan(),
        "manifest": {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "PodChaos", "metadata": {"name": "booking-api-pod-kill-0a1b2c3d", "namespace": "chaos-engineering"}, "spec": {"action": "pod-kill", "mode": "one"}},
        # As result.json holds them: a HITL answer's time is str(datetime) (json.dumps default=str).
        "approvals": [
            {
                "chosen_options": ["Approve"],
                "params_input": {},
                "responded_at": str(dt.datetime.fromtimestamp(T0 - 600, dt.timezone.utc)),
                "responded_by_user": {"id": "sre-oncall", "name": "sre-oncall"},
                "task_id": "approve_sre",
            }
        ],
        "window": {"allowed": True, "reason": "inside the medium tier's window", "override_used": False, "next_allowed": None, "checked_at": iso(T0 - 30), "manual": True, "planned_injection": None},
        "preflight": None,
        "fault": None,
        "monitor": None,
        "removal": None,
        "recovery": dict.fromkeys(STAGE_DEADLINES),
        "task_states": {"plan": "success", "approve_sre": "success", "window_guard": "success"},
        "written_at": iso(T0 + 3000),
    }
    result.update(changes)
    result["verdict"], result["verdict_reason"] = verdict(result)
    return result


def synthetic_run(
    shapes: dict[str, Shape] | None = None,
    *,
    baseline_s: float = 300,
    fault_s: float = 120,
    recovery_s: float = 900,
    step: float = 1.0,
    noise: dict[str, float] | None = None,
    seed: int = 7,
    breach: tuple[str, float] | None = None,
    recovery: dict[str, tuple[str, float]] | None = None,
    gaps: dict[str, list[tuple[float, float]]] | None = None,
) -> tuple[dict, pd.DataFrame]:
    """A run with a fault at `baseline_s` lasting `fault_s` (or until `breach` = (metric, seconds
    after injection), judged by the real safety.check), and its series, 1 sample per `step`."""
    rng = np.random.default_rng(seed)
    noise = NOISE if noise is None else noise
    times = T0 + np.arange(0, baseline_s + fault_s + recovery_s, step)
    injected = T0 + baseline_s
    if breach:
        fault_s = breach[1] + 4.0  # the trigger deletes at once; Chaos Mesh confirms a few seconds later
    removed = injected + fault_s
    columns = {}
    for name, base in BASE.items():
        values = base + noise.get(name, 0.0) * rng.standard_normal(times.size)
        shape = (shapes or {}).get(name)
        if shape:
            values = values + shape.offset(times - injected, fault_s)
        for start, end in (gaps or {}).get(name, []):
            values[(times >= injected + start) & (times < injected + end)] = np.nan
        columns[name] = values
    series = pd.DataFrame(columns, index=pd.to_datetime(times, unit="s", utc=True))

    monitor: dict = {"status": "completed", "state": "ended", "checks": int(fault_s // 10), "at": removed - 1.0}
    if breach:
        name, after = breach
        at = injected + after
        value = float(series[name].iloc[int(np.searchsorted(times, at))])
        found = check(name, THRESHOLDS[name], value, BASE[name], at)
        assert found is not None, f"the synthetic breach of {name} at +{after} s does not cross its bound ({value})"
        monitor = {"status": "breach", "breach": found.as_dict(), "removal_requested_at": at + 0.3, "removal_error": "", "checks": int(after // 10), "values": {n: BASE[n] for n in BASE} | {name: value}}
    stages = {"immediate": ("recovered", 5.0), "short_term": ("recovered", 60.0), "business": ("recovered", 120.0)} | (recovery or {})
    result = base_result(
        preflight={"baseline": dict(BASE), "window": [iso(injected - 130), iso(injected - 10)], "targets": ["booking/booking-api-7d9f-abcde"], "peers": [], "checked_at": iso(injected - 10)},
        fault={"kind": "PodChaos", "name": "booking-api-pod-kill-0a1b2c3d", "namespace": "chaos-engineering", "injected_at": injected, "uid": "b0b0"},
        monitor=monitor,
        removal={"removed": ["booking-api-pod-kill-0a1b2c3d"], "removed_at": removed},
        recovery={
            stage: {
                "stage": stage,
                "status": status,
                "deadline_s": STAGE_DEADLINES[stage],
                "at": removed + after,
                "time_to_recover_s": after,
                "values": {n: BASE[n] for n in POLICY.recovery.stages()[stage].thresholds},
                "pending": [] if status in ("recovered", "unobserved") else [f"{n} still beyond its bound" for n in POLICY.recovery.stages()[stage].thresholds],
            }
            for stage, (status, after) in stages.items()
        },
        task_states={
            "plan": "success", "approve_sre": "success", "window_guard": "success", "preflight": "success", "acquire_lock": "success", "inject": "success",
            "monitor": "failed" if breach else "success", "remove_fault": "success", "release_lock": "success",
            **{f"recovery_{s}": "success" if status == "recovered" else "failed" for s, (status, _) in stages.items()},
        },
    )
    return result, series


def test_synthetic_runs_get_the_writers_verdicts():
    assert synthetic_run()[0]["verdict"] == "held"
    assert synthetic_run({"error_rate": Shape(during=2.0)}, breach=("error_rate", 30))[0]["verdict"] == "broken"
    assert synthetic_run(recovery={"business": ("deadline_missed", 900.0)})[0]["verdict"] == "broken"
    assert base_result()["verdict"] == "aborted"


def test_the_shape_of_a_departure():
    shape = Shape(during=10.0, ramp_s=10.0, lingers_s=5.0, after=2.0)
    offsets = shape.offset(np.array([-1.0, 0.0, 5.0, 10.0, 19.9, 20.0, 24.9, 25.0]), fault_s=20.0)
    assert offsets.tolist() == pytest.approx([0.0, 0.0, 5.0, 10.0, 10.0, 2.0, 2.0, 0.0])
