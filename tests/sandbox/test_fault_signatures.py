"""Each Chaos Mesh kind, created through the Kubernetes API, leaves its signature in a PromQL query
against the real Prometheus, and the signature goes away after the object is deleted."""

from __future__ import annotations

import time
import uuid

import pytest
from kubernetes import client, config

from tests.sandbox.sandbox_support import PrometheusAPI, wait_for

NAMESPACE = "chaos-engineering"
GROUP, VERSION = "chaos-mesh.org", "v1alpha1"


def p95(service: str) -> str:
    return f'1000 * histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{service="{service}"}}[5s])))'


def booking(app: str) -> dict:
    return {"namespaces": ["booking"], "labelSelectors": {"app": app}}


# id, kind, plural, spec, signature query, "rises" or "falls", how far from its value at rest
CASES = [
    ("podchaos-pod-failure", "PodChaos", "podchaos", {"action": "pod-failure", "mode": "one", "selector": booking("cache")},
     'sum(kube_pod_status_ready{namespace="booking",pod=~"cache-.*",condition="true"})', "falls", 1),
    ("networkchaos-delay", "NetworkChaos", "networkchaos", {"action": "delay", "mode": "all", "selector": booking("booking-api"),
     "delay": {"latency": "400ms"}, "direction": "to"}, p95("web-frontend"), "rises", 300),
    ("stresschaos-cpu", "StressChaos", "stresschaos", {"mode": "all", "selector": booking("booking-api"),
     "stressors": {"cpu": {"workers": 2, "load": 100}}}, 'max(process_cpu_utilisation_ratio{service="booking-api"})', "rises", 0.3),
    ("iochaos-latency", "IOChaos", "iochaos", {"action": "latency", "mode": "all", "selector": booking("database"),
     "volumePath": "/var/lib/postgresql/data", "delay": "300ms", "percent": 100}, p95("database"), "rises", 200),
    ("httpchaos-abort", "HTTPChaos", "httpchaos", {"mode": "all", "selector": booking("booking-api"), "target": "Request",
     "port": 8080, "path": "*", "abort": True}, 'sum(rate(http_requests_total{service="booking-api",code=~"5.."}[5s]))', "rises", 1),
]


@pytest.fixture(scope="module")
def custom(sandbox) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(str(sandbox.kubeconfig_path)))


@pytest.mark.parametrize(("kind", "plural", "spec", "query", "direction", "delta"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fault_signature_appears_and_goes(sandbox, prometheus: PrometheusAPI, custom, kind, plural, spec, query, direction, delta):
    # Wrapped in a tuple: a value of 0 is an answer, not "keep waiting".
    (rest,) = wait_for(lambda: (v,) if (v := prometheus.value(query)) is not None else None, 60, f"no value at rest for {query}")
    name = f"signature-{uuid.uuid4().hex[:6]}"
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name, "namespace": NAMESPACE}, "spec": dict(spec, duration="5m")}
    custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, body)

    def away(value: float | None) -> bool:
        return value is not None and (value >= rest + delta if direction == "rises" else value <= rest - delta)

    try:
        (seen,) = wait_for(lambda: (v,) if away(v := prometheus.value(query)) else None, 60, f"{kind}: {query} never {direction} by {delta} from {rest:.3g}")
    finally:
        custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, name)
    wait_for(lambda: not away(prometheus.value(query)), 90, f"{kind}: {query} still {direction} after deletion")
    assert away(seen)
    started = time.monotonic()
    while time.monotonic() - started < 15:
        if name not in [o["metadata"]["name"] for o in custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural)["items"]]:
            return
        time.sleep(0.5)
    raise AssertionError(f"{kind} {name} still listed 15 s after deletion")
