"""
### High-risk chaos experiments

Monthly, off-hours only, one experiment of the high tier (network partition between services,
multi-pod failure, database failover). The run is created **72 hours ahead**: an **SRE and then
an executive** approve on this run's page, and the injection waits for its planned time. A
manual run is refused in business hours, always. Faults last at most 2 minutes.

Chain: plan → dry-run gate → SRE approval → executive approval → window guard (waits for the
planned time) → pre-flight → lock → inject → monitor (kill on breach) → remove fault → recovery
(immediate, short-term, business) → release lock → result. Catalogue:
`include/experiments/high/`; rules: `include/safety_policy.yaml`.

**Refused at plan**: a real run whose fault cannot inject in the tier's window fails at plan,
before anyone is asked, naming the window and the first time it could run (the policy's time
zone). For a scheduled run that is its planned time; a manual run injects once approved, so it is
judged now (the shipped policy allows the high tier no manual override; a policy that did would
see "manual override will be used" in the plan instead). A dry run is never refused for its window. The executive's request names who gave the SRE approval.

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

TIER = Tier.HIGH
catalogue = catalogue_for_dag()

with DAG(
    dag_id="chaos_high_risk",
    schedule=SafeWindowTimetable.for_tier(catalogue.policy, TIER),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    is_paused_upon_creation=False,
    max_active_runs=1,
    params=tier_params(catalogue, TIER),
    tags=["chaos-engineering", "tier:high"],
    default_args={"owner": "sre", "retries": 0},
    doc_md=__doc__,
):
    wire_tier_chain(TIER, catalogue)
