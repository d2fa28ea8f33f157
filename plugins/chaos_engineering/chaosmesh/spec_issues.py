"""What is wrong in a Chaos Mesh spec: `SpecIssue`, the stable rule ids, and pydantic errors turned into issues."""

from __future__ import annotations

import difflib
import enum
import reprlib
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

SPEC_ROOT = "chaos.spec"


class Rule(str, enum.Enum):
    """Stable rule ids; tests and users match on these, so never rename one."""

    UNKNOWN_FIELD = "unknown-field"
    REQUIRED = "required"
    TYPE = "type"
    ENUM = "enum"
    RANGE = "range"
    FORMAT = "format"
    VALUE_FOR_MODE = "value-for-mode"
    GO_DURATION = "go-duration"
    PERCENT_STRING = "percent-string"
    RATE = "rate"
    BYTE_SIZE = "byte-size"
    ACTION_REQUIRES = "action-requires"
    DIRECTION_TARGET = "direction-target"
    OPERATOR_VALUES = "operator-values"
    INVALID_VALUE = "invalid-value"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class SpecIssue:
    """One broken rule. `field` is a path from `chaos.spec` (`chaos.spec.selector.labelSelectors`);
    list items and map keys are in brackets (`chaos.spec.externalTargets[2]`)."""

    field: str
    rule: str
    message: str

    def __post_init__(self) -> None:
        # Plain str, so issues dump to YAML/JSON as they are (yaml.safe_dump refuses str enums).
        object.__setattr__(self, "rule", Rule(self.rule).value)

    def __str__(self) -> str:
        return f"{self.field}: [{self.rule}] {self.message}"


_shortened = reprlib.Repr()
_shortened.maxstring = 60
_shortened.maxother = 60
_shortened.maxlevel = 2


def shown(value: object) -> str:
    """A short, safe repr of something a user wrote (never recurses deeply, never huge)."""
    return _shortened.repr(value)


def child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def item(path: str, key: object) -> str:
    return f"{path}[{key}]"


def issues_from_validation_error(model: type[BaseModel], error: ValidationError, root: str = SPEC_ROOT) -> list[SpecIssue]:
    """Every error pydantic found in `model`, with a field path under `root` and a message a user
    can act on. Used for Chaos Mesh specs and for our own files (policy, experiment) alike."""
    return [_issue(model, detail, root) for detail in error.errors(include_url=False)]


# --- turning one pydantic error into an issue -------------------------------------------------

# pydantic's own error types that say "this is not the type the CRD declares".
_TYPE_ERRORS = {
    "string_type",
    "int_type",
    "int_parsing",
    "int_from_float",
    "bool_type",
    "bool_parsing",
    "float_type",
    "dict_type",
    "list_type",
    "model_type",
    "model_attributes_type",
    "recursion_loop",
}
_OWN_RULES = {rule.value for rule in Rule}
_RANGE_WORDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "greater than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}


@dataclass(frozen=True)
class _Location:
    path: str
    key: Any  # the last key or index of the location, as the user wrote it
    name: str  # what the user calls the spot, e.g. "mode", "namespaces[0]"
    noun: str  # the same in a sentence: "mode", "entry of namespaces"
    shape: Any  # the declared type at the spot (None when it is not a known field)
    parent: Any  # the declared type that contains it
    bad_key: bool  # pydantic complained about a mapping key, not a value


_LENGTH_ERRORS = {"string_too_short", "string_too_long", "too_short", "too_long"}


