"""`chaosctl status` when the Kubernetes API fails for a while: transient reads retried with backoff
(each retry on stderr), a clear error and exit 1 when they keep failing, refusals not retried."""

from __future__ import annotations

import datetime as dt
import json
import socket
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

from chaos_engineering import cli
from chaos_engineering.hooks.chaos_mesh import KubernetesApiError, KubernetesRequestError
from chaos_engineering.policy import load_policy
from chaos_engineering.render import LABEL_MANAGED_BY, MANAGED_BY

NAMESPACE = "chaos-engineering"
HALT_CALL = f"get Lease {NAMESPACE}/chaos-halt"
DEADLINE = f"{HALT_CALL}: no complete answer from the Kubernetes API within the 10 s deadline"


def throttled(call: str, status: int = 429, retry_after: str | None = None) -> KubernetesApiError:
    cause = ApiException(status=status, reason="Too Many Requests" if status == 429 else "Forbidden")
    cause.headers = {"Retry-After": retry_after} if retry_after else {}
    return KubernetesApiError(call, cause)


class FlakyCluster:
    """The reads of `status`. `fail[key]` holds the errors the next reads of `key` raise: a Lease's
    name (`get_lease`), or `list`."""

    def __init__(self) -> None:
        self.faults: list[dict] = []
        self.fail: dict[str, list[Exception]] = {}
        self.calls: list[str] = []

    def _read(self, key: str) -> None:
        self.calls.append(key)
        if self.fail.get(key):
            raise self.fail[key].pop(0)

    def get_lease(self, name: str, namespace: str) -> V1Lease | None:
        self._read(name)
        if not name.startswith("chaos-heartbeat-"):
            return None  # no halt, no lock
        spec = V1LeaseSpec(holder_identity="monitor:host/1", renew_time=dt.datetime.now(dt.timezone.utc), lease_duration_seconds=15)
        return V1Lease(metadata=V1ObjectMeta(name=name, namespace=namespace), spec=spec)

    def list(self, kind: Any, namespace: str | None = None, label_selector: str | None = None) -> list[dict]:
        self._read("list")
        return [f for f in self.faults if f["kind"] == kind.value]


@pytest.fixture
def cluster(monkeypatch) -> FlakyCluster:
    fake = FlakyCluster()
    policy = load_policy()[0]
    monkeypatch.setattr(cli, "_cluster", lambda args: (fake, policy))
    monkeypatch.setattr(cli, "READ_BACKOFF_S", 0.01)
    return fake


