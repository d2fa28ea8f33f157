"""The platform's pods presented as core/v1 Pod objects, with resourceVersions that move when they change."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sandbox.kubeapi.meta import rfc3339
from sandbox.platform.effects import PodInfo


def _container_state(pod: PodInfo, started: str) -> dict:
    if pod.phase == "Running":
        return {"running": {"startedAt": started}}
    if pod.phase == "Pending":
        return {"waiting": {"reason": "ContainerCreating"}}
    if pod.phase == "Succeeded":
        return {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started}}
    return {"terminated": {"exitCode": 137, "reason": "Error", "startedAt": started}}


def _condition(kind: str, ok: bool, since: str) -> dict:
    return {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None, "lastTransitionTime": since}


class PodView:
    """Renders PodInfo as a Pod; a pod's resourceVersion changes whenever what a client sees changes."""

    def __init__(self, next_rv: Callable[[], str]) -> None:
        self._next_rv = next_rv
        self._lock = threading.Lock()
        self._versions: dict[str, tuple[tuple, str]] = {}

    def _resource_version(self, pod: PodInfo) -> str:
        fingerprint = (tuple(sorted(pod.labels.items())), pod.phase, pod.ready, pod.restart_count, pod.pod_ip)
        with self._lock:
            known = self._versions.get(pod.uid)
            if known is None or known[0] != fingerprint:
                known = (fingerprint, self._next_rv())
                self._versions[pod.uid] = known
            return known[1]

    def render(self, pod: PodInfo) -> dict:
        created = rfc3339(pod.created)
        running = pod.phase == "Running"
        image = f"sandbox.local/booking-platform/{pod.service}:1.0"
        statuses = [
            {
                "name": name,
                "image": image,
                "imageID": f"sandbox.local/booking-platform/{pod.service}@sha256:{pod.uid.replace('-', '')}",
                "containerID": f"containerd://{pod.uid.replace('-', '')}{i}",
                "ready": pod.ready,
                "started": running,
                # The platform counts restarts per pod; they belong to the main (first) container.
                "restartCount": pod.restart_count if i == 0 else 0,
                "state": _container_state(pod, created),
            }
            for i, name in enumerate(pod.containers)
        ]
        metadata = {
            "name": pod.name,
            "namespace": pod.namespace,
            "uid": pod.uid,
            "resourceVersion": self._resource_version(pod),
            "creationTimestamp": created,
            "labels": dict(pod.labels),
        }
        if not pod.name.startswith("database-"):
            metadata["generateName"] = f"{pod.service}-"
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {
                "containers": [{"name": name, "image": image} for name in pod.containers],
                "nodeName": pod.node_name,
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
            },
            "status": {
                "phase": pod.phase,
                "podIP": pod.pod_ip,
                "podIPs": [{"ip": pod.pod_ip}] if pod.pod_ip else [],
                "startTime": created,
                "conditions": [
                    _condition("PodScheduled", True, created),
                    _condition("Initialized", True, created),
                    _condition("ContainersReady", pod.ready, created),
                    _condition("Ready", pod.ready, created),
                ],
                "containerStatuses": statuses,
            },
        }
