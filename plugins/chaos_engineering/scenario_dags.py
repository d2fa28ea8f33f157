"""One DAG per scenario file of include/scenarios (the thin factory in dags/chaos_scenarios.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pendulum

from airflow.sdk import DAG, Param
from chaos_engineering.catalogue import Catalogue, ScenarioBook, load_scenarios
from chaos_engineering.scenario import Scenario

DAG_PREFIX = "chaos_scenario_"
TAGS = ["chaos-engineering", "scenario"]


def scenario_dag_id(stem: str) -> str:
    """`chaos_scenario_<file name>`, in the characters a DAG id allows."""
    return DAG_PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


def _doc(scenario: Scenario, catalogue: Catalogue) -> str:
    policy = catalogue.policy
    rows = [
        f"| `{name}` | `{scenario.step(name).experiment.name}` | {window.start:g} s | {window.end:g} s |"
        for name, window in scenario.timeline(policy).items()
    ]
    roles = policy.tiers[scenario.tier].approvals
    return "\n".join([
        f"### Scenario: {scenario.title}",
        "",
        scenario.description,
        "",
        f"**Hypothesis**: {scenario.hypothesis}",
        "",
        f"**Tier** {scenario.tier.value}: " + (f"approved by {' and '.join(roles)} once for the whole scenario" if roles else "approved by policy"),
        f"; {scenario.span(policy):g} s from the first step's start to the last planned end. Manual runs only.",
        "",
        "| step | experiment | planned start | planned end |",
        "|---|---|---|---|",
        *rows,
        "",
        "Chain: plan (every step rendered and dry-run) → dry-run gate → approvals → window guard (whole span) → "
        "pre-flight → lock → inject (every step verified; the first created) → monitor (later steps created when due; "
        "any breach removes every step) → remove every step → recovery → release lock → result → report.",
        "",
        f"Source: `include/scenarios/{scenario.source.name}`; format and rules: docs/SCENARIOS.md.",
    ])


def _invalid_doc(path: Path, issues: list[str]) -> str:
    return "\n".join([
        f"### Invalid scenario: `include/scenarios/{path.name}`",
        "",
        "This scenario does not pass `chaosctl validate`; its run fails at plan and injects nothing:",
        "",
        *(f"- {issue}" for issue in issues),
    ])


def _dag(dag_id: str, doc: str, tags: list[str]) -> DAG:
    return DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        is_paused_upon_creation=False,
        max_active_runs=1,
        params={"dry_run": Param(False, type="boolean", title="Dry run", description="Validate and dry-run every step on the API server; inject nothing.")},
        tags=tags,
        default_args={"owner": "sre", "retries": 0},
        doc_md=doc,
    )


def scenario_dags(catalogue: Catalogue, book: ScenarioBook | None = None) -> dict[str, DAG]:
    """A DAG per scenario file, by DAG id. A valid scenario gets its tier's chain; an invalid one a
    DAG whose only task fails naming every issue (Airflow's import errors are per file, so one bad
    scenario never hides the others)."""
    from chaos_engineering.tier_chain import wire_tier_chain

    book = book if book is not None else load_scenarios(catalogue)
    by_file = {s.source.resolve(): s for s in book.scenarios.values()}
    dags: dict[str, DAG] = {}
    for path in book.files:
        dag_id = scenario_dag_id(path.stem)
        scenario = by_file.get(path.resolve())
        if scenario is not None:
            with _dag(dag_id, _doc(scenario, catalogue), [*TAGS, f"tier:{scenario.tier.value}"]) as dag:
                wire_tier_chain(scenario.tier, catalogue, scenario=scenario.name)
        else:
            issues = [str(i) for i in book.issues if Path(i.file).resolve() == path.resolve()] or ["the file is not a valid scenario"]
            with _dag(dag_id, _invalid_doc(path, issues), [*TAGS, "invalid"]) as dag:
                _refusal(issues)
        dags[dag_id] = dag
    return dags


def _refusal(issues: list[str]) -> Any:
    from airflow.providers.standard.operators.python import PythonOperator

    return PythonOperator(task_id="plan", python_callable=_refuse, op_args=[issues], retries=0)


def _refuse(issues: list[str]) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException("invalid scenario, nothing is injected:\n  " + "\n  ".join(issues))
