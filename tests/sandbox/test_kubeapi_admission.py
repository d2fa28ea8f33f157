"""Admission of Chaos Mesh objects: one case per rule, the exact Status cause asserted; dryRun=All."""

from __future__ import annotations

import copy
import json
import time

import pytest

from tests.sandbox.kubeapi_support import CHAOS_NS, GROUP, TOKEN, VERSION, api_error, chaos, serve

kube = pytest.fixture(scope="module", name="kube")(serve)

DELETE = object()
BOOKING = {"namespaces": ["booking"], "labelSelectors": {"app": "booking-worker"}}

VALID = {
    "PodChaos": {"action": "pod-kill", "mode": "one", "selector": BOOKING},
    "NetworkChaos": {"action": "delay", "mode": "one", "selector": BOOKING, "delay": {"latency": "100ms"}},
    "StressChaos": {"mode": "one", "selector": BOOKING, "stressors": {"cpu": {"workers": 1, "load": 50}}},
    "IOChaos": {"action": "latency", "mode": "one", "selector": BOOKING, "volumePath": "/data", "delay": "10ms"},
    "HTTPChaos": {"mode": "one", "selector": BOOKING, "target": "Request", "port": 8080, "abort": True},
}
PLURAL = {kind: kind.lower() for kind in VALID}


def mutated(kind: str, changes: dict) -> dict:
    spec = copy.deepcopy(VALID[kind])
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = spec
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return spec


def case(kind, changes, field, message, id):
    return pytest.param(kind, changes, field, message, id=f"{kind}-{id}")


