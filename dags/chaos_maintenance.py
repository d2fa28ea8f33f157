"""
### Chaos maintenance (daily)

Housekeeping so that nothing of ours outlives its run:

1. deletes **finished** Chaos Mesh objects of ours (Chaos Mesh stopped and recovered them, or a
   one-shot pod-kill past its duration) whose run is over;
2. deletes **orphans**: objects of ours older than an hour whose run is not live (it holds neither
   the experiment lock nor a fresh heartbeat) — logged as a warning with the run they came from;
3. frees a **stale lock** (its Lease expired: the holder died);
4. deletes heartbeat Leases of faults that no longer exist;
5. writes **pending reports**: finished runs of the tiers and the DR drill (last 7 days, at most
   `reports.retention_days`) without a complete report set (no `report.json`): `result.json` from
   `write_result`'s XCom (key `result`, read through the REST API, connection
   `airflow_api_default`) when storage was down at the run's end, then the report from
   Prometheus' series — each listed in the summary;
6. prunes run report folders older than `reports.retention_days` of the policy (age = the
   result's `written_at`, else the end of the folder's month: never too early).

The task fails only when part of the pass could not be done; the log lists every removal.
"""

import pendulum

from airflow.sdk import DAG
from chaos_engineering.operators.maintenance import ChaosMaintenanceOperator

with DAG(
    dag_id="chaos_maintenance",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["chaos-engineering", "operations"],
    # A retry is safe: every step of the pass is idempotent.
    default_args={"owner": "sre", "retries": 1, "retry_delay": pendulum.duration(minutes=5)},
    doc_md=__doc__,
):
    ChaosMaintenanceOperator(task_id="maintain")
