"""Chaos Mesh spec models: one case per rule, the upstream examples, completeness against the CRDs, durations, fuzzing."""

from __future__ import annotations

import copy
import enum
import functools
import math
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from chaos_engineering.chaosmesh.constants import API_VERSION, PLURALS, VERSION, ChaosKind
from chaos_engineering.chaosmesh.duration import format_go_duration, parse_go_duration
from chaos_engineering.chaosmesh.spec import KIND_SPEC_MODELS, Rule, SpecIssue, parse_spec, spec_manifest
from tests.conftest import REPO_ROOT, shared_dir

SELECTOR = {"namespaces": ["shop"], "labelSelectors": {"app": "web"}}

# One small valid spec per kind; each case below changes one thing in it.
BASE_SPECS: dict[str, dict[str, Any]] = {
    "PodChaos": {"action": "pod-kill", "mode": "one", "selector": SELECTOR},
    "NetworkChaos": {"action": "delay", "mode": "one", "selector": SELECTOR, "delay": {"latency": "100ms"}},
    "StressChaos": {"mode": "one", "selector": SELECTOR, "stressors": {"cpu": {"workers": 1, "load": 50}}},
    "IOChaos": {"action": "latency", "mode": "one", "selector": SELECTOR, "volumePath": "/data", "delay": "10ms"},
    "HTTPChaos": {"mode": "one", "selector": SELECTOR, "target": "Request", "port": 80, "abort": True},
}

DELETE = object()


