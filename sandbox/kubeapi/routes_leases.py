"""coordination.k8s.io/v1 Leases: create, get, list, replace, patch, delete with resourceVersion preconditions."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from fastapi import APIRouter, Request

from sandbox.kubeapi.errors import already_exists, bad_request, conflict, invalid, name_mismatch, unprocessable
from sandbox.kubeapi.meta import validate_metadata
from sandbox.kubeapi.patch import BUILTIN_TYPES, apply_patch, patch_type
from sandbox.kubeapi.resources import LEASES
from sandbox.kubeapi.schema import ANY, check, integer, obj, string
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

BASE = "/apis/coordination.k8s.io/v1"
API_VERSION = LEASES.api_version
LEASE_SCHEMA = obj(
    apiVersion=string(),
    kind=string(),
    metadata=ANY,
    spec=obj(
        holderIdentity=string(),
        leaseDurationSeconds=integer(),
        acquireTime=string(),
        renewTime=string(),
        leaseTransitions=integer(),
        preferredHolder=string(),
        strategy=string(),
    ),
)
_MICRO_TIMES = ("acquireTime", "renewTime")


def _micro_time(value: str) -> str:
    """Normalise a MicroTime the way the server re-serialises it (UTC, microseconds, Z)."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(
            f'Lease in version "v1" cannot be handled as a Lease: parsing time "{value}" as '
            '"2006-01-02T15:04:05.000000Z07:00": cannot parse'
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _prepare(request: Request, body: object, namespace: str) -> tuple[dict, dict | None]:
    """Decode, default and validate a Lease body (400 for what cannot decode, 422 for what is invalid)."""
    if not isinstance(body, dict):
        raise bad_request("the body of the request must be a JSON object")
    if body.get("apiVersion", API_VERSION) != API_VERSION or body.get("kind", "Lease") != "Lease":
        found = f"{body.get('apiVersion')}, Kind={body.get('kind')}"
        raise bad_request(f"the object provided is unrecognized (must be of type Lease): {found}")
    lease = {k: v for k, v in body.items() if v is not None}
    lease["spec"] = {k: v for k, v in (lease.get("spec") or {}).items() if v is not None}
    lease["apiVersion"], lease["kind"] = API_VERSION, "Lease"
    meta = lease.setdefault("metadata", {})
    if meta.get("namespace", namespace) != namespace:
        raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
    meta["namespace"] = namespace
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
    _, warnings = unknown_fields(request, LEASE_SCHEMA, lease)
    errors = check(LEASE_SCHEMA, lease, "") + validate_metadata(meta)
    spec = lease["spec"]
    if not errors:
        if spec.get("leaseDurationSeconds", 1) <= 0:
            errors.append(invalid("spec.leaseDurationSeconds", spec["leaseDurationSeconds"], "must be greater than 0"))
        if spec.get("leaseTransitions", 0) < 0:
            transitions = spec["leaseTransitions"]
            errors.append(invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0"))
    if errors:
        raise unprocessable("Lease", LEASES.group, meta.get("name") or "", errors)
    for key in _MICRO_TIMES:
        if key in spec:
            spec[key] = _micro_time(spec[key])
    return lease, warnings


def router(state: ServerState) -> APIRouter:
    routes = APIRouter()
    store = state.store

    async def create(request: Request, namespace: str, body: object):
        state.require_namespace(namespace)
        lease, warnings = _prepare(request, body, namespace)
        lease = store.prepare_new(LEASES, lease)
        if is_dry_run(request):
            if store.exists(LEASES, namespace, lease["metadata"]["name"]):
                raise already_exists(LEASES.plural, LEASES.group, lease["metadata"]["name"])
            return respond(lease, 201, warnings)
        return respond(store.create(LEASES, lease), 201, warnings)

    @routes.get(f"{BASE}/leases")
    async def list_all(request: Request):
        reject_watch(request)
        items = select(request, store.list(LEASES), meta_fields, ("metadata.name", "metadata.namespace"))
        return respond(list_body(request, API_VERSION, "LeaseList", items, store.current_rv()))

    @routes.get(f"{BASE}/namespaces/{{namespace}}/leases")
    async def list_leases(request: Request, namespace: str):
        reject_watch(request)
        items = select(request, store.list(LEASES, namespace), meta_fields, ("metadata.name", "metadata.namespace"))
        return respond(list_body(request, API_VERSION, "LeaseList", items, store.current_rv()))

    @routes.post(f"{BASE}/namespaces/{{namespace}}/leases")
    async def create_lease(request: Request, namespace: str):
        return await create(request, namespace, await read_json(request))

    @routes.get(f"{BASE}/namespaces/{{namespace}}/leases/{{name}}")
    async def get_lease(namespace: str, name: str):
        return respond(store.get(LEASES, namespace, name))

    @routes.put(f"{BASE}/namespaces/{{namespace}}/leases/{{name}}")
    async def replace_lease(request: Request, namespace: str, name: str):
        body = await read_json(request)
        lease, warnings = _prepare(request, body, namespace)
        if lease["metadata"].get("name") != name:
            raise name_mismatch(lease["metadata"].get("name"), name)
        if not store.exists(LEASES, namespace, name):
            # Leases allow create-on-update, but only for a writer that expects nothing to be there.
            if lease["metadata"].get("resourceVersion"):
                raise conflict(LEASES.plural, LEASES.group, name)
            return await create(request, namespace, lease)
        return respond(store.update(LEASES, lease, dry_run=is_dry_run(request)), 200, warnings)

    @routes.patch(f"{BASE}/namespaces/{{namespace}}/leases/{{name}}")
    async def patch_lease(request: Request, namespace: str, name: str):
        patch_type(request.headers.get("content-type"), BUILTIN_TYPES)
        body = await read_json(request)
        current = store.get(LEASES, namespace, name)
        patched = apply_patch(current, body, request.headers.get("content-type"), BUILTIN_TYPES)
        lease, warnings = _prepare(request, patched, namespace)
        if lease["metadata"].get("name") != name:
            error = invalid("metadata.name", lease["metadata"].get("name"), "field is immutable")
            raise unprocessable("Lease", LEASES.group, name, [error])
        return respond(store.update(LEASES, lease, dry_run=is_dry_run(request)), 200, warnings)

    @routes.delete(f"{BASE}/namespaces/{{namespace}}/leases/{{name}}")
    async def delete_lease(request: Request, namespace: str, name: str):
        options = await read_json(request, optional=True)
        preconditions = (options.get("preconditions") if isinstance(options, dict) else None) or {}
        deleted, _ = store.delete(
            LEASES, namespace, name, rv=preconditions.get("resourceVersion"), uid=preconditions.get("uid"),
            dry_run=is_dry_run(request, options),
        )
        return respond({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": LEASES.group, "kind": LEASES.plural, "uid": deleted["metadata"]["uid"]},
        })

    return routes
