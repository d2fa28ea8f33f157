"""When the watchdog removes a fault, forces a stuck deletion, and counts a sweep: one case per rule."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from chaos_engineering import watchdog
from chaos_engineering.emergency import ANNOTATION_CLEAN_FINALIZER
from chaos_engineering.halt import HaltState
from chaos_engineering.heartbeat import Beat
from chaos_engineering.watchdog import stale_reason
from tests.unit.cluster_fake import NAMESPACE, FakeCluster, fault, halt_lease

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def obj(created_s_ago: float = 100, *, deleting: bool = False, ended: bool = False) -> dict:
    meta = {"name": "f", "namespace": "chaos-engineering", "creationTimestamp": (NOW - dt.timedelta(seconds=created_s_ago)).isoformat().replace("+00:00", "Z")}
    if deleting:
        meta["deletionTimestamp"] = NOW.isoformat()
    status = {"experiment": {"desiredPhase": "Stop"}, "conditions": [{"type": "AllRecovered", "status": "True"}]} if ended else {}
    return {"kind": "NetworkChaos", "metadata": meta, "status": status}


def beat(age_s: float, *, holder: str = "triggerer-1/42", promise_s: int = 1) -> Beat:
    return Beat(holder, NOW - dt.timedelta(seconds=age_s), promise_s)


@pytest.mark.parametrize(
    ("fault", "heartbeat", "expected"),
    [
        (obj(), beat(3.0), None),
        (obj(), beat(20.0), None),
        (obj(), beat(20.5), "heartbeat 20.5 s old (grace 20 s): its monitor is gone"),
        (obj(created_s_ago=10), None, None),
        (obj(created_s_ago=25), None, "no heartbeat, created 25.0 s ago (grace 20 s): nothing monitors it"),
        (obj(), beat(45.0, holder="inject:worker-1/7", promise_s=60), None),
        (obj(), beat(60.5, holder="inject:worker-1/7", promise_s=60),
         "heartbeat 60.5 s old, written at injection (hand-over 60 s): its monitor never started"),
        (obj(), beat(10.0, holder="inject:worker-1/7", promise_s=5), None),  # the grace is the floor
        (obj(deleting=True), beat(500.0), None),
        (obj(ended=True), beat(500.0), None),
    ],
    ids=["fresh", "at-grace", "stale", "young-without-beat", "old-without-beat", "hand-over-pending",
         "hand-over-missed", "short-promise", "already-deleting", "ended-by-chaos-mesh"],
)
def test_stale_reason(fault, heartbeat, expected):
    assert stale_reason(fault, heartbeat, 20, NOW) == expected


# --- the halt, stuck deletions, liveness ------------------------------------------------------

HALTED = HaltState(halted=True, halted_by="alice", halted_at="2026-03-01T11:59:00+00:00", halted_reason="payments look wrong")
RESUMED = HaltState(halted=False, halted_by="alice", resumed_by="bob")


@pytest.mark.parametrize(
    ("fault_", "heartbeat", "halt", "expected"),
    [
        (obj(), beat(1.0), HALTED, "halted by alice at 2026-03-01T11:59:00+00:00: payments look wrong"),
        (obj(created_s_ago=1), None, HALTED, "halted by alice at 2026-03-01T11:59:00+00:00: payments look wrong"),
        (obj(ended=True), beat(1.0), HALTED, "halted by alice at 2026-03-01T11:59:00+00:00: payments look wrong"),
        (obj(deleting=True), beat(1.0), HALTED, None),
        (obj(), beat(1.0), RESUMED, None),
    ],
    ids=["watched-but-halted", "young-but-halted", "ended-but-halted", "deleting-while-halted", "resumed"],
)
def test_stale_reason_while_halted(fault_, heartbeat, halt, expected):
    assert stale_reason(fault_, heartbeat, 20, NOW, halt) == expected


@pytest.mark.parametrize(
    ("deleting_s_ago", "expected"),
    [
        (None, None),
        (59.0, None),
        (60.0, None),
        (75.0, "deletion requested 75.0 s ago (safety.deletion_timeout 60 s) and Chaos Mesh's finalizer still holds it: "
               "its fault may still be applied"),
    ],
    ids=["not-deleting", "young-deletion", "at-the-timeout", "stuck"],
)
def test_stuck_reason(deleting_s_ago, expected):
    assert watchdog.stuck_reason(fault("f", deleting_s_ago=deleting_s_ago), 60, NOW) == expected


def test_a_halted_sweep_removes_every_fault_of_ours_whatever_its_heartbeat():
    cluster = FakeCluster([fault("young", created_s_ago=1), fault("old"), fault("foreign", owned=False)], halt=halt_lease())
    result = watchdog.sweep(cluster, now=NOW, namespace=NAMESPACE)
    assert sorted((r.fault.name, r.reason) for r in result.removed) == [
        ("old", "halted by alice at 2026-03-01T11:59:00+00:00: payments look wrong"),
        ("young", "halted by alice at 2026-03-01T11:59:00+00:00: payments look wrong"),
    ]
    assert ("delete", "foreign") not in cluster.calls and result.halted is True and result.successful


def test_an_unreadable_halt_flag_keeps_the_last_state_read_and_counts_an_error():
    cluster = FakeCluster([fault("young", created_s_ago=1)], refuse=("get_lease",))
    assumed = watchdog.sweep(cluster, now=NOW, namespace=NAMESPACE, assumed_halt=HALTED)
    assert [r.fault.name for r in assumed.removed] == ["young"] and assumed.halt_assumed and assumed.halted is None
    assert "cannot read the halt flag: (403)" in assumed.errors[0]
    # Never read: not taken as set (the young fault keeps its grace; the heartbeat read fails too).
    unknown = watchdog.sweep(FakeCluster([fault("young", created_s_ago=1)], refuse=("get_lease",)), now=NOW, namespace=NAMESPACE)
    assert unknown.removed == [] and unknown.halt is None and unknown.errors


def test_a_stuck_deletion_is_forced_once_and_counted():
    cluster = FakeCluster([fault("stuck", deleting_s_ago=90), fault("deleting", deleting_s_ago=5)])
    first = watchdog.sweep(cluster, now=NOW, namespace=NAMESPACE, deletion_timeout_s=60)
    assert [r.fault.name for r in first.stuck] == ["stuck"] and [r.fault.name for r in first.forced] == ["stuck"]
    assert cluster.objects["stuck"]["metadata"]["annotations"][ANNOTATION_CLEAN_FINALIZER] == "forced"
    assert first.removed == [] and ("delete", "deleting") not in cluster.calls
    # Still there at the next sweep: counted as stuck, not forced again (Chaos Mesh is not acting).
    second = watchdog.sweep(cluster, now=NOW, namespace=NAMESPACE, deletion_timeout_s=60)
    assert [r.fault.name for r in second.stuck] == ["stuck"] and second.forced == []
    assert [c for c in cluster.calls if c[0] == "patch"] == [("patch", "stuck", {"metadata": {"annotations": {ANNOTATION_CLEAN_FINALIZER: "forced"}}})]


def test_a_sweep_whose_every_list_fails_does_not_count_as_a_sweep():
    failed = watchdog.sweep(FakeCluster([fault("f")], refuse=("list",)), now=NOW, namespace=NAMESPACE)
    assert not failed.successful and failed.kinds_listed == 0 and len(failed.errors) == 5
    (update,) = watchdog.sweep_updates(failed)
    assert "chaos_watchdog_last_sweep_timestamp_seconds" not in update.gauges
    assert "chaos_fault_deletion_stuck" not in update.gauges
    assert update.increments == {"chaos_watchdog_errors": 5.0}
    ok = watchdog.sweep(FakeCluster([fault("f", deleting_s_ago=90)]), now=NOW, namespace=NAMESPACE)
    (update,) = watchdog.sweep_updates(ok)
    assert update.gauges["chaos_watchdog_last_sweep_timestamp_seconds"] == ok.at and update.gauges["chaos_fault_deletion_stuck"] == 1.0
    assert update.increments == {"chaos_watchdog_errors": 0.0, "chaos_fault_deletions_forced": {"watchdog": 1.0}}
    assert update.gauges["chaos_fault_deletion_last_forced_timestamp_seconds"] == ok.at


def test_the_liveness_timestamp_does_not_advance_while_every_list_is_refused(monkeypatch):
    import chaos_engineering.notify.metrics as metrics

    pushed: list = []
    monkeypatch.setattr(watchdog, "_check_pushgateway", lambda conn_id: None)
    cluster = FakeCluster([fault("f")])
    stop = threading.Event()

    def after_sweep(updates, **kwargs):
        pushed.extend(updates)
        if len(pushed) == 1:
            cluster.refuse = ("list",)  # the service account loses its grants after the first sweep
        if len(pushed) == 3:
            stop.set()

    monkeypatch.setattr(metrics, "push_updates", after_sweep)
    watchdog.run(cluster, interval_s=0.01, stop=stop, pushgateway_conn_id="pushgateway_test", namespace=NAMESPACE)
    stamps = [u.gauges.get("chaos_watchdog_last_sweep_timestamp_seconds") for u in pushed]
    assert stamps[0] is not None and stamps[1:] == [None, None]
    assert [u.increments["chaos_watchdog_errors"] for u in pushed] == [0.0, 5.0, 5.0]


def test_a_removed_fault_is_recorded_as_no_longer_active():
    """Pre-flight counts a fault recorded as injected as standing until its removal is recorded
    (or a fault's lifetime passes): the watchdog records the removals it makes, as a run would."""
    from chaos_engineering.render import LABEL_EXPERIMENT, LABEL_TARGET, LABEL_TIER

    ours = fault("old")
    ours["metadata"]["labels"] |= {LABEL_TIER: "low", LABEL_EXPERIMENT: "cache-kill", LABEL_TARGET: "cache"}
    result = watchdog.sweep(FakeCluster([ours, fault("unlabelled")]), now=NOW, namespace=NAMESPACE)
    assert sorted(r.fault.name for r in result.removed) == ["old", "unlabelled"]
    liveness, *experiments = watchdog.sweep_updates(result)
    assert liveness.labels == {} and liveness.increments["chaos_watchdog_removals"] == 2.0
    assert [(u.labels, u.gauges, u.increments) for u in experiments] == [
        ({"tier": "low", "experiment": "cache-kill", "target_service": "cache"}, {"chaos_experiment_active": 0.0}, {})
    ]
