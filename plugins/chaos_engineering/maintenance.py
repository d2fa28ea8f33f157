"""Daily housekeeping: finished and orphaned chaos objects, a stale lock, stale heartbeats, old reports,
and reports left pending while object storage was down.

Without Airflow's database (a task cannot reach it in Airflow 3), a run is *live* when it holds
the experiment lock (holder `<dag_id>/<run_id>`, from the object's annotations) or its fault's
heartbeat Lease is fresh. Anything of ours older than a grace whose run is not live is an orphan.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow.sdk import ObjectStoragePath
from chaos_engineering.chaosmesh.constants import PLURALS, ChaosKind
from chaos_engineering.chaosmesh.duration import parse_go_duration
from chaos_engineering.emergency import ObjectRef, owned_objects
from chaos_engineering.heartbeat import ANNOTATION_FAULT_KIND, ANNOTATION_SCENARIO_RUN_KEY, LABEL_HEARTBEAT_OF, Beat, heartbeat_of
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.lock import ExperimentLock, LockState
from chaos_engineering.operators.result import RESULT_KEY, run_folder, write_result
from chaos_engineering.render import LABEL_RUN_KEY, OWNED_SELECTOR
from chaos_engineering.triggers import fault_state
from chaos_engineering.watchdog import DEFAULT_GRACE_S, _parse_time

log = logging.getLogger(__name__)

#: An object of ours younger than this is never an orphan: its run may be between steps.
ORPHAN_GRACE_S = 3600.0
#: The DAGs whose runs end with write_result and report (the tiers and the DR drill).
REPORTED_DAGS = ("chaos_low_risk", "chaos_medium_risk", "chaos_high_risk", "chaos_dr_drill")
#: How far back pending reports are written: Prometheus still holds those days' series.
PENDING_LOOKBACK_DAYS = 7
_YEAR, _MONTH = re.compile(r"^\d{4}$"), re.compile(r"^(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class Cleaned:
    object: ObjectRef
    reason: str


@dataclass
class MaintenanceReport:
    finished: list[Cleaned] = field(default_factory=list)
    orphans: list[Cleaned] = field(default_factory=list)
    kept: list[ObjectRef] = field(default_factory=list)
    stale_lock: LockState | None = None
    heartbeats: list[str] = field(default_factory=list)
    pruned_reports: list[str] = field(default_factory=list)
    #: `<dag_id>/<run_id>: wrote ... into <folder>`: reports written late (storage was down).
    pending_reports: list[str] = field(default_factory=list)
    #: Finished runs with neither result.json nor a result in XCom (ran before results were kept
    #: in XCom, or write_result never ran): nothing to write them from.
    unrecoverable: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "finished": [asdict(c) for c in self.finished],
            "orphans": [asdict(c) for c in self.orphans],
            "kept": [asdict(r) for r in self.kept],
            "stale_lock": self.stale_lock.holder if self.stale_lock else None,
            "heartbeats": self.heartbeats,
            "pruned_reports": self.pruned_reports,
            "pending_reports": self.pending_reports,
            "unrecoverable": self.unrecoverable,
            "errors": self.errors,
        }

    def summary(self) -> str:
        lines = [f"removed {len(self.finished)} finished chaos object(s), {len(self.orphans)} orphan(s); kept {len(self.kept)} of live runs"]
        lines += [f"  ORPHAN {c.object.kind} {c.object.namespace}/{c.object.name} ({c.object.run or 'no run'}): {c.reason}" for c in self.orphans]
        if self.stale_lock:
            lines.append(f"  STALE LOCK released (held by {self.stale_lock.holder}, expired {self.stale_lock.expires()})")
        lines.append(f"  deleted {len(self.heartbeats)} stale heartbeat(s); pruned {len(self.pruned_reports)} report folder(s)")
        lines.append(f"  wrote {len(self.pending_reports)} pending report(s)")
        lines += [f"  PENDING REPORT {p}" for p in self.pending_reports]
        lines += [f"  NO RESULT {u}" for u in self.unrecoverable]
        lines += [f"  ERROR: {e}" for e in self.errors]
        return "\n".join(lines)


def _age_s(obj: dict[str, Any], now: dt.datetime) -> float:
    created = _parse_time(obj["metadata"].get("creationTimestamp"))
    return (now - created).total_seconds() if created else float("inf")


def is_finished(obj: dict[str, Any], now: dt.datetime) -> bool:
    """Chaos Mesh ended it (desiredPhase Stop and AllRecovered), or a one-shot pod-kill older than its duration."""
    if fault_state(obj) == "ended":
        return True
    spec = obj.get("spec") or {}
    if obj.get("kind") == ChaosKind.POD_CHAOS.value and spec.get("action") == "pod-kill":
        duration = parse_go_duration(spec["duration"]) if spec.get("duration") else 0.0
        return _age_s(obj, now) > duration
    return False


def run_is_live(ref: ObjectRef, lock: LockState | None, beat: Beat | None, heartbeat_grace_s: float, now: dt.datetime) -> bool:
    """Its run holds an unexpired lock, or its fault's heartbeat is fresh."""
    if lock is not None and ref.run and lock.holder == ref.run and not lock.expired(now):
        return True
    return beat is not None and beat.fresh(now, heartbeat_grace_s)


