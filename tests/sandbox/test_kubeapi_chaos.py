"""Chaos objects through CustomObjectsApi: CRUD and error semantics, pod selection, and the Effects injected."""

from __future__ import annotations

import pytest

from sandbox.platform.effects import (
    ContainerKill,
    HTTPFault,
    IOFault,
    NetworkFault,
    PodFailure,
    PodRef,
    StressFault,
)
from tests.sandbox.kubeapi_support import CHAOS_NS, GROUP, VERSION, api_error, chaos, conditions, serve, wait_for

kube = pytest.fixture(scope="module", name="kube")(serve)

NOTHING = {"namespaces": ["booking"], "labelSelectors": {"app": "no-such-service"}}
QUIET = {"action": "pod-failure", "mode": "all", "selector": NOTHING}


def select(service: str, namespace: str = "booking") -> dict:
    return {"namespaces": [namespace], "labelSelectors": {"app": service}}


def injected(kube, plural: str, name: str) -> dict:
    return wait_for(lambda: (o := kube.get_chaos(plural, name)) and conditions(o).get("AllInjected") == "True" and o)


def gone(kube, plural: str, name: str) -> bool:
    try:
        kube.get_chaos(plural, name)
    except Exception as exc:
        return getattr(exc, "status", None) == 404
    return False


def run_and_remove(kube, kind: str, name: str, spec: dict):
    """Create, wait for injection, delete, wait until gone; the Effect the controller applied."""
    plural = kind.lower()
    kube.create_chaos(plural, chaos(kind, name, spec))
    injected(kube, plural, name)
    kube.delete_chaos(plural, name)
    wait_for(lambda: gone(kube, plural, name))
    calls = kube.platform.calls_for(plural, name)
    assert [c[0] for c in calls] == ["apply", "clear"], calls
    return calls[0][1]


# -- CRUD -----------------------------------------------------------------------------------


