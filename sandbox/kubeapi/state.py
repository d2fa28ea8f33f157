"""What the routes share: the platform, the object store, the controller, the pod view, the namespaces."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox.kubeapi.controller import ChaosController
from sandbox.kubeapi.errors import not_found
from sandbox.kubeapi.meta import new_uid, rfc3339
from sandbox.kubeapi.pods import PodView
from sandbox.kubeapi.store import ObjectStore
from sandbox.platform.effects import PlatformControl, PodInfo

# The namespaces of sandbox/CONTRACT.md; they exist from the start and cannot be changed.
NAMESPACE_NAMES = ("default", "kube-system", "chaos-engineering", "booking", "payments", "notifications")


def _namespace(name: str, created: float, resource_version: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "uid": new_uid(),
            "resourceVersion": resource_version,
            "creationTimestamp": rfc3339(created),
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


@dataclass
class ServerState:
    platform: PlatformControl
    store: ObjectStore
    controller: ChaosController
    pods: PodView
    clock: Callable[[], float]
    started: float
    namespaces: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in NAMESPACE_NAMES:
            self.namespaces[name] = _namespace(name, self.started, self.store.next_rv())

    def require_namespace(self, name: str) -> None:
        if name not in self.namespaces:
            raise not_found("namespaces", "", name)

    async def platform_pods(self) -> list[PodInfo]:
        # The platform may take its own locks; keep the event loop free while it answers.
        return await asyncio.to_thread(self.platform.pods)
