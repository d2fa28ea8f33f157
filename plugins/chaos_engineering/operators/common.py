"""What every step of a run needs: the policy as it is now, and the run's identity."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.deploys import run_deploy
from chaos_engineering.experiment import ROTATION
from chaos_engineering.policy import SafetyPolicy, load_policy


def policy_or_fail() -> SafetyPolicy:
    """The policy read now; an unreadable policy stops the run (nothing runs under rules we cannot read)."""
    policy, issues = load_policy()
    if policy is None:
        raise AirflowFailException("the safety policy is invalid:\n" + "\n".join(map(str, issues)))
    return policy


def catalogue_or_fail():
    catalogue = load_catalogue()
    if catalogue.policy is None:
        raise AirflowFailException("the safety policy is invalid:\n" + "\n".join(map(str, catalogue.issues)))
    return catalogue


def run_identity(context: Any) -> tuple[str, str]:
    dag_run = context["dag_run"]
    return dag_run.dag_id, dag_run.run_id


def lock_holder(context: Any) -> str:
    """Who holds the lock: the DAG run, the same across task retries and workers."""
    dag_id, run_id = run_identity(context)
    return f"{dag_id}/{run_id}"


def is_manual(context: Any) -> bool:
    """Only a run a person triggered is manual (and may use a tier's manual override): scheduled,
    backfill, asset- and operator-triggered runs keep to the tier's window.

    The rule for deploys, stated once: a run caused by a deploy (its conf names a `deploy`) is
    never manual, whoever triggered it, so it keeps to its window as a scheduled run does.
    chaos_on_deploy's runs are operator-triggered anyway; the conf check also holds a person who
    triggers a run "for a deploy" through the REST API to the window."""
    run_type = context["dag_run"].run_type
    return str(getattr(run_type, "value", run_type)) == "manual" and run_deploy(context) is None


def requested_experiment(value: Any) -> str | None:
    """The experiment a run was triggered for (its `experiment` param), or None for the rotation."""
    name = str(value or "").strip()
    return None if name in ("", ROTATION) else name


def is_dry_run(value: Any) -> bool:
    """The `dry_run` param as rendered (a bool, or its text from a template): anything that reads
    as yes is a dry run (plan records it; inject refuses to inject)."""
    return value if isinstance(value, bool) else str(value or "").strip().lower() in ("true", "1", "yes", "on")


def fail_if_halted(hook: Any, namespace: str) -> None:
    """Refuse to plan or inject while the emergency halt is set (`chaosctl resume` clears it).
    An unreadable flag fails too: nothing injects when we cannot tell whether it is allowed."""
    from chaos_engineering.halt import HaltFlag

    state = HaltFlag(hook, namespace).state()
    if state.halted:
        raise AirflowFailException(
            f"chaos experiments are halted: emergency stop by {state.halted_by} at {state.halted_at}, reason: {state.halted_reason}. "
            "Nothing is injected until someone runs `chaosctl resume --reason ...` or the chaos_resume DAG."
        )


def write_run_note(context: Any, note: str) -> None:
    """Write the run's note through the REST API (a task cannot set it through the execution API
    in Airflow 3.3). A note is for people: when it cannot be written the run goes on, and the
    log says why."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    from chaos_engineering.hooks.airflow_api import AirflowApiError, AirflowApiHook

    dag_id, run_id = run_identity(context)
    log = logging.getLogger(__name__)
    try:
        AirflowApiHook(AirflowApiHook.notes_conn_name).set_run_note(dag_id, run_id, note)
    except AirflowNotFoundException:
        log.warning("run note not written: define the connection %r (an account that may edit DAG runs) to have them", AirflowApiHook.notes_conn_name)
    except AirflowApiError as exc:
        log.warning("run note not written: %s", exc)
    else:
        log.info("run note: %s", note)