def test_create_get_list(kube):
    created = kube.create_chaos("podchaos", chaos("PodChaos", "crud-a", QUIET, labels={"tier": "low"}))
    meta = created["metadata"]
    assert (meta["namespace"], meta["generation"], meta["finalizers"]) == (CHAOS_NS, 1, ["chaos-mesh/records"])
    assert meta["uid"] and meta["resourceVersion"].isdigit() and meta["creationTimestamp"].endswith("Z")
    got = kube.get_chaos("podchaos", "crud-a")
    assert got["spec"] == created["spec"] and got["metadata"]["uid"] == meta["uid"]
    kube.create_chaos("podchaos", chaos("PodChaos", "crud-b", QUIET, labels={"tier": "high"}))

    listed = kube.custom.list_namespaced_custom_object(GROUP, VERSION, CHAOS_NS, "podchaos", label_selector="tier=low")
    assert (listed["kind"], listed["apiVersion"]) == ("PodChaosList", f"{GROUP}/{VERSION}")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["crud-a"]
    everywhere = kube.custom.list_cluster_custom_object(GROUP, VERSION, "podchaos", label_selector="tier in (low,high)")
    assert [i["metadata"]["name"] for i in everywhere["items"]] == ["crud-a", "crud-b"]
    by_name = kube.custom.list_cluster_custom_object(GROUP, VERSION, "podchaos", field_selector="metadata.name=crud-b")
    assert [i["metadata"]["name"] for i in by_name["items"]] == ["crud-b"]
    status, body = api_error(lambda: kube.custom.list_cluster_custom_object(
        GROUP, VERSION, "podchaos", field_selector="spec.action=pod-kill"
    ))
    assert status == 400 and body["message"] == (
        '"spec.action" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )


def test_create_twice_is_409(kube):
    kube.create_chaos("podchaos", chaos("PodChaos", "twice", QUIET))
    status, body = api_error(lambda: kube.create_chaos("podchaos", chaos("PodChaos", "twice", QUIET)))
    assert status == 409
    assert (body["reason"], body["message"]) == ("AlreadyExists", 'podchaos.chaos-mesh.org "twice" already exists')
    assert body["details"] == {"name": "twice", "group": GROUP, "kind": "podchaos"}


@pytest.mark.parametrize(
    "call",
    [
        lambda k: k.get_chaos("networkchaos", "missing"),
        lambda k: k.delete_chaos("networkchaos", "missing"),
        lambda k: k.custom.patch_namespaced_custom_object(GROUP, VERSION, CHAOS_NS, "networkchaos", "missing", {}),
        lambda k: k.custom.replace_namespaced_custom_object(
            GROUP, VERSION, CHAOS_NS, "networkchaos", "missing", chaos("NetworkChaos", "missing", {
                "action": "partition", "mode": "one", "selector": NOTHING,
            })
        ),
    ],
    ids=["get", "delete", "patch", "replace"],
)
def test_missing_objects_are_404(kube, call):
    status, body = api_error(lambda: call(kube))
    assert status == 404
    assert (body["reason"], body["message"]) == ("NotFound", 'networkchaos.chaos-mesh.org "missing" not found')


def test_unknown_kind_is_404(kube):
    status, body = api_error(lambda: kube.custom.list_namespaced_custom_object(GROUP, VERSION, CHAOS_NS, "podchaoss"))
    assert (status, body["message"]) == (404, "the server could not find the requested resource")


def test_patch_metadata_with_merge_and_json_patch(kube):
    created = kube.create_chaos("podchaos", chaos("PodChaos", "patched", QUIET))
    merged = kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, CHAOS_NS, "podchaos", "patched", {"metadata": {"labels": {"run": "r1"}}}
    )
    assert merged["metadata"]["labels"] == {"run": "r1"}
    assert int(merged["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    jsonpatched = kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, CHAOS_NS, "podchaos", "patched",
        [{"op": "add", "path": "/metadata/annotations", "value": {"approved-by": "sre"}}],
        _content_type="application/json-patch+json",
    )
    assert jsonpatched["metadata"]["annotations"] == {"approved-by": "sre"}
    assert jsonpatched["metadata"]["labels"] == {"run": "r1"}
    failing = [{"op": "test", "path": "/metadata/labels/run", "value": "r2"}]
    status, body = api_error(lambda: kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, CHAOS_NS, "podchaos", "patched", failing, _content_type="application/json-patch+json"
    ))
    assert (status, body["reason"]) == (422, "Invalid")


def test_strategic_merge_patch_is_refused_for_custom_resources(kube):
    kube.create_chaos("podchaos", chaos("PodChaos", "no-smp", QUIET))
    status, body = api_error(lambda: kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, CHAOS_NS, "podchaos", "no-smp", {"metadata": {"labels": {"a": "b"}}},
        _content_type="application/strategic-merge-patch+json",
    ))
    assert status == 415 and body["reason"] == "UnsupportedMediaType"


def test_the_spec_of_a_chaos_cannot_change(kube):
    created = kube.create_chaos("podchaos", chaos("PodChaos", "frozen", QUIET))
    status, body = api_error(lambda: kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, CHAOS_NS, "podchaos", "frozen", {"spec": {"mode": "one"}}
    ))
    assert status == 422
    assert body["details"]["causes"] == [
        {"reason": "FieldValueForbidden", "message": "Forbidden: Cannot update chaos spec", "field": "spec"}
    ]
    created["spec"]["duration"] = "1m"
    status, _ = api_error(lambda: kube.custom.replace_namespaced_custom_object(
        GROUP, VERSION, CHAOS_NS, "podchaos", "frozen", created
    ))
    assert status == 422


def test_replace_needs_the_current_resource_version(kube):
    created = kube.create_chaos("podchaos", chaos("PodChaos", "versioned", QUIET))
    current = wait_for(lambda: (o := kube.get_chaos("podchaos", "versioned")).get("status") and o)
    current["metadata"]["labels"] = {"owner": "a"}
    replaced = kube.custom.replace_namespaced_custom_object(GROUP, VERSION, CHAOS_NS, "podchaos", "versioned", current)
    assert replaced["metadata"]["labels"] == {"owner": "a"}
    assert replaced["status"] == current["status"]  # the controller's, whatever the writer sent
    created["metadata"]["labels"] = {"owner": "b"}
    status, body = api_error(lambda: kube.custom.replace_namespaced_custom_object(
        GROUP, VERSION, CHAOS_NS, "podchaos", "versioned", created
    ))
    assert status == 409 and body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]


