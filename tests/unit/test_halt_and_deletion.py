"""The halt enforced by the stop and the monitor, and stuck deletions: pure rules and fakes, no cluster."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering import emergency
from chaos_engineering.emergency import ANNOTATION_CLEAN_FINALIZER, ObjectRef, StopReport, StopSweep, deletion_age_s, force_finalizers, is_forced
from chaos_engineering.halt import HaltState
from chaos_engineering.notify.metrics import updates_for
from chaos_engineering.operators.monitor import FaultMonitorSensor
from chaos_engineering.triggers import FaultMonitorTrigger
from tests.unit.cluster_fake import NAMESPACE, NOW, FakeCluster, fault

POLICY = SimpleNamespace(chaos_namespace=NAMESPACE)
HALT = HaltState(halted=True, halted_by="alice", halted_at="2026-03-01T11:59:00+00:00", halted_reason="payments look wrong")


def ref(name: str) -> ObjectRef:
    return ObjectRef("NetworkChaos", name, NAMESPACE, uid=f"uid-{name}")


# --- Chaos Mesh's forced finalizer clean-up ---------------------------------------------------


def test_force_asks_for_the_deletion_then_annotates():
    cluster = FakeCluster([fault("f")])
    assert force_finalizers(cluster, ref("f")) is True
    assert [c[0] for c in cluster.calls] == ["delete", "patch"]
    assert cluster.objects["f"]["metadata"]["annotations"] == {ANNOTATION_CLEAN_FINALIZER: "forced"}
    assert is_forced(cluster.objects["f"]) and deletion_age_s(cluster.objects["f"], NOW) == 0.0


def test_force_of_an_object_already_gone_is_a_no_op():
    cluster = FakeCluster([])
    assert force_finalizers(cluster, ref("gone")) is False
    assert cluster.calls == [("delete", "gone")]


@pytest.mark.parametrize(("obj", "age"), [(fault("a"), None), (fault("b", deleting_s_ago=12.5), 12.5)], ids=["live", "deleting"])
def test_deletion_age(obj, age):
    assert deletion_age_s(obj, NOW) == age


# --- the stop: sweeps until the in-flight window has passed -------------------------------


def test_the_stop_catches_a_fault_created_after_its_first_sweeps():
    cluster = FakeCluster([fault("running")], recovers=True)
    created = threading.Event()

    def inflight_create() -> None:
        time.sleep(0.3)  # an inject's create, sent just before the halt, lands now
        cluster.objects["late"] = fault("late")
        created.set()

    threading.Thread(target=inflight_create).start()
    report = emergency.emergency_stop(cluster, POLICY, "alice", "race", in_flight_s=0.6, sweep_interval_s=0.05, poll_interval_s=0.01)
    assert created.is_set() and cluster.objects == {}
    assert [r.name for r in report.removed] == ["running", "late"] and report.errors == []
    first, later = report.sweeps[0], next(s for s in report.sweeps if s.removed and s is not report.sweeps[0])
    assert [r.name for r in first.removed] == ["running"] and [r.name for r in later.removed] == ["late"]
    last = report.sweeps[-1]
    assert last.removed == [] and last.at_s >= 0.6 and all(s.at_s < 0.6 for s in report.sweeps[:-1])
    assert "sweep 1 (+0.0 s after the halt): removed 1: NetworkChaos chaos-engineering/running" in report.summary()


def test_the_stop_forces_what_chaos_mesh_does_not_recover_and_reports_it_still_there(monkeypatch):
    cluster = FakeCluster([fault("stuck")])  # the finalizer holds it; the fake has no controller to act on the annotation
    monkeypatch.setattr(emergency, "FORCED_WAIT_S", 0.1)
    report = emergency.emergency_stop(cluster, POLICY, "alice", "stuck", recovery_timeout_s=0.1, in_flight_s=0.1,
                                      sweep_interval_s=0.05, poll_interval_s=0.01)
    assert [r.name for r in report.forced] == ["stuck"] and is_forced(cluster.objects["stuck"])
    assert len([c for c in cluster.calls if c[0] == "patch"]) == 1  # listed again by later sweeps, forced once
    assert any("still there 0.1 s after its forced clean-up: Chaos Mesh's controller did not act" in e for e in report.errors)
    assert "FORCED Chaos Mesh's finalizer clean-up of 1 object(s)" in report.summary()


def test_the_stop_does_not_end_on_a_sweep_that_could_not_list_every_kind():
    cluster = FakeCluster([], refuse=("list",))
    started = time.monotonic()
    report = emergency.emergency_stop(cluster, POLICY, "alice", "blind", in_flight_s=0.1, sweep_interval_s=0.05, bound_s=0.4)
    assert time.monotonic() - started >= 0.4
    assert report.errors[0].startswith("cannot list ") and len(report.errors) == 6  # once each, however many sweeps
    assert report.errors[-1].startswith("gave up sweeping after 0.4 s: some kinds could not be listed")


def test_empty_sweeps_are_one_line():
    report = StopReport("alice", "why", sweeps=[StopSweep(0.0, removed=[ref("a")]), StopSweep(1.0), StopSweep(2.0), StopSweep(11.2)])
    text = report.summary()
    assert "sweep 1 (+0.0 s after the halt): removed 1: NetworkChaos chaos-engineering/a" in text
    assert "sweeps 2-4 (+1.0 to +11.2 s after the halt): nothing found" in text


# --- the monitor's trigger: how its watch ends ---------------------------------------------


def trigger(**kwargs) -> FaultMonitorTrigger:
    return FaultMonitorTrigger(prometheus_conn_id="p", kubernetes_conn_id="k", fault={"kind": "NetworkChaos", "name": "f", "namespace": NAMESPACE},
                               thresholds={}, baseline={}, interval_s=1, max_failed_reads=2, **kwargs)


def test_serialisation_carries_the_deletion_timeout_and_the_halt_namespace():
    path, kwargs = trigger(deletion_timeout_s=30.0, chaos_namespace="chaos").serialize()
    assert kwargs["deletion_timeout_s"] == 30.0 and kwargs["chaos_namespace"] == "chaos"
    assert FaultMonitorTrigger(**kwargs).serialize() == (path, kwargs)
    assert trigger().serialize()[1]["deletion_timeout_s"] == 60.0


@pytest.mark.parametrize(
    ("state", "halt", "deletion", "status"),
    [
        ("active", None, None, None),
        ("deleting", None, {"forced_at": None}, None),
        ("deleting", HALT, None, None),
        ("gone", HALT, None, "halted"),
        ("gone", None, None, "gone"),
        ("ended", None, None, "completed"),
        ("ended", HALT, None, None),
        ("deleting", None, {"forced_at": 1.0, "requested_at": "2026-03-01T12:00:00Z"}, "deletion_stuck"),
        ("deleting", None, {"forced_at": "now", "requested_at": "2026-03-01T12:00:00Z"}, None),
    ],
    ids=["active", "deleting", "halted-until-gone", "halted-gone", "gone", "ended", "ended-but-halted", "forced-long-ago", "forced-just-now"],
)
def test_when_the_watch_ends(state, halt, deletion, status):
    if deletion and deletion["forced_at"] == "now":
        deletion = deletion | {"forced_at": time.time()}
    ending = trigger(deletion_timeout_s=60)._ending(state, halt, (123.0, ""), deletion)
    assert (ending or {}).get("status") == status
    if status == "halted":
        assert ending["message"] == "chaos halted by alice at 2026-03-01T11:59:00+00:00: payments look wrong; this monitor removed the fault"
        assert ending["halt"]["halted_by"] == "alice" and "history" not in ending["halt"]


# --- the sensor: the run fails naming who stopped it ----------------------------------------


def complete(event: dict) -> str:
    sensor = FaultMonitorSensor(task_id="monitor", plan={}, fault={}, preflight={})
    context = {"ti": SimpleNamespace(xcom_push=lambda **kwargs: None)}
    with pytest.raises(AirflowFailException) as failed:
        sensor.execute_complete(context, event)
    return str(failed.value)


def test_a_halted_run_fails_naming_who_stopped_it():
    message = complete({"status": "halted", "halt": HALT.as_dict(history=False), "removal_requested_at": 1.0, "removal_error": "",
                        "checks": 3, "deletion": None})
    assert message.startswith("chaos experiments were halted by alice at 2026-03-01T11:59:00+00:00 (reason: payments look wrong): the fault is gone.")
    assert "chaosctl resume --reason" in message


def test_a_forced_clean_up_is_named_in_the_failure():
    deletion = {"requested_at": "2026-03-01T12:00:00Z", "stuck": True, "forced_at": 5.0, "force_error": "", "checks": 7}
    message = complete({"status": "gone", "state": "gone", "checks": 9, "deletion": deletion})
    assert "outlasted safety.deletion_timeout and Chaos Mesh's finalizer clean-up was forced: the fault may still be applied" in message
    stuck = complete({"status": "deletion_stuck", "message": "the fault's deletion is stuck: ...", "deletion": deletion})
    assert stuck == "the fault's deletion is stuck: ..."


# --- the metrics of a forced clean-up ------------------------------------------------------


def test_a_forced_clean_up_counts_by_who_forced_it():
    (update,) = updates_for("deletion_forced", extra={"by": "monitor"}, now=100.0)
    assert update.grouping_key == {} and update.increments == {"chaos_fault_deletions_forced": {"monitor": 1.0}}
    assert update.gauges == {"chaos_fault_deletion_last_forced_timestamp_seconds": 100.0}
    stop = updates_for("emergency_stop", extra={"forced": [{"kind": "NetworkChaos"}, {"kind": "PodChaos"}]}, now=100.0)
    assert stop[1].increments == {"chaos_fault_deletions_forced": {"emergency_stop": 2.0}}
    assert len(updates_for("emergency_stop", now=100.0)) == 1