def variant(kind: str, changes: dict[str, Any]) -> dict[str, Any]:
    """BASE_SPECS[kind] with `changes` applied; keys are dotted paths, DELETE removes a key."""
    spec = copy.deepcopy(BASE_SPECS[kind])
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = spec
        for name in parents:
            node = node.setdefault(name, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return spec


def case(id: str, kind: str, changes: dict[str, Any], field: str, rule: str, *words: str) -> Any:
    return pytest.param(kind, changes, field, rule, words, id=id)


RULE_CASES = [
    # unknown-field: typos fail at every level instead of being ignored.
    case("unknown-field-top", "PodChaos", {"durration": "5m"}, "chaos.spec.durration", "unknown-field", "'durration'", "did you mean 'duration'"),
    case("unknown-field-selector", "PodChaos", {"selector.labelSelector": {"app": "web"}}, "chaos.spec.selector.labelSelector", "unknown-field", "did you mean 'labelSelectors'"),
    case("unknown-field-nested", "NetworkChaos", {"action": "bandwidth", "delay": DELETE, "bandwidth": {"rate": "1mbps", "limit": 1, "buffer": 1, "speed": 5}}, "chaos.spec.bandwidth.speed", "unknown-field", "'speed'", "buffer, limit, minburst, peakrate, rate"),
    case("unknown-field-other-kind", "PodChaos", {"volumePath": "/data"}, "chaos.spec.volumePath", "unknown-field", "'volumePath'"),
    # required: the CRD's required fields, and HTTPChaos port (the webhook rejects port 0).
    case("required-selector", "PodChaos", {"selector": DELETE}, "chaos.spec.selector", "required", "'selector'", "required"),
    case("required-action", "NetworkChaos", {"action": DELETE}, "chaos.spec.action", "required", "'action'"),
    case("required-volume-path", "IOChaos", {"volumePath": DELETE}, "chaos.spec.volumePath", "required", "'volumePath'"),
    case("required-http-port", "HTTPChaos", {"port": DELETE}, "chaos.spec.port", "required", "'port'"),
    case("required-http-target", "HTTPChaos", {"target": DELETE}, "chaos.spec.target", "required", "'target'"),
    case("required-target-mode", "NetworkChaos", {"direction": "both", "target": {"selector": SELECTOR}}, "chaos.spec.target.mode", "required", "'mode'"),
    case("required-expression-key", "PodChaos", {"selector.expressionSelectors": [{"operator": "Exists"}]}, "chaos.spec.selector.expressionSelectors[0].key", "required", "'key'"),
    case("required-workers", "StressChaos", {"stressors": {"memory": {"size": "1GB"}}}, "chaos.spec.stressors.memory.workers", "required", "'workers'"),
    # type: the CRD's types, strictly (YAML numbers are not strings, "yes" is not a boolean).
    case("type-number-for-string", "PodChaos", {"mode": "fixed", "value": 2}, "chaos.spec.value", "type", "must be a string", "quote it", '"2"'),
    case("type-string-for-list", "PodChaos", {"selector.namespaces": "shop"}, "chaos.spec.selector.namespaces", "type", "must be a list", "got str"),
    case("type-string-for-bool", "HTTPChaos", {"abort": "yes"}, "chaos.spec.abort", "type", "true or false"),
    case("type-string-for-int", "StressChaos", {"stressors.cpu.workers": "2"}, "chaos.spec.stressors.cpu.workers", "type", "whole number"),
    case("type-map-key", "PodChaos", {"selector.labelSelectors": {1: "web"}}, "chaos.spec.selector.labelSelectors[1]", "type", "keys must be strings"),
    case("type-map-value", "PodChaos", {"selector.pods": {"shop": "web-0"}}, "chaos.spec.selector.pods[shop]", "type", "must be a list"),
    case("type-patch-pair", "HTTPChaos", {"patch": {"headers": [["X-Chaos"]]}}, "chaos.spec.patch.headers[0]", "type", "[name, value] pair"),
    # enum: Chaos Mesh's enumerations, naming the allowed values.
    case("enum-mode", "PodChaos", {"mode": "some"}, "chaos.spec.mode", "enum", "'some'", "one, all, fixed, fixed-percent, random-max-percent"),
    case("enum-pod-action", "PodChaos", {"action": "pod-restart"}, "chaos.spec.action", "enum", "pod-kill, pod-failure, container-kill"),
    case("enum-network-action", "NetworkChaos", {"action": "jitter"}, "chaos.spec.action", "enum", "netem, delay, loss, duplicate, corrupt, partition, bandwidth"),
    case("enum-io-action", "IOChaos", {"action": "slow"}, "chaos.spec.action", "enum", "latency, fault, attrOverride, mistake"),
    case("enum-http-target", "HTTPChaos", {"target": "Both"}, "chaos.spec.target", "enum", "Request, Response"),
    case("enum-direction", "NetworkChaos", {"direction": "sideways"}, "chaos.spec.direction", "enum", "to, from, both"),
    case("enum-operator", "PodChaos", {"selector.expressionSelectors": [{"key": "app", "operator": "Equals", "values": ["web"]}]}, "chaos.spec.selector.expressionSelectors[0].operator", "enum", "In, NotIn, Exists, DoesNotExist"),
    case("enum-pod-phase", "PodChaos", {"selector.podPhaseSelectors": ["Runing"]}, "chaos.spec.selector.podPhaseSelectors[0]", "enum", "'Runing'", "entry of podPhaseSelectors", "Running"),
    case("enum-io-method", "IOChaos", {"methods": ["wirte"]}, "chaos.spec.methods[0]", "enum", "'wirte'", "write"),
    case("enum-http-method", "HTTPChaos", {"method": "GETT"}, "chaos.spec.method", "enum", "'GETT'", "GET, HEAD, POST"),
    case("enum-patch-body-type", "HTTPChaos", {"abort": DELETE, "patch": {"body": {"type": "XML", "value": "{}"}}}, "chaos.spec.patch.body.type", "enum", "JSON"),
    # range: the CRD's minimum/maximum, the webhook's bounds and the Go integer widths.
    case("range-grace-period", "PodChaos", {"gracePeriod": -1}, "chaos.spec.gracePeriod", "range", "at least 0", "-1"),
    case("range-cpu-load", "StressChaos", {"stressors.cpu.load": 101}, "chaos.spec.stressors.cpu.load", "range", "at most 100"),
    case("range-workers-max", "StressChaos", {"stressors.cpu.workers": 8193}, "chaos.spec.stressors.cpu.workers", "range", "at most 8192"),
    case("range-workers-zero", "StressChaos", {"stressors.cpu.workers": 0}, "chaos.spec.stressors.cpu.workers", "range", "at least 1"),
    case("range-oom-score", "StressChaos", {"stressors": {"memory": {"workers": 1, "oomScoreAdj": -1001}}}, "chaos.spec.stressors.memory.oomScoreAdj", "range", "at least -1000"),
    case("range-io-percent", "IOChaos", {"percent": 101}, "chaos.spec.percent", "range", "at most 100"),
    case("range-bandwidth-limit", "NetworkChaos", {"action": "bandwidth", "delay": DELETE, "bandwidth": {"rate": "1mbps", "limit": 0, "buffer": 1}}, "chaos.spec.bandwidth.limit", "range", "at least 1"),
    case("range-http-port", "HTTPChaos", {"port": 70000}, "chaos.spec.port", "range", "at most 65535"),
    case("range-attr-perm", "IOChaos", {"action": "attrOverride", "delay": DELETE, "attr": {"perm": 70000}}, "chaos.spec.attr.perm", "range", "at most 65535"),
    # value-for-mode, on the spec and on a NetworkChaos target.
    case("value-fixed-missing", "PodChaos", {"mode": "fixed"}, "chaos.spec.value", "value-for-mode", "mode 'fixed' needs value", '"2"'),
    case("value-fixed-zero", "PodChaos", {"mode": "fixed", "value": "0"}, "chaos.spec.value", "value-for-mode", "positive whole number", "'0'"),
    case("value-fixed-words", "PodChaos", {"mode": "fixed", "value": "two"}, "chaos.spec.value", "value-for-mode", "positive whole number"),
    case("value-percent-missing", "PodChaos", {"mode": "fixed-percent", "value": ""}, "chaos.spec.value", "value-for-mode", "'fixed-percent' needs value", "1 to 100"),
    case("value-percent-zero", "PodChaos", {"mode": "fixed-percent", "value": "0"}, "chaos.spec.value", "value-for-mode", "from 1 to 100"),
    case("value-percent-over", "PodChaos", {"mode": "random-max-percent", "value": "101"}, "chaos.spec.value", "value-for-mode", "from 1 to 100", "'random-max-percent'"),
    case("value-percent-sign", "PodChaos", {"mode": "fixed-percent", "value": "50%"}, "chaos.spec.value", "value-for-mode", "whole percentage"),
    case("value-for-one", "PodChaos", {"value": "1"}, "chaos.spec.value", "value-for-mode", "mode 'one' takes no value", "remove value"),
    case("value-for-all", "PodChaos", {"mode": "all", "value": "3"}, "chaos.spec.value", "value-for-mode", "mode 'all' takes no value"),
    case("value-target", "NetworkChaos", {"target": {"selector": SELECTOR, "mode": "fixed"}}, "chaos.spec.target.value", "value-for-mode", "mode 'fixed' needs value"),
    # go-duration: Go's syntax, positive for `duration`, the CRD pattern for netem durations.
    case("duration-unknown-unit", "PodChaos", {"duration": "5d"}, "chaos.spec.duration", "go-duration", "unknown unit 'd'"),
    case("duration-no-unit", "PodChaos", {"duration": "10"}, "chaos.spec.duration", "go-duration", "missing unit"),
    case("duration-empty", "PodChaos", {"duration": ""}, "chaos.spec.duration", "go-duration", "empty duration"),
    case("duration-negative", "PodChaos", {"duration": "-5m"}, "chaos.spec.duration", "go-duration", "negative"),
    case("duration-zero", "PodChaos", {"duration": "0s"}, "chaos.spec.duration", "go-duration", "longer than zero"),
    case("duration-io-delay", "IOChaos", {"delay": "1 s"}, "chaos.spec.delay", "go-duration", "'1 s'"),
    case("duration-http-delay", "HTTPChaos", {"delay": "fast"}, "chaos.spec.delay", "go-duration", "'fast'"),
    case("duration-netem-two-units", "NetworkChaos", {"delay.latency": "1m30s"}, "chaos.spec.delay.latency", "go-duration", "one number and one unit"),
    case("duration-netem-jitter", "NetworkChaos", {"delay.jitter": "90µs"}, "chaos.spec.delay.jitter", "go-duration", "'90µs'"),
    # percent-string: netem percentages written as strings.
    case("percent-with-sign", "NetworkChaos", {"action": "loss", "delay": DELETE, "loss": {"loss": "25%"}}, "chaos.spec.loss.loss", "percent-string", "'25%'", "0 to 100"),
    case("percent-over", "NetworkChaos", {"action": "corrupt", "delay": DELETE, "corrupt": {"corrupt": "101"}}, "chaos.spec.corrupt.corrupt", "percent-string", "0 to 100"),
    case("percent-correlation", "NetworkChaos", {"delay.correlation": "high"}, "chaos.spec.delay.correlation", "percent-string", "'high'"),
    # rate, byte-size, format.
    case("rate-bit-unit", "NetworkChaos", {"action": "bandwidth", "delay": DELETE, "bandwidth": {"rate": "100kbit", "limit": 1, "buffer": 1}}, "chaos.spec.bandwidth.rate", "rate", "'100kbit'", "refuses bit units"),
    case("rate-unit", "NetworkChaos", {"action": "bandwidth", "delay": DELETE, "bandwidth": {"rate": "1 gigabit", "limit": 1, "buffer": 1}}, "chaos.spec.bandwidth.rate", "rate", "'1 gigabit'", "kbps"),
    case("byte-size", "StressChaos", {"stressors": {"memory": {"workers": 1, "size": "lots"}}}, "chaos.spec.stressors.memory.size", "byte-size", "'lots'", "256MB"),
    case("byte-size-percent", "StressChaos", {"stressors": {"memory": {"workers": 1, "size": "150%"}}}, "chaos.spec.stressors.memory.size", "byte-size", "0% to 100%"),
    case("format-base64", "HTTPChaos", {"replace": {"body": "not base64!"}}, "chaos.spec.replace.body", "format", "base64"),
    # action-requires: what the webhook, or the injection itself, needs for each action.
    case("requires-delay", "NetworkChaos", {"delay": DELETE}, "chaos.spec.delay", "action-requires", "action 'delay' needs a delay block"),
    case("requires-loss", "NetworkChaos", {"action": "loss", "delay": DELETE}, "chaos.spec.loss", "action-requires", "action 'loss'"),
    case("requires-duplicate", "NetworkChaos", {"action": "duplicate", "delay": DELETE}, "chaos.spec.duplicate", "action-requires", "action 'duplicate'"),
    case("requires-corrupt", "NetworkChaos", {"action": "corrupt", "delay": DELETE}, "chaos.spec.corrupt", "action-requires", "action 'corrupt'"),
    case("requires-bandwidth", "NetworkChaos", {"action": "bandwidth", "delay": DELETE}, "chaos.spec.bandwidth", "action-requires", "action 'bandwidth'", "limit", "buffer"),
    case("requires-netem", "NetworkChaos", {"action": "netem", "delay": DELETE}, "chaos.spec", "action-requires", "delay, loss, duplicate, corrupt or rate"),
    case("requires-container-names", "PodChaos", {"action": "container-kill"}, "chaos.spec.containerNames", "action-requires", "container-kill", "containerNames"),
    case("requires-stressor", "StressChaos", {"stressors": DELETE}, "chaos.spec.stressors", "action-requires", "stressors.cpu", "stressngStressors"),
    case("requires-stressor-kind", "StressChaos", {"stressors": {}}, "chaos.spec.stressors", "action-requires", "cpu or memory"),
    case("requires-io-delay", "IOChaos", {"delay": DELETE}, "chaos.spec.delay", "action-requires", "action 'latency' needs delay"),
    case("requires-io-errno", "IOChaos", {"action": "fault", "delay": DELETE, "errno": 0}, "chaos.spec.errno", "action-requires", "non-zero errno"),
    case("requires-io-attr", "IOChaos", {"action": "attrOverride", "delay": DELETE}, "chaos.spec.attr", "action-requires", "action 'attrOverride' needs attr"),
    case("requires-io-mistake", "IOChaos", {"action": "mistake", "delay": DELETE}, "chaos.spec.mistake", "action-requires", "action 'mistake' needs mistake"),
    case("requires-http-action", "HTTPChaos", {"abort": DELETE}, "chaos.spec", "action-requires", "abort: true, delay, replace or patch"),
    # direction-target: Chaos Mesh's webhook rules for traffic-control actions.
    case("direction-from-without-target", "NetworkChaos", {"direction": "from"}, "chaos.spec.direction", "direction-target", "direction 'from' needs a target"),
    case("direction-both-external", "NetworkChaos", {"direction": "both", "target": {"selector": SELECTOR, "mode": "all"}, "externalTargets": ["10.0.0.0/8"]}, "chaos.spec.direction", "direction-target", "externalTargets only work with direction 'to'"),
    # operator-values: Kubernetes' rule for set-based label requirements.
    case("operator-in-without-values", "PodChaos", {"selector.expressionSelectors": [{"key": "app", "operator": "In"}]}, "chaos.spec.selector.expressionSelectors[0].values", "operator-values", "'In' needs at least one"),
    case("operator-exists-with-values", "PodChaos", {"selector.expressionSelectors": [{"key": "app", "operator": "Exists", "values": ["web"]}]}, "chaos.spec.selector.expressionSelectors[0].values", "operator-values", "'Exists' takes no values"),
]


@pytest.mark.parametrize(("kind", "changes", "field", "rule", "words"), RULE_CASES)
def test_each_rule_reports_exactly_one_issue(kind, changes, field, rule, words):
    model, issues = parse_spec(kind, variant(kind, changes))
    assert model is None
    assert [(i.field, i.rule) for i in issues] == [(field, rule)], issues
    for word in words:
        assert word in issues[0].message


def test_every_rule_id_has_a_case():
    covered = {c.values[3] for c in RULE_CASES}
    # invalid-value is raised only by our own files' validators (policy); test_policy.py covers it.
    assert covered == {r.value for r in Rule} - {Rule.INVALID_VALUE.value}


VALID_VARIANTS = [
    pytest.param("PodChaos", {}, id="base-pod"),
    pytest.param("PodChaos", {"value": ""}, id="empty-value-for-one"),
    pytest.param("PodChaos", {"mode": "fixed", "value": "2"}, id="fixed-2"),
    pytest.param("PodChaos", {"mode": "fixed-percent", "value": "100"}, id="fixed-percent-100"),
    pytest.param("PodChaos", {"mode": "random-max-percent", "value": "1"}, id="random-max-percent-1"),
    pytest.param("PodChaos", {"action": "pod-failure"}, id="pod-failure-without-duration"),
    pytest.param("PodChaos", {"duration": "1m30s", "gracePeriod": 0}, id="duration-and-grace"),
    pytest.param("PodChaos", {"selector": {"pods": {"shop": ["web-0"]}, "podPhaseSelectors": ["Running"], "expressionSelectors": [{"key": "app", "operator": "DoesNotExist"}]}}, id="selector-variety"),
    pytest.param("NetworkChaos", {"action": "partition", "delay": DELETE}, id="partition-without-target"),
    pytest.param("NetworkChaos", {"action": "partition", "delay": DELETE, "direction": "both"}, id="partition-both-without-target"),
    pytest.param("NetworkChaos", {"action": "netem", "delay": DELETE, "rate": {"rate": "100kbps"}}, id="netem-rate-only"),
    pytest.param("NetworkChaos", {"direction": "from", "target": {"selector": SELECTOR, "mode": "fixed-percent", "value": "50"}}, id="from-with-target"),
    pytest.param("NetworkChaos", {"delay": {"latency": "90ms", "jitter": "0ms", "correlation": "0.5", "reorder": {"reorder": "10", "gap": 5}}}, id="delay-reorder"),
    pytest.param("StressChaos", {"stressors": DELETE, "stressngStressors": "--cpu 1"}, id="stress-ng-only"),
    pytest.param("StressChaos", {"stressors": {"memory": {"workers": 8192, "size": "50%", "oomScoreAdj": 1000}}}, id="memory-bounds"),
    pytest.param("IOChaos", {"action": "fault", "delay": DELETE, "errno": 5, "methods": ["read", "write"], "percent": 0}, id="io-fault"),
    pytest.param("HTTPChaos", {"target": "Response", "method": "ANY"}, id="method-only-checked-for-requests"),
    pytest.param("HTTPChaos", {"abort": False, "delay": "1s", "replace": {"body": "e30=", "code": 503}}, id="http-delay-replace"),
]


@pytest.mark.parametrize(("kind", "changes"), VALID_VARIANTS)
def test_valid_variants_pass_and_render_as_written(kind, changes):
    spec = variant(kind, changes)
    model, issues = parse_spec(kind, spec)
    assert issues == []
    assert isinstance(model, KIND_SPEC_MODELS[ChaosKind(kind)])
    assert spec_manifest(model) == spec
    assert model.model_dump(by_alias=True, exclude_none=True) == spec


@pytest.mark.parametrize(
    ("kind", "spec", "field", "rule", "words"),
    [
        pytest.param("Foo", {}, "chaos.kind", "enum", ("'Foo'", "PodChaos, NetworkChaos"), id="unknown-kind"),
        pytest.param(["PodChaos"], {}, "chaos.kind", "enum", ("not supported",), id="unhashable-kind"),
        pytest.param("PodChaos", None, "chaos.spec", "required", ("needs a spec",), id="spec-missing"),
        pytest.param("PodChaos", ["action"], "chaos.spec", "type", ("mapping", "got list"), id="spec-list"),
        pytest.param("IOChaos", 7, "chaos.spec", "type", ("got int",), id="spec-number"),
    ],
)
def test_what_is_not_a_spec(kind, spec, field, rule, words):
    model, issues = parse_spec(kind, spec)
    assert model is None
    assert [(i.field, i.rule) for i in issues] == [(field, rule)]
    assert all(word in issues[0].message for word in words)


def test_all_issues_are_reported_at_once():
    spec = {
        "action": "pod-kil",
        "mode": "fixed",
        "durration": "5m",
        "selector": {"expressionSelectors": [{"key": "app", "operator": "In"}]},
        "gracePeriod": -1,
    }
    _, issues = parse_spec("PodChaos", spec)
    assert {(i.field, i.rule) for i in issues} == {
        ("chaos.spec.action", "enum"),
        ("chaos.spec.durration", "unknown-field"),
        ("chaos.spec.gracePeriod", "range"),
        ("chaos.spec.value", "value-for-mode"),
        ("chaos.spec.selector.expressionSelectors[0].values", "operator-values"),
    }


def test_typed_access():
    spec = variant("NetworkChaos", {"direction": "both", "target": {"selector": {"pods": {"db": ["db-0"]}}, "mode": "all"}, "externalTargets": None})
    model, issues = parse_spec("NetworkChaos", spec)
    assert issues == []
    assert model.selector.labelSelectors == {"app": "web"}
    assert model.selector.namespaces == ["shop"]
    assert model.mode == "one" and model.value is None and model.duration is None
    assert model.target.selector.pods == {"db": ["db-0"]}
    assert model.target.mode == "all"
    assert model.delay.latency == "100ms"
    assert "externalTargets" not in model.to_manifest()  # null means absent


# --- Chaos Mesh's own examples ----------------------------------------------------------------

KIND_DIRS = [kind.plural for kind in ChaosKind]


def example_files() -> list[Any]:
    examples = REPO_ROOT.parent / "shared" / "chaos-mesh" / "examples"
    if not examples.is_dir():
        return [pytest.param(None, id="shared-absent")]  # shared_dir() skips it
    return [pytest.param(p, id=f"{d}/{p.name}") for d in KIND_DIRS for p in sorted((examples / d).glob("*.yaml"))]


def test_every_kind_has_examples():
    examples = shared_dir() / "chaos-mesh" / "examples"
    assert {d: len(list((examples / d).glob("*.yaml"))) > 0 for d in KIND_DIRS} == {d: True for d in KIND_DIRS}


@pytest.mark.parametrize("path", example_files())
def test_upstream_example_parses_without_issue(path: Path):
    shared_dir()
    manifest = yaml.safe_load(path.read_text())
    assert manifest["apiVersion"] == API_VERSION
    model, issues = parse_spec(manifest["kind"], manifest["spec"])
    assert issues == []
    assert spec_manifest(model) == manifest["spec"]


# --- completeness against the CRDs -------------------------------------------------------------
# Every property the CRD allows under `spec` must be a field of our model, and every field of our
# model must be in the CRD. Nothing under `spec` is left out: all of it is user-writable.


def crd_spec_schema(kind: ChaosKind) -> dict[str, Any]:
    path = shared_dir() / "chaos-mesh" / "crds" / f"chaos-mesh.org_{kind.plural}.yaml"
    crd = yaml.safe_load(path.read_text())
    assert crd["spec"]["names"]["plural"] == PLURALS[kind]
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == VERSION]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]


