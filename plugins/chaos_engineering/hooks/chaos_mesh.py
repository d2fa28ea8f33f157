"""ChaosMeshHook: Chaos Mesh objects, pods and Leases through the cncf-kubernetes connection."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from kubernetes.client import ApiClient, CoordinationV1Api, CoreV1Api, CustomObjectsApi, V1Lease, V1Pod
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from airflow.sdk import BaseHook
from chaos_engineering.chaosmesh.constants import GROUP, PLURALS, VERSION, ChaosKind
from chaos_engineering.hooks.http import Deadline, enforce_deadlines

# Bound every API call, in total (connect, request, the whole answer): a hung API server must not
# hang the safety path. Also how long a create sent just before an emergency stop's halt may
# still land: the stop sweeps until this long after the halt (emergency.IN_FLIGHT_S), so a
# caller may shorten it, never lengthen it.
REQUEST_TIMEOUT_S = 10

#: Tries of a Lease write that keeps answering 409 (write_lease, delete_lease_while, an injection claim), each after reading it again.
LEASE_CONFLICT_ATTEMPTS = 5


class KubernetesRequestError(RuntimeError):
    """A call that got no complete answer from the API server: its deadline passed, or the
    connection failed. The message names the call (verb, kind, namespace/name)."""


class KubernetesApiError(ApiException):
    """The API server answered with an error. `status`, `reason`, `body` and `headers` are the
    Kubernetes client's (callers test `status`); the message also names the call."""

    def __init__(self, call: str, cause: ApiException) -> None:
        super().__init__(status=cause.status, reason=cause.reason)
        self.body, self.headers, self.call = cause.body, cause.headers, call

    def __str__(self) -> str:
        body = self.body.decode(errors="replace") if isinstance(self.body, bytes) else self.body or ""
        try:  # a Kubernetes Status object says what went wrong in `message`
            detail = json.loads(body).get("message") or body
        except (ValueError, AttributeError):
            detail = body
        detail = " ".join(str(detail).split())[:300]
        return f"{self.call}: HTTP {self.status} {self.reason}" + (f": {detail}" if detail else "")


