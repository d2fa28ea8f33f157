"""The smallest DAG that uses every Airflow process the harness starts: worker, HITL approval, triggerer."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.providers.standard.sensors.time_delta import WaitSensor
from airflow.sdk import DAG, task

with DAG(
    dag_id="hitl_smoke",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["e2e", "smoke"],
    default_args={"owner": "e2e"},
    doc_md="Proves the end-to-end harness: plan, approval by sre-oncall, a deferred wait, done.",
) as dag:

    @task
    def plan(**context) -> dict:
        return {"experiment": context["params"].get("experiment", "smoke"), "run_id": context["run_id"]}

    approval = ApprovalOperator(
        task_id="approve",
        subject="Run the smoke experiment?",
        body="Harness smoke test: approve to continue, reject to stop.",
        assigned_users=[{"id": "sre-oncall", "name": "sre-oncall"}],
        fail_on_reject=True,
        response_timeout=timedelta(minutes=10),
    )

    # Measured from the task's own start, so it always defers: the triggerer must run it.
    settle = WaitSensor(task_id="settle", time_to_wait=timedelta(seconds=3), deferrable=True)

    @task
    def finish(planned: dict) -> str:
        return f"done {planned['experiment']}"

    planned = plan()
    planned >> approval >> settle >> finish(planned)
