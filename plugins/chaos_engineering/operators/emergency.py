"""The emergency stop and the resume as Airflow tasks (the same code as `chaosctl stop` / `resume`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.emergency import RECOVERY_TIMEOUT_S, emergency_stop, resume
from chaos_engineering.hooks.airflow_api import AirflowApiHook
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.notify import announce
from chaos_engineering.operators.common import policy_or_fail, run_identity
from chaos_engineering.verification import verify_answer


def requested_by(context: Any) -> str:
    """The user who triggered the run (Airflow 3 records it), else the run itself."""
    dag_run = context["dag_run"]
    user = getattr(dag_run, "triggering_user_name", None)
    dag_id, run_id = run_identity(context)
    return f"{user} (Airflow {dag_id}/{run_id})" if user else f"Airflow {dag_id}/{run_id}"


def _reason(reason: Any) -> str:
    text = str(reason or "").strip()
    if not text:
        raise AirflowFailException("say why: the `reason` parameter is empty (it is recorded with the halt)")
    return text


class EmergencyStopOperator(BaseOperator):
    """Halts, removes every chaos object of ours, frees the lock and alerts.

    Running tier runs are not failed through Airflow's database (a task cannot reach it in
    Airflow 3): each run's monitor reads the halt, removes its fault and fails its sensor naming
    who stopped it, which fails the run; a run that has not injected yet fails at the halt check
    of its plan or inject step (inject also re-reads it after its create). The stop sweeps until
    one API request timeout after the halt, so it takes at least that long (emergency.IN_FLIGHT_S).
    The task itself fails when any part of the stop did not succeed (after alerting).
    """

    template_fields = ("reason",)
    ui_color = "#d93025"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        reason: str,
        kubernetes_conn_id: str = ChaosMeshHook.default_conn_name,
        recovery_timeout_s: float = RECOVERY_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reason = reason
        self.kubernetes_conn_id = kubernetes_conn_id
        self.recovery_timeout_s = recovery_timeout_s

    @cached_property
    def hook(self) -> ChaosMeshHook:
        return ChaosMeshHook(self.kubernetes_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        reason = _reason(self.reason)
        report = emergency_stop(self.hook, policy_or_fail(), requested_by(context), reason, recovery_timeout_s=self.recovery_timeout_s)
        self.log.warning("%s", report.summary())
        announce(
            "emergency_stop",
            context=context,
            extra={
                "removed": [asdict(r) for r in report.removed],
                "forced": [asdict(r) for r in report.forced],
                "requested_by": report.requested_by,
                "reason": report.reason,
                "failed_runs": report.runs,
                "errors": report.errors + [f"finalizer clean-up forced on {r.kind} {r.namespace}/{r.name}: check its targets" for r in report.forced],
            },
        )
        if report.halt is None or report.errors:
            raise AirflowFailException("the emergency stop did not finish cleanly:\n" + "\n".join(report.errors))
        return report.as_dict()


class ResumeOperator(BaseOperator):
    """Clears the halt once an SRE approved it, recording who resumed and why.

    The approval is read from Airflow's own human-in-the-loop record of `approval_task_id` (never
    from task states: a task marked success is no approval); it must be "Approve", by an approver
    of `role` in the policy now, within the policy's `approval_valid_for`.
    """

    template_fields = ("reason",)
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        reason: str,
        approval_task_id: str,
        role: str = "sre",
        kubernetes_conn_id: str = ChaosMeshHook.default_conn_name,
        airflow_api_conn_id: str = AirflowApiHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reason = reason
        self.approval_task_id = approval_task_id
        self.role = role
        self.kubernetes_conn_id = kubernetes_conn_id
        self.airflow_api_conn_id = airflow_api_conn_id

    @cached_property
    def hook(self) -> ChaosMeshHook:
        return ChaosMeshHook(self.kubernetes_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        policy = policy_or_fail()
        reason = _reason(self.reason)
        dag_id, run_id = run_identity(context)
        try:
            record = AirflowApiHook(self.airflow_api_conn_id).hitl_detail(dag_id, run_id, self.approval_task_id)
        except Exception as exc:
            raise AirflowFailException(f"not resuming: cannot read Airflow's record of the approval ({exc})") from None
        approval, problems = verify_answer(
            policy, self.role, self.approval_task_id, record, valid_for=policy.approval_valid_for, now=dt.datetime.now(dt.timezone.utc)
        )
        if approval is None:
            raise AirflowFailException("not resuming, the halt stays set:\n  " + "\n  ".join(problems))
        state = resume(self.hook, policy, f"{requested_by(context)}, approved by {approval.user}", reason)
        self.log.info("%s", state.describe())
        return state.as_dict() | {"approval": approval.as_dict()}
