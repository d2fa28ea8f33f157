"""apps/v1 Deployments (read-only, from the platform's pods) and the Table answers kubectl asks for."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from sandbox.kubeapi.tables import human_age
from sandbox.platform.topology import SERVICES
from tests.sandbox.kubeapi_support import api_error, chaos, serve, start_server, wait_for

kube = pytest.fixture(scope="module", name="kube")(serve)

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
DEPLOYED = {(s.namespace, s.name): s.replicas for s in SERVICES if not s.stateful}


def apps(kube) -> client.AppsV1Api:
    return client.AppsV1Api(kube.api)


def get_json(kube, path: str, accept: str = "application/json") -> dict:
    return json.loads(kube.raw("GET", path, headers={"Accept": accept}).data)


def test_every_stateless_service_is_a_deployment(kube):
    listed = apps(kube).list_deployment_for_all_namespaces()
    assert {(d.metadata.namespace, d.metadata.name): d.spec.replicas for d in listed.items} == DEPLOYED
    assert ("booking", "database") not in DEPLOYED  # a StatefulSet on a real cluster
    assert apps(kube).list_namespaced_deployment("chaos-engineering").items == []


def test_a_deployment_counts_its_pods(kube):
    cache = apps(kube).read_namespaced_deployment("cache", "booking")
    assert cache.spec.selector.match_labels == {"app": "cache"}
    assert cache.metadata.labels == cache.spec.template.metadata.labels == next(s.labels for s in SERVICES if s.name == "cache")
    assert (cache.status.replicas, cache.status.ready_replicas, cache.status.available_replicas) == (2, 2, 2)
    assert {c.type: c.status for c in cache.status.conditions} == {"Available": "True", "Progressing": "True"}
    assert cache.metadata.uid == apps(kube).read_namespaced_deployment("cache", "booking").metadata.uid


def test_a_failed_pod_makes_its_deployment_unavailable(tmp_path_factory):
    # A server of its own: nothing steps this platform's clock, so the pod stays down.
    kube = start_server(tmp_path_factory)
    try:
        before = apps(kube).read_namespaced_deployment("booking-worker", "booking")
        selector = {"namespaces": ["booking"], "labelSelectors": {"app": "booking-worker"}}
        kube.create_chaos("podchaos", chaos("PodChaos", "worker-down", {"action": "pod-failure", "mode": "one", "selector": selector}))
        down = wait_for(lambda: (d := apps(kube).read_namespaced_deployment("booking-worker", "booking")).status.ready_replicas == 1 and d)
        assert down.status.unavailable_replicas == 1 and down.status.replicas == 2
        assert {c.type: c.status for c in down.status.conditions}["Available"] == "False"
        assert down.metadata.resource_version != before.metadata.resource_version
    finally:
        kube.stop()


def test_selectors_and_unknown_names(kube):
    chosen = apps(kube).list_deployment_for_all_namespaces(label_selector="app in (cache, email-service)")
    assert sorted(d.metadata.name for d in chosen.items) == ["cache", "email-service"]
    named = apps(kube).list_namespaced_deployment("payments", field_selector="metadata.name=payment-processor")
    assert [d.metadata.name for d in named.items] == ["payment-processor"]
    status, body = api_error(lambda: apps(kube).list_deployment_for_all_namespaces(field_selector="spec.replicas=2"))
    assert (status, body["message"]) == (400, "field label not supported: spec.replicas")
    status, body = api_error(lambda: apps(kube).read_namespaced_deployment("database", "booking"))
    assert (status, body["message"]) == (404, 'deployments.apps "database" not found')


def test_deployments_are_read_only(kube):
    status, body = api_error(lambda: apps(kube).delete_namespaced_deployment("cache", "booking"))
    assert (status, body["reason"]) == (405, "MethodNotAllowed")


@pytest.mark.parametrize(
    ("path", "columns", "first_cells"),
    [
        pytest.param("/api/v1/namespaces/booking/pods?fieldSelector=metadata.name%3Ddatabase-0",
                     ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node"], ["database-0", "1/1", "Running", "0"],
                     id="pods"),
        pytest.param("/apis/apps/v1/namespaces/booking/deployments?fieldSelector=metadata.name%3Dcache",
                     ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"],
                     ["cache", "2/2", 2, 2], id="deployments"),
    ],
)
def test_kubectl_gets_a_table(kube, path, columns, first_cells):
    table = get_json(kube, path, TABLE)
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert [c["name"] for c in table["columnDefinitions"]] == columns
    (row,) = table["rows"]
    assert row["cells"][:4] == first_cells
    assert row["object"]["kind"] == "PartialObjectMetadata" and row["object"]["metadata"]["namespace"] == "booking"
    assert get_json(kube, path)["kind"] in ("PodList", "DeploymentList")  # plain JSON when not asked


def test_a_single_object_as_a_table_and_the_row_object_options(kube):
    table = get_json(kube, "/apis/apps/v1/namespaces/booking/deployments/cache?includeObject=Object", TABLE)
    (row,) = table["rows"]
    assert row["object"]["kind"] == "Deployment" and row["cells"][0] == "cache"
    bare = get_json(kube, "/api/v1/namespaces/booking/pods/database-0?includeObject=None", TABLE)
    assert "object" not in bare["rows"][0]


def test_chaos_objects_stay_plain_lists(kube):
    # kubectl prints NAME and AGE from a plain list, as for a custom resource without printer columns.
    body = get_json(kube, "/apis/chaos-mesh.org/v1alpha1/podchaos", TABLE)
    assert body["kind"] == "PodChaosList"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(-5, "<invalid>"), (-1, "0s"), (0, "0s"), (119, "119s"), (125, "2m5s"), (600, "10m"), (3 * 3600 + 60, "3h1m"),
     (8 * 3600, "8h"), (50 * 3600, "2d2h"), (48 * 3600, "2d"), (9 * 86400, "9d"), (3 * 365 * 86400 + 86400, "3y1d"),
     (9 * 365 * 86400, "9y")],
)
def test_age_as_kubectl_shows_it(seconds, shown):
    assert human_age(seconds) == shown
