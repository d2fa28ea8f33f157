"""
### Chaos scenarios (one DAG per file of `include/scenarios/`)

Each scenario file becomes a DAG `chaos_scenario_<file name>`: several faults of one run, started
at planned offsets, approved once, one lock, one kill switch removing every step on a breach
(docs/SCENARIOS.md). A file that fails `chaosctl validate` becomes a DAG whose only task fails
naming every issue: it injects nothing and hides no other scenario.

(Airflow's DAG processor only parses files that mention "airflow" and "dag": this one does.)
"""

from chaos_engineering.scenario_dags import scenario_dags
from chaos_engineering.tier_chain import catalogue_for_dag

globals().update(scenario_dags(catalogue_for_dag()))
