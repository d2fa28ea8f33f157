"""Time and peak memory of building one run's report from 1 h, 6 h and 24 h of 1 s samples of 12 series.

Run: .venv/bin/python benchmarks/report.py [--hours 1 6 24] [--runs 3]
Target (issue 13): < 2 s for 1 h on a quiet 2-core machine, < 500 MB, growing about linearly.
Each build runs in a fresh process, so its peak resident memory is its own. Both the CPU time of the build
(user + sys of the process: what a busy shared machine disturbs least) and its wall time are reported, with
the load average before the runs. Time is measured without tracemalloc (which slows allocation-heavy code);
a second build measures the peak of Python-tracked allocations (numpy and pandas report theirs to tracemalloc).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from chaos_engineering.policy import load_policy  # noqa: E402
from chaos_engineering.report import build_report  # noqa: E402

BASE = {"booking_rate": 20.0, "payment_failure_rate": 1.0, "error_rate": 0.2, "p95_latency": 250.0, "availability": 100.0, "system_health": 99.5}
NOISE = {"booking_rate": 0.2, "payment_failure_rate": 0.05, "error_rate": 0.02, "p95_latency": 10.0, "availability": 0.001, "system_health": 0.05}
REGIONS = ("eu", "us")  # the policy's six thresholds per region: 12 series
T0 = 1_780_000_000.0


def synthetic(hours: float) -> tuple[dict, dict, pd.DataFrame]:
    """A held run: 40 % baseline, 20 % fault (p95 +300 ms, bookings -3 %), 40 % recovery."""
    policy, issues = load_policy()
    assert policy, issues
    rng = np.random.default_rng(1)
    span = hours * 3600
    times = T0 + np.arange(0, span, 1.0)
    injected, removed = T0 + 0.4 * span, T0 + 0.6 * span
    during = (times >= injected) & (times < removed)
    thresholds, columns, baseline = {}, {}, {}
    for region in REGIONS:
        for name, threshold in policy.safety.thresholds.items():
            key = f"{name}_{region}"
            thresholds[key] = threshold
            values = BASE[name] + NOISE[name] * rng.standard_normal(times.size)
            values[during] += {"p95_latency": 300.0, "booking_rate": -0.6}.get(name, 0.0)
            values[rng.random(times.size) < 0.001] = np.nan  # the odd missing sample
            columns[key], baseline[key] = values, BASE[name]
    series = pd.DataFrame(columns, index=pd.to_datetime(times, unit="s", utc=True))
    stages = {"immediate": 60.0, "short_term": 300.0, "business": 900.0}
    result = {
        "schema_version": 1,
        "dag_id": "chaos_low_risk",
        "run_id": f"benchmark__{hours:g}h",
        "run_type": "manual",
        "experiment": {"experiment": "benchmark", "tier": "low", "title": f"Benchmark, {hours:g} h of 1 s samples", "hypothesis": "Bookings keep flowing.", "target_service": "booking-api", "kind": "PodChaos", "duration_s": removed - injected, "dry_run": False},
        "manifest": None,
        "approvals": [{"chosen_options": ["Approve"], "responded_at": T0 - 60, "responded_by_user": {"id": "policy", "name": "approved by policy (low tier)"}, "task_id": "approve_by_policy"}],
        "window": {"allowed": True, "reason": "off-peak", "override_used": False, "checked_at": injected - 30, "manual": True, "planned_injection": None, "next_allowed": None},
        "preflight": {"baseline": baseline, "window": [T0, injected - 10], "targets": ["booking/booking-api-0"], "peers": [], "checked_at": injected - 10},
        "fault": {"kind": "PodChaos", "name": "benchmark-0", "namespace": "chaos-engineering", "injected_at": injected, "uid": "u"},
        "monitor": {"status": "completed", "state": "ended", "checks": int((removed - injected) // 10), "at": removed - 1},
        "removal": {"removed": ["benchmark-0"], "removed_at": removed},
        "recovery": {s: {"stage": s, "status": "recovered", "deadline_s": d, "at": removed + d / 3, "time_to_recover_s": d / 3, "values": {k: baseline[k] for k in list(baseline)[:4]}, "pending": []} for s, d in stages.items()},
        "task_states": {},
        "written_at": removed + 0.4 * span,
        "verdict": "held",
        "verdict_reason": "no threshold breached and every recovery stage met its deadline",
    }
    return result, thresholds, series


def measure(hours: float) -> dict:
    """Runs in the child process: one timed build, then one under tracemalloc."""
    result, thresholds, series = synthetic(hours)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started, cpu_started = time.perf_counter(), time.process_time()
    files = build_report(result, thresholds, series)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    build_report(result, thresholds, series)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sizes = {name: len(content) for name, content in files.files().items()}
    return {
        "hours": hours,
        "samples": int(series.size),
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "traced_peak_mb": traced_peak / 2**20,
        "max_rss_mb": rss_after,
        "rss_growth_mb": rss_after - rss_before,
        "files_kb": {name: round(size / 1024) for name, size in sizes.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1, 6, 24])
    parser.add_argument("--runs", type=int, default=1, help="builds per size, each in a fresh process")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.hours[0])))
        return
    print("load average (1, 5, 15 min) before: " + ", ".join(f"{load:.2f}" for load in os.getloadavg()))
    print(f"{'size':>6} {'samples':>10} {'CPU s min/med':>14} {'wall s min/med':>15} {'s per 1M':>9} {'tracemalloc MB':>15} {'max RSS MB':>11}  files (kB)")
    for hours in args.hours:
        rows = []
        for _ in range(args.runs):
            out = subprocess.run([sys.executable, __file__, "--child", "--hours", str(hours)], check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
        cpu, wall = [row["cpu_seconds"] for row in rows], [row["seconds"] for row in rows]
        row = rows[-1]
        per_million = statistics.median(cpu) / row["samples"] * 1e6
        files = ", ".join(f"{k} {v}" for k, v in row["files_kb"].items())
        print(
            f"{hours:>5g}h {row['samples']:>10,} {min(cpu):>6.2f}/{statistics.median(cpu):<7.2f} {min(wall):>7.2f}/{statistics.median(wall):<7.2f} "
            f"{per_million:>9.2f} {max(r['traced_peak_mb'] for r in rows):>15.0f} {max(r['max_rss_mb'] for r in rows):>11.0f}  {files}"
        )
    print("load average (1, 5, 15 min) after: " + ", ".join(f"{load:.2f}" for load in os.getloadavg()))


if __name__ == "__main__":
    main()
