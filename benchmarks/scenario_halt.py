"""Scenario halt latency: from a breach caused by a scenario's second step being visible in
Prometheus to every step's fault object being gone.

Run: .venv/bin/python benchmarks/scenario_halt.py [--runs 10] [--state-dir DIR]
Target (issue 16): p95 <= 3 s with a 1 s scrape interval and a 1 s check interval.

Each run is a three-step scenario as the scenario's monitor runs it (`ScenarioMonitorTrigger`, the
code the Airflow triggerer runs, in-process): a harmless 1 ms delay on one cache pod standing from
the start (created first, as inject does), every booking-api pod failing from 5 s (created by the
trigger when due: it breaches), and a third step planned at 60 s that must never start. Beside it,
Prometheus and the Kubernetes API are polled every 100 ms to time-stamp the first sample beyond a
bound (visible), the trigger's breach and delete requests, and the moment no step's object is left.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.halt_latency import NAMESPACE, breach_beside, halt_row, run_benchmark, watch_visible  # noqa: E402

CACHE = {"namespaces": ["booking"], "labelSelectors": {"app": "cache"}}
API = {"namespaces": ["booking"], "labelSelectors": {"app": "booking-api"}}
STEPS = (
    ("cache-slow", "NetworkChaos", {"action": "delay", "mode": "one", "delay": {"latency": "1ms"}, "selector": CACHE}, 0, 120),
    ("api-down", "PodChaos", {"action": "pod-failure", "mode": "all", "selector": API}, 5, 60),
    ("never", "NetworkChaos", {"action": "delay", "mode": "one", "delay": {"latency": "2ms"}, "selector": CACHE}, 60, 30),
)


def scenario_steps(key: str, started: float) -> list[dict]:
    from chaos_engineering.render import LABEL_MANAGED_BY, LABEL_RUN_KEY, MANAGED_BY

    return [
        {
            "step": name,
            "body": {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": kind,
                     "metadata": {"name": f"{name}-{key[:8]}", "namespace": NAMESPACE, "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_RUN_KEY: key}},
                     "spec": spec | {"duration": f"{duration}s"}},
            "start_at": started + start, "duration_s": duration, "after": None, "when": None, "action": spec["action"],
        }
        for name, kind, spec, start, duration in STEPS
    ]


async def one_run(policy, thresholds: dict, hook, prometheus) -> dict[str, float]:
    from chaos_engineering.chaosmesh.constants import ChaosKind
    from chaos_engineering.render import LABEL_RUN_KEY
    from chaos_engineering.scenario_monitor import ScenarioMonitorTrigger

    baseline = {n: prometheus.query(t["query"]) for n, t in thresholds.items()}
    key, started = uuid.uuid4().hex[:16], time.time()
    steps = scenario_steps(key, started)
    hook.create(steps[0]["body"])
    trigger = ScenarioMonitorTrigger(
        prometheus_conn_id="prometheus_default", kubernetes_conn_id="kubernetes_default", steps=steps, started_at=started,
        span_end=started + 120, namespace=NAMESPACE, thresholds=thresholds, baseline=baseline, interval_s=1,
        max_failed_reads=policy.safety.max_failed_reads, chaos_namespace=NAMESPACE,
    )
    marks: dict[str, float] = {"started": started}

    def left() -> int:
        return sum(len(hook.list(ChaosKind(k), NAMESPACE, f"{LABEL_RUN_KEY}={key}")) for k in ("NetworkChaos", "PodChaos"))

    async def watch_cluster() -> None:
        while "second" not in marks:  # until the breaching step stands
            if await asyncio.to_thread(hook.get, ChaosKind.POD_CHAOS, steps[1]["body"]["metadata"]["name"], NAMESPACE):
                marks["second"] = time.time()
            await asyncio.sleep(0.1)
        while await asyncio.to_thread(left):
            await asyncio.sleep(0.1)
        marks["gone"] = time.time()

    payload = await breach_beside(trigger, watch_visible(prometheus, thresholds, baseline, marks), watch_cluster(), marks)
    assert payload["breach_after_step"] == "api-down" and payload["steps"]["never"]["created_at"] is None, payload
    return marks


def main() -> None:
    run_benchmark(
        __doc__.splitlines()[0],
        one_run,
        lambda marks: halt_row(marks) | {"to_breach": marks["visible"] - marks["second"]},
        lambda row: (f"visible->all gone {row['halt']:.2f} s (detect {row['detect']:.2f}, delete {row['delete']:.3f}, "
                     f"finalizer {row['finalizer']:.2f}; second step to visible {row['to_breach']:.1f} s)"),
    )


if __name__ == "__main__":
    main()
