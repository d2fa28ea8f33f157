"""PrometheusHook and ChaosMeshHook against the sandbox's API server and its real Prometheus."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from kubernetes.client.exceptions import ApiException

from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.hooks.prometheus import PrometheusHook, PrometheusQueryError
from chaos_engineering.render import LABEL_RUN_KEY, render_chaos_object

CATALOGUE = load_catalogue()


@pytest.fixture
def prometheus(connections) -> PrometheusHook:
    return PrometheusHook()


@pytest.fixture
def cluster(connections) -> ChaosMeshHook:
    return ChaosMeshHook()


def test_every_policy_query_reads_one_number(prometheus):
    for name, threshold in CATALOGUE.policy.safety.thresholds.items():
        value = prometheus.query(threshold.query)
        assert value is not None and value >= 0, name


def test_no_series_is_no_data(prometheus):
    assert prometheus.query('sum(bookings_total{outcome="no-such-outcome"})') is None


def test_several_series_are_refused(prometheus):
    with pytest.raises(PrometheusQueryError, match="series, expected one"):
        prometheus.query("up")


def test_bad_promql_and_dead_server_are_failed_reads(prometheus, connections):
    with pytest.raises(PrometheusQueryError, match="query failed"):
        prometheus.query("sum(")
    with pytest.raises(PrometheusQueryError, match="query failed"):
        PrometheusHook("prometheus_dead").query("vector(1)")


def test_range_query(prometheus):
    end = dt.datetime.now(dt.timezone.utc)
    samples = prometheus.query_range("vector(2)", end - dt.timedelta(seconds=30), end, 2.5)
    assert len(samples) >= 12 and {v for _, v in samples} == {2.0}


def test_prometheus_says_when_it_started(prometheus, sandbox):
    started = prometheus.started_at()
    # The sandbox's Prometheus: started by this session's sandbox, which recorded its own start
    # once all its parts were up (within their start timeout), or restarted by a test since. A
    # misread zone or unit would be hours off.
    assert sandbox.started_at - 120 <= started <= time.time()


def test_series_lists_labels(prometheus):
    rows = prometheus.series('up{job="booking-platform"}')
    assert len(rows) >= 20 and all("pod" in r["labels"] for r in rows)


def _manifest(name: str, run_id: str) -> dict:
    return render_chaos_object(CATALOGUE.get(name), CATALOGUE.policy, dag_id="hook-test", run_id=run_id)


def test_dry_run_stores_nothing(cluster):
    manifest = _manifest("booking-api-pod-kill", "dry")
    created = cluster.create(manifest, dry_run=True)
    assert created["metadata"]["name"] == manifest["metadata"]["name"]
    assert cluster.get(ChaosKind.POD_CHAOS, manifest["metadata"]["name"], "chaos-engineering") is None


def test_dry_run_rejects_what_chaos_mesh_rejects(cluster):
    manifest = _manifest("booking-api-pod-kill", "bad")
    manifest["spec"]["mode"] = "fixed"  # no value: Chaos Mesh's webhook refuses it
    with pytest.raises(ApiException) as raised:
        cluster.create(manifest, dry_run=True)
    assert raised.value.status == 422


def test_create_get_list_delete(cluster):
    manifest = _manifest("web-frontend-latency", "crud")
    name, key = manifest["metadata"]["name"], manifest["metadata"]["labels"][LABEL_RUN_KEY]
    cluster.create(manifest)
    try:
        assert cluster.get(ChaosKind.NETWORK_CHAOS, name, "chaos-engineering")["spec"]["delay"]["latency"] == "100ms"
        listed = cluster.list(ChaosKind.NETWORK_CHAOS, "chaos-engineering", f"{LABEL_RUN_KEY}={key}")
        assert [o["metadata"]["name"] for o in listed] == [name]
        assert name in [o["metadata"]["name"] for o in cluster.list(ChaosKind.NETWORK_CHAOS)]
    finally:
        assert cluster.delete(ChaosKind.NETWORK_CHAOS, name, "chaos-engineering") is True
    assert cluster.delete(ChaosKind.NETWORK_CHAOS, "never-existed", "chaos-engineering") is False


def test_pods(cluster):
    pods = cluster.list_pods("booking", label_selector="app=booking-api")
    assert len(pods) == 3 and all(p.metadata.labels["app"] == "booking-api" for p in pods)
    assert cluster.get_pod("booking", pods[0].metadata.name).metadata.uid == pods[0].metadata.uid
    assert cluster.get_pod("booking", "no-such-pod") is None
