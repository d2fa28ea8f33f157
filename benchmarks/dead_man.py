"""Dead man's switch: from the monitoring side's death to the fault's removal by the watchdog.

Run: .venv/bin/python benchmarks/dead_man.py [--runs 10] [--grace 20] [--interval 5] [--state-dir DIR]
Target (issue 6): p95 <= 30 s with the watchdog's defaults (grace 20 s, sweep every 5 s).

Each run creates a fault of ours, starts the kill switch's own trigger (`FaultMonitorTrigger`,
1 s checks, renewing the fault's heartbeat) in a subprocess, waits until its heartbeat is in the
cluster, SIGKILLs the subprocess (as the OOM killer or a lost node would) and times until the
object is gone: removed by the watchdog (`chaosctl watchdog`'s loop, here in a thread) and
recovered by Chaos Mesh's finalizer. Expected: grace minus the beat's age at the kill, plus up to
one sweep interval, plus the recovery.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sandbox.runner import Sandbox

NAMESPACE = "chaos-engineering"
ROOT = Path(__file__).resolve().parents[1]

# Imports first, then "ready", then the fault: the fault's life is not charged with Python's start-up.
MONITOR = """
import asyncio, json, sys
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.triggers import FaultMonitorTrigger
ChaosMeshHook().coordination
print("ready", flush=True)
fault = json.loads(sys.stdin.readline())
trigger = FaultMonitorTrigger(prometheus_conn_id="prometheus_default", kubernetes_conn_id="kubernetes_default", fault=fault,
                              thresholds={}, baseline={}, interval_s=1, max_failed_reads=2)
async def main():
    async for event in trigger.run():
        print(json.dumps(event.payload), flush=True)
        return
asyncio.run(main())
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def owned_fault(name: str) -> dict:
    from chaos_engineering.render import ANNOTATION_DAG_ID, ANNOTATION_RUN_ID, LABEL_MANAGED_BY, MANAGED_BY

    return {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "NetworkChaos",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {LABEL_MANAGED_BY: MANAGED_BY},
                     "annotations": {ANNOTATION_DAG_ID: "dead_man_bench", ANNOTATION_RUN_ID: name}},
        "spec": {"action": "delay", "mode": "one", "duration": "5m", "delay": {"latency": "1ms"},
                 "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "cache"}}},
    }


def one_run(hook, env: dict[str, str]) -> float:
    from chaos_engineering.chaosmesh.constants import ChaosKind
    from chaos_engineering.heartbeat import Heartbeat

    name = f"dead-man-{uuid.uuid4().hex[:8]}"
    fault = {"kind": "NetworkChaos", "name": name, "namespace": NAMESPACE}
    monitor = subprocess.Popen([sys.executable, "-c", MONITOR], env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert monitor.stdout.readline().strip() == "ready", "the monitor did not start"
        hook.create(owned_fault(name))
        monitor.stdin.write(json.dumps(fault) + "\n")
        monitor.stdin.flush()
        beat, deadline = Heartbeat(hook, "NetworkChaos", name, NAMESPACE), time.monotonic() + 60
        while beat.read() is None:
            assert time.monotonic() < deadline, "the monitor never renewed the heartbeat"
            assert monitor.poll() is None, "the monitor died before its first heartbeat"
            time.sleep(0.2)
        time.sleep(2)  # a few renewals, as a live monitor would have done
    finally:
        monitor.send_signal(signal.SIGKILL)
        monitor.wait()
    killed = time.time()
    while hook.get(ChaosKind.NETWORK_CHAOS, name, NAMESPACE) is not None:
        assert time.time() - killed < 120, f"{name} still present 120 s after its monitor died"
        time.sleep(0.1)
    beat.delete()  # the dead monitor could not; the watchdog leaves heartbeats to maintenance
    return time.time() - killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--grace", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--state-dir", type=Path, help="reuse a running sandbox instead of starting one")
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="chaos-bench-airflow-"))
    sandbox = Sandbox.load(args.state_dir) if args.state_dir else None
    own = sandbox is None
    sandbox = sandbox or Sandbox.start(Path(tempfile.mkdtemp(prefix="chaos-bench-sandbox-")), scrape_interval="1s")
    os.environ["AIRFLOW_CONN_KUBERNETES_DEFAULT"] = json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": str(sandbox.kubeconfig_path)}})
    os.environ["AIRFLOW_CONN_PROMETHEUS_DEFAULT"] = json.dumps({"conn_type": "http", "host": sandbox.prometheus_url})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "plugins"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    stop = threading.Event()
    watcher = None
    try:
        from chaos_engineering import watchdog
        from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook

        hook = ChaosMeshHook()
        watcher = threading.Thread(target=watchdog.run, args=(hook,), kwargs={"grace_s": args.grace, "interval_s": args.interval, "stop": stop}, daemon=True)
        watcher.start()
        values = []
        for i in range(args.runs):
            seconds = one_run(hook, env)
            values.append(seconds)
            print(f"run {i + 1:2d}: monitor killed -> fault gone {seconds:.2f} s", flush=True)
        print(f"dead man: p50 {statistics.median(values):.2f} s  p95 {percentile(values, 0.95):.2f} s  max {max(values):.2f} s  "
              f"(n={len(values)}, grace {args.grace:g} s, sweep {args.interval:g} s; target p95 <= 30 s)")
    finally:
        stop.set()
        if watcher is not None:
            watcher.join(10)
        if own:
            sandbox.stop()


if __name__ == "__main__":
    main()
