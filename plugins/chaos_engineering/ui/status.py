"""What the Chaos page shows: halt, lock, active faults with live readings, pending approvals, last runs.

Each part is read from where its truth lives (the cluster, Prometheus, Airflow's metadata, the
result files) and fails alone: an unreadable part carries an `error` and the rest still shows.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from airflow.models.dag import DagTag
from airflow.models.dagrun import DagRun
from airflow.models.hitl import HITLDetail
from airflow.models.taskinstance import TaskInstance
from airflow.utils.state import TaskInstanceState
from chaos_engineering.catalogue import Catalogue
from chaos_engineering.chaosmesh.duration import parse_go_duration
from chaos_engineering.chaosmesh.spec import parse_spec
from chaos_engineering.emergency import ObjectRef, deletion_age_s, owned_objects
from chaos_engineering.experiment import Experiment
from chaos_engineering.halt import HaltFlag
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.hooks.prometheus import PrometheusHook
from chaos_engineering.lock import ExperimentLock
from chaos_engineering.operators.monitor import recorded_baseline
from chaos_engineering.operators.result import run_folder
from chaos_engineering.policy import SafetyPolicy, Threshold
from chaos_engineering.rules import fault_actions
from chaos_engineering.safety import bound_of, check
from chaos_engineering.triggers import created_at, fault_state
from chaos_engineering.ui.links import report_url, ui_url
from chaos_engineering.verification import experiment_thresholds

#: Runs listed under "last runs".
RECENT_RUNS = 10
#: DAGs whose runs are experiments (they write a result and a report): tagged with their tier.
TIER_TAG_PREFIX = "tier:"


def run_url(dag_id: str, run_id: str) -> str:
    return ui_url(f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}")


def _part(read, *args: Any) -> Any:
    try:
        return read(*args)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def halt_state(hook: ChaosMeshHook, policy: SafetyPolicy) -> dict[str, Any]:
    state = HaltFlag(hook, policy.chaos_namespace).state()
    return state.as_dict(history=False) | {"describe": state.describe()}


def lock_state(hook: ChaosMeshHook, policy: SafetyPolicy) -> dict[str, Any]:
    lock = ExperimentLock(hook, policy.chaos_namespace).state()
    if lock is None:
        return {"held": False, "holder": None, "expires": None}
    expires = lock.expires()
    return {"held": not lock.expired(dt.datetime.now(dt.timezone.utc)), "holder": lock.holder, "expires": expires.isoformat() if expires else None}


class _Readings:
    """Each distinct query read once per status, side by side (a fault has one query per threshold)."""

    def __init__(self, prometheus: PrometheusHook) -> None:
        self.prometheus = prometheus
        self.values: dict[str, tuple[float | None, str]] = {}

    def read(self, queries: set[str]) -> None:
        def one(query: str) -> tuple[float | None, str]:
            try:
                value = self.prometheus.query(query)
            except Exception as exc:
                return None, str(exc)
            return value, "" if value is not None else "no data"

        todo = sorted(queries - set(self.values))
        if todo:
            with ThreadPoolExecutor(min(len(todo), 8)) as pool:
                self.values |= dict(zip(todo, pool.map(one, todo)))


def reading(name: str, threshold: Threshold, value: float | None, problem: str, baseline: Any) -> dict[str, Any]:
    """One threshold's live value against the bound the kill switch judges it by (safety.py's rules)."""
    row: dict[str, Any] = {"threshold": name, "rule": threshold.rule.value, "limit": threshold.limit, "unit": threshold.unit,
                           "baseline": baseline, "value": value, "bound": None}
    try:
        row["bound"] = bound_of(threshold, baseline)
    except ValueError as exc:
        return row | {"status": "cannot judge", "message": str(exc)}
    if value is None:
        return row | {"status": "unreadable", "message": problem}
    breach = check(name, threshold, value, baseline, time.time())
    return row | ({"status": "breach", "message": breach.message} if breach else {"status": "ok", "message": ""})


def fault_action(kind: str, spec: dict[str, Any], experiment: Experiment | None) -> str | None:
    """What a fault on the cluster does, in rules.fault_actions' words: a PodChaos', NetworkChaos'
    or IOChaos' `action`, a StressChaos' stressors, an HTTPChaos' faults (abort, delay, ...: it has
    no `action`). Read from the object's own spec, which is what is applied; from its catalogue
    experiment's when that spec does not parse (a Chaos Mesh newer than our models)."""
    typed, _ = parse_spec(kind, spec)
    if typed is None and experiment is not None:
        typed = experiment.spec
    if typed is None:
        return None
    return ", ".join(fault_actions(typed)) or None