def crd_nodes(schema: dict[str, Any], path: str = "spec"):
    """(path, schema) of every node under `schema`; `[]` is a list item, `{}` a map value."""
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}.{name}", sub
        yield from crd_nodes(sub, f"{path}.{name}")
    if "items" in schema:
        yield f"{path}[]", schema["items"]
        yield from crd_nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield f"{path}{{}}", schema["additionalProperties"]
        yield from crd_nodes(schema["additionalProperties"], f"{path}{{}}")


def bare(annotation: Any) -> tuple[Any, list[Any]]:
    """The type under Optional/Annotated, and the Annotated metadata met on the way."""
    metadata: list[Any] = []
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation, *more = typing.get_args(annotation)
            # Field(ge=...) inside Annotated arrives as a FieldInfo holding the constraints.
            metadata += [c for m in more for c in (m.metadata if isinstance(m, FieldInfo) else [m])]
        elif origin in (typing.Union, types.UnionType):
            (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        else:
            return annotation, metadata


def model_nodes(annotation: Any, path: str = "spec", metadata: tuple[Any, ...] = ()):
    """(path, type, metadata, required) of every node of our model, named like crd_nodes."""
    shape, more = bare(annotation)
    if isinstance(shape, type) and issubclass(shape, BaseModel):
        for name, field in shape.model_fields.items():
            inner, found = bare(field.annotation)
            yield f"{path}.{name}", inner, [*field.metadata, *found], field.is_required()
            yield from model_nodes(inner, f"{path}.{name}")
    elif typing.get_origin(shape) is list:
        inner, found = bare(typing.get_args(shape)[0])
        yield f"{path}[]", inner, found, True
        yield from model_nodes(inner, f"{path}[]")
    elif typing.get_origin(shape) is dict:
        inner, found = bare(typing.get_args(shape)[1])
        yield f"{path}{{}}", inner, found, True
        yield from model_nodes(inner, f"{path}{{}}")


# Required by our model although the CRD does not require it, and why.
STRICTER_THAN_CRD = {
    (ChaosKind.HTTP_CHAOS, "spec.port"): "Chaos Mesh's webhook rejects port 0, i.e. a missing port",
}


@pytest.mark.parametrize("kind", list(ChaosKind), ids=[k.value for k in ChaosKind])
def test_model_has_exactly_the_crd_fields(kind):
    crd_paths = {path for path, _ in crd_nodes(crd_spec_schema(kind))}
    model_paths = {path for path, *_ in model_nodes(KIND_SPEC_MODELS[kind])}
    assert sorted(crd_paths - model_paths) == [], "the model lags behind the CRD"
    assert sorted(model_paths - crd_paths) == [], "the model has fields the CRD does not know"


def _type_matches(schema: dict[str, Any], shape: Any) -> bool:
    expected = schema.get("type")
    if expected == "string":
        return shape is str or (isinstance(shape, type) and issubclass(shape, str)) or typing.get_origin(shape) is typing.Literal
    if expected == "integer":
        return shape is int
    if expected == "boolean":
        return shape is bool
    if expected == "array":
        return typing.get_origin(shape) is list
    if expected == "object" and "properties" in schema:
        return isinstance(shape, type) and issubclass(shape, BaseModel)
    if expected == "object":
        return typing.get_origin(shape) is dict
    return False


@pytest.mark.parametrize("kind", list(ChaosKind), ids=[k.value for k in ChaosKind])
def test_model_types_enums_bounds_and_required_follow_the_crd(kind):
    schema = crd_spec_schema(kind)
    model = {path: (shape, metadata, required) for path, shape, metadata, required in model_nodes(KIND_SPEC_MODELS[kind])}
    crd = dict(crd_nodes(schema))
    crd_required = {f"{parent}.{name}" for parent, node in [("spec", schema), *crd.items()] for name in node.get("required", [])}
    for path, node in crd.items():
        shape, metadata, required = model[path]
        assert _type_matches(node, shape), f"{path}: CRD type {node.get('type')}, model {shape}"
        if "enum" in node:
            assert isinstance(shape, type) and issubclass(shape, enum.Enum), path
            assert sorted(m.value for m in shape) == sorted(node["enum"]), path
        lower = [m.ge for m in metadata if isinstance(m, annotated_types.Ge)]
        upper = [m.le for m in metadata if isinstance(m, annotated_types.Le)]
        if "minimum" in node:
            assert lower and max(lower) >= node["minimum"], f"{path}: CRD minimum {node['minimum']} not enforced"
        if "maximum" in node:
            assert upper and min(upper) <= node["maximum"], f"{path}: CRD maximum {node['maximum']} not enforced"
        is_field = not path.endswith(("[]", "{}"))
        if is_field and (kind, path) not in STRICTER_THAN_CRD:
            assert required == (path in crd_required), f"{path}: required is {required}, CRD says {path in crd_required}"


# --- Go durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300ms", 0.3),
        ("1.5h", 5400),
        ("2h45m", 9900),
        ("10s", 10),
        ("1m30s", 90),
        ("0", 0),
        ("+5s", 5),
        (".5s", 0.5),
        ("1.s", 1),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("250μs", 0.00025),
        ("7ns", 7e-9),
        ("1h1h", 7200),
    ],
)
def test_parse_go_duration(text, seconds):
    assert math.isclose(parse_go_duration(text), seconds, rel_tol=1e-12, abs_tol=1e-15)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty duration"),
        ("10", "missing unit"),
        ("5d", "unknown unit 'd'"),
        ("-1s", "negative"),
        ("1h 30m", "unknown unit 'h '"),
        ("s", "expected a number"),
        (".s", "expected a number"),
        ("+", "write a number"),
        ("3000000h", "out of range"),
        ("9" * 5000 + "s", "out of range"),
    ],
)
def test_parse_go_duration_rejects(text, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        parse_go_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(90, "1m30s"), (600, "10m"), (0, "0s"), (0.3, "300ms"), (1.5, "1.5s"), (3600, "1h"), (3630, "1h30s"), (1.5e-6, "1.5us"), (1e-9, "1ns"), (86400.25, "24h0.25s")],
)
def test_format_go_duration(seconds, text):
    assert format_go_duration(seconds) == text


