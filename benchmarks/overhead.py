"""Overhead of a clean low-risk run: wall time minus the fault's duration and the recovery waits.

Run: .venv/bin/python benchmarks/overhead.py [--runs 3] [--experiment booking-api-pod-kill]
Target (issue 4): <= 60 s on 2 cores.

Starts the sandbox and a real Airflow (as `make demo` does, SQLite metadata, LocalExecutor),
triggers the low-risk DAG and reads the run and its task instances back through the REST API.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from sandbox.airflow_stack import AirflowStack
from sandbox.demo import DAG_ID, ROOT, connections, demo_include, wait_for_steady_platform
from sandbox.runner import Sandbox


def _time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--experiment", default="booking-api-pod-kill")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="chaos-bench-overhead-"))
    sandbox = Sandbox.start(state / "sandbox", scrape_interval="2s")
    include = demo_include(state)
    env = connections(sandbox, include)
    os.environ.update({k: v for k, v in env.items() if k.startswith("AIRFLOW_CONN")})
    home = state / "airflow"
    stack = AirflowStack.start(home, dags_folder=ROOT / "dags", plugins_folder=ROOT / "plugins", env=env,
                               database_url=f"sqlite:///{home / 'airflow.db'}")
    print(f"Airflow healthy in {stack.startup_seconds:.1f} s")
    overheads = []
    try:
        admin = stack.client("admin")
        admin.wait_for_dag(DAG_ID, timeout=180)
        for i in range(args.runs):
            wait_for_steady_platform(include)
            run_id = admin.trigger(DAG_ID, conf={"experiment": args.experiment})
            admin.wait_for_run(DAG_ID, run_id, timeout=900, expect="success")
            run = admin.run(DAG_ID, run_id)
            wall = (_time(run["end_date"]) - _time(run["start_date"])).total_seconds()
            tasks = {t["task_id"]: t for t in admin.task_instances(DAG_ID, run_id)}
            fault = admin.xcom(DAG_ID, run_id, "inject")
            removal = admin.xcom(DAG_ID, run_id, "remove_fault")
            business = admin.xcom(DAG_ID, run_id, "recovery_business", key="recovery")
            fault_s = removal["removed_at"] - fault["injected_at"]
            recovery_s = business["at"] - removal["removed_at"]
            overhead = wall - fault_s - recovery_s
            overheads.append(overhead)
            print(f"run {i + 1}: wall {wall:.1f} s = fault {fault_s:.1f} s + recovery waits {recovery_s:.1f} s + overhead {overhead:.1f} s")
            for task_id, task in sorted(tasks.items(), key=lambda kv: kv[1]["start_date"] or ""):
                if task["start_date"] and task["end_date"]:
                    print(f"    {task_id:<22} {(_time(task['end_date']) - _time(task['start_date'])).total_seconds():6.1f} s  {task['state']}")
        print(f"overhead: median {statistics.median(overheads):.1f} s, max {max(overheads):.1f} s over {len(overheads)} runs")
    finally:
        stack.stop()
        sandbox.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
