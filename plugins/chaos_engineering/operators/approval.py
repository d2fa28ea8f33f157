"""Approvals: recorded by policy for the low tier, Airflow's human-in-the-loop tasks otherwise."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.notify import ChaosNotifier
from chaos_engineering.operators.common import policy_or_fail
from chaos_engineering.operators.guard import injection_outlook
from chaos_engineering.policy import SafetyPolicy, Tier
from chaos_engineering.scenario import format_offset
from chaos_engineering.targets import affected_pods
from chaos_engineering.verification import approval_task_id
from chaos_engineering.windows import SpanOutlook, WindowRules, local_text

ROLE_TITLES = {"sre": "SRE", "executive": "executive"}

#: Pods listed by name in an approval request; more are counted. The request must fit one
#: screen: Airflow's Required Action view puts the Approve/Reject buttons below the text.
PODS_SHOWN = 3
#: Target-check problems listed in an approval request; more are counted.
PROBLEMS_SHOWN = 2

_BOUNDS = {
    "max_drop_percent": "{name} ≥ baseline − {limit:g} %",
    "max_increase": "{name} ≤ baseline + {limit:g}{unit}",
    "at_most": "{name} ≤ {limit:g}{unit}",
    "at_least": "{name} ≥ {limit:g}{unit}",
}

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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _listed(items: Sequence[str], shown: int) -> str:
    more = len(items) - shown
    return ", ".join(items[:shown]) + (f" … (+{more} more)" if more > 0 else "")


def _side_text(side: Mapping[str, Any]) -> str:
    value = f" value `{side['value']}`" if side.get("value") not in (None, "") else ""
    where = ", ".join(f"`{n}`" for n in side["namespaces"])
    pods = side["pods"]
    hits = affected_pods(side["mode"], side.get("value"), len(pods))
    listed = f": {_listed(pods, PODS_SHOWN)}" if pods else ""
    return f"mode `{side['mode']}`{value} in {where} hits {hits} of the {len(pods)} pod(s) resolved at plan ({side['ready']} ready){listed}"


def _bound_text(name: str, threshold: Mapping[str, Any]) -> str:
    unit = f" {threshold['unit']}" if threshold.get("unit") else ""
    return _BOUNDS[threshold["rule"]].format(name=name, limit=threshold["limit"], unit=unit)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g} h"


def _problem_lines(radius: Mapping[str, Any]) -> list[str]:
    return [f"- ⚠ Target check at plan: {_listed(radius['problems'], PROBLEMS_SHOWN)}"] if radius["problems"] else []


def _decision_lines(
    plan: Mapping[str, Any],
    policy: SafetyPolicy,
    tier: Tier,
    outlook: SpanOutlook,
    deadline: dt.datetime,
    scheduled: bool,
    earlier: Sequence[tuple[str, Mapping[str, Any] | None]],
    *,
    scenario: bool = False,
) -> list[str]:
    """The lines every request has: the kill switch's bounds, the window's verdict, the deadline and
    the approvals given before this one (of a scenario: for every step and its whole span)."""
    rules = WindowRules.for_tier(policy, tier)
    when = f"at its planned time, {local_text(policy, outlook.at)}" if scheduled else f"once approved (judged at {local_text(policy, outlook.at)})"
    whom, removed, span = (" for every step", ", every step removed", "the whole span") if scenario else ("", "", "the injection")
    lines = [
        f"- Kill switch{whom}, every {policy.safety.check_interval:g} s ({policy.safety.max_failed_reads} unreadable checks in a row "
        f"= breach{removed}): " + "; ".join(_bound_text(n, t) for n, t in plan["thresholds"].items()),
        f"- Window: **{outlook.words}** for {span} {when}; the {tier.value} tier runs {rules.describe()}",
        f"- Answer by {local_text(policy, deadline)}; an approval counts for {_hours(policy.approval_validity(tier))} after it is given",
    ]
    return lines + [f"- Earlier approval: {_answer_text(policy, role, record)}" for role, record in earlier]


def approval_body(
    plan: Mapping[str, Any],
    *,
    policy: SafetyPolicy,
    tier: Tier,
    outlook: SpanOutlook,
    deadline: dt.datetime,
    scheduled: bool = False,
    earlier: Sequence[tuple[str, Mapping[str, Any] | None]] = (),
) -> str:
    """The approval request (Markdown): everything an approver decides on, on one screen.

    `outlook` is the window's verdict for the fault at its injection (`scheduled`: the planned time
    of an announced run; otherwise now, as the run injects once approved), `deadline` when the
    request times out, `earlier` the (role, recorded answer) of the approvals asked before this one.
    The `Object digest:` line is what inject compares with the object it creates: keep it as it is.
    """
    manifest = plan["manifest"]["metadata"]
    radius = plan["blast_radius"]
    sides = radius["sides"]
    radius_text = (
        _side_text(sides[0])
        if len(sides) == 1
        else "; ".join(f"{side['side']}: {_side_text(side)}" for side in sides)
    )
    lines = [
        f"**{plan['title']}** (`{plan['experiment']}`, {plan['tier']} tier): {plan['kind']} "
        f"`{', '.join(plan['actions'])}` on `{plan['target_service']}` for {plan['duration_s']:g} s (enforced by Chaos Mesh)",
        "",
        f"- Hypothesis: {plan['hypothesis']}",
        f"- Blast radius (tier max {radius['max_pods']} pod(s)): {radius_text}",
    ]
    lines += _problem_lines(radius) + _decision_lines(plan, policy, tier, outlook, deadline, scheduled, earlier)
    lines += [
        f"- Object: {manifest['namespace']}/{manifest['name']}",
        f"- Object digest: `{plan['digest']}` (inject creates the object only if it still has this digest)",
        "",
        "Approve: the run goes on to the window guard and pre-flight; any breach removes the fault at once. "
        "Reject or no answer: nothing is injected. Inject re-checks this answer in Airflow's records (who, when, the digest).",
    ]
    return "\n".join(lines) + "\n"


def scenario_approval_body(
    plan: Mapping[str, Any],
    *,
    policy: SafetyPolicy,
    tier: Tier,
    outlook: SpanOutlook,
    deadline: dt.datetime,
    scheduled: bool = False,
    earlier: Sequence[tuple[str, Mapping[str, Any] | None]] = (),
) -> str:
    """A scenario's approval request (Markdown): the tier request's parts for the whole scenario,
    and one line per step with its planned window, what it touches and its object's digest. Inject
    creates a step's object only if its digest is one of those approved: keep each `digest` as it is."""
    radius = plan["blast_radius"]
    lines = [
        f"**{plan['title']}** (scenario `{plan['scenario']}`, {plan['tier']} tier): {len(plan['steps'])} steps over "
        f"{format_offset(plan['duration_s'])}, each fault ended by Chaos Mesh's own duration",
        "",
        f"- Hypothesis: {plan['hypothesis']}",
        f"- Blast radius: at most {radius['peak']} pod(s) at once, resolved at plan (scenario max {radius['max_pods']})",
    ]
    lines += _problem_lines(radius)
    for step in plan["steps"]:
        touched = "; ".join(f"{side['side']}: {_side_text(side)}" for side in step["sides"])
        metadata = step["manifest"]["metadata"]
        lines.append(
            f"- Step `{step['step']}` ({format_offset(step['start_s'])}–{format_offset(step['end_s'])}, {step['starts']}): "
            f"{step['kind']} `{', '.join(step['actions'])}` on `{step['target_service']}`; {touched}; "
            f"object {metadata['name']}, digest `{step['digest']}`"
        )
    lines += _decision_lines(plan, policy, tier, outlook, deadline, scheduled, earlier, scenario=True)
    lines += [
        "",
        "Approve: the run goes on to the window guard and pre-flight; any breach removes every step's fault at once. "
        "Reject or no answer: nothing is injected. Inject re-checks this answer in Airflow's records (who, when, the digests).",
    ]
    return "\n".join(lines) + "\n"


