"""An experiment of the catalogue: the YAML schema a user writes and the typed object built from it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from chaos_engineering.chaosmesh.constants import API_VERSION, ChaosKind
from chaos_engineering.chaosmesh.spec import ChaosSpec, parse_spec
from chaos_engineering.chaosmesh.spec_issues import Rule, shown
from chaos_engineering.issues import ValidationIssue, issues_from_pydantic
from chaos_engineering.policy import Tier

# DNS-1123 label, shorter than 63 so a per-run suffix still fits in a Kubernetes name.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX_LENGTH = 50
#: NAME_PATTERN in words, for the people who write names.
NAME_CHARACTERS = "lowercase letters (a-z), digits and '-', starting and ending with a letter or digit"
#: The trigger form's value for "the tier's next experiment". The form cannot offer "" (Airflow
#: 3.3's form reads an empty choice as a missing value and disables Trigger); "" is still read
#: as the rotation, for API callers and runs triggered before this value existed.
#: No experiment may take this name.
ROTATION = "rotation"


def object_name(name: str) -> str:
    """A name Chaos Mesh objects are named after (an experiment's, a scenario step's): NAME_PATTERN and
    NAME_MAX_LENGTH, refused in words."""
    if len(name) > NAME_MAX_LENGTH:
        raise PydanticCustomError(
            Rule.RANGE.value, "{detail}",
            {"detail": f"the name is {len(name)} characters long; a name is at most {NAME_MAX_LENGTH} characters (the "
                       "Chaos Mesh object is named after it with a run suffix, within Kubernetes' 63); shorten it"},
        )
    if not re.fullmatch(NAME_PATTERN, name):
        suggestion = re.sub("[^a-z0-9]+", "-", name.lower()).strip("-")[:NAME_MAX_LENGTH].rstrip("-")
        example = f", e.g. {suggestion!r}" if suggestion else ""
        raise PydanticCustomError(
            Rule.FORMAT.value, "{detail}", {"detail": f"{shown(name)} is not a valid name: use {NAME_CHARACTERS}{example}"}
        )
    return name


def _service(name: str) -> str:
    """A service named in `on_deploy`: a DNS-1123 label, as the policy's services and asset names use."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise PydanticCustomError(
            Rule.FORMAT.value, "{detail}", {"detail": f"{shown(name)} is not a valid service name: use {NAME_CHARACTERS}"}
        )
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetSection(_Strict):
    service: str = Field(min_length=1)


class ChaosSection(_Strict):
    """A Chaos Mesh manifest as a user would `kubectl apply` it; `spec` is checked by kind."""

    apiVersion: str = API_VERSION
    kind: ChaosKind
    # Ignored: the system names and places the object itself. Kept so a pasted manifest works.
    metadata: dict[str, Any] | None = None
    spec: Any


class ThresholdOverride(_Strict):
    limit: float


class ExperimentFile(_Strict):
    name: Annotated[str, AfterValidator(object_name)]
    tier: Tier
    title: str = Field(min_length=1)
    description: str = ""
    hypothesis: str = Field(min_length=1)
    target: TargetSection
    chaos: ChaosSection
    thresholds: dict[str, ThresholdOverride] = Field(default_factory=dict)
    # The services whose deploy starts this experiment (chaos_on_deploy); its tier's rules still apply.
    on_deploy: list[Annotated[str, AfterValidator(_service)]] = Field(default_factory=list)


@dataclass(frozen=True)
class Experiment:
    """A structurally valid experiment; `catalogue` only hands out ones that also passed the policy."""

    name: str
    tier: Tier
    title: str
    description: str
    hypothesis: str
    target_service: str
    kind: ChaosKind
    spec: ChaosSpec
    source: Path
    threshold_limits: dict[str, float] = field(default_factory=dict)
    on_deploy: tuple[str, ...] = ()


def parse_experiment(source: Path, data: object) -> tuple[Experiment | None, list[ValidationIssue]]:
    """Check the structure of one experiment document (no policy yet); all issues at once."""
    file = str(source)
    if not isinstance(data, dict):
        return None, [ValidationIssue(file, "", "type", "an experiment file must be a mapping of keys")]
    issues: list[ValidationIssue] = []
    try:
        document = ExperimentFile.model_validate(data)
    except ValidationError as exc:
        issues += issues_from_pydantic(file, ExperimentFile, exc)
        document = None
    chaos = data.get("chaos")
    kind = chaos.get("kind") if isinstance(chaos, dict) else None
    if isinstance(kind, str) and kind in ChaosKind.__members__.values():
        # The spec is checked even when other fields failed, so the user sees everything at once.
        spec, spec_issues = parse_spec(kind, chaos.get("spec"))
        issues += [ValidationIssue(file, i.field, i.rule, i.message) for i in spec_issues]
    else:
        spec = None
    if document and document.chaos.apiVersion != API_VERSION:
        issues.append(
            ValidationIssue(file, "chaos.apiVersion", "enum", f"must be {API_VERSION!r}, got {document.chaos.apiVersion!r}")
        )
    if document and document.name == ROTATION:
        issues.append(ValidationIssue(file, "name", "reserved", f"{ROTATION!r} is the trigger form's choice for the tier's rotation; give the experiment another name"))
    if document:
        issues += [
            ValidationIssue(file, "on_deploy", "duplicate-service", f"{service!r} is listed more than once; list each service once")
            for service in sorted({s for s in document.on_deploy if document.on_deploy.count(s) > 1})
        ]
    if issues or document is None or spec is None:
        return None, issues
    return (
        Experiment(
            name=document.name,
            tier=document.tier,
            title=document.title,
            description=document.description,
            hypothesis=document.hypothesis,
            target_service=document.target.service,
            kind=document.chaos.kind,
            spec=spec,
            source=source,
            threshold_limits={name: o.limit for name, o in document.thresholds.items()},
            on_deploy=tuple(document.on_deploy),
        ),
        [],
    )
