"""chaos-mesh.org/v1alpha1: the five chaos kinds, with admission, dryRun=All and finalizer-driven deletion."""

from __future__ import annotations

import copy
import secrets

from fastapi import APIRouter, Request

from sandbox.kubeapi.admission import admit, check_type
from sandbox.kubeapi.errors import (
    already_exists,
    bad_request,
    invalid,
    name_mismatch,
    path_not_found,
    unprocessable,
)
from sandbox.kubeapi.patch import CUSTOM_RESOURCE_TYPES, apply_patch, patch_type
from sandbox.kubeapi.resources import CHAOS_API_VERSION, CHAOS_KINDS, RECORDS_FINALIZER, Resource, chaos_object_schema
from sandbox.kubeapi.state import ServerState
from sandbox.kubeapi.wire import (
    is_dry_run,
    list_body,
    meta_fields,
    read_json,
    reject_watch,
    respond,
    select,
    unknown_fields,
)

BASE = "/apis/chaos-mesh.org/v1alpha1"
_CR_FIELDS = ("metadata.name", "metadata.namespace")


def _resource(plural: str) -> Resource:
    resource = CHAOS_KINDS.get(plural)
    if resource is None:
        raise path_not_found()
    return resource


def _admitted(request: Request, resource: Resource, obj: dict, old: dict | None = None) -> tuple[dict, dict | None]:
    """`obj` defaulted and validated, or a 422 carrying every cause at once."""
    _, warnings = unknown_fields(request, chaos_object_schema(resource), obj)
    errors = admit(resource, obj, old)
    if errors:
        raise unprocessable(resource.kind, resource.group, obj["metadata"].get("name") or "", errors)
    return obj, warnings


def _same_namespace(obj: dict, namespace: str) -> None:
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be a JSON object")
    if meta.get("namespace", namespace) != namespace:
        raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
    meta["namespace"] = namespace


def router(state: ServerState) -> APIRouter:
    routes = APIRouter()
    store = state.store

    def listing(request: Request, resource: Resource, namespace: str | None) -> dict:
        reject_watch(request)
        items = select(request, store.list(resource, namespace), meta_fields, _CR_FIELDS)
        return list_body(request, CHAOS_API_VERSION, f"{resource.kind}List", items, store.current_rv())

    @routes.get(f"{BASE}/{{plural}}")
    async def list_all(request: Request, plural: str):
        return respond(listing(request, _resource(plural), None))

    @routes.get(f"{BASE}/namespaces/{{namespace}}/{{plural}}")
    async def list_namespaced(request: Request, namespace: str, plural: str):
        return respond(listing(request, _resource(plural), namespace))

    @routes.post(f"{BASE}/namespaces/{{namespace}}/{{plural}}")
    async def create(request: Request, namespace: str, plural: str):
        resource = _resource(plural)
        body = await read_json(request)
        check_type(resource, body)
        _same_namespace(body, namespace)
        state.require_namespace(namespace)
        meta = body["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        obj = store.prepare_new(resource, body)
        obj.pop("status", None)  # status belongs to the controller
        obj, warnings = _admitted(request, resource, obj)
        if is_dry_run(request):
            # Validated and defaulted like a real create; nothing stored, no controller involved.
            if store.exists(resource, namespace, meta["name"]):
                raise already_exists(resource.plural, resource.group, meta["name"])
            return respond(obj, 201, warnings)
        finalizers = obj["metadata"].setdefault("finalizers", [])
        if RECORDS_FINALIZER not in finalizers:
            finalizers.append(RECORDS_FINALIZER)
        created = store.create(resource, obj)
        state.controller.poke()
        return respond(created, 201, warnings)

    @routes.delete(f"{BASE}/namespaces/{{namespace}}/{{plural}}")
    async def delete_collection(request: Request, namespace: str, plural: str):
        resource = _resource(plural)
        options = await read_json(request, optional=True)
        dry_run = is_dry_run(request, options)
        items = select(request, store.list(resource, namespace), meta_fields, _CR_FIELDS)
        deleted = [store.delete(resource, namespace, i["metadata"]["name"], dry_run=dry_run)[0] for i in items]
        state.controller.poke()
        return respond({"apiVersion": CHAOS_API_VERSION, "kind": f"{resource.kind}List",
                        "metadata": {"resourceVersion": store.current_rv()}, "items": deleted})

    @routes.get(f"{BASE}/namespaces/{{namespace}}/{{plural}}/{{name}}")
    async def get(namespace: str, plural: str, name: str):
        return respond(store.get(_resource(plural), namespace, name))

    async def write(request: Request, resource: Resource, current: dict, new: dict, warnings: dict | None):
        new["status"] = copy.deepcopy(current.get("status"))  # no status subresource: status is the controller's
        if new["status"] is None:
            new.pop("status")
        updated = store.update(resource, new, dry_run=is_dry_run(request))
        state.controller.poke(current["metadata"]["uid"], reselect=True)
        return respond(updated, 200, warnings)

    @routes.put(f"{BASE}/namespaces/{{namespace}}/{{plural}}/{{name}}")
    async def replace(request: Request, namespace: str, plural: str, name: str):
        resource = _resource(plural)
        body = await read_json(request)
        check_type(resource, body)
        _same_namespace(body, namespace)
        if body["metadata"].get("name") != name:
            raise name_mismatch(body["metadata"].get("name"), name)
        current = store.get(resource, namespace, name)
        new, warnings = _admitted(request, resource, body, old=current)
        return await write(request, resource, current, new, warnings)

    @routes.patch(f"{BASE}/namespaces/{{namespace}}/{{plural}}/{{name}}")
    async def patch(request: Request, namespace: str, plural: str, name: str):
        resource = _resource(plural)
        patch_type(request.headers.get("content-type"), CUSTOM_RESOURCE_TYPES)
        body = await read_json(request)
        current = store.get(resource, namespace, name)
        patched = apply_patch(current, body, request.headers.get("content-type"), CUSTOM_RESOURCE_TYPES)
        check_type(resource, patched)
        meta = patched.get("metadata") or {}
        for key, value in (("name", name), ("namespace", namespace)):
            if meta.get(key) != value:
                error = invalid(f"metadata.{key}", meta.get(key), "field is immutable")
                raise unprocessable(resource.kind, resource.group, name, [error])
        new, warnings = _admitted(request, resource, patched, old=current)
        return await write(request, resource, current, new, warnings)

    @routes.delete(f"{BASE}/namespaces/{{namespace}}/{{plural}}/{{name}}")
    async def delete(request: Request, namespace: str, plural: str, name: str):
        resource = _resource(plural)
        options = await read_json(request, optional=True)
        preconditions = (options.get("preconditions") if isinstance(options, dict) else None) or {}
        obj, _ = store.delete(
            resource, namespace, name, rv=preconditions.get("resourceVersion"), uid=preconditions.get("uid"),
            dry_run=is_dry_run(request, options),
        )
        state.controller.poke()
        return respond(obj)

    return routes
