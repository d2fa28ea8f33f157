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
from chaos_engineering.scenario import Scenario

LABEL_PREFIX = "airflow-chaos.dev"
MANAGED_BY = "airflow-chaos-engineering"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_TIER = f"{LABEL_PREFIX}/tier"
LABEL_EXPERIMENT = f"{LABEL_PREFIX}/experiment"
LABEL_TARGET = f"{LABEL_PREFIX}/target-service"
LABEL_RUN_KEY = f"{LABEL_PREFIX}/run-key"
#: A scenario's objects: the scenario, and the step each one is.
LABEL_SCENARIO = f"{LABEL_PREFIX}/scenario"
LABEL_STEP = f"{LABEL_PREFIX}/step"
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
#: Written by a scenario's inject on each step's object: every step's approved digest, and when the
#: scenario started (epoch seconds). The monitor starts the later steps from these and the file.
ANNOTATION_SCENARIO_DIGESTS = f"{LABEL_PREFIX}/scenario-digests"
ANNOTATION_SCENARIO_STARTED = f"{LABEL_PREFIX}/scenario-started"

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


def render_scenario_objects(
    scenario: Scenario,
    policy: SafetyPolicy,
    *,
    dag_id: str = "chaosctl",
    run_id: str = "render",
    approvals: Sequence[dict[str, Any]] = (),
) -> dict[str, dict[str, Any]]:
    """Each step's manifest, by step name: its experiment's, named after the step (unique in the
    run, so a repeated create of a step is a conflict, never a second fault), with the labels of
    every object of ours (the run's key among them: the watchdog, the stop, maintenance and the
    metrics see each step), the scenario's tier, and the scenario's and the step's names."""
    objects = {}
    for step in scenario.steps:
        manifest = render_chaos_object(step.experiment, policy, dag_id=dag_id, run_id=run_id, approvals=approvals)
        metadata = manifest["metadata"]
        metadata["name"] = f"{step.name}-{metadata['labels'][LABEL_RUN_KEY][:8]}"
        # The run's tier is the scenario's (its approvals and window), whatever a step's own.
        metadata["labels"] |= {LABEL_TIER: scenario.tier.value, LABEL_SCENARIO: scenario.name, LABEL_STEP: step.name}
        objects[step.name] = manifest
    return objects