def active_faults(hook: ChaosMeshHook, catalogue: Catalogue, prometheus: PrometheusHook) -> list[dict[str, Any]]:
    policy = catalogue.policy
    now = dt.datetime.now(dt.timezone.utc)
    faults = []
    for obj in owned_objects(hook):
        ref = ObjectRef.of(obj)
        spec = obj.get("spec") or {}
        ends_at = (created_at(obj) or time.time()) + parse_go_duration(spec.get("duration") or "0s")
        experiment = catalogue.get(ref.experiment)
        thresholds = (
            {name: Threshold.model_validate(t) for name, t in experiment_thresholds(experiment, policy).items()} if experiment else {}
        )
        deleting_for = deletion_age_s(obj, now)
        faults.append({
            "kind": ref.kind, "name": ref.name, "namespace": ref.namespace, "dag_id": ref.dag_id, "run_id": ref.run_id,
            "run_url": run_url(ref.dag_id, ref.run_id) if ref.dag_id else None, "tier": ref.tier, "experiment": ref.experiment,
            "target": ref.target_service,
            "action": fault_action(ref.kind, spec, experiment), "state": fault_state(obj),
            "time_left_s": max(0, round(ends_at - now.timestamp())), "deleting_for_s": round(deleting_for, 1) if deleting_for is not None else None,
            "_thresholds": thresholds, "_baseline": recorded_baseline(obj),
            "readings_error": None if experiment else f"experiment {ref.experiment!r} is not a valid experiment of the catalogue: no thresholds to show",
        })
    readings = _Readings(prometheus)
    readings.read({t.query for f in faults for t in f["_thresholds"].values()})
    for fault in faults:
        thresholds, baseline = fault.pop("_thresholds"), fault.pop("_baseline")
        fault["readings"] = [
            reading(name, t, *readings.values[t.query], baseline.get(name) if isinstance(baseline, dict) else None) for name, t in thresholds.items()
        ]
    return faults


def pending_approvals(session: Session, readable: set[str]) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(HITLDetail)
        .join(TaskInstance, HITLDetail.ti_id == TaskInstance.id)
        .where(HITLDetail.responded_at.is_(None), TaskInstance.state == TaskInstanceState.AWAITING_INPUT, TaskInstance.dag_id.in_(readable))
        .order_by(HITLDetail.created_at)
    )
    approvals = []
    for detail in rows:
        ti = detail.task_instance
        path = f"/dags/{quote(ti.dag_id, safe='')}/runs/{quote(ti.run_id, safe='')}/tasks/{quote(ti.task_id, safe='')}/required_actions"
        approvals.append({
            "dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "subject": detail.subject,
            "assignees": [a.get("name") or a.get("id") for a in detail.assignees or []],
            "created_at": detail.created_at.isoformat(), "url": ui_url(f"{path}?{urlencode({'map_index': ti.map_index})}"),
        })
    return approvals


def _result(policy: SafetyPolicy, run: DagRun) -> dict[str, Any] | None:
    path = run_folder(policy.reports.base_url, policy.reports.conn_id, run.dag_id, run.run_id, run.run_after) / "result.json"
    return json.loads(path.read_text()) if path.exists() else None


def recent_runs(session: Session, policy: SafetyPolicy, readable: set[str]) -> list[dict[str, Any]]:
    tier_dags = select(DagTag.dag_id).where(DagTag.name.startswith(TIER_TAG_PREFIX), DagTag.dag_id.in_(readable))
    runs = session.scalars(select(DagRun).where(DagRun.dag_id.in_(tier_dags)).order_by(DagRun.run_after.desc()).limit(RECENT_RUNS))
    listed = []
    for run in runs:
        row: dict[str, Any] = {"dag_id": run.dag_id, "run_id": run.run_id, "state": str(run.state), "run_after": run.run_after.isoformat(),
                               "experiment": (run.conf or {}).get("experiment") or "", "url": run_url(run.dag_id, run.run_id),
                               "verdict": None, "verdict_reason": "", "report_html": None, "report_pdf": None}
        try:
            result = _result(policy, run)
        except Exception as exc:
            row["verdict_reason"] = f"result unreadable: {type(exc).__name__}: {exc}"
            result = None
        if result is not None:
            row |= {"verdict": result.get("verdict"), "verdict_reason": result.get("verdict_reason", ""),
                    "experiment": ((result.get("experiment") or {}).get("name") or row["experiment"]),
                    "report_html": report_url(run.dag_id, run.run_id, "report.html"), "report_pdf": report_url(run.dag_id, run.run_id, "report.pdf")}
        listed.append(row)
    return listed


def chaos_status(session: Session, catalogue: Catalogue, readable: set[str], *, hook: ChaosMeshHook, prometheus: PrometheusHook) -> dict[str, Any]:
    policy = catalogue.policy
    return {
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "halt": _part(halt_state, hook, policy),
        "lock": _part(lock_state, hook, policy),
        "active_faults": _part(active_faults, hook, catalogue, prometheus),
        "pending_approvals": _part(pending_approvals, session, readable),
        "recent_runs": _part(recent_runs, session, policy, readable),
    }
