"""ObjectMeta rules the API server enforces: timestamps, names, labels, annotations and finalizers."""

from __future__ import annotations

import re
import time
import uuid

from sandbox.kubeapi.errors import FieldError, invalid, required

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

SUBDOMAIN_RULE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_NAME_RULE = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
    "an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation "
    "is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_VALUE_RULE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


def rfc3339(ts: float) -> str:
    """metav1.Time: whole seconds, UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def micro_time(ts: float) -> str:
    """metav1.MicroTime, as Lease acquireTime/renewTime carry it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1e6):06d}Z"


def new_uid() -> str:
    return str(uuid.uuid4())


def is_subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS1123_SUBDOMAIN.match(name))


def qualified_name_problems(key: str) -> list[str]:
    """Why `key` is not a valid label/annotation key ([prefix/]name), as apimachinery says it."""
    prefix, _, name = key.rpartition("/")
    problems = []
    if "/" in key and not prefix:
        problems.append("prefix part must be non-empty")
    elif prefix and not is_subdomain(prefix):
        problems.append(f"prefix part {SUBDOMAIN_RULE}")
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_NAME.match(name):
        problems.append(_NAME_RULE)
    return problems


def label_value_problems(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not _LABEL_VALUE.match(value):
        problems.append(_VALUE_RULE)
    return problems


def validate_name(name: object, path: str = "metadata.name") -> list[FieldError]:
    if not name:
        return [required(path, "name or generateName is required")]
    if not isinstance(name, str):
        return [invalid(path, name, "must be a string")]
    if not is_subdomain(name):
        return [invalid(path, name, SUBDOMAIN_RULE)]
    return []


def _string_map(value: object, path: str) -> list[FieldError]:
    if value is None:
        return []
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return [invalid(path, value, "must be a map of string keys to string values")]
    return []


def validate_labels(labels: object, path: str = "metadata.labels") -> list[FieldError]:
    errors = _string_map(labels, path)
    if isinstance(labels, dict) and not errors:
        for key, value in labels.items():
            errors += [invalid(path, key, p) for p in qualified_name_problems(key)]
            errors += [invalid(path, value, p) for p in label_value_problems(value)]
    return errors


def validate_metadata(meta: dict) -> list[FieldError]:
    """What ValidateObjectMeta checks for a namespaced object (name, labels, annotations, finalizers)."""
    errors = validate_name(meta.get("name"))
    errors += validate_labels(meta.get("labels"))
    annotations = meta.get("annotations")
    errors += _string_map(annotations, "metadata.annotations")
    if isinstance(annotations, dict):
        for key in annotations:
            errors += [invalid("metadata.annotations", key, p) for p in qualified_name_problems(key)]
    finalizers = meta.get("finalizers")
    if finalizers is not None and (
        not isinstance(finalizers, list) or not all(isinstance(f, str) and f for f in finalizers)
    ):
        errors.append(invalid("metadata.finalizers", finalizers, "must be a list of non-empty strings"))
    return errors
