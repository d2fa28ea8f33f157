"""
### Low-risk chaos experiments

Every 6 hours outside business hours, one experiment of the low tier (pod restart, minor
latency, CPU stress on non-critical services), **approved by policy**. Faults last at most
10 minutes and hit at most one pod. Trigger it by hand with the form to pick an experiment or
to dry-run one; a manual run outside the window is allowed and recorded as an override.

Chain: plan → dry-run gate → approval (policy) → window guard → pre-flight → lock → inject →
monitor (kill on breach) → remove fault → recovery (immediate, short-term, business) → release
lock → result. Catalogue: `include/experiments/low/`; rules: `include/safety_policy.yaml`.

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

TIER = Tier.LOW
catalogue = catalogue_for_dag()

with DAG(
    dag_id="chaos_low_risk",
    schedule=SafeWindowTimetable.for_tier(catalogue.policy, TIER),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    is_paused_upon_creation=False,
    max_active_runs=1,
    params=tier_params(catalogue, TIER),
    tags=["chaos-engineering", "tier:low"],
    default_args={"owner": "sre", "retries": 0},
    doc_md=__doc__,
):
    wire_tier_chain(TIER, catalogue)