def test_delete_with_a_stale_precondition_is_409(kube):
    kube.create_chaos("podchaos", chaos("PodChaos", "guarded", QUIET))
    status, body = api_error(lambda: kube.delete_chaos(
        "podchaos", "guarded", body={"preconditions": {"resourceVersion": "1"}}
    ))
    assert (status, body["reason"]) == (409, "Conflict")
    assert kube.get_chaos("podchaos", "guarded")["metadata"].get("deletionTimestamp") is None


def test_dry_run_delete_keeps_the_object(kube):
    kube.create_chaos("podchaos", chaos("PodChaos", "kept", QUIET))
    kube.delete_chaos("podchaos", "kept", dry_run="All")
    assert "deletionTimestamp" not in kube.get_chaos("podchaos", "kept")["metadata"]


def test_delete_collection_by_label(kube):
    for name, run in (("sweep-1", "old"), ("sweep-2", "old"), ("sweep-3", "new")):
        kube.create_chaos("stresschaos", chaos("StressChaos", name, {
            "mode": "all", "selector": NOTHING, "stressors": {"cpu": {"workers": 1}},
        }, labels={"run": run}))
    kube.custom.delete_collection_namespaced_custom_object(
        GROUP, VERSION, CHAOS_NS, "stresschaos", label_selector="run=old"
    )
    wait_for(lambda: gone(kube, "stresschaos", "sweep-1") and gone(kube, "stresschaos", "sweep-2"))
    assert kube.get_chaos("stresschaos", "sweep-3")["metadata"]["labels"] == {"run": "new"}


# -- selection ------------------------------------------------------------------------------


def pods_of(kube, predicate) -> tuple[PodRef, ...]:
    chosen = sorted((p.namespace, p.name) for p in kube.platform.pods() if predicate(p))
    return tuple(PodRef(*ref) for ref in chosen)


@pytest.mark.parametrize(
    ("name", "selector", "wanted"),
    [
        ("sel-labels", select("cache"), lambda p: p.service == "cache"),
        ("sel-expressions", {"namespaces": ["notifications"], "expressionSelectors": [
            {"key": "app", "operator": "In", "values": ["email-service", "sms-notifications"]}]},
         lambda p: p.service in ("email-service", "sms-notifications")),
        ("sel-fields", {"namespaces": ["booking"], "fieldSelectors": {"metadata.name": "database-1"}},
         lambda p: p.name == "database-1"),
        ("sel-pods", {"pods": {"booking": ["database-0", "database-1"]}}, lambda p: p.service == "database"),
        ("sel-two-namespaces", {"namespaces": ["booking", "notifications"],
                                "labelSelectors": {"app.kubernetes.io/part-of": "booking-platform"}},
         lambda p: p.namespace in ("booking", "notifications")),
        ("sel-running", {"namespaces": ["booking"], "labelSelectors": {"app": "cache"},
                         "podPhaseSelectors": ["Running"]}, lambda p: p.service == "cache"),
    ],
    ids=["labels", "expressions", "fields", "pods-map", "namespaces", "phase"],
)
def test_selectors_resolve_to_pods(kube, name, selector, wanted):
    expected = pods_of(kube, wanted)
    effect = run_and_remove(kube, "NetworkChaos", name, {
        "action": "delay", "mode": "all", "selector": selector, "delay": {"latency": "10ms"},
    })
    assert effect.pods == expected


