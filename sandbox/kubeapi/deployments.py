"""The platform's stateless services presented as read-only apps/v1 Deployments, counted from their pods."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from sandbox.kubeapi.meta import rfc3339
from sandbox.platform.effects import PodInfo
from sandbox.platform.topology import SERVICES, ServiceSpec

# The database is a StatefulSet on a real cluster (stable pod names): it is no Deployment.
DEPLOYED = tuple(spec for spec in SERVICES if not spec.stateful)


def _condition(kind: str, ok: bool, reason: str, message: str, since: str) -> dict:
    return {
        "type": kind, "status": "True" if ok else "False", "lastUpdateTime": since,
        "lastTransitionTime": since, "reason": reason, "message": message,
    }


class DeploymentView:
    """Renders a service and its current pods as a Deployment. Its uid and creation time are fixed
    the first time it is seen (before its oldest pod, as on a cluster); its resourceVersion moves
    whenever its counts change."""

    def __init__(self, next_rv: Callable[[], str]) -> None:
        self._next_rv = next_rv
        self._lock = threading.Lock()
        self._first_seen: dict[str, tuple[str, str]] = {}
        self._versions: dict[str, tuple[tuple, str]] = {}

    def _identity(self, spec: ServiceSpec, pods: list[PodInfo], fallback: float) -> tuple[str, str]:
        with self._lock:
            if spec.name not in self._first_seen:
                created = min((p.created for p in pods), default=fallback)
                uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox/deployments/{spec.namespace}/{spec.name}"))
                self._first_seen[spec.name] = (uid, rfc3339(created))
            return self._first_seen[spec.name]

    def _resource_version(self, name: str, counts: tuple) -> str:
        with self._lock:
            known = self._versions.get(name)
            if known is None or known[0] != counts:
                known = (counts, self._next_rv())
                self._versions[name] = known
            return known[1]

    def render_all(self, pods: list[PodInfo], now: float) -> list[dict]:
        """Every Deployment, sorted by namespace and name."""
        by_service: dict[str, list[PodInfo]] = {}
        for pod in pods:
            if pod.phase in ("Pending", "Running"):  # Failed/Succeeded pods no longer count
                by_service.setdefault(pod.service, []).append(pod)
        rendered = [self.render(spec, by_service.get(spec.name, []), now) for spec in DEPLOYED]
        return sorted(rendered, key=lambda d: (d["metadata"]["namespace"], d["metadata"]["name"]))

    def render(self, spec: ServiceSpec, pods: list[PodInfo], now: float) -> dict:
        uid, created = self._identity(spec, pods, now)
        ready = sum(1 for p in pods if p.ready)
        counts = (len(pods), ready)
        # maxUnavailable 25 %, rounded down, as the Deployment controller counts it
        available = ready >= spec.replicas - spec.replicas // 4
        status = {
            "observedGeneration": 1,
            "replicas": len(pods),
            "updatedReplicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [
                _condition("Available", available, "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                           "Deployment has minimum availability." if available else "Deployment does not have minimum availability.",
                           created),
                _condition("Progressing", True, "NewReplicaSetAvailable",
                           f'ReplicaSet "{spec.name}" has successfully progressed.', created),
            ],
        }
        if len(pods) > ready:
            status["unavailableReplicas"] = len(pods) - ready
        image = f"sandbox.local/booking-platform/{spec.name}:1.0"  # as the pods show it
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": spec.name,
                "namespace": spec.namespace,
                "uid": uid,
                "resourceVersion": self._resource_version(spec.name, counts),
                "generation": 1,
                "creationTimestamp": created,
                "labels": dict(spec.labels),
            },
            "spec": {
                "replicas": spec.replicas,
                "selector": {"matchLabels": {"app": spec.name}},
                "template": {
                    "metadata": {"labels": dict(spec.labels)},
                    "spec": {"containers": [{"name": spec.name, "image": image}]},
                },
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            },
            "status": status,
        }
