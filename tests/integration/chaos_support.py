"""Chaos objects of ours (and not ours) for the emergency-stop and watchdog tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.render import (
    ANNOTATION_DAG_ID,
    ANNOTATION_RUN_ID,
    LABEL_EXPERIMENT,
    LABEL_MANAGED_BY,
    LABEL_RUN_KEY,
    LABEL_SCENARIO,
    LABEL_STEP,
    LABEL_TARGET,
    LABEL_TIER,
    MANAGED_BY,
)
from sandbox.kubeapi.resources import FAIL_RECOVERY_ANNOTATION

NAMESPACE = "chaos-engineering"


def create_fault(prefix: str, *, owned: bool = True, duration: str = "5m", scenario: tuple[str, str] | None = None) -> dict[str, Any]:
    """A light NetworkChaos (1 ms on one cache pod), labelled as ours unless `owned=False`; with
    `scenario` (its name, the run's key), labelled as a step of that scenario's run."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    metadata: dict[str, Any] = {"name": name, "namespace": NAMESPACE}
    if owned:
        metadata["labels"] = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_TIER: "low", LABEL_EXPERIMENT: "cache-latency-test", LABEL_TARGET: "cache"}
        if scenario is not None:
            metadata["labels"] |= {LABEL_SCENARIO: scenario[0], LABEL_RUN_KEY: scenario[1], LABEL_STEP: prefix}
        metadata["annotations"] = {ANNOTATION_DAG_ID: "chaos_low_risk", ANNOTATION_RUN_ID: f"manual__{name}"}
    return ChaosMeshHook().create(
        {
            "apiVersion": "chaos-mesh.org/v1alpha1",
            "kind": "NetworkChaos",
            "metadata": metadata,
            "spec": {"action": "delay", "mode": "one", "duration": duration, "delay": {"latency": "1ms"},
                     "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "cache"}}},
        }
    )


def get(obj: dict[str, Any]) -> dict[str, Any] | None:
    return ChaosMeshHook().get(ChaosKind(obj["kind"]), obj["metadata"]["name"], obj["metadata"]["namespace"])


def wait_injected(obj: dict[str, Any], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        current = get(obj) or {}
        conditions = (current.get("status") or {}).get("conditions") or []
        if any(c["type"] == "AllInjected" and c["status"] == "True" for c in conditions):
            return
        assert time.monotonic() < deadline, f"{obj['metadata']['name']} not injected after {timeout} s: {conditions}"
        time.sleep(0.1)


def hold_recovery(obj: dict[str, Any]) -> None:
    """The sandbox's stuck-finalizer switch: every recovery of this fault fails (as when
    chaos-daemon cannot reach its node), so once deleted it stays deleting, its fault applied."""
    ChaosMeshHook().patch(ChaosKind(obj["kind"]), obj["metadata"]["name"], obj["metadata"]["namespace"],
                          {"metadata": {"annotations": {FAIL_RECOVERY_ANNOTATION: "true"}}})


def target_pods(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """(namespace, name) of the pods Chaos Mesh recorded for this fault, read now."""
    records = ((get(obj) or {}).get("status") or {}).get("experiment", {}).get("containerRecords") or []
    return [tuple(r["id"].split("/", 1)) for r in records]


def restart_pods(pods: list[tuple[str, str]]) -> None:
    """What the runbook says after a forced clean-up: delete the targets (a new pod carries no fault)."""
    from kubernetes.client.exceptions import ApiException

    core = ChaosMeshHook().core
    for namespace, name in pods:
        try:
            core.delete_namespaced_pod(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise


def remove(obj: dict[str, Any]) -> None:
    """Test clean-up: let recovery succeed again, delete, and drop any finalizer a test added."""
    from kubernetes.client.exceptions import ApiException

    hook, kind = ChaosMeshHook(), ChaosKind(obj["kind"])
    try:
        hook.patch(kind, obj["metadata"]["name"], obj["metadata"]["namespace"], {"metadata": {"annotations": {FAIL_RECOVERY_ANNOTATION: None}}})
    except ApiException as exc:
        if exc.status != 404:
            raise
    hook.delete(kind, obj["metadata"]["name"], obj["metadata"]["namespace"])
    deadline = time.monotonic() + 10
    while (current := get(obj)) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    if current is not None:
        hook.patch(kind, obj["metadata"]["name"], obj["metadata"]["namespace"], {"metadata": {"finalizers": []}})


CHAOSCTL = str(Path(sys.executable).with_name("chaosctl"))


def chaosctl(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CHAOSCTL, *args], capture_output=True, text=True, timeout=120, env=env)


def json_out(result: subprocess.CompletedProcess) -> dict:
    """The JSON document, after any log line Airflow's own configuration printed first."""
    lines = result.stdout.splitlines()
    return json.loads("\n".join(lines[next(i for i, line in enumerate(lines) if line == "{"):]))
