"""Through real HTTP to the real Prometheus: targets, kube-state-metrics, Pushgateway, the safety queries.

Ordered on purpose: the quick checks first, then the ones that need 30 s and 90 s of data, then
the ones that disturb the sandbox (a pod fault, a Prometheus restart).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from kubernetes import client, config
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from sandbox import processes
from tests.sandbox.sandbox_support import wait_for

GROUP, VERSION, CHAOS_NAMESPACE = "chaos-mesh.org", "v1alpha1", "chaos-engineering"
RATE = 20.0
CONFIRMED = RATE * 0.99  # 1 % of cards are declined
SAFETY_QUERIES = {
    "booking_rate": 'sum(rate(bookings_total{outcome="confirmed"}[30s]))',
    "payment_failure_pct": '100 * sum(rate(payments_total{outcome="failed"}[30s])) / sum(rate(payments_total[30s]))',
    "error_rate_pct": '100 * sum(rate(http_requests_total{service="web-frontend",code=~"5.."}[30s])) '
                      '/ sum(rate(http_requests_total{service="web-frontend"}[30s]))',
    "p95_latency_ms": '1000 * histogram_quantile(0.95, sum by (le) '
                      '(rate(http_request_duration_seconds_bucket{service="web-frontend"}[30s])))',
    "availability_pct": '100 * avg_over_time((max(up{job="booking-platform",service="web-frontend"}))[5m:5s])',
    "health_score_pct": '50 * sum(kube_pod_status_ready{condition="true",namespace=~"booking|payments|notifications"}) '
                        '/ count(kube_pod_status_ready{condition="true",namespace=~"booking|payments|notifications"}) '
                        '+ 50 * (1 - sum(rate(http_requests_total{namespace=~"booking|payments|notifications",code=~"5.."}[30s])) '
                        '/ sum(rate(http_requests_total{namespace=~"booking|payments|notifications"}[30s])))',
}


def state(sandbox) -> dict:
    return requests.get(f"{sandbox.metrics_url}/sandbox/state", timeout=5).json()


def wait_for_data(sandbox, seconds: float) -> None:
    """Block until Prometheus can hold `seconds` of data since the sandbox came up."""
    wait_for(lambda: time.time() - sandbox.started_at >= seconds, timeout=seconds + 5,
             message=f"{seconds:.0f}s of data since start-up", interval=1)


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def pod_failure(api: client.ApiClient, pod: str, namespace: str = "booking") -> Iterator[None]:
    """A Chaos Mesh pod-failure on one named pod, through the emulated API server, removed on exit."""
    chaos = client.CustomObjectsApi(api)
    name = f"sandbox-test-{pod}"
    chaos.create_namespaced_custom_object(GROUP, VERSION, CHAOS_NAMESPACE, "podchaos", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "PodChaos", "metadata": {"name": name},
        "spec": {"action": "pod-failure", "mode": "all", "selector": {"pods": {namespace: [pod]}},
                 "duration": "90s"},
    })
    try:
        yield
    finally:
        chaos.delete_namespaced_custom_object(GROUP, VERSION, CHAOS_NAMESPACE, "podchaos", name)


def test_every_pod_is_a_healthy_target(sandbox, prometheus):
    pods = {(pod["namespace"], pod["name"], pod["service"]) for pod in state(sandbox)["pods"]}
    up = prometheus.query('up{job="booking-platform"}')
    assert {(s["metric"]["namespace"], s["metric"]["pod"], s["metric"]["service"]) for s in up} == pods
    assert all(s["value"][1] == "1" for s in up)


def test_kube_state_metrics_report_every_pod_ready(sandbox, prometheus):
    ready = prometheus.query('kube_pod_status_ready{condition="true"}')
    assert {(s["metric"]["namespace"], s["metric"]["pod"]) for s in ready} == {
        (pod["namespace"], pod["name"]) for pod in state(sandbox)["pods"]}
    assert prometheus.value('sum(kube_pod_container_status_restarts_total{namespace="payments"})') == 0


def test_the_zone_gauges_are_scraped_with_a_series_for_every_placed_zone_and_service(prometheus):
    placed = {(s["metric"]["zone"], s["metric"]["service"]) for s in prometheus.query("platform_zone_replicas")}
    assert len(placed) == 23
    for gauge in ("platform_zone_pods_ready", "platform_zone_endpoints_ejected"):
        assert {(s["metric"]["zone"], s["metric"]["service"]) for s in prometheus.query(gauge)} == placed, gauge


def test_pushed_metrics_are_scraped_with_their_own_labels(sandbox, prometheus):
    job = f"sandbox-test-{uuid.uuid4().hex[:8]}"
    registry = CollectorRegistry()
    Gauge("chaos_sandbox_test_pushed", "A value pushed by the test.", registry=registry).set(42)
    push_to_gateway(sandbox.pushgateway_url.removeprefix("http://"), job=job, registry=registry)
    # honor_labels: the pushed job label wins over the scrape job's.
    found = wait_for(lambda: prometheus.query(f'chaos_sandbox_test_pushed{{job="{job}"}}'), timeout=20,
                     message="the pushed metric in Prometheus")
    assert found[0]["value"][1] == "42"


def test_extra_rule_files_are_evaluated(prometheus):
    value = wait_for(lambda: prometheus.value("sandbox_test:bookings_confirmed:rate30s"), timeout=20,
                     message="the recording rule from --rule-file")
    assert value > 0


def wait_for_quiet(sandbox, seconds: float = 35) -> None:
    """Block until no chaos object is on the session's sandbox, then `seconds` more: another test
    module's fault may have ended a moment ago, and its errors stay in the 30 s rate windows."""
    api = config.new_client_from_config(str(sandbox.kubeconfig_path), context="sandbox")
    chaos = client.CustomObjectsApi(api)
    plurals = ("podchaos", "networkchaos", "stresschaos", "iochaos", "httpchaos")
    wait_for(lambda: not any(chaos.list_cluster_custom_object(GROUP, VERSION, p)["items"] for p in plurals), timeout=120,
             message="no chaos object on the sandbox", interval=1)
    time.sleep(seconds)


