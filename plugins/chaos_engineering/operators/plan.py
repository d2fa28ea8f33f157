"""Plan: choose the experiment, re-validate it against the policy, and have the API server dry-run it."""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import Any

from kubernetes.client.exceptions import ApiException

from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk import BaseOperator, Variable
from chaos_engineering.deploys import run_deploy
from chaos_engineering.experiment import Experiment
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.operators.common import catalogue_or_fail, fail_if_halted, is_dry_run, requested_experiment, run_identity, write_run_note
from chaos_engineering.operators.guard import injection_outlook
from chaos_engineering.policy import SafetyPolicy, Tier
from chaos_engineering.reach import selected_namespaces
from chaos_engineering.render import render_chaos_object
from chaos_engineering.rules import effective_duration, fault_actions, network_target
from chaos_engineering.targets import verify_targets
from chaos_engineering.verification import experiment_thresholds, object_digest, run_id_problem
from chaos_engineering.windows import SpanOutlook, WindowRules, local_text


def _now() -> dt.datetime:
    """The current time; a seam for the tests of the window check."""
    return dt.datetime.now(dt.timezone.utc)


def rotation_variable(tier: Tier) -> str:
    return f"chaos_rotation_{tier.value}"


def next_in_rotation(names: list[str], last: str | None) -> str:
    """The experiment after `last` in name order, wrapping around; robust to catalogue edits."""
    later = [n for n in names if last is None or n > last]
    return (later or names)[0]


