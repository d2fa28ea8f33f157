"""The emulated Chaos Mesh controller: select once, inject, recover on pause/expiry/delete, report status."""

# It follows Chaos Mesh's common controllers: desiredPhase (Run/Stop from deletion, one-shot,
# duration since creation, pause), records (pods selected once, each record Injected/NotInjected
# with counts and events), conditions (Selected, AllInjected, AllRecovered, Paused), the
# records finalizer and its forced clean-up (annotation `cleanFinalizer: forced`). Platform calls run in a worker thread so the API answers while the platform
# works (and so a platform that calls back into the API cannot deadlock it).

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from sandbox.kubeapi.errors import ApiError
from sandbox.kubeapi.meta import rfc3339
from sandbox.kubeapi.resources import (
    CHAOS_KINDS,
    CLEAN_FINALIZER_ANNOTATION,
    CLEAN_FINALIZER_FORCED,
    FAIL_RECOVERY_ANNOTATION,
    PAUSE_ANNOTATION,
    RECORDS_FINALIZER,
    Resource,
)
from sandbox.kubeapi.selection import apply_mode, select_pods
from sandbox.kubeapi.store import ObjectStore
from sandbox.kubeapi.translate import to_effect
from sandbox.kubeapi.units import go_duration_seconds
from sandbox.platform.effects import PlatformControl, PodRef

log = logging.getLogger(__name__)

MAX_EVENTS = 10  # Chaos Mesh's default controller MaxEvents per record
NO_TARGET = "Failed to select targets: no target has been selected"
RECOVERY_FAILED = f"recovery failed: the sandbox's {FAIL_RECOVERY_ANNOTATION} annotation is set"


def fault_id(resource: Resource, obj: dict) -> str:
    meta = obj["metadata"]
    return f"{resource.plural}/{meta['namespace']}/{meta['name']}/{meta['uid']}"


def is_one_shot(resource: Resource, spec: dict) -> bool:
    return resource.kind == "PodChaos" and spec.get("action") in ("pod-kill", "container-kill")


def is_paused(obj: dict) -> bool:
    return (obj["metadata"].get("annotations") or {}).get(PAUSE_ANNOTATION) == "true"


def is_forced(obj: dict) -> bool:
    """Chaos Mesh's forced finalizer clean-up: honoured only once the object is being deleted."""
    meta = obj["metadata"]
    return "deletionTimestamp" in meta and (meta.get("annotations") or {}).get(CLEAN_FINALIZER_ANNOTATION) == CLEAN_FINALIZER_FORCED


def recovery_fails(obj: dict) -> bool:
    return (obj["metadata"].get("annotations") or {}).get(FAIL_RECOVERY_ANNOTATION) == "true"


def _conditions(records: list[dict] | None, paused: bool, selection_failure: str) -> list[dict]:
    def condition(kind: str, ok: bool, reason: str = "") -> dict:
        entry = {"type": kind, "status": "True" if ok else "False"}
        if reason:
            entry["reason"] = reason
        return entry

    selected = records is not None
    return [
        condition("Selected", selected, "" if selected else selection_failure),
        condition("AllInjected", selected and all(r["phase"] == "Injected" for r in records)),
        condition("AllRecovered", selected and all(r["phase"] == "NotInjected" for r in records)),
        condition("Paused", paused),
    ]


