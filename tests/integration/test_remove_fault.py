"""The teardown against the sandbox: a delete the API server refuses is tried again until the fault goes."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.operators.fault import RemoveFaultOperator
from chaos_engineering.render import LABEL_MANAGED_BY, LABEL_RUN_KEY, MANAGED_BY, run_key
from tests.integration.chaos_support import NAMESPACE


def test_a_delete_refused_three_times_is_tried_again_and_the_fault_goes(connections, sandbox):
    dag_id, run_id = "chaos_low_risk", f"manual__remove-{uuid.uuid4().hex[:8]}"
    name = f"remove-test-{uuid.uuid4().hex[:8]}"
    hook = ChaosMeshHook()
    hook.create({
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "NetworkChaos",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_RUN_KEY: run_key(dag_id, run_id)}},
        "spec": {"action": "delay", "mode": "one", "duration": "5m", "delay": {"latency": "1ms"},
                 "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "cache"}}},
    })
    refused = sandbox.api_faults.inject(rf".*/networkchaos/{name}", "error", verb="DELETE", status=500, times=3)
    context = {"dag_run": SimpleNamespace(dag_id=dag_id, run_id=run_id)}
    try:
        started = time.monotonic()
        out = RemoveFaultOperator(task_id="remove_fault", plan={}, removal_timeout_s=30).execute(context)
        took = time.monotonic() - started
        hits = {rule["id"]: rule["hits"] for rule in sandbox.api_faults.list()}
    finally:
        sandbox.api_faults.clear()
        hook.delete(ChaosKind.NETWORK_CHAOS, name, NAMESPACE)
    assert out["removed"] == [name]
    assert hook.get(ChaosKind.NETWORK_CHAOS, name, NAMESPACE) is None
    assert hits[refused["id"]] == 3
    # Three refusals, then 0.5 + 1 + 2 s of backoff: the fourth delete was accepted.
    assert 3.5 <= took < 15, took
