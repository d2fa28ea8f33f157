"""Load: many runs triggered at once across the three tiers and the disaster-recovery drill.

Run: .venv/bin/python benchmarks/load.py [--runs 30] [--lock-wait 30s] [--executor LocalExecutor] [--keep]

The stack is the campaign's (benchmarks/campaign.py: the sandbox, a real Airflow on PostgreSQL,
reports in S3, the watchdog beside them), with every tier's window open all day and a short
`safety.lock_wait`, so that a run that cannot have the lock ends instead of queueing for long
(each tier DAG runs one run at a time anyway). `--runs` runs are triggered at once, round-robin
over chaos_low_risk, chaos_medium_risk, chaos_high_risk and chaos_dr_drill, each with a short
experiment; an approver answers every approval request as it comes (SRE, then executive), as
people would. Meanwhile the cluster is sampled every 100 ms and the REST API read twice a second.

Printed (issue #14 targets): the most faults of ours at once (must be 1), every run's end (held,
or the first failed task and its first error line: each must say why), leftovers at the end (the
lock, objects, heartbeats, the halt: none), the safety invariants of the campaign over all runs,
and the REST reads' latency (p95 < 2 s) and failures during the burst.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.campaign import campaign_stack  # noqa: E402 (sets Airflow's home first)
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook  # noqa: E402
from chaos_engineering.render import run_key  # noqa: E402
from rich.console import Console  # noqa: E402
from tests.e2e.own_stack import Timeline, first_error, injected_outside_window, injected_without_approvals, leftovers, protected_touched  # noqa: E402
from tests.e2e.test_tier_runs import ALL_DAY, reports_in  # noqa: E402

#: (DAG, experiment) the burst cycles through: the shortest experiment each one may run.
TARGETS = (
    ("chaos_low_risk", "cache-slow-quick"),
    ("chaos_medium_risk", "email-service-quick-abort"),
    ("chaos_high_risk", "database-failover"),
    ("chaos_dr_drill", "database-failover"),
)
OPEN = {"business_hours.weekly": {}, "business_hours.freeze_dates": [], "tiers.high.window.weekly": ALL_DAY,
        "tiers.medium.window.weekly": ALL_DAY}
ENDED = ("success", "failed")


class Approver(threading.Thread):
    """Answers every pending approval of the burst's runs: the SRE's first, then the executive's."""

    def __init__(self, chaos, runs: set[tuple[str, str]]) -> None:
        super().__init__(daemon=True)
        self.chaos, self.runs, self.stop = chaos, runs, threading.Event()
        self.answered: set[tuple[str, str, str]] = set()
        self.errors: list[str] = []

    def run(self) -> None:
        clients = {"approve_sre": self.chaos.sre, "approve_executive": self.chaos.cto}
        while not self.stop.is_set():
            try:
                pending = self.chaos.admin.pending_approvals()
            except Exception as error:  # noqa: BLE001 - a failed read is retried
                self.errors.append(f"list: {error}")
                pending = []
            for request in pending:
                ti = request.get("task_instance") or {}
                key = (ti.get("dag_id"), ti.get("dag_run_id"), ti.get("task_id"))
                if key[:2] not in self.runs or key in self.answered or key[2] not in clients:
                    continue
                self.answered.add(key)
                try:
                    self.chaos.approve(clients[key[2]], *key)
                except Exception as error:  # noqa: BLE001 - the run then ends by its approval timeout: counted
                    self.errors.append(f"{key}: {error}")
            self.stop.wait(1.0)


