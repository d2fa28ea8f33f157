"""Soak: low-tier runs back to back on the sandbox for a long time, nothing broken on purpose.

Run: .venv/bin/python benchmarks/soak.py [--minutes 120] [--experiment cache-slow-quick] [--executor LocalExecutor] [--keep]

The stack is the campaign's (benchmarks/campaign.py: sandbox, a real Airflow on PostgreSQL, reports
in S3, the watchdog beside them). Each run is one campaign row with nothing broken (own_stack's
"none" fault): the cluster sampled every 100 ms, leftovers, result and report, every safety
invariant. Targets (issue #14): 0 leftovers, 0 failed runs not explained by a breach, every report
present, triggerer and scheduler memory growth < 10 % (the resident memory of each process and its
children, after the first run against the end).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.campaign import campaign_stack, guarded_row, print_table  # noqa: E402 (sets Airflow's home first)
from chaos_engineering.cli_run import read_result  # noqa: E402
from rich.console import Console  # noqa: E402
from tests.e2e.own_stack import DAG_ID, WATCHDOG_BOUND_S, Row, invariants, p1_s  # noqa: E402

WATCHED = ("scheduler", "triggerer")


def resident_mib(pid: int) -> float:
    """The resident memory of a process and all its children, in MiB."""
    try:
        process = psutil.Process(pid)
        tree = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0
    for member in tree:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def unexplained_failure(stack, row: Row) -> bool:
    """A failed run whose result records no breach (a breach is the kill switch doing its job)."""
    if row.state == "success":
        return False
    runs = stack.chaos.admin.recent_runs(DAG_ID, 1)
    result = read_result(stack.chaos.admin, DAG_ID, runs[0]["dag_run_id"]) if runs else None
    return ((result or {}).get("monitor") or {}).get("status") != "breach"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--experiment", default="cache-slow-quick", help="a short low-tier experiment of the e2e include")
    parser.add_argument("--executor", default="LocalExecutor", choices=("LocalExecutor", "CeleryExecutor"))
    parser.add_argument("--keep", action="store_true", help="keep the state folder (logs, reports)")
    args = parser.parse_args(argv)

    state = Path(tempfile.mkdtemp(prefix="chaos-soak-"))
    console = Console(width=None if sys.stdout.isatty() else 200)
    rows: list[Row] = []
    unexplained = 0
    memory: dict[str, list[float]] = {name: [] for name in WATCHED}
    bound_s = WATCHDOG_BOUND_S
    with campaign_stack(state, console, executor=args.executor) as stack:
        bound_s = max(p1_s(stack.chaos), WATCHDOG_BOUND_S)
        deadline = time.monotonic() + args.minutes * 60
        while time.monotonic() < deadline:
            row = guarded_row(stack, "none", "during-monitor", args.experiment, bound_s)
            rows.append(row)
            unexplained += unexplained_failure(stack, row)
            for name in WATCHED:
                memory[name].append(resident_mib(stack.chaos.stack.processes[name].pid))
            console.print(f"run {len(rows)}: {row.state}, leftovers {len(row.leftovers)}, report {row.report_html}, "
                          + ", ".join(f"{n} {memory[n][-1]:.0f} MiB" for n in WATCHED), highlight=False)
    print_table(console, rows, bound_s)
    console.print(f"runs: {len(rows)} in {args.minutes:g} min; failed runs not explained by a breach: {unexplained}; "
                  f"reports missing: {sum(not r.report_html for r in rows)}", highlight=False)
    growth_ok = True
    for name, samples in memory.items():
        if len(samples) >= 2:
            growth = 100 * (samples[-1] - samples[0]) / samples[0]
            growth_ok &= growth < 10
            console.print(f"{name} resident memory: {samples[0]:.0f} MiB after the first run, {samples[-1]:.0f} MiB at the end "
                          f"({growth:+.1f} %), max {max(samples):.0f} MiB", highlight=False)
    violations = invariants(rows)
    for violation, count in violations.items():
        console.print(f"{violation:>70}: {count}", highlight=False)
    if not args.keep:
        shutil.rmtree(state, ignore_errors=True)
    failed = any(violations.values()) or unexplained or any(not r.report_html for r in rows) or not growth_ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
