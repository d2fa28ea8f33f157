"""Builders for experiment and policy files used by the catalogue tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from chaos_engineering.catalogue import Catalogue, load_catalogue
from chaos_engineering.policy import default_include_dir

POLICY_PATH = default_include_dir() / "safety_policy.yaml"


def service_labels(service: str) -> dict[str, str]:
    """Both identifying labels of a service: pinning both keeps every protected service out of reach
    (a pod with ANY label pair of a protected service counts as that service's)."""
    return {"app": service, "app.kubernetes.io/name": service}


def base_experiment() -> dict[str, Any]:
    return {
        "name": "booking-api-pod-kill",
        "tier": "low",
        "title": "Kill one booking-api pod",
        "hypothesis": "Bookings keep flowing.",
        "target": {"service": "booking-api"},
        "chaos": {
            "kind": "PodChaos",
            "spec": {
                "action": "pod-kill",
                "mode": "one",
                "selector": {"namespaces": ["booking"], "labelSelectors": service_labels("booking-api")},
                "duration": "60s",
            },
        },
    }


def base_policy() -> dict[str, Any]:
    return yaml.safe_load(POLICY_PATH.read_text())


def write_yaml(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def load(tmp_path: Path, *experiments: Any, policy: Any = None) -> Catalogue:
    """Write the experiments (and a policy, default the real one) and load them as a catalogue."""
    files = [write_yaml(tmp_path / "experiments" / f"e{i}.yaml", e) for i, e in enumerate(experiments)]
    policy_path = write_yaml(tmp_path / "policy.yaml", policy) if policy is not None else POLICY_PATH
    return load_catalogue(files, policy_path)


def mutated(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Apply {"a.b.c": value} changes; a value of DELETE removes the key."""
    result = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = result
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return result


DELETE = object()
