"""The page's two buttons: the emergency stop (halt and first deletions at once, the rest by the
`chaos_emergency_stop` DAG) and the resume request (a `chaos_resume` run; an SRE approves it there).

Why the stop is split: `emergency_stop` sweeps for one API request timeout after the halt (a
create in flight must land or fail first), so it takes at least ~11 s; a person pressing stop
must see the halt written and every fault's deletion asked for before the answer. What follows
(the in-flight sweeps, waiting for Chaos Mesh's recovery, forcing a stuck finalizer, freeing the
lock, the `emergency_stop` alert) is the same code the DAG and `chaosctl stop` run, done by a
`chaos_emergency_stop` run triggered in the user's name: Airflow records who and why, retries it,
and alerts. When that run cannot start (the DAG missing, paused or not triggerable) the api-server
runs the same stop and alert itself in a background thread, so a stop never depends on the
scheduler.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from typing import Any

from sqlalchemy import select

from airflow.api.common.trigger_dag import trigger_dag
from airflow.models.dag import DagModel
from airflow.utils.session import create_session
from airflow.utils.types import DagRunTriggeredByType
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.emergency import ObjectRef, emergency_stop, owned_objects
from chaos_engineering.halt import HaltFlag
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.notify import announce
from chaos_engineering.policy import SafetyPolicy
from chaos_engineering.ui.access import RESUME_DAG_ID, STOP_DAG_ID
from chaos_engineering.ui.status import run_url

log = logging.getLogger(__name__)


def trigger(dag_id: str, who: str, reason: str) -> dict[str, Any]:
    """A manual run of `dag_id` in `who`'s name with `{"reason": reason}`; raises when it cannot be
    created, and says whether the DAG is paused (its run would then wait)."""
    with create_session() as session:
        paused = session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == dag_id))
        run = trigger_dag(dag_id, triggered_by=DagRunTriggeredByType.UI, triggering_user_name=who, conf={"reason": reason}, session=session)
        if run is None:
            raise RuntimeError(f"Airflow created no run of {dag_id}")
        return {"dag_id": dag_id, "run_id": run.run_id, "url": run_url(dag_id, run.run_id), "paused": bool(paused)}


def first_sweep(hook: ChaosMeshHook, errors: list[str]) -> list[ObjectRef]:
    """Ask for the deletion of every chaos object of ours now, without waiting for the recovery."""
    asked = []
    for ref in [ObjectRef.of(o) for o in owned_objects(hook, errors)]:
        try:
            hook.delete(ChaosKind(ref.kind), ref.name, ref.namespace)
        except Exception as exc:
            errors.append(f"cannot delete {ref.kind} {ref.namespace}/{ref.name}: {exc}")
            continue
        asked.append(ref)
    return asked


def stop_in_api_server(hook: ChaosMeshHook, policy: SafetyPolicy, who: str, reason: str) -> None:
    """The whole stop and its alert, as `chaosctl stop` runs them, when no DAG run can."""
    report = emergency_stop(hook, policy, who, reason)
    forced = [f"finalizer clean-up forced on {r.kind} {r.namespace}/{r.name}: check its targets" for r in report.forced]
    announce("emergency_stop", extra={"removed": [asdict(r) for r in report.removed], "forced": [asdict(r) for r in report.forced],
                                      "requested_by": report.requested_by, "reason": report.reason, "failed_runs": report.runs,
                                      "errors": report.errors + forced})


def stop(hook: ChaosMeshHook, policy: SafetyPolicy, who: str, reason: str) -> dict[str, Any]:
    """Halt, ask for every deletion, then hand the rest to a DAG run (or, failing that, a thread)."""
    errors: list[str] = []
    halt = None
    try:
        halt = HaltFlag(hook, policy.chaos_namespace).set(who, reason)
    except Exception as exc:
        # Fails closed: the deletions and the full stop still run; the answer says the halt is missing.
        errors.append(f"could not set the halt flag: {exc}")
    deleting = first_sweep(hook, errors)
    follow_up: dict[str, Any]
    try:
        run = trigger(STOP_DAG_ID, who, reason)
        if run["paused"]:
            raise RuntimeError(f"{STOP_DAG_ID} is paused: its run {run['run_id']} would wait")
        follow_up = {"by": "dag_run", **run}
    except Exception as exc:
        log.error("emergency stop by %s: no %s run (%s); the api-server finishes the stop itself", who, STOP_DAG_ID, exc)
        threading.Thread(target=stop_in_api_server, args=(hook, policy, who, reason), name="chaos-emergency-stop", daemon=True).start()
        follow_up = {"by": "api-server", "reason": f"no {STOP_DAG_ID} run: {exc}"}
    log.warning("emergency stop by %s (%s): halt %s, deletion asked for %d object(s), finished by %s",
                who, reason, "set" if halt else "NOT SET", len(deleting), follow_up["by"])
    return {"halt": halt.as_dict(history=False) if halt else None, "deleting": [asdict(r) for r in deleting], "errors": errors, "follow_up": follow_up}


def request_resume(who: str, reason: str) -> dict[str, Any]:
    """A `chaos_resume` run: it clears the halt only once an SRE approver answers its approval."""
    return trigger(RESUME_DAG_ID, who, reason)