@pytest.mark.parametrize(
    ("mode", "value", "count"),
    [("one", None, 1), ("all", None, 3), ("fixed", "2", 2), ("fixed", "9", 3), ("fixed-percent", "50", 1),
     ("fixed-percent", "100", 3)],
    ids=["one", "all", "fixed", "fixed-over", "fixed-percent-floors", "fixed-percent-all"],
)
def test_modes_pick_that_many_pods(kube, mode, value, count):
    spec = {"action": "delay", "mode": mode, "selector": select("booking-api"), "delay": {"latency": "10ms"}}
    if value:
        spec["value"] = value
    effect = run_and_remove(kube, "NetworkChaos", f"mode-{mode}-{value or 'x'}", spec)
    assert len(effect.pods) == count
    assert set(effect.pods) <= set(pods_of(kube, lambda p: p.service == "booking-api"))


@pytest.mark.parametrize(
    ("selector", "reason"),
    [
        (NOTHING, "no target has been selected"),
        ({"labelSelectors": {"app": "cache"}}, "no target has been selected"),  # defaults to the chaos namespace
        ({"namespaces": ["booking"], "annotationSelectors": {"team": "sre"}}, "no target has been selected"),
        ({"namespaces": ["booking"], "podPhaseSelectors": ["Pending"]}, "no target has been selected"),
    ],
    ids=["no-match", "own-namespace", "annotations", "phase"],
)
def test_a_selector_that_matches_nothing_injects_nothing(kube, selector, reason):
    name = f"empty-{len(kube.platform.calls)}-{abs(hash(str(selector))) % 10_000}"
    kube.create_chaos("podchaos", chaos("PodChaos", name, {"action": "pod-kill", "mode": "all", "selector": selector}))
    obj = wait_for(lambda: (o := kube.get_chaos("podchaos", name)).get("status") and o)
    selected = next(c for c in obj["status"]["conditions"] if c["type"] == "Selected")
    assert selected["status"] == "False" and reason in selected["reason"]
    assert conditions(obj) == {"Selected": "False", "AllInjected": "False", "AllRecovered": "False", "Paused": "False"}
    assert "containerRecords" not in obj["status"]["experiment"]
    assert kube.platform.calls_for("podchaos", name) == []
    kube.delete_chaos("podchaos", name)
    wait_for(lambda: gone(kube, "podchaos", name))
    assert kube.platform.calls_for("podchaos", name) == []


# -- the Effect of each kind ------------------------------------------------------------------


def only(kube, service):
    return pods_of(kube, lambda p: p.service == service)


