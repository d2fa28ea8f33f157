"""
### Resume chaos experiments (manual)

Clears the **halt flag** an emergency stop set, so the tier DAGs may plan and inject again.
Who resumed and why are recorded in the Lease `chaos-halt` beside who halted it (its
`airflow-chaos.dev/halt-history` annotation keeps both). Check first that nothing is left:
`chaosctl status` lists every fault of ours still in the cluster.
The same from a terminal: `chaosctl resume --reason "..."`.
"""

import pendulum

from airflow.sdk import DAG, Param
from chaos_engineering.operators.emergency import ResumeOperator

with DAG(
    dag_id="chaos_resume",
    schedule=None,
    # A stop button must work the first time it is pressed: never paused on arrival.
    is_paused_upon_creation=False,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"reason": Param(type="string", minLength=3, title="Reason", description="Why it is safe to run experiments again.")},
    tags=["chaos-engineering", "operations"],
    default_args={"owner": "sre", "retries": 1, "retry_delay": pendulum.duration(seconds=5)},
    doc_md=__doc__,
):
    ResumeOperator(task_id="resume", reason="{{ params.reason }}")