def _issue(model: type[BaseModel], detail: dict[str, Any], root: str) -> SpecIssue:
    where = _locate(model, detail["loc"], root)
    kind = detail["type"]
    context = detail.get("ctx") or {}
    if kind in _OWN_RULES and "detail" in context:
        # Raised by our own validators (see scalars.py) with the whole sentence in ctx.
        return SpecIssue(where.path, Rule(kind), context["detail"])
    if kind in ("extra_forbidden", "invalid_key") and not where.bad_key:
        return SpecIssue(where.path, Rule.UNKNOWN_FIELD, _unknown_field_message(where))
    if kind == "missing":
        return SpecIssue(where.path, Rule.REQUIRED, f"{where.name!r} is required here; add it.")
    if kind in ("enum", "literal_error"):
        allowed = ", ".join(_allowed_values(where.shape))
        return SpecIssue(
            where.path, Rule.ENUM, f"{shown(detail['input'])} is not a valid {where.noun}; use one of: {allowed}."
        )
    if kind in _RANGE_WORDS:
        key, words = _RANGE_WORDS[kind]
        return SpecIssue(
            where.path, Rule.RANGE, f"{where.name} must be {words} {detail['ctx'][key]}, got {shown(detail['input'])}."
        )
    if kind in _LENGTH_ERRORS:
        return SpecIssue(where.path, Rule.RANGE, f"{where.name}: {detail['msg'].lower()}.")
    if kind == "string_pattern_mismatch":
        return SpecIssue(where.path, Rule.FORMAT, f"{shown(detail['input'])} is not a valid {where.noun}: it must match {context['pattern']}.")
    if kind == "value_error":
        # Raised by a model's own validator (cron, time zone, cross-references) with the sentence.
        return SpecIssue(where.path, Rule.INVALID_VALUE, str(context.get("error", detail["msg"])))
    if where.bad_key:
        return SpecIssue(where.path, Rule.TYPE, f"map keys must be strings, got {shown(detail['input'])}; quote the key.")
    if kind in _TYPE_ERRORS:
        return SpecIssue(where.path, Rule.TYPE, _type_message(where, detail["input"]))
    return SpecIssue(where.path, Rule.TYPE, f"{where.name}: {detail['msg']}.")


def _locate(model: type[BaseModel], loc: tuple[Any, ...], root: str) -> _Location:
    top = root.rsplit(".", 1)[-1] or "file"
    path, key, name, noun, shape, parent, bad_key = root, None, top, top, model, None, False
    for part in loc:
        if part == "[key]":
            # The key itself is wrong: what it may be is the mapping's key type.
            bad_key = True
            shape = _unwrap(typing.get_args(parent)[0]) if typing.get_origin(parent) is dict else None
            continue
        parent, key = shape, part
        if _is_model(shape) and isinstance(part, str):
            path, name, noun = child(path, part), part, part
            field = shape.model_fields.get(part)
            shape = _unwrap(field.annotation) if field is not None else None
        else:
            path, name, noun = item(path, part), f"{name}[{part}]", f"entry of {name}"
            shape = _element_shape(shape)
    return _Location(path, key, name, noun, shape, parent, bad_key)


def _unwrap(annotation: Any) -> Any:
    """The type under `X | None` and `Annotated[X, ...]`."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = members[0]
        else:
            return annotation


def _element_shape(shape: Any) -> Any:
    """The declared type of a list item or a map value inside `shape`."""
    origin = typing.get_origin(shape)
    if origin is list:
        return _unwrap(typing.get_args(shape)[0])
    if origin is dict:
        return _unwrap(typing.get_args(shape)[1])
    return None


def _is_model(shape: Any) -> bool:
    return isinstance(shape, type) and issubclass(shape, BaseModel)


def _allowed_values(shape: Any) -> list[str]:
    if isinstance(shape, type) and issubclass(shape, enum.Enum):
        return [str(member.value) for member in shape]
    if typing.get_origin(shape) is typing.Literal:
        return [str(value) for value in typing.get_args(shape)]
    return []


def _unknown_field_message(where: _Location) -> str:
    unknown = str(where.key)
    known = sorted(where.parent.model_fields) if _is_model(where.parent) else []
    close = difflib.get_close_matches(unknown, known, n=1, cutoff=0.75)
    if close:
        return f"unknown field {unknown!r}: did you mean {close[0]!r}?"
    return f"unknown field {unknown!r}: the fields allowed here are {', '.join(known)}."


def _type_message(where: _Location, value: Any) -> str:
    expected = _expected_words(where.shape)
    got = "null" if value is None else type(value).__name__
    message = f"{where.name} must be {expected}, got {got}"
    if where.shape is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        # YAML reads 25 as a number; Chaos Mesh declares these fields as strings.
        return f"{message}; quote it, e.g. \"{value}\"."
    return f"{message}."


def _expected_words(shape: Any) -> str:
    if shape is str:
        return "a string"
    if shape is bool:
        return "true or false"
    if shape is int:
        return "a whole number"
    origin = typing.get_origin(shape)
    if origin is list:
        return "a list"
    if origin is dict or _is_model(shape):
        return "a mapping of keys to values"
    return "of the type the CRD declares"