def clean_chaos_objects(
    hook: ChaosMeshHook,
    lock_namespace: str,
    report: MaintenanceReport,
    *,
    orphan_grace_s: float = ORPHAN_GRACE_S,
    heartbeat_grace_s: float = DEFAULT_GRACE_S,
    now: dt.datetime,
) -> None:
    """Delete finished objects and orphans; never an object whose run is live (its monitor would see it `gone`)."""
    lock = ExperimentLock(hook, lock_namespace).state()
    for obj in owned_objects(hook, report.errors):
        ref = ObjectRef.of(obj)
        if obj["metadata"].get("deletionTimestamp"):
            continue  # being deleted already
        try:
            beat = heartbeat_of(hook, obj).read()
            if run_is_live(ref, lock, beat, heartbeat_grace_s, now):
                report.kept.append(ref)
                continue
            if is_finished(obj, now):
                hook.delete(ChaosKind(ref.kind), ref.name, ref.namespace)
                report.finished.append(Cleaned(ref, "finished: Chaos Mesh recovered it"))
            elif (age := _age_s(obj, now)) > orphan_grace_s:
                hook.delete(ChaosKind(ref.kind), ref.name, ref.namespace)
                reason = f"no live run ({ref.run or 'no run recorded'} holds no lock and has no fresh heartbeat), {age:.0f} s old"
                report.orphans.append(Cleaned(ref, reason))
                log.warning("orphan %s %s/%s removed: %s", ref.kind, ref.namespace, ref.name, reason)
            else:
                report.kept.append(ref)
        except Exception as exc:
            report.errors.append(f"{ref.kind} {ref.namespace}/{ref.name}: {exc}")


def release_stale_lock(hook: ChaosMeshHook, namespace: str, report: MaintenanceReport, *, now: dt.datetime) -> None:
    lock = ExperimentLock(hook, namespace)
    try:
        state = lock.release_expired(now)
        if state is not None:
            report.stale_lock = state
            log.warning("stale lock of %s released (expired %s)", state.holder, state.expires())
    except Exception as exc:
        report.errors.append(f"experiment lock: {exc}")


def _run_has_objects(hook: ChaosMeshHook, run_key: str) -> bool:
    """Whether any chaos object of ours carries the run's key (an unreadable kind raises)."""
    errors: list[str] = []
    found = any((o["metadata"].get("labels") or {}).get(LABEL_RUN_KEY) == run_key for o in owned_objects(hook, errors))
    if errors and not found:
        raise RuntimeError("; ".join(errors))
    return found


def _fault_of(lease: Any) -> tuple[ChaosKind, str] | None:
    """The fault a heartbeat Lease watches, from its kind annotation and its name."""
    kind = (lease.metadata.annotations or {}).get(ANNOTATION_FAULT_KIND)
    if kind not in {k.value for k in ChaosKind}:
        return None
    prefix = f"chaos-heartbeat-{PLURALS[ChaosKind(kind)]}-"
    name = lease.metadata.name
    return (ChaosKind(kind), name[len(prefix):]) if name.startswith(prefix) else None


def delete_stale_heartbeats(hook: ChaosMeshHook, report: MaintenanceReport, *, grace_s: float = DEFAULT_GRACE_S, now: dt.datetime) -> None:
    """Heartbeats older than the grace whose fault no longer exists (a monitor died before deleting
    it): for a scenario run's one heartbeat, no object of the run is left."""
    try:
        leases = hook.list_leases(label_selector=OWNED_SELECTOR)
    except Exception as exc:
        report.errors.append(f"cannot list heartbeats: {exc}")
        return
    for lease in (item for item in leases if LABEL_HEARTBEAT_OF in (item.metadata.labels or {})):
        meta = lease.metadata
        try:
            renewed = lease.spec.renew_time if lease.spec else None
            if renewed is not None and (now - renewed).total_seconds() <= grace_s:
                continue
            run_key = (meta.annotations or {}).get(ANNOTATION_SCENARIO_RUN_KEY)
            if run_key and _run_has_objects(hook, run_key):
                continue
            fault = _fault_of(lease)
            if fault is not None and hook.get(fault[0], fault[1], meta.namespace) is not None:
                continue
            if hook.delete_lease(meta.name, meta.namespace, meta.resource_version):
                report.heartbeats.append(f"{meta.namespace}/{meta.name}")
        except Exception as exc:
            report.errors.append(f"heartbeat {meta.namespace}/{meta.name}: {exc}")


def _month_end(year: int, month: int) -> dt.datetime:
    return dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.timezone.utc)


def _written_at(folder: ObjectStoragePath) -> dt.datetime | None:
    try:
        value = json.loads((folder / "result.json").read_text())["written_at"]
        written = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return written if written.tzinfo else written.replace(tzinfo=dt.timezone.utc)
    except Exception:
        return None


