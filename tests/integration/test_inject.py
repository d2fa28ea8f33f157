"""Inject at the point of no return, against the sandbox: it trusts no upstream output, injects
once per run ever, undoes a create that raced an emergency stop; the lock outlives the fault."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator

import pytest

from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.halt import HaltFlag
from chaos_engineering.heartbeat import INJECT_HOLDER_PREFIX, Heartbeat
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.injections import InjectionRecord
from chaos_engineering.lock import ExperimentLock
from chaos_engineering.operators.fault import InjectFaultOperator, RemoveFaultOperator
from chaos_engineering.operators.lock import ReleaseLockOperator
from chaos_engineering.render import ANNOTATION_APPROVALS, ANNOTATION_BASELINE, ANNOTATION_DIGEST
from tests.integration.chaos_support import NAMESPACE
from tests.integration.inject_support import Records, Run, made_runs, new_run, open_include


@pytest.fixture(scope="module")
def include(tmp_path_factory, connections) -> Iterator[None]:
    yield from open_include(tmp_path_factory, connections)


@pytest.fixture
def runs(include) -> Iterator[list[Run]]:
    yield from made_runs()


def test_a_verified_low_tier_run_injects_the_catalogue_object_once_ever(runs):
    run = new_run(runs, "chaos_low_risk", "cache-slow-long")
    fault = run.inject("low")
    [obj] = run.objects()
    annotations = obj["metadata"]["annotations"]
    assert annotations[ANNOTATION_DIGEST] == run.plan()["digest"] == fault["digest"]
    assert '"user": "policy"' in annotations[ANNOTATION_APPROVALS]
    assert set(json.loads(annotations[ANNOTATION_BASELINE])) == set(load_catalogue().policy.safety.thresholds)
    assert InjectionRecord(run.cluster, NAMESPACE, run.key).read().digest == fault["digest"]

    # The task cleared and run again while its fault is live: it adopts the fault, never a second.
    again = run.inject("low")
    assert again["name"] == fault["name"] and len(run.objects()) == 1

    # Cleared after the fault is gone: the run has injected once; it never injects again.
    RemoveFaultOperator(task_id="remove_fault", plan={}).execute(run.context)
    with pytest.raises(AirflowFailException, match="this run has injected once already .* a run never injects twice, even after its tasks are cleared"):
        run.inject("low")
    assert run.objects() == []


def test_an_edited_plan_xcom_is_refused_and_nothing_is_created(runs):
    run = new_run(runs, "chaos_low_risk", "cache-slow-long")
    edited = run.plan("booking-api-quick-kill")
    with pytest.raises(AirflowFailException) as refused:
        run.inject("low", plan=edited)
    assert "the run was triggered for 'cache-slow-long', but its plan now names 'booking-api-quick-kill' (the plan's XCom was changed)" in str(refused.value)
    assert run.objects() == []


def test_an_edited_manifest_is_ignored_the_catalogues_object_is_created(runs):
    run = new_run(runs, "chaos_low_risk", "cache-slow-long")
    plan = run.plan()
    edited = json.loads(json.dumps(plan))
    edited["manifest"]["spec"]["selector"] = {"namespaces": ["payments"], "labelSelectors": {"app": "payment-processor"}}
    edited["manifest"]["spec"]["mode"] = "all"
    edited["manifest"]["spec"]["duration"] = "1h"
    fault = run.inject("low", plan=edited)
    [obj] = run.objects()
    assert obj["spec"]["selector"] == plan["manifest"]["spec"]["selector"]
    assert (obj["spec"]["mode"], obj["spec"]["duration"]) == ("one", "5m")
    assert fault["digest"] == plan["digest"] == obj["metadata"]["annotations"][ANNOTATION_DIGEST]


def test_a_dry_run_and_a_foreign_tier_never_inject(runs):
    run = new_run(runs, "chaos_low_risk", "cache-slow-long", dry_run=True)
    with pytest.raises(AirflowFailException, match="this run was triggered as a dry run: it never injects"):
        run.inject("low")
    run.cleanup()
    run = new_run(runs, "chaos_low_risk", "email-service-quick-abort")
    with pytest.raises(AirflowFailException, match="'email-service-quick-abort' is a medium-tier experiment; this DAG runs the low tier"):
        run.inject("low")
    assert [o for r in runs for o in r.objects()] == []


def approved(user: str, digest: str) -> dict:
    return {
        "response_received": True,
        "responded_by_user": {"id": user, "name": user},
        "responded_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "chosen_options": ["Approve"],
        "body": f"- Object digest: `{digest}`",
    }


def test_a_medium_run_injects_only_with_an_answer_airflow_recorded(runs):
    run = new_run(runs, "chaos_medium_risk", "email-service-quick-abort")
    digest = run.plan()["digest"]
    marked_success = Records({"approve_sre": {"response_received": False, "body": f"`{digest}`"}})
    with pytest.raises(AirflowFailException, match="Airflow has no answer recorded for task 'approve_sre'"):
        run.inject("medium", marked_success)
    assert marked_success.asked == ["approve_sre"] and run.objects() == []

    with pytest.raises(AirflowFailException, match="answered by 'mallory', who is not an approver of role 'sre'"):
        run.inject("medium", Records({"approve_sre": approved("mallory", digest)}))
    assert run.objects() == []

    fault = run.inject("medium", Records({"approve_sre": approved("sre-oncall", digest)}))
    assert [a["user"] for a in fault["approvals"]] == ["sre-oncall"]
    assert len(run.objects()) == 1


def test_unreadable_approval_records_inject_nothing(runs):
    class Down:
        def hitl_detail(self, *args: object) -> dict:
            raise ConnectionError("api-server unreachable")

    run = new_run(runs, "chaos_medium_risk", "email-service-quick-abort")
    with pytest.raises(AirflowFailException, match=r"cannot read Airflow's approval records of this run \(api-server unreachable\)"):
        run.inject("medium", Down())
    assert run.objects() == []


def test_inject_without_the_lock_creates_nothing(include):
    run = Run("chaos_low_risk", "cache-slow-long")
    with pytest.raises(AirflowFailException, match="does not hold the experiment lock"):
        run.inject("low")
    assert run.objects() == []


def test_a_stop_that_lands_during_the_create_deletes_the_fault_at_once(runs):
    """The stop's sweep may list before our create lands; inject reads the halt again after it."""
    run = new_run(runs, "chaos_low_risk", "cache-slow-long")
    operator = InjectFaultOperator(task_id="inject", tier="low", plan=run.plan())
    create = operator.hook.create
    halt = HaltFlag(run.cluster, NAMESPACE)

    def create_while_stopping(body: dict, **kwargs: object) -> dict:
        created = create(body, **kwargs)
        halt.set("carol", "stop raced an inject")
        return created

    operator.hook.create = create_while_stopping
    started = time.monotonic()
    with pytest.raises(AirflowFailException, match=r"then found chaos halted \(emergency stop by carol .*stop raced an inject\); deleted it again"):
        operator.execute(run.context)
    while run.objects():
        assert time.monotonic() - started < 5, "the fault outlived the stop by more than 5 s"
        time.sleep(0.1)
    halt.clear("carol", "test over")


