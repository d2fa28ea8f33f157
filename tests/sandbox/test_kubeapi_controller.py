"""The chaos controller seen through the API: conditions, desiredPhase, records, duration, pause, finalizer."""

from __future__ import annotations

import time

import pytest
from kubernetes import client, config

from sandbox.platform.effects import NetworkFault, PodFailure, PodKill
from tests.sandbox.kubeapi_support import CHAOS_NS, GROUP, VERSION, api_error, chaos, conditions, serve, wait_for

kube = pytest.fixture(scope="module", name="kube")(serve)

PAUSE = "experiment.chaos-mesh.org/pause"
CACHE = {"namespaces": ["booking"], "labelSelectors": {"app": "cache"}}


def state(obj: dict) -> tuple[dict, str, list[tuple[str, str, int, int]]]:
    experiment = obj["status"]["experiment"]
    records = [
        (r["selectorKey"], r["phase"], r["injectedCount"], r["recoveredCount"])
        for r in experiment.get("containerRecords", [])
    ]
    return conditions(obj), experiment["desiredPhase"], records


def until(kube, plural: str, name: str, wanted: dict, timeout: float = 10.0) -> dict:
    def reached():
        obj = kube.get_chaos(plural, name)
        return obj if obj.get("status") and all(conditions(obj).get(k) == v for k, v in wanted.items()) else None

    return wait_for(reached, timeout=timeout)


def is_gone(kube, plural: str, name: str) -> bool:
    try:
        kube.get_chaos(plural, name)
    except client.ApiException as exc:
        return exc.status == 404
    return False


def test_selected_injected_paused_resumed_deleted(kube):
    kube.create_chaos("podchaos", chaos("PodChaos", "lifecycle", {
        "action": "pod-failure", "mode": "one", "selector": CACHE,
    }))
    running = until(kube, "podchaos", "lifecycle", {"AllInjected": "True"})
    assert state(running) == (
        {"Selected": "True", "AllInjected": "True", "AllRecovered": "False", "Paused": "False"},
        "Run", [(".", "Injected", 1, 0)],
    )
    (record,) = running["status"]["experiment"]["containerRecords"]
    assert record["id"].startswith("booking/cache-")
    assert [(e["operation"], e["type"]) for e in record["events"]] == [("Apply", "Succeeded")]
    (applied,) = kube.platform.calls_for("podchaos", "lifecycle")
    assert applied[1] == PodFailure(applied[1].pods) and len(applied[1].pods) == 1
    assert f"{applied[1].pods[0].namespace}/{applied[1].pods[0].name}" == record["id"]

    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, CHAOS_NS, "podchaos", "lifecycle", {"metadata": {"annotations": {PAUSE: "true"}}}
    )
    paused = until(kube, "podchaos", "lifecycle", {"Paused": "True", "AllRecovered": "True"})
    assert state(paused) == (
        {"Selected": "True", "AllInjected": "False", "AllRecovered": "True", "Paused": "True"},
        "Stop", [(".", "NotInjected", 1, 1)],
    )
    assert [kind for kind, _ in kube.platform.calls_for("podchaos", "lifecycle")] == ["apply", "clear"]

    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, CHAOS_NS, "podchaos", "lifecycle", {"metadata": {"annotations": {PAUSE: None}}}
    )
    resumed = until(kube, "podchaos", "lifecycle", {"Paused": "False", "AllInjected": "True"})
    assert state(resumed)[1:] == ("Run", [(".", "Injected", 2, 1)])
    calls = kube.platform.calls_for("podchaos", "lifecycle")
    assert [kind for kind, _ in calls] == ["apply", "clear", "apply"]
    assert calls[2][1] == calls[0][1]  # the same pod as before: Chaos Mesh selects once

    kube.delete_chaos("podchaos", "lifecycle")
    wait_for(lambda: is_gone(kube, "podchaos", "lifecycle"))
    calls = kube.platform.calls_for("podchaos", "lifecycle")
    assert [kind for kind, _ in calls] == ["apply", "clear", "apply", "clear"]


