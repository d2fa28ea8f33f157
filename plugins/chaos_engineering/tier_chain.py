"""The chain of one tier's run, wired inside a DAG: plan, approvals, guard, pre-flight, lock,
inject, monitor, removal, recovery stages, result."""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import Param
from airflow.sdk import TriggerRule
from chaos_engineering.catalogue import Catalogue
from chaos_engineering.chaosmesh.duration import format_go_duration
from chaos_engineering.deploys import DAG_ID as DEPLOY_DAG_ID, deploy_params_schema
from chaos_engineering.experiment import Experiment
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.hooks.prometheus import PrometheusHook
from chaos_engineering.operators.approval import PolicyApprovalOperator, human_approval
from chaos_engineering.operators.drill import DrillProbeOperator, DrillProbeReadySensor
from chaos_engineering.operators.fault import InjectFaultOperator, RemoveFaultOperator
from chaos_engineering.operators.guard import WindowGuardOperator
from chaos_engineering.operators.lock import AcquireLockSensor, ReleaseLockOperator
from chaos_engineering.operators.monitor import FaultMonitorSensor
from chaos_engineering.operators.common import ROTATION
from chaos_engineering.operators.plan import PlanExperimentOperator
from chaos_engineering.operators.plan_scenario import PlanScenarioOperator
from chaos_engineering.operators.scenario_run import InjectScenarioOperator, ScenarioMonitorSensor
from chaos_engineering.operators.preflight import PreflightCheckOperator
from chaos_engineering.operators.recovery import STAGES, RecoveryStageSensor
from chaos_engineering.operators.report import RunReportOperator
from chaos_engineering.operators.result import RunVerdictOperator, WriteResultOperator
from chaos_engineering.policy import SafetyPolicy, Tier
from chaos_engineering.reach import selected_namespaces
from chaos_engineering.rules import effective_duration, fault_actions, network_target

#: The task ids of every tier's chain, in order (tests assert this shape).
CHAIN = ("plan", "dry_run_gate", "approvals", "window_guard", "preflight", "acquire_lock", "inject",
         "monitor", "remove_fault", *(f"recovery_{s}" for s in STAGES), "release_lock", "write_result", "report", "verdict")

#: The Airflow retries of the steps that must finish whatever broke (the removal, the lock's
#: release, the result and the report): a worker that died under one, or an API server that was
#: down when it started (the task cannot even begin), ridden out for over 3 minutes: retries after
#: 5, 10, 20, 40, 60 and 60 s. A step that fails on purpose (AirflowFailException) never retries.
MUST_FINISH = {"retries": 6, "retry_delay": 5, "retry_exponential_backoff": 2.0, "max_retry_delay": 60}


def experiment_summary(experiment: Experiment, policy: SafetyPolicy) -> dict[str, str]:
    """What the trigger form shows of one experiment: its target, action, blast radius and duration."""
    spec = experiment.spec
    sides = [("", spec)] + ([("target ", target)] if (target := network_target(spec)) is not None else [])
    radius = "; ".join(
        f"{label}mode {getattr(side.mode, 'value', side.mode)}"
        + (f" {side.value}" if getattr(side, "value", None) not in (None, "") else "")
        + f" in {', '.join(selected_namespaces(side.selector))}"
        for label, side in sides
    )
    return {
        "target": experiment.target_service,
        "action": f"{experiment.kind.value} {', '.join(fault_actions(spec))}",
        "blast_radius": radius,
        "duration": format_go_duration(effective_duration(experiment, policy)),
    }


def _label(experiment: Experiment, policy: SafetyPolicy) -> str:
    summary = experiment_summary(experiment, policy)
    return f"{experiment.name}: {summary['action']} on {summary['target']} ({summary['blast_radius']}), {summary['duration']}"


def _experiments_table(experiments: list[Experiment], policy: SafetyPolicy) -> str:
    rows = [experiment_summary(e, policy) | {"name": e.name} for e in experiments]
    return "\n".join(
        ["| experiment | target | action | blast radius | duration |", "|---|---|---|---|---|"]
        + [f"| `{r['name']}` | {r['target']} | {r['action']} | {r['blast_radius']} | {r['duration']} |" for r in rows]
    )