class ChaosController:
    def __init__(
        self,
        store: ObjectStore,
        platform: PlatformControl,
        *,
        clock: Callable[[], float],
        rng: random.Random,
        interval: float = 0.2,
    ) -> None:
        self._store = store
        self._platform = platform
        self._clock = clock
        self._rng = rng
        self._interval = interval
        self._seen: set[str] = set()  # uids whose one selection attempt has been made
        self._wake: asyncio.Event | None = None

    def poke(self, uid: str | None = None, reselect: bool = False) -> None:
        """Reconcile soon; `reselect` retries the selection of an object that selected nothing."""
        if reselect and uid:
            self._seen.discard(uid)
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        self._wake = asyncio.Event()
        while True:
            try:
                await self.reconcile_all()
            except Exception:  # one bad object or platform hiccup must not stop the controller
                log.exception("chaos controller reconcile failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            self._wake.clear()

    async def reconcile_all(self) -> None:
        for resource in CHAOS_KINDS.values():
            for obj in self._store.list(resource):
                await self._reconcile(resource, obj)

    def _desired_phase(self, resource: Resource, obj: dict) -> str:
        meta, spec = obj["metadata"], obj["spec"]
        if "deletionTimestamp" in meta:
            return "Stop"
        if is_one_shot(resource, spec):
            return "Run"
        # Chaos Mesh counts the duration from the object's creation, not from the injection.
        created = self._store.created_at(resource, meta["namespace"], meta["name"])
        duration = go_duration_seconds(spec["duration"]) if spec.get("duration") else None
        if duration is not None and created is not None and created + duration <= self._clock():
            return "Stop"
        return "Stop" if is_paused(obj) else "Run"

    async def _select(self, resource: Resource, obj: dict) -> tuple[list[dict] | None, str]:
        spec = obj["spec"]
        if spec.get("remoteCluster"):
            return None, f"Failed to select targets: remote cluster {spec['remoteCluster']} is not registered"
        pods = await asyncio.to_thread(self._platform.pods)
        selectors = [(".", spec["selector"], spec["mode"], spec.get("value"))]
        target = spec.get("target") if resource.kind == "NetworkChaos" else None
        if target:
            selectors.append((".Target", target["selector"], target["mode"], target.get("value")))
        records = []
        for key, selector, mode, value in selectors:
            chosen = apply_mode(select_pods(selector, pods), mode, value, self._rng)
            if not chosen:
                return None, NO_TARGET
            records += [
                {"id": f"{p.namespace}/{p.name}", "selectorKey": key, "phase": "NotInjected",
                 "injectedCount": 0, "recoveredCount": 0}
                for p in chosen
            ]
        return records, ""

    def _event(self, record: dict, operation: str, ok: bool, message: str = "") -> None:
        event = {"operation": operation, "type": "Succeeded" if ok else "Failed", "timestamp": rfc3339(self._clock())}
        if message:
            event["message"] = message
        events = record.setdefault("events", [])
        last = events[-1] if events else None
        # A failure that repeats every tick is one event, not a flood.
        if not ok and last and last.get("type") == "Failed" and last.get("message") == message:
            return
        events.append(event)
        del events[:-MAX_EVENTS]

    async def _apply(self, resource: Resource, obj: dict, records: list[dict]) -> None:
        present = {(p.namespace, p.name) for p in await asyncio.to_thread(self._platform.pods)}

        def refs(key: str) -> tuple[PodRef, ...]:
            return tuple(
                PodRef(*r["id"].split("/", 1)) for r in records
                if r["selectorKey"] == key and tuple(r["id"].split("/", 1)) in present
            )

        sources = refs(".")
        peers = refs(".Target") if obj["spec"].get("target") and resource.kind == "NetworkChaos" else None
        missing = [r for r in records if tuple(r["id"].split("/", 1)) not in present]
        for record in missing:
            self._event(record, "Apply", False, f'pods "{record["id"].split("/", 1)[1]}" not found')
        if not sources:
            return
        try:
            effect = to_effect(resource.kind, obj["spec"], sources, peers)
            await asyncio.to_thread(self._platform.apply, fault_id(resource, obj), effect)
        except Exception as exc:
            for record in records:
                if record["phase"] != "Injected":
                    self._event(record, "Apply", False, str(exc))
            return
        missing_ids = {id(r) for r in missing}
        for record in records:
            if id(record) not in missing_ids and record["phase"] != "Injected":
                record["phase"] = "Injected"
                record["injectedCount"] += 1
                self._event(record, "Apply", True)

    async def _recover(self, resource: Resource, obj: dict, records: list[dict]) -> None:
        if recovery_fails(obj):
            for record in records:
                if record["phase"] != "NotInjected":
                    self._event(record, "Recover", False, RECOVERY_FAILED)
            return
        try:
            await asyncio.to_thread(self._platform.clear, fault_id(resource, obj))
        except Exception as exc:
            for record in records:
                if record["phase"] != "NotInjected":
                    self._event(record, "Recover", False, str(exc))
            return
        for record in records:
            if record["phase"] != "NotInjected":
                record["phase"] = "NotInjected"
                record["recoveredCount"] += 1
                self._event(record, "Recover", True)

    async def _reconcile(self, resource: Resource, obj: dict) -> None:
        meta = obj["metadata"]
        uid = meta["uid"]
        experiment = (obj.get("status") or {}).get("experiment") or {}
        records = experiment.get("containerRecords")
        failure = next(
            (c.get("reason", "") for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Selected"),
            "",
        )
        desired = self._desired_phase(resource, obj)
        announce = desired != experiment.get("desiredPhase")
        if records is None and uid not in self._seen and "deletionTimestamp" not in meta:
            self._seen.add(uid)
            records, failure = await self._select(resource, obj)
            announce = True

        def status() -> dict:
            experiment = {"desiredPhase": desired}
            if records is not None:
                experiment["containerRecords"] = records
            return {"conditions": _conditions(records, is_paused(obj), failure), "experiment": experiment}

        # As in Chaos Mesh, the new desiredPhase (and the selection) is visible before the records
        # controller acts on it; an object that vanished meanwhile gets nothing injected.
        if announce and not self._commit(resource, meta["namespace"], meta["name"], uid, status()):
            return
        if records is not None:
            if desired == "Run" and any(r["phase"] != "Injected" for r in records):
                await self._apply(resource, obj, records)
            elif desired == "Stop" and any(r["phase"] != "NotInjected" for r in records):
                await self._recover(resource, obj, records)
        self._commit(resource, meta["namespace"], meta["name"], uid, status(), after_recovery=True)

    def _commit(self, resource: Resource, namespace: str, name: str, uid: str, status: dict, *, after_recovery: bool = False) -> bool:
        """Write status (and drop the finalizer once recovered) on the object as it is now.

        A deleting object annotated `cleanFinalizer: forced` loses every finalizer, recovered or
        not, as in Chaos Mesh; here only after this pass's recovery attempt, so a recovery that
        can succeed does (a fault that cannot be recovered stays on the platform, as on a cluster).
        False when the object is no longer there (or is another object of the same name).
        """
        try:
            current = self._store.get(resource, namespace, name)
        except ApiError:
            self._seen.discard(uid)
            return False
        if current["metadata"]["uid"] != uid:
            return False
        current["status"] = status
        records = status["experiment"].get("containerRecords") or []
        meta = current["metadata"]
        if after_recovery and is_forced(current):
            meta["finalizers"] = []
            self._seen.discard(uid)
        elif "deletionTimestamp" in meta and all(r["phase"] == "NotInjected" for r in records):
            meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != RECORDS_FINALIZER]
            if not meta["finalizers"]:
                self._seen.discard(uid)
        meta.pop("resourceVersion", None)
        self._store.update(resource, current)
        return True
