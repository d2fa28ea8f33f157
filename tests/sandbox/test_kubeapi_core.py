"""core/v1 through the kubernetes client: namespaces, pods, label and field selectors, delete, relabel."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.sandbox.kubeapi_support import api_error, serve

kube = pytest.fixture(scope="module", name="kube")(serve)

NAMESPACES = {"default", "kube-system", "chaos-engineering", "booking", "payments", "notifications"}


def running(kube, namespace: str | None = None):
    return [p for p in kube.platform.pods() if namespace in (None, p.namespace)]


def test_namespaces(kube):
    listed = kube.core.list_namespace()
    assert {n.metadata.name for n in listed.items} == NAMESPACES
    booking = kube.core.read_namespace("booking")
    assert booking.status.phase == "Active"
    assert booking.metadata.labels == {"kubernetes.io/metadata.name": "booking"}


def test_unknown_namespace_is_404(kube):
    status, body = api_error(lambda: kube.core.read_namespace("staging"))
    assert status == 404
    assert (body["reason"], body["message"]) == ("NotFound", 'namespaces "staging" not found')
    assert body["details"] == {"name": "staging", "kind": "namespaces"}


def test_pods_are_real_pod_objects(kube):
    info = next(p for p in running(kube) if p.name == "database-0")
    pod = kube.core.read_namespaced_pod("database-0", "booking")
    assert (pod.metadata.namespace, pod.metadata.uid, pod.metadata.labels) == ("booking", info.uid, info.labels)
    assert pod.metadata.resource_version.isdigit() and pod.metadata.creation_timestamp is not None
    assert pod.spec.node_name == info.node_name
    assert [c.name for c in pod.spec.containers] == list(info.containers)
    assert (pod.status.phase, pod.status.pod_ip) == ("Running", info.pod_ip)
    ready = {c.type: c.status for c in pod.status.conditions}
    assert ready["Ready"] == ready["ContainersReady"] == "True"
    (container,) = pod.status.container_statuses
    assert (container.ready, container.restart_count, container.state.running is not None) == (True, 0, True)


def test_list_pods_across_and_within_namespaces(kube):
    everywhere = kube.core.list_pod_for_all_namespaces()
    assert {(p.metadata.namespace, p.metadata.name) for p in everywhere.items} == {
        (p.namespace, p.name) for p in running(kube)
    }
    payments = kube.core.list_namespaced_pod("payments")
    assert {p.metadata.name for p in payments.items} == {p.name for p in running(kube, "payments")}
    assert kube.core.list_namespaced_pod("default").items == []


def test_list_paging(kube):
    first = kube.core.list_pod_for_all_namespaces(limit=5)
    assert len(first.items) == 5 and first.metadata._continue
    rest = kube.core.list_pod_for_all_namespaces(_continue=first.metadata._continue)
    names = [p.metadata.name for p in first.items + rest.items]
    assert len(names) == len(set(names)) == len(running(kube))


@pytest.mark.parametrize(
    ("selector", "wanted"),
    [
        ("app=cache", lambda p: p.service == "cache"),
        ("app==cache", lambda p: p.service == "cache"),
        ("app!=cache", lambda p: p.service != "cache"),
        ("app in (cache, database)", lambda p: p.service in ("cache", "database")),
        ("app notin (cache,database)", lambda p: p.service not in ("cache", "database")),
        ("app.kubernetes.io/part-of", lambda p: True),
        ("!tier", lambda p: True),
        ("tier", lambda p: False),
        ("app=cache,app.kubernetes.io/part-of=booking-platform", lambda p: p.service == "cache"),
        ("app in (cache),app!=cache", lambda p: False),
        (" app.kubernetes.io/name in (email-service,sms-notifications) , !tier ",
         lambda p: p.service in ("email-service", "sms-notifications")),
    ],
    ids=["eq", "double-eq", "neq", "in", "notin", "exists", "not-exists", "missing-key", "and", "contradiction",
         "spaces"],
)
def test_label_selectors(kube, selector, wanted):
    listed = kube.core.list_pod_for_all_namespaces(label_selector=selector)
    assert {p.metadata.name for p in listed.items} == {p.name for p in running(kube) if wanted(p)}


@pytest.mark.parametrize(
    ("selector", "wanted"),
    [
        ("metadata.name=database-0", lambda p: p.name == "database-0"),
        ("metadata.namespace=payments", lambda p: p.namespace == "payments"),
        ("metadata.namespace!=booking", lambda p: p.namespace != "booking"),
        ("status.phase=Running", lambda p: p.phase == "Running"),
        ("status.phase!=Running", lambda p: p.phase != "Running"),
        ("spec.nodeName=sandbox-node-1,metadata.namespace==booking",
         lambda p: p.node_name == "sandbox-node-1" and p.namespace == "booking"),
    ],
    ids=["name", "namespace", "namespace-neq", "phase", "phase-neq", "node-and-namespace"],
)
def test_field_selectors(kube, selector, wanted):
    listed = kube.core.list_pod_for_all_namespaces(field_selector=selector)
    assert {p.metadata.name for p in listed.items} == {p.name for p in running(kube) if wanted(p)}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"label_selector": "app in (cache"}, "unable to parse requirement"),
        ({"label_selector": "=cache"}, "unable to parse requirement: found '=', expected: identifier"),
        ({"label_selector": "app=cache database"}, "unable to parse requirement: found 'database', expected: ','"),
        ({"label_selector": "app=bad value!"}, "unable to parse requirement"),
        ({"field_selector": "spec.restartPolicy=Always"}, "field label not supported: spec.restartPolicy"),
        ({"field_selector": "metadata.name"}, "invalid selector"),
    ],
    ids=["unclosed-set", "no-key", "missing-comma", "bad-value", "unsupported-field", "no-operator"],
)
def test_bad_selectors_are_400(kube, params, message):
    status, body = api_error(lambda: kube.core.list_namespaced_pod("booking", **params))
    assert status == 400
    assert body["reason"] == "BadRequest" and message in body["message"]


def test_unknown_pod_is_404(kube):
    status, body = api_error(lambda: kube.core.read_namespaced_pod("web-frontend-zzzzz", "booking"))
    assert status == 404
    assert body["message"] == 'pods "web-frontend-zzzzz" not found'


def test_relabel_with_strategic_merge_and_merge_patch(kube):
    name = next(p.name for p in running(kube, "booking") if p.service == "booking-worker")
    patched = kube.core.patch_namespaced_pod(name, "booking", {"metadata": {"labels": {"chaos-test": "marked"}}})
    assert patched.metadata.labels["chaos-test"] == "marked"
    assert next(p for p in running(kube) if p.name == name).labels["chaos-test"] == "marked"
    found = kube.core.list_pod_for_all_namespaces(label_selector="chaos-test=marked")
    assert [p.metadata.name for p in found.items] == [name]

    kube.core.patch_namespaced_pod(
        name, "booking", {"metadata": {"labels": {"chaos-test": None}}}, _content_type="application/merge-patch+json"
    )
    assert "chaos-test" not in kube.core.read_namespaced_pod(name, "booking").metadata.labels


def test_relabel_with_json_patch_moves_the_resource_version(kube):
    name = next(p.name for p in running(kube, "booking") if p.service == "cache")
    before = kube.core.read_namespaced_pod(name, "booking").metadata.resource_version
    after = kube.core.patch_namespaced_pod(
        name, "booking", [{"op": "add", "path": "/metadata/labels/chaos-test", "value": "json"}]
    )
    assert after.metadata.labels["chaos-test"] == "json"
    assert int(after.metadata.resource_version) > int(before)
    kube.core.patch_namespaced_pod(name, "booking", [{"op": "remove", "path": "/metadata/labels/chaos-test"}])


@pytest.mark.parametrize(
    ("patch", "field", "message"),
    [
        ({"metadata": {"labels": {"bad key!": "x"}}}, "metadata.labels", 'Invalid value: "bad key!"'),
        ({"metadata": {"labels": {"app": "-leading-dash"}}}, "metadata.labels", "a valid label must be"),
        ({"spec": {"nodeName": "elsewhere"}}, "spec", "only patches a pod's metadata.labels"),
    ],
    ids=["bad-key", "bad-value", "spec-change"],
)
def test_invalid_pod_patches_are_422(kube, patch, field, message):
    status, body = api_error(lambda: kube.core.patch_namespaced_pod("database-1", "booking", patch))
    assert status == 422
    assert body["reason"] == "Invalid" and body["details"]["kind"] == "Pod"
    assert body["details"]["causes"][0]["field"] == field
    assert message in body["details"]["causes"][0]["message"]


def test_delete_pod(kube):
    name = next(p.name for p in running(kube, "booking") if p.service == "web-frontend")
    deleted = kube.core.delete_namespaced_pod(name, "booking")
    assert deleted.metadata.name == name and deleted.metadata.deletion_timestamp is not None
    assert name not in {p.name for p in running(kube)}
    status, _ = api_error(lambda: kube.core.read_namespaced_pod(name, "booking"))
    assert status == 404


def test_delete_pod_with_a_stale_precondition_is_409(kube):
    name = next(p.name for p in running(kube, "booking") if p.service == "web-frontend")
    options = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version="1"))
    status, body = api_error(lambda: kube.core.delete_namespaced_pod(name, "booking", body=options))
    assert status == 409 and body["reason"] == "Conflict"
    assert name in {p.name for p in running(kube)}


def test_dry_run_delete_leaves_the_pod(kube):
    name = next(p.name for p in running(kube, "booking") if p.service == "booking-api")
    kube.core.delete_namespaced_pod(name, "booking", dry_run="All")
    assert name in {p.name for p in running(kube)}