def test_a_create_stored_whose_reply_is_lost_is_adopted_and_handed_over_to_the_monitor(runs, sandbox):
    """The API server stores the object and the answer never comes: the same try finds it and
    adopts it (its hand-over heartbeat written), never leaving it unwatched or creating another."""
    run = new_run(runs, "chaos_low_risk", "cache-slow-long")
    operator = InjectFaultOperator(task_id="inject", tier="low", plan=run.plan())
    operator.airflow_api = Records({})
    operator.hook = ChaosMeshHook(request_timeout=2)
    sandbox.api_faults.inject(r".*/networkchaos", "lose-reply", verb="POST", seconds=30, times=1)
    try:
        fault = operator.execute(run.context)
    finally:
        sandbox.api_faults.clear()
    [obj] = run.objects()
    assert (fault["kind"], fault["name"], fault["uid"]) == ("NetworkChaos", obj["metadata"]["name"], obj["metadata"]["uid"])
    assert fault["digest"] == obj["metadata"]["annotations"][ANNOTATION_DIGEST]
    beat = Heartbeat(run.cluster, "NetworkChaos", fault["name"], NAMESPACE).read()
    assert beat is not None and beat.holder.startswith(INJECT_HOLDER_PREFIX), beat


@pytest.mark.parametrize(("mode", "rule", "error"), [
    pytest.param("error", {"status": 409, "reason": "AlreadyExists"}, "HTTP 409", id="409-nothing-there"),
    pytest.param("hang", {"seconds": 30}, "no complete answer from the Kubernetes API within the 2 s deadline", id="hang-dropped"),
])
def test_a_create_that_failed_and_did_not_land_fails_at_once_and_nothing_is_injected(runs, sandbox, mode, rule, error):
    run = new_run(runs, "chaos_low_risk", "cache-slow-long")
    operator = InjectFaultOperator(task_id="inject", tier="low", plan=run.plan())
    operator.airflow_api = Records({})
    operator.hook = ChaosMeshHook(request_timeout=2)
    sandbox.api_faults.inject(r".*/networkchaos", mode, verb="POST", times=1, **rule)
    try:
        with pytest.raises(AirflowFailException, match=f"{error}.*; no object of this run is on the cluster: nothing injected"):
            operator.execute(run.context)
    finally:
        sandbox.api_faults.clear()
    assert run.objects() == []
    # What a retry would do: refused by the run's claim, never a second try at the create.
    with pytest.raises(AirflowFailException, match="this run has injected once already"):
        run.inject("low")
    assert run.objects() == []