def tier_params(catalogue: Catalogue, tier: Tier) -> dict[str, Param]:
    """The trigger form: the rotation or one of the tier's valid experiments, and a dry-run switch.

    The rotation is a real choice (`ROTATION`): Airflow 3.3's form reads an empty choice as a
    missing value and disables Trigger. "" stays valid for API callers, last and labelled so.
    """
    experiments = catalogue.for_tier(tier)
    policy = catalogue.policy
    return {
        "experiment": Param(
            ROTATION,
            type="string",
            enum=[ROTATION, *(e.name for e in experiments), ""],
            title="Experiment",
            description_md=(
                f"**{ROTATION}**: the tier's next experiment, in name order after the last one run. "
                "Only experiments that pass `chaosctl validate` are listed.\n\n" + _experiments_table(experiments, policy)
            ),
            values_display={ROTATION: f"({ROTATION}: the tier's next experiment)"}
            | {e.name: _label(e, policy) for e in experiments}
            | {"": "(rotation, as the empty value API callers may send)"},
        ),
        "dry_run": Param(False, type="boolean", title="Dry run", description="Validate and dry-run on the API server; inject nothing."),
        # Airflow 3.3's form has no hidden field: the section says to leave it empty. A run that
        # names a deploy keeps to its window (operators.common.is_manual).
        "deploy": Param(
            None,
            **deploy_params_schema(),
            title="Deploy",
            section=f"Set by {DEPLOY_DAG_ID} only",
            description=f"The deploy that caused the run, set by {DEPLOY_DAG_ID}; leave it empty. A run that names a deploy never uses the manual override of the window.",
        ),
    }


def drill_params(catalogue: Catalogue) -> dict[str, Param]:
    """The DR drill's form: its one experiment (from the policy) and the dry-run switch."""
    drill = catalogue.policy.disaster_recovery
    experiment = catalogue.get(drill.experiment)
    return {
        "experiment": Param(
            drill.experiment,
            type="string",
            enum=[drill.experiment],
            title="Experiment",
            description_md="The failover the policy's `disaster_recovery` section names.\n\n"
            + (_experiments_table([experiment], catalogue.policy) if experiment else ""),
            values_display={drill.experiment: _label(experiment, catalogue.policy) if experiment else drill.experiment},
        ),
        "dry_run": tier_params(catalogue, Tier.HIGH)["dry_run"],
    }


def _is_real_run(plan: dict[str, Any]) -> bool:
    return not plan["dry_run"]


