"""Total deadlines of PrometheusHook and ChaosMeshHook against real sockets: a server that
trickles its answer one byte per 0.5 s forever, one that never answers, one that answers 500."""

from __future__ import annotations

import datetime as dt
import json
import socket
import socketserver
import threading
import time
import uuid
from typing import Any

import pytest
from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.hooks.chaos_mesh import REQUEST_TIMEOUT_S, ChaosMeshHook, KubernetesApiError, KubernetesRequestError
from chaos_engineering.hooks.prometheus import PrometheusHook, PrometheusQueryError
from sandbox.kubeapi.errors import STALE_OBJECT

DEADLINE_S = 2.0
SLACK_S = 1.0
NAMESPACE = "chaos-engineering"
FAULT = "web-latency-deadline"
LEASE = "chaos-experiment-lock"
# One answer that both a Prometheus and a Kubernetes client read as an error of their own kind.
ERROR_BODY = json.dumps(
    {"status": "error", "errorType": "internal", "error": "storage unavailable",
     "kind": "Status", "apiVersion": "v1", "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500}
).encode()


class MisbehavingServer:
    """Reads each request whole, counts it, then: `trickle` sends the status line and headers (a
    long body announced) and then one body byte per 0.5 s forever; `trickle-headers` sends even
    the status line one byte per 0.5 s; `silent` never answers; `error` answers 500; `missing`
    answers 404 (an endpoint the server does not have)."""

    def __init__(self, mode: str) -> None:
        self.mode, self.requests, self.stopping = mode, [], threading.Event()
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                request = self.rfile.readline().decode().strip()
                length = 0
                while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                self.rfile.read(length)
                server.requests.append(request)
                try:
                    server.answer(self.connection)
                except OSError:  # the client gave up and closed: what a deadline does
                    pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, sock: socket.socket) -> None:
        if self.mode == "missing":
            sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found")
            return
        if self.mode == "error":
            head = f"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {len(ERROR_BODY)}\r\n\r\n"
            sock.sendall(head.encode() + ERROR_BODY)
            return
        if self.mode == "trickle":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
        pending = iter(b"HTTP/1.1 200 OK\r\nX-Slow: " if self.mode == "trickle-headers" else b"")
        while not self.stopping.wait(0.5):
            if self.mode != "silent":
                sock.sendall(bytes([next(pending, ord(" "))]))

    def __enter__(self) -> MisbehavingServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=["trickle", "trickle-headers", "silent"])
def hanging(request) -> MisbehavingServer:
    with MisbehavingServer(request.param) as server:
        yield server


@pytest.fixture
def failing() -> MisbehavingServer:
    with MisbehavingServer("error") as server:
        yield server