class ChaosMeshHook(BaseHook):
    """The verbs this system uses on a cluster, and nothing else (the RBAC derives from them).

    Group, version and plural are explicit: generic resource helpers guess plurals wrongly
    (`podchaoss`). Deleting something already gone is not an error: removal must be idempotent.

    Every call has one total deadline, `request_timeout` seconds (at most `REQUEST_TIMEOUT_S`)
    for connect, request and the whole answer however slowly it comes, and is tried once: the
    Kubernetes client's urllib3 retries (3 by default, each with the full timeout) are off. A
    call past its deadline, or whose connection fails, raises `KubernetesRequestError`; an error
    answer raises `KubernetesApiError` (an `ApiException`). Both name the call.
    """

    conn_name_attr = "kubernetes_conn_id"
    default_conn_name = "kubernetes_default"
    conn_type = "kubernetes"
    hook_name = "Chaos Mesh (Kubernetes)"

    def __init__(self, kubernetes_conn_id: str = default_conn_name, request_timeout: float = REQUEST_TIMEOUT_S) -> None:
        super().__init__()
        if not 0 < request_timeout <= REQUEST_TIMEOUT_S:
            raise ValueError(
                f"request_timeout must be more than 0 and at most {REQUEST_TIMEOUT_S} s (REQUEST_TIMEOUT_S: the emergency "
                f"stop's in-flight bound), not {request_timeout!r}"
            )
        self.kubernetes_conn_id = kubernetes_conn_id
        self.request_timeout = request_timeout

    @cached_property
    def kubernetes(self) -> KubernetesHook:
        return KubernetesHook(conn_id=self.kubernetes_conn_id)

    @cached_property
    def api_client(self) -> ApiClient:
        """The connection's client, on a configuration of its own with urllib3 retries off and
        deadlines enforced on its connections."""
        configuration = self.kubernetes.api_client.configuration  # a copy, private to this client
        configuration.retries = False
        api_client = ApiClient(configuration)
        enforce_deadlines(api_client.rest_client.pool_manager)
        return api_client

    @cached_property
    def custom_objects(self) -> CustomObjectsApi:
        return CustomObjectsApi(self.api_client)

    @cached_property
    def core(self) -> CoreV1Api:
        return CoreV1Api(self.api_client)

    @cached_property
    def coordination(self) -> CoordinationV1Api:
        return CoordinationV1Api(self.api_client)

    @contextmanager
    def _request(self, verb: str, kind: str, namespace: str | None = None, name: str | None = None) -> Iterator[float]:
        """Run one call under the deadline; yields the timeout to pass as `_request_timeout`."""
        call = f"{verb} {kind} {namespace or '*'}/{name}" if name else f"{verb} {kind} in {namespace or 'every namespace'}"
        with Deadline(self.request_timeout) as deadline:
            try:
                yield deadline.remaining()
            except KubernetesApiError:
                raise
            except ApiException as exc:
                raise KubernetesApiError(call, exc) from exc
            except (HTTPError, http.client.HTTPException, OSError) as exc:
                if deadline.expired or deadline.passed:  # cut short, or urllib3's own timeout at the deadline
                    raise KubernetesRequestError(
                        f"{call}: no complete answer from the Kubernetes API within the {self.request_timeout:g} s deadline"
                    ) from exc
                raise KubernetesRequestError(f"{call} failed: {type(exc).__name__}: {exc}") from exc

    # --- Chaos Mesh objects -------------------------------------------------------------------

    def create(self, manifest: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        kind = ChaosKind(manifest["kind"])
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"].get("name")
        with self._request("create (dry run)" if dry_run else "create", kind.value, namespace, name) as timeout:
            return self.custom_objects.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS[kind], manifest, dry_run="All" if dry_run else None, _request_timeout=timeout
            )

    def get(self, kind: ChaosKind, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            with self._request("get", ChaosKind(kind).value, namespace, name) as timeout:
                return self.custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], name, _request_timeout=timeout)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: ChaosKind, namespace: str | None = None, label_selector: str | None = None) -> list[dict[str, Any]]:
        with self._request("list", ChaosKind(kind).value, namespace) as timeout:
            kwargs = {"label_selector": label_selector or "", "_request_timeout": timeout}
            if namespace:
                result = self.custom_objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], **kwargs)
            else:
                result = self.custom_objects.list_cluster_custom_object(GROUP, VERSION, PLURALS[kind], **kwargs)
        return result.get("items", [])

    def delete(self, kind: ChaosKind, name: str, namespace: str) -> bool:
        """Ask for deletion; False when the object was already gone. Chaos Mesh's finalizer
        recovers the fault before the object disappears: `get` shows it until then."""
        try:
            with self._request("delete", ChaosKind(kind).value, namespace, name) as timeout:
                self.custom_objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], name, _request_timeout=timeout)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def patch(self, kind: ChaosKind, name: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._request("patch", ChaosKind(kind).value, namespace, name) as timeout:
            return self.custom_objects.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS[kind], name, body, _request_timeout=timeout
            )

    # --- pods -----------------------------------------------------------------------------

    def list_pods(self, namespace: str, label_selector: str = "", field_selector: str = "") -> list[V1Pod]:
        with self._request("list", "Pod", namespace) as timeout:
            return self.core.list_namespaced_pod(
                namespace, label_selector=label_selector, field_selector=field_selector, _request_timeout=timeout
            ).items

    def get_pod(self, namespace: str, name: str) -> V1Pod | None:
        try:
            with self._request("get", "Pod", namespace, name) as timeout:
                return self.core.read_namespaced_pod(name, namespace, _request_timeout=timeout)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # --- Leases (the single-experiment lock, the halt flag, heartbeats) ----------------------

    def get_lease(self, name: str, namespace: str) -> V1Lease | None:
        try:
            with self._request("get", "Lease", namespace, name) as timeout:
                return self.coordination.read_namespaced_lease(name, namespace, _request_timeout=timeout)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_leases(self, label_selector: str = "") -> list[V1Lease]:
        """Leases in every namespace (heartbeats live beside their faults)."""
        with self._request("list", "Lease") as timeout:
            return self.coordination.list_lease_for_all_namespaces(label_selector=label_selector, _request_timeout=timeout).items

    def create_lease(self, lease: V1Lease) -> V1Lease:
        with self._request("create", "Lease", lease.metadata.namespace, lease.metadata.name) as timeout:
            return self.coordination.create_namespaced_lease(lease.metadata.namespace, lease, _request_timeout=timeout)

    def replace_lease(self, lease: V1Lease) -> V1Lease:
        """Optimistic update: 409 when `metadata.resourceVersion` is stale."""
        with self._request("replace", "Lease", lease.metadata.namespace, lease.metadata.name) as timeout:
            return self.coordination.replace_namespaced_lease(lease.metadata.name, lease.metadata.namespace, lease, _request_timeout=timeout)

    def delete_lease(self, name: str, namespace: str, resource_version: str) -> bool:
        """Delete only the version we read (409 otherwise); False when it was already gone."""
        try:
            with self._request("delete", "Lease", namespace, name) as timeout:
                self.coordination.delete_namespaced_lease(
                    name, namespace, body={"preconditions": {"resourceVersion": resource_version}}, _request_timeout=timeout
                )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def write_lease(self, name: str, namespace: str, build: Callable[[V1Lease | None], V1Lease]) -> V1Lease:
        """Create the Lease, or replace it, with `build(the Lease as read, or None)`; returns it as
        written. A 409 (written by someone else between the read and the write, or an API server
        that said so wrongly) reads it again and builds again, up to LEASE_CONFLICT_ATTEMPTS
        writes; then the 409 is raised."""
        for attempt in range(LEASE_CONFLICT_ATTEMPTS):
            lease = self.get_lease(name, namespace)
            body = build(lease)
            try:
                return self.replace_lease(body) if lease else self.create_lease(body)
            except ApiException as exc:
                if exc.status != 409 or attempt == LEASE_CONFLICT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def delete_lease_while(self, name: str, namespace: str, ours: Callable[[V1Lease], bool]) -> bool:
        """Delete the Lease while `ours(lease)` holds of what is read: True when deleted, False
        when it is gone or no longer ours. A 409 (the Lease changed between the read and the
        delete, or an API server that said so wrongly) reads it again and judges again, up to
        LEASE_CONFLICT_ATTEMPTS deletes; still ours after the last one was refused, the 409 is
        raised: a Lease of ours is never left behind as if it were someone else's."""
        refused: ApiException | None = None
        for attempt in range(LEASE_CONFLICT_ATTEMPTS + 1):
            lease = self.get_lease(name, namespace)
            if lease is None or not ours(lease):
                return False
            if attempt == LEASE_CONFLICT_ATTEMPTS:
                raise refused  # ours still, after every delete was refused
            try:
                return self.delete_lease(name, namespace, lease.metadata.resource_version)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                refused = exc
        raise AssertionError("unreachable")
