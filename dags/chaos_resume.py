"""
### Resume chaos experiments (manual, SRE-approved)

Clears the **halt flag** an emergency stop set, so the tier DAGs may plan and inject again, once
an SRE approver of the safety policy has approved it in the run's **Required Actions**. Anyone who
may trigger a DAG can ask; only an SRE's recorded answer resumes (a task marked success is not an
answer: the resume step reads Airflow's own record of who approved). Who resumed, who approved and
why are recorded in the Lease `chaos-halt` beside who halted it (its
`airflow-chaos.dev/halt-history` annotation keeps both). Check first that nothing is left:
`chaosctl status` lists every fault of ours still in the cluster.
The same from a terminal, for someone with access to the cluster: `chaosctl resume --reason "..."`.
"""

import datetime as dt

import pendulum

from airflow.sdk import DAG, Param
from chaos_engineering.operators.approval import RecordedApprovalOperator
from chaos_engineering.operators.emergency import ResumeOperator
from chaos_engineering.policy import load_policy

# Who may approve a resume: the policy's SRE approvers (YAML read at parse, no network).
policy, issues = load_policy()
if policy is None:
    raise ValueError("the safety policy is invalid:\n" + "\n".join(map(str, issues)))

with DAG(
    dag_id="chaos_resume",
    schedule=None,
    # A stop button must work the first time it is pressed: never paused on arrival.
    is_paused_upon_creation=False,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"reason": Param(type="string", minLength=3, title="Reason", description="Why it is safe to run experiments again.")},
    tags=["chaos-engineering", "operations"],
    default_args={"owner": "sre", "retries": 0},
    doc_md=__doc__,
):
    approve = RecordedApprovalOperator(
        task_id="approve_resume",
        subject="Resume chaos experiments? (SRE approval)",
        body=(
            "An emergency stop halted every chaos experiment. Approving clears the halt: the tier DAGs "
            "may plan and inject again.\n\n- Reason given: {{ params.reason }}\n- Asked by: "
            "{{ dag_run.triggering_user_name or 'unknown' }}\n\nCheck `chaosctl status` first: no fault of ours may be left."
        ),
        assigned_users=[{"id": user, "name": user} for user in policy.approvers.get("sre", [])],
        response_timeout=dt.timedelta(seconds=policy.approval_timeout),
        fail_on_reject=True,
    )
    approve >> ResumeOperator(task_id="resume", reason="{{ params.reason }}", approval_task_id="approve_resume", role="sre")
