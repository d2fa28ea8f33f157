"""
### Medium-risk chaos experiments

Weekly in the maintenance window, one experiment of the medium tier (single pod termination,
database connection-pool stress, memory pressure, cache failure). **An SRE approves** on this
run's page (Required actions); rejection or no answer within the timeout injects nothing.
Faults last at most 5 minutes and hit at most one pod.

Chain: plan → dry-run gate → SRE approval → window guard → pre-flight → lock → inject →
monitor (kill on breach) → remove fault → recovery (immediate, short-term, business) → release
lock → result. Catalogue: `include/experiments/medium/`; rules: `include/safety_policy.yaml`.

The approval request says what is approved: action, blast radius with the pods resolved at plan,
kill-switch bounds, when it expires, and the window's verdict when asked: *in window*, *manual
override will be used* (a manual run outside the window, recorded), or *cannot run before* a time.

**Trigger form**: *Experiment* defaults to the rotation (the tier's next experiment); the list
shows each experiment's action, target, blast radius and duration. *Dry run* validates and
dry-runs on the API server, injecting nothing.

**Schedule**: runs only when the safety policy switches it on (`tiers.<tier>.scheduled: true`, a
reviewed change); otherwise manual runs only. The DAG arrives unpaused, and pausing or unpausing
it (as the trigger dialog's "Unpause on trigger" does) never turns the schedule on.
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
    is_paused_upon_creation=False,
    max_active_runs=1,
    params=tier_params(catalogue, TIER),
    tags=["chaos-engineering", "tier:medium"],
    default_args={"owner": "sre", "retries": 0},
    doc_md=__doc__,
):
    wire_tier_chain(TIER, catalogue)
