"""
### Medium-risk chaos experiments

Weekly in the maintenance window, one experiment of the medium tier (single pod termination,
database connection-pool stress, memory pressure, cache failure). **An SRE approves** on this
run's page (Required actions); rejection or no answer within the timeout injects nothing.
Faults last at most 5 minutes and hit at most one pod.

Chain: plan → dry-run gate → SRE approval → window guard → pre-flight → lock → inject →
monitor (kill on breach) → remove fault → recovery (immediate, short-term, business) → release
lock → result. Catalogue: `include/experiments/medium/`; rules: `include/safety_policy.yaml`.
"""

import pendulum

from airflow.sdk import DAG
from chaos_engineering.policy import Tier
from chaos_engineering.tier_chain import catalogue_for_dag, tier_params, wire_tier_chain
from chaos_engineering.timetables import SafeWindowTimetable

TIER = Tier.MEDIUM
catalogue = catalogue_for_dag()

with DAG(
    dag_id="chaos_medium_risk",
    schedule=SafeWindowTimetable.for_tier(catalogue.policy, TIER),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params=tier_params(catalogue, TIER),
    tags=["chaos-engineering", "tier:medium"],
    default_args={"owner": "sre", "retries": 0},
    doc_md=__doc__,
):
    wire_tier_chain(TIER, catalogue)