MODES = '"one", "all", "fixed", "fixed-percent", "random-max-percent"'
RULES = [
    # -- the CRD schema, for every kind -----------------------------------------------------
    case("PodChaos", {"foo": 1}, "spec.foo", "Invalid value: field not declared in schema", "unknown-field"),
    case("NetworkChaos", {"selector.labelSelector": {"app": "x"}}, "spec.selector.labelSelector",
         "field not declared in schema", "unknown-nested-field"),
    case("StressChaos", {"mode": "two"}, "spec.mode", f'Unsupported value: "two": supported values: {MODES}',
         "mode-enum"),
    case("IOChaos", {"mode": DELETE}, "spec.mode", "Required value", "mode-required"),
    case("HTTPChaos", {"selector": DELETE}, "spec.selector", "Required value", "selector-required"),
    case("PodChaos", {"duration": 30}, "spec.duration",
         'Invalid value: "integer": spec.duration in body must be of type string: "integer"', "duration-type"),
    case("PodChaos", {"action": "pod-restart"}, "spec.action",
         'Unsupported value: "pod-restart": supported values: "pod-kill", "pod-failure", "container-kill"',
         "action-enum"),
    case("PodChaos", {"action": DELETE}, "spec.action", "Required value", "action-required"),
    case("PodChaos", {"gracePeriod": -1}, "spec.gracePeriod",
         "spec.gracePeriod in body should be greater than or equal to 0", "grace-period-minimum"),
    case("NetworkChaos", {"action": "jitter"}, "spec.action", 'Unsupported value: "jitter"', "action-enum"),
    case("NetworkChaos", {"delay": {}}, "spec.delay.latency", "Required value", "delay-needs-latency"),
    case("NetworkChaos", {"delay.latency": "fast"}, "spec.delay.latency",
         "spec.delay.latency in body should match '^[0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h)$'", "latency-pattern"),
    case("NetworkChaos", {"action": "bandwidth", "bandwidth": {"rate": "1mbps"}}, "spec.bandwidth.buffer",
         "Required value", "bandwidth-needs-buffer"),
    case("NetworkChaos", {"action": "bandwidth", "bandwidth": {"rate": "1mbps", "buffer": 1, "limit": 0}},
         "spec.bandwidth.limit", "should be greater than or equal to 1", "bandwidth-limit-minimum"),
    case("NetworkChaos", {"direction": "sideways"}, "spec.direction", 'Unsupported value: "sideways"',
         "direction-enum"),
    case("NetworkChaos", {"target": {"mode": "some", "selector": {}}}, "spec.target.mode",
         'Unsupported value: "some"', "target-mode-enum"),
    case("StressChaos", {"stressors.cpu.workers": DELETE}, "spec.stressors.cpu.workers", "Required value",
         "workers-required"),
    case("StressChaos", {"stressors.cpu.load": 101}, "spec.stressors.cpu.load",
         "should be less than or equal to 100", "load-maximum"),
    case("IOChaos", {"volumePath": DELETE}, "spec.volumePath", "Required value", "volume-path-required"),
    case("IOChaos", {"action": "slow"}, "spec.action",
         'Unsupported value: "slow": supported values: "latency", "fault", "attrOverride", "mistake"', "action-enum"),
    case("HTTPChaos", {"target": DELETE}, "spec.target", "Required value", "target-required"),
    case("HTTPChaos", {"target": "Both"}, "spec.target",
         'Unsupported value: "Both": supported values: "Request", "Response"', "target-enum"),
    case("HTTPChaos", {"abort": "yes"}, "spec.abort", "must be of type boolean", "abort-type"),
    # -- Chaos Mesh's webhook ---------------------------------------------------------------
    case("PodChaos", {"mode": "fixed", "value": "abc"}, "spec.value",
         'Invalid value: "abc": parse value field error:strconv.Atoi: parsing "abc": invalid syntax',
         "fixed-value-not-integer"),
    case("NetworkChaos", {"mode": "fixed"}, "spec.value",
         'Invalid value: "": parse value field error:strconv.Atoi: parsing "": invalid syntax', "fixed-value-missing"),
    case("StressChaos", {"mode": "fixed", "value": "0"}, "spec.value",
         'Invalid value: "0": value must be greater than 0 with mode:fixed', "fixed-value-zero"),
    case("IOChaos", {"mode": "fixed-percent", "value": "150"}, "spec.value",
         'Invalid value: "150": value of 150 is invalid, Must be (0,100] with mode:fixed-percent',
         "fixed-percent-over-100"),
    case("HTTPChaos", {"mode": "random-max-percent", "value": "0"}, "spec.value",
         "value of 0 is invalid, Must be (0,100] with mode:random-max-percent", "random-max-percent-zero"),
    case("PodChaos", {"duration": "5 minutes"}, "spec.duration",
         'Invalid value: "5 minutes": parse duration field error:time: unknown unit " minutes" in duration '
         '"5 minutes"', "duration-unit"),
    case("NetworkChaos", {"duration": "30"}, "spec.duration",
         'parse duration field error:time: missing unit in duration "30"', "duration-missing-unit"),
    case("StressChaos", {"duration": "1d"}, "spec.duration",
         'parse duration field error:time: unknown unit "d" in duration "1d"', "duration-days"),
    case("IOChaos", {"selector.expressionSelectors": [{"key": "app", "operator": "Equals", "values": ["x"]}]},
         "spec.selector.expressionSelectors[0].operator", 'Unsupported value: "Equals"', "expression-operator"),
    case("HTTPChaos", {"selector.expressionSelectors": [{"key": "app", "operator": "In"}]},
         "spec.selector.expressionSelectors[0].values", "Required value", "expression-in-needs-values"),
    case("PodChaos", {"selector.expressionSelectors": [{"key": "app", "operator": "Exists", "values": ["x"]}]},
         "spec.selector.expressionSelectors[0].values", "Forbidden", "expression-exists-without-values"),
    case("PodChaos", {"selector.podPhaseSelectors": ["Sleeping"]}, "spec.selector.podPhaseSelectors[0]",
         'Unsupported value: "Sleeping"', "pod-phase"),
    case("PodChaos", {"action": "container-kill"}, "spec.containerNames",
         "the name of container is empty on container-kill action", "container-kill-needs-names"),
    case("NetworkChaos", {"delay": DELETE}, "spec.delay", "the delay action needs spec.delay", "delay-needs-delay"),
    case("NetworkChaos", {"action": "loss", "delay": DELETE}, "spec.loss", "the loss action needs spec.loss",
         "loss-needs-loss"),
    case("NetworkChaos", {"action": "loss", "delay": DELETE, "loss": {"loss": "lots"}}, "spec.loss.loss",
         'parse loss field error:strconv.ParseFloat: parsing "lots": invalid syntax', "loss-number"),
    case("NetworkChaos", {"action": "duplicate", "delay": DELETE}, "spec.duplicate",
         "the duplicate action needs spec.duplicate", "duplicate-needs-duplicate"),
    case("NetworkChaos", {"action": "corrupt", "delay": DELETE, "corrupt": {"corrupt": "x"}}, "spec.corrupt.corrupt",
         "parse corrupt field error", "corrupt-number"),
    case("NetworkChaos", {"delay.correlation": "high"}, "spec.delay.correlation", "parse correlation field error",
         "correlation-number"),
    case("NetworkChaos", {"action": "bandwidth", "delay": DELETE}, "spec.bandwidth",
         "the bandwidth action needs spec.bandwidth", "bandwidth-needs-bandwidth"),
    case("NetworkChaos", {"action": "bandwidth", "delay": DELETE,
                          "bandwidth": {"rate": "1mbit", "limit": 100, "buffer": 10000}},
         "spec.bandwidth.rate", 'Invalid value: "1mbit": parse rate field error:invalid unit', "bandwidth-rate-unit"),
    case("NetworkChaos", {"action": "netem", "delay": DELETE}, "spec",
         "the netem action needs at least one of delay, loss, duplicate, corrupt, rate", "netem-needs-a-part"),
    case("NetworkChaos", {"direction": "from"}, "spec.direction",
         "`from` and `both` direction cannot be used when targets is empty in netem action", "from-needs-target"),
    case("NetworkChaos", {"target": {"mode": "fixed", "value": "x", "selector": BOOKING}}, "spec.target.value",
         'parse value field error:strconv.Atoi: parsing "x": invalid syntax', "target-value"),
    case("StressChaos", {"stressors": DELETE}, "spec",
         "at least one of stressors or stressngStressors is required", "stressors-required"),
    case("StressChaos", {"stressors": {}}, "spec.stressors", "at least one of cpu or memory is required",
         "stressors-empty"),
    case("StressChaos", {"stressors.cpu.workers": 0}, "spec.stressors.cpu.workers",
         "workers should always be positive", "workers-positive"),
    case("StressChaos", {"stressors": {"memory": {"workers": 1, "size": "lots"}}}, "spec.stressors.memory.size",
         "incorrect bytes format: invalid size: 'lots'", "memory-size"),
    case("StressChaos", {"stressors": {"memory": {"workers": 1, "size": "120%"}}}, "spec.stressors.memory.size",
         "incorrect bytes format: illegal proportion", "memory-percent"),
    case("IOChaos", {"delay": DELETE}, "spec.delay", "the latency action needs spec.delay", "latency-needs-delay"),
    case("IOChaos", {"delay": "10 ms"}, "spec.delay", 'parse delay field error:time: unknown unit " ms"',
         "delay-duration"),
    case("IOChaos", {"action": "fault", "delay": DELETE}, "spec.errno", "the fault action needs spec.errno",
         "fault-needs-errno"),
    case("IOChaos", {"percent": 120}, "spec.percent", "percent must be a number from 0 to 100", "percent-range"),
    case("HTTPChaos", {"port": DELETE}, "spec.port", "Invalid value: 0: port 0 is not supported", "port-required"),
    case("HTTPChaos", {"port": -80}, "spec.port", "port -80 is not supported", "port-positive"),
    case("HTTPChaos", {"method": "FETCH"}, "spec.method", "method FETCH is not supported", "method"),
    case("HTTPChaos", {"abort": DELETE}, "spec",
         "an HTTPChaos needs at least one of abort, delay, replace, patch", "needs-an-action"),
    case("HTTPChaos", {"delay": "soon"}, "spec.delay", 'parse delay field error:time: invalid duration "soon"',
         "delay-duration"),
]


