"""Chaos Mesh's pod selector (`selector`, `mode`, `value`) and the fields every experiment spec shares."""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Strict

from chaos_engineering.chaosmesh.scalars import PositiveGoDuration
from chaos_engineering.chaosmesh.spec_issues import SPEC_ROOT, Rule, SpecIssue, child, item, shown


class PodMode(str, enum.Enum):
    """How many of the selected pods get the fault."""

    ONE = "one"
    ALL = "all"
    FIXED = "fixed"
    FIXED_PERCENT = "fixed-percent"
    RANDOM_MAX_PERCENT = "random-max-percent"


class SelectorOperator(str, enum.Enum):
    """Operators of a Kubernetes set-based label requirement."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class PodPhase(str, enum.Enum):
    """Values of `podPhaseSelectors`; a misspelt phase would silently select no pod."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


class ChaosMeshModel(BaseModel):
    """Strict base: unknown keys are errors, and types are the CRD's (no "5" for 5, no 1 for true).

    Field names are Chaos Mesh's own, verbatim, so a manifest from the Chaos Mesh docs validates
    as it is. Every optional field defaults to None, which is what keeps `to_manifest()` equal to
    what the user wrote.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def to_manifest(self) -> dict[str, Any]:
        """The spec as plain YAML/JSON data: exactly the keys the user wrote, enums as strings."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# Enums are matched by value: strict mode alone would only accept enum instances from Python.
ModeField = Annotated[PodMode, Strict(False)]


class ExpressionSelector(ChaosMeshModel):
    key: str
    operator: Annotated[SelectorOperator, Strict(False)]
    values: list[str] | None = None


class PodSelectorSpec(ChaosMeshModel):
    """Which pods are candidates. All given conditions must hold; `pods` names pods outright."""

    namespaces: list[str] | None = None
    nodes: list[str] | None = None
    pods: dict[str, list[str]] | None = None  # namespace -> pod names
    nodeSelectors: dict[str, str] | None = None
    podPhaseSelectors: list[Annotated[PodPhase, Strict(False)]] | None = None
    fieldSelectors: dict[str, str] | None = None
    labelSelectors: dict[str, str] | None = None
    expressionSelectors: list[ExpressionSelector] | None = None
    annotationSelectors: dict[str, str] | None = None


class PodSelector(ChaosMeshModel):
    """`selector` + `mode` + `value`: the candidates, and how many of them get the fault."""

    selector: PodSelectorSpec
    mode: ModeField
    value: str | None = None

    @classmethod
    def selector_issues(cls, raw: dict[str, Any], path: str) -> list[SpecIssue]:
        """Rules pydantic cannot express field by field, checked on the raw mapping at `path` so
        they are reported even when other fields are broken."""
        return mode_value_issues(raw, path) + expression_issues(raw.get("selector"), child(path, "selector"))


class ChaosExperimentSpec(PodSelector):
    """What the specs of all five kinds share."""

    duration: PositiveGoDuration | None = None
    remoteCluster: str | None = None

    @classmethod
    def cross_field_issues(cls, raw: dict[str, Any]) -> list[SpecIssue]:
        """Cross-field rules of this kind (Chaos Mesh's admission webhook, and what its injection
        needs); subclasses add theirs. `raw` is the mapping the user wrote, not yet validated."""
        return cls.selector_issues(raw, SPEC_ROOT)


class ContainerChaosSpec(ChaosExperimentSpec):
    """Kinds that act inside containers; without `containerNames` Chaos Mesh takes the first one."""

    containerNames: list[str] | None = None


# --- cross-field rules on the raw mapping --------------------------------------------------------

_WHOLE_NUMBER = re.compile(r"^[0-9]{1,18}$")  # Chaos Mesh reads value with Go's strconv.Atoi
_PERCENT_MODES = (PodMode.FIXED_PERCENT.value, PodMode.RANDOM_MAX_PERCENT.value)
_MODES_WITHOUT_VALUE = (PodMode.ONE.value, PodMode.ALL.value)


def mode_value_issues(raw: dict[str, Any], path: str) -> list[SpecIssue]:
    """`value` as `mode` needs it: a pod count for fixed, a percentage for the percent modes,
    nothing for one and all (where Chaos Mesh ignores it, so a value there is a mistake)."""
    mode, value = raw.get("mode"), raw.get("value")
    if not isinstance(mode, str) or (value is not None and not isinstance(value, str)):
        return []  # a missing or mistyped mode or value is reported by the model
    where = child(path, "value")
    if mode == PodMode.FIXED.value:
        if not value:
            return [SpecIssue(where, Rule.VALUE_FOR_MODE, "mode 'fixed' needs value: how many pods, as a string, e.g. \"2\".")]
        if not _WHOLE_NUMBER.match(value) or int(value) == 0:
            return [
                SpecIssue(
                    where,
                    Rule.VALUE_FOR_MODE,
                    f"value {shown(value)} must be a positive whole number of pods for mode 'fixed', e.g. \"2\".",
                )
            ]
    elif mode in _PERCENT_MODES:
        if not value:
            return [
                SpecIssue(
                    where,
                    Rule.VALUE_FOR_MODE,
                    f"mode {mode!r} needs value: a percentage of the pods from 1 to 100, as a string, e.g. \"50\".",
                )
            ]
        if not _WHOLE_NUMBER.match(value) or not 1 <= int(value) <= 100:
            return [
                SpecIssue(
                    where,
                    Rule.VALUE_FOR_MODE,
                    f"value {shown(value)} must be a whole percentage from 1 to 100 for mode {mode!r}, e.g. \"50\".",
                )
            ]
    elif mode in _MODES_WITHOUT_VALUE and value:
        return [
            SpecIssue(
                where,
                Rule.VALUE_FOR_MODE,
                f"mode {mode!r} takes no value (got {shown(value)}); remove value, "
                "or use mode fixed, fixed-percent or random-max-percent.",
            )
        ]
    return []


def expression_issues(selector: object, path: str) -> list[SpecIssue]:
    """Kubernetes' rule for label requirements: In and NotIn need values, Exists and
    DoesNotExist take none (the pod selection fails otherwise)."""
    if not isinstance(selector, dict) or not isinstance(selector.get("expressionSelectors"), list):
        return []
    issues = []
    for index, expression in enumerate(selector["expressionSelectors"]):
        if not isinstance(expression, dict):
            continue
        operator, values = expression.get("operator"), expression.get("values")
        if not isinstance(operator, str) or (values is not None and not isinstance(values, list)):
            continue
        where = child(item(child(path, "expressionSelectors"), index), "values")
        if operator in (SelectorOperator.IN.value, SelectorOperator.NOT_IN.value) and not values:
            issues.append(SpecIssue(where, Rule.OPERATOR_VALUES, f"operator {operator!r} needs at least one entry in values."))
        elif operator in (SelectorOperator.EXISTS.value, SelectorOperator.DOES_NOT_EXIST.value) and values:
            issues.append(SpecIssue(where, Rule.OPERATOR_VALUES, f"operator {operator!r} takes no values; remove values."))
    return issues