EFFECTS = [
    ("NetworkChaos", {"action": "delay", "mode": "all", "selector": select("cache"),
                      "delay": {"latency": "100ms", "jitter": "20ms"}},
     lambda k: NetworkFault(only(k, "cache"), delay_ms=100.0, jitter_ms=20.0), "delay"),
    ("NetworkChaos", {"action": "loss", "mode": "all", "selector": select("cache"), "loss": {"loss": "25"}},
     lambda k: NetworkFault(only(k, "cache"), loss_pct=25.0), "loss"),
    ("NetworkChaos", {"action": "netem", "mode": "all", "selector": select("cache"), "delay": {"latency": "1s"},
                      "duplicate": {"duplicate": "5"}, "corrupt": {"corrupt": "2.5"}, "rate": {"rate": "10kbps"}},
     lambda k: NetworkFault(only(k, "cache"), delay_ms=1000.0, duplicate_pct=5.0, corrupt_pct=2.5,
                            bandwidth_bps=10 * 1024 * 8.0), "netem"),
    ("NetworkChaos", {"action": "bandwidth", "mode": "all", "selector": select("cache"),
                      "bandwidth": {"rate": "1mbps", "limit": 100, "buffer": 10000}},
     lambda k: NetworkFault(only(k, "cache"), bandwidth_bps=8.0 * 1024 * 1024), "bandwidth"),
    ("NetworkChaos", {"action": "partition", "mode": "all", "selector": select("booking-api"), "direction": "both",
                      "target": {"mode": "all", "selector": select("database")}},
     lambda k: NetworkFault(only(k, "booking-api"), peers=only(k, "database"), direction="both", partition=True),
     "partition-with-target"),
    ("NetworkChaos", {"action": "delay", "mode": "all", "selector": select("booking-api"),
                      "delay": {"latency": "5ms"}, "externalTargets": ["api.stripe.com"]},
     lambda k: NetworkFault(only(k, "booking-api"), peers=(), delay_ms=5.0), "external-targets-only"),
    ("StressChaos", {"mode": "all", "selector": select("booking-worker"), "stressors": {
        "cpu": {"workers": 2, "load": 40}, "memory": {"workers": 2, "size": "256MB"}}},
     lambda k: StressFault(only(k, "booking-worker"), cpu_load_pct=80.0, memory_bytes=512_000_000), "cpu-and-memory"),
    ("StressChaos", {"mode": "all", "selector": select("booking-worker"), "stressngStressors": "--cpu 1 --cpu-load 30"},
     lambda k: StressFault(only(k, "booking-worker"), cpu_load_pct=30.0), "stress-ng"),
    ("IOChaos", {"action": "latency", "mode": "all", "selector": select("database"), "volumePath": "/var/lib/db",
                 "delay": "10ms"},
     lambda k: IOFault(only(k, "database"), delay_ms=10.0), "io-latency"),
    ("IOChaos", {"action": "fault", "mode": "all", "selector": select("database"), "volumePath": "/var/lib/db",
                 "errno": 5, "percent": 50},
     lambda k: IOFault(only(k, "database"), error_pct=50.0), "io-fault"),
    ("HTTPChaos", {"mode": "all", "selector": select("web-frontend"), "target": "Request", "port": 8080,
                   "path": "/bookings", "method": "POST", "abort": True},
     lambda k: HTTPFault(only(k, "web-frontend"), routes=("/bookings",), methods=("POST",), abort=True), "abort"),
    ("HTTPChaos", {"mode": "all", "selector": select("web-frontend"), "target": "Response", "port": 8080,
                   "delay": "1.5s", "replace": {"code": 503}},
     lambda k: HTTPFault(only(k, "web-frontend"), target="Response", delay_ms=1500.0, replace_code=503),
     "delay-and-replace"),
    ("HTTPChaos", {"mode": "all", "selector": select("web-frontend"), "target": "Response", "port": 8080,
                   "patch": {"body": {"type": "JSON", "value": '{"status": "Failed"}'}}},
     lambda k: HTTPFault(only(k, "web-frontend"), target="Response", patched=True), "patch"),
    ("PodChaos", {"action": "container-kill", "mode": "all", "selector": select("email-service", "notifications"),
                  "containerNames": ["email-service"]},
     lambda k: ContainerKill(only(k, "email-service"), ("email-service",)), "container-kill"),
    ("PodChaos", {"action": "pod-failure", "mode": "all", "selector": select("sms-notifications", "notifications")},
     lambda k: PodFailure(only(k, "sms-notifications")), "pod-failure"),
]


@pytest.mark.parametrize(("kind", "spec", "expected"), [pytest.param(*e[:3], id=e[3]) for e in EFFECTS])
def test_each_kind_becomes_its_effect(kube, request, kind, spec, expected):
    want = expected(kube)
    effect = run_and_remove(kube, kind, f"effect-{request.node.callspec.id}", spec)
    assert effect == want


def test_a_network_target_is_recorded_under_its_selector_key(kube):
    kube.create_chaos("networkchaos", chaos("NetworkChaos", "targeted", {
        "action": "delay", "mode": "one", "selector": select("web-frontend"), "delay": {"latency": "10ms"},
        "direction": "to", "target": {"mode": "all", "selector": select("cache")},
    }))
    obj = injected(kube, "networkchaos", "targeted")
    keys = sorted((r["selectorKey"], r["id"]) for r in obj["status"]["experiment"]["containerRecords"])
    web = [key for key in keys if key[0] == "."]
    assert len(web) == 1 and web[0][1].startswith("booking/web-frontend-")
    caches = [(".Target", f"{p.namespace}/{p.name}") for p in only(kube, "cache")]
    assert [key for key in keys if key[0] == ".Target"] == caches
    kube.delete_chaos("networkchaos", "targeted")
    wait_for(lambda: gone(kube, "networkchaos", "targeted"))
