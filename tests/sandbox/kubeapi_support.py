"""Test harness for the emulated API server: uvicorn in a thread, a kubeconfig, clients, a recording platform."""

# The platform behind the server is the real sandbox `Platform`, wrapped so tests can see every
# apply/clear call the chaos controller makes (and run a check at the moment of a clear).

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from sandbox.kubeapi.app import create_app
from sandbox.platform.effects import Effect, PodInfo, PodRef
from sandbox.platform.platform import Platform

TOKEN = "sandbox-test-token"
CHAOS_NS = "chaos-engineering"
GROUP, VERSION = "chaos-mesh.org", "v1alpha1"


class RecordingPlatform:
    """PlatformControl that forwards to a real Platform and records what the controller asked."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.calls: list[tuple[str, str, Effect | None]] = []
        self.on_clear: Callable[[str], None] | None = None
        self._lock = threading.Lock()

    def pods(self) -> list[PodInfo]:
        return self.platform.pods()

    def apply(self, fault_id: str, effect: Effect) -> None:
        with self._lock:
            self.calls.append(("apply", fault_id, effect))
        self.platform.apply(fault_id, effect)

    def clear(self, fault_id: str) -> None:
        if self.on_clear is not None:
            self.on_clear(fault_id)
        with self._lock:
            self.calls.append(("clear", fault_id, None))
        self.platform.clear(fault_id)

    def active_faults(self) -> dict[str, Effect]:
        return self.platform.active_faults()

    def delete_pod(self, pod: PodRef) -> None:
        self.platform.delete_pod(pod)

    def set_labels(self, pod: PodRef, labels: dict[str, str]) -> None:
        self.platform.set_labels(pod, labels)

    def calls_for(self, plural: str, name: str, namespace: str = CHAOS_NS) -> list[tuple[str, Effect | None]]:
        prefix = f"{plural}/{namespace}/{name}/"
        with self._lock:
            return [(kind, effect) for kind, fault, effect in self.calls if fault.startswith(prefix)]

    def service_pods(self, service: str) -> set[PodRef]:
        return {PodRef(p.namespace, p.name) for p in self.pods() if p.service == service and p.phase == "Running"}


class KubeServer:
    """The app under uvicorn on a free port, and the kubeconfig a user would write for it."""

    def __init__(self, platform: RecordingPlatform, directory: Path, *, allow_anonymous: bool = True) -> None:
        self.platform = platform
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(platform, token=TOKEN, allow_anonymous=allow_anonymous)
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self.kubeconfig = directory / "kubeconfig.yaml"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {"server": self.url}}],
            "users": [{"name": "sandbox", "user": {"token": TOKEN}}],
            "contexts": [
                {"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox", "namespace": CHAOS_NS}}
            ],
            "current-context": "sandbox",
        }))

    def start(self) -> KubeServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the sandbox API server did not start")
            time.sleep(0.02)
        self.api = config.new_client_from_config(config_file=str(self.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.coordination = client.CoordinationV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
        self.api.close()

    # -- shorthands for the chaos tests ----------------------------------------------------

    def create_chaos(self, plural: str, body: dict, **kwargs) -> dict:
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, CHAOS_NS, plural, body, **kwargs)

    def get_chaos(self, plural: str, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, CHAOS_NS, plural, name)

    def delete_chaos(self, plural: str, name: str, **kwargs) -> dict:
        return self.custom.delete_namespaced_custom_object(GROUP, VERSION, CHAOS_NS, plural, name, **kwargs)

    def raw(self, method: str, path: str, body: object = None, headers: dict | None = None, auth: bool = True):
        """Any request through the client's own ApiClient (for paths no generated method covers)."""
        return self.api.call_api(
            path, method, header_params={"Accept": "application/json", **(headers or {})}, body=body,
            auth_settings=["BearerToken"] if auth else [], _preload_content=False, _return_http_data_only=True,
        )


def start_server(tmp_path_factory: pytest.TempPathFactory, seed: int = 7, **options) -> KubeServer:
    platform = RecordingPlatform(Platform(seed=seed))
    return KubeServer(platform, tmp_path_factory.mktemp("kubeapi"), **options).start()


def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeServer]:
    """A test module's server: `kube = pytest.fixture(scope="module", name="kube")(serve)`."""
    server = start_server(tmp_path_factory)
    yield server
    server.stop()


def api_error(call: Callable[[], object]) -> tuple[int, dict]:
    """The status code and the decoded Status body of a call that must fail."""
    with pytest.raises(ApiException) as caught:
        call()
    return caught.value.status, json.loads(caught.value.body)


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def conditions(obj: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions", [])}


def chaos(kind: str, name: str, spec: dict, **metadata) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name, **metadata}, "spec": spec}
