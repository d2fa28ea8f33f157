"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge on plain maps."""

from __future__ import annotations

import copy

from sandbox.kubeapi.errors import ApiError, bad_request, unsupported_media_type

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"

# Custom resources have no strategic-merge metadata, so the real server refuses that type for them.
CUSTOM_RESOURCE_TYPES = (JSON_PATCH, MERGE)
BUILTIN_TYPES = (JSON_PATCH, MERGE, STRATEGIC)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def merge_patch(target: object, patch: object) -> object:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: object, parts: list[str], path: str) -> tuple[object, str]:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ValueError(f"doc is missing path: {path}")
    return node, parts[-1]


def _get(doc: object, path: str) -> object:
    parts = _pointer(path)
    if not parts:
        return doc
    parent, key = _parent(doc, parts, path)
    if isinstance(parent, dict) and key in parent:
        return parent[key]
    if isinstance(parent, list) and key.isdigit() and int(key) < len(parent):
        return parent[int(key)]
    raise ValueError(f"doc is missing path: {path}")


def _remove(doc: object, path: str) -> object:
    parent, key = _parent(doc, _pointer(path), path)
    if isinstance(parent, dict) and key in parent:
        return parent.pop(key)
    if isinstance(parent, list) and key.isdigit() and int(key) < len(parent):
        return parent.pop(int(key))
    raise ValueError(f"doc is missing path: {path}")


def _add(doc: object, path: str, value: object) -> object:
    parts = _pointer(path)
    if not parts:
        return value
    parent, key = _parent(doc, parts, path)
    if isinstance(parent, dict):
        parent[key] = value
    elif isinstance(parent, list) and (key == "-" or (key.isdigit() and int(key) <= len(parent))):
        parent.insert(len(parent) if key == "-" else int(key), value)
    else:
        raise ValueError(f"doc is missing path: {path}")
    return doc


def json_patch(document: object, operations: object) -> object:
    """Apply RFC 6902 operations; ValueError for an operation that does not apply."""
    doc = copy.deepcopy(document)
    for op in operations:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            if _pointer(path):
                _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            value = _get(doc, op["from"])
            if kind == "move":
                _remove(doc, op["from"])
            doc = _add(doc, path, copy.deepcopy(value))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise ValueError(f"testing value {path} failed: test failed")
        else:
            raise ValueError(f"Unexpected kind: {kind}")
    return doc


def patch_type(content_type: str | None, accepted: tuple[str, ...]) -> str:
    """The patch type of a request, checked first as the API server does (415 before any look-up)."""
    kind = media_type(content_type)
    if kind not in accepted:
        raise unsupported_media_type(accepted)
    return kind


def apply_patch(document: dict, body: object, content_type: str | None, accepted: tuple[str, ...]) -> dict:
    """The patched document, or an ApiError shaped as the API server answers a bad patch."""
    kind = patch_type(content_type, accepted)
    if kind == JSON_PATCH:
        if not isinstance(body, list) or not all(isinstance(op, dict) for op in body):
            raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        try:
            patched = json_patch(document, body)
        except (ValueError, KeyError) as exc:
            raise ApiError(422, "Invalid", str(exc)) from None
    else:
        # Strategic merge on the maps these resources carry (labels, annotations, spec) is a merge.
        if not isinstance(body, dict):
            raise bad_request("the patch body must be a JSON object for " + kind)
        patched = merge_patch(document, body)
    if not isinstance(patched, dict):
        raise bad_request("the patched object must be a JSON object")
    return patched
