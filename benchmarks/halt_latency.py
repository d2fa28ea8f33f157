"""Halt latency: from a breach being visible in Prometheus to the fault object being gone.

Run: .venv/bin/python benchmarks/halt_latency.py [--runs 10] [--state-dir DIR]
Target (issue 4): p95 <= 3 s with a 1 s scrape interval and a 1 s check interval.

Each run injects a fault that breaches (every booking-api pod fails), runs the kill switch's own
trigger (`FaultMonitorTrigger`, the code the Airflow triggerer runs) and, beside it, polls
Prometheus and the Kubernetes API every 100 ms to time-stamp: the first sample beyond the bound
(visible), the trigger's breach, its delete request, and the object's disappearance (gone, after
Chaos Mesh's finalizer recovered the pods). The trigger is run in-process: Airflow adds nothing
between a trigger's breach and its delete, both happen inside the trigger. The trigger's event is
held back (Airflow's deferral race, `MIN_EVENT_DELAY_S`), its deletion is not: "gone" is timed on
the cluster, not from the event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from sandbox.runner import Sandbox

NAMESPACE = "chaos-engineering"
FAULT = {"action": "pod-failure", "mode": "all", "duration": "2m",
         "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "booking-api"}}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def watch_visible(prometheus, thresholds: dict, baseline: dict, marks: dict[str, float]) -> None:
    """Polls every threshold each 100 ms; marks `visible` at the first reading beyond its bound."""
    from chaos_engineering.policy import Threshold
    from chaos_engineering.safety import check

    while "visible" not in marks:
        for n, t in thresholds.items():
            value = await asyncio.to_thread(prometheus.query, t["query"])
            if value is not None and check(n, Threshold(**t), value, baseline[n], time.time()):
                marks.setdefault("visible", time.time())
        await asyncio.sleep(0.1)


def print_figures(rows: list[dict[str, float]]) -> None:
    for key in rows[0]:
        values = [r[key] for r in rows]
        print(f"{key:>9}: p50 {statistics.median(values):.2f} s  p95 {percentile(values, 0.95):.2f} s  max {max(values):.2f} s  (n={len(values)})")


@contextlib.contextmanager
def bench_sandbox(state_dir: Path | None) -> Iterator[Sandbox]:
    """A sandbox with a 1 s scrape (`state_dir`: one already running), its connections set."""
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="chaos-bench-airflow-"))
    sandbox = Sandbox.load(state_dir) if state_dir else None
    own = sandbox is None
    sandbox = sandbox or Sandbox.start(Path(tempfile.mkdtemp(prefix="chaos-bench-sandbox-")), scrape_interval="1s")
    os.environ["AIRFLOW_CONN_KUBERNETES_DEFAULT"] = json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": str(sandbox.kubeconfig_path)}})
    os.environ["AIRFLOW_CONN_PROMETHEUS_DEFAULT"] = json.dumps({"conn_type": "http", "host": sandbox.prometheus_url})
    try:
        yield sandbox
    finally:
        if own:
            sandbox.stop()


async def one_run(policy, thresholds: dict, hook, prometheus) -> dict[str, float]:
    from chaos_engineering.chaosmesh.constants import ChaosKind
    from chaos_engineering.triggers import FaultMonitorTrigger

    baseline = {n: prometheus.query(t["query"]) for n, t in thresholds.items()}
    name = f"halt-bench-{uuid.uuid4().hex[:8]}"
    hook.create({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "PodChaos",
                 "metadata": {"name": name, "namespace": NAMESPACE}, "spec": FAULT})
    injected = time.time()
    trigger = FaultMonitorTrigger(
        prometheus_conn_id="prometheus_default", kubernetes_conn_id="kubernetes_default",
        fault={"kind": "PodChaos", "name": name, "namespace": NAMESPACE, "action": "pod-failure"},
        thresholds=thresholds, baseline=baseline, interval_s=1, max_failed_reads=policy.safety.max_failed_reads,
    )
    marks: dict[str, float] = {"injected": injected}

    async def watch_cluster() -> None:
        while await asyncio.to_thread(hook.get, ChaosKind.POD_CHAOS, name, NAMESPACE) is not None:
            await asyncio.sleep(0.1)
        marks["gone"] = time.time()

    await breach_beside(trigger, watch_visible(prometheus, thresholds, baseline, marks), watch_cluster(), marks)
    return marks


async def breach_beside(trigger, visible, gone, marks: dict[str, float]) -> dict:
    """Run `trigger` to its event with the two watchers (`visible`, then `gone`) beside it from the
    start: its event comes after the deletion (at the earliest MIN_EVENT_DELAY_S after it started),
    so "gone" is not timed from the event. Marks the breach and the delete; returns the event."""
    watchers = [asyncio.create_task(visible), asyncio.create_task(gone)]
    async for event in trigger.run():
        payload = event.payload
        break
    await watchers[1]
    watchers[0].cancel()
    assert payload["status"] == "breach", payload
    marks["breach"] = payload["breach"]["at"]
    marks["delete"] = payload["removal_requested_at"]
    marks.setdefault("visible", marks["breach"])  # the trigger saw it before our poll did
    return payload


def halt_row(marks: dict[str, float]) -> dict[str, float]:
    return {
        "halt": marks["gone"] - marks["visible"],
        "detect": marks["breach"] - marks["visible"],
        "delete": marks["delete"] - marks["breach"],
        "finalizer": marks["gone"] - marks["delete"],
    }


def run_benchmark(description: str, one_run, row_of, line) -> None:
    """`--runs` runs of `one_run` on a steady sandbox; one line each (`line(row_of(marks))`), then the figures."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--state-dir", type=Path, help="reuse a running sandbox (1 s scrape) instead of starting one")
    args = parser.parse_args()
    with bench_sandbox(args.state_dir):
        from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
        from chaos_engineering.hooks.prometheus import PrometheusHook
        from chaos_engineering.policy import load_policy
        from sandbox.steady import wait_steady

        policy, _ = load_policy()
        thresholds = {n: t.model_dump(mode="json") for n, t in policy.safety.thresholds.items()}
        hook, prometheus = ChaosMeshHook(), PrometheusHook()
        rows = []
        for i in range(args.runs):
            wait_steady(policy, window_s=30, timeout=300)
            rows.append(row_of(asyncio.run(one_run(policy, thresholds, hook, prometheus))))
            print(f"run {i + 1:2d}: {line(rows[-1])}", flush=True)
        print_figures(rows)


def main() -> None:
    run_benchmark(
        __doc__.splitlines()[0],
        one_run,
        halt_row,
        lambda row: f"visible->gone {row['halt']:.2f} s (detect {row['detect']:.2f}, delete {row['delete']:.3f}, finalizer {row['finalizer']:.2f})",
    )


if __name__ == "__main__":
    main()
