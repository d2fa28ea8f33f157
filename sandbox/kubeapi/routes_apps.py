"""apps/v1: the platform's Deployments, read-only (list and get)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from sandbox.kubeapi.deployments import DeploymentView
from sandbox.kubeapi.errors import not_found
from sandbox.kubeapi.resources import DEPLOYMENTS
from sandbox.kubeapi.routes_core import FIELD_LABEL_MESSAGE
from sandbox.kubeapi.state import ServerState
from sandbox.kubeapi.tables import DEPLOYMENT_COLUMNS, deployment_row, respond_printed
from sandbox.kubeapi.wire import list_body, meta_fields, reject_watch, select

BASE = "/apis/apps/v1"
FIELDS = ("metadata.name", "metadata.namespace")


def router(state: ServerState) -> APIRouter:
    routes = APIRouter()
    view = DeploymentView(state.store.next_rv)

    async def deployments(namespace: str | None) -> list[dict]:
        rendered = view.render_all(await state.platform_pods(), state.clock())
        return [d for d in rendered if namespace in (None, d["metadata"]["namespace"])]

    async def deployment_list(request: Request, namespace: str | None):
        reject_watch(request)
        chosen = select(request, await deployments(namespace), meta_fields, FIELDS, FIELD_LABEL_MESSAGE)
        body = list_body(request, DEPLOYMENTS.api_version, "DeploymentList", chosen, state.store.current_rv())
        return respond_printed(request, body, DEPLOYMENT_COLUMNS, deployment_row, state.clock())

    @routes.get(f"{BASE}/deployments")
    async def list_all(request: Request):
        return await deployment_list(request, None)

    @routes.get(f"{BASE}/namespaces/{{namespace}}/deployments")
    async def list_namespaced(request: Request, namespace: str):
        return await deployment_list(request, namespace)

    @routes.get(f"{BASE}/namespaces/{{namespace}}/deployments/{{name}}")
    async def get(request: Request, namespace: str, name: str):
        for deployment in await deployments(namespace):
            if deployment["metadata"]["name"] == name:
                return respond_printed(request, deployment, DEPLOYMENT_COLUMNS, deployment_row, state.clock())
        raise not_found(DEPLOYMENTS.plural, DEPLOYMENTS.group, name)

    return routes
