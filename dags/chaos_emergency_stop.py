"""
### Emergency stop (manual)

**Press this when chaos must stop now.** Give a reason and trigger. Within seconds it:

1. sets the **halt flag** in the cluster (Lease `chaos-halt` in the chaos namespace): from then on
   every tier run fails at its plan or inject step, naming who halted, when and why;
2. deletes **every Chaos Mesh object this system created**, in every namespace, and waits for
   Chaos Mesh to recover the targets; only objects not recovered within 15 s have their
   finalizer forced off (the alert says so: check those targets by hand);
3. frees the single-experiment lock;
4. sends the `emergency_stop` alert (Slack, e-mail, metrics).

Running tier runs fail by themselves: their monitor sees the fault `gone` and fails the run.
The halt stays until someone runs **chaos_resume** (or `chaosctl resume --reason ...`).
The same stop from a terminal: `chaosctl stop --reason "..."`.
"""

import pendulum

from airflow.sdk import DAG, Param
from chaos_engineering.operators.emergency import EmergencyStopOperator

with DAG(
    dag_id="chaos_emergency_stop",
    schedule=None,
    # A stop button must work the first time it is pressed: never paused on arrival.
    is_paused_upon_creation=False,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"reason": Param(type="string", minLength=3, title="Reason", description="Why chaos must stop (recorded with the halt).")},
    tags=["chaos-engineering", "operations"],
    # A retry is safe: every step of the stop is idempotent.
    default_args={"owner": "sre", "retries": 1, "retry_delay": pendulum.duration(seconds=5)},
    doc_md=__doc__,
):
    EmergencyStopOperator(task_id="emergency_stop", reason="{{ params.reason }}")
