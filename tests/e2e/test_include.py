"""The include/ folder the end-to-end tests run with: the shipped policy and catalogue, with
faster clocks and a few experiments made to break things, all through the public file formats."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]

# Clocks a test can wait for; every rule and limit stays the shipped one.
FAST = {
    ("safety", "check_interval"): "1s",
    ("safety", "lock_wait"): "4m",
    ("preflight", "healthy_window"): "30s",
    ("recovery", "immediate", "deadline"): "45s",
    ("recovery", "short_term", "deadline"): "90s",
    ("recovery", "business", "deadline"): "2m",
}

# Experiments the tests need beyond the catalogue, in the tiers the shipped policy allows.
EXTRA = {
    "low/booking-api-quick-kill.yaml": {
        "name": "booking-api-quick-kill",
        "tier": "low",
        "title": "Kill one booking-api pod (short)",
        "hypothesis": "Bookings keep flowing.",
        "target": {"service": "booking-api"},
        "chaos": {"kind": "PodChaos", "spec": {"action": "pod-kill", "mode": "one", "duration": "15s",
                  "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "booking-api", "app.kubernetes.io/name": "booking-api"}}}},
    },
    "low/cache-slow-quick.yaml": {
        "name": "cache-slow-quick",
        "tier": "low",
        "title": "5 ms delay on one cache pod (short)",
        "hypothesis": "Nothing a customer notices.",
        "target": {"service": "cache"},
        "chaos": {"kind": "NetworkChaos", "spec": {"action": "delay", "mode": "one", "duration": "20s", "delay": {"latency": "5ms"},
                  "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "cache", "app.kubernetes.io/name": "cache"}}}},
    },
    "low/cache-slow-long.yaml": {
        "name": "cache-slow-long",
        "tier": "low",
        "title": "5 ms delay on one cache pod (long, for the operations tests)",
        "hypothesis": "Nothing a customer notices.",
        "target": {"service": "cache"},
        "chaos": {"kind": "NetworkChaos", "spec": {"action": "delay", "mode": "one", "duration": "5m", "delay": {"latency": "5ms"},
                  "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "cache", "app.kubernetes.io/name": "cache"}}}},
    },
    "medium/booking-api-abort.yaml": {
        "name": "booking-api-abort",
        "tier": "medium",
        "title": "One booking-api pod aborts every booking request",
        "hypothesis": "Retries on the other replicas hide it (they do not: this breaches).",
        "target": {"service": "booking-api"},
        "chaos": {"kind": "HTTPChaos", "spec": {"mode": "one", "target": "Request", "port": 8080, "path": "*", "abort": True,
                  "duration": "2m", "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "booking-api", "app.kubernetes.io/name": "booking-api"}}}},
    },
    "medium/email-service-quick-abort.yaml": {
        "name": "email-service-quick-abort",
        "tier": "medium",
        "title": "One email-service pod aborts its send requests (short)",
        "hypothesis": "Bookings are unaffected.",
        "target": {"service": "email-service"},
        "chaos": {"kind": "HTTPChaos", "spec": {"mode": "one", "target": "Request", "port": 8080, "path": "/send*", "abort": True,
                  "duration": "20s", "selector": {"namespaces": ["notifications"], "labelSelectors": {"app": "email-service", "app.kubernetes.io/name": "email-service"}}}},
    },
}


API_SELECTOR = {"namespaces": ["booking"], "labelSelectors": {"app": "booking-api", "app.kubernetes.io/name": "booking-api"}}


def _http_delay(name: str, delay: str, duration: str) -> dict[str, Any]:
    return {
        "name": name, "tier": "medium", "title": f"{delay} delay on one booking-api pod's availability route", "hypothesis": "The others take it.",
        "target": {"service": "booking-api"},
        "chaos": {"kind": "HTTPChaos", "spec": {"mode": "one", "selector": API_SELECTOR, "target": "Request", "port": 8080,
                                                "path": "/availability*", "method": "GET", "delay": delay, "duration": duration}},
    }


# Scenarios the tests run: the shipped cascade's shape in well under a minute, and one whose second
# step breaches (include/scenarios/ holds the shipped ones; these are written beside them).
SCENARIOS = {
    "quick-cascade.yaml": {
        "name": "quick-cascade",
        "tier": "medium",
        "title": "booking-api latency grows while a worker is CPU-starved (short)",
        "description": "The shipped cascade, every step shortened for the tests.",
        "hypothesis": "The other booking-api replicas absorb the slow pod.",
        "thresholds": {"p95_latency": {"limit": 1500}},
        "steps": [
            {"name": "worker-starved", "experiment": {
                "name": "booking-worker-cpu-stress-quick", "tier": "low", "title": "CPU stress on one booking-worker pod (short)",
                "hypothesis": "Reminder jobs slow down.", "target": {"service": "booking-worker"},
                "chaos": {"kind": "StressChaos", "spec": {
                    "mode": "one", "duration": "25s", "stressors": {"cpu": {"workers": 1, "load": 60}},
                    "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "booking-worker", "app.kubernetes.io/name": "booking-worker"}}}}}},
            {"name": "api-slow", "start": {"after": "worker-starved", "when": "started", "offset": "5s"},
             "experiment": _http_delay("booking-api-http-delay-quick", "150ms", "8s")},
            {"name": "api-slower", "start": {"after": "api-slow", "when": "ended"},
             "experiment": _http_delay("booking-api-http-delay-quick-2", "300ms", "8s")},
        ],
    },
    "quick-breach.yaml": {
        "name": "quick-breach",
        "tier": "medium",
        "title": "A slow cache, then a booking-api pod aborting every booking (breaches)",
        "description": "The second step breaches: the kill switch must remove both steps.",
        "hypothesis": "Retries hide the aborting pod (they do not).",
        "steps": [
            {"name": "cache-slow", "experiment": "cache-slow-long"},
            {"name": "api-abort", "start": {"after": "cache-slow", "when": "started", "offset": "10s"}, "experiment": "booking-api-abort"},
        ],
    },
}


def _set(document: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        document = document[key]
    document[path[-1]] = value


def make_include(folder: Path, reports: Path, **overrides: Any) -> Path:
    """Write include/ into `folder`; `overrides` maps dotted policy paths to values."""
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(ROOT / "include", folder)
    write_policy(folder, reports, **overrides)
    for relative, experiment in EXTRA.items():
        (folder / "experiments" / relative).write_text(yaml.safe_dump(experiment, sort_keys=False))
    for name, scenario in SCENARIOS.items():
        (folder / "scenarios" / name).write_text(yaml.safe_dump(scenario, sort_keys=False))
    return folder


def write_policy(folder: Path, reports: Path, **overrides: Any) -> None:
    policy = yaml.safe_load((ROOT / "include" / "safety_policy.yaml").read_text())
    for path, value in FAST.items():
        _set(policy, path, value)
    _set(policy, ("reports", "base_url"), reports.as_uri())
    for dotted, value in overrides.items():
        _set(policy, tuple(dotted.split(".")), value)
    (folder / "safety_policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
