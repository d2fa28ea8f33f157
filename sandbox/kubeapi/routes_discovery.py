"""Version, health and API discovery (/version, /api, /apis, and each group/version's resource list)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from sandbox.kubeapi.errors import path_not_found
from sandbox.kubeapi.resources import CHAOS_KINDS, DEPLOYMENTS, LEASES, NAMESPACES, PODS, Resource
from sandbox.kubeapi.wire import respond

KUBERNETES_VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-sandbox"}

# group -> version -> resources; the core group is "".
_GROUPS: dict[str, dict[str, tuple[Resource, ...]]] = {
    "": {"v1": (NAMESPACES, PODS)},
    DEPLOYMENTS.group: {DEPLOYMENTS.version: (DEPLOYMENTS,)},
    LEASES.group: {LEASES.version: (LEASES,)},
    "chaos-mesh.org": {"v1alpha1": tuple(CHAOS_KINDS.values())},
}


def _group_entry(group: str) -> dict:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in _GROUPS[group]]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def _resource_list(group: str, version: str) -> dict:
    resources = _GROUPS.get(group, {}).get(version)
    if resources is None:
        raise path_not_found()
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [r.discovery() for r in resources],
    }


def router() -> APIRouter:
    routes = APIRouter()

    @routes.get("/version")
    async def version() -> dict:
        return {
            **KUBERNETES_VERSION,
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2024-08-13T00:00:00Z",
            "goVersion": "go1.22.5",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    @routes.get("/healthz", response_class=PlainTextResponse)
    @routes.get("/livez", response_class=PlainTextResponse)
    @routes.get("/readyz", response_class=PlainTextResponse)
    async def health() -> str:
        return "ok"

    @routes.get("/api")
    async def core_versions(request: Request):
        server = f"{request.url.hostname}:{request.url.port}"
        return respond({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}],
        })

    @routes.get("/api/v1")
    async def core_resources():
        return respond(_resource_list("", "v1"))

    @routes.get("/apis")
    async def groups():
        return respond({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [_group_entry(g) for g in _GROUPS if g],
        })

    @routes.get("/apis/{group}")
    async def group(group: str):
        if not group or group not in _GROUPS:
            raise path_not_found()
        return respond({"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group)})

    @routes.get("/apis/{group}/{version}")
    async def group_resources(group: str, version: str):
        if not group:
            raise path_not_found()
        return respond(_resource_list(group, version))

    return routes
