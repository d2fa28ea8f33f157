"""
### Disaster-recovery drill: database failover

Monthly, under the **high tier's rules**: announced ahead, an **SRE and then an executive**
approve on this run's page, off-hours only, never in business hours. The experiment is the one
the policy's `disaster_recovery` section names (by default `database-failover`: the primary
database pod is killed, the replica must take over).

While the lock is held, `dr_probe` writes canary bookings through the platform's DR endpoint
(connection `dr_probe_default`); the injection waits until it has a clean baseline. After the
failover it reads every acknowledged canary back and measures:

- **RTO**: from the last write before the outage to the first write after it;
- **RPO**: the window of acknowledged bookings missing after the failover;

against the policy's targets. A missed or unmeasurable target fails the run; the result and the
report carry the figures. Everything else (kill switch, fault removal, recovery stages, lock) is
the high tier's chain, including its refusal at plan of a run that cannot inject in the window.
Runbook: `docs/RUNBOOK.md`, "Disaster-recovery drill". The schedule runs only when the safety
policy switches it on (`disaster_recovery.scheduled: true`); otherwise manual drills only. The DAG
arrives unpaused, and unpausing it (as the trigger dialog does) never turns the schedule on.
"""

import pendulum

from airflow.sdk import DAG
from chaos_engineering.policy import Tier
from chaos_engineering.tier_chain import catalogue_for_dag, drill_params, wire_tier_chain
from chaos_engineering.timetables import SafeWindowTimetable

catalogue = catalogue_for_dag()
drill = catalogue.policy.disaster_recovery

# A policy without a disaster_recovery section has no drill: no DAG, no import error.
if drill is not None:
    with DAG(
        dag_id="chaos_dr_drill",
        schedule=SafeWindowTimetable.for_tier(catalogue.policy, Tier.HIGH, cron=drill.schedule, scheduled=drill.scheduled),
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        is_paused_upon_creation=False,
        max_active_runs=1,
        params=drill_params(catalogue),
        tags=["chaos-engineering", "tier:high", "disaster-recovery"],
        default_args={"owner": "sre", "retries": 0},
        doc_md=__doc__,
    ):
        wire_tier_chain(Tier.HIGH, catalogue, drill=True)
