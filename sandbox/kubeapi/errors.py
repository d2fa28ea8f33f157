"""Kubernetes `Status` failure bodies, field errors, and the ApiError the routes raise to send them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

# Field error types as k8s.io/apimachinery/pkg/util/validation/field names them:
# (text in messages, cause reason in Status.details.causes).
_ERROR_TYPES = {
    "Required": ("Required value", "FieldValueRequired"),
    "Invalid": ("Invalid value", "FieldValueInvalid"),
    "TypeInvalid": ("Invalid value", "FieldValueTypeInvalid"),
    "NotSupported": ("Unsupported value", "FieldValueNotSupported"),
    "Forbidden": ("Forbidden", "FieldValueForbidden"),
    "Duplicate": ("Duplicate value", "FieldValueDuplicate"),
}

OMIT = object()  # a field error that prints no value, like field.OmitValueType


def go_value(value: object) -> str:
    """A value the way apimachinery prints a bad value: strings quoted, the rest as JSON."""
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class FieldError:
    type: str
    field: str
    value: object = OMIT
    detail: str = ""
    supported: tuple[str, ...] = ()

    def body(self) -> str:
        text, _ = _ERROR_TYPES[self.type]
        if self.type not in ("Required", "Forbidden") and self.value is not OMIT:
            text = f"{text}: {go_value(self.value)}"
        detail = self.detail
        if self.type == "NotSupported" and self.supported:
            detail = "supported values: " + ", ".join(json.dumps(s) for s in self.supported)
        return f"{text}: {detail}" if detail else text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> dict:
        return {"reason": _ERROR_TYPES[self.type][1], "message": self.body(), "field": self.field}


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("Required", path, detail=detail)


def invalid(path: str, value: object, detail: str) -> FieldError:
    return FieldError("Invalid", path, value, detail)


def not_supported(path: str, value: object, supported: tuple[str, ...]) -> FieldError:
    return FieldError("NotSupported", path, value, supported=tuple(supported))


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("Forbidden", path, detail=detail)


@dataclass
class ApiError(Exception):
    code: int
    reason: str
    message: str
    details: dict | None = field(default=None)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def _details(name: str, group: str, kind: str) -> dict:
    return {k: v for k, v in (("name", name), ("group", group), ("kind", kind)) if v}


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_qualified(plural, group)} "{name}" not found', _details(name, group, plural))


def already_exists(plural: str, group: str, name: str) -> ApiError:
    message = f'{_qualified(plural, group)} "{name}" already exists'
    return ApiError(409, "AlreadyExists", message, _details(name, group, plural))


STALE_OBJECT = "the object has been modified; please apply your changes to the latest version and try again"


def conflict(plural: str, group: str, name: str, why: str = STALE_OBJECT) -> ApiError:
    message = f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": {why}'
    return ApiError(409, "Conflict", message, _details(name, group, plural))


def unprocessable(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    listed = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
    details = _details(name, group, kind) | {"causes": [e.cause() for e in errors]}
    return ApiError(422, "Invalid", f'{_qualified(kind, group)} "{name}" is invalid: {listed}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def name_mismatch(in_body: object, in_url: str) -> ApiError:
    return bad_request(f"the name of the object ({in_body}) does not match the name on the URL ({in_url})")


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message, {})


def unsupported_media_type(accepted: tuple[str, ...]) -> ApiError:
    message = "the body of the request was in an unknown format - accepted media types include: " + ", ".join(accepted)
    return ApiError(415, "UnsupportedMediaType", message, {})


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})