def _dirs(path: ObjectStoragePath) -> list[ObjectStoragePath]:
    return sorted((p for p in path.iterdir() if p.is_dir()), key=str)


def run_folders(base: ObjectStoragePath) -> list[tuple[ObjectStoragePath, int, int]]:
    """Every `<dag_id>/<YYYY>/<MM>/<run_id>/` under the base, with its year and month."""
    found = []
    if not base.exists():
        return found
    for dag in _dirs(base):
        for year in (y for y in _dirs(dag) if _YEAR.match(y.name)):
            for month in (m for m in _dirs(year) if _MONTH.match(m.name)):
                found += [(run, int(year.name), int(month.name)) for run in _dirs(month)]
    return found


def prune_reports(base: ObjectStoragePath, retention_days: int, report: MaintenanceReport, *, now: dt.datetime) -> None:
    """Delete run folders older than the retention. Age is the result's `written_at`, else the end
    of the folder's month (the youngest it can be): a folder is never deleted too early."""
    cutoff = now - dt.timedelta(days=retention_days)
    try:
        folders = run_folders(base)
    except Exception as exc:
        report.errors.append(f"cannot list reports under {base}: {exc}")
        return
    for folder, year, month in folders:
        written = _written_at(folder) or _month_end(year, month)
        if written >= cutoff:
            continue
        try:
            folder.fs.rm(folder.path, recursive=True)
            report.pruned_reports.append(str(folder))
        except Exception as exc:
            report.errors.append(f"cannot delete {folder}: {exc}")


def _time(value: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def write_pending_reports(
    api: Any,
    base_url: str,
    conn_id: str | None,
    build: Callable[[dict[str, Any], ObjectStoragePath], list[Any]],
    report: MaintenanceReport,
    *,
    lookback_days: int = PENDING_LOOKBACK_DAYS,
    dag_ids: tuple[str, ...] = REPORTED_DAGS,
    now: dt.datetime,
) -> None:
    """Finished runs of the last `lookback_days` whose report set is incomplete (no report.json):
    result.json is written from write_result's XCom when missing, then `build(result, folder)`
    writes the report. `api` is an AirflowApiHook: a task cannot read the metadata DB."""
    since = now - dt.timedelta(days=lookback_days)
    for dag_id in dag_ids:
        try:
            runs = api.dag_runs(dag_id, run_after_gte=since)
        except Exception as exc:
            report.errors.append(f"cannot list the runs of {dag_id} through Airflow's REST API: {exc}")
            continue
        for run in runs:
            name = f"{dag_id}/{run['dag_run_id']}"
            try:
                folder = run_folder(base_url, conn_id, dag_id, run["dag_run_id"], _time(run["run_after"]))
                if (folder / "report.json").exists():
                    continue
                wrote: list[str] = []
                if (folder / "result.json").exists():
                    result = json.loads((folder / "result.json").read_text())
                else:
                    result = api.xcom_value(dag_id, run["dag_run_id"], "write_result", RESULT_KEY)
                    if not isinstance(result, dict):
                        report.unrecoverable.append(f"{name}: no result.json in {folder} and no result in write_result's XCom ({RESULT_KEY!r})")
                        log.warning("%s", report.unrecoverable[-1])
                        continue
                    write_result(folder, result)
                    wrote.append("result.json")
                wrote += [getattr(p, "name", str(p)) for p in build(result, folder)]
                report.pending_reports.append(f"{name}: wrote {', '.join(wrote)} into {folder}")
                log.warning("pending report of %s written: %s", name, report.pending_reports[-1])
            except Exception as exc:
                report.errors.append(f"pending report of {name}: {type(exc).__name__}: {exc}")


def maintain(
    hook: ChaosMeshHook,
    lock_namespace: str,
    reports_base: ObjectStoragePath,
    retention_days: int,
    *,
    orphan_grace_s: float = ORPHAN_GRACE_S,
    heartbeat_grace_s: float = DEFAULT_GRACE_S,
    now: dt.datetime | None = None,
    pending: Callable[[MaintenanceReport, dt.datetime], None] | None = None,
) -> MaintenanceReport:
    """One pass of everything; never raises for one failing item (each is in `errors`).
    `pending(report, now)` writes pending reports (write_pending_reports, bound by the caller)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    report = MaintenanceReport()
    # Objects first, while the lock still says which run is live; then the lock if it expired.
    clean_chaos_objects(hook, lock_namespace, report, orphan_grace_s=orphan_grace_s, heartbeat_grace_s=heartbeat_grace_s, now=now)
    release_stale_lock(hook, lock_namespace, report, now=now)
    delete_stale_heartbeats(hook, report, grace_s=heartbeat_grace_s, now=now)
    # Pending reports before pruning: a run is written, never pruned, inside the look-back.
    if pending is not None:
        pending(report, now)
    prune_reports(reports_base, retention_days, report, now=now)
    log.info("%s", report.summary())
    return report