def test_safety_queries_give_sane_numbers_at_baseline(sandbox, prometheus):
    wait_for_data(sandbox, 35)
    wait_for_quiet(sandbox)
    values = {name: prometheus.value(query) for name, query in SAFETY_QUERIES.items()}
    assert all(value is not None and math.isfinite(value) for value in values.values()), values
    assert values["booking_rate"] == pytest.approx(CONFIRMED, rel=0.1), values
    assert 0.3 < values["payment_failure_pct"] < 2.0, values
    assert values["error_rate_pct"] < 0.1, values
    assert 50 < values["p95_latency_ms"] < 1000, values
    assert values["availability_pct"] == 100, values
    assert values["health_score_pct"] >= 99, values


def test_the_booking_rate_is_stable_over_a_minute_and_the_sandbox_is_cheap(sandbox, prometheus):
    server = next(p for p in processes.tracked(sandbox.state_dir) if p.name == "sandbox-server")
    cpu_before, wall_before = cpu_seconds(server.pid), time.monotonic()
    wait_for_data(sandbox, 90)
    cpu_share = (cpu_seconds(server.pid) - cpu_before) / (time.monotonic() - wall_before)

    end = time.time()
    points = prometheus.range(SAFETY_QUERIES["booking_rate"], end - 60, end, 2)
    assert len(points) >= 28 and points[0][0] <= end - 58
    mean = sum(value for _, value in points) / len(points)
    assert mean == pytest.approx(CONFIRMED, rel=0.05)
    assert all(abs(value - mean) / mean <= 0.05 for _, value in points), points
    p95 = prometheus.range(SAFETY_QUERIES["p95_latency_ms"], end - 60, end, 2)
    assert len(p95) >= 28 and all(50 < value < 1000 for _, value in p95)
    # Two cores are shared with Airflow and Prometheus: the simulation must stay light.
    assert cpu_share < 0.15, f"sandbox server used {cpu_share:.1%} of a core"


def test_a_failed_pod_is_down_and_a_deleted_pod_is_replaced_as_a_target(sandbox, prometheus):
    api = config.new_client_from_config(str(sandbox.kubeconfig_path), context="sandbox")
    victim = next(pod["name"] for pod in state(sandbox)["pods"] if pod["service"] == "cache")
    with pod_failure(api, victim):
        wait_for(lambda: prometheus.value(f'up{{pod="{victim}"}}') == 0, timeout=20,
                 message=f"up == 0 for the failed pod {victim}")
        wait_for(lambda: prometheus.value(f'kube_pod_status_ready{{pod="{victim}",condition="true"}}') == 0,
                 timeout=20, message="the failed pod not ready in kube-state-metrics")
    wait_for(lambda: prometheus.value(f'up{{pod="{victim}"}}') == 1, timeout=30,
             message=f"{victim} scraped again after the fault was removed")

    doomed = next(pod["name"] for pod in state(sandbox)["pods"] if pod["service"] == "web-frontend")
    client.CoreV1Api(api).delete_namespaced_pod(doomed, "booking")

    def replaced() -> bool:
        targets = requests.get(f"{sandbox.prometheus_url}/api/v1/targets?state=active", timeout=5).json()
        frontends = {t["labels"]["pod"]: t["health"] for t in targets["data"]["activeTargets"]
                     if t["labels"].get("service") == "web-frontend"}
        return doomed not in frontends and len(frontends) == 3 and set(frontends.values()) == {"up"}

    wait_for(replaced, timeout=30, message=f"{doomed}'s target replaced by its successor's")


def test_prometheus_can_be_stopped_and_started_again_while_a_pod_is_down(sandbox, prometheus):
    # The minutes before the stop that the end reads back (run alone, the sandbox is younger).
    wait_for_data(sandbox, 3 * 60 + 20)
    api = config.new_client_from_config(str(sandbox.kubeconfig_path), context="sandbox")
    victim = next(pod["name"] for pod in state(sandbox)["pods"] if pod["service"] == "booking-worker")
    with pod_failure(api, victim):
        wait_for(lambda: not next(p["ready"] for p in state(sandbox)["pods"] if p["name"] == victim), timeout=20,
                 message=f"{victim} failed")
        sandbox.stop_prometheus()
        with pytest.raises(requests.ConnectionError):
            prometheus.query("up")
        # Back although one target is down: a fault may well be active when the fail-safe test restarts it.
        sandbox.start_prometheus()
        assert prometheus.value(f'up{{pod="{victim}"}}') == 0
    # The TSDB survived: the minutes before the stop are still there.
    assert prometheus.value('count(count_over_time(up{job="booking-platform"}[3m] offset 20s))') >= 23