def wire_tier_chain(
    tier: Tier,
    catalogue: Catalogue,
    *,
    kubernetes_conn_id: str = ChaosMeshHook.default_conn_name,
    prometheus_conn_id: str = PrometheusHook.default_conn_name,
    drill: bool = False,
    scenario: str | None = None,
) -> None:
    """Create the tasks of one tier's run in the current DAG context. With `drill`, a canary probe
    (`dr_probe`) runs from the lock to the end of the failover, and the injection waits for its
    baseline (`dr_probe_ready`): the disaster-recovery drill. With `scenario`, the run is that
    scenario's (its tier's approvals once, one lock, every step injected by inject and the
    monitor, one monitor, removal of every step): the same chain, the same task ids."""
    policy = catalogue.policy
    if policy is None:
        raise ValueError("the safety policy is invalid; run `chaosctl validate`")
    cluster = {"kubernetes_conn_id": kubernetes_conn_id}
    both = cluster | {"prometheus_conn_id": prometheus_conn_id}

    if scenario is None:
        plan = PlanExperimentOperator(
            task_id="plan", tier=tier.value, experiment="{{ params.experiment }}", dry_run="{{ params.dry_run }}", retries=1, **cluster
        )
    else:
        plan = PlanScenarioOperator(task_id="plan", scenario=scenario, dry_run="{{ params.dry_run }}", retries=1, **cluster)
    gate = ShortCircuitOperator(
        task_id="dry_run_gate",
        python_callable=_is_real_run,
        op_args=[plan.output],
        # Only the chain below is skipped; the result is still written.
        ignore_downstream_trigger_rules=False,
    )
    roles = policy.tiers[tier].approvals
    what = "experiment" if scenario is None else "scenario"
    approvals = [human_approval(policy, tier, role, what) for role in roles] if roles else [PolicyApprovalOperator(task_id="approve_by_policy")]
    guard = WindowGuardOperator(task_id="window_guard", tier=tier.value, retries=0)
    preflight = PreflightCheckOperator(task_id="preflight", plan=plan.output, retries=0, **both)
    lock = AcquireLockSensor(
        task_id="acquire_lock", plan=plan.output, mode="reschedule", poke_interval=10, timeout=policy.safety.lock_wait, **cluster
    )
    # Inject trusts no upstream output: it verifies the approvals in Airflow's own records itself.
    if scenario is None:
        inject = InjectFaultOperator(task_id="inject", tier=tier.value, plan=plan.output, retries=1, **both)
        monitor = FaultMonitorSensor(task_id="monitor", plan=plan.output, fault=inject.output, preflight=preflight.output, retries=0, **both)
    else:
        inject = InjectScenarioOperator(task_id="inject", scenario=scenario, tier=tier.value, plan=plan.output, retries=1, **both)
        monitor = ScenarioMonitorSensor(
            task_id="monitor", scenario=scenario, plan=plan.output, fault=inject.output, preflight=preflight.output, retries=0, **both
        )
    # It retries by itself (until every object is gone or 2 x safety.deletion_timeout); its Airflow
    # retries (MUST_FINISH) are for a worker that died under it or an API server it could not start on.
    remove = RemoveFaultOperator(task_id="remove_fault", plan=plan.output, **MUST_FINISH, **cluster)
    stages = [
        RecoveryStageSensor(
            task_id=f"recovery_{stage}",
            stage=stage,
            plan=plan.output,
            preflight=preflight.output,
            removal=remove.output,
            # One retry for a worker that died under it: the retry measures again, and a stage
            # first looked at after its deadline is `unobserved`, never held (stage_status).
            retries=1,
            retry_delay=5,
            # Every stage measures, even when an earlier one missed its deadline.
            trigger_rule=TriggerRule.ALL_DONE if index else TriggerRule.ALL_SUCCESS,
            **both,
        )
        for index, stage in enumerate(STAGES)
    ]
    release = ReleaseLockOperator(task_id="release_lock", plan=plan.output, **MUST_FINISH, **cluster)
    result = WriteResultOperator(task_id="write_result", trigger_rule=TriggerRule.ALL_DONE, **MUST_FINISH)
    report = RunReportOperator(task_id="report", outcome=result.output, trigger_rule=TriggerRule.ALL_DONE, **MUST_FINISH, prometheus_conn_id=prometheus_conn_id)
    verdict = RunVerdictOperator(task_id="verdict", outcome=result.output, trigger_rule=TriggerRule.ALL_DONE)

    plan >> gate >> approvals[0]
    for earlier, later in zip(approvals, approvals[1:]):
        earlier >> later
    approvals[-1] >> guard >> preflight >> lock >> inject >> monitor >> remove
    if drill:
        probe = DrillProbeOperator(task_id="dr_probe", retries=0)
        ready = DrillProbeReadySensor(task_id="dr_probe_ready", retries=0)
        lock >> [probe, ready]
        ready >> inject
        # The lock stays held until the probe has measured; the result records it.
        probe >> release
    # One stage at a time, though each deadline counts from the removal: side by side (tried on
    # 2026-12-06), a Celery worker SIGKILLed while it started them stranded the stages it had taken
    # but not yet reported running for Airflow's `task_queued_timeout` (600 s), lock held; in turn,
    # only the one stage in flight is lost, for the 300 s heartbeat timeout.
    remove >> stages[0]
    for earlier, later in zip(stages, stages[1:]):
        earlier >> later
    stages[-1] >> release >> result >> report >> verdict
    # Whatever fails after the lock is taken, the fault is removed and the lock released.
    remove.as_teardown(setups=lock, on_failure_fail_dagrun=True)
    release.as_teardown(setups=lock, on_failure_fail_dagrun=True)



def catalogue_for_dag() -> Catalogue:
    """The catalogue at parse time. An invalid policy raises, so the DAG shows an import error
    naming every issue instead of scheduling anything under rules nobody can read."""
    from chaos_engineering.catalogue import load_catalogue

    catalogue = load_catalogue()
    if catalogue.policy is None:
        raise ValueError("the safety policy is invalid:\n" + "\n".join(map(str, catalogue.issues)))
    return catalogue
