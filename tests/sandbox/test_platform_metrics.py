"""The metrics server's exposition: names and labels from CONTRACT.md, 503 for a pod that is down."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sandbox.platform import Platform
from sandbox.platform.effects import PodFailure, PodRef
from sandbox.platform.exporter import create_exporter_app


@pytest.fixture
def platform() -> Platform:
    platform = Platform(seed=8, start_time=0.0)
    platform.simulate(5)
    return platform


class ExporterClient:
    """Requests straight into the ASGI app, no socket."""

    def __init__(self, app) -> None:
        self.app = app

    def get(self, path: str) -> httpx.Response:
        async def fetch() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
                return await client.get(path)

        return asyncio.run(fetch())


@pytest.fixture
def client(platform) -> ExporterClient:
    return ExporterClient(create_exporter_app(platform, health=lambda: {"kube_api": True}))


def first(platform: Platform, service: str) -> str:
    return next(pod.name for pod in platform.pods() if pod.service == service)


def families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_a_booking_api_pod_exports_the_contract_metrics(platform, client):
    response = client.get(f"/pods/booking/{first(platform, 'booking-api')}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    exported = families(response.text)
    assert set(exported) == {
        "http_requests", "http_request_duration_seconds", "bookings",
        "process_cpu_utilisation_ratio", "process_memory_working_set_bytes",
    }
    requests = exported["http_requests"].samples
    assert {sample.name for sample in requests} == {"http_requests_total"}
    assert all(set(sample.labels) == {"route", "code"} for sample in requests)
    assert {"/bookings", "/availability", "/healthz"} <= {sample.labels["route"] for sample in requests}
    # 5xx series exist from the start, so an error share is 0 rather than no data.
    assert any(sample.labels["code"] == "503" and sample.value == 0 for sample in requests)
    buckets = [s for s in exported["http_request_duration_seconds"].samples if s.name.endswith("_bucket")]
    assert {s.labels["le"] for s in buckets} >= {"0.005", "0.05", "0.5", "3.0", "5.0", "10.0", "+Inf"}
    bookings = {s.labels["outcome"]: s.value for s in exported["bookings"].samples if s.name == "bookings_total"}
    assert set(bookings) == {"confirmed", "failed"} and bookings["confirmed"] > 0
    assert 0 < exported["process_cpu_utilisation_ratio"].samples[0].value <= 1
    assert exported["process_memory_working_set_bytes"].samples[0].value > 100 * 2**20


def test_payments_are_exported_by_payment_processor_pods_only(platform, client):
    payments = families(client.get(f"/pods/payments/{first(platform, 'payment-processor')}/metrics").text)
    assert {s.labels["outcome"] for s in payments["payments"].samples if s.name == "payments_total"} == {
        "succeeded", "failed"}
    frontend = families(client.get(f"/pods/booking/{first(platform, 'web-frontend')}/metrics").text)
    assert "payments" not in frontend and "bookings" not in frontend


def test_a_failed_pod_answers_its_scrape_with_503_and_an_unknown_one_with_404(platform, client):
    name = first(platform, "cache")
    platform.apply("fail", PodFailure(pods=(PodRef("booking", name),)))
    assert client.get(f"/pods/booking/{name}/metrics").status_code == 503
    assert client.get("/pods/booking/cache-zzzzz/metrics").status_code == 404


def test_kube_state_metrics_cover_every_pod(platform, client):
    name = first(platform, "cache")
    platform.apply("fail", PodFailure(pods=(PodRef("booking", name),)))
    exported = families(client.get("/kube-state-metrics/metrics").text)
    ready = {
        (s.labels["namespace"], s.labels["pod"], s.labels["condition"]): s.value
        for s in exported["kube_pod_status_ready"].samples
    }
    for pod in platform.pods():
        expected = 0.0 if pod.name == name else 1.0
        assert ready[(pod.namespace, pod.name, "true")] == expected
        assert ready[(pod.namespace, pod.name, "false")] == 1.0 - expected
    restarts = {
        s.labels["pod"]: s.value
        for s in exported["kube_pod_container_status_restarts"].samples
        if s.name == "kube_pod_container_status_restarts_total"
    }
    assert restarts[name] == 1 and len(restarts) == 23


def test_state_and_health_are_served(platform, client):
    state = client.get("/sandbox/state").json()
    assert len(state["pods"]) == 23 and state["primary"] == "database-0" and state["faults"] == {}
    assert client.get("/healthz").json() == {"platform": True, "kube_api": True}


def confirmed_bookings(client: ExporterClient, platform: Platform) -> float:
    total = 0.0
    for pod in platform.pods():
        if pod.service == "booking-api":
            text = client.get(f"/pods/booking/{pod.name}/metrics").text
            total += sum(s.value for s in families(text)["bookings"].samples if s.labels.get("outcome") == "confirmed")
    return total


def test_a_scrape_counts_up_to_its_own_moment_even_when_the_simulation_lags():
    """On a loaded machine the simulation's loop may not run for seconds; a scrape then brings it
    up to the wall clock first, and the stalled seconds are replayed, not dropped: the booking
    rate Prometheus sees never dips because the sandbox was starved of CPU."""
    now = [0.0]
    platform = Platform(seed=8, start_time=0.0, rate=20.0)
    client = ExporterClient(create_exporter_app(platform, clock=lambda: now[0]))
    platform.simulate(60)
    now[0] = platform.now
    before = confirmed_bookings(client, platform)
    now[0] += 40  # 40 s in which the simulation's own loop never ran
    after = confirmed_bookings(client, platform)
    assert platform.now == pytest.approx(now[0])
    # All 40 s were served (about 20 bookings/s, minus declined cards), none skipped.
    assert 0.8 * 20 * 40 < after - before < 1.2 * 20 * 40
