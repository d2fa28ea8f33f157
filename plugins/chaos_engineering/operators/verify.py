"""Inject's own verification of a run, from sources no DAG user can edit (see `verification`)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chaos_engineering.experiment import Experiment
from chaos_engineering.operators.common import is_dry_run, is_manual, requested_experiment, run_identity
from chaos_engineering.policy import Tier
from chaos_engineering.render import (
    ANNOTATION_APPROVALS,
    ANNOTATION_BASELINE,
    ANNOTATION_DIGEST,
    ANNOTATION_WINDOW,
    render_chaos_object,
)
from chaos_engineering.rules import effective_duration
from chaos_engineering.verification import (
    VerificationFailed,
    VerifiedApproval,
    approval_task_id,
    experiment_thresholds,
    object_digest,
    policy_approval,
    run_id_problem,
    verify_approvals,
)
from chaos_engineering.windows import WindowVerdict, span_verdict


@dataclass(frozen=True)
class VerifiedInjection:
    """Everything inject checked, and the object it may now create."""

    experiment: Experiment
    manifest: dict[str, Any]
    digest: str
    approvals: list[VerifiedApproval]
    window: WindowVerdict
    baseline: dict[str, float]
    targets: list[str] = field(default_factory=list)
    peers: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.experiment.name

    def body(self) -> dict[str, Any]:
        """The manifest, its annotations naming what was verified (the record in the cluster)."""
        metadata = dict(self.manifest["metadata"])
        metadata["annotations"] = dict(metadata.get("annotations") or {}) | {
            ANNOTATION_APPROVALS: json.dumps([a.as_dict() for a in self.approvals], sort_keys=True),
            ANNOTATION_DIGEST: self.digest,
            ANNOTATION_BASELINE: json.dumps(self.baseline, sort_keys=True),
            ANNOTATION_WINDOW: self.window.reason[:1000],
        }
        return dict(self.manifest, metadata=metadata)

    def record(self) -> dict[str, Any]:
        return verification_record(self)

    def summary(self) -> str:
        who = ", ".join(f"{a.role} {a.user}" for a in self.approvals)
        return f"{self.experiment.name} {self.digest}; approvals: {who}; {self.window.reason}; targets {', '.join(self.targets) or 'none'}"


def verification_record(verified: Any) -> dict[str, Any]:
    """For the run's result: what inject verified (of an experiment, or of a scenario)."""
    return {
        "experiment": verified.name,
        "digest": verified.digest,
        "approvals": [a.as_dict() for a in verified.approvals],
        "window": {"reason": verified.window.reason, "override_used": verified.window.override_used},
        "baseline": verified.baseline,
        "targets": verified.targets,
        "peers": verified.peers,
    }


def _experiment(context: Any, catalogue: Any, tier: Tier, planned: Any) -> Experiment:
    """The experiment the run was triggered for (its conf, which nobody can edit after the
    trigger), or for a rotation the one the plan chose, if it is a valid experiment of the tier."""
    params = context.get("params") or {}
    problems = []
    if is_dry_run(params.get("dry_run")):
        problems.append("this run was triggered as a dry run: it never injects")
    requested = requested_experiment(params.get("experiment")) or ""
    planned_name = str(planned.get("experiment") or "") if isinstance(planned, Mapping) else ""
    if requested and planned_name and planned_name != requested:
        problems.append(f"the run was triggered for {requested!r}, but its plan now names {planned_name!r} (the plan's XCom was changed)")
    name = requested or planned_name
    experiment = catalogue.get(name) if name else None
    if experiment is None:
        problems.append(f"no valid experiment {name!r} in the catalogue now (run `chaosctl validate`)")
    elif experiment.tier is not tier:
        problems.append(f"{name!r} is a {experiment.tier.value}-tier experiment; this DAG runs the {tier.value} tier")
    if problems:
        raise VerificationFailed(problems)
    return experiment


