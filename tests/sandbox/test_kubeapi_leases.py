"""coordination.k8s.io/v1 Leases through CoordinationV1Api: the optimistic-locking semantics a lock needs."""

from __future__ import annotations

import datetime

import pytest
from kubernetes import client

from tests.sandbox.kubeapi_support import CHAOS_NS, api_error, serve

kube = pytest.fixture(scope="module", name="kube")(serve)


def lease(name: str, holder: str = "worker-1", duration: int = 60, **meta) -> client.V1Lease:
    return client.V1Lease(
        metadata=client.V1ObjectMeta(name=name, **meta),
        spec=client.V1LeaseSpec(
            holder_identity=holder,
            lease_duration_seconds=duration,
            acquire_time=datetime.datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.UTC),
        ),
    )


def test_create_get_list(kube):
    created = kube.coordination.create_namespaced_lease(CHAOS_NS, lease("lock-a", labels={"app": "chaos"}))
    assert created.metadata.uid and created.metadata.resource_version.isdigit()
    assert created.metadata.creation_timestamp is not None
    assert created.spec.acquire_time == datetime.datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.UTC)
    got = kube.coordination.read_namespaced_lease("lock-a", CHAOS_NS)
    assert (got.spec.holder_identity, got.metadata.resource_version) == ("worker-1", created.metadata.resource_version)
    listed = kube.coordination.list_namespaced_lease(CHAOS_NS, label_selector="app=chaos")
    assert [item.metadata.name for item in listed.items] == ["lock-a"]
    everywhere = kube.coordination.list_lease_for_all_namespaces(field_selector="metadata.name=lock-a")
    assert [item.metadata.namespace for item in everywhere.items] == [CHAOS_NS]


def test_create_twice_is_409_already_exists(kube):
    kube.coordination.create_namespaced_lease(CHAOS_NS, lease("lock-b"))
    status, body = api_error(lambda: kube.coordination.create_namespaced_lease(CHAOS_NS, lease("lock-b", "worker-2")))
    assert status == 409
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'leases.coordination.k8s.io "lock-b" already exists'
    assert body["details"] == {"name": "lock-b", "group": "coordination.k8s.io", "kind": "leases"}
    assert kube.coordination.read_namespaced_lease("lock-b", CHAOS_NS).spec.holder_identity == "worker-1"


def test_replace_with_a_stale_resource_version_is_409_conflict(kube):
    first = kube.coordination.create_namespaced_lease(CHAOS_NS, lease("lock-c"))
    first.spec.holder_identity = "worker-2"
    second = kube.coordination.replace_namespaced_lease("lock-c", CHAOS_NS, first)
    assert second.spec.holder_identity == "worker-2"
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)

    first.spec.holder_identity = "worker-3"  # still carries the old resourceVersion
    status, body = api_error(lambda: kube.coordination.replace_namespaced_lease("lock-c", CHAOS_NS, first))
    assert status == 409
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on leases.coordination.k8s.io "lock-c": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert kube.coordination.read_namespaced_lease("lock-c", CHAOS_NS).spec.holder_identity == "worker-2"


def test_patch_honours_a_resource_version_precondition(kube):
    created = kube.coordination.create_namespaced_lease(CHAOS_NS, lease("lock-d"))
    fresh = {"metadata": {"resourceVersion": created.metadata.resource_version}, "spec": {"holderIdentity": "w2"}}
    patched = kube.coordination.patch_namespaced_lease(
        "lock-d", CHAOS_NS, fresh, _content_type="application/merge-patch+json"
    )
    assert patched.spec.holder_identity == "w2" and patched.spec.lease_duration_seconds == 60
    status, body = api_error(lambda: kube.coordination.patch_namespaced_lease(
        "lock-d", CHAOS_NS, {**fresh, "spec": {"holderIdentity": "w3"}}, _content_type="application/merge-patch+json"
    ))
    assert (status, body["reason"]) == (409, "Conflict")
    unconditional = kube.coordination.patch_namespaced_lease("lock-d", CHAOS_NS, {"spec": {"leaseTransitions": 1}})
    assert (unconditional.spec.holder_identity, unconditional.spec.lease_transitions) == ("w2", 1)


def test_delete_with_preconditions(kube):
    created = kube.coordination.create_namespaced_lease(CHAOS_NS, lease("lock-e"))
    stale = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version="1"))
    status, body = api_error(lambda: kube.coordination.delete_namespaced_lease("lock-e", CHAOS_NS, body=stale))
    assert (status, body["reason"]) == (409, "Conflict")
    other_uid = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-the-uid"))
    status, body = api_error(lambda: kube.coordination.delete_namespaced_lease("lock-e", CHAOS_NS, body=other_uid))
    assert status == 409 and "Precondition failed: UID in precondition: not-the-uid" in body["message"]

    current = client.V1DeleteOptions(
        preconditions=client.V1Preconditions(resource_version=created.metadata.resource_version)
    )
    done = kube.coordination.delete_namespaced_lease("lock-e", CHAOS_NS, body=current)
    assert (done.status, done.details.name, done.details.uid) == ("Success", "lock-e", created.metadata.uid)
    status, body = api_error(lambda: kube.coordination.read_namespaced_lease("lock-e", CHAOS_NS))
    assert (status, body["reason"]) == (404, "NotFound")
    status, _ = api_error(lambda: kube.coordination.delete_namespaced_lease("lock-e", CHAOS_NS))
    assert status == 404


def test_replace_of_a_missing_lease_creates_it_unless_a_version_is_expected(kube):
    made = kube.coordination.replace_namespaced_lease("lock-f", CHAOS_NS, lease("lock-f"))
    assert made.metadata.uid
    expected = lease("lock-g")
    expected.metadata.resource_version = "5"
    status, _ = api_error(lambda: kube.coordination.replace_namespaced_lease("lock-g", CHAOS_NS, expected))
    assert status == 409


def test_dry_run_create_stores_nothing(kube):
    answer = kube.coordination.create_namespaced_lease(CHAOS_NS, lease("lock-h"), dry_run="All")
    assert answer.metadata.name == "lock-h"
    status, _ = api_error(lambda: kube.coordination.read_namespaced_lease("lock-h", CHAOS_NS))
    assert status == 404


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (lease("Bad_Name"), "metadata.name", "a lowercase RFC 1123 subdomain"),
        (lease("lock-i", duration=0), "spec.leaseDurationSeconds", "must be greater than 0"),
        ({"metadata": {"name": "lock-j"}, "spec": {"holderIdentity": 7}}, "spec.holderIdentity",
         "must be of type string"),
        ({"metadata": {"name": "lock-k"}, "spec": {"holder": "x"}}, "spec.holder", "field not declared in schema"),
    ],
    ids=["name", "duration", "type", "unknown-field"],
)
def test_invalid_leases_are_422(kube, body, field, message):
    status, answer = api_error(lambda: kube.coordination.create_namespaced_lease(CHAOS_NS, body))
    assert status == 422
    assert answer["reason"] == "Invalid" and answer["details"]["kind"] == "Lease"
    assert answer["details"]["causes"][0]["field"] == field
    assert message in answer["details"]["causes"][0]["message"]


def test_lease_in_a_missing_namespace_is_404(kube):
    status, body = api_error(lambda: kube.coordination.create_namespaced_lease("staging", lease("lock-l")))
    assert status == 404 and body["message"] == 'namespaces "staging" not found'
