"""
### Chaos experiments started by deploys

A deploy announces itself as an Airflow asset event on `chaos://deploys/<service>` (asset
`deploy:<service>`): `chaosctl deployed SERVICE --version V`, or the REST API's
`POST /api/v2/assets/events` with `{"asset_id": ..., "extra": {"version": "V"}}`. This DAG runs
on any of those assets and triggers, for each deploy, the tier DAG of every experiment whose
`on_deploy` names the service, with `{"experiment", "dry_run": false, "deploy": {...}}`.

Chain: map deploys (the newest event of each service; the catalogue as it is now) → trigger the
tier runs (mapped, one per experiment; never waited for).

**A deploy bypasses nothing.** The tier run goes through its whole chain: approvals (the low tier's
by policy, the medium and high tiers' by people), window guard, pre-flight, lock. It never gets
the manual override of the window: outside its window it is refused, as a scheduled run is.
The run's result and report name the deploy (service, version).

**Schedule**: only the assets some valid experiment declares (`on_deploy` in
`include/experiments/`); none declared: no schedule. Arrives unpaused.
"""

import pendulum

from airflow.sdk import DAG
from chaos_engineering.deploys import DAG_ID, deploy_schedule, wire_on_deploy
from chaos_engineering.tier_chain import catalogue_for_dag

with DAG(
    dag_id=DAG_ID,
    schedule=deploy_schedule(catalogue_for_dag()),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    is_paused_upon_creation=False,
    # Deploys queue their events meanwhile: the next run takes them all, the newest per service.
    max_active_runs=1,
    tags=["chaos-engineering", "deploys"],
    default_args={"owner": "sre", "retries": 0},
    doc_md=__doc__,
):
    wire_on_deploy()