def verify_injection(
    context: Any,
    catalogue: Any,
    tier: Tier,
    *,
    planned: Any,
    cluster: Any,
    prometheus: Any,
    airflow_api: Any,
    now: dt.datetime | None = None,
) -> VerifiedInjection:
    """Re-derive the run's object and check everything that allows it, now; raise
    `VerificationFailed` listing every problem found (all are checked, not the first only)."""
    from chaos_engineering.targets import verify_targets

    policy = catalogue.policy
    now = now or dt.datetime.now(dt.timezone.utc)
    dag_id, run_id = run_identity(context)
    problems: list[str] = []
    if problem := run_id_problem(run_id):
        problems.append(problem)
    experiment = _experiment(context, catalogue, tier, planned)
    manifest = render_chaos_object(experiment, policy, dag_id=dag_id, run_id=run_id)
    digest = object_digest(manifest)

    approvals, refused = recorded_approvals(policy, tier, airflow_api, dag_id, run_id, {experiment.name: digest}, now)
    problems += refused
    problems += window_problems(window := span_verdict(
        policy, tier, now, now + dt.timedelta(seconds=effective_duration(experiment, policy)), manual=is_manual(context)
    ))

    targets: list[str] = []
    peers: list[str] = []
    try:
        check = verify_targets(cluster, policy, tier, experiment.spec)
    except Exception as exc:
        problems.append(unresolved_targets(exc))
    else:
        problems += check.problems
        targets, peers = [t.ref for t in check.targets], [p.ref for p in check.peers]

    baseline, unsteady = steady_baseline(prometheus, experiment_thresholds(experiment, policy), policy, now)
    problems += unsteady

    if problems:
        raise VerificationFailed(problems)
    return VerifiedInjection(experiment, manifest, digest, approvals, window, baseline, targets, peers)


def recorded_approvals(
    policy: Any, tier: Tier, airflow_api: Any, dag_id: str, run_id: str, digests: Mapping[str, str], now: dt.datetime
) -> tuple[list[VerifiedApproval], list[str]]:
    """The tier's approvals from Airflow's records of this run, each of which must have shown every
    object digest in `digests` (by experiment or step; more than one: a problem names its step),
    and every reason they do not count. A tier with no approver role is approved by the policy."""
    roles = policy.tiers[tier].approvals
    if not roles:
        return [policy_approval(tier, now)], []
    try:
        records = {approval_task_id(role): airflow_api.hitl_detail(dag_id, run_id, approval_task_id(role)) for role in roles}
    except Exception as exc:
        return [], [f"cannot read Airflow's approval records of this run ({exc}); without them no approval counts"]
    approvals: list[VerifiedApproval] = []
    problems: list[str] = []
    for name, digest in digests.items():
        verified, refused = verify_approvals(policy, tier, records, digest, now)
        approvals = approvals or verified
        problems += [f"step {name}: {why}" if len(digests) > 1 and digest in why else why for why in refused]
    return approvals, list(dict.fromkeys(problems))


def window_problems(window: WindowVerdict) -> list[str]:
    return [] if window.allowed else [f"window: {window.reason}"]


def unresolved_targets(exc: Exception) -> str:
    return f"cannot resolve the target pods now ({exc}); nothing is injected on pods we cannot see"


def steady_baseline(prometheus: Any, thresholds: dict[str, dict[str, Any]], policy: Any, now: dt.datetime) -> tuple[dict[str, float], list[str]]:
    """The baseline over the policy's healthy window ending now, and why the platform is not steady."""
    from chaos_engineering.operators.preflight import fault_lifetime_s, steady_state

    try:
        baseline, unsteady = steady_state(
            prometheus, thresholds, policy.preflight.healthy_window, now,
            steady_limits=policy.preflight.steady_limits, lifetime_s=fault_lifetime_s(policy),
        )
    except Exception as exc:
        baseline, unsteady = {}, [f"cannot read the metrics ({exc})"]
    return baseline, [f"not steady now: {problem}" for problem in unsteady]
