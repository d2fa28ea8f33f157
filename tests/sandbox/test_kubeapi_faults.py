"""The emulated API server's fault table, seen by the product's ChaosMeshHook (the real `kubernetes` client)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook, KubernetesApiError, KubernetesRequestError
from sandbox.api_faults import ApiFaultError, ApiFaults
from sandbox.kubeapi.errors import STALE_OBJECT
from sandbox.kubeapi.faults import FAULT_HEADER
from sandbox.runner import Sandbox
from tests.sandbox.kubeapi_support import CHAOS_NS, chaos, serve, wait_for

kube = pytest.fixture(scope="module", name="kube")(serve)

DEADLINE_S = 1.0
LEASES = r"/apis/coordination.k8s.io/v1/namespaces/[^/]+/leases"


@pytest.fixture
def faults(kube) -> Iterator[ApiFaults]:
    table = ApiFaults(kube.url)
    yield table
    table.clear()


def chaos_mesh(kube, monkeypatch, deadline: float = DEADLINE_S) -> ChaosMeshHook:
    connection = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(kube.kubeconfig), "namespace": CHAOS_NS}}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_FAULTS", json.dumps(connection))
    hook = ChaosMeshHook("kubernetes_faults", request_timeout=deadline)
    hook.api_client  # built once here, before any test shares it between threads
    return hook


@pytest.fixture
def cluster(kube, monkeypatch) -> ChaosMeshHook:
    return chaos_mesh(kube, monkeypatch)


def lease(name: str, holder: str = "worker-1") -> V1Lease:
    return V1Lease(
        metadata=V1ObjectMeta(name=name, namespace=CHAOS_NS),
        spec=V1LeaseSpec(holder_identity=holder, lease_duration_seconds=60),
    )


class InBackground:
    """`call` in a daemon thread: what it returned or raised, and how long it took."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.result: object = None
        self.error: BaseException | None = None
        self.took = 0.0
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], object]) -> None:
        started = time.monotonic()
        try:
            self.result = call()
        except BaseException as exc:  # what the call raised is the subject of the test
            self.error = exc
        self.took = time.monotonic() - started

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> InBackground:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"still running {timeout:g} s later"
        return self


def hits(faults: ApiFaults) -> list[int]:
    return [rule["hits"] for rule in faults.list()]


def test_a_podchaos_delete_answered_500_twice_is_then_served(kube, faults, cluster):
    kube.create_chaos("podchaos", chaos("PodChaos", "flaky-delete", {
        "action": "pod-failure", "mode": "one", "duration": "5m",
        "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "booking-worker"}},
    }))
    rule = faults.inject(".*/podchaos/flaky-delete", "error", verb="DELETE", times=2)
    assert rule == {"id": rule["id"], "verb": "DELETE", "path": ".*/podchaos/flaky-delete", "mode": "error",
                    "status": 500, "reason": "InternalError", "message": None, "times": 2, "hits": 0}

    for _ in range(2):
        with pytest.raises(KubernetesApiError) as caught:
            cluster.delete(ChaosKind.POD_CHAOS, "flaky-delete", CHAOS_NS)
        assert caught.value.status == 500
        assert caught.value.headers[FAULT_HEADER] == str(rule["id"])
        assert json.loads(caught.value.body) == {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 500,
            "reason": "InternalError", "message": "Internal error occurred: injected by the sandbox API fault table",
        }
    assert str(caught.value) == (f"delete PodChaos {CHAOS_NS}/flaky-delete: HTTP 500 Internal Server Error: "
                                 "Internal error occurred: injected by the sandbox API fault table")
    assert "deletionTimestamp" not in cluster.get(ChaosKind.POD_CHAOS, "flaky-delete", CHAOS_NS)["metadata"]

    assert cluster.delete(ChaosKind.POD_CHAOS, "flaky-delete", CHAOS_NS) is True
    assert hits(faults) == [2]
    wait_for(lambda: cluster.get(ChaosKind.POD_CHAOS, "flaky-delete", CHAOS_NS) is None)


