"""The sandbox-only control endpoint of the API fault table, under a path no Kubernetes client uses."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request

from sandbox.kubeapi.errors import bad_request
from sandbox.kubeapi.faults import CONTROL_PATH, FaultTable
from sandbox.kubeapi.wire import respond


def router(table: FaultTable) -> APIRouter:
    routes = APIRouter()

    @routes.get(CONTROL_PATH)
    async def list_rules():
        return respond({"rules": [rule.as_dict() for rule in table.rules]})

    @routes.post(CONTROL_PATH)
    async def add_rule(request: Request):
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise bad_request(f"the body of POST {CONTROL_PATH} must be one API fault rule as a JSON object: {exc}") from None
        return respond(table.add(body).as_dict(), 201)

    @routes.delete(CONTROL_PATH)
    async def clear():
        return respond({"cleared": table.clear()})

    @routes.delete(f"{CONTROL_PATH}/{{rule_id}}")
    async def remove_rule(rule_id: str):
        return respond(table.remove(rule_id).as_dict())

    return routes
