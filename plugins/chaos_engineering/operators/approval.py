"""Approvals: recorded by policy for the low tier, Airflow's human-in-the-loop tasks otherwise."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseOperator
from chaos_engineering.notify import ChaosNotifier
from chaos_engineering.policy import SafetyPolicy, Tier
from chaos_engineering.verification import approval_task_id

ROLE_TITLES = {"sre": "SRE", "executive": "executive"}

APPROVAL_BODY = """\
**{{ ti.xcom_pull(task_ids='plan')['title'] }}** (`{{ ti.xcom_pull(task_ids='plan')['experiment'] }}`,
{{ ti.xcom_pull(task_ids='plan')['tier'] }} tier, {{ ti.xcom_pull(task_ids='plan')['kind'] }})

- Target service: {{ ti.xcom_pull(task_ids='plan')['target_service'] }}
- Hypothesis: {{ ti.xcom_pull(task_ids='plan')['hypothesis'] }}
- Fault duration: {{ ti.xcom_pull(task_ids='plan')['duration_s'] | int }} s (enforced by Chaos Mesh)
- Object: {{ ti.xcom_pull(task_ids='plan')['manifest']['metadata']['namespace'] }}/{{ ti.xcom_pull(task_ids='plan')['manifest']['metadata']['name'] }}
- Object digest: `{{ ti.xcom_pull(task_ids='plan')['digest'] }}` (inject creates the object only if it still has this digest)

Approving lets the run continue to the window guard and the pre-flight health check; any
threshold breach removes the fault at once. Rejecting, or no answer in time, injects nothing.
Right before the fault, inject checks this answer in Airflow's records: who answered (an approver
of this role, not the person who gave another approval of this run), when (it expires after the
policy's `approval_valid_for`) and the digest above.
"""


#: Every approval step records its answer under this XCom key, approved or rejected.
APPROVAL_KEY = "approval"


class PolicyApprovalOperator(BaseOperator):
    """The low tier needs no human: the approval is recorded as given by the policy."""

    ui_color = "#e8f0fe"

    def execute(self, context: Any) -> dict[str, Any]:
        record = {
            "chosen_options": ["Approve"],
            "params_input": {},
            "responded_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "responded_by_user": {"id": "policy", "name": "approved by policy (low tier)"},
        }
        context["ti"].xcom_push(key=APPROVAL_KEY, value=record)
        return record


class RecordedApprovalOperator(ApprovalOperator):
    """Airflow's approval task, recording who answered what and when, also on a rejection.

    On "Reject" the parent skips downstream by raising, so its return value is never stored;
    the record is pushed first, under its own key, for the run's result.
    """

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" not in event:
            responded_at = event.get("responded_at")
            context["ti"].xcom_push(
                key=APPROVAL_KEY,
                value={
                    "chosen_options": event.get("chosen_options"),
                    "params_input": event.get("params_input") or {},
                    "responded_at": responded_at.isoformat() if hasattr(responded_at, "isoformat") else responded_at,
                    "responded_by_user": event.get("responded_by_user"),
                },
            )
        return super().execute_complete(context, event)


def approval_timeout(policy: SafetyPolicy, tier: Tier) -> dt.timedelta:
    """An announced run waits for its window: its approval may take until then."""
    ahead = policy.tiers[tier].announce_ahead or 0
    return dt.timedelta(seconds=max(policy.approval_timeout, ahead))


def human_approval(policy: SafetyPolicy, tier: Tier, role: str, **kwargs: Any) -> RecordedApprovalOperator:
    """One human approval for `role`, answerable only by the policy's approvers of that role.

    `fail_on_reject=False`: a rejection skips everything downstream (nothing is injected) while
    the result is still written. No `defaults`: a timeout fails the task; never approve by default.
    """
    return RecordedApprovalOperator(
        task_id=approval_task_id(role),
        subject=f"Approve chaos experiment ({ROLE_TITLES.get(role, role)}): "
        "{{ ti.xcom_pull(task_ids='plan')['experiment'] }} [" + tier.value + " tier]",
        body=APPROVAL_BODY,
        assigned_users=[{"id": user, "name": user} for user in policy.approvers[role]],
        response_timeout=approval_timeout(policy, tier),
        fail_on_reject=False,
        retries=0,
        notifiers=[
            ChaosNotifier(
                event="approval_requested",
                extra={"role": ROLE_TITLES.get(role, role), "timeout_s": approval_timeout(policy, tier).total_seconds()},
            )
        ],
        **kwargs,
    )