def test_a_lease_update_answered_409_conflict(faults, cluster):
    current = cluster.create_lease(lease("contended-lock"))
    faults.inject(LEASES + "/.*", "error", verb="PUT", status=409, times=1)
    current.spec.holder_identity = "worker-2"

    with pytest.raises(KubernetesApiError) as caught:
        cluster.replace_lease(current)
    assert caught.value.status == 409
    assert json.loads(caught.value.body) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 409, "reason": "Conflict",
        "message": f'Operation cannot be fulfilled on leases.coordination.k8s.io "contended-lock": {STALE_OBJECT}',
        "details": {"name": "contended-lock", "group": "coordination.k8s.io", "kind": "leases"},
    }
    assert cluster.get_lease("contended-lock", CHAOS_NS).spec.holder_identity == "worker-1"
    assert cluster.replace_lease(current).spec.holder_identity == "worker-2"
    assert hits(faults) == [1]


def test_a_hang_past_the_deadline_fails_the_hook_while_other_requests_are_served(faults, cluster):
    hang_s = 2.5
    faults.inject(LEASES, "hang", verb="POST", seconds=hang_s)
    create = InBackground(lambda: cluster.create_lease(lease("hung-lock")))
    wait_for(lambda: hits(faults) == [1], timeout=DEADLINE_S / 2)

    started = time.monotonic()
    pods = cluster.list_pods("booking", label_selector="app=booking-api")
    assert time.monotonic() - started < DEADLINE_S / 2
    assert len(pods) == 3
    assert create.running

    create.join(DEADLINE_S + 1)
    assert isinstance(create.error, KubernetesRequestError)
    assert str(create.error) == (f"create Lease {CHAOS_NS}/hung-lock: no complete answer from the Kubernetes API "
                                 f"within the {DEADLINE_S:g} s deadline")
    assert DEADLINE_S - 0.1 <= create.took <= DEADLINE_S + 1

    # Its client gave up, so the held create was dropped: past the hang nothing was created.
    time.sleep(max(0.0, hang_s + 0.3 - create.took))
    assert cluster.get_lease("hung-lock", CHAOS_NS) is None


def test_a_delay_serves_the_request_after_its_seconds(faults, cluster):
    faults.inject("/api/v1/namespaces/booking/pods", "delay", verb="GET", seconds=0.5)
    started = time.monotonic()
    pods = cluster.list_pods("booking", label_selector="app=booking-api")
    assert 0.5 <= time.monotonic() - started < DEADLINE_S
    assert len(pods) == 3
    assert hits(faults) == [1]


def test_a_write_delayed_past_the_deadline_still_lands(faults, cluster):
    faults.inject(LEASES, "delay", verb="POST", seconds=1.5, times=1)
    with pytest.raises(KubernetesRequestError):
        cluster.create_lease(lease("late-lock"))
    assert wait_for(lambda: cluster.get_lease("late-lock", CHAOS_NS), timeout=2).spec.holder_identity == "worker-1"


def test_a_create_whose_reply_is_lost_is_stored_though_its_client_hears_nothing(kube, faults, cluster):
    """The nastiest create: the API server stores the object, the answer never reaches the client."""
    rule = faults.inject(".*/podchaos", "lose-reply", verb="POST", seconds=30, times=1)
    assert rule["mode"] == "lose-reply" and rule["seconds"] == 30
    body = chaos("PodChaos", "reply-lost", {"action": "pod-failure", "mode": "one", "duration": "5m",
                                            "selector": {"namespaces": ["booking"], "labelSelectors": {"app": "booking-worker"}}}, namespace=CHAOS_NS)
    create = InBackground(lambda: cluster.create(body))
    # Stored at once, while its client still waits for the answer.
    assert wait_for(lambda: cluster.get(ChaosKind.POD_CHAOS, "reply-lost", CHAOS_NS), timeout=DEADLINE_S / 2)
    assert create.running

    create.join(DEADLINE_S + 1)
    assert isinstance(create.error, KubernetesRequestError)
    assert str(create.error) == (f"create PodChaos {CHAOS_NS}/reply-lost: no complete answer from the Kubernetes API "
                                 f"within the {DEADLINE_S:g} s deadline")
    assert cluster.get(ChaosKind.POD_CHAOS, "reply-lost", CHAOS_NS)["metadata"]["name"] == "reply-lost"
    assert hits(faults) == [1]
    assert cluster.delete(ChaosKind.POD_CHAOS, "reply-lost", CHAOS_NS) is True
    wait_for(lambda: cluster.get(ChaosKind.POD_CHAOS, "reply-lost", CHAOS_NS) is None)


