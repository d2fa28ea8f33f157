"""What inject verifies itself: the object's digest, Airflow's approval records, the run id, the
whole fault's window, and the policy rules that make two approvals mean two people."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.operators.common import is_manual
from chaos_engineering.policy import Tier, load_policy
from chaos_engineering.render import ANNOTATION_APPROVALS, render_chaos_object
from chaos_engineering.verification import (
    approval_task_id,
    object_digest,
    run_id_problem,
    verify_approvals,
    verify_answer,
)
from chaos_engineering.windows import span_verdict
from tests.unit.catalogue_support import POLICY_PATH, base_policy, mutated, write_yaml

POLICY, _ = load_policy(POLICY_PATH)
NOW = dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.timezone.utc)  # Wednesday 03:00 in New York
DIGEST = "sha256:" + "ab" * 16
OTHER = "sha256:" + "cd" * 16


def answer(user: str, *, option: str = "Approve", ago_s: float = 60, digest: str = DIGEST, received: bool = True) -> dict:
    return {
        "response_received": received,
        "responded_by_user": {"id": user, "name": user} if received else None,
        "responded_at": (NOW - dt.timedelta(seconds=ago_s)).isoformat() if received else None,
        "chosen_options": [option] if received else None,
        "body": f"**Kill a pod**\n- Object digest: `{digest}` (inject creates ...)",
    }


def high(sre: dict | None, executive: dict | None) -> dict:
    return {approval_task_id("sre"): sre, approval_task_id("executive"): executive}


# --- the object's digest ------------------------------------------------------------------------


def test_the_digest_names_the_exact_object_and_ignores_only_the_approvals_annotation():
    catalogue = load_catalogue()
    experiment = catalogue.get("booking-api-pod-kill")
    manifest = render_chaos_object(experiment, POLICY, dag_id="chaos_low_risk", run_id="manual__1")
    digest = object_digest(manifest)
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 32
    assert object_digest(render_chaos_object(experiment, POLICY, dag_id="chaos_low_risk", run_id="manual__1")) == digest
    approved = dict(manifest, metadata=dict(manifest["metadata"], annotations=dict(manifest["metadata"]["annotations"], **{ANNOTATION_APPROVALS: "[1]"})))
    assert object_digest(approved) == digest
    wider = dict(manifest, spec=dict(manifest["spec"], mode="all"))
    assert object_digest(wider) != digest
    assert object_digest(render_chaos_object(experiment, POLICY, dag_id="chaos_low_risk", run_id="manual__2")) != digest


# --- approvals from Airflow's records -----------------------------------------------------------


APPROVAL_CASES = [
    ("marked-success-no-answer", high(answer("sre-oncall"), {"response_received": False}),
     ["executive approval: Airflow has no answer recorded for task 'approve_executive' of this run (a task marked success, cleared or skipped is not an approval)"]),
    ("no-record-at-all", high(answer("sre-oncall"), None),
     ["executive approval: Airflow has no answer recorded for task 'approve_executive' of this run (a task marked success, cleared or skipped is not an approval)"]),
    ("rejected", high(answer("sre-oncall"), answer("cto", option="Reject")),
     ["executive approval: cto answered ['Reject'], not ['Approve']"]),
    ("not-an-approver", high(answer("mallory"), answer("cto")),
     ["sre approval: answered by 'mallory', who is not an approver of role 'sre' in the policy now (approvers: sre-oncall, admin)"]),
    ("expired", high(answer("sre-oncall", ago_s=97 * 3600), answer("cto")),
     [f"sre approval: answered at {(NOW - dt.timedelta(hours=97)).isoformat()}, more than 345600 s ago (the policy's approval_valid_for); an approval does not carry over to a later action"]),
    ("other-digest", high(answer("sre-oncall"), answer("cto", digest=OTHER)),
     [f"executive approval: the request approved showed object digest {OTHER}, but the object to create now is {DIGEST}: the experiment, the catalogue or the policy differs from what was approved"]),
]


@pytest.mark.parametrize(("records", "problems"), [c[1:] for c in APPROVAL_CASES], ids=[c[0] for c in APPROVAL_CASES])
def test_an_approval_counts_only_as_airflow_recorded_it(records, problems):
    approvals, found = verify_approvals(POLICY, Tier.HIGH, records, DIGEST, NOW)
    assert found == problems
    assert len(approvals) == 2 - len(problems)


def test_two_roles_answered_by_one_person_do_not_count():
    policy = POLICY.model_copy(update={"approvers": {"sre": ["sre-oncall", "alice"], "executive": ["cto", "alice"]}})
    approvals, problems = verify_approvals(policy, Tier.HIGH, high(answer("alice"), answer("alice")), DIGEST, NOW)
    assert problems == ["alice answered the sre and executive approvals: approvals of different roles must come from different people"]


def test_two_people_who_approved_in_time_the_object_shown_count():
    approvals, problems = verify_approvals(POLICY, Tier.HIGH, high(answer("sre-oncall"), answer("cto")), DIGEST, NOW)
    assert problems == []
    assert [(a.role, a.user, a.option, a.task_id) for a in approvals] == [
        ("sre", "sre-oncall", "Approve", "approve_sre"), ("executive", "cto", "Approve", "approve_executive")
    ]


def test_an_approver_removed_from_the_policy_since_no_longer_counts():
    policy = POLICY.model_copy(update={"approvers": {"sre": ["admin"], "executive": ["cto"]}})
    _, problems = verify_approvals(policy, Tier.MEDIUM, {approval_task_id("sre"): answer("sre-oncall")}, DIGEST, NOW)
    assert problems == ["sre approval: answered by 'sre-oncall', who is not an approver of role 'sre' in the policy now (approvers: admin)"]


def test_a_resume_answer_needs_no_digest():
    approval, problems = verify_answer(POLICY, "sre", "approve_resume", answer("sre-oncall", digest=""), valid_for=3600, now=NOW)
    assert problems == [] and approval.user == "sre-oncall"


# --- run ids and run types ----------------------------------------------------------------------


@pytest.mark.parametrize("run_id", [".", "..", "", "a/b", "../x", "a\\b", "new\nline"])
def test_a_run_id_that_is_not_one_path_segment_is_refused(run_id):
    assert "is not one path segment" in run_id_problem(run_id)


@pytest.mark.parametrize("run_id", ["manual__2026-12-03T07:39:10+00:00", "scheduled__2026-12-01", "my.run-1"])
def test_ordinary_run_ids_pass(run_id):
    assert run_id_problem(run_id) is None


@pytest.mark.parametrize(("run_type", "manual"), [("manual", True), ("scheduled", False), ("backfill", False), ("asset_triggered", False), ("asset_materialization", False)])
def test_only_a_run_a_person_triggered_is_manual(run_type, manual):
    assert is_manual({"dag_run": SimpleNamespace(run_type=run_type)}) is manual


# --- the whole fault inside the window ----------------------------------------------------------

NEW_YORK = dt.timezone(dt.timedelta(hours=-5))


@pytest.mark.parametrize(
    ("tier", "start", "seconds", "manual", "allowed", "words"),
    [
        # Monday 07:55 local: off-peak, but a 10-minute fault would run into business hours at 08:00.
        ("low", dt.datetime(2026, 11, 30, 7, 55, tzinfo=NEW_YORK), 600, False, False, "the fault would last until Mon 2026-11-30 08:05"),
        ("low", dt.datetime(2026, 11, 30, 7, 55, tzinfo=NEW_YORK), 600, True, True, "Allowed by manual override"),
        ("low", dt.datetime(2026, 11, 30, 7, 40, tzinfo=NEW_YORK), 600, False, True, "Allowed:"),
        # The high tier's window closes at 06:00 and it is never overridden.
        ("high", dt.datetime(2026, 11, 30, 5, 59, tzinfo=NEW_YORK), 120, True, False, "the fault would last until Mon 2026-11-30 06:01"),
        ("high", dt.datetime(2026, 11, 30, 5, 57, tzinfo=NEW_YORK), 120, True, True, "Allowed:"),
        # Into a freeze date at midnight: nothing runs on it, manual or not.
        ("low", dt.datetime(2026, 12, 23, 23, 55, tzinfo=NEW_YORK), 600, True, False, "2026-12-24 is a freeze date"),
    ],
    ids=["low-into-business-hours", "low-manual-override", "low-ends-in-time", "high-past-its-window", "high-in-time", "into-a-freeze-date"],
)
def test_the_window_holds_for_the_whole_fault(tier, start, seconds, manual, allowed, words):
    verdict = span_verdict(POLICY, Tier(tier), start, start + dt.timedelta(seconds=seconds), manual=manual)
    assert verdict.allowed is allowed, verdict.reason
    assert words in verdict.reason


# --- the policy: two roles, two people; approvals that outlive the announcement -------------------

POLICY_CASES = [
    ("one-person-both-roles", {"approvers.executive": ["cto", "sre-oncall"]},
     "tiers.high needs approvals from 'sre' and 'executive', but sre-oncall is an approver of both; two approvals must come from two people"),
    ("approval-expires-before-announced-injection", {"tiers.high.approval_valid_for": "24h"},
     "tiers.high: approvals are valid for 86400 s but the tier is announced 259200 s ahead; an approval given at announcement would expire before injection (raise tiers.high.approval_valid_for)"),
    ("relative-threshold-without-steady-limit", {"preflight.steady_limits": {"booking_rate": {"at_least": 1}, "error_rate": {"at_most": 0.5}}},
     "safety.thresholds.payment_failure_rate is relative (max_increase) and has no absolute bound in preflight.steady_limits.payment_failure_rate: a platform already failing would pass pre-flight"),
    ("steady-limit-of-unknown-threshold", {"preflight.steady_limits.bookings": {"at_least": 1}},
     "preflight.steady_limits names unknown threshold 'bookings'"),
]


@pytest.mark.parametrize(("changes", "message"), [c[1:] for c in POLICY_CASES], ids=[c[0] for c in POLICY_CASES])
def test_policy_refuses(tmp_path, changes, message):
    policy, issues = load_policy(write_yaml(tmp_path / "policy.yaml", mutated(base_policy(), changes)))
    assert policy is None
    assert len(issues) == 1 and message in issues[0].message, issues


@pytest.mark.parametrize(("value", "dry"), [(True, True), (False, False), ("True", True), ("on", True), ("1", True), ("false", False), ("", False), (None, False)])
def test_the_dry_run_switch_reads_as_plan_and_inject_both_read_it(value, dry):
    from chaos_engineering.operators.common import is_dry_run

    assert is_dry_run(value) is dry