@pytest.mark.parametrize("seconds", [-1, math.inf, math.nan, 1e12])
def test_format_go_duration_rejects(seconds):
    with pytest.raises(ValueError):
        format_go_duration(seconds)


@given(st.integers(min_value=0, max_value=10**15))
def test_format_parses_back(nanoseconds):
    seconds = nanoseconds / 1e9
    text = format_go_duration(seconds)
    assert round(parse_go_duration(text) * 1e9) == nanoseconds
    assert format_go_duration(parse_go_duration(text)) == text


# --- fuzzing: any input gives (model, []) or (None, issues), never an exception ------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
    max_leaves=12,
)
# Containers are built fresh: one shared [] inserted twice could make the spec cyclic.
interesting_values = st.sampled_from(["", "0", "1", "100", "101", "-1", "10s", "0s", "5d", "one", "fixed", "In", None, 0, -1, 2**40, True]) | st.builds(list) | st.builds(dict)


@functools.cache
def seed_specs() -> list[tuple[str, dict[str, Any]]]:
    seeds = list(BASE_SPECS.items())
    examples = REPO_ROOT.parent / "shared" / "chaos-mesh" / "examples"
    for d in KIND_DIRS:
        for path in sorted((examples / d).glob("*.yaml")) if examples.is_dir() else []:
            manifest = yaml.safe_load(path.read_text())
            seeds.append((manifest["kind"], manifest["spec"]))
    return seeds


