"""The emergency stop and the resume as Airflow tasks (the same code as `chaosctl stop` / `resume`)."""

from __future__ import annotations

from dataclasses import asdict
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.emergency import RECOVERY_TIMEOUT_S, emergency_stop, resume
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.notify import announce
from chaos_engineering.operators.common import policy_or_fail, run_identity


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
    Airflow 3): each run's monitor sees its fault `gone` and fails the sensor, which fails the
    run; a run that has not injected yet fails at the halt check of its plan or inject step.
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
                "requested_by": report.requested_by,
                "reason": report.reason,
                "failed_runs": report.runs,
                "errors": report.errors + [f"finalizer forced on {r.kind} {r.namespace}/{r.name}" for r in report.forced],
            },
        )
        if report.halt is None or report.errors:
            raise AirflowFailException("the emergency stop did not finish cleanly:\n" + "\n".join(report.errors))
        return report.as_dict()


class ResumeOperator(BaseOperator):
    """Clears the halt, recording who resumed and why (who halted it stays on record)."""

    template_fields = ("reason",)
    ui_color = "#e6f4ea"

    def __init__(self, *, reason: str, kubernetes_conn_id: str = ChaosMeshHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reason = reason
        self.kubernetes_conn_id = kubernetes_conn_id

    @cached_property
    def hook(self) -> ChaosMeshHook:
        return ChaosMeshHook(self.kubernetes_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        state = resume(self.hook, policy_or_fail(), requested_by(context), _reason(self.reason))
        self.log.info("%s", state.describe())
        return state.as_dict()