def test_a_client_that_outwaits_a_lost_reply_gets_the_answer(kube, faults, monkeypatch):
    patient = chaos_mesh(kube, monkeypatch, deadline=5)
    faults.inject(LEASES, "lose-reply", verb="POST", seconds=0.5, times=1)
    started = time.monotonic()
    created = patient.create_lease(lease("late-answer"))
    assert 0.5 <= time.monotonic() - started < 5
    assert created.metadata.name == "late-answer" and patient.get_lease("late-answer", CHAOS_NS).spec.holder_identity == "worker-1"


def test_rules_apply_in_order_and_only_to_their_verb(faults, cluster):
    first = faults.inject("/api/v1/namespaces/[^/]+/pods", "error", verb="GET", status=503, times=1)
    second = faults.inject("/api/v1/namespaces/[^/]+/pods", "error", verb="GET", status=429)
    faults.inject("/api/v1/namespaces/[^/]+/pods", "error", verb="POST")

    with pytest.raises(KubernetesApiError) as caught:
        cluster.list_pods("booking")
    assert (caught.value.status, json.loads(caught.value.body)["reason"]) == (503, "ServiceUnavailable")
    with pytest.raises(KubernetesApiError) as caught:
        cluster.list_pods("booking")
    assert (caught.value.status, json.loads(caught.value.body)["reason"]) == (429, "TooManyRequests")
    assert hits(faults) == [1, 1, 0]

    assert faults.remove(second["id"])["hits"] == 1
    assert [rule["id"] for rule in faults.list()] == [first["id"], second["id"] + 1]
    assert cluster.list_pods("booking")


def test_an_error_names_the_object_or_says_what_it_was_told(faults, cluster):
    cluster.create_lease(lease("vanishing-lock"))
    faults.inject(LEASES + "/vanishing-lock", "error", verb="GET", status=404, times=1)
    assert cluster.get_lease("vanishing-lock", CHAOS_NS) is None  # the hook reads a 404 as gone
    assert cluster.get_lease("vanishing-lock", CHAOS_NS).spec.holder_identity == "worker-1"

    faults.inject("/apis/coordination.k8s.io/v1/leases", "error", status=503, reason="InternalError",
                  message="etcdserver: leader changed")
    with pytest.raises(KubernetesApiError) as caught:
        cluster.list_leases()
    assert caught.value.status == 503
    assert json.loads(caught.value.body) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 503,
        "reason": "InternalError", "message": "etcdserver: leader changed",
    }


def test_clear_removes_every_rule(faults, cluster):
    faults.inject(".*", "error", status=503)
    faults.inject(".*", "hang", seconds=30)
    with pytest.raises(KubernetesApiError) as caught:
        cluster.list_pods("booking")
    assert caught.value.status == 503
    assert [rule["mode"] for rule in faults.list()] == ["error", "hang"]  # the control path is never faulted

    assert faults.clear() == 2
    assert faults.list() == []
    assert cluster.list_pods("booking")


def test_clear_releases_a_held_request_at_once(kube, faults, monkeypatch):
    patient = chaos_mesh(kube, monkeypatch, deadline=5)
    faults.inject("/api/v1/namespaces/payments/pods", "hang", seconds=30)
    listing = InBackground(lambda: patient.list_pods("payments"))
    wait_for(lambda: hits(faults) == [1], timeout=1)
    faults.clear()
    listing.join(1)
    assert listing.error is None
    assert {pod.metadata.labels["app"] for pod in listing.result} == {"payment-processor", "stripe-webhook-handler"}


