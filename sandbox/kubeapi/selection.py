"""Chaos Mesh pod selection: a `selector` and a `mode`/`value` resolved against the platform's pods."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from sandbox.kubeapi.selectors import label_selector_from_spec, matches_all
from sandbox.platform.effects import PodInfo
from sandbox.platform.topology import NODES, node_labels


def pod_fields(pod: PodInfo) -> dict[str, str]:
    """The field-selector view of a pod (the fields the API server indexes for pods)."""
    return {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "status.phase": pod.phase,
        "spec.nodeName": pod.node_name,
    }


def select_pods(selector: dict, pods: Sequence[PodInfo]) -> list[PodInfo]:
    """The pods `selector` names, before the mode picks among them.

    As Chaos Mesh: an explicit `pods` map wins over every other selector; otherwise all the given
    selectors must hold at once. Only Running pods are candidates unless `podPhaseSelectors` asks
    for other phases (there is nothing to inject into a pod that is not running).
    """
    phases = set(selector.get("podPhaseSelectors") or ["Running"])
    if selector.get("pods"):
        wanted = {(ns, name) for ns, names in selector["pods"].items() for name in names}
        return [p for p in pods if (p.namespace, p.name) in wanted and p.phase in phases]
    namespaces = set(selector.get("namespaces") or [])
    labels = label_selector_from_spec(selector.get("labelSelectors"), selector.get("expressionSelectors"))
    fields = selector.get("fieldSelectors") or {}
    annotations = selector.get("annotationSelectors") or {}
    nodes = set(selector.get("nodes") or [])
    node_selector = selector.get("nodeSelectors") or {}
    chosen = []
    for pod in pods:
        if namespaces and pod.namespace not in namespaces:
            continue
        if not matches_all(labels, pod.labels) or pod.phase not in phases:
            continue
        view = pod_fields(pod)
        if any(view.get(path) != value for path, value in fields.items()):
            continue
        # Sandbox pods carry no annotations, so any annotation selector matches nothing.
        if annotations:
            continue
        if nodes and pod.node_name not in nodes:
            continue
        # Sandbox nodes carry the well-known hostname and zone labels (one node per zone).
        if node_selector and not _node_matches(node_selector, pod.node_name):
            continue
        chosen.append(pod)
    return sorted(chosen, key=lambda p: (p.namespace, p.name))


def _node_matches(wanted: dict, node: str) -> bool:
    """Chaos Mesh's nodeSelectors: every given label on the pod's node, with that value."""
    have = node_labels(node) if node in NODES else {}
    return all(have.get(key) == value for key, value in wanted.items())


def apply_mode(pods: list[PodInfo], mode: str, value: str | None, rng: random.Random) -> list[PodInfo]:
    """filterPodsByMode: one, all, fixed N, fixed-percent P, random-max-percent P (floors, like Chaos Mesh)."""
    if not pods:
        return []
    if mode == "all":
        return list(pods)
    if mode == "one":
        return [rng.choice(pods)]
    number = int(value or 0)
    if mode == "fixed":
        count = min(number, len(pods))
    elif mode == "fixed-percent":
        count = math.floor(len(pods) * number / 100)
    else:  # random-max-percent
        count = rng.randint(0, math.floor(len(pods) * number / 100))
    return sorted(rng.sample(pods, count), key=lambda p: (p.namespace, p.name))
