"""Stored objects (leases, chaos objects): resourceVersions, uids, preconditions and finalizers."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.kubeapi.errors import already_exists, conflict, forbidden, not_found, unprocessable
from sandbox.kubeapi.meta import new_uid, rfc3339
from sandbox.kubeapi.resources import Resource

_SERVER_FIELDS = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


@dataclass
class _Entry:
    obj: dict
    created: float  # sub-second creation time, for Chaos Mesh's duration arithmetic


def _meta(obj: dict) -> dict:
    return obj.setdefault("metadata", {})


def _without_rv(obj: dict) -> dict:
    stripped = copy.deepcopy(obj)
    stripped.get("metadata", {}).pop("resourceVersion", None)
    return stripped


def _spec_part(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class ObjectStore:
    """One etcd-like table shared by all stored resources; one resourceVersion counter for the server.

    Methods return deep copies, so callers can never change a stored object behind the store's back.
    A lock guards it because the platform or a test may read from another thread.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._revision = 0
        self._objects: dict[tuple[str, str, str], _Entry] = {}

    def next_rv(self) -> str:
        with self._lock:
            self._revision += 1
            return str(self._revision)

    def current_rv(self) -> str:
        with self._lock:
            return str(self._revision)

    def get(self, resource: Resource, namespace: str, name: str) -> dict:
        with self._lock:
            entry = self._objects.get((resource.plural, namespace, name))
            if entry is None:
                raise not_found(resource.plural, resource.group, name)
            return copy.deepcopy(entry.obj)

    def exists(self, resource: Resource, namespace: str, name: str) -> bool:
        with self._lock:
            return (resource.plural, namespace, name) in self._objects

    def created_at(self, resource: Resource, namespace: str, name: str) -> float | None:
        with self._lock:
            entry = self._objects.get((resource.plural, namespace, name))
            return entry.created if entry else None

    def list(self, resource: Resource, namespace: str | None = None) -> list[dict]:
        with self._lock:
            return [
                copy.deepcopy(entry.obj)
                for (plural, ns, _), entry in sorted(self._objects.items())
                if plural == resource.plural and (namespace is None or ns == namespace)
            ]

    def prepare_new(self, resource: Resource, obj: dict) -> dict:
        """The object as a create would store it (server fields filled), without storing it."""
        prepared = copy.deepcopy(obj)
        meta = _meta(prepared)
        for key in (*_SERVER_FIELDS, "resourceVersion"):
            meta.pop(key, None)
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = rfc3339(self._clock())
        if resource.spec is not None:
            meta["generation"] = 1
        return prepared

    def create(self, resource: Resource, obj: dict) -> dict:
        meta = _meta(obj)
        key = (resource.plural, meta["namespace"], meta["name"])
        with self._lock:
            if key in self._objects:
                raise already_exists(resource.plural, resource.group, meta["name"])
            stored = copy.deepcopy(obj)
            _meta(stored)["resourceVersion"] = self.next_rv()
            self._objects[key] = _Entry(stored, self._clock())
            return copy.deepcopy(stored)

    def check_preconditions(self, resource: Resource, current: dict, rv: str | None, uid: str | None) -> None:
        meta = current["metadata"]
        if uid and uid != meta["uid"]:
            why = f"Precondition failed: UID in precondition: {uid}, UID in object meta: {meta['uid']}"
            raise conflict(resource.plural, resource.group, meta["name"], why)
        if rv and rv != meta["resourceVersion"]:
            raise conflict(resource.plural, resource.group, meta["name"])

    def update(self, resource: Resource, obj: dict, *, dry_run: bool = False) -> dict:
        """Replace the stored object; metadata.resourceVersion, when given, must be the current one.

        Server-managed metadata is kept from the stored object. An object being deleted that loses
        its last finalizer is removed, as the API server's garbage collection does.
        """
        meta = _meta(obj)
        key = (resource.plural, meta["namespace"], meta["name"])
        with self._lock:
            entry = self._objects.get(key)
            if entry is None:
                raise not_found(resource.plural, resource.group, meta["name"])
            current = entry.obj
            self.check_preconditions(resource, current, meta.get("resourceVersion"), meta.get("uid"))
            new = copy.deepcopy(obj)
            new_meta = _meta(new)
            for field in _SERVER_FIELDS:
                if field in current["metadata"]:
                    new_meta[field] = current["metadata"][field]
                else:
                    new_meta.pop(field, None)
            deleting = "deletionTimestamp" in current["metadata"]
            added = set(new_meta.get("finalizers") or []) - set(current["metadata"].get("finalizers") or [])
            if deleting and added:
                detail = "no new finalizers can be added if the object is being deleted"
                error = forbidden("metadata.finalizers", detail)
                raise unprocessable(resource.kind, resource.group, meta["name"], [error])
            if resource.spec is not None and _spec_part(new) != _spec_part(current):
                new_meta["generation"] = current["metadata"].get("generation", 1) + 1
            new_meta["resourceVersion"] = current["metadata"]["resourceVersion"]
            if new == current:
                return copy.deepcopy(current)  # a no-op write keeps its resourceVersion
            if dry_run:
                return new
            new_meta["resourceVersion"] = self.next_rv()
            if deleting and not new_meta.get("finalizers"):
                del self._objects[key]
            else:
                entry.obj = new
            return copy.deepcopy(new)

    def delete(
        self, resource: Resource, namespace: str, name: str, *, rv: str | None = None, uid: str | None = None,
        dry_run: bool = False,
    ) -> tuple[dict, bool]:
        """Delete, or mark for deletion while finalizers remain. Returns (object, gone)."""
        key = (resource.plural, namespace, name)
        with self._lock:
            entry = self._objects.get(key)
            if entry is None:
                raise not_found(resource.plural, resource.group, name)
            self.check_preconditions(resource, entry.obj, rv, uid)
            current = copy.deepcopy(entry.obj)
            if dry_run:
                return current, False
            if not current["metadata"].get("finalizers"):
                del self._objects[key]
                return current, True
            if "deletionTimestamp" not in current["metadata"]:
                current["metadata"]["deletionTimestamp"] = rfc3339(self._clock())
                current["metadata"]["deletionGracePeriodSeconds"] = 0
                current["metadata"]["resourceVersion"] = self.next_rv()
                entry.obj = copy.deepcopy(current)
            return current, False