@pytest.mark.parametrize(("kind", "changes", "field", "message"), RULES)
def test_each_admission_rule(kube, kind, changes, field, message):
    body = chaos(kind, "rule-check", mutated(kind, changes))
    status, answer = api_error(lambda: kube.create_chaos(PLURAL[kind], body, dry_run="All"))
    assert status == 422, answer
    assert (answer["kind"], answer["status"], answer["reason"], answer["code"]) == ("Status", "Failure", "Invalid", 422)
    assert answer["details"]["name"] == "rule-check"
    assert (answer["details"]["group"], answer["details"]["kind"]) == (GROUP, kind)
    causes = {c["field"]: c["message"] for c in answer["details"]["causes"]}
    assert field in causes, causes
    assert message in causes[field]
    assert answer["message"].startswith(f'{kind}.{GROUP} "rule-check" is invalid: ')


@pytest.mark.parametrize(
    "name",
    ["Bad_Name", "-leading-dash", "trailing-dot.", "x" * 254],
    ids=["uppercase-underscore", "leading-dash", "trailing-dot", "too-long"],
)
def test_metadata_name_must_be_a_dns_subdomain(kube, name):
    status, answer = api_error(lambda: kube.create_chaos("podchaos", chaos("PodChaos", name, VALID["PodChaos"])))
    assert status == 422
    (cause,) = answer["details"]["causes"]
    assert cause["field"] == "metadata.name"
    assert "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters" in cause["message"]


