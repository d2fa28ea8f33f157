"""A structural-schema checker: types, enums, patterns, bounds, required and unknown fields, defaults."""

# Its messages are the API server's for a custom resource that breaks its CRD's OpenAPI schema
# ("spec.mode: Unsupported value: ...", "... in body must be of type string"), so the product sees
# the same text as from a cluster.

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sandbox.kubeapi.errors import FieldError, invalid, not_supported, required

_MISSING = object()


@dataclass(frozen=True)
class Node:
    type: str  # object | map | array | string | integer | boolean | any
    properties: Mapping[str, Node] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    items: Node | None = None  # array items, or map values
    enum: tuple[str, ...] = ()
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    default: object = _MISSING


def string(*enum: str, pattern: str | None = None, default: object = _MISSING) -> Node:
    return Node("string", enum=enum, pattern=pattern, default=default)


def integer(minimum: int | None = None, maximum: int | None = None, default: object = _MISSING) -> Node:
    return Node("integer", minimum=minimum, maximum=maximum, default=default)


def boolean() -> Node:
    return Node("boolean")


def array(items: Node) -> Node:
    return Node("array", items=items)


def map_of(values: Node) -> Node:
    return Node("map", items=values)


def obj(*, required: tuple[str, ...] = (), **properties: Node) -> Node:
    return Node("object", properties=properties, required=required)


ANY = Node("any")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_error(path: str, expected: str, value: object) -> FieldError:
    actual = _json_type(value)
    return FieldError("TypeInvalid", path, actual, f'{path} in body must be of type {expected}: "{actual}"')


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check(node: Node, value: object, path: str) -> list[FieldError]:
    """Every violation of `node` by `value`, depth first, in field order."""
    if node.type == "any":
        return []
    expected = "object" if node.type == "map" else node.type
    if _json_type(value) != expected:
        return [_type_error(path, expected, value)]
    if node.type == "string":
        if node.enum and value not in node.enum:
            return [not_supported(path, value, node.enum)]
        if node.pattern and not re.search(node.pattern, value):
            return [invalid(path, value, f"{path} in body should match '{node.pattern}'")]
        return []
    if node.type == "integer":
        if node.minimum is not None and value < node.minimum:
            return [invalid(path, value, f"{path} in body should be greater than or equal to {node.minimum}")]
        if node.maximum is not None and value > node.maximum:
            return [invalid(path, value, f"{path} in body should be less than or equal to {node.maximum}")]
        return []
    if node.type == "array":
        return [e for i, item in enumerate(value) for e in check(node.items, item, f"{path}[{i}]")]
    if node.type == "map":
        return [e for k, item in value.items() for e in check(node.items, item, f"{path}[{k}]")]
    if node.type == "object":
        errors = [required(_join(path, name)) for name in node.required if name not in value]
        for key, item in value.items():
            child = node.properties.get(key)
            if child is None:
                # What a strict decoder says of a field the CRD does not declare.
                errors.append(FieldError("Invalid", _join(path, key), detail="field not declared in schema"))
            else:
                errors += check(child, item, _join(path, key))
        return errors
    return []


def apply_defaults(node: Node, value: object) -> None:
    """Fill CRD `default:` values in place, as the API server does before admission."""
    if node.type == "object" and isinstance(value, dict):
        for key, child in node.properties.items():
            if key not in value and child.default is not _MISSING:
                value[key] = child.default
            if key in value:
                apply_defaults(child, value[key])
    elif node.type == "array" and isinstance(value, list):
        for item in value:
            apply_defaults(node.items, item)
    elif node.type == "map" and isinstance(value, dict):
        for item in value.values():
            apply_defaults(node.items, item)


def prune(node: Node, value: object, path: str = "") -> list[str]:
    """Drop fields the schema does not declare, in place; returns their paths (fieldValidation=Ignore/Warn)."""
    dropped: list[str] = []
    if node.type == "object" and isinstance(value, dict):
        for key in list(value):
            child = node.properties.get(key)
            if child is None:
                dropped.append(_join(path, key))
                del value[key]
            else:
                dropped += prune(child, value[key], _join(path, key))
    elif node.type in ("array", "map") and isinstance(value, (list, dict)):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            dropped += prune(node.items, item, f"{path}[{key}]")
    return dropped
