"""Prometheus exposition of the platform: per-pod registries, kube-state-metrics, file_sd targets."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Set
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from sandbox.platform.stats import BUCKETS

if TYPE_CHECKING:
    from sandbox.platform.effects import PodRef
    from sandbox.platform.pods import SimPod

_LE = [floatToGoString(bound) for bound in BUCKETS] + ["+Inf"]
# The port the pods would listen on; only used to give each target a pod-like `instance`.
POD_PORT = 8080


class PodCollector(Collector):
    """What one pod's /metrics endpoint exports (labels namespace/pod/service come from the target)."""

    def __init__(self, pod: SimPod) -> None:
        self.pod = pod

    def collect(self) -> Iterator[Metric]:
        pod, stats = self.pod, self.pod.stats
        requests = CounterMetricFamily(
            "http_requests", "HTTP requests served, by route and status code.", labels=["route", "code"]
        )
        for (route, code), count in sorted(stats.http.requests.items()):
            requests.add_metric([route, code], count)
        yield requests
        latency = HistogramMetricFamily(
            "http_request_duration_seconds", "Time to answer an HTTP request, by route.", labels=["route"]
        )
        for route, histogram in sorted(stats.http.latency.items()):
            latency.add_metric([route], list(zip(_LE, histogram.cumulative())), histogram.total)
        yield latency
        if stats.bookings:
            yield _counter("bookings", "Bookings by outcome.", "outcome", stats.bookings)
        if stats.payments:
            yield _counter("payments", "Payments by outcome.", "outcome", stats.payments)
        yield GaugeMetricFamily(
            "process_cpu_utilisation_ratio", "CPU used, as a share of the container's limit.",
            value=pod.cpu_ratio,
        )
        yield GaugeMetricFamily(
            "process_memory_working_set_bytes", "Memory working set of the container.",
            value=pod.memory_bytes,
        )
        for name, (help_text, value) in pod.extra_gauges().items():
            yield GaugeMetricFamily(name, help_text, value=value)


def _counter(name: str, help_text: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help_text, labels=[label])
    for value, count in sorted(values.items()):
        family.add_metric([value], count)
    return family


def pod_registry(pod: SimPod) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PodCollector(pod))
    return registry


def pod_metrics(pod: SimPod) -> bytes:
    return generate_latest(pod.registry)


class KubeStateCollector(Collector):
    """The kube-state-metrics series the safety policy reads, for every pod that exists."""

    def __init__(self, pods: Iterable[SimPod]) -> None:
        self.pods = list(pods)

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily(
            "kube_pod_status_ready", "Describes whether the pod is ready to serve requests.",
            labels=["namespace", "pod", "condition"],
        )
        restarts = CounterMetricFamily(
            "kube_pod_container_status_restarts", "The number of container restarts per container.",
            labels=["namespace", "pod", "container"],
        )
        phase = GaugeMetricFamily(
            "kube_pod_status_phase", "The pods current phase.", labels=["namespace", "pod", "phase"]
        )
        for pod in self.pods:
            namespace, name = pod.spec.namespace, pod.name
            for condition, value in (("true", pod.ready), ("false", not pod.ready), ("unknown", False)):
                ready.add_metric([namespace, name, condition], float(value))
            restarts.add_metric([namespace, name, pod.spec.name], pod.restart_count)
            for candidate in ("Pending", "Running", "Succeeded", "Failed", "Unknown"):
                phase.add_metric([namespace, name, candidate], float(pod.phase == candidate))
        yield from (ready, restarts, phase)


class ZoneCollector(Collector):
    """Pods ready in each zone, by service, next to the replicas the spread placed there: a lost
    zone shows as its ready pods falling to 0 while the other zones' hold. Beside them the pods
    that callers have ejected from their pools: a zone cut off, or routed around at the edge."""

    def __init__(self, pods: Iterable[SimPod], replicas: Mapping[tuple[str, str, str], int],
                 ejected: Set[PodRef]) -> None:
        self.pods = list(pods)
        self.replicas = dict(replicas)
        self.ejected = ejected

    def collect(self) -> Iterator[Metric]:
        labels = ["zone", "namespace", "service"]
        placed = GaugeMetricFamily(
            "platform_zone_replicas", "Replicas the topology spread places in the zone, by service.", labels=labels
        )
        ready = GaugeMetricFamily("platform_zone_pods_ready", "Pods ready to serve in the zone, by service.", labels=labels)
        ejected = GaugeMetricFamily(
            "platform_zone_endpoints_ejected",
            "Pods of the zone, by service, that at least one caller (the edge or a sidecar) has ejected from its pool.",
            labels=labels,
        )
        # Every placed (zone, service) has a series from the start, so a lost zone reads 0, not no data.
        counts = dict.fromkeys(self.replicas, 0)
        ejections = dict.fromkeys(self.replicas, 0)
        for pod in self.pods:
            key = (pod.zone, pod.spec.namespace, pod.spec.name)
            counts[key] = counts.get(key, 0) + int(pod.ready)
            ejections[key] = ejections.get(key, 0) + int(pod.ref in self.ejected)
        for key in sorted(counts):
            placed.add_metric(list(key), self.replicas.get(key, 0))
            ready.add_metric(list(key), counts[key])
            ejected.add_metric(list(key), ejections[key])
        yield from (placed, ready, ejected)


def kube_state_metrics(pods: Iterable[SimPod], zone_replicas: Mapping[tuple[str, str, str], int],
                       ejected: Set[PodRef]) -> bytes:
    """kube-state-metrics' series, and the platform's zone gauges beside them (same scrape job)."""
    pods = list(pods)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KubeStateCollector(pods))
    registry.register(ZoneCollector(pods, zone_replicas, ejected))
    return generate_latest(registry)


def scrape_targets(pods: Iterable[SimPod], address: str) -> list[dict]:
    """Prometheus file_sd groups: one target per started pod, all on the sandbox's metrics server."""
    return [
        {
            "targets": [address],
            "labels": {
                "__metrics_path__": f"/pods/{pod.spec.namespace}/{pod.name}/metrics",
                "instance": f"{pod.ip}:{POD_PORT}",
                "namespace": pod.spec.namespace,
                "pod": pod.name,
                "service": pod.spec.name,
            },
        }
        for pod in pods
        if pod.phase != "Pending"
    ]


def write_targets(path: Path, groups: list[dict]) -> None:
    """Replace the file atomically: Prometheus must never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps(groups, indent=1))
    os.replace(partial, path)
