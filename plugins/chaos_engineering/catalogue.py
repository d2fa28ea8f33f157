"""The experiment catalogue and the scenarios: every file of `include/experiments` and
`include/scenarios`, checked against the policy."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from chaos_engineering.experiment import Experiment, parse_experiment
from chaos_engineering.issues import ValidationIssue, with_lines
from chaos_engineering.policy import DEFAULT_POLICY_NAME, SafetyPolicy, Tier, default_include_dir, load_policy
from chaos_engineering.rules import check_experiment
from chaos_engineering.scenario import Scenario, parse_scenario
from chaos_engineering.scenario_rules import check_scenario
from chaos_engineering.yamlload import EMPTY_FILE, Document, YAMLFileError, read_documents

SUFFIXES = (".yaml", ".yml")
T = TypeVar("T", Experiment, Scenario)


def default_catalogue_dir() -> Path:
    return default_include_dir() / "experiments"


@dataclass
class Catalogue:
    """Valid experiments by name, and every issue found. A file with an issue is never listed."""

    policy: SafetyPolicy | None
    experiments: dict[str, Experiment] = field(default_factory=dict)
    issues: list[ValidationIssue] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    policy_file: Path | None = None  # the policy file read

    @property
    def ok(self) -> bool:
        return not self.issues

    def for_tier(self, tier: Tier) -> list[Experiment]:
        return sorted((e for e in self.experiments.values() if e.tier is tier), key=lambda e: e.name)

    def get(self, name: str) -> Experiment | None:
        return self.experiments.get(name)


def experiment_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        else:
            files.append(path)
    return files


def _read(path: Path, what: str = "experiment") -> tuple[Document | None, list[ValidationIssue]]:
    try:
        documents = [d for d in read_documents(path) if d.data is not None]
    except OSError as exc:
        return None, [ValidationIssue(str(path), "", "unreadable", f"cannot read the file: {exc.strerror}")]
    except YAMLFileError as exc:
        return None, [ValidationIssue(str(path), exc.field, exc.rule, exc.message, exc.line)]
    if not documents:
        return None, [ValidationIssue(str(path), "", f"one-{what}", f"{EMPTY_FILE}; write one {what} in it")]
    if len(documents) != 1:
        return None, [
            ValidationIssue(
                str(path), "", f"one-{what}", f"a file holds exactly one {what}, found {len(documents)} documents; the second starts here",
                documents[1].line,
            )
        ]
    return documents[0], []


def load_catalogue(paths: Iterable[Path] | None = None, policy_path: Path | None = None) -> Catalogue:
    """Load experiments from files or folders (None: the catalogue) under the policy.

    An invalid policy rejects every experiment: nothing may run under rules we cannot read.
    """
    policy_path = policy_path or default_include_dir() / DEFAULT_POLICY_NAME
    policy, policy_issues = load_policy(policy_path)
    files = experiment_files(list(paths) if paths is not None else [default_catalogue_dir()])
    catalogue = Catalogue(policy=policy, issues=list(policy_issues), files=files, policy_file=policy_path)
    parsed: list[tuple[Experiment, bool]] = []  # every structurally valid experiment, and whether it passed
    for path in files:
        document, issues = _read(path)
        if document is not None:
            experiment, issues = parse_experiment(path, document.data)
            if experiment is not None:
                issues = check_experiment(experiment, policy) if policy is not None else []
                parsed.append((experiment, not issues and policy is not None))
            issues = with_lines(issues, document.line_of)
        catalogue.issues += issues

    valid, issues = _unique_names(parsed, "experiment")
    catalogue.experiments.update(valid)
    catalogue.issues += issues
    if policy is not None and policy.disaster_recovery is not None and paths is None:
        catalogue.issues += _drill_issues(catalogue, policy_path)
    return catalogue


def _unique_names(parsed: list[tuple[T, bool]], what: str) -> tuple[dict[str, T], list[ValidationIssue]]:
    """The valid ones of `parsed` (each read item and whether it passed) by name, and an issue in
    every file of a name more than one file uses. Names are checked across every readable item,
    valid or not, so fixing one file never silently makes two share a name."""
    by_name: dict[str, list[tuple[T, bool]]] = defaultdict(list)
    for item, passed in parsed:
        by_name[item.name].append((item, passed))
    valid: dict[str, T] = {}
    issues: list[ValidationIssue] = []
    for name, same in by_name.items():
        if len(same) > 1:
            sources = ", ".join(str(item.source) for item, _ in same)
            issues += [
                ValidationIssue(
                    str(item.source), "name", "duplicate-name", f"{what} {name!r} is used by more than one file ({sources}); names must be unique",
                    _line_in(item.source, "name"),
                )
                for item, _ in same
            ]
        elif same[0][1]:
            valid[name] = same[0][0]
    return valid, issues


def _drill_issues(catalogue: Catalogue, policy_path: Path) -> list[ValidationIssue]:
    """The drill's experiment must be a valid high-tier experiment of the whole catalogue."""
    name = catalogue.policy.disaster_recovery.experiment
    experiment = catalogue.get(name)
    if experiment is None:
        why = f"names {name!r}, which is not a valid experiment of the catalogue"
    elif experiment.tier is not Tier.HIGH:
        why = f"names {name!r} of tier {experiment.tier.value!r}; a drill runs under the high tier's rules only"
    else:
        return []
    field = "disaster_recovery.experiment"
    return [ValidationIssue(str(policy_path), field, "drill-experiment", why, _line_in(policy_path, field))]


def _line_in(path: Path, field: str) -> int | None:
    """The line of `field` in a file read before: for the issues found once every file is read
    (read again then rather than keeping every file's nodes for the rare issue that needs them)."""
    try:
        documents = [d for d in read_documents(path) if d.data is not None]
    except (OSError, YAMLFileError):
        return None
    return documents[0].line_of(field) if documents else None


# --- scenarios: include/scenarios, each step an experiment of the catalogue (or inline) ---------


def default_scenarios_dir() -> Path:
    return default_include_dir() / "scenarios"


@dataclass
class ScenarioBook:
    """Valid scenarios by name, and every issue found. A file with an issue is never listed."""

    scenarios: dict[str, Scenario] = field(default_factory=dict)
    issues: list[ValidationIssue] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


def is_scenario_file(path: Path) -> bool:
    """Whether a file holds a scenario (a mapping with `steps`) rather than an experiment; a file
    that cannot be read is an experiment's, whose loader reports why."""
    document, _ = _read(path)
    return document is not None and isinstance(document.data, dict) and "steps" in document.data


def load_scenarios(catalogue: Catalogue, paths: Iterable[Path] | None = None) -> ScenarioBook:
    """Load scenarios from files or folders (None: include/scenarios), their steps named from
    `catalogue`, under its policy. An invalid policy rejects every scenario."""
    folder = default_scenarios_dir()
    files = experiment_files(list(paths) if paths is not None else [folder] if folder.is_dir() else [])
    book = ScenarioBook(files=files)
    parsed: list[tuple[Scenario, bool]] = []
    for path in files:
        document, issues = _read(path, what="scenario")
        if document is not None:
            scenario, issues = parse_scenario(path, document.data, catalogue.experiments, catalogue.policy)
            if scenario is not None and catalogue.policy is not None:
                issues = check_scenario(scenario, catalogue.policy)
            if scenario is not None:
                parsed.append((scenario, not issues and catalogue.policy is not None))
            issues = with_lines(issues, document.line_of)
        book.issues += issues
    book.scenarios, issues = _unique_names(parsed, "scenario")
    book.issues += issues
    return book
