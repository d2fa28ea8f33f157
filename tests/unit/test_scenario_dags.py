"""The scenario DAG factory: one DAG per file, the tier chain for a valid scenario, a DAG that can
only fail for an invalid one, which hides no other."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.catalogue import load_catalogue, load_scenarios
from chaos_engineering.operators.plan_scenario import PlanScenarioOperator
from chaos_engineering.operators.scenario_run import InjectScenarioOperator, ScenarioMonitorSensor
from chaos_engineering.scenario_dags import scenario_dag_id, scenario_dags
from chaos_engineering.tier_chain import CHAIN

ROOT = Path(__file__).resolve().parents[2]
APPROVALS = {"low": ["approve_by_policy"], "medium": ["approve_sre"], "high": ["approve_sre", "approve_executive"]}


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(ROOT / "dags"))


def test_every_shipped_scenario_is_a_dag_with_its_tiers_chain(dagbag):
    book = load_scenarios(load_catalogue())
    assert dagbag.import_errors == {}
    assert len(book.scenarios) >= 3
    for scenario in book.scenarios.values():
        dag = dagbag.dags[scenario_dag_id(scenario.source.stem)]
        expected = [t for step in CHAIN for t in (APPROVALS[scenario.tier.value] if step == "approvals" else [step])]
        assert sorted(dag.task_ids) == sorted(expected), dag.dag_id
        for earlier, later in zip(expected, expected[1:]):
            assert earlier in dag.get_task(later).upstream_task_ids, (dag.dag_id, earlier, later)
        assert isinstance(dag.get_task("plan"), PlanScenarioOperator) and dag.get_task("plan").scenario == scenario.name
        assert isinstance(dag.get_task("inject"), InjectScenarioOperator) and dag.get_task("inject").scenario == scenario.name
        assert isinstance(dag.get_task("monitor"), ScenarioMonitorSensor) and dag.get_task("monitor").retries == 0
        assert dag.get_task("remove_fault").is_teardown and dag.get_task("release_lock").is_teardown
        assert dag.schedule is None and dag.max_active_runs == 1 and dag.params["dry_run"] is False
        assert {"chaos-engineering", "scenario", f"tier:{scenario.tier.value}"} <= set(dag.tags)
        for name in (s.name for s in scenario.steps):
            assert f"`{name}`" in dag.doc_md


def test_an_invalid_scenario_is_a_dag_that_can_only_fail_and_hides_no_other(tmp_path):
    folder = tmp_path / "scenarios"
    shutil.copytree(ROOT / "include" / "scenarios", folder)
    (folder / "broken.yaml").write_text("name: broken\ntier: medium\ntitle: t\ndescription: d\nhypothesis: h\nsteps:\n  - name: a\n    experiment: no-such-experiment\n")
    catalogue = load_catalogue()
    dags = scenario_dags(catalogue, load_scenarios(catalogue, [folder]))
    assert set(dags) == {scenario_dag_id(p.stem) for p in folder.glob("*.yaml")}
    broken = dags["chaos_scenario_broken"]
    assert broken.task_ids == ["plan"] and "invalid" in broken.tags
    assert "no-such-experiment" in broken.doc_md
    with pytest.raises(AirflowFailException, match="invalid scenario, nothing is injected:\n  .*no-such-experiment"):
        broken.get_task("plan").python_callable(*broken.get_task("plan").op_args)
    assert "inject" in dags["chaos_scenario_cache-then-database"].task_ids


def test_dag_ids_are_valid_for_any_file_name():
    assert scenario_dag_id("zone outage (eu)") == "chaos_scenario_zone_outage__eu_"
    assert scenario_dag_id("cache-then-database") == "chaos_scenario_cache-then-database"
