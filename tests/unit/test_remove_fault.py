"""The teardown (remove_fault) keeps removing the run's fault until it is gone: a fake hook and a fake clock, no cluster."""

from __future__ import annotations

import copy
import datetime as dt
from types import SimpleNamespace

import pytest
from kubernetes.client.exceptions import ApiException

from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.emergency import ANNOTATION_CLEAN_FINALIZER
from chaos_engineering.notify import build
from chaos_engineering.notify.email import EMAIL_EVENTS
from chaos_engineering.notify.metrics import updates_for
from chaos_engineering.operators import fault as fault_module
from chaos_engineering.operators.fault import REMOVAL_KEY, RemoveFaultOperator
from chaos_engineering.operators.result import still_on_cluster
from chaos_engineering.render import LABEL_EXPERIMENT, LABEL_RUN_KEY, LABEL_TARGET, LABEL_TIER, run_key

NAMESPACE = "chaos-engineering"
DAG_ID, RUN_ID = "chaos_low_risk", "manual__2026-03-01T12:00:00+00:00"
KEY = run_key(DAG_ID, RUN_ID)
PLAN = {"experiment": "cache-latency", "tier": "low", "target_service": "cache"}
DELETION_TIMEOUT_S = 60.0
REFUSED = ApiException(status=500, reason="Internal Server Error")


