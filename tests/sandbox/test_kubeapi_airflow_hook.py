"""Airflow's KubernetesHook (cncf-kubernetes provider) talks to the emulated server like to a cluster."""

from __future__ import annotations

import json

import pytest
from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from kubernetes.client.rest import ApiException

from tests.sandbox.kubeapi_support import CHAOS_NS, GROUP, VERSION, chaos, conditions, serve, wait_for

kube = pytest.fixture(scope="module", name="kube")(serve)


@pytest.fixture
def hook(kube, monkeypatch):
    connection = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(kube.kubeconfig), "namespace": CHAOS_NS}}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_SANDBOX", json.dumps(connection))
    return KubernetesHook(conn_id="kubernetes_sandbox")


def test_hook_creates_and_reads_a_chaos_object(kube, hook):
    body = chaos("NetworkChaos", "from-airflow", {
        "action": "delay", "mode": "one", "duration": "30s", "delay": {"latency": "50ms"},
        "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "booking-api"}},
    }, labels={"chaos.airflow/tier": "low"})
    created = hook.create_custom_object(group=GROUP, version=VERSION, plural="networkchaos", body=body)
    assert created["metadata"]["namespace"] == CHAOS_NS  # the connection's namespace
    assert hook.get_namespace() == CHAOS_NS

    def injected():
        obj = hook.get_custom_object(group=GROUP, version=VERSION, plural="networkchaos", name="from-airflow")
        return obj if conditions(obj).get("AllInjected") == "True" else None

    obj = wait_for(injected)
    assert obj["metadata"]["uid"] == created["metadata"]["uid"]
    assert obj["spec"]["delay"] == {"latency": "50ms", "jitter": "0ms", "correlation": "0"}

    hook.delete_custom_object(group=GROUP, version=VERSION, plural="networkchaos", name="from-airflow")

    def gone():
        try:
            hook.get_custom_object(group=GROUP, version=VERSION, plural="networkchaos", name="from-airflow")
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone)
    assert [kind for kind, _ in kube.platform.calls_for("networkchaos", "from-airflow")] == ["apply", "clear"]


def test_hook_sees_pods_and_rejections(kube, hook):
    pods = hook.core_v1_client.list_namespaced_pod("payments").items
    assert {p.metadata.labels["app"] for p in pods} == {"payment-processor", "stripe-webhook-handler"}
    with pytest.raises(ApiException) as caught:
        hook.create_custom_object(group=GROUP, version=VERSION, plural="podchaos",
                                  body=chaos("PodChaos", "bad", {"action": "pod-kill", "mode": "two", "selector": {}}))
    assert caught.value.status == 422
    assert json.loads(caught.value.body)["details"]["causes"][0]["field"] == "spec.mode"
