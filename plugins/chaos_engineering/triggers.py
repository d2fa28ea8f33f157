"""Triggers that watch thresholds while a fault is active (kill on breach) and while it recovers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.policy import Threshold
from chaos_engineering.safety import Breach, check, failed_reads_breach


# Airflow 3.3 fails a deferred task whose trigger fires before the scheduler has drained the
# executor's "success" for the deferring attempt (apache/airflow#71580, #72716; fix pending in
# #71579). Events therefore wait until this long after the trigger started. Only the event
# waits: a breach's deletion happens at once, and the recorded times are the observed ones.
MIN_EVENT_DELAY_S = 10.0


async def _not_before(started: float) -> None:
    await asyncio.sleep(max(0.0, started + MIN_EVENT_DELAY_S - time.monotonic()))


#: Chaos Mesh actions that act once: the object stays `Run` after the kill, never `AllRecovered`.
ONE_SHOT_ACTIONS = {("PodChaos", "pod-kill"), ("PodChaos", "container-kill")}


def _fault_state(obj: dict[str, Any] | None, *, one_shot: bool = False, ends_at: float | None = None) -> str:
    """`gone`, `deleting`, `ended` (Chaos Mesh stopped it: duration over, all recovered; or a
    one-shot fault whose duration has passed by our clock) or `active`."""
    if obj is None:
        return "gone"
    if obj.get("metadata", {}).get("deletionTimestamp"):
        return "deleting"
    status = obj.get("status") or {}
    phase = (status.get("experiment") or {}).get("desiredPhase")
    recovered = any(c.get("type") == "AllRecovered" and c.get("status") == "True" for c in status.get("conditions") or [])
    if phase == "Stop" and recovered:
        return "ended"
    return "ended" if one_shot and ends_at is not None and time.time() >= ends_at else "active"


class _Readings:
    """Reads every threshold once per check and counts consecutive failed reads per metric."""

    def __init__(self, prometheus_conn_id: str, thresholds: dict[str, Threshold], max_failed_reads: int) -> None:
        from chaos_engineering.hooks.prometheus import PrometheusHook

        self.hook = PrometheusHook(prometheus_conn_id)
        self.thresholds = thresholds
        self.max_failed_reads = max_failed_reads
        self.failures = dict.fromkeys(thresholds, 0)
        self.last: dict[str, float | None] = dict.fromkeys(thresholds)

    def _read(self, name: str) -> tuple[float | None, str]:
        try:
            value = self.hook.query(self.thresholds[name].query)
        except Exception as exc:  # any failure to read is a failed read, never a pass
            return None, str(exc)
        return value, "" if value is not None else "no data"

    async def read_all(self) -> dict[str, tuple[float | None, str]]:
        names = list(self.thresholds)
        results = await asyncio.gather(*(asyncio.to_thread(self._read, n) for n in names))
        readings = dict(zip(names, results))
        for name, (value, _) in readings.items():
            self.failures[name] = 0 if value is not None else self.failures[name] + 1
            self.last[name] = value
        return readings

    def judge(self, readings: dict[str, tuple[float | None, str]], baseline: dict[str, float | None], at: float) -> Breach | None:
        """The first breach: a threshold crossed, or a metric unreadable N checks in a row."""
        for name, (value, reason) in readings.items():
            if value is None:
                if self.failures[name] >= self.max_failed_reads:
                    return failed_reads_breach(name, self.failures[name], at, reason)
                continue
            breach = check(name, self.thresholds[name], value, baseline.get(name), at)
            if breach is not None:
                return breach
        return None


class FaultMonitorTrigger(BaseTrigger):
    """Checks every threshold against the baseline each `interval_s` while the fault is active.

    On a breach, or on `max_failed_reads` unreadable checks in a row, it deletes the Chaos Mesh
    object itself, here in the triggerer, before any worker slot is involved: that is where the
    kill is fastest. The delete is idempotent (a trigger may run twice after a triggerer restart;
    deleting an object already gone is a no-op). It yields one event:
    `completed` (Chaos Mesh ended the fault), `breach` (with the breach and the removal time),
    `gone` (someone else removed it: emergency stop or watchdog).
    """

    def __init__(
        self,
        *,
        prometheus_conn_id: str,
        kubernetes_conn_id: str,
        fault: dict[str, str],
        thresholds: dict[str, dict[str, Any]],
        baseline: dict[str, float | None],
        interval_s: float,
        max_failed_reads: int,
        ends_at: float | None = None,
    ) -> None:
        super().__init__()
        self.prometheus_conn_id = prometheus_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id
        self.fault = fault
        self.ends_at = ends_at
        self.thresholds = thresholds
        self.baseline = baseline
        self.interval_s = interval_s
        self.max_failed_reads = max_failed_reads

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "prometheus_conn_id": self.prometheus_conn_id,
                "kubernetes_conn_id": self.kubernetes_conn_id,
                "fault": self.fault,
                "thresholds": self.thresholds,
                "baseline": self.baseline,
                "interval_s": self.interval_s,
                "max_failed_reads": self.max_failed_reads,
                "ends_at": self.ends_at,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from chaos_engineering.heartbeat import Heartbeat, default_holder
        from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook

        cluster = ChaosMeshHook(self.kubernetes_conn_id)
        kind, name, namespace = ChaosKind(self.fault["kind"]), self.fault["name"], self.fault["namespace"]
        one_shot = (kind.value, self.fault.get("action")) in ONE_SHOT_ACTIONS
        readings = _Readings(self.prometheus_conn_id, {k: Threshold(**v) for k, v in self.thresholds.items()}, self.max_failed_reads)
        cluster_failures = 0
        checks = 0
        first = time.monotonic()
        heartbeat = Heartbeat(cluster, kind, name, namespace)
        holder = default_holder()
        while True:
            started = time.monotonic()
            try:
                obj = await asyncio.to_thread(cluster.get, kind, name, namespace)
                state = _fault_state(obj, one_shot=one_shot, ends_at=self.ends_at)
                cluster_failures = 0
            except Exception as exc:
                # The API server did not answer: keep judging metrics; a breach still tries to delete.
                cluster_failures += 1
                state = "unknown"
                self.log.warning("cannot read fault %s/%s (%d in a row): %s", namespace, name, cluster_failures, exc)
            if state in ("gone", "deleting", "ended"):
                await self._end_heartbeat(heartbeat)
                await _not_before(first)
                yield TriggerEvent({"status": "completed" if state == "ended" else "gone", "state": state, "checks": checks, "at": time.time()})
                return
            # The dead man's switch: this renewal is the proof that someone watches the fault.
            # When the triggerer (or all of Airflow) dies, renewals stop and the watchdog
            # (`chaosctl watchdog`) removes the fault after its grace period. Idempotent (create
            # or replace one Lease per fault), so a second copy of this trigger does no harm.
            await self._renew_heartbeat(heartbeat, holder)
            current = await readings.read_all()
            checks += 1
            now = time.time()
            breach = readings.judge(current, self.baseline, now)
            if breach is None and cluster_failures >= self.max_failed_reads:
                breach = failed_reads_breach("fault-state", cluster_failures, now, "Kubernetes API unreachable")
            if breach is not None:
                removed, error = await self._remove(cluster, kind, name, namespace)
                await self._end_heartbeat(heartbeat)
                await _not_before(first)
                yield TriggerEvent(
                    {
                        "status": "breach",
                        "breach": breach.as_dict(),
                        "removal_requested_at": removed,
                        "removal_error": error,
                        "checks": checks,
                        "values": readings.last,
                    }
                )
                return
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    async def _renew_heartbeat(self, heartbeat: Any, holder: str) -> None:
        try:
            await asyncio.to_thread(heartbeat.renew, holder, self.interval_s)
        except Exception as exc:  # monitoring goes on; a stale heartbeat makes the watchdog remove the fault
            self.log.warning("cannot renew heartbeat %s: %s", heartbeat.name, exc)

    async def _end_heartbeat(self, heartbeat: Any) -> None:
        """Best effort: the fault is over for this monitor. Not on cancellation (a triggerer
        handing the trigger to another one): there the Lease must stay until the next renewal."""
        try:
            await asyncio.to_thread(heartbeat.delete)
        except Exception as exc:
            self.log.warning("cannot delete heartbeat %s: %s", heartbeat.name, exc)

    async def _remove(self, cluster: Any, kind: ChaosKind, name: str, namespace: str) -> tuple[float | None, str]:
        try:
            await asyncio.to_thread(cluster.delete, kind, name, namespace)
        except Exception as exc:
            # The teardown task deletes again; the sensor fails either way.
            self.log.error("could not delete %s/%s on breach: %s", namespace, name, exc)
            return None, str(exc)
        self.log.warning("breach: deleted %s %s/%s", kind.value, namespace, name)
        return time.time(), ""


class RecoveryTrigger(BaseTrigger):
    """Waits until every named threshold holds against the baseline again (and, if asked, the
    target pods are all ready), or the stage's deadline passes. Read-only: no side effect."""

    def __init__(
        self,
        *,
        prometheus_conn_id: str,
        kubernetes_conn_id: str,
        thresholds: dict[str, dict[str, Any]],
        baseline: dict[str, float | None],
        interval_s: float,
        deadline_ts: float,
        targets: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__()
        self.prometheus_conn_id = prometheus_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id
        self.thresholds = thresholds
        self.baseline = baseline
        self.interval_s = interval_s
        self.deadline_ts = deadline_ts
        self.targets = targets or []

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "prometheus_conn_id": self.prometheus_conn_id,
                "kubernetes_conn_id": self.kubernetes_conn_id,
                "thresholds": self.thresholds,
                "baseline": self.baseline,
                "interval_s": self.interval_s,
                "deadline_ts": self.deadline_ts,
                "targets": self.targets,
            },
        )

    def _targets_ready(self) -> tuple[bool, str]:
        from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
        from chaos_engineering.targets import TargetPod, pod_ready

        cluster = ChaosMeshHook(self.kubernetes_conn_id)
        not_ready: list[str] = []
        for target in self.targets:
            pods = cluster.list_pods(target["namespace"], label_selector=target.get("label_selector", ""))
            if not pods:
                not_ready.append(f"{target['namespace']}/{target.get('label_selector', '')}: no pod")
            not_ready += [TargetPod(p.metadata.namespace, p.metadata.name, {}, False).ref for p in pods if not pod_ready(p)]
        return not not_ready, ", ".join(not_ready)

    async def check_once(self, readings: _Readings | None = None) -> tuple[list[str], dict[str, float | None]]:
        """What is not back yet (empty when recovered), and the values read."""
        readings = readings or self._readings()
        current = await readings.read_all()
        now = time.time()
        pending = [f"{n}: {reason}" for n, (value, reason) in current.items() if value is None]
        pending += [
            b.message
            for n, (value, _) in current.items()
            if value is not None and (b := check(n, readings.thresholds[n], value, self.baseline.get(n), now)) is not None
        ]
        if self.targets:
            try:
                ready, detail = await asyncio.to_thread(self._targets_ready)
            except Exception as exc:
                ready, detail = False, f"cannot list target pods: {exc}"
            if not ready:
                pending.append(f"targets not ready: {detail}")
        return pending, dict(readings.last)

    def _readings(self) -> _Readings:
        return _Readings(self.prometheus_conn_id, {k: Threshold(**v) for k, v in self.thresholds.items()}, max_failed_reads=10**9)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        readings = self._readings()
        checks = 0
        first = time.monotonic()
        while True:
            started = time.monotonic()
            pending, values = await self.check_once(readings)
            checks += 1
            now = time.time()
            if not pending or now >= self.deadline_ts:
                await _not_before(first)
                status = "recovered" if not pending else "deadline_missed"
                yield TriggerEvent({"status": status, "at": now, "checks": checks, "values": values, "pending": pending})
                return
            await asyncio.sleep(max(0.0, min(self.interval_s - (time.monotonic() - started), self.deadline_ts - time.time())))