def _containers(node: Any, found: list[Any]) -> list[Any]:
    if isinstance(node, dict | list):
        found.append(node)
        for child in node.values() if isinstance(node, dict) else node:
            _containers(child, found)
    return found


@st.composite
def mutated_specs(draw) -> tuple[str, Any]:
    kind, seed = draw(st.sampled_from(seed_specs()))
    spec = copy.deepcopy(seed)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        target = draw(st.sampled_from(_containers(spec, [])))
        value = draw(json_values | interesting_values)
        if isinstance(target, list):
            if target and draw(st.booleans()):
                target[draw(st.integers(0, len(target) - 1))] = value
            else:
                target.append(value)
            continue
        keys = list(target)
        operation = draw(st.sampled_from(["delete", "replace", "add", "rename"]))
        if keys and operation == "delete":
            del target[draw(st.sampled_from(keys))]
        elif keys and operation == "replace":
            target[draw(st.sampled_from(keys))] = value
        elif keys and operation == "rename":
            key = draw(st.sampled_from(keys))
            target[f"{key}{draw(st.text(min_size=1, max_size=2))}"] = target.pop(key)
        else:
            target[draw(st.text(max_size=12) | st.sampled_from(["duration", "value", "target", "delay", 1, None]))] = value
    return draw(st.sampled_from([kind, kind, kind, "PodChaos", "Foo"])), spec


