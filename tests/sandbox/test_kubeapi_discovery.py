"""The emulated API server's discovery, authentication and its edges (unknown paths, verbs, watch)."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from tests.sandbox.kubeapi_support import CHAOS_NS, GROUP, VERSION, api_error, serve, start_server

kube = pytest.fixture(scope="module", name="kube")(serve)


def test_version(kube):
    info = client.VersionApi(kube.api).get_code()
    assert (info.major, info.minor) == ("1", "31")
    assert info.git_version.startswith("v1.31")


def test_core_and_group_discovery(kube):
    assert client.CoreApi(kube.api).get_api_versions().versions == ["v1"]
    groups = {g.name: g.preferred_version.group_version for g in client.ApisApi(kube.api).get_api_versions().groups}
    assert groups == {
        "apps": "apps/v1", "coordination.k8s.io": "coordination.k8s.io/v1", "chaos-mesh.org": "chaos-mesh.org/v1alpha1",
    }


@pytest.mark.parametrize(
    ("lister", "expected"),
    [
        pytest.param(
            lambda api: client.CoreV1Api(api).get_api_resources(),
            {"namespaces": (False, {"get", "list"}), "pods": (True, {"get", "list", "delete", "patch"})},
            id="core-v1",
        ),
        pytest.param(
            lambda api: client.AppsV1Api(api).get_api_resources(),
            {"deployments": (True, {"get", "list"})},
            id="apps-v1",
        ),
        pytest.param(
            lambda api: client.CoordinationV1Api(api).get_api_resources(),
            {"leases": (True, {"create", "delete", "get", "list", "patch", "update"})},
            id="coordination-v1",
        ),
        pytest.param(
            lambda api: client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION),
            {
                plural: (True, {"create", "delete", "deletecollection", "get", "list", "patch", "update"})
                for plural in ("podchaos", "networkchaos", "stresschaos", "iochaos", "httpchaos")
            },
            id="chaos-mesh-v1alpha1",
        ),
    ],
)
def test_resource_lists(kube, lister, expected):
    resources = lister(kube.api).resources
    assert {r.name: (r.namespaced, set(r.verbs)) for r in resources} == expected


def test_chaos_kinds_are_discoverable_by_kind(kube):
    kinds = {r.kind: r.name for r in kube.custom.get_api_resources(GROUP, VERSION).resources}
    assert kinds == {
        "PodChaos": "podchaos", "NetworkChaos": "networkchaos", "StressChaos": "stresschaos",
        "IOChaos": "iochaos", "HTTPChaos": "httpchaos",
    }


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/namespaces/booking/services",
        "/api/v1/nodes",
        "/apis/apps/v1/statefulsets",
        "/apis/chaos-mesh.org/v1alpha1/namespaces/chaos-engineering/schedules",
        "/apis/chaos-mesh.org/v1alpha1/namespaces/chaos-engineering/podchaos/x/status",
        "/apis/chaos-mesh.org/v1beta1",
        "/openapi/v2",
        "/docs",
        "/openapi.json",
        "/metrics",
    ],
)
def test_unknown_paths_are_404_status(kube, path):
    status, body = api_error(lambda: kube.raw("GET", path))
    assert status == 404
    assert body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the server could not find the requested resource", "reason": "NotFound", "details": {},
        "code": 404,
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/namespaces/booking/pods"),
        ("PUT", "/api/v1/namespaces/booking/pods/database-0"),
        ("DELETE", "/api/v1/namespaces/booking"),
        ("POST", "/api/v1/namespaces"),
        ("DELETE", f"/apis/coordination.k8s.io/v1/namespaces/{CHAOS_NS}/leases"),
        ("POST", "/apis/chaos-mesh.org/v1alpha1/podchaos"),
    ],
)
def test_unsupported_verbs_are_405_status(kube, method, path):
    status, body = api_error(lambda: kube.raw(method, path, body={}))
    assert status == 405
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "MethodNotAllowed", 405)


def test_watch_is_refused_not_faked(kube):
    status, body = api_error(lambda: kube.core.list_namespaced_pod("booking", watch=True))
    assert status == 405
    assert body["reason"] == "MethodNotAllowed" and "watch" in body["message"]


def test_a_wrong_token_is_401(kube):
    status, body = api_error(lambda: kube.raw(
        "GET", "/api/v1/namespaces", auth=False, headers={"Authorization": "Bearer not-the-token"}
    ))
    assert status == 401
    assert (body["kind"], body["reason"]) == ("Status", "Unauthorized")


def test_a_request_without_credentials_is_served_by_default(kube):
    # kubectl never sends a token over plain http; the sandbox must still answer it.
    response = kube.raw("GET", "/api/v1/namespaces/booking", auth=False)
    assert response.status == 200 and json.loads(response.data)["metadata"]["name"] == "booking"


def test_a_request_without_credentials_is_401_when_anonymous_is_off(tmp_path_factory):
    strict = start_server(tmp_path_factory, allow_anonymous=False)
    try:
        status, body = api_error(lambda: strict.raw("GET", "/api/v1/namespaces", auth=False))
        assert (status, body["reason"]) == (401, "Unauthorized")
        assert strict.core.read_namespace("booking").metadata.name == "booking"
    finally:
        strict.stop()


def test_health_endpoints_need_no_token(kube):
    response = kube.raw("GET", "/readyz", auth=False)
    assert response.status == 200 and response.data == b"ok"


def test_server_side_apply_is_not_emulated(kube):
    status, body = api_error(lambda: kube.raw(
        "PATCH", f"/apis/coordination.k8s.io/v1/namespaces/{CHAOS_NS}/leases/x",
        body="apiVersion: coordination.k8s.io/v1", headers={"Content-Type": "application/apply-patch+yaml"},
    ))
    assert status == 415
    assert body["reason"] == "UnsupportedMediaType"
    assert json.dumps(body).count("application/apply-patch+yaml") == 0