def test_duration_expiry_recovers_and_keeps_the_object(kube):
    started = time.monotonic()
    kube.create_chaos("networkchaos", chaos("NetworkChaos", "short", {
        "action": "delay", "mode": "all", "selector": CACHE,
        "delay": {"latency": "100ms"}, "duration": "2s",
    }))
    injected = until(kube, "networkchaos", "short", {"AllInjected": "True"})
    assert state(injected)[1] == "Run"
    expired = until(kube, "networkchaos", "short", {"AllRecovered": "True"}, timeout=8)
    elapsed = time.monotonic() - started
    assert 1.8 <= elapsed < 6, elapsed
    assert state(expired) == (
        {"Selected": "True", "AllInjected": "False", "AllRecovered": "True", "Paused": "False"},
        "Stop", [(".", "NotInjected", 1, 1), (".", "NotInjected", 1, 1)],
    )
    calls = kube.platform.calls_for("networkchaos", "short")
    assert [kind for kind, _ in calls] == ["apply", "clear"]
    assert isinstance(calls[0][1], NetworkFault) and calls[0][1].delay_ms == 100.0
    assert "networkchaos" not in " ".join(kube.platform.active_faults())

    # Chaos Mesh keeps a finished experiment until someone deletes it; resuming cannot restart it.
    time.sleep(0.5)
    assert "deletionTimestamp" not in kube.get_chaos("networkchaos", "short")["metadata"]
    kube.delete_chaos("networkchaos", "short")
    wait_for(lambda: is_gone(kube, "networkchaos", "short"))
    assert [kind for kind, _ in kube.platform.calls_for("networkchaos", "short")] == ["apply", "clear"]


def test_pod_kill_is_one_shot(kube):
    kube.create_chaos("podchaos", chaos("PodChaos", "kill-one", {
        "action": "pod-kill", "mode": "one", "duration": "1s",
        "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "booking-worker"}},
    }))
    injected = until(kube, "podchaos", "kill-one", {"AllInjected": "True"})
    (applied,) = kube.platform.calls_for("podchaos", "kill-one")
    assert isinstance(applied[1], PodKill) and len(applied[1].pods) == 1
    killed = applied[1].pods[0]
    assert killed.name not in {p.name for p in kube.platform.pods()}
    # A one-shot action stays Run past its duration: there is nothing to recover, nothing to redo.
    time.sleep(1.5)
    later = kube.get_chaos("podchaos", "kill-one")
    assert state(later) == state(injected) == (
        {"Selected": "True", "AllInjected": "True", "AllRecovered": "False", "Paused": "False"},
        "Run", [(".", "Injected", 1, 0)],
    )
    kube.delete_chaos("podchaos", "kill-one")
    wait_for(lambda: is_gone(kube, "podchaos", "kill-one"))
    assert [kind for kind, _ in kube.platform.calls_for("podchaos", "kill-one")] == ["apply", "clear"]


def test_finalizer_holds_the_object_until_the_fault_is_cleared(kube):
    seen_during_clear = []

    def look(fault_id: str) -> None:
        # Runs in the controller's worker thread, while the server keeps answering.
        if "/finalized/" in fault_id:
            api = config.new_client_from_config(config_file=str(kube.kubeconfig))
            try:
                seen_during_clear.append(client.CustomObjectsApi(api).get_namespaced_custom_object(
                    GROUP, VERSION, CHAOS_NS, "stresschaos", "finalized"
                ))
            finally:
                api.close()

    kube.platform.on_clear = look
    try:
        kube.create_chaos("stresschaos", chaos("StressChaos", "finalized", {
            "mode": "all", "selector": CACHE,
            "stressors": {"cpu": {"workers": 1, "load": 50}},
        }))
        until(kube, "stresschaos", "finalized", {"AllInjected": "True"})
        answer = kube.delete_chaos("stresschaos", "finalized")
        assert answer["metadata"]["deletionTimestamp"]
        assert answer["metadata"]["finalizers"] == ["chaos-mesh/records"]
        wait_for(lambda: is_gone(kube, "stresschaos", "finalized"))
    finally:
        kube.platform.on_clear = None
    (during,) = seen_during_clear
    assert during["metadata"]["deletionTimestamp"] == answer["metadata"]["deletionTimestamp"]
    assert during["metadata"]["finalizers"] == ["chaos-mesh/records"]
    assert during["status"]["experiment"]["desiredPhase"] == "Stop"
    assert [kind for kind, _ in kube.platform.calls_for("stresschaos", "finalized")] == ["apply", "clear"]


