"""The exact Chaos Mesh object the system creates for one run of an experiment."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from chaos_engineering.chaosmesh.constants import API_VERSION
from chaos_engineering.chaosmesh.duration import format_go_duration
from chaos_engineering.chaosmesh.spec import spec_manifest
from chaos_engineering.experiment import Experiment
from chaos_engineering.policy import SafetyPolicy
from chaos_engineering.rules import effective_duration

LABEL_PREFIX = "airflow-chaos.dev"
MANAGED_BY = "airflow-chaos-engineering"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_TIER = f"{LABEL_PREFIX}/tier"
LABEL_EXPERIMENT = f"{LABEL_PREFIX}/experiment"
LABEL_TARGET = f"{LABEL_PREFIX}/target-service"
LABEL_RUN_KEY = f"{LABEL_PREFIX}/run-key"
ANNOTATION_DAG_ID = f"{LABEL_PREFIX}/dag-id"
ANNOTATION_RUN_ID = f"{LABEL_PREFIX}/run-id"
ANNOTATION_APPROVALS = f"{LABEL_PREFIX}/approvals"
ANNOTATION_TITLE = f"{LABEL_PREFIX}/title"
ANNOTATION_SOURCE = f"{LABEL_PREFIX}/source"
#: Written by inject on the object it created: the digest approved, the baseline the monitor judges
#: against (read from the object, never from XCom) and the window verdict.
ANNOTATION_DIGEST = f"{LABEL_PREFIX}/digest"
ANNOTATION_BASELINE = f"{LABEL_PREFIX}/baseline"
ANNOTATION_WINDOW = f"{LABEL_PREFIX}/window"

#: Selects every object this system created, in any namespace.
OWNED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


def run_key(dag_id: str, run_id: str) -> str:
    """A label-safe key naming one DAG run: the same run always finds its own object again."""
    return hashlib.sha256(json.dumps([dag_id, run_id]).encode()).hexdigest()[:16]


def render_chaos_object(
    experiment: Experiment,
    policy: SafetyPolicy,
    *,
    dag_id: str = "chaosctl",
    run_id: str = "render",
    approvals: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The manifest, with the enforced `duration` and the labels and annotations that identify it."""
    key = run_key(dag_id, run_id)
    spec = spec_manifest(experiment.spec)
    # Chaos Mesh's own duration ends the fault even if Airflow dies; it is never left open.
    spec["duration"] = spec.get("duration") or format_go_duration(effective_duration(experiment, policy))
    return {
        "apiVersion": API_VERSION,
        "kind": experiment.kind.value,
        "metadata": {
            "name": f"{experiment.name}-{key[:8]}",
            "namespace": policy.chaos_namespace,
            "labels": {
                LABEL_MANAGED_BY: MANAGED_BY,
                LABEL_TIER: experiment.tier.value,
                LABEL_EXPERIMENT: experiment.name,
                LABEL_TARGET: experiment.target_service,
                LABEL_RUN_KEY: key,
            },
            "annotations": {
                ANNOTATION_DAG_ID: dag_id,
                ANNOTATION_RUN_ID: run_id,
                ANNOTATION_APPROVALS: json.dumps(list(approvals), sort_keys=True),
                ANNOTATION_TITLE: experiment.title,
                ANNOTATION_SOURCE: experiment.source.name,
            },
        },
        "spec": spec,
    }