class PlanExperimentOperator(BaseOperator):
    """Returns the run's plan: the experiment, its effective thresholds, the exact manifest, the
    pods it resolves to now and what the window says of its injection.

    `experiment` "rotation" (or empty) means the tier's rotation (an Airflow Variable remembers the
    last one). A real high-tier run whose fault cannot inject in its window fails here, before
    anyone is asked to approve it; a manual run its tier lets override the window goes on, and
    the plan records that the override will be used.
    """

    template_fields = ("experiment", "dry_run")
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        tier: str,
        experiment: str | None = None,
        dry_run: bool | str = False,
        kubernetes_conn_id: str = ChaosMeshHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.tier = tier
        self.experiment = experiment
        self.dry_run = dry_run
        self.kubernetes_conn_id = kubernetes_conn_id

    @cached_property
    def hook(self) -> ChaosMeshHook:
        return ChaosMeshHook(self.kubernetes_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        tier = Tier(self.tier)
        catalogue = catalogue_or_fail()
        policy = catalogue.policy
        fail_if_halted(self.hook, policy.chaos_namespace)
        if problem := run_id_problem(context["dag_run"].run_id):
            raise AirflowFailException(problem)
        names = [e.name for e in catalogue.for_tier(tier)]
        name = requested_experiment(self.experiment)
        if name is None:
            if not names:
                raise AirflowFailException(f"the {tier.value} tier has no valid experiment in the catalogue")
            name = next_in_rotation(names, Variable.get(rotation_variable(tier), default=None))
            Variable.set(rotation_variable(tier), name)
        experiment = catalogue.get(name)
        if experiment is None:
            issues = [str(i) for i in catalogue.issues if name in i.file or f"'{name}'" in i.message]
            raise AirflowFailException(f"no valid experiment {name!r} in the catalogue" + ("".join(f"\n  {i}" for i in issues)))
        if experiment.tier is not tier:
            raise AirflowFailException(f"{name!r} is a {experiment.tier.value}-tier experiment; this DAG runs the {tier.value} tier")
        deploy = run_deploy(context)
        if deploy is not None and deploy.get("service") not in experiment.on_deploy:
            raise AirflowFailException(
                f"the run names the deploy of {deploy.get('service')!r}, which {name!r} does not declare in on_deploy "
                f"({', '.join(experiment.on_deploy) or 'none'}): a deploy starts only the experiments that declare it"
            )

        dag_id, run_id = run_identity(context)
        manifest = render_chaos_object(experiment, policy, dag_id=dag_id, run_id=run_id)
        try:
            self.hook.create(manifest, dry_run=True)
        except ApiException as exc:
            raise AirflowFailException(f"the API server rejected {name!r} in a dry run ({exc.status}): {exc.body}") from exc
        thresholds = experiment_thresholds(experiment, policy)
        dry_run = is_dry_run(self.dry_run)
        duration = effective_duration(experiment, policy)
        blast_radius = self._blast_radius(policy, tier, experiment)
        outlook = self._window(context, policy, tier, duration)
        if tier is Tier.HIGH and not outlook.verdict.allowed and not dry_run:
            raise AirflowFailException(refusal_at_plan(policy, tier, outlook, duration))
        self.log.info("planned %s (%s) as %s/%s%s", name, experiment.kind.value, manifest["metadata"]["namespace"], manifest["metadata"]["name"], " [dry run]" if dry_run else "")
        self.log.info("window at the planned injection (%s): %s; %s", local_text(policy, outlook.at), outlook.words, outlook.verdict.reason)
        for problem in blast_radius["problems"]:
            self.log.warning("target check at plan: %s", problem)
        note = run_note(name, tier, dry_run)
        write_run_note(context, note)
        return {
            "experiment": name,
            "tier": tier.value,
            "title": experiment.title,
            "hypothesis": experiment.hypothesis,
            "description": experiment.description,
            "target_service": experiment.target_service,
            "kind": experiment.kind.value,
            "actions": fault_actions(experiment.spec),
            "blast_radius": blast_radius,
            "window": window_record(outlook),
            "note": note,
            "source": str(experiment.source),
            "manifest": manifest,
            "digest": object_digest(manifest),
            "duration_s": duration,
            "thresholds": thresholds,
            "dry_run": dry_run,
            # The deploy that caused the run (chaos_on_deploy), or None.
            "deploy": deploy,
            "planned_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }

    def _blast_radius(self, policy: SafetyPolicy, tier: Tier, experiment: Experiment) -> dict[str, Any]:
        """Each side's mode, value and namespaces, the pods it resolves to now, and every reason the
        run-time target check would refuse them (shown to approvers; pre-flight and inject check again)."""
        try:
            check = verify_targets(self.hook, policy, tier, experiment.spec)
        except ApiException as exc:
            raise AirflowFailException(f"cannot resolve the target pods of {experiment.name!r} ({exc.status}): {exc.reason}") from exc
        sides = [("selector", experiment.spec, check.targets)]
        if (target := network_target(experiment.spec)) is not None:
            sides.append(("target", target, check.peers))
        return {
            "sides": [
                {
                    "side": side,
                    "mode": getattr(spec.mode, "value", spec.mode),
                    "value": getattr(spec, "value", None),
                    "namespaces": selected_namespaces(spec.selector),
                    "pods": [p.ref for p in pods],
                    "ready": sum(p.ready for p in pods),
                }
                for side, spec, pods in sides
            ],
            "max_pods": policy.tiers[tier].blast_radius.max_pods,
            "problems": check.problems,
        }

    def _window(self, context: Any, policy: SafetyPolicy, tier: Tier, duration: float) -> SpanOutlook:
        """The window's verdict for the fault at its planned injection: a scheduled announced run's
        planned time, otherwise now (a run injects as soon as it is approved)."""
        return injection_outlook(context, policy, tier, duration, _now())[0]


def window_record(outlook: SpanOutlook) -> dict[str, Any]:
    """What the plan records of the window's verdict at the planned injection."""
    return {
        "words": outlook.words,
        "allowed": outlook.verdict.allowed,
        "override_used": outlook.verdict.override_used,
        "reason": outlook.verdict.reason,
        "judged_for": outlook.at.isoformat(),
        "first_start": outlook.first_start.isoformat() if outlook.first_start else None,
    }


def run_note(experiment: str, tier: Tier, dry_run: bool) -> str:
    """What the run is, in the words of its note: 'cache-failure · medium · real'."""
    return f"{experiment} · {tier.value} · {'dry run' if dry_run else 'real'}"


def refusal_at_plan(policy: SafetyPolicy, tier: Tier, outlook: SpanOutlook, duration: float) -> str:
    """Why a run is refused before anyone is asked: the window, the verdict and the first time it could run."""
    rules = WindowRules.for_tier(policy, tier)
    return (
        f"refused at plan, before anyone is asked to approve: the {duration:g} s fault planned for "
        f"{local_text(policy, outlook.at)} cannot inject in the {tier.value} tier's window "
        f"({rules.describe()}, {policy.business_hours.timezone}): {outlook.words}. {outlook.verdict.reason}"
    )
