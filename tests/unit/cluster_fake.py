"""An in-memory stand-in for ChaosMeshHook's verbs, for the watchdog's and the stop's pure-logic tests."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

from chaos_engineering.halt import ANNOTATION_HALTED, ANNOTATION_HALTED_AT, ANNOTATION_HALTED_BY, ANNOTATION_HALTED_REASON, HALT_NAME
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.render import LABEL_MANAGED_BY, MANAGED_BY

NAMESPACE = "chaos-engineering"
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def fault(name: str, *, created_s_ago: float = 100, deleting_s_ago: float | None = None, annotations: dict | None = None,
          owned: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}",
                            "creationTimestamp": (NOW - dt.timedelta(seconds=created_s_ago)).isoformat().replace("+00:00", "Z"),
                            "labels": {LABEL_MANAGED_BY: MANAGED_BY} if owned else {}, "annotations": dict(annotations or {})}
    if deleting_s_ago is not None:
        meta["deletionTimestamp"] = (NOW - dt.timedelta(seconds=deleting_s_ago)).isoformat().replace("+00:00", "Z")
    return {"kind": "NetworkChaos", "metadata": meta, "spec": {}, "status": {}}


def halt_lease(by: str = "alice", at: str = "2026-03-01T11:59:00+00:00", why: str = "payments look wrong") -> V1Lease:
    annotations = {ANNOTATION_HALTED: "true", ANNOTATION_HALTED_BY: by, ANNOTATION_HALTED_AT: at, ANNOTATION_HALTED_REASON: why}
    return V1Lease(metadata=V1ObjectMeta(name=HALT_NAME, namespace=NAMESPACE, annotations=annotations, resource_version="1"),
                   spec=V1LeaseSpec(holder_identity=by))


class FakeCluster:
    """The verbs the watchdog and the stop call. `refuse` names verbs that answer 403 every time."""

    def __init__(self, objects: list[dict] = (), *, halt: V1Lease | None = None, refuse: tuple[str, ...] = (),
                 recovers: bool = False) -> None:
        self.objects = {o["metadata"]["name"]: copy.deepcopy(o) for o in objects}
        self.leases: dict[tuple[str, str], V1Lease] = {(NAMESPACE, HALT_NAME): halt} if halt else {}
        self.refuse = refuse
        # True: a deleted object goes at once (Chaos Mesh recovered it); False: its finalizer holds it.
        self.recovers = recovers
        self.calls: list[tuple] = []

    def _check(self, verb: str) -> None:
        if verb in self.refuse:
            raise ApiException(status=403, reason="Forbidden")

    def list(self, kind, namespace=None, label_selector=None) -> list[dict]:
        self._check("list")
        return [copy.deepcopy(o) for o in self.objects.values()
                if o["kind"] == kind.value and o["metadata"]["labels"].get(LABEL_MANAGED_BY) == MANAGED_BY]

    def get(self, kind, name, namespace) -> dict | None:
        self._check("get")
        return copy.deepcopy(self.objects.get(name))

    def delete(self, kind, name, namespace) -> bool:
        self._check("delete")
        self.calls.append(("delete", name))
        obj = self.objects.get(name)
        if obj is None:
            return False
        obj["metadata"].setdefault("deletionTimestamp", NOW.isoformat())
        if self.recovers:
            del self.objects[name]
        return True

    def patch(self, kind, name, namespace, body) -> dict:
        self._check("patch")
        self.calls.append(("patch", name, body))
        obj = self.objects.get(name)
        if obj is None:
            raise ApiException(status=404, reason="NotFound")
        obj["metadata"]["annotations"] |= body["metadata"].get("annotations") or {}
        return copy.deepcopy(obj)

    def get_lease(self, name, namespace) -> V1Lease | None:
        self._check("get_lease")
        return self.leases.get((namespace, name))

    def create_lease(self, lease: V1Lease) -> V1Lease:
        self._check("create_lease")
        lease.metadata.resource_version = "1"
        self.leases[(lease.metadata.namespace, lease.metadata.name)] = lease
        return lease

    def replace_lease(self, lease: V1Lease) -> V1Lease:
        self._check("replace_lease")
        return self.create_lease(lease)

    def delete_lease(self, name, namespace, resource_version) -> bool:
        self._check("delete_lease")
        return self.leases.pop((namespace, name), None) is not None

    # The hook's own logic over the verbs above (read again, judge again, on a 409).
    delete_lease_while = ChaosMeshHook.delete_lease_while
    write_lease = ChaosMeshHook.write_lease