def test_a_missing_name_is_required(kube):
    body = chaos("PodChaos", "", VALID["PodChaos"])
    status, answer = api_error(lambda: kube.create_chaos("podchaos", body))
    assert status == 422
    assert answer["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value: name or generateName is required",
         "field": "metadata.name"}
    ]


def test_the_whole_status_body_of_a_rejection(kube):
    body = chaos("PodChaos", "two-pods", mutated("PodChaos", {"mode": "two"}))
    status, answer = api_error(lambda: kube.create_chaos("podchaos", body))
    message = f'Unsupported value: "two": supported values: {MODES}'
    assert status == 422
    assert answer == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'PodChaos.chaos-mesh.org "two-pods" is invalid: spec.mode: {message}',
        "reason": "Invalid",
        "details": {
            "name": "two-pods", "group": GROUP, "kind": "PodChaos",
            "causes": [{"reason": "FieldValueNotSupported", "message": message, "field": "spec.mode"}],
        },
        "code": 422,
    }


def test_every_error_is_reported_at_once(kube):
    spec = mutated("NetworkChaos", {"mode": "two", "direction": "sideways", "foo": True})
    status, answer = api_error(lambda: kube.create_chaos("networkchaos", chaos("NetworkChaos", "many", spec)))
    assert status == 422
    assert {c["field"] for c in answer["details"]["causes"]} == {"spec.mode", "spec.direction", "spec.foo"}
    assert answer["message"].startswith('NetworkChaos.chaos-mesh.org "many" is invalid: [')


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (chaos("NetworkChaos", "x", VALID["NetworkChaos"]),
         "the kind in the data (NetworkChaos) does not match the expected kind (PodChaos)"),
        ({**chaos("PodChaos", "x", VALID["PodChaos"]), "apiVersion": "chaos-mesh.org/v1beta1"},
         "the API version in the data (chaos-mesh.org/v1beta1) does not match"),
        ({"apiVersion": f"{GROUP}/{VERSION}", "metadata": {"name": "x"}, "spec": VALID["PodChaos"]},
         "Object 'Kind' is missing"),
        ({**chaos("PodChaos", "x", VALID["PodChaos"]), "metadata": {"name": "x", "namespace": "booking"}},
         "the namespace of the provided object does not match the namespace sent on the request"),
    ],
    ids=["kind-mismatch", "api-version", "kind-missing", "namespace-mismatch"],
)
def test_undecodable_objects_are_400(kube, body, message):
    status, answer = api_error(lambda: kube.create_chaos("podchaos", body))
    assert status == 400
    assert answer["reason"] == "BadRequest" and message in answer["message"]