def _answer_text(policy: SafetyPolicy, role: str, record: Mapping[str, Any] | None) -> str:
    title = ROLE_TITLES.get(role, role)
    if not record:
        return f"{title}: no answer recorded"
    user = record.get("responded_by_user") or {}
    who = user.get("name") or user.get("id") or "unknown"
    chosen = ", ".join(record.get("chosen_options") or []) or "nothing"
    answered = record.get("responded_at")
    at = local_text(policy, dt.datetime.fromisoformat(answered)) if answered else "at an unrecorded time"
    return f"{title} `{who}`: {chosen}, {at}"


class TierApprovalOperator(RecordedApprovalOperator):
    """One role's approval of a tier run; its request text is written when it is asked, from the
    run's plan, the earlier answers of the run and the window's verdict at that moment."""

    def __init__(self, *, tier: str, role: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tier = tier
        self.role = role

    def execute(self, context: Any) -> Any:
        self.body = self.request_text(context, _now())
        return super().execute(context)

    def request_text(self, context: Any, now: dt.datetime) -> str:
        ti = context["ti"]
        plan = ti.xcom_pull(task_ids="plan")
        if not plan:
            raise AirflowFailException("the run has no plan: nothing to ask an approval for")
        policy, tier = policy_or_fail(), Tier(self.tier)
        roles = policy.tiers[tier].approvals
        earlier = roles[: roles.index(self.role)] if self.role in roles else []
        outlook, scheduled = injection_outlook(context, policy, tier, plan["duration_s"], now)
        body = scenario_approval_body if "steps" in plan else approval_body
        return body(
            plan,
            policy=policy,
            tier=tier,
            outlook=outlook,
            deadline=now + (self.response_timeout or approval_timeout(policy, tier)),
            scheduled=scheduled,
            earlier=[(role, ti.xcom_pull(task_ids=approval_task_id(role), key=APPROVAL_KEY)) for role in earlier],
        )


def approval_timeout(policy: SafetyPolicy, tier: Tier) -> dt.timedelta:
    """An announced run waits for its window: its approval may take until then."""
    ahead = policy.tiers[tier].announce_ahead or 0
    return dt.timedelta(seconds=max(policy.approval_timeout, ahead))


def human_approval(policy: SafetyPolicy, tier: Tier, role: str, what: str = "experiment", **kwargs: Any) -> RecordedApprovalOperator:
    """One human approval for `role`, answerable only by the policy's approvers of that role;
    `what` the run is (its plan's key naming it: "experiment", or "scenario").

    `fail_on_reject=False`: a rejection skips everything downstream (nothing is injected) while
    the result is still written. No `defaults`: a timeout fails the task; never approve by default.
    """
    return TierApprovalOperator(
        task_id=approval_task_id(role),
        tier=tier.value,
        role=role,
        subject=f"Approve chaos {what} ({ROLE_TITLES.get(role, role)}): "
        "{{ ti.xcom_pull(task_ids='plan')['" + what + "'] }} [" + tier.value + " tier]",
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
