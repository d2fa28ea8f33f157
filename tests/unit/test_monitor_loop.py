"""The monitor trigger's loop against a misbehaving cluster, with fakes for the Kubernetes API, the
halt flag, the heartbeat and Prometheus: cluster reads and heartbeat renewals never delay a check,
a failed removal is tried again with backoff, a monitor that cannot watch removes the fault, and
a paused fault is watched as an active one."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaos_engineering import triggers
from chaos_engineering.chaosmesh.constants import PAUSE_ANNOTATION
from chaos_engineering.triggers import REMOVAL_BACKOFF_S, FaultMonitorTrigger, fault_state, removal_backoff_s

THRESHOLDS = {"p95_latency": {"query": "p95", "unit": "ms", "rule": "at_most", "limit": 3000}}
BASELINE = {"p95_latency": 250.0}
FAULT = {"kind": "NetworkChaos", "name": "web-delay-1", "namespace": "chaos-engineering", "action": "delay"}
INTERVAL_S = 0.2


def obj(*, paused: bool = False, stopped: bool = False, created: float | None = None, duration: str = "2m") -> dict[str, Any]:
    created = time.time() if created is None else created
    meta = {"name": FAULT["name"], "namespace": FAULT["namespace"],
            "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))}
    if paused:
        meta["annotations"] = {PAUSE_ANNOTATION: "true"}
    status = {"experiment": {"desiredPhase": "Stop"}, "conditions": [{"type": "AllRecovered", "status": "True"}]} if stopped else {}
    return {"kind": "NetworkChaos", "metadata": meta, "spec": {"duration": duration}, "status": status}


class FakeCluster:
    """`get` answers `objects` in turn (the last one repeats) after `get_delay_s`; `delete` fails
    `delete_failures` times, then succeeds; every call is recorded."""

    def __init__(self, objects: list[dict | None], *, get_delay_s: float = 0.0, delete_failures: int = 0) -> None:
        self.objects, self.get_delay_s, self.delete_failures = list(objects), get_delay_s, delete_failures
        self.deletes: list[float] = []
        self.stop = threading.Event()

    def get(self, kind, name, namespace):
        self.stop.wait(self.get_delay_s)
        return self.objects.pop(0) if len(self.objects) > 1 else self.objects[0]

    def delete(self, kind, name, namespace):
        self.deletes.append(time.time())
        if len(self.deletes) <= self.delete_failures:
            raise RuntimeError("(500) Internal Server Error: etcdserver: request timed out")
        self.objects = [None]
        return True


class FakeHeartbeat:
    renew_delay_s = 0.0
    renewals: list[float] = []
    deleted: list[float] = []

    def __init__(self, cluster, kind, name, namespace) -> None:
        self.name, self.cluster = f"chaos-heartbeat-{name}", cluster

    def renew(self, holder, interval_s):
        self.cluster.stop.wait(self.renew_delay_s)
        FakeHeartbeat.renewals.append(time.time())

    def read(self):
        return None

    def delete(self):
        FakeHeartbeat.deleted.append(time.time())
        return True


class FakeHalt:
    def __init__(self, cluster, namespace) -> None:
        self.namespace, self.name = namespace, "chaos-halt"

    def state(self):
        from chaos_engineering.halt import HaltState

        return HaltState(halted=False)


class FakePrometheus:
    """p95 readings in turn (the last one repeats)."""

    values: list[float] = [250.0]

    def __init__(self, *args, **kwargs) -> None:
        pass

    def query(self, promql: str):
        return FakePrometheus.values.pop(0) if len(FakePrometheus.values) > 1 else FakePrometheus.values[0]


@pytest.fixture
def cluster_of(monkeypatch):
    """Installs the fakes; returns a function that puts a FakeCluster in place of the hook."""
    import chaos_engineering.halt
    import chaos_engineering.heartbeat
    import chaos_engineering.hooks.chaos_mesh
    import chaos_engineering.hooks.prometheus

    monkeypatch.setattr(triggers, "MIN_EVENT_DELAY_S", 0.0)
    monkeypatch.setattr(chaos_engineering.heartbeat, "Heartbeat", FakeHeartbeat)
    monkeypatch.setattr(chaos_engineering.halt, "HaltFlag", FakeHalt)
    monkeypatch.setattr(chaos_engineering.hooks.prometheus, "PrometheusHook", FakePrometheus)
    FakeHeartbeat.renew_delay_s, FakeHeartbeat.renewals, FakeHeartbeat.deleted = 0.0, [], []
    FakePrometheus.values = [250.0]
    made: list[FakeCluster] = []

    def install(cluster: FakeCluster) -> FakeCluster:
        monkeypatch.setattr(chaos_engineering.hooks.chaos_mesh, "ChaosMeshHook", lambda *a, **k: cluster)
        made.append(cluster)
        return cluster

    yield install
    for cluster in made:
        cluster.stop.set()  # lets hanging fake calls return


def watch(
    *, thresholds=THRESHOLDS, max_failed_reads: int = 2, deletion_timeout_s: float = 60.0, timeout: float = 30, default_threads: int | None = None
) -> tuple[dict, float]:
    trigger = FaultMonitorTrigger(
        prometheus_conn_id="prometheus_default", kubernetes_conn_id="kubernetes_default", fault=FAULT, thresholds=thresholds,
        baseline=BASELINE, interval_s=INTERVAL_S, max_failed_reads=max_failed_reads, deletion_timeout_s=deletion_timeout_s,
    )

    async def first() -> dict:
        if default_threads is not None:  # the triggerer's other calls may hold every thread of the loop's pool
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=default_threads))
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    started = time.time()
    return asyncio.run(asyncio.wait_for(first(), timeout)), started


def test_a_hanging_kubernetes_api_does_not_delay_the_checks(cluster_of):
    """Every read of the fault and every heartbeat renewal hangs 5 s: the metrics are still judged
    each interval, and the breach at the fourth check is acted on at once."""
    cluster = cluster_of(FakeCluster([obj()], get_delay_s=5.0))
    FakeHeartbeat.renew_delay_s = 5.0
    FakePrometheus.values = [250.0, 260.0, 270.0, 4200.0]
    event, started = watch(max_failed_reads=100)
    assert event["status"] == "breach" and event["breach"]["threshold"] == "p95_latency", event
    assert event["checks"] == 4
    assert event["breach"]["at"] - started < 4 * INTERVAL_S + 0.5
    assert cluster.deletes and cluster.deletes[0] - event["breach"]["at"] < 0.2


def test_metrics_reads_never_queue_behind_hanging_cluster_calls(cluster_of):
    """The event loop's whole default pool (one thread here) is held by a hanging cluster read:
    the thresholds are read from their own pool, each interval."""
    cluster_of(FakeCluster([obj()], get_delay_s=5.0))
    FakeHeartbeat.renew_delay_s = 5.0
    FakePrometheus.values = [250.0, 260.0, 270.0, 4200.0]
    event, started = watch(max_failed_reads=100, default_threads=1)
    assert event["status"] == "breach" and event["checks"] == 4, event
    assert event["breach"]["at"] - started < 4 * INTERVAL_S + 0.5


def test_a_kubernetes_api_without_answers_for_max_failed_reads_checks_is_a_breach(cluster_of):
    cluster_of(FakeCluster([obj()], get_delay_s=5.0))
    event, started = watch(max_failed_reads=2)
    assert event["status"] == "breach" and event["breach"]["rule"] == "max_failed_reads", event
    assert event["breach"]["threshold"] == "fault-state" and "Kubernetes API unreachable" in event["message"]
    assert event["breach"]["at"] - started < 3 * INTERVAL_S + 0.5


def test_a_failed_removal_is_tried_again_with_backoff_until_accepted(cluster_of):
    cluster = cluster_of(FakeCluster([obj()], delete_failures=2))
    FakePrometheus.values = [4200.0]
    event, _ = watch()
    assert event["status"] == "breach" and event["removal_error"] == "" and event["removal_requested_at"] is not None
    assert len(cluster.deletes) == 3
    gaps = [b - a for a, b in zip(cluster.deletes, cluster.deletes[1:])]
    assert gaps == pytest.approx(list(REMOVAL_BACKOFF_S[:2]), abs=0.15)


def test_a_removal_refused_past_the_deletion_timeout_is_reported_with_its_error(cluster_of):
    cluster = cluster_of(FakeCluster([obj()], delete_failures=1000))
    FakePrometheus.values = [4200.0]
    event, _ = watch(deletion_timeout_s=2.0)
    assert event["status"] == "breach" and event["removal_requested_at"] is None
    assert event["removal_error"].startswith("(500) Internal Server Error")
    assert 3 <= len(cluster.deletes) <= 4  # 0.5 + 1 s of backoff fit in 2 s, the next 2 s do not
    assert cluster.deletes[-1] - cluster.deletes[0] < 2.0


def test_a_monitor_that_cannot_watch_removes_the_fault(cluster_of):
    """An error outside the judging (here: thresholds it cannot even parse) is a fail-safe breach."""
    cluster = cluster_of(FakeCluster([obj()]))
    event, _ = watch(thresholds={"p95_latency": {"query": "p95", "rule": "at_most_please", "limit": 3000}})
    assert event["status"] == "breach" and event["breach"]["rule"] == "fail_safe", event
    assert event["message"].startswith("kill switch could not watch the fault (ValidationError: ")
    assert event["message"].endswith("; removing the fault (fail-safe)")
    assert len(cluster.deletes) == 1 and event["removal_requested_at"] is not None


def test_a_paused_fault_is_watched_until_it_is_gone(cluster_of):
    """Chaos Mesh reports a paused fault stopped and recovered, as an ended one; un-pausing it would
    inject it again: the monitor keeps watching (and beating) until it is gone."""
    cluster_of(FakeCluster([obj()] + [obj(paused=True, stopped=True)] * 8 + [None]))
    event, _ = watch()
    assert event["status"] == "gone", event
    assert event["checks"] == 10 and len(FakeHeartbeat.renewals) >= 9


@given(attempt=st.integers(1, 10_000))
def test_the_removal_backoff_doubles_and_stays_bounded(attempt):
    wait = removal_backoff_s(attempt)
    assert REMOVAL_BACKOFF_S[0] <= wait <= REMOVAL_BACKOFF_S[-1]
    assert removal_backoff_s(attempt + 1) in (wait, min(2 * wait, REMOVAL_BACKOFF_S[-1]))


@pytest.mark.parametrize(
    ("fault", "ends_in_s", "state"),
    [
        # Built when the test runs, not at collection: their ages count from now.
        (lambda: obj(paused=True, stopped=True), 60, "paused"),
        (lambda: obj(paused=True, stopped=True), -1, "ended"),  # its duration is over: un-pausing cannot bring it back
        (lambda: obj(paused=True), None, "paused"),  # no end given: from its creation and duration
        (lambda: obj(paused=True, stopped=True, created=time.time() - 600, duration="2m"), None, "ended"),
        (lambda: obj(paused=True, duration=""), None, "paused"),  # no duration: paused until someone removes it
        (lambda: obj(stopped=True), 60, "ended"),
    ],
    ids=["paused-before-its-end", "paused-past-its-end", "end-from-the-object", "end-from-the-object-passed", "no-duration", "not-paused"],
)
def test_fault_state_of_a_paused_fault(fault, ends_in_s, state):
    assert fault_state(fault(), ends_at=None if ends_in_s is None else time.time() + ends_in_s) == state
