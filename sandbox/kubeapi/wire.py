"""Request and response plumbing shared by the routes: JSON bodies, query options, lists, Status."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

from fastapi import Request
from fastapi.responses import JSONResponse

from sandbox.kubeapi.errors import ApiError, bad_request, method_not_allowed
from sandbox.kubeapi.schema import Node, prune
from sandbox.kubeapi.selectors import (
    FieldTerm,
    Requirement,
    SelectorError,
    matches_all,
    parse_field_selector,
    parse_label_selector,
)

CR_FIELD_MESSAGE = '"{path}" is not a known field selector: only "metadata.name", "metadata.namespace"'


def respond(body: dict, status: int = 200, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def status_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.status(), status_code=error.code)


async def read_json(request: Request, *, optional: bool = False) -> object:
    raw = await request.body()
    if not raw.strip():
        if optional:
            return None
        raise bad_request("the request body is empty; expected a JSON object")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None


def is_dry_run(request: Request, body: object = None) -> bool:
    values = request.query_params.getlist("dryRun")
    if isinstance(body, dict) and isinstance(body.get("dryRun"), list):
        values += body["dryRun"]
    for value in values:
        if value != "All":
            raise bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    return bool(values)


def reject_watch(request: Request) -> None:
    if request.query_params.get("watch") in ("true", "1", "True"):
        raise method_not_allowed("watch is not supported by the sandbox API server; poll with list instead")


def label_selector(request: Request) -> tuple[Requirement, ...]:
    try:
        return parse_label_selector(request.query_params.get("labelSelector"))
    except SelectorError as exc:
        raise bad_request(str(exc)) from None


def field_selector(
    request: Request, supported: tuple[str, ...], message: str = CR_FIELD_MESSAGE
) -> tuple[FieldTerm, ...]:
    try:
        return parse_field_selector(request.query_params.get("fieldSelector"), supported, message)
    except SelectorError as exc:
        raise bad_request(str(exc)) from None


def select(
    request: Request, items: list[dict], fields_of: Callable[[dict], dict[str, str]], supported: tuple[str, ...],
    message: str = CR_FIELD_MESSAGE,
) -> list[dict]:
    labels = label_selector(request)
    terms = field_selector(request, supported, message)
    return [
        item for item in items
        if matches_all(labels, item["metadata"].get("labels")) and all(t.matches(fields_of(item)) for t in terms)
    ]


def meta_fields(item: dict) -> dict[str, str]:
    return {"metadata.name": item["metadata"]["name"], "metadata.namespace": item["metadata"].get("namespace", "")}


def list_body(request: Request, api_version: str, kind: str, items: list[dict], resource_version: str) -> dict:
    """A List with `limit`/`continue` paging (the continue token is an opaque offset)."""
    start = 0
    token = request.query_params.get("continue")
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode())
        except ValueError:
            message = "The provided continue parameter is too old to display a consistent list result."
            raise ApiError(410, "Expired", message) from None
    limit_text = request.query_params.get("limit")
    limit = int(limit_text) if limit_text and limit_text.isdigit() and int(limit_text) > 0 else None
    page = items[start:start + limit] if limit else items[start:]
    metadata = {"resourceVersion": resource_version}
    if limit and start + limit < len(items):
        metadata["continue"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
        metadata["remainingItemCount"] = len(items) - start - limit
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, "items": page}


def unknown_fields(request: Request, schema: Node, obj: dict) -> tuple[list[str], dict | None]:
    """Apply `fieldValidation`: Strict (the sandbox default) leaves unknown fields for admission to
    reject; Ignore and Warn drop them (Warn also answers with Warning headers, as the API server does)."""
    mode = request.query_params.get("fieldValidation", "Strict")
    if mode not in ("Strict", "Warn", "Ignore"):
        raise bad_request(f'fieldValidation: Unsupported value: "{mode}": supported values: "Ignore", "Strict", "Warn"')
    if mode == "Strict":
        return [], None
    dropped = prune(schema, obj)
    if mode == "Ignore" or not dropped:
        return dropped, None
    return dropped, {"Warning": ", ".join(f'299 - "unknown field \\"{path}\\""' for path in dropped)}