def test_a_deleting_object_refuses_new_finalizers_but_may_lose_its_own(kube):
    kube.create_chaos("podchaos", chaos("PodChaos", "held", {
        "action": "pod-failure", "mode": "all", "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "x"}},
    }, finalizers=["example.com/hold"]))
    until(kube, "podchaos", "held", {"Selected": "False"})
    kube.delete_chaos("podchaos", "held")
    # The controller drops its own finalizer; the foreign one keeps the object.
    held = wait_for(
        lambda: (o := kube.get_chaos("podchaos", "held"))["metadata"]["finalizers"] == ["example.com/hold"] and o
    )
    assert held["metadata"]["deletionTimestamp"]
    status, body = api_error(lambda: kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, CHAOS_NS, "podchaos", "held", {"metadata": {"finalizers": ["example.com/hold", "more"]}}
    ))
    assert status == 422 and "no new finalizers can be added" in body["message"]
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, CHAOS_NS, "podchaos", "held", {"metadata": {"finalizers": None}}
    )
    assert is_gone(kube, "podchaos", "held")


def test_a_created_paused_experiment_selects_but_does_not_inject(kube):
    kube.create_chaos("iochaos", chaos("IOChaos", "paused-from-start", {
        "action": "latency", "mode": "all", "volumePath": "/var/lib/db", "delay": "5ms",
        "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "database"}},
    }, annotations={PAUSE: "true"}))
    paused = until(kube, "iochaos", "paused-from-start", {"Selected": "True", "Paused": "True"})
    assert state(paused) == (
        {"Selected": "True", "AllInjected": "False", "AllRecovered": "True", "Paused": "True"},
        "Stop", [(".", "NotInjected", 0, 0), (".", "NotInjected", 0, 0)],
    )
    assert kube.platform.calls_for("iochaos", "paused-from-start") == []
    kube.delete_chaos("iochaos", "paused-from-start")
    wait_for(lambda: is_gone(kube, "iochaos", "paused-from-start"))


def test_delete_recovers_before_letting_go(kube):
    # A foreign finalizer keeps the object after the controller is done, so its last status shows.
    kube.create_chaos("httpchaos", chaos("HTTPChaos", "held-injected", {
        "mode": "all", "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "web-frontend"}},
        "target": "Request", "port": 8080, "abort": True,
    }, finalizers=["example.com/audit"]))
    until(kube, "httpchaos", "held-injected", {"AllInjected": "True"})
    kube.delete_chaos("httpchaos", "held-injected")
    recovered = until(kube, "httpchaos", "held-injected", {"AllRecovered": "True"})
    assert recovered["metadata"]["finalizers"] == ["example.com/audit"]
    assert state(recovered)[:2] == (
        {"Selected": "True", "AllInjected": "False", "AllRecovered": "True", "Paused": "False"}, "Stop",
    )
    assert all(r[1:] == ("NotInjected", 1, 1) for r in state(recovered)[2])
    assert [kind for kind, _ in kube.platform.calls_for("httpchaos", "held-injected")] == ["apply", "clear"]
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, CHAOS_NS, "httpchaos", "held-injected", {"metadata": {"finalizers": None}}
    )
    assert is_gone(kube, "httpchaos", "held-injected")


