"""ChaosMeshHook: Chaos Mesh objects, pods and Leases through the cncf-kubernetes connection."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from kubernetes.client import CoordinationV1Api, CoreV1Api, CustomObjectsApi, V1Lease, V1Pod
from kubernetes.client.exceptions import ApiException

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from airflow.sdk import BaseHook
from chaos_engineering.chaosmesh.constants import GROUP, PLURALS, VERSION, ChaosKind

# Bound every API call: a hung API server must not hang the safety path. Also how long a create
# sent just before an emergency stop's halt may still land: the stop sweeps until this long after
# the halt (emergency.IN_FLIGHT_S).
REQUEST_TIMEOUT_S = 10


class ChaosMeshHook(BaseHook):
    """The verbs this system uses on a cluster, and nothing else (the RBAC derives from them).

    Group, version and plural are explicit: generic resource helpers guess plurals wrongly
    (`podchaoss`). Deleting something already gone is not an error: removal must be idempotent.
    """

    conn_name_attr = "kubernetes_conn_id"
    default_conn_name = "kubernetes_default"
    conn_type = "kubernetes"
    hook_name = "Chaos Mesh (Kubernetes)"

    def __init__(self, kubernetes_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.kubernetes_conn_id = kubernetes_conn_id

    @cached_property
    def kubernetes(self) -> KubernetesHook:
        return KubernetesHook(conn_id=self.kubernetes_conn_id)

    @cached_property
    def custom_objects(self) -> CustomObjectsApi:
        return CustomObjectsApi(self.kubernetes.api_client)

    @cached_property
    def core(self) -> CoreV1Api:
        return CoreV1Api(self.kubernetes.api_client)

    @cached_property
    def coordination(self) -> CoordinationV1Api:
        return CoordinationV1Api(self.kubernetes.api_client)

    # --- Chaos Mesh objects -------------------------------------------------------------------

    def create(self, manifest: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        kind = ChaosKind(manifest["kind"])
        return self.custom_objects.create_namespaced_custom_object(
            GROUP,
            VERSION,
            manifest["metadata"]["namespace"],
            PLURALS[kind],
            manifest,
            dry_run="All" if dry_run else None,
            _request_timeout=REQUEST_TIMEOUT_S,
        )

    def get(self, kind: ChaosKind, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            return self.custom_objects.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS[kind], name, _request_timeout=REQUEST_TIMEOUT_S
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: ChaosKind, namespace: str | None = None, label_selector: str | None = None) -> list[dict[str, Any]]:
        kwargs = {"label_selector": label_selector or "", "_request_timeout": REQUEST_TIMEOUT_S}
        if namespace:
            result = self.custom_objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], **kwargs)
        else:
            result = self.custom_objects.list_cluster_custom_object(GROUP, VERSION, PLURALS[kind], **kwargs)
        return result.get("items", [])

    def delete(self, kind: ChaosKind, name: str, namespace: str) -> bool:
        """Ask for deletion; False when the object was already gone. Chaos Mesh's finalizer
        recovers the fault before the object disappears: `get` shows it until then."""
        try:
            self.custom_objects.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS[kind], name, _request_timeout=REQUEST_TIMEOUT_S
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def patch(self, kind: ChaosKind, name: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.custom_objects.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[kind], name, body, _request_timeout=REQUEST_TIMEOUT_S
        )

    # --- pods -----------------------------------------------------------------------------

    def list_pods(self, namespace: str, label_selector: str = "", field_selector: str = "") -> list[V1Pod]:
        return self.core.list_namespaced_pod(
            namespace, label_selector=label_selector, field_selector=field_selector, _request_timeout=REQUEST_TIMEOUT_S
        ).items

    def get_pod(self, namespace: str, name: str) -> V1Pod | None:
        try:
            return self.core.read_namespaced_pod(name, namespace, _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # --- Leases (the single-experiment lock, the halt flag, heartbeats) ----------------------

    def get_lease(self, name: str, namespace: str) -> V1Lease | None:
        try:
            return self.coordination.read_namespaced_lease(name, namespace, _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_leases(self, label_selector: str = "") -> list[V1Lease]:
        """Leases in every namespace (heartbeats live beside their faults)."""
        return self.coordination.list_lease_for_all_namespaces(label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT_S).items

    def create_lease(self, lease: V1Lease) -> V1Lease:
        return self.coordination.create_namespaced_lease(lease.metadata.namespace, lease, _request_timeout=REQUEST_TIMEOUT_S)

    def replace_lease(self, lease: V1Lease) -> V1Lease:
        """Optimistic update: 409 when `metadata.resourceVersion` is stale."""
        return self.coordination.replace_namespaced_lease(
            lease.metadata.name, lease.metadata.namespace, lease, _request_timeout=REQUEST_TIMEOUT_S
        )

    def delete_lease(self, name: str, namespace: str, resource_version: str) -> bool:
        """Delete only the version we read (409 otherwise); False when it was already gone."""
        try:
            self.coordination.delete_namespaced_lease(
                name,
                namespace,
                body={"preconditions": {"resourceVersion": resource_version}},
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True