def test_the_lock_is_kept_while_the_runs_fault_is_on_the_cluster(runs):
    run = new_run(runs, "chaos_low_risk", "cache-slow-long")
    fault = run.inject("low")
    release = ReleaseLockOperator(task_id="release_lock")
    with pytest.raises(AirflowFailException, match=f"not releasing the experiment lock: this run's fault is still on the cluster \\(NetworkChaos {NAMESPACE}/{fault['name']}\\)"):
        release.execute(run.context)
    assert ExperimentLock(run.cluster, NAMESPACE).state().holder == f"{run.dag_id}/{run.run_id}"
    RemoveFaultOperator(task_id="remove_fault", plan={}).execute(run.context)
    assert release.execute(run.context) is True
    assert ExperimentLock(run.cluster, NAMESPACE).state() is None


def test_concurrent_injects_of_one_run_create_one_fault(runs):
    """Two tries of one run at once (a zombie and its retry): the claim lets one create."""
    run = new_run(runs, "chaos_low_risk", "cache-slow-long")
    outcomes: list[object] = []

    def inject() -> None:
        try:
            outcomes.append(run.inject("low")["name"])
        except AirflowFailException as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=inject) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(run.objects()) == 1
    assert sum(isinstance(o, str) for o in outcomes) >= 1


def test_the_monitor_watches_the_runs_fault_with_the_policys_thresholds_whatever_xcom_says(runs):
    from airflow.sdk.exceptions import TaskDeferred

    from chaos_engineering.operators.monitor import FaultMonitorSensor
    from chaos_engineering.verification import experiment_thresholds

    run = new_run(runs, "chaos_low_risk", "cache-slow-long")
    fault = run.inject("low")
    [obj] = run.objects()
    loose = {name: {"query": "vector(0)", "rule": "at_most", "limit": 10**9} for name in ("error_rate",)}
    sensor = FaultMonitorSensor(
        task_id="monitor",
        plan={"thresholds": loose, "manifest": {"spec": {}}, "duration_s": 10**6},
        fault=None,  # an edited XCom: "nothing was injected"
        preflight={"baseline": {"error_rate": 99.0}},
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(run.context)
    trigger = deferred.value.trigger
    catalogue = load_catalogue()
    assert trigger.fault["name"] == fault["name"] == obj["metadata"]["name"]
    assert trigger.thresholds == experiment_thresholds(catalogue.get("cache-slow-long"), catalogue.policy)
    assert trigger.baseline == json.loads(obj["metadata"]["annotations"][ANNOTATION_BASELINE]) != {"error_rate": 99.0}
    # The object's 5m from its creation (Kubernetes keeps whole seconds), not the XCom's duration.
    created = dt.datetime.fromisoformat(obj["metadata"]["creationTimestamp"].replace("Z", "+00:00")).timestamp()
    assert trigger.ends_at == created + 300
    assert created <= fault["injected_at"] < created + 2


def test_the_monitor_has_nothing_to_watch_without_a_fault_of_its_run_on_the_cluster(runs):
    from airflow.sdk.exceptions import AirflowSkipException

    from chaos_engineering.operators.monitor import FaultMonitorSensor

    run = new_run(runs, "chaos_low_risk", "cache-slow-long")
    sensor = FaultMonitorSensor(task_id="monitor", plan={}, fault={"name": "forged", "kind": "PodChaos", "namespace": NAMESPACE}, preflight={})
    with pytest.raises(AirflowSkipException, match="no fault of this run is on the cluster"):
        sensor.execute(run.context)


def test_a_removal_that_fails_keeps_the_lock(runs):
    """The API server answers every delete with 500: the teardown tries until its bound, then fails naming the fault, and so does the release,
    which keeps the lock (the next run must not inject beside this fault)."""
    from kubernetes.client.exceptions import ApiException

    run = new_run(runs, "chaos_low_risk", "cache-slow-long")
    fault = run.inject("low")
    remove = RemoveFaultOperator(task_id="remove_fault", plan={}, removal_timeout_s=2)

    def refuse(*args: object) -> bool:
        raise ApiException(status=500, reason="Internal Server Error")

    remove.hook.delete = refuse
    with pytest.raises(AirflowFailException, match=f"NetworkChaos {NAMESPACE}/{fault['name']} still on the cluster 2 s after the removal started: THE FAULT MAY STILL BE APPLIED"):
        remove.execute(run.context)
    with pytest.raises(AirflowFailException, match=f"not releasing the experiment lock: this run's fault is still on the cluster \\(NetworkChaos {NAMESPACE}/{fault['name']}\\)"):
        ReleaseLockOperator(task_id="release_lock").execute(run.context)
    assert ExperimentLock(run.cluster, NAMESPACE).state().holder == f"{run.dag_id}/{run.run_id}"
    assert [o["metadata"]["name"] for o in run.objects()] == [fault["name"]]
