"""Typed, strict models of the Chaos Mesh `spec` of five kinds, and `parse_spec` that reports every issue at once."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.chaosmesh.httpchaos import HTTPChaosSpec, HTTPTarget
from chaos_engineering.chaosmesh.iochaos import IOChaosAction, IOChaosSpec
from chaos_engineering.chaosmesh.networkchaos import Direction, NetworkChaosAction, NetworkChaosSpec
from chaos_engineering.chaosmesh.podchaos import PodChaosAction, PodChaosSpec
from chaos_engineering.chaosmesh.selectors import (
    ChaosExperimentSpec,
    ExpressionSelector,
    PodMode,
    PodSelector,
    PodSelectorSpec,
    SelectorOperator,
)
from chaos_engineering.chaosmesh.spec_issues import SPEC_ROOT, Rule, SpecIssue, issues_from_validation_error, shown
from chaos_engineering.chaosmesh.stresschaos import StressChaosSpec

__all__ = [
    "KIND_SPEC_MODELS",
    "ChaosSpec",
    "Direction",
    "ExpressionSelector",
    "HTTPChaosSpec",
    "HTTPTarget",
    "IOChaosAction",
    "IOChaosSpec",
    "NetworkChaosAction",
    "NetworkChaosSpec",
    "PodChaosAction",
    "PodChaosSpec",
    "PodMode",
    "PodSelector",
    "PodSelectorSpec",
    "Rule",
    "SelectorOperator",
    "SpecIssue",
    "StressChaosSpec",
    "parse_spec",
    "spec_manifest",
]

ChaosSpec = PodChaosSpec | NetworkChaosSpec | StressChaosSpec | IOChaosSpec | HTTPChaosSpec

KIND_SPEC_MODELS: dict[ChaosKind, type[ChaosExperimentSpec]] = {
    ChaosKind.POD_CHAOS: PodChaosSpec,
    ChaosKind.NETWORK_CHAOS: NetworkChaosSpec,
    ChaosKind.STRESS_CHAOS: StressChaosSpec,
    ChaosKind.IO_CHAOS: IOChaosSpec,
    ChaosKind.HTTP_CHAOS: HTTPChaosSpec,
}


def parse_spec(kind: str, spec: object) -> tuple[ChaosSpec | None, list[SpecIssue]]:
    """Validate `spec` as the spec of `kind`: `(model, [])`, or `(None, issues)` with every issue.

    Issues come from the CRD's schema (unknown fields, types, enums, required fields, ranges),
    from the string formats Chaos Mesh parses (durations, percentages, rates, sizes) and from the
    cross-field rules of Chaos Mesh's webhook and of what an injection needs (value per mode,
    the block an action needs, direction with target, ...). Never raises, whatever `spec` is.
    """
    chaos_kind = _chaos_kind(kind)
    if chaos_kind is None:
        allowed = ", ".join(k.value for k in ChaosKind)
        return None, [SpecIssue("chaos.kind", Rule.ENUM, f"kind {shown(kind)} is not supported; use one of: {allowed}.")]
    if spec is None:
        return None, [SpecIssue(SPEC_ROOT, Rule.REQUIRED, f"a {chaos_kind.value} needs a spec; add chaos.spec.")]
    if not isinstance(spec, dict):
        return None, [
            SpecIssue(SPEC_ROOT, Rule.TYPE, f"spec must be a mapping of {chaos_kind.value} fields, got {type(spec).__name__}.")
        ]
    model_type = KIND_SPEC_MODELS[chaos_kind]
    model: ChaosSpec | None = None
    issues: list[SpecIssue] = []
    try:
        model = model_type.model_validate(spec)
    except ValidationError as error:
        issues += issues_from_validation_error(model_type, error)
    except RecursionError:
        # Only reachable with pathological nesting that no YAML file produces.
        issues.append(SpecIssue(SPEC_ROOT, Rule.TYPE, "spec is nested too deeply to be a Chaos Mesh spec."))
    issues += model_type.cross_field_issues(spec)
    issues = list(dict.fromkeys(issues))  # a rule may be reached twice; keep the first, in order
    return (model if not issues else None), issues


def spec_manifest(spec: ChaosSpec) -> dict[str, Any]:
    """The spec as plain data for the object we create: the keys the user wrote, nothing added."""
    return spec.to_manifest()


def _chaos_kind(kind: object) -> ChaosKind | None:
    if isinstance(kind, ChaosKind):
        return kind
    if isinstance(kind, str):
        try:
            return ChaosKind(kind)
        except ValueError:
            return None
    return None
