"""Plan: choose the experiment, re-validate it against the policy, and have the API server dry-run it."""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import Any

from kubernetes.client.exceptions import ApiException

from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk import BaseOperator, Variable
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.operators.common import catalogue_or_fail, fail_if_halted, is_dry_run, run_identity
from chaos_engineering.policy import Tier
from chaos_engineering.render import render_chaos_object
from chaos_engineering.rules import effective_duration
from chaos_engineering.verification import experiment_thresholds, object_digest, run_id_problem


def rotation_variable(tier: Tier) -> str:
    return f"chaos_rotation_{tier.value}"


def next_in_rotation(names: list[str], last: str | None) -> str:
    """The experiment after `last` in name order, wrapping around; robust to catalogue edits."""
    later = [n for n in names if last is None or n > last]
    return (later or names)[0]


class PlanExperimentOperator(BaseOperator):
    """Returns the run's plan: the experiment, its effective thresholds and the exact manifest.

    `experiment` empty means the tier's rotation (an Airflow Variable remembers the last one).
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
        name = (self.experiment or "").strip()
        if not name:
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

        dag_id, run_id = run_identity(context)
        manifest = render_chaos_object(experiment, policy, dag_id=dag_id, run_id=run_id)
        try:
            self.hook.create(manifest, dry_run=True)
        except ApiException as exc:
            raise AirflowFailException(f"the API server rejected {name!r} in a dry run ({exc.status}): {exc.body}") from exc
        thresholds = experiment_thresholds(experiment, policy)
        dry_run = is_dry_run(self.dry_run)
        self.log.info("planned %s (%s) as %s/%s%s", name, experiment.kind.value, manifest["metadata"]["namespace"], manifest["metadata"]["name"], " [dry run]" if dry_run else "")
        return {
            "experiment": name,
            "tier": tier.value,
            "title": experiment.title,
            "hypothesis": experiment.hypothesis,
            "description": experiment.description,
            "target_service": experiment.target_service,
            "kind": experiment.kind.value,
            "source": str(experiment.source),
            "manifest": manifest,
            "digest": object_digest(manifest),
            "duration_s": effective_duration(experiment, policy),
            "thresholds": thresholds,
            "dry_run": dry_run,
            "planned_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
