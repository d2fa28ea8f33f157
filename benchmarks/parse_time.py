"""Parse time of each DAG file, with the real catalogue and with 1,000 generated experiments; and
of the scenario DAGs' factory with 100 generated scenario files (one DAG each) against none.

Run: .venv/bin/python benchmarks/parse_time.py [--experiments 1000] [--scenarios 100] [--repeat 5]
Targets (issue 4): < 0.5 s per file with the real catalogue, < 1 s with 1,000 experiments;
(issue 16) 100 scenario files add < 0.5 s.
Airflow itself is imported first, as in the dag-processor: only the file's own cost is timed.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DAG_FILES = sorted((ROOT / "dags").glob("chaos_*_risk.py"))
SCENARIO_DAGS = ROOT / "dags" / "chaos_scenarios.py"


def generated_include(count: int) -> Path:
    """A copy of include/ whose catalogue holds `count` experiments made from the real ones."""
    folder = Path(tempfile.mkdtemp(prefix="chaos-bench-include-"))
    shutil.copy(ROOT / "include" / "safety_policy.yaml", folder / "safety_policy.yaml")
    sources = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "include" / "experiments").rglob("*.yaml"))]
    for i in range(count):
        experiment = copy.deepcopy(sources[i % len(sources)])
        experiment["name"] = f"{experiment['name'][:40]}-{i:05d}"
        path = folder / "experiments" / experiment["tier"] / f"{experiment['name']}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(experiment))
    return folder


def include_with_scenarios(count: int) -> Path:
    """A copy of include/ whose scenarios folder holds `count` scenarios made from the shipped ones
    (inline steps included)."""
    folder = Path(tempfile.mkdtemp(prefix="chaos-bench-scenarios-")) / "include"
    shutil.copytree(ROOT / "include", folder)
    sources = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "include" / "scenarios").glob("*.yaml"))]
    shutil.rmtree(folder / "scenarios")
    (folder / "scenarios").mkdir()
    for i in range(count):
        scenario = copy.deepcopy(sources[i % len(sources)])
        scenario["name"] = f"{scenario['name'][:40]}-{i:05d}"
        (folder / "scenarios" / f"{scenario['name']}.yaml").write_text(yaml.safe_dump(scenario))
    return folder


def measure_scenarios(count: int, repeat: int) -> None:
    """The scenario factory's DAG file parsed with no scenario and with `count`: what they add."""
    medians = {}
    for n in (0, count):
        os.environ["CHAOS_INCLUDE_DIR"] = str(include_with_scenarios(n))
        parse_once(SCENARIO_DAGS)
        times = [parse_once(SCENARIO_DAGS) for _ in range(repeat)]
        medians[n] = statistics.median(times)
        print(f"{n:>4} scenarios{'':<9} {SCENARIO_DAGS.name:<24} median {medians[n] * 1000:7.1f} ms   max {max(times) * 1000:7.1f} ms")
    del os.environ["CHAOS_INCLUDE_DIR"]
    print(f"{count} scenario files add {(medians[count] - medians[0]) * 1000:.0f} ms to the parse (median)")


def parse_once(path: Path) -> float:
    # A fresh module each time, as the dag-processor parses a file in a fresh process.
    for name in [m for m in sys.modules if m.startswith(("chaos_engineering.tier_chain", "chaos_engineering.scenario_dags")) or m == "_bench_dag"]:
        del sys.modules[name]
    spec = importlib.util.spec_from_file_location("_bench_dag", path)
    module = importlib.util.module_from_spec(spec)
    started = time.perf_counter()
    spec.loader.exec_module(module)
    return time.perf_counter() - started


def measure(label: str, repeat: int) -> None:
    for path in DAG_FILES:
        parse_once(path)  # warm the imports shared by every file (hooks, operators, providers)
        times = [parse_once(path) for _ in range(repeat)]
        print(f"{label:<22} {path.name:<24} median {statistics.median(times) * 1000:7.1f} ms   max {max(times) * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--scenarios", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="chaos-bench-airflow-"))
    started = time.perf_counter()
    import airflow.sdk  # noqa: F401  (the dag-processor has it loaded already)

    print(f"import airflow.sdk: {time.perf_counter() - started:.2f} s (paid once by the dag-processor, not per file)")
    measure("real catalogue", args.repeat)
    measure_scenarios(args.scenarios, args.repeat)
    os.environ["CHAOS_INCLUDE_DIR"] = str(generated_include(args.experiments))
    measure(f"{args.experiments} experiments", args.repeat)


if __name__ == "__main__":
    main()