def status(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["status", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_read_that_timed_out_is_retried_and_said_on_stderr(cluster, capsys):
    cluster.fail["chaos-halt"] = [KubernetesRequestError(DEADLINE), KubernetesRequestError(DEADLINE)]
    code, out, err = status(capsys)
    assert code == 0
    assert out.startswith("halt:   not halted")
    assert err.splitlines() == [
        f"chaosctl: reading the halt flag: {DEADLINE}; retrying in 0.01 s (attempt 2 of 3)",
        f"chaosctl: reading the halt flag: {DEADLINE}; retrying in 0.02 s (attempt 3 of 3)",
    ]


def test_reads_that_keep_failing_end_in_one_clear_error_and_exit_1(cluster, capsys):
    cluster.fail["chaos-halt"] = [KubernetesRequestError(DEADLINE)] * 3
    code, out, err = status(capsys)
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == (
        f"chaosctl status: cannot read the halt flag: {DEADLINE} (gave up after 3 attempts over 0 s: "
        "check that the Kubernetes API is reachable, then run it again)"
    )
    assert len(err.splitlines()) == 3  # two retries, one error; no traceback
    assert cluster.calls == ["chaos-halt"] * 3


def test_a_throttled_read_waits_as_long_as_retry_after_says(cluster, capsys):
    cluster.fail["chaos-experiment-lock"] = [throttled(f"get Lease {NAMESPACE}/chaos-experiment-lock", retry_after="1")]
    code, _, err = status(capsys)
    assert code == 0
    assert err.splitlines() == [
        f"chaosctl: reading the experiment lock: get Lease {NAMESPACE}/chaos-experiment-lock: HTTP 429 Too Many Requests; "
        "retrying in 1 s (attempt 2 of 3)"
    ]


def test_a_refusal_is_not_retried(cluster, capsys):
    cluster.fail["chaos-halt"] = [throttled(HALT_CALL, status=403)]
    code, out, err = status(capsys)
    assert (code, out) == (1, "")
    assert err == f"chaosctl status: cannot read the halt flag: {HALT_CALL}: HTTP 403 Forbidden\n"
    assert cluster.calls == ["chaos-halt"]


def test_the_listing_and_each_heartbeat_are_retried_too(cluster, capsys):
    cluster.faults = [{"kind": "PodChaos", "spec": {}, "status": {},
                       "metadata": {"name": "web-kill", "namespace": NAMESPACE, "labels": {LABEL_MANAGED_BY: MANAGED_BY},
                                    "annotations": {}, "creationTimestamp": "2026-03-01T12:00:00Z"}}]
    listing = "list PodChaos in every namespace: no complete answer from the Kubernetes API within the 10 s deadline"
    beat = f"get Lease {NAMESPACE}/chaos-heartbeat-podchaos-web-kill failed: ProtocolError: connection reset"
    cluster.fail["list"] = [KubernetesRequestError(listing)]
    cluster.fail["chaos-heartbeat-podchaos-web-kill"] = [KubernetesRequestError(beat)]
    code, out, err = status(capsys, "--format", "json")
    assert code == 0, err
    [fault] = json.loads(out)["faults"]
    assert (fault["name"], fault["heartbeat_by"]) == ("web-kill", "monitor:host/1")
    assert err.splitlines() == [
        f"chaosctl: reading the faults of ours: {listing}; retrying in 0.01 s (attempt 2 of 3)",
        f"chaosctl: reading the heartbeat of PodChaos {NAMESPACE}/web-kill: {beat}; retrying in 0.01 s (attempt 2 of 3)",
    ]
    assert cluster.calls.count("list") == 1 + 5  # the first kind failed, then all five were listed


@given(st.one_of(st.none(), st.text(max_size=20), st.integers(-10**9, 10**9).map(str), st.floats(allow_nan=True).map(str)))
def test_a_retry_after_never_makes_a_read_wait_longer_than_its_bound(value):
    exc = throttled(HALT_CALL, retry_after=value)
    assert 0 <= cli._retry_after(exc) <= cli.READ_RETRY_AFTER_MAX_S


# --- the real hook, against a local API server that drops connections first ----------------


class DroppingApiServer:
    """A Kubernetes API with no Leases and no chaos objects, which resets the first `drops`
    connections without answering (what a restarting or overloaded API server does)."""

    def __init__(self, drops: int) -> None:
        self.drops, self.requests = drops, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.requests.append(self.path)
                if len(server.requests) <= server.drops:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if "/leases/" in self.path:
                    code, body = 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
                else:
                    code, body = 200, {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "List", "metadata": {}, "items": []}
                payload = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self, path) -> str:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "local",
            "clusters": [{"name": "local", "cluster": {"server": self.url}}],
            "users": [{"name": "local", "user": {"token": "test-token"}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "local"}}],
        }
        path.write_text(json.dumps(config))
        return str(path)


@pytest.fixture
def api_server(request) -> Iterator[DroppingApiServer]:
    server = DroppingApiServer(request.param)
    threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def status_through_the_hook(server: DroppingApiServer, tmp_path, monkeypatch, capsys) -> tuple[int, str, str]:
    # `--kubeconfig` becomes this process's connection: let monkeypatch restore the environment.
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_RETRYTEST", "{}")
    monkeypatch.setattr(cli, "READ_BACKOFF_S", 0.01)
    return status(capsys, "--kubeconfig", server.kubeconfig(tmp_path / "kubeconfig"), "--conn-id", "kubernetes_retrytest")


@pytest.mark.parametrize("api_server", [2], indirect=True)
def test_status_through_the_hook_outlives_dropped_connections(api_server, tmp_path, monkeypatch, capsys):
    code, out, err = status_through_the_hook(api_server, tmp_path, monkeypatch, capsys)
    assert code == 0, err
    assert "halt:   " in out and "faults: 0 of ours in the cluster" in out
    retries = err.splitlines()
    assert len(retries) == 2
    for attempt, line in zip((2, 3), retries):
        assert line.startswith(f"chaosctl: reading the halt flag: {HALT_CALL} failed: ProtocolError: ")
        assert line.endswith(f"(attempt {attempt} of 3)")
    assert len(api_server.requests) == 2 + 2 + 5  # halt (after two drops), lock, the five kinds


@pytest.mark.parametrize("api_server", [1000], indirect=True)
def test_status_through_the_hook_gives_up_on_an_api_that_never_answers(api_server, tmp_path, monkeypatch, capsys):
    code, out, err = status_through_the_hook(api_server, tmp_path, monkeypatch, capsys)
    assert (code, out) == (1, "")
    assert err.splitlines()[-1].startswith(f"chaosctl status: cannot read the halt flag: {HALT_CALL} failed: ProtocolError: ")
    assert "(gave up after 3 attempts over 0 s: check that the Kubernetes API is reachable, then run it again)" in err
    assert len(api_server.requests) == 3