def test_malformed_json_is_400(kube):
    # The client encodes whatever it is given, so send the broken bytes through its connection pool.
    response = kube.api.rest_client.pool_manager.request(
        "POST", f"{kube.url}/apis/{GROUP}/{VERSION}/namespaces/{CHAOS_NS}/podchaos", body=b'{"kind": "PodChaos",',
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    answer = json.loads(response.data)
    assert response.status == 400
    assert answer["reason"] == "BadRequest" and "json parse error" in answer["message"]


def test_a_missing_namespace_is_404(kube):
    status, answer = api_error(lambda: kube.custom.create_namespaced_custom_object(
        GROUP, VERSION, "staging", "podchaos", chaos("PodChaos", "x", VALID["PodChaos"])
    ))
    assert status == 404 and answer["message"] == 'namespaces "staging" not found'


@pytest.mark.parametrize("kind", list(VALID))
def test_dry_run_validates_defaults_and_stores_nothing(kube, kind):
    spec = {k: v for k, v in VALID[kind].items() if k != "selector"} | {"selector": {"labelSelectors": {"app": "x"}}}
    answer = kube.create_chaos(PLURAL[kind], chaos(kind, f"dry-{PLURAL[kind]}", spec), dry_run="All")
    assert answer["metadata"]["name"] == f"dry-{PLURAL[kind]}"
    assert answer["metadata"]["uid"] and answer["metadata"]["creationTimestamp"]
    # Chaos Mesh's webhook puts the object's own namespace into an empty selector.
    assert answer["spec"]["selector"]["namespaces"] == [CHAOS_NS]
    status, _ = api_error(lambda: kube.get_chaos(PLURAL[kind], f"dry-{PLURAL[kind]}"))
    assert status == 404
    listed = kube.custom.list_namespaced_custom_object(GROUP, VERSION, CHAOS_NS, PLURAL[kind])
    assert f"dry-{PLURAL[kind]}" not in [i["metadata"]["name"] for i in listed["items"]]
    assert kube.platform.calls_for(PLURAL[kind], f"dry-{PLURAL[kind]}") == []


def test_dry_run_applies_the_network_and_io_defaults(kube):
    network = kube.create_chaos("networkchaos", chaos("NetworkChaos", "dry-defaults", {
        "action": "netem", "mode": "all", "selector": BOOKING, "delay": {"latency": "50ms"}, "loss": {"loss": "5"},
    }), dry_run="All")
    assert network["spec"]["direction"] == "to"
    assert network["spec"]["delay"] == {"latency": "50ms", "jitter": "0ms", "correlation": "0"}
    assert network["spec"]["loss"] == {"loss": "5", "correlation": "0"}
    io = kube.create_chaos("iochaos", chaos("IOChaos", "dry-defaults", VALID["IOChaos"]), dry_run="All")
    assert io["spec"]["percent"] == 100


def test_dry_run_of_an_existing_name_is_409(kube):
    kube.create_chaos("podchaos", chaos("PodChaos", "exists-once", mutated("PodChaos", {
        "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "nothing-has-this"}},
    })))
    status, answer = api_error(lambda: kube.create_chaos(
        "podchaos", chaos("PodChaos", "exists-once", VALID["PodChaos"]), dry_run="All"
    ))
    assert (status, answer["reason"]) == (409, "AlreadyExists")
    kube.delete_chaos("podchaos", "exists-once")


def test_field_validation_warn_drops_unknown_fields_with_a_warning(kube):
    spec = mutated("PodChaos", {"foo": 1})
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{CHAOS_NS}/podchaos?dryRun=All&fieldValidation=Warn"
    response = kube.raw("POST", path, body=chaos("PodChaos", "lenient", spec))
    assert response.status == 201
    assert "foo" not in json.loads(response.data)["spec"]
    assert 'unknown field \\"spec.foo\\"' in response.headers["Warning"]


def test_dry_run_of_a_matching_experiment_touches_no_pod(kube):
    before = {(p.namespace, p.name, p.restart_count, p.ready) for p in kube.platform.pods()}
    spec = mutated("PodChaos", {"mode": "all"})
    kube.create_chaos("podchaos", chaos("PodChaos", "dry-kill-all", spec), dry_run="All")
    time.sleep(0.6)  # three controller ticks: time enough to act on anything that had been stored
    assert kube.platform.calls_for("podchaos", "dry-kill-all") == []
    assert {(p.namespace, p.name, p.restart_count, p.ready) for p in kube.platform.pods()} == before
