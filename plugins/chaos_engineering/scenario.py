"""A scenario: catalogue experiments started at set times as one run; its YAML schema, steps and timeline."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from chaos_engineering.chaosmesh.duration import format_go_duration, parse_go_duration
from chaos_engineering.chaosmesh.spec_issues import Rule
from chaos_engineering.experiment import Experiment, ThresholdOverride, _Strict, object_name, parse_experiment
from chaos_engineering.issues import ValidationIssue, issues_from_pydantic
from chaos_engineering.policy import SafetyPolicy, Tier
from chaos_engineering.rules import check_experiment, effective_duration


class StepEvent(str, enum.Enum):
    """The moment of another step a step starts after: its fault created, or its fault removed."""

    STARTED = "started"
    ENDED = "ended"


def _offset(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"expected a Go duration such as '30s' or '1m', got {value!r}")
    return parse_go_duration(value)


class StepStart(_Strict):
    """When a step starts: `offset` after the scenario's start, or after the step `after` `when` it
    started or ended. (Not `on`: YAML 1.1 reads that key as the boolean true.)"""

    after: str | None = None
    when: StepEvent = StepEvent.STARTED
    offset: Annotated[float, BeforeValidator(_offset)] = 0.0

    @model_validator(mode="before")
    @classmethod
    def _not_on(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(isinstance(key, bool) for key in data):
            raise PydanticCustomError(
                Rule.UNKNOWN_FIELD.value, "{detail}",
                {"detail": "a key YAML reads as true or false (on, off, yes, no): to say when a step starts after another, write `when: started` or `when: ended`"},
            )
        return data


class StepFile(_Strict):
    # The step's Chaos Mesh object is named after it (NAME_PATTERN, like an experiment's name).
    name: Annotated[str, AfterValidator(object_name)]
    # A catalogue experiment's name, or a whole experiment document, checked like a catalogue file.
    experiment: str | dict[str, Any]
    start: StepStart = Field(default_factory=StepStart)


class ScenarioFile(_Strict):
    name: Annotated[str, AfterValidator(object_name)]
    tier: Tier
    title: str = Field(min_length=1)
    description: str = ""
    hypothesis: str = Field(min_length=1)
    steps: list[StepFile] = Field(min_length=1)
    # Tightened for the whole scenario, on top of each step's own.
    thresholds: dict[str, ThresholdOverride] = Field(default_factory=dict)


@dataclass(frozen=True)
class ScenarioStep:
    name: str
    experiment: Experiment
    after: str | None = None
    when: StepEvent = StepEvent.STARTED
    offset: float = 0.0
    # Carried in the scenario file rather than named from the catalogue.
    inline: bool = False


@dataclass(frozen=True)
class StepWindow:
    """When a step's fault is planned to stand, in seconds from the scenario's start."""

    start: float
    end: float

    def overlaps(self, other: StepWindow) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True)
class Scenario:
    """A structurally valid scenario whose steps all resolved; `scenarios` only hands out ones
    that also passed the policy's scenario rules."""

    name: str
    tier: Tier
    title: str
    description: str
    hypothesis: str
    steps: tuple[ScenarioStep, ...]
    source: Path
    threshold_limits: dict[str, float] = field(default_factory=dict)

    def step(self, name: str) -> ScenarioStep:
        return next(s for s in self.steps if s.name == name)

    def timeline(self, policy: SafetyPolicy) -> dict[str, StepWindow]:
        """Each step's planned window, in start order: a fault stands for its effective duration
        (its own, or its tier's maximum), and a step after another's `ended` starts when that
        window ends. At run time `ended` waits for the removal, so steps never start earlier."""
        windows: dict[str, StepWindow] = {}
        for step in _start_order(self.steps):
            if step.after is None:
                start = step.offset
            else:
                before = windows[step.after]
                start = (before.start if step.when is StepEvent.STARTED else before.end) + step.offset
            windows[step.name] = StepWindow(start, start + effective_duration(step.experiment, policy))
        return dict(sorted(windows.items(), key=lambda item: (item[1].start, item[0])))

    def span(self, policy: SafetyPolicy) -> float:
        """Seconds from the first step's start to the last planned end."""
        return max(window.end for window in self.timeline(policy).values())