def control(kube, method: str, body: bytes | None = None, path: str = "") -> tuple[int, dict]:
    request = urllib.request.Request(f"{kube.url}/sandbox/api-faults{path}", data=body, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


VERBS = 'use one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, or "*" for any'
BAD_RULES = [
    pytest.param([], "an API fault rule is a JSON object with verb, path, mode, status, reason, message, seconds, times, "
                     "not an array", id="not-an-object"),
    pytest.param({"path": ".*", "mode": "error", "code": 500},
                 "code: unknown field (a rule has verb, path, mode, status, reason, message, seconds, times)", id="unknown-field"),
    pytest.param({"mode": "error"},
                 'path: required: a regular expression the whole request path must match, e.g. ".*/podchaos/.*"', id="no-path"),
    pytest.param({"path": "/api/v1/(pods", "mode": "error"},
                 'path: "/api/v1/(pods" is not a regular expression: missing ), unterminated subpattern at position 8',
                 id="bad-path"),
    pytest.param({"verb": "FETCH", "path": ".*", "mode": "error"}, f'verb: "FETCH" is not an HTTP method: {VERBS}', id="bad-verb"),
    pytest.param({"path": ".*", "mode": "drop"}, 'mode: "drop" is not a mode: use one of error, hang, delay, lose-reply', id="bad-mode"),
    pytest.param({"path": ".*", "mode": "hang"},
                 "seconds: mode hang needs a number of seconds more than 0 and at most 3600, not null", id="hang-without-seconds"),
    pytest.param({"path": ".*", "mode": "lose-reply"},
                 "seconds: mode lose-reply needs a number of seconds more than 0 and at most 3600, not null", id="lost-reply-without-seconds"),
    pytest.param({"path": ".*", "mode": "delay", "seconds": -1},
                 "seconds: mode delay needs a number of seconds more than 0 and at most 3600, not -1", id="negative-delay"),
    pytest.param({"path": ".*", "mode": "error", "seconds": 2},
                 "seconds: only modes hang, delay, lose-reply wait; remove it from an error rule", id="seconds-on-an-error"),
    pytest.param({"path": ".*", "mode": "error", "status": 200},
                 "status: an error rule answers an HTTP error code from 400 to 599, not 200", id="status-not-an-error"),
    pytest.param({"path": ".*", "mode": "delay", "seconds": 1, "status": 500},
                 "status: only an error rule has one; remove it from a delay rule", id="status-on-a-delay"),
    pytest.param({"path": ".*", "mode": "error", "reason": 7}, "reason: must be a string, not 7", id="reason-not-a-string"),
    pytest.param({"path": ".*", "mode": "error", "times": 0},
                 "times: the number of requests the rule affects is a positive integer, or null for all, not 0", id="times-zero"),
]


@pytest.mark.parametrize(("rule", "problem"), BAD_RULES)
def test_a_bad_rule_is_400_naming_the_field(kube, faults, rule, problem):
    status, body = control(kube, "POST", json.dumps(rule).encode())
    assert (status, body["reason"], body["code"]) == (400, "BadRequest", 400)
    prefix = "" if problem.startswith("an API fault rule") else "invalid API fault rule: "
    assert body["message"] == prefix + problem
    assert faults.list() == []


def test_every_problem_of_a_rule_is_reported_at_once(kube, faults):
    status, body = control(kube, "POST", json.dumps({"verb": 1, "path": "(", "mode": "hang", "times": -2}).encode())
    assert status == 400
    assert body["message"] == (
        f"invalid API fault rule: verb: 1 is not an HTTP method: {VERBS}; "
        'path: "(" is not a regular expression: missing ), unterminated subpattern at position 0; '
        "seconds: mode hang needs a number of seconds more than 0 and at most 3600, not null; "
        "times: the number of requests the rule affects is a positive integer, or null for all, not -2"
    )


def test_the_control_endpoint_refuses_what_is_not_a_rule(kube, faults):
    status, body = control(kube, "POST", b"{verb: GET")
    assert status == 400
    assert body["message"].startswith("the body of POST /sandbox/api-faults must be one API fault rule as a JSON object: ")
    assert control(kube, "DELETE", path="/41") == (404, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 404, "reason": "NotFound",
        "message": "no API fault rule 41: GET /sandbox/api-faults lists them", "details": {},
    })
    with pytest.raises(ApiFaultError) as caught:
        faults.inject(".*", "drop")
    assert str(caught.value) == (f"POST {kube.url}/sandbox/api-faults: HTTP 400: "
                                 'invalid API fault rule: mode: "drop" is not a mode: use one of error, hang, delay, lose-reply')


def test_the_sandbox_hands_out_the_fault_table_of_its_api_server(tmp_path: Path):
    sandbox = Sandbox(tmp_path, kube_port=6443, prometheus_port=0, pushgateway_port=0, metrics_port=0)
    assert sandbox.api_faults.url == "http://127.0.0.1:6443/sandbox/api-faults"