FORCED = {"chaos-mesh.chaos-mesh.org/cleanFinalizer": "forced"}
FAIL_RECOVERY = "sandbox.airflow-chaos.dev/fail-recovery"


def test_a_failing_recovery_holds_the_finalizer_until_the_clean_up_is_forced(kube):
    kube.create_chaos("networkchaos", chaos("NetworkChaos", "stuck", {
        "action": "delay", "mode": "one", "selector": CACHE, "delay": {"latency": "1ms"},
    }, annotations={FAIL_RECOVERY: "true"}))
    until(kube, "networkchaos", "stuck", {"AllInjected": "True"})
    kube.delete_chaos("networkchaos", "stuck")

    def recovery_failed():
        obj = kube.get_chaos("networkchaos", "stuck")
        events = obj["status"]["experiment"]["containerRecords"][0].get("events", [])
        return obj if events[-1]["operation"] == "Recover" and events[-1]["type"] == "Failed" else None

    stuck = wait_for(recovery_failed)
    assert stuck["metadata"]["finalizers"] == ["chaos-mesh/records"] and stuck["metadata"]["deletionTimestamp"]
    assert state(stuck)[1:] == ("Stop", [(".", "Injected", 1, 0)])
    assert f"the sandbox's {FAIL_RECOVERY} annotation is set" in stuck["status"]["experiment"]["containerRecords"][0]["events"][-1]["message"]
    time.sleep(0.6)  # several reconcile passes: it stays
    assert not is_gone(kube, "networkchaos", "stuck")

    kube.custom.patch_namespaced_custom_object(GROUP, VERSION, CHAOS_NS, "networkchaos", "stuck", {"metadata": {"annotations": FORCED}})
    wait_for(lambda: is_gone(kube, "networkchaos", "stuck"))
    # Gone without its recovery: the fault stays on the platform, as on a cluster.
    assert [kind for kind, _ in kube.platform.calls_for("networkchaos", "stuck")] == ["apply"]
    assert any(fault.startswith(f"networkchaos/{CHAOS_NS}/stuck/") for fault in kube.platform.active_faults())


def test_the_forced_clean_up_waits_for_the_deletion_and_a_recovery_that_works_still_runs(kube):
    kube.create_chaos("podchaos", chaos("PodChaos", "forced-early", {
        "action": "pod-failure", "mode": "one", "selector": CACHE,
    }, annotations=FORCED))
    until(kube, "podchaos", "forced-early", {"AllInjected": "True"})
    time.sleep(0.6)  # annotated but not deleted: Chaos Mesh leaves it alone
    live = kube.get_chaos("podchaos", "forced-early")
    assert live["metadata"]["finalizers"] == ["chaos-mesh/records"] and "deletionTimestamp" not in live["metadata"]
    kube.delete_chaos("podchaos", "forced-early")
    wait_for(lambda: is_gone(kube, "podchaos", "forced-early"))
    assert [kind for kind, _ in kube.platform.calls_for("podchaos", "forced-early")] == ["apply", "clear"]


def test_a_released_recovery_lets_a_stuck_deletion_finish(kube):
    kube.create_chaos("stresschaos", chaos("StressChaos", "released", {
        "mode": "one", "selector": CACHE, "stressors": {"cpu": {"workers": 1, "load": 10}},
    }, annotations={FAIL_RECOVERY: "true"}))
    until(kube, "stresschaos", "released", {"AllInjected": "True"})
    kube.delete_chaos("stresschaos", "released")
    time.sleep(0.6)
    assert not is_gone(kube, "stresschaos", "released")
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, CHAOS_NS, "stresschaos", "released", {"metadata": {"annotations": {FAIL_RECOVERY: None}}}
    )
    wait_for(lambda: is_gone(kube, "stresschaos", "released"))
    assert [kind for kind, _ in kube.platform.calls_for("stresschaos", "released")] == ["apply", "clear"]
