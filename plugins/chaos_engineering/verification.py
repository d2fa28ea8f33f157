"""What the inject step verifies itself, from sources a DAG user cannot edit, right before a fault.

Everything upstream of inject (XCom values, task states) can be changed by an account with
Airflow's ordinary `user` role: it may mark a task success, clear it, or PATCH an XCom. So inject
trusts none of it. The object comes from the catalogue and policy as they are now, the approvals
from Airflow's human-in-the-loop records, the window from the clock, the targets from the cluster.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from chaos_engineering.policy import SafetyPolicy, Tier
from chaos_engineering.render import ANNOTATION_APPROVALS

DIGEST_PREFIX = "sha256:"
_DIGEST = re.compile(r"sha256:[0-9a-f]{16,64}")
APPROVE = "Approve"


class VerificationFailed(Exception):
    """Inject refuses: nothing was created. The message lists every difference found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "inject refused, nothing was created:\n  " + "\n  ".join(problems) + "\nTrigger a new run once the cause is fixed."
        )


def object_digest(manifest: Mapping[str, Any]) -> str:
    """A digest of the exact object to create, as shown to approvers and compared at inject.

    The approvals annotation is left out: inject fills it with the approvals it verified.
    """
    metadata = dict(manifest.get("metadata") or {})
    metadata["annotations"] = {k: v for k, v in (metadata.get("annotations") or {}).items() if k != ANNOTATION_APPROVALS}
    canonical = json.dumps(dict(manifest, metadata=metadata), sort_keys=True, separators=(",", ":"), default=str)
    return DIGEST_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def digests_in(text: str | None) -> list[str]:
    return _DIGEST.findall(text or "")


def approval_task_id(role: str) -> str:
    """The task that asks `role` for its approval (one per role of the tier)."""
    return f"approve_{role}"


@dataclass(frozen=True)
class VerifiedApproval:
    """One approval as Airflow recorded it: who answered what, when, for which role."""

    role: str
    user: str
    option: str
    responded_at: str
    task_id: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _responded_at(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def verify_answer(
    policy: SafetyPolicy,
    role: str,
    task_id: str,
    record: Mapping[str, Any] | None,
    *,
    valid_for: float,
    now: dt.datetime,
    digest: str | None = None,
) -> tuple[VerifiedApproval | None, list[str]]:
    """One human answer as Airflow recorded it for `task_id`, and every reason it is no approval.

    Counts only: an answer Airflow recorded (a task marked success, cleared or skipped has none),
    "Approve", by one of the role's approvers in the policy as it is now, at most `valid_for`
    seconds ago, and (with `digest`) to a request that showed that object digest.
    """
    label = f"{role} approval"
    if not record or not record.get("response_received"):
        return None, [
            f"{label}: Airflow has no answer recorded for task {task_id!r} of this run "
            "(a task marked success, cleared or skipped is not an approval)"
        ]
    user = str((record.get("responded_by_user") or {}).get("id") or "")
    chosen = list(record.get("chosen_options") or [])
    answered = _responded_at(record.get("responded_at"))
    problems = []
    if chosen != [APPROVE]:
        problems.append(f"{label}: {user or 'nobody'} answered {chosen or 'nothing'}, not [{APPROVE!r}]")
    if user not in policy.approvers.get(role, []):
        problems.append(
            f"{label}: answered by {user or 'no user'!r}, who is not an approver of role {role!r} in the policy "
            f"now (approvers: {', '.join(policy.approvers.get(role, [])) or 'none'})"
        )
    if answered is None:
        problems.append(f"{label}: Airflow recorded no time for the answer")
    elif (now - answered).total_seconds() > valid_for:
        problems.append(
            f"{label}: answered at {answered.isoformat()}, more than {valid_for:g} s ago (the policy's "
            "approval_valid_for); an approval does not carry over to a later action"
        )
    if digest is not None and digest not in (shown := digests_in(record.get("body"))):
        problems.append(
            f"{label}: the request approved showed object digest {', '.join(shown) or 'none'}, but the object "
            f"to create now is {digest}: the experiment, the catalogue or the policy differs from what was approved"
        )
    if problems:
        return None, problems
    return VerifiedApproval(role, user, APPROVE, answered.isoformat(), task_id), []


def verify_approvals(
    policy: SafetyPolicy,
    tier: Tier,
    records: Mapping[str, Mapping[str, Any] | None],
    digest: str,
    now: dt.datetime,
) -> tuple[list[VerifiedApproval], list[str]]:
    """The tier's approvals from Airflow's records of this run (task id -> HITL record or None),
    and every reason they do not count (`verify_answer` for each role, within the tier's
    `approval_valid_for`, showing `digest`); several roles need as many different people."""
    approvals: list[VerifiedApproval] = []
    problems: list[str] = []
    for role in policy.tiers[tier].approvals:
        task_id = approval_task_id(role)
        approval, refused = verify_answer(
            policy, role, task_id, records.get(task_id), valid_for=policy.approval_validity(tier), now=now, digest=digest
        )
        problems += refused
        approvals += [approval] if approval else []
    by_user: dict[str, list[str]] = {}
    for approval in approvals:
        by_user.setdefault(approval.user, []).append(approval.role)
    problems += [
        f"{user} answered the {' and '.join(roles)} approvals: approvals of different roles must come from different people"
        for user, roles in by_user.items()
        if len(roles) > 1
    ]
    return approvals, problems


def policy_approval(tier: Tier, now: dt.datetime) -> VerifiedApproval:
    """A tier whose policy names no approver role is approved by the policy, recorded as such."""
    return VerifiedApproval("policy", "policy", APPROVE, now.isoformat(), f"{tier.value} tier needs no human approval")


_SEGMENT_BAD = re.compile(r"[/\\\x00-\x1f]")


def run_id_problem(run_id: str) -> str | None:
    """Why a run id cannot name the run's report folder (one path segment), or None."""
    if not run_id or run_id.strip() in (".", "..") or _SEGMENT_BAD.search(run_id):
        return (
            f"run id {run_id!r} is not one path segment (it names the run's report folder): "
            "use letters, digits and . _ - : + only, not '/', '\\', '.' or '..'"
        )
    return None


def experiment_thresholds(experiment: Any, policy: SafetyPolicy) -> dict[str, dict[str, Any]]:
    """Every threshold of the policy, by name, with the experiment's (only ever tighter) limits:
    what the kill switch judges. Read from the policy and catalogue, never from a run's XCom."""
    return {
        name: threshold.model_dump(mode="json") | ({"limit": experiment.threshold_limits[name]} if name in experiment.threshold_limits else {})
        for name, threshold in policy.safety.thresholds.items()
    }


def scenario_thresholds(scenario: Any, policy: SafetyPolicy) -> dict[str, dict[str, Any]]:
    """Every threshold of the policy with the tightest limit any step's experiment or the scenario
    itself sets: one kill switch judges the whole scenario while any step stands."""
    thresholds = {}
    for name, threshold in policy.safety.thresholds.items():
        limit = threshold.limit
        for limits in [*(step.experiment.threshold_limits for step in scenario.steps), scenario.threshold_limits]:
            if name in limits and threshold.rule.tightens(limits[name], limit):
                limit = limits[name]
        thresholds[name] = threshold.model_dump(mode="json") | {"limit": limit}
    return thresholds