class Clock:
    """monotonic() and time() that only move when the operator sleeps; every sleep recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_772_366_400.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeHook:
    """The run's objects and the verbs the teardown calls. `refuse_delete` / `refuse_list`: how
    many calls answer 500 (-1: every one); `recovers_after`: lists a deleted object stays for
    (None: its finalizer holds it until its clean-up is forced)."""

    def __init__(self, *objects: dict, refuse_delete: int = 0, refuse_list: int = 0, recovers_after: int | None = 0) -> None:
        self.objects = {o["metadata"]["name"]: copy.deepcopy(o) for o in objects}
        self.refuse_delete, self.refuse_list, self.recovers_after = refuse_delete, refuse_list, recovers_after
        self.calls: list[tuple] = []
        self.lists_since_deleted: dict[str, int] = {}

    def list(self, kind, namespace=None, label_selector=None) -> list[dict]:
        assert namespace is None and label_selector == f"{LABEL_RUN_KEY}={KEY}"
        if kind is ChaosKind.NETWORK_CHAOS:  # one call per round
            self.calls.append(("list",))
            if self.refuse_list:
                self.refuse_list -= 1
                raise REFUSED
            self._recover()
        return [copy.deepcopy(o) for o in self.objects.values() if o["kind"] == kind.value]

    def _recover(self) -> None:
        for name, obj in list(self.objects.items()):
            if "deletionTimestamp" not in obj["metadata"]:
                continue
            self.lists_since_deleted[name] = self.lists_since_deleted.get(name, 0) + 1
            forced = obj["metadata"]["annotations"].get(ANNOTATION_CLEAN_FINALIZER) == "forced"
            if forced or (self.recovers_after is not None and self.lists_since_deleted[name] > self.recovers_after):
                del self.objects[name]

    def delete(self, kind, name, namespace) -> bool:
        self.calls.append(("delete", kind.value, namespace, name))
        if self.refuse_delete:
            self.refuse_delete -= 1
            raise REFUSED
        obj = self.objects.get(name)
        if obj is None:
            return False
        obj["metadata"].setdefault("deletionTimestamp", dt.datetime.now(dt.timezone.utc).isoformat())
        return True

    def patch(self, kind, name, namespace, body) -> dict:
        self.calls.append(("patch", kind.value, namespace, name, body))
        self.objects[name]["metadata"]["annotations"] |= body["metadata"]["annotations"]
        return copy.deepcopy(self.objects[name])

    def deletes(self) -> list[tuple]:
        return [c for c in self.calls if c[0] == "delete"]


def chaos_object(name: str = "cache-latency-abc", *, deleting_s_ago: float | None = None) -> dict:
    meta = {
        "name": name, "namespace": NAMESPACE, "uid": f"uid-{name}", "annotations": {},
        "labels": {LABEL_RUN_KEY: KEY, LABEL_EXPERIMENT: "cache-latency", LABEL_TIER: "low", LABEL_TARGET: "cache"},
    }
    if deleting_s_ago is not None:
        meta["deletionTimestamp"] = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=deleting_s_ago)).isoformat()
    return {"kind": "NetworkChaos", "metadata": meta, "spec": {}}


class TaskInstance:
    def __init__(self, injected: object = None) -> None:
        self.pushed: dict[str, object] = {}
        self.injected = injected  # what inject returned (its XCom), or an exception reading it raises

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value

    def xcom_pull(self, task_ids: str) -> object:
        assert task_ids == "inject"
        if isinstance(self.injected, Exception):
            raise self.injected
        return self.injected


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(fault_module, "time", clock)
    return clock


@pytest.fixture
def sent(monkeypatch) -> dict[str, list]:
    """What the teardown announces and pushes, instead of Slack, e-mail and the Pushgateway."""
    sent: dict[str, list] = {"announced": [], "pushed": []}
    monkeypatch.setattr(fault_module, "announce", lambda event, **kw: sent["announced"].append((event, kw)) or {})
    monkeypatch.setattr(fault_module.metrics, "push", lambda event, **kw: sent["pushed"].append((event, kw)) or "sent")
    policy = SimpleNamespace(safety=SimpleNamespace(deletion_timeout=DELETION_TIMEOUT_S))
    monkeypatch.setattr(fault_module, "policy_or_fail", lambda: policy)
    return sent


def remove(hook: FakeHook, injected: object = None, **options) -> tuple[RemoveFaultOperator, dict]:
    operator = RemoveFaultOperator(task_id="remove_fault", plan=PLAN, **options)
    operator.hook = hook
    context = {"dag_run": SimpleNamespace(dag_id=DAG_ID, run_id=RUN_ID), "ti": TaskInstance(injected)}
    return operator, context


def test_the_happy_path_is_one_list_the_deletes_and_a_poll_every_half_second(clock, sent):
    hook = FakeHook(chaos_object(), recovers_after=2)
    operator, context = remove(hook)
    out = operator.execute(context)
    assert out["removed"] == ["cache-latency-abc"]
    assert hook.deletes() == [("delete", "NetworkChaos", NAMESPACE, "cache-latency-abc")]
    # Listed, deleted, listed at once (deleting), then polled every 0.5 s until gone.
    assert clock.sleeps == [0.0, 0.5, 0.5]
    assert sent["announced"] == []
    assert [event for event, _ in sent["pushed"]] == ["removed", "removal_ok"]


def test_the_default_bound_is_twice_the_policys_deletion_timeout(clock, sent):
    operator, context = remove(FakeHook(chaos_object(), refuse_delete=-1))
    with pytest.raises(AirflowFailException):
        operator.execute(context)
    assert clock.now == pytest.approx(2 * DELETION_TIMEOUT_S)


def test_a_delete_refused_three_times_is_tried_again_with_backoff_until_gone(clock, sent):
    hook = FakeHook(chaos_object(), refuse_delete=3)
    operator, context = remove(hook)
    assert operator.execute(context)["removed"] == ["cache-latency-abc"]
    assert len(hook.deletes()) == 4
    assert clock.sleeps == [0.5, 1.0, 2.0, 0.0]
    # 3.5 s of failures: under the 10 s before anyone is paged.
    assert sent["announced"] == []


def test_the_backoff_doubles_to_eight_seconds():
    assert [fault_module.removal_backoff_s(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_a_list_that_fails_for_a_while_is_a_failed_round_not_an_error(clock, sent):
    hook = FakeHook(chaos_object(), refuse_list=4)
    operator, context = remove(hook)
    assert operator.execute(context)["removed"] == ["cache-latency-abc"]
    assert clock.sleeps[:4] == [0.5, 1.0, 2.0, 4.0]
    assert len(hook.deletes()) == 1


def test_a_deletion_stuck_past_the_deletion_timeout_has_its_clean_up_forced_once(clock, sent):
    hook = FakeHook(chaos_object(deleting_s_ago=DELETION_TIMEOUT_S + 5), recovers_after=None)
    operator, context = remove(hook)
    assert operator.execute(context)["removed"] == ["cache-latency-abc"]
    patches = [c for c in hook.calls if c[0] == "patch"]
    assert patches == [("patch", "NetworkChaos", NAMESPACE, "cache-latency-abc", {"metadata": {"annotations": {ANNOTATION_CLEAN_FINALIZER: "forced"}}})]
    assert ("deletion_forced", {"extra": {"by": "teardown"}}) in sent["pushed"]


def test_a_young_deletion_is_left_to_chaos_mesh(clock, sent):
    hook = FakeHook(chaos_object(deleting_s_ago=1), recovers_after=3)
    operator, context = remove(hook)
    operator.execute(context)
    assert hook.deletes() == [] and not [c for c in hook.calls if c[0] == "patch"]
    assert clock.sleeps == [0.5, 0.5, 0.5]


def test_a_delete_that_never_succeeds_pages_once_then_fails_naming_the_objects(clock, sent):
    hook = FakeHook(chaos_object("fault-a"), chaos_object("fault-b"), refuse_delete=-1)
    operator, context = remove(hook, removal_timeout_s=60)
    with pytest.raises(AirflowFailException) as failure:
        operator.execute(context)
    message = str(failure.value)
    assert f"NetworkChaos {NAMESPACE}/fault-a, NetworkChaos {NAMESPACE}/fault-b still on the cluster 60 s" in message
    assert "HTTP 500" in message or "Internal Server Error" in message
    assert "chaosctl stop" in message

    # One critical notification, at the first failed round 10 s after the first failure (0.5+1+2+4+8 s).
    assert [event for event, _ in sent["announced"]] == ["removal_failed"]
    _, kwargs = sent["announced"][0]
    extra = kwargs["extra"]
    assert [o["name"] for o in extra["still_on_cluster"]] == ["fault-a", "fault-b"]
    assert "Internal Server Error" in extra["error"] and extra["failing_since"] == Clock().time()
    assert extra["failed"] is False and extra["at"] == Clock().time() + 15.5  # still trying when it paged
    assert sum(clock.sleeps[:5]) == pytest.approx(15.5) and set(clock.sleeps[5:-1]) == {8.0}
    assert clock.sleeps[-1] == pytest.approx(4.5) and clock.now == pytest.approx(60)  # the last wait ends at the bound

    # The message: critical, says the fault may still be applied, names the objects and what to do.
    message = build("removal_failed", context=context, plan=PLAN, extra=extra)
    assert message.severity == "critical" and "may still be applied" in message.title
    assert "chaosctl stop" in message.summary and "#chaos-fault-removal-failing" in message.summary
    assert any(f"NetworkChaos {NAMESPACE}/fault-a" in d for d in message.details)
    assert "removal_failed" in EMAIL_EVENTS
    # The gauge announce pushes: 1 in the experiment's group.
    [update] = updates_for("removal_failed", plan=PLAN, extra=extra)
    assert update.labels == PLAN and update.gauges == {"chaos_fault_removal_failing": 1.0}

    # The record write_result reads, pushed before failing; no success metric pushed.
    record = context["ti"].pushed[REMOVAL_KEY]
    assert record["failed"] is True and [o["name"] for o in record["still_on_cluster"]] == ["fault-a", "fault-b"]
    assert "Internal Server Error" in record["error"]
    assert sent["pushed"] == []
    reason = still_on_cluster({"removal": record})
    assert reason.startswith("THE FAULT MAY STILL BE APPLIED") and f"NetworkChaos {NAMESPACE}/fault-b" in reason


def test_a_removal_failing_shorter_than_the_alert_delay_pages_when_it_gives_up(clock, sent):
    operator, context = remove(FakeHook(chaos_object(), refuse_delete=-1), removal_timeout_s=5)
    with pytest.raises(AirflowFailException):
        operator.execute(context)
    [(event, kwargs)] = sent["announced"]
    assert event == "removal_failed" and kwargs["extra"]["failed"] is True


def test_success_after_the_page_sets_the_gauge_back_to_zero(clock, sent):
    hook = FakeHook(chaos_object(), refuse_delete=7)
    operator, context = remove(hook)
    assert operator.execute(context)["removed"] == ["cache-latency-abc"]
    assert [event for event, _ in sent["announced"]] == ["removal_failed"]
    event, kwargs = sent["pushed"][-1]
    assert event == "removal_ok"
    [update] = updates_for(event, **kwargs)
    assert update.labels == PLAN and update.gauges == {"chaos_fault_removal_failing": 0.0}
    assert REMOVAL_KEY not in context["ti"].pushed


def test_the_gauge_follows_the_objects_labels_when_the_plan_has_none():
    objects = [{"kind": "NetworkChaos", "namespace": NAMESPACE, "name": "f", "experiment": "cache-latency", "tier": "low", "target_service": "cache"}]
    [update] = updates_for("removal_failed", plan={}, extra={"still_on_cluster": objects})
    assert update.grouping_key == {"tier": "low", "experiment": "cache-latency"}
    [update] = updates_for("removal_ok", plan={}, extra={"removed": objects})
    assert update.gauges == {"chaos_fault_removal_failing": 0.0}


def test_a_failed_removal_keeps_the_fault_active_in_the_finished_metrics():
    failed = {"fault": {"name": "f"}, "removal": {"failed": True, "still_on_cluster": []}, "verdict": "aborted"}
    [update] = updates_for("finished", plan=PLAN, result=failed)
    assert "chaos_experiment_active" not in update.gauges
    removed = failed | {"removal": {"removed": ["f"], "removed_at": 1.0}}
    [update] = updates_for("finished", plan=PLAN, result=removed)
    assert update.gauges["chaos_experiment_active"] == 0.0


def test_nothing_of_the_run_left_is_a_quick_success(clock, sent):
    hook = FakeHook()
    operator, context = remove(hook)
    assert operator.execute(context)["removed"] == []
    assert clock.sleeps == [] and [e for e, _ in sent["pushed"]] == ["removal_ok"]


@pytest.mark.parametrize("injected", [{"name": "cache-latency-abc", "injected_at": 1.0}, RuntimeError("XCom backend down")],
                         ids=["inject-recorded-a-fault", "inject-record-unreadable"])
def test_a_fault_someone_else_removed_first_is_recorded_as_removed(clock, sent, injected):
    """A stop, the watchdog or a person deleted it before the teardown looked: the run's record
    must still say the fault is gone, or every pre-flight refuses until the record is dated out."""
    operator, context = remove(FakeHook(), injected)
    assert operator.execute(context)["removed"] == []
    assert [e for e, _ in sent["pushed"]] == ["removed", "removal_ok"]
