"""Maintenance on the sandbox: finished objects and orphans go, live runs stay, a stale lock is freed,
stale heartbeats go, and retention deletes only old report folders."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import pytest

from airflow.sdk import ObjectStoragePath
from chaos_engineering.heartbeat import Heartbeat, ScenarioHeartbeat
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.lock import ExperimentLock
from chaos_engineering.maintenance import MaintenanceReport, delete_stale_heartbeats, maintain, prune_reports
from chaos_engineering.triggers import fault_state
from tests.integration.chaos_support import NAMESPACE, create_fault, get, remove

UTC = dt.timezone.utc


@pytest.fixture
def planted(connections, tmp_path):
    made: list[dict] = []

    def plant(prefix: str, **kwargs) -> dict:
        made.append(create_fault(prefix, **kwargs))
        return made[-1]

    yield plant
    for obj in made:
        remove(obj)
    ExperimentLock(ChaosMeshHook(), NAMESPACE).force_release()



def _holder(obj: dict) -> str:
    from chaos_engineering.render import ANNOTATION_DAG_ID, ANNOTATION_RUN_ID

    annotations = obj["metadata"]["annotations"]
    return f"{annotations[ANNOTATION_DAG_ID]}/{annotations[ANNOTATION_RUN_ID]}"


def _wait_gone(obj: dict, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while get(obj) is not None:
        assert time.monotonic() < deadline, f"{obj['metadata']['name']} still there after {timeout} s"
        time.sleep(0.2)


def _names(items) -> set[str]:
    return {getattr(i, "object", i).name for i in items}


def test_finished_and_orphaned_objects_go_live_runs_stay(planted, tmp_path):
    hook = ChaosMeshHook()
    finished = planted("mt-finished", duration="1s")
    orphan = planted("mt-orphan")
    live = planted("mt-live")
    watched = planted("mt-watched")
    foreign = planted("mt-foreign", owned=False)
    ExperimentLock(hook, NAMESPACE).acquire(_holder(live), 3600)
    Heartbeat(hook, "NetworkChaos", watched["metadata"]["name"], NAMESPACE).renew("test-monitor", 5)
    gone_fault = f"mt-gone-{uuid.uuid4().hex[:8]}"
    stale_beat = Heartbeat(hook, "NetworkChaos", gone_fault, NAMESPACE)
    stale_beat.renew("dead-monitor", 5, now=dt.datetime.now(UTC) - dt.timedelta(hours=1))
    deadline = time.monotonic() + 15
    while fault_state(get(finished)) != "ended":
        assert time.monotonic() < deadline, "the 1 s fault never ended"
        time.sleep(0.2)

    report = maintain(hook, NAMESPACE, ObjectStoragePath(f"file://{tmp_path}/"), 30, orphan_grace_s=0)

    assert report.errors == []
    assert _names(report.finished) == {finished["metadata"]["name"]}
    assert _names(report.orphans) == {orphan["metadata"]["name"]}
    assert report.orphans[0].object.run == _holder(orphan)
    assert "no live run" in report.orphans[0].reason
    assert _names(report.kept) == {live["metadata"]["name"], watched["metadata"]["name"]}
    # The session's cluster is shared: a test that killed its monitor may have left a stale
    # heartbeat too, and removing it is right. Ours must be among them, the watched one not.
    assert f"{NAMESPACE}/{stale_beat.name}" in report.heartbeats
    assert f"{NAMESPACE}/{Heartbeat(hook, 'NetworkChaos', watched['metadata']['name'], NAMESPACE).name}" not in report.heartbeats
    assert stale_beat.read() is None
    assert report.stale_lock is None and ExperimentLock(hook, NAMESPACE).state().holder == _holder(live)
    _wait_gone(finished)
    _wait_gone(orphan)
    for kept in (live, watched, foreign):
        assert get(kept) is not None, f"{kept['metadata']['name']} must not be touched"
    # The watched fault's heartbeat is fresh and its fault exists: it stays.
    assert Heartbeat(hook, "NetworkChaos", watched["metadata"]["name"], NAMESPACE).read() is not None


def test_a_scenario_runs_stale_heartbeat_stays_while_an_object_of_the_run_does(planted):
    hook, key = ChaosMeshHook(), uuid.uuid4().hex[:16]
    step = planted("mt-step", scenario=("mt-scenario", key))
    beat = ScenarioHeartbeat(hook, "mt-scenario", key, NAMESPACE)
    beat.renew("dead-monitor", 5, now=dt.datetime.now(UTC) - dt.timedelta(hours=1))
    try:
        kept = MaintenanceReport()
        delete_stale_heartbeats(hook, kept, now=dt.datetime.now(UTC))
        assert kept.errors == [] and f"{NAMESPACE}/{beat.name}" not in kept.heartbeats
        assert beat.read() is not None
        remove(step)
        _wait_gone(step)
        swept = MaintenanceReport()
        delete_stale_heartbeats(hook, swept, now=dt.datetime.now(UTC))
        assert f"{NAMESPACE}/{beat.name}" in swept.heartbeats and beat.read() is None
    finally:
        beat.delete()


def test_a_young_object_without_a_live_run_is_kept_until_its_grace(planted, tmp_path):
    young = planted("mt-young")
    report = maintain(ChaosMeshHook(), NAMESPACE, ObjectStoragePath(f"file://{tmp_path}/"), 30, orphan_grace_s=3600)
    assert report.orphans == [] and _names(report.kept) == {young["metadata"]["name"]}
    assert get(young) is not None


def test_a_stale_lock_is_released_and_a_fresh_one_kept(planted, tmp_path):
    hook, lock = ChaosMeshHook(), ExperimentLock(ChaosMeshHook(), NAMESPACE)
    lock.acquire("chaos_low_risk/dead_run", 60, now=dt.datetime.now(UTC) - dt.timedelta(seconds=120))
    report = maintain(hook, NAMESPACE, ObjectStoragePath(f"file://{tmp_path}/"), 30)
    assert report.stale_lock is not None and report.stale_lock.holder == "chaos_low_risk/dead_run"
    assert lock.state() is None

    lock.acquire("chaos_low_risk/live_run", 600)
    report = maintain(hook, NAMESPACE, ObjectStoragePath(f"file://{tmp_path}/"), 30)
    assert report.stale_lock is None and lock.state().holder == "chaos_low_risk/live_run"


def _folder(base, dag_id: str, year: int, month: int, run_id: str, written_at: dt.datetime | None, *, broken: bool = False):
    folder = base / dag_id / f"{year:04d}" / f"{month:02d}" / run_id
    folder.mkdir(parents=True)
    if broken:
        (folder / "result.json").write_text("{not json")
    elif written_at is not None:
        (folder / "result.json").write_text(json.dumps({"written_at": written_at.isoformat()}))
    (folder / "report.html").write_text("<html></html>")
    return folder


def test_retention_deletes_only_old_report_folders(tmp_path):
    now = dt.datetime(2026, 6, 15, 12, tzinfo=UTC)  # retention 30 days: cutoff 2026-05-16 12:00
    base = tmp_path / "reports"
    old = _folder(base, "chaos_low_risk", 2026, 3, "scheduled__old", dt.datetime(2026, 3, 10, tzinfo=UTC))
    just_old = _folder(base, "chaos_low_risk", 2026, 5, "manual__just_old", dt.datetime(2026, 5, 16, 11, 59, tzinfo=UTC))
    just_new = _folder(base, "chaos_low_risk", 2026, 5, "manual__just_new", dt.datetime(2026, 5, 16, 12, 1, tzinfo=UTC))
    # written_at wins over the folder's month (a run whose logical date is older than its run)
    late = _folder(base, "chaos_high_risk", 2026, 1, "manual__late", dt.datetime(2026, 6, 1, tzinfo=UTC))
    unreadable_old = _folder(base, "chaos_medium_risk", 2026, 4, "manual__unreadable_old", None, broken=True)
    # no result: judged by the end of May (June 1st), younger than the cutoff: kept
    unreadable_may = _folder(base, "chaos_medium_risk", 2026, 5, "manual__unreadable_may", None)
    trends = base / "trends" / "2026-01"
    trends.mkdir(parents=True)
    (trends / "trends.json").write_text("{}")

    report = MaintenanceReport()
    prune_reports(ObjectStoragePath(f"file://{base}/"), 30, report, now=now)

    assert report.errors == []
    assert sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in report.pruned_reports) == ["manual__just_old", "manual__unreadable_old", "scheduled__old"]
    for gone in (old, just_old, unreadable_old):
        assert not gone.exists()
    for kept in (just_new, late, unreadable_may, trends / "trends.json"):
        assert kept.exists()
