"""Admission of Chaos Mesh objects: CRD schema, then Chaos Mesh's mutating and validating webhooks."""

# Written from the CRDs and Chaos Mesh's webhook rules, never imported from the product, so the
# product's own validation is checked against an independent implementation.

from __future__ import annotations

from sandbox.kubeapi.errors import FieldError, bad_request, forbidden, invalid, not_supported, required
from sandbox.kubeapi.meta import validate_metadata
from sandbox.kubeapi.resources import CHAOS_API_VERSION, Resource, chaos_object_schema
from sandbox.kubeapi.schema import apply_defaults, check
from sandbox.kubeapi.units import (
    go_atoi,
    go_duration_seconds,
    go_float,
    memory_size,
    rate_bytes_per_second,
)

_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
_HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT")
_NETEM_PARTS = ("delay", "loss", "duplicate", "corrupt", "rate")


def check_type(resource: Resource, body: object) -> None:
    """apiVersion and kind must name this endpoint's resource (400 otherwise, as the server decodes)."""
    if not isinstance(body, dict):
        raise bad_request("the body of the request must be a JSON object")
    if not body.get("kind"):
        raise bad_request(f"Object 'Kind' is missing in '{_short(body)}'")
    if body.get("apiVersion") != CHAOS_API_VERSION:
        raise bad_request(
            f"the API version in the data ({body.get('apiVersion')}) does not match the expected API version "
            f"({CHAOS_API_VERSION})"
        )
    if body["kind"] != resource.kind:
        raise bad_request(
            f"the kind in the data ({body['kind']}) does not match the expected kind ({resource.kind}) "
            f"of resource {resource.plural}.{resource.group}"
        )


def _short(body: dict) -> str:
    text = str(body)
    return text if len(text) < 120 else text[:117] + "..."


def admit(resource: Resource, obj: dict, old: dict | None = None) -> list[FieldError]:
    """Default `obj` in place and return every reason to reject it; `old` is the stored object on update."""
    apply_defaults(chaos_object_schema(resource), obj)
    errors = check(chaos_object_schema(resource), obj, "")
    errors += validate_metadata(obj.get("metadata") or {})
    if errors:
        return errors
    spec = obj["spec"]
    _webhook_defaults(resource, spec, obj["metadata"]["namespace"])
    if old is not None and spec != old.get("spec"):
        # Chaos Mesh's ValidateUpdate: a running experiment's spec never changes under it.
        return [forbidden("spec", "Cannot update chaos spec")]
    return _webhook_validation(resource, spec)


def _webhook_defaults(resource: Resource, spec: dict, namespace: str) -> None:
    """Chaos Mesh's mutating webhook: selector namespaces and NetworkChaos' netem defaults."""
    selector = spec.setdefault("selector", {})
    if not selector.get("namespaces"):
        selector["namespaces"] = [namespace]
    if resource.kind != "NetworkChaos":
        return
    target = spec.get("target")
    if target is not None:
        target_selector = target.setdefault("selector", {})
        if not target_selector.get("namespaces"):
            target_selector["namespaces"] = [namespace]
    spec.setdefault("direction", "to")
    delay = spec.get("delay")
    if delay is not None:
        delay.setdefault("jitter", "0ms")
        delay.setdefault("correlation", "0")
        if delay.get("reorder") is not None:
            delay["reorder"].setdefault("correlation", "0")
    for part in ("loss", "duplicate", "corrupt"):
        if spec.get(part) is not None:
            spec[part].setdefault("correlation", "0")


def _webhook_validation(resource: Resource, spec: dict) -> list[FieldError]:
    errors = _pod_mode(spec.get("mode"), spec.get("value"), "spec.value")
    errors += _selector(spec["selector"], "spec.selector")
    if spec.get("duration") is not None:
        errors += _duration(spec["duration"], "spec.duration", "duration")
    errors += _BY_KIND[resource.kind](spec)
    return errors


def _pod_mode(mode: str, value: str | None, path: str) -> list[FieldError]:
    """ValidatePodMode: fixed needs an integer > 0, the percent modes an integer in (0, 100]."""
    if mode not in ("fixed", "fixed-percent", "random-max-percent"):
        return []
    value = value or ""
    try:
        number = go_atoi(value)
    except ValueError as exc:
        return [invalid(path, value, f"parse value field error:{exc}")]
    if mode == "fixed" and number <= 0:
        return [invalid(path, value, "value must be greater than 0 with mode:fixed")]
    if mode != "fixed" and not 0 < number <= 100:
        return [invalid(path, value, f"value of {number} is invalid, Must be (0,100] with mode:{mode}")]
    return []