def drop_none(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: drop_none(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [drop_none(v) for v in node]
    return node


def assert_well_formed(kind: Any, spec: Any) -> None:
    model, issues = parse_spec(kind, spec)
    if model is None:
        assert issues, "no model and no issue"
        for issue in issues:
            assert isinstance(issue, SpecIssue)
            assert issue.field.startswith(("chaos.spec", "chaos.kind"))
            assert type(issue.rule) is str and issue.rule in {r.value for r in Rule}
            assert isinstance(issue.message, str) and issue.message
    else:
        assert issues == []
        assert isinstance(model, KIND_SPEC_MODELS[ChaosKind(kind)])
        assert model.to_manifest() == drop_none(spec)


@settings(max_examples=400, deadline=None)
@given(mutated_specs())
def test_mutated_specs_never_raise(kind_and_spec):
    assert_well_formed(*kind_and_spec)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([k.value for k in ChaosKind] + ["Foo", None, 3]), json_values)
def test_random_values_never_raise(kind, spec):
    assert_well_formed(kind, spec)


def test_pathological_nesting_never_raises():
    deep: Any = "leaf"
    for _ in range(100_000):
        deep = {"a": [deep]}
    cyclic = variant("NetworkChaos", {})
    cyclic["target"] = cyclic
    cyclic["selector"] = {"labelSelectors": cyclic}
    for kind, spec in [
        ("PodChaos", {"selector": deep, "mode": deep, "value": deep, "action": deep, "duration": deep}),
        ("PodChaos", deep),
        ("NetworkChaos", cyclic),
    ]:
        model, issues = parse_spec(kind, spec)
        assert model is None and issues