def _start_order(steps: tuple[ScenarioStep, ...]) -> list[ScenarioStep]:
    """The steps so that each comes after the step it starts after (the references are acyclic)."""
    by_name = {s.name: s for s in steps}
    ordered: list[ScenarioStep] = []
    placed: set[str] = set()

    def place(step: ScenarioStep) -> None:
        if step.name in placed:
            return
        if step.after is not None:
            place(by_name[step.after])
        placed.add(step.name)
        ordered.append(step)

    for step in steps:
        place(step)
    return ordered


def format_offset(seconds: float) -> str:
    return "0s" if seconds == 0 else format_go_duration(seconds)


def _reference_issues(file: str, document: ScenarioFile) -> list[ValidationIssue]:
    """Unique step names, `after` naming another step of the file, and no cycle among them."""
    issues = []
    names = [s.name for s in document.steps]
    for index, name in enumerate(names):
        if names.index(name) != index:
            issues.append(ValidationIssue(file, f"steps[{index}].name", "duplicate-step", f"step {name!r} is named twice; name each step once"))
    after = {s.name: s.start.after for s in document.steps}
    for index, step in enumerate(document.steps):
        if step.start.after is None:
            continue
        if step.start.after == step.name:
            issues.append(ValidationIssue(file, f"steps[{index}].start.after", "step-reference", f"step {step.name!r} cannot start after itself"))
        elif step.start.after not in after:
            issues.append(
                ValidationIssue(
                    file, f"steps[{index}].start.after", "step-reference",
                    f"no step named {step.start.after!r} in this scenario (steps: {', '.join(names)})",
                )
            )
    if issues:
        return issues
    reported: set[frozenset[str]] = set()
    for index, step in enumerate(document.steps):
        path, current = [step.name], after[step.name]
        while current is not None and current not in path:
            path.append(current)
            current = after[current]
        if current == step.name and frozenset(path) not in reported:
            reported.add(frozenset(path))
            issues.append(
                ValidationIssue(
                    file, f"steps[{index}].start.after", "step-cycle",
                    f"steps {' -> '.join([*path, step.name])} each start after the next, so none can start; "
                    "start one of them from the scenario's start (leave out `after`)",
                )
            )
    return issues


def parse_scenario(
    source: Path, data: object, experiments: Mapping[str, Experiment], policy: SafetyPolicy | None
) -> tuple[Scenario | None, list[ValidationIssue]]:
    """Check one scenario document's structure, its references and every inline step (checked
    like a catalogue file, under the policy); all issues at once. The scenario rules are
    `scenario_rules.check_scenario`'s."""
    file = str(source)
    if not isinstance(data, dict):
        return None, [ValidationIssue(file, "", "type", "a scenario file must be a mapping of keys")]
    try:
        document = ScenarioFile.model_validate(data)
    except ValidationError as exc:
        return None, issues_from_pydantic(file, ScenarioFile, exc)
    issues = _reference_issues(file, document)
    steps = []
    for index, step in enumerate(document.steps):
        where = f"steps[{index}].experiment"
        if isinstance(step.experiment, str):
            experiment = experiments.get(step.experiment)
            if experiment is None:
                known = ", ".join(sorted(experiments)) or "none"
                issues.append(
                    ValidationIssue(
                        file, where, "unknown-experiment",
                        f"{step.experiment!r} is not a valid experiment of the catalogue (valid: {known}); "
                        "name one, or write the experiment here as a mapping",
                    )
                )
                continue
            inline = False
        else:
            experiment, found = parse_experiment(source, step.experiment)
            if experiment is not None and policy is not None:
                found = check_experiment(experiment, policy)
            issues += [ValidationIssue(file, f"{where}.{i.field}" if i.field else where, i.rule, i.message) for i in found]
            if experiment is None or found:
                continue
            inline = True
        steps.append(ScenarioStep(step.name, experiment, step.start.after, step.start.when, step.start.offset, inline))
    if issues:
        return None, issues
    return (
        Scenario(
            name=document.name,
            tier=document.tier,
            title=document.title,
            description=document.description,
            hypothesis=document.hypothesis,
            steps=tuple(steps),
            source=source,
            threshold_limits={name: o.limit for name, o in document.thresholds.items()},
        ),
        [],
    )