def _selector(selector: dict, path: str) -> list[FieldError]:
    errors = []
    for i, expression in enumerate(selector.get("expressionSelectors") or []):
        where = f"{path}.expressionSelectors[{i}]"
        operator, values = expression["operator"], expression.get("values") or []
        if operator not in _OPERATORS:
            errors.append(not_supported(f"{where}.operator", operator, _OPERATORS))
        elif operator in ("In", "NotIn") and not values:
            errors.append(required(f"{where}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif operator in ("Exists", "DoesNotExist") and values:
            detail = "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
            errors.append(forbidden(f"{where}.values", detail))
    for i, phase in enumerate(selector.get("podPhaseSelectors") or []):
        if phase not in _PHASES:
            errors.append(not_supported(f"{path}.podPhaseSelectors[{i}]", phase, _PHASES))
    return errors


def _duration(value: str, path: str, name: str) -> list[FieldError]:
    try:
        go_duration_seconds(value)
    except ValueError as exc:
        return [invalid(path, value, f"parse {name} field error:{exc}")]
    return []


def _float(value: str, path: str, name: str) -> list[FieldError]:
    try:
        go_float(value)
    except ValueError as exc:
        return [invalid(path, value, f"parse {name} field error:{exc}")]
    return []


def _pod_chaos(spec: dict) -> list[FieldError]:
    if spec["action"] == "container-kill" and not spec.get("containerNames"):
        return [required("spec.containerNames", "the name of container is empty on container-kill action")]
    return []


def _network_chaos(spec: dict) -> list[FieldError]:
    action = spec["action"]
    errors = []
    if action in ("delay", "loss", "duplicate", "corrupt", "bandwidth") and spec.get(action) is None:
        errors.append(required(f"spec.{action}", f"the {action} action needs spec.{action}"))
    if action == "netem" and not any(spec.get(part) is not None for part in _NETEM_PARTS):
        errors.append(required("spec", "the netem action needs at least one of delay, loss, duplicate, corrupt, rate"))
    delay = spec.get("delay")
    if delay is not None:
        errors += _duration(delay["latency"], "spec.delay.latency", "latency")
        errors += _duration(delay["jitter"], "spec.delay.jitter", "jitter")
        errors += _float(delay["correlation"], "spec.delay.correlation", "correlation")
        reorder = delay.get("reorder")
        if reorder is not None:
            errors += _float(reorder["reorder"], "spec.delay.reorder.reorder", "reorder")
            errors += _float(reorder["correlation"], "spec.delay.reorder.correlation", "correlation")
    for part in ("loss", "duplicate", "corrupt"):
        if spec.get(part) is not None:
            errors += _float(spec[part][part], f"spec.{part}.{part}", part)
            errors += _float(spec[part]["correlation"], f"spec.{part}.correlation", "correlation")
    for path, holder in (("spec.bandwidth.rate", spec.get("bandwidth")), ("spec.rate.rate", spec.get("rate"))):
        if holder is not None:
            try:
                rate_bytes_per_second(holder["rate"])
            except ValueError as exc:
                errors.append(invalid(path, holder["rate"], f"parse rate field error:{exc}"))
    errors += _network_targets(spec)
    target = spec.get("target")
    if target is not None:
        errors += _pod_mode(target["mode"], target.get("value"), "spec.target.value")
        errors += _selector(target["selector"], "spec.target.selector")
    return errors


def _network_targets(spec: dict) -> list[FieldError]:
    """validateTargets: `from`/`both` need something on the other side (netem actions)."""
    direction = spec["direction"]
    if spec["action"] == "partition" or direction == "to":
        return []
    errors = []
    if spec.get("externalTargets"):
        detail = "external targets cannot be used with `from` and `both` direction in netem action yet"
        errors.append(invalid("spec.direction", direction, detail))
    if spec.get("target") is None:
        detail = "`from` and `both` direction cannot be used when targets is empty in netem action"
        errors.append(invalid("spec.direction", direction, detail))
    return errors


def _stress_chaos(spec: dict) -> list[FieldError]:
    stressors = spec.get("stressors")
    if not spec.get("stressngStressors") and stressors is None:
        return [invalid("spec", "missing stressors", "at least one of stressors or stressngStressors is required")]
    if stressors is None:
        return []
    if not stressors.get("cpu") and not stressors.get("memory"):
        return [invalid("spec.stressors", "missing stressors", "at least one of cpu or memory is required")]
    errors = []
    for name in ("cpu", "memory"):
        stressor = stressors.get(name)
        if stressor is not None and stressor["workers"] <= 0:
            path = f"spec.stressors.{name}.workers"
            errors.append(invalid(path, stressor["workers"], "workers should always be positive"))
    size = (stressors.get("memory") or {}).get("size")
    if size:
        try:
            memory_size(size)
        except ValueError as exc:
            errors.append(invalid("spec.stressors.memory.size", size, f"incorrect bytes format: {exc}"))
    return errors


def _io_chaos(spec: dict) -> list[FieldError]:
    action = spec["action"]
    errors = []
    needs = {"latency": "delay", "fault": "errno", "attrOverride": "attr", "mistake": "mistake"}[action]
    if not spec.get(needs):
        errors.append(required(f"spec.{needs}", f"the {action} action needs spec.{needs}"))
    if spec.get("delay"):
        errors += _duration(spec["delay"], "spec.delay", "delay")
    if not 0 <= spec["percent"] <= 100:
        errors.append(invalid("spec.percent", spec["percent"], "percent must be a number from 0 to 100"))
    return errors


def _http_chaos(spec: dict) -> list[FieldError]:
    errors = []
    port = spec.get("port", 0)
    if port <= 0:
        errors.append(invalid("spec.port", port, f"port {port} is not supported"))
    method = spec.get("method")
    if method is not None and spec["target"] == "Request" and method not in _HTTP_METHODS:
        errors.append(invalid("spec.method", method, f"method {method} is not supported"))
    if spec.get("delay") is not None:
        errors += _duration(spec["delay"], "spec.delay", "delay")
    if not (spec.get("abort") or spec.get("delay") or spec.get("replace") or spec.get("patch")):
        errors.append(required("spec", "an HTTPChaos needs at least one of abort, delay, replace, patch"))
    return errors


_BY_KIND = {
    "PodChaos": _pod_chaos,
    "NetworkChaos": _network_chaos,
    "StressChaos": _stress_chaos,
    "IOChaos": _io_chaos,
    "HTTPChaos": _http_chaos,
}