def timed(call, *args: Any) -> tuple[BaseException | None, float]:
    """The exception `call` raised and how long it took; fails (instead of hanging the suite)
    when it takes far longer than the deadline. The call runs in a daemon thread, which the
    server's teardown (it stops trickling and closes) lets end."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call(*args)
        except BaseException as exc:  # what the hook raised is the subject of the test
            outcome.append(exc)
        else:
            outcome.append(None)

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(DEADLINE_S + 10)
    if not outcome:
        pytest.fail(f"{call.__name__} still running {DEADLINE_S + 10:g} s after it started: no total deadline")
    return outcome[0], time.monotonic() - started


# --- Prometheus ---------------------------------------------------------------------------

def prometheus_on(server: MisbehavingServer, monkeypatch) -> PrometheusHook:
    # Credentials in the URL: a message must show the URL without them.
    host = server.url.replace("http://", "http://reader:s3cret@")
    monkeypatch.setenv("AIRFLOW_CONN_PROMETHEUS_MISBEHAVING", json.dumps({"conn_type": "http", "host": host}))
    return PrometheusHook("prometheus_misbehaving", timeout=DEADLINE_S)


def instant(hook: PrometheusHook) -> None:
    hook.query("vector(1)")


def range_query(hook: PrometheusHook) -> None:
    end = dt.datetime.now(dt.timezone.utc)
    hook.query_range("vector(1)", end - dt.timedelta(minutes=5), end, 15)


def started_at(hook: PrometheusHook) -> None:
    hook.started_at()


# The read, what its errors call it, its path, and the query they name (the runtime information has none).
PROMETHEUS_READS = pytest.mark.parametrize(
    ("read", "what", "path", "query"),
    [(instant, "query", "query", "vector(1)"), (range_query, "range query", "query_range", "vector(1)"),
     (started_at, "runtime information", "status/runtimeinfo", None)],
    ids=["instant", "range", "runtime-information"],
)


@PROMETHEUS_READS
def test_prometheus_query_has_a_total_deadline(hanging, monkeypatch, read, what, path, query):
    error, took = timed(read, prometheus_on(hanging, monkeypatch))
    assert isinstance(error, PrometheusQueryError)
    named = f" {query!r}" if query else ""
    assert str(error) == f"{what}{named} at {hanging.url}/api/v1/{path}: no complete answer within the 2 s deadline"
    assert DEADLINE_S - 0.1 <= took <= DEADLINE_S + SLACK_S
    assert len(hanging.requests) == 1  # never retried


@PROMETHEUS_READS
def test_prometheus_error_answer_is_a_failed_read(failing, monkeypatch, read, what, path, query):
    error, took = timed(read, prometheus_on(failing, monkeypatch))
    assert isinstance(error, PrometheusQueryError)
    named = f": {query}" if query else ""
    assert str(error) == f"{what} failed at {failing.url}/api/v1/{path}: HTTP 500: storage unavailable{named}"
    assert took <= SLACK_S
    assert len(failing.requests) == 1


def test_a_store_without_runtime_information_does_not_say_when_it_started(monkeypatch):
    with MisbehavingServer("missing") as server:
        assert prometheus_on(server, monkeypatch).started_at() is None
        assert len(server.requests) == 1


def test_prometheus_deadline_comes_from_the_connection_then_the_default(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PROMETHEUS_TIMED", json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9", "extra": {"timeout": 3}}))
    monkeypatch.setenv("AIRFLOW_CONN_PROMETHEUS_UNTIMED", json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9"}))
    assert PrometheusHook("prometheus_timed").timeout == 3.0
    assert PrometheusHook("prometheus_timed", timeout=1.5).timeout == 1.5
    assert PrometheusHook("prometheus_untimed").timeout == 5.0


# --- Kubernetes ---------------------------------------------------------------------------

def cluster_on(server: MisbehavingServer, monkeypatch) -> ChaosMeshHook:
    kube_config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "slow",
        "clusters": [{"name": "slow", "cluster": {"server": server.url}}],
        "users": [{"name": "slow", "user": {"token": "test-token"}}],
        "contexts": [{"name": "slow", "context": {"cluster": "slow", "user": "slow"}}],
    }
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_MISBEHAVING", json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": kube_config}}))
    return ChaosMeshHook("kubernetes_misbehaving", request_timeout=DEADLINE_S)


def get(hook: ChaosMeshHook) -> None:
    hook.get(ChaosKind.NETWORK_CHAOS, FAULT, NAMESPACE)


def create(hook: ChaosMeshHook) -> None:
    hook.create({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos", "metadata": {"name": FAULT, "namespace": NAMESPACE},
                 "spec": {"action": "delay", "mode": "one", "selector": {"namespaces": ["booking"]}, "delay": {"latency": "1ms"}}})


def delete(hook: ChaosMeshHook) -> None:
    hook.delete(ChaosKind.NETWORK_CHAOS, FAULT, NAMESPACE)


def replace_lease(hook: ChaosMeshHook) -> None:
    hook.replace_lease(V1Lease(metadata=V1ObjectMeta(name=LEASE, namespace=NAMESPACE, resource_version="7"),
                               spec=V1LeaseSpec(holder_identity="monitor")))


KUBERNETES_CALLS = [
    (get, f"get NetworkChaos {NAMESPACE}/{FAULT}", "GET"),
    (create, f"create NetworkChaos {NAMESPACE}/{FAULT}", "POST"),
    (delete, f"delete NetworkChaos {NAMESPACE}/{FAULT}", "DELETE"),
    (replace_lease, f"replace Lease {NAMESPACE}/{LEASE}", "PUT"),
]
KUBERNETES_IDS = ["get", "create", "delete", "lease-update"]


@pytest.mark.parametrize(("call", "named", "method"), KUBERNETES_CALLS, ids=KUBERNETES_IDS)
def test_kubernetes_call_has_one_total_deadline(hanging, monkeypatch, call, named, method):
    error, took = timed(call, cluster_on(hanging, monkeypatch))
    assert isinstance(error, KubernetesRequestError)
    assert str(error) == f"{named}: no complete answer from the Kubernetes API within the 2 s deadline"
    assert DEADLINE_S - 0.1 <= took <= DEADLINE_S + SLACK_S
    # Tried once: the client's own urllib3 retries (3 by default) would multiply the deadline.
    assert [r.split()[0] for r in hanging.requests] == [method]


@pytest.mark.parametrize(("call", "named", "method"), KUBERNETES_CALLS, ids=KUBERNETES_IDS)
def test_kubernetes_error_answer_names_the_call(failing, monkeypatch, call, named, method):
    error, took = timed(call, cluster_on(failing, monkeypatch))
    assert isinstance(error, KubernetesApiError)
    assert str(error) == f"{named}: HTTP 500 Internal Server Error: etcdserver: request timed out"
    assert error.status == 500 and json.loads(error.body)["reason"] == "InternalError"
    assert took <= SLACK_S
    assert [r.split()[0] for r in failing.requests] == [method]


def test_unreachable_api_server_names_the_call(monkeypatch):
    with MisbehavingServer("silent") as server:
        hook = cluster_on(server, monkeypatch)
    error, took = timed(get, hook)  # the server is gone: connection refused
    assert isinstance(error, KubernetesRequestError)
    assert str(error).startswith(f"get NetworkChaos {NAMESPACE}/{FAULT} failed: NewConnectionError: ")
    assert took <= SLACK_S


@pytest.mark.parametrize("timeout", [0, -1, REQUEST_TIMEOUT_S + 1], ids=["zero", "negative", "longer-than-the-stop-allows"])
def test_a_deadline_is_positive_and_never_longer_than_request_timeout(timeout):
    with pytest.raises(ValueError) as raised:
        ChaosMeshHook(request_timeout=timeout)
    assert str(raised.value) == (
        f"request_timeout must be more than 0 and at most {REQUEST_TIMEOUT_S} s (REQUEST_TIMEOUT_S: the emergency "
        f"stop's in-flight bound), not {timeout!r}"
    )


# --- the sandbox: deadlines do not cut ordinary calls ---------------------------------------

def test_ordinary_calls_on_the_sandbox_still_work(connections):
    prometheus = PrometheusHook(timeout=DEADLINE_S)
    assert prometheus.query("vector(1)") == 1.0
    end = dt.datetime.now(dt.timezone.utc)
    assert {v for _, v in prometheus.query_range("vector(3)", end - dt.timedelta(seconds=20), end, 5)} == {3.0}

    cluster = ChaosMeshHook(request_timeout=DEADLINE_S)
    assert len(cluster.list_pods("booking", label_selector="app=booking-api")) == 3
    assert cluster.get(ChaosKind.NETWORK_CHAOS, "never-existed", NAMESPACE) is None
    name = f"deadline-test-{uuid.uuid4().hex[:8]}"
    created = cluster.create_lease(V1Lease(metadata=V1ObjectMeta(name=name, namespace=NAMESPACE), spec=V1LeaseSpec(holder_identity="first")))
    try:
        created.spec.holder_identity = "second"
        cluster.replace_lease(created)
        assert cluster.get_lease(name, NAMESPACE).spec.holder_identity == "second"
        with pytest.raises(KubernetesApiError) as stale:  # an error answer keeps its status for callers
            cluster.replace_lease(created)  # with the resourceVersion read before the update
        assert stale.value.status == 409
        assert str(stale.value) == (
            f'replace Lease {NAMESPACE}/{name}: HTTP 409 Conflict: Operation cannot be fulfilled on leases.coordination.k8s.io '
            f'"{name}": {STALE_OBJECT}'
        )
    finally:
        assert cluster.delete_lease(name, NAMESPACE, cluster.get_lease(name, NAMESPACE).metadata.resource_version) is True