class ApiProbe(threading.Thread):
    """Reads the REST API (the DAG list) twice a second: the latency a person or a client sees."""

    def __init__(self, chaos) -> None:
        super().__init__(daemon=True)
        self.chaos, self.stop = chaos, threading.Event()
        self.latencies: list[float] = []
        self.failures = 0

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self.chaos.admin.request("GET", "/dags", params={"limit": 20})
                self.latencies.append(time.monotonic() - started)
            except Exception:  # noqa: BLE001 - counted
                self.failures += 1
            self.stop.wait(max(0.0, 0.5 - (time.monotonic() - started)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--lock-wait", default="30s", help="safety.lock_wait for the burst")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for every run to end")
    parser.add_argument("--executor", default="LocalExecutor", choices=("LocalExecutor", "CeleryExecutor"))
    parser.add_argument("--keep", action="store_true", help="keep the state folder (logs, reports)")
    args = parser.parse_args(argv)

    state = Path(tempfile.mkdtemp(prefix="chaos-load-"))
    console = Console(width=None if sys.stdout.isatty() else 200)
    ends: dict[tuple[str, str], str] = {}
    with campaign_stack(state, console, executor=args.executor) as stack:
        chaos = stack.chaos
        chaos.policy(**OPEN, **{"safety.lock_wait": args.lock_wait}, **_reports(stack))
        for dag_id, _ in TARGETS:
            chaos.admin.wait_for_dag(dag_id, timeout=180, unpause=False)
        runs: set[tuple[str, str]] = set()
        approver, probe = Approver(chaos, runs), ApiProbe(chaos)
        with Timeline(chaos) as timeline:
            probe.start()
            started = time.monotonic()
            triggered = [TARGETS[i % len(TARGETS)] for i in range(args.runs)]
            threads = [threading.Thread(target=lambda d=d, e=e: runs.add((d, chaos.admin.trigger(d, conf={"experiment": e}))))
                       for d, e in triggered]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            console.print(f"{len(runs)} runs triggered in {time.monotonic() - started:.1f} s", highlight=False)
            approver.start()
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline and len(ends) < len(runs):
                for dag_id, run_id in sorted(runs - set(ends)):
                    state_now = chaos.admin.run_state(dag_id, run_id)
                    if state_now in ENDED:
                        ends[(dag_id, run_id)] = _end(chaos, dag_id, run_id, state_now)
                time.sleep(5)
            wall = time.monotonic() - started
            approver.stop.set()
            probe.stop.set()
        left = leftovers(chaos, ChaosMeshHook())
        keys = {run_key(d, r): (d, r) for d, r in runs}
        per_run = collections.Counter(seen.run_key for seen in timeline.seen.values())
        invariants = {
            "most faults of ours at once (must be 1)": timeline.most,
            "runs with more than one object": sum(1 for k, n in per_run.items() if k in keys and n > 1),
            "protected pods touched": sum(len(protected_touched(chaos, timeline, k)) for k in keys),
            "injections outside the window's span": sum(len(injected_outside_window(chaos, timeline, k, manual=True)) for k in keys),
            "injections without verified approvals": sum(len(injected_without_approvals(chaos, timeline, k)) for k in keys),
            "leftovers at the end": len(left),
            "runs not ended": len(runs) - len(ends),
        }
    console.print(f"\n{len(runs)} runs in {wall / 60:.1f} min ({args.executor}, lock_wait {args.lock_wait}):", highlight=False)
    for (dag_id, run_id), end in sorted(ends.items()):
        console.print(f"  {dag_id:<18} {run_id:<48} {end}", highlight=False)
    reasons = collections.Counter(end.split(":", 1)[0] if not end.startswith("held") else "held" for end in ends.values())
    console.print("ends: " + ", ".join(f"{reason} x{count}" for reason, count in reasons.most_common()), highlight=False)
    for item in left:
        console.print(f"  leftover: {item}", highlight=False)
    latencies = sorted(probe.latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
    console.print(f"REST reads during the burst: {len(latencies)} ok, {probe.failures} failed; median "
                  f"{statistics.median(latencies) if latencies else float('nan'):.3f} s, p95 {p95:.3f} s, max "
                  f"{max(latencies) if latencies else float('nan'):.3f} s", highlight=False)
    console.print(f"approvals answered: {len(approver.answered)}; approver errors: {len(approver.errors)}", highlight=False)
    for name, count in invariants.items():
        console.print(f"{name:>50}: {count}", highlight=False)
    unexplained = [end for end in ends.values() if end.endswith(("(no reason found)", "(empty log)")) or "(log unreadable" in end]
    if not args.keep:
        shutil.rmtree(state, ignore_errors=True)
    broken = invariants["most faults of ours at once (must be 1)"] > 1 or any(
        count for name, count in invariants.items() if not name.startswith("most")
    )
    return 1 if broken or unexplained or probe.failures or p95 >= 2.0 else 0


def _reports(stack) -> dict:
    return reports_in(stack.s3) if stack.s3 is not None else {}


def _end(chaos, dag_id: str, run_id: str, state_now: str) -> str:
    """How a run ended: held (or its verdict), or its first failed task and that task's first error."""
    if state_now == "success":
        return "held"
    for ti in chaos.admin.task_instances(dag_id, run_id):
        if ti["state"] == "failed":
            return f"{ti['task_id']}: {first_error(chaos, run_id, ti, dag_id)}"
    return "failed (no reason found)"


if __name__ == "__main__":
    sys.exit(main())
