"""Plan of a scenario: every step rendered and dry-run, the pods they touch together, the window for
the whole span; what its approvers are shown and what its inject will verify."""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import Any

from kubernetes.client.exceptions import ApiException

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.operators.common import catalogue_or_fail, fail_if_halted, is_dry_run, run_identity, write_run_note
from chaos_engineering.operators.guard import injection_outlook
from chaos_engineering.operators.plan import refusal_at_plan, run_note, window_record
from chaos_engineering.operators.scenario_run import scenario_of_run
from chaos_engineering.policy import SafetyPolicy, Tier
from chaos_engineering.reach import selected_namespaces
from chaos_engineering.render import render_scenario_objects
from chaos_engineering.rules import fault_actions
from chaos_engineering.scenario import Scenario, format_offset
from chaos_engineering.scenario_rules import sides
from chaos_engineering.targets import ScenarioTargetCheck, verify_scenario_targets
from chaos_engineering.verification import VerificationFailed, object_digest, run_id_problem, scenario_thresholds


def _now() -> dt.datetime:
    """The current time; a seam for the tests of the window check."""
    return dt.datetime.now(dt.timezone.utc)


class PlanScenarioOperator(BaseOperator):
    """Returns a scenario run's plan: each step's exact manifest and digest, its planned window, the
    pods each side resolves to now, the most pods the standing steps touch together, the one set of
    thresholds the monitor judges (the tightest of every step's and the scenario's), and what the
    window says of the whole span. A real high-tier scenario that cannot fit its window fails here,
    before anyone is asked to approve it, as a single experiment does."""

    template_fields = ("dry_run",)
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        scenario: str,
        dry_run: bool | str = False,
        kubernetes_conn_id: str = ChaosMeshHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.dry_run = dry_run
        self.kubernetes_conn_id = kubernetes_conn_id

    @cached_property
    def hook(self) -> ChaosMeshHook:
        return ChaosMeshHook(self.kubernetes_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        catalogue = catalogue_or_fail()
        policy = catalogue.policy
        fail_if_halted(self.hook, policy.chaos_namespace)
        if problem := run_id_problem(context["dag_run"].run_id):
            raise AirflowFailException(problem)
        try:
            scenario = scenario_of_run(catalogue, self.scenario)
        except VerificationFailed as exc:
            raise AirflowFailException("\n  ".join(exc.problems)) from None
        dag_id, run_id = run_identity(context)
        manifests = render_scenario_objects(scenario, policy, dag_id=dag_id, run_id=run_id)
        for name, manifest in manifests.items():
            try:
                self.hook.create(manifest, dry_run=True)
            except ApiException as exc:
                raise AirflowFailException(f"the API server rejected step {name!r} in a dry run ({exc.status}): {exc.body}") from exc
        try:
            check = verify_scenario_targets(self.hook, policy, scenario)
        except ApiException as exc:
            raise AirflowFailException(f"cannot resolve the target pods of {scenario.name!r} ({exc.status}): {exc.reason}") from exc
        tier, dry_run, span = scenario.tier, is_dry_run(self.dry_run), scenario.span(policy)
        outlook = injection_outlook(context, policy, tier, span, _now())[0]
        if tier is Tier.HIGH and not outlook.verdict.allowed and not dry_run:
            raise AirflowFailException(refusal_at_plan(policy, tier, outlook, span))
        for problem in check.problems:
            self.log.warning("target check at plan: %s", problem)
        note = run_note(scenario.name, tier, dry_run)
        write_run_note(context, note)
        return {
            "scenario": scenario.name,
            # What every run's plan names (notifications, metrics, the report): the scenario as a whole.
            "experiment": scenario.name,
            "kind": "Scenario",
            "target_service": ", ".join(dict.fromkeys(s.experiment.target_service for s in scenario.steps)),
            "tier": tier.value,
            "title": scenario.title,
            "hypothesis": scenario.hypothesis,
            "description": scenario.description,
            "steps": steps_plan(scenario, policy, manifests, check),
            "blast_radius": {"peak": check.peak, "max_pods": policy.tiers[tier].scenario_pod_limit, "problems": check.problems},
            "window": window_record(outlook),
            "note": note,
            "source": str(scenario.source),
            "duration_s": span,
            "thresholds": scenario_thresholds(scenario, policy),
            "dry_run": dry_run,
            "planned_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }


def steps_plan(scenario: Scenario, policy: SafetyPolicy, manifests: dict[str, dict], check: ScenarioTargetCheck) -> list[dict[str, Any]]:
    """Each step as planned, in start order: what it is, when it stands, what it touches, its object."""
    timeline = scenario.timeline(policy)
    planned = []
    for name, window in timeline.items():
        step, targets = scenario.step(name), check.steps[name]
        experiment = step.experiment
        resolved = [targets.targets, targets.peers]
        planned.append(
            {
                "step": name,
                "experiment": experiment.name,
                "title": experiment.title,
                "kind": experiment.kind.value,
                "actions": fault_actions(experiment.spec),
                "target_service": experiment.target_service,
                "start_s": window.start,
                "end_s": window.end,
                "starts": (f"{format_offset(step.offset)} after {step.after} {step.when.value}" if step.after
                           else f"{format_offset(step.offset)} after the scenario's start"),
                "sides": [
                    {
                        "side": "selector" if field == "chaos.spec" else "target",
                        "mode": getattr(side.mode, "value", side.mode),
                        "value": getattr(side, "value", None),
                        "namespaces": selected_namespaces(side.selector),
                        "pods": [p.ref for p in pods],
                        "ready": sum(p.ready for p in pods),
                    }
                    for (field, side), pods in zip(sides(experiment.spec), resolved)
                ],
                "manifest": manifests[name],
                "digest": object_digest(manifests[name]),
            }
        )
    return planned
