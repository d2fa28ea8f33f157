"""core/v1: namespaces (read-only) and the platform's pods (list, get, delete, relabel by patch)."""

from __future__ import annotations

import asyncio
import copy

from fastapi import APIRouter, Request

from sandbox.kubeapi.errors import forbidden, not_found, unprocessable
from sandbox.kubeapi.meta import rfc3339, validate_labels
from sandbox.kubeapi.patch import BUILTIN_TYPES, apply_patch, patch_type
from sandbox.kubeapi.resources import PODS
from sandbox.kubeapi.state import ServerState
from sandbox.kubeapi.tables import POD_COLUMNS, pod_row, respond_printed
from sandbox.kubeapi.wire import is_dry_run, list_body, meta_fields, read_json, reject_watch, respond, select
from sandbox.platform.effects import PodInfo, PodRef

POD_FIELDS = ("metadata.name", "metadata.namespace", "status.phase", "spec.nodeName")
NAMESPACE_FIELDS = ("metadata.name",)
FIELD_LABEL_MESSAGE = "field label not supported: {path}"


def router(state: ServerState) -> APIRouter:
    routes = APIRouter()

    async def find_pod(namespace: str, name: str) -> PodInfo:
        for pod in await state.platform_pods():
            if pod.namespace == namespace and pod.name == name:
                return pod
        raise not_found("pods", "", name)

    async def pod_list(request: Request, namespace: str | None):
        reject_watch(request)
        pods = [state.pods.render(p) for p in await state.platform_pods() if namespace in (None, p.namespace)]
        pods.sort(key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]))
        chosen = select(request, pods, _rendered_pod_fields, POD_FIELDS, FIELD_LABEL_MESSAGE)
        body = list_body(request, "v1", "PodList", chosen, state.store.current_rv())
        return respond_printed(request, body, POD_COLUMNS, pod_row, state.clock())

    @routes.get("/api/v1/namespaces")
    async def list_namespaces(request: Request):
        reject_watch(request)
        items = select(request, list(state.namespaces.values()), meta_fields, NAMESPACE_FIELDS, FIELD_LABEL_MESSAGE)
        return respond(list_body(request, "v1", "NamespaceList", items, state.store.current_rv()))

    @routes.get("/api/v1/namespaces/{name}")
    async def get_namespace(name: str):
        state.require_namespace(name)
        return respond(state.namespaces[name])

    @routes.get("/api/v1/pods")
    async def list_all_pods(request: Request):
        return await pod_list(request, None)

    @routes.get("/api/v1/namespaces/{namespace}/pods")
    async def list_pods(request: Request, namespace: str):
        return await pod_list(request, namespace)

    @routes.get("/api/v1/namespaces/{namespace}/pods/{name}")
    async def get_pod(request: Request, namespace: str, name: str):
        pod = state.pods.render(await find_pod(namespace, name))
        return respond_printed(request, pod, POD_COLUMNS, pod_row, state.clock())

    @routes.delete("/api/v1/namespaces/{namespace}/pods/{name}")
    async def delete_pod(request: Request, namespace: str, name: str):
        options = await read_json(request, optional=True)
        rendered = state.pods.render(await find_pod(namespace, name))
        preconditions = (options.get("preconditions") if isinstance(options, dict) else None) or {}
        state.store.check_preconditions(
            PODS, rendered, preconditions.get("resourceVersion"), preconditions.get("uid")
        )
        if is_dry_run(request, options):
            return respond(rendered)
        try:
            await asyncio.to_thread(state.platform.delete_pod, PodRef(namespace, name))
        except LookupError:  # it died between our look-up and the delete
            raise not_found("pods", "", name) from None
        rendered["metadata"]["deletionTimestamp"] = rfc3339(state.clock())
        rendered["metadata"]["deletionGracePeriodSeconds"] = 0
        return respond(rendered)

    @routes.patch("/api/v1/namespaces/{namespace}/pods/{name}")
    async def patch_pod(request: Request, namespace: str, name: str):
        patch_type(request.headers.get("content-type"), BUILTIN_TYPES)
        body = await read_json(request)
        current = state.pods.render(await find_pod(namespace, name))
        patched = apply_patch(current, body, request.headers.get("content-type"), BUILTIN_TYPES)
        state.store.check_preconditions(PODS, current, patched["metadata"].get("resourceVersion"), None)
        labels = patched["metadata"].get("labels") or {}
        unchanged = copy.deepcopy(patched)
        unchanged["metadata"]["labels"] = current["metadata"]["labels"]
        if unchanged != current:
            # The sandbox's pods are the platform's; only their labels are the API's to change.
            error = forbidden("spec", "the sandbox API server only patches a pod's metadata.labels")
            raise unprocessable("Pod", "", name, [error])
        errors = validate_labels(labels)
        if errors:
            raise unprocessable("Pod", "", name, errors)
        if is_dry_run(request):
            return respond(patched)
        if labels == current["metadata"]["labels"]:
            return respond(current)
        try:
            await asyncio.to_thread(state.platform.set_labels, PodRef(namespace, name), dict(labels))
        except LookupError:
            raise not_found("pods", "", name) from None
        return respond(state.pods.render(await find_pod(namespace, name)))

    return routes


def _rendered_pod_fields(pod: dict) -> dict[str, str]:
    return {
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"]["namespace"],
        "status.phase": pod["status"]["phase"],
        "spec.nodeName": pod["spec"]["nodeName"],
    }
