"""Triggers that watch thresholds while a fault is active (kill on breach) and while it recovers."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from chaos_engineering.chaosmesh.constants import PAUSE_ANNOTATION, ChaosKind
from chaos_engineering.hooks.prometheus import DEFAULT_QUERY_TIMEOUT_S
from chaos_engineering.policy import Threshold, ThresholdRule
from chaos_engineering.safety import Breach, baseline_problem, bound_of, check, fail_safe_breach, failed_reads_breach


# Airflow 3.3 fails a deferred task whose trigger fires before the scheduler has drained the
# executor's "success" for the deferring attempt (apache/airflow#71580, #72716; fix pending in
# #71579). Events therefore wait until this long after the trigger started. Only the event
# waits: a breach's deletion happens at once, and the recorded times are the observed ones.
MIN_EVENT_DELAY_S = 10.0


async def _not_before(started: float) -> None:
    await asyncio.sleep(max(0.0, started + MIN_EVENT_DELAY_S - time.monotonic()))


#: Chaos Mesh actions that act once: the object stays `Run` after the kill, never `AllRecovered`.
ONE_SHOT_ACTIONS = {("PodChaos", "pod-kill"), ("PodChaos", "container-kill")}
#: The policy's `safety.deletion_timeout` default: how long Chaos Mesh may take to finish a
#: deletion before it counts as stuck (the monitor sensor passes the policy's value).
DELETION_TIMEOUT_S = 60.0


#: The states of a fault someone must watch (heartbeat, thresholds): a paused one comes back by itself.
WATCHED_STATES = frozenset({"active", "paused"})
#: Waits between attempts to remove a fault whose deletion failed: doubling, at most the last.
REMOVAL_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)


def removal_backoff_s(attempt: int) -> float:
    """The wait after the `attempt`-th failed removal (1-based)."""
    return REMOVAL_BACKOFF_S[min(attempt, len(REMOVAL_BACKOFF_S)) - 1]


def fault_state(obj: dict[str, Any] | None, *, one_shot: bool = False, ends_at: float | None = None) -> str:
    """`gone`, `deleting`, `paused`, `ended` (Chaos Mesh stopped it: duration over, all
    recovered; or a one-shot fault whose duration has passed by our clock) or `active`.

    `paused`: Chaos Mesh's pause annotation is set before the fault's end (`ends_at`, else its
    creation plus its duration; never, without one). Chaos Mesh recovers a paused fault and
    reports it stopped exactly as an ended one, but removing the annotation injects it again:
    it is watched (and its heartbeat kept) as an active fault, never taken as ended."""
    if obj is None:
        return "gone"
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return "deleting"
    ends_at = ends_at if ends_at is not None else planned_end(obj)
    if (meta.get("annotations") or {}).get(PAUSE_ANNOTATION) == "true" and (ends_at is None or time.time() < ends_at):
        return "paused"
    status = obj.get("status") or {}
    phase = (status.get("experiment") or {}).get("desiredPhase")
    recovered = any(c.get("type") == "AllRecovered" and c.get("status") == "True" for c in status.get("conditions") or [])
    if phase == "Stop" and recovered:
        return "ended"
    return "ended" if one_shot and ends_at is not None and time.time() >= ends_at else "active"


def planned_end(obj: dict[str, Any]) -> float | None:
    """When Chaos Mesh ends the fault by itself: its creation plus its duration (None: no duration)."""
    from chaos_engineering.chaosmesh.duration import parse_go_duration

    created, duration = created_at(obj), (obj.get("spec") or {}).get("duration")
    if created is None or not duration:
        return None
    try:
        return created + parse_go_duration(duration)
    except ValueError:
        return None


#: The threads that read the thresholds, apart from the event loop's default pool where the cluster
#: calls run: Kubernetes calls hanging until their deadline can never hold back a metrics read.
METRICS_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="chaos-metrics")


class _Readings:
    """Reads every threshold once per check and counts consecutive failed reads per metric."""

    def __init__(
        self, prometheus_conn_id: str, thresholds: dict[str, Threshold], max_failed_reads: int, query_timeout_s: float = DEFAULT_QUERY_TIMEOUT_S
    ) -> None:
        from chaos_engineering.hooks.prometheus import PrometheusHook

        self.hook = PrometheusHook(prometheus_conn_id, timeout=query_timeout_s)
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
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(loop.run_in_executor(METRICS_POOL, self._read, n) for n in names))
        readings = dict(zip(names, results))
        for name, (value, _) in readings.items():
            self.failures[name] = 0 if value is not None else self.failures[name] + 1
            self.last[name] = value
        return readings

    def judge(self, readings: dict[str, tuple[float | None, str]], baseline: Any, at: float) -> Breach | None:
        """The first breach: a relative threshold whose baseline cannot be judged (whatever it
        reads, so at the very first check), a threshold crossed, a metric unreadable N checks in a
        row. Never raises: whatever keeps a reading from being judged is a fail-safe breach."""
        try:
            for name, threshold in self.thresholds.items():
                problem = baseline_problem(threshold, _baseline_of(baseline, name))
                if problem is not None:
                    return fail_safe_breach(name, threshold, problem, at, baseline=_baseline_of(baseline, name))
            for name, (value, reason) in readings.items():
                if value is None:
                    if self.failures[name] >= self.max_failed_reads:
                        return failed_reads_breach(name, self.failures[name], at, reason)
                    continue
                breach = self.judge_one(name, value, baseline, at)
                if breach is not None:
                    return breach
        except Exception as exc:
            return fail_safe_breach("kill switch", None, f"could not judge the readings ({type(exc).__name__}: {exc})", at)
        return None

    def judge_one(self, name: str, value: float, baseline: Any, at: float) -> Breach | None:
        """One reading against its bound; a reading that cannot be judged is a fail-safe breach."""
        threshold = self.thresholds[name]
        try:
            return check(name, threshold, value, _baseline_of(baseline, name), at)
        except Exception as exc:
            return fail_safe_breach(name, threshold, f"cannot be judged ({type(exc).__name__}: {exc})", at, value=value)


#: The monitor logs a progress line about this often (and at its first check): a deferred task's log
#: shows nothing else while the fault is on (the triggerer writes the trigger's own log lines into the
#: task's log: TriggerRunnerSupervisor routes each line by the trigger id it is bound to).
PROGRESS_EVERY_S = 30.0


def progress_every(interval_s: float) -> int:
    """How many checks make one progress line."""
    return max(1, round(PROGRESS_EVERY_S / interval_s)) if interval_s > 0 else 1


def created_at(obj: dict[str, Any]) -> float | None:
    """When the object was created (Kubernetes keeps whole seconds); None when it does not say."""
    from chaos_engineering.emergency import parse_time

    try:
        created = parse_time(obj.get("metadata", {}).get("creationTimestamp"))
    except ValueError:
        return None
    return created.timestamp() if created else None


def _number(value: float) -> str:
    return f"{value:.4g}"


def _with_unit(value: float, unit: str) -> str:
    return f"{_number(value)}%" if unit == "%" else f"{_number(value)} {unit}" if unit else _number(value)


def headroom(threshold: Threshold, value: float, baseline: Any) -> float | None:
    """How far `value` is from the bound on the safe side, in the metric's unit (negative: beyond it);
    None when the threshold cannot be judged."""
    try:
        bound = bound_of(threshold, baseline)
    except (ValueError, TypeError):
        return None
    keeps_above = threshold.rule in (ThresholdRule.MAX_DROP_PERCENT, ThresholdRule.AT_LEAST)
    return value - bound if keeps_above else bound - value


def reading_text(name: str, threshold: Threshold, value: float, baseline: Any) -> str:
    """`error_rate 0.8% of ≤ 5% (headroom 4.2 pp)`: a reading against its bound."""
    room = headroom(threshold, value, baseline)
    if room is None:
        return f"{name} {_with_unit(value, threshold.unit)} (no bound: {baseline_problem(threshold, _baseline_of({name: baseline}, name))})"
    keeps_above = threshold.rule in (ThresholdRule.MAX_DROP_PERCENT, ThresholdRule.AT_LEAST)
    bound = bound_of(threshold, baseline)
    room_unit = "pp" if threshold.unit == "%" else threshold.unit
    return (f"{name} {_with_unit(value, threshold.unit)} of {'≥' if keeps_above else '≤'} {_with_unit(bound, threshold.unit)} "
            f"(headroom {_number(room)}{' ' + room_unit if room_unit else ''})")


def progress_line(checks: int, window: int, elapsed_s: float | None, remaining_s: float | None, readings: list[str]) -> str:
    """One progress line: which check, how long the fault has been on and has left, the worst reading
    of each threshold over the last `window` checks."""
    age = "fault age unknown" if elapsed_s is None else f"fault on for {elapsed_s:.0f} s"
    left = "no planned end" if remaining_s is None else f"{max(0.0, remaining_s):.0f} s left"
    over = "this check" if window == 1 else f"the last {window} checks"
    return f"kill switch check {checks}: {age}, {left}; worst of {over}: " + "; ".join(readings)


class _Progress:
    """The worst reading of each threshold since the last progress line."""

    def __init__(self, thresholds: dict[str, Threshold], interval_s: float) -> None:
        self.thresholds = thresholds
        self.every = progress_every(interval_s)
        self._reset()

    def _reset(self) -> None:
        self.window = 0
        self.worst: dict[str, tuple[float, float]] = {}  # name -> (headroom, value)
        self.unread: dict[str, tuple[int, str]] = {}  # name -> (checks unread, last reason)

    def add(self, readings: dict[str, tuple[float | None, str]], baseline: Any) -> None:
        self.window += 1
        for name, (value, reason) in readings.items():
            if value is None:
                count, _ = self.unread.get(name, (0, ""))
                self.unread[name] = (count + 1, reason)
                continue
            room = headroom(self.thresholds[name], value, _baseline_of(baseline, name))
            room = float("-inf") if room is None else room
            if name not in self.worst or room < self.worst[name][0]:
                self.worst[name] = (room, value)

    def line(self, checks: int, baseline: Any, elapsed_s: float | None, remaining_s: float | None) -> str | None:
        """The line due at this check (the first, then every `every`), or None."""
        if checks != 1 and checks % self.every:
            return None
        parts = []
        for name, threshold in self.thresholds.items():
            if name in self.worst:
                parts.append(reading_text(name, threshold, self.worst[name][1], _baseline_of(baseline, name)))
            if name in self.unread:
                count, reason = self.unread[name]
                parts.append(f"{name} unread in {count} of {self.window} checks ({reason})")
        text = progress_line(checks, self.window, elapsed_s, remaining_s, parts)
        self._reset()
        return text


def _zulu(at: str) -> str:
    return at.replace("+00:00", "Z")


def removed_by(halt: Any, since: float, beat: Any, now: float, grace_s: float, *, beat_error: str = "") -> dict[str, str]:
    """Who removed a fault that vanished with no halt set (pure, for tests): the emergency stop when the
    halt history holds a halt since `since` (set and resumed between two checks); the dead-man watchdog
    when the fault's heartbeat (a `Beat`, or None when there is none) was older than the watchdog's grace;
    else nobody this system records. The watchdog leaves no mark of its own on what it removes: its
    removal is known only from the heartbeat it judged."""
    import datetime as dt

    history = list(getattr(halt, "history", None) or [])
    for i, entry in reversed(list(enumerate(history))):
        try:
            at = dt.datetime.fromisoformat(str(entry.get("at"))).timestamp()
        except ValueError:
            continue
        if entry.get("action") == "halt" and at >= since - 1:
            resumed = next((r for r in history[i + 1:] if r.get("action") == "resume"), None)
            later = f" (resumed since by {resumed['by']} at {_zulu(resumed['at'])})" if resumed else ""
            return {"by": "emergency_stop", "detail": f"the emergency stop of {entry.get('by')} at {_zulu(entry.get('at'))}: '{entry.get('reason')}'{later}"}
    when = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    since_text = dt.datetime.fromtimestamp(since, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    if beat_error:
        return {"by": "unknown", "detail": (f"someone outside the run: no emergency stop since {since_text}; the heartbeat could not be read "
                                            f"({beat_error}), so whether the watchdog removed it is unknown")}
    if beat is None:
        return {"by": "watchdog", "detail": "the dead-man watchdog: the fault had no heartbeat"}
    age = beat.age_s(when)
    if not beat.fresh(when, grace_s):
        return {"by": "watchdog", "detail": f"the dead-man watchdog: heartbeat expired ({age:.0f} s since its last renewal, grace {grace_s:g} s)"}
    return {"by": "unknown", "detail": (f"someone outside this system: no emergency stop since {since_text} and its heartbeat was {age:.0f} s old "
                                        "(the watchdog removes none this fresh); the API server's audit log names who deleted it")}


def _baseline_of(baseline: Any, name: str) -> Any:
    """The recorded baseline of one threshold; None when the record is not a mapping (an edited
    XCom): a relative rule then fails closed through `baseline_problem`."""
    return baseline.get(name) if isinstance(baseline, Mapping) else None


class FaultMonitorTrigger(BaseTrigger):
    """Checks every threshold against the baseline each `interval_s` until the fault is gone or ended,
    each read bounded in total by `query_timeout_s` (the policy's `safety.query_timeout`).

    On a breach, or on `max_failed_reads` unreadable checks in a row, it deletes the Chaos Mesh
    object itself, here in the triggerer, before any worker slot is involved: that is where the
    kill is fastest. Every check also reads the emergency-stop halt flag: while it is set, the
    fault is removed at once and watched until it is gone. An unreadable flag is logged and not
    taken as set: the thresholds still guard the fault, and the stop's sweeps and the watchdog
    enforce the halt too. A fault being deleted is still active for the monitor (heartbeat,
    thresholds) until it is gone; a deletion older than `deletion_timeout_s` (a stuck finalizer:
    the fault may still be applied) has Chaos Mesh's finalizer clean-up forced and a metric pushed.

    Every side effect is idempotent, because a trigger may run twice after a triggerer restart:
    deleting an object being deleted or gone is a no-op, the forced-clean-up annotation is set to
    the same value, the heartbeat is one Lease created or replaced. It yields one event, each with
    a `message`, and `deletion` once the fault was seen being deleted (since when, checks meanwhile,
    the forced clean-up):
    `completed` (Chaos Mesh ended the fault), `breach` (with the breach and the removal time),
    `halted` (the halt was set: who, when, why, from the flag), `gone` (someone else removed it:
    the watchdog, a person), `deletion_stuck` (its clean-up forced, and still there one more
    deletion timeout later: Chaos Mesh's controller is not acting).
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
        deletion_timeout_s: float = DELETION_TIMEOUT_S,
        chaos_namespace: str | None = None,
        query_timeout_s: float = DEFAULT_QUERY_TIMEOUT_S,
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
        self.deletion_timeout_s = deletion_timeout_s
        # Where the halt flag lives (the policy's chaos_namespace); the fault's own by default.
        self.chaos_namespace = chaos_namespace
        self.query_timeout_s = query_timeout_s

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
                "deletion_timeout_s": self.deletion_timeout_s,
                "chaos_namespace": self.chaos_namespace,
                "query_timeout_s": self.query_timeout_s,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        first = time.monotonic()
        try:
            async for event in self._watch(first):
                yield event
                return
        except Exception as exc:  # a task's cancellation (the triggerer handing over) is not an Exception
            self.log.exception("kill switch: the monitor itself failed; removing what it watches (fail-safe)")
            yield await self._monitor_failed(exc, first)

    async def _watch(self, first: float) -> AsyncIterator[TriggerEvent]:
        from chaos_engineering.emergency import ObjectRef
        from chaos_engineering.halt import HaltFlag
        from chaos_engineering.heartbeat import Heartbeat, default_holder
        from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook

        cluster = ChaosMeshHook(self.kubernetes_conn_id)
        kind, name, namespace = ChaosKind(self.fault["kind"]), self.fault["name"], self.fault["namespace"]
        ref = ObjectRef(kind.value, name, namespace)
        one_shot = (kind.value, self.fault.get("action")) in ONE_SHOT_ACTIONS
        readings = _Readings(
            self.prometheus_conn_id, {k: Threshold(**v) for k, v in self.thresholds.items()}, self.max_failed_reads, self.query_timeout_s
        )
        flag = HaltFlag(cluster, self.chaos_namespace or namespace)
        cluster_failures = 0
        checks = 0
        heartbeat = Heartbeat(cluster, kind, name, namespace)
        holder = default_holder()
        halt: Any = None  # the HaltState this monitor saw set; it acts on it until the fault is gone
        halt_removal: tuple[float | None, str] = (None, "")
        deletion: dict[str, Any] | None = None
        progress = _Progress(readings.thresholds, self.interval_s)
        since = time.time()  # halts from here (or from the fault's creation, once seen) count as removing it
        created: float | None = None
        paused = False
        # The cluster is read (the fault, the halt flag) and the heartbeat renewed beside the
        # metrics, never before them: a slow Kubernetes API must not delay a check. A read still
        # under way at the next check is not started again, and a check without its answer counts
        # as a failed read of the cluster.
        renewal: asyncio.Task | None = None
        look: asyncio.Task | None = None
        try:
            while True:
                started = time.monotonic()
                if renewal is None or renewal.done():
                    # The dead man's switch: this renewal is the proof that someone watches the
                    # fault. When the triggerer (or all of Airflow) dies, renewals stop and the
                    # watchdog (`chaosctl watchdog`) removes the fault after its grace period.
                    # Idempotent (one Lease per fault), so a second copy of this trigger does no harm.
                    renewal = asyncio.create_task(self._renew_heartbeat(heartbeat, holder))
                if look is None:
                    look = asyncio.create_task(self._look(cluster, kind, name, namespace, flag))
                current = await readings.read_all()
                checks += 1
                now = time.time()
                breach = readings.judge(current, self.baseline, now)
                if breach is None and not look.done():
                    # The cluster's answer is awaited until this check's interval is used up, no longer.
                    await asyncio.wait({look}, timeout=max(0.0, self.interval_s - (time.monotonic() - started)))
                obj, error, seen = None, "", None
                if look.done():
                    (obj, error, seen), look = look.result(), None
                elif breach is None:
                    error = f"no answer in {time.monotonic() - started:.1f} s"
                answered = look is None and not error
                if answered:
                    cluster_failures = 0
                    state = fault_state(obj, one_shot=one_shot, ends_at=self.ends_at)
                    if created is None and obj is not None:
                        created = created_at(obj)
                        since = min(since, created or since)
                else:  # a breach is acted on at once, without waiting for the cluster's answer
                    state = "unknown"
                if error:
                    # The API server did not answer: keep judging metrics; a breach still tries to delete.
                    cluster_failures += 1
                    self.log.warning("cannot read fault %s/%s (%d in a row): %s", namespace, name, cluster_failures, error)
                if state == "paused" and not paused:
                    self.log.warning("%s %s/%s is paused (Chaos Mesh's %s annotation): not applied now, injected again when the "
                                     "annotation goes; watched as active until it ends or is removed", kind.value, namespace, name, PAUSE_ANNOTATION)
                if state != "unknown":
                    paused = state == "paused"
                if halt is None and seen is not None and seen.halted:
                    halt = seen
                    self.log.warning("chaos %s: removing %s %s/%s", halt.cause(), kind.value, namespace, name)
                if halt is not None and state != "gone" and halt_removal[0] is None:
                    halt_removal = await self._remove(cluster, kind, name, namespace, f"chaos {halt.cause()}")
                if state == "deleting":
                    deletion = await self._watch_deletion(cluster, ref, obj, deletion)
                ending = self._ending(state, halt, halt_removal, deletion)
                if ending is not None and ending["status"] == "gone":
                    # Before the heartbeat is deleted: it is what tells whether the watchdog removed the fault.
                    who = await self._who_removed(flag, heartbeat, since)
                    forced = " after its finalizer clean-up was forced" if (deletion or {}).get("forced_at") is not None else ""
                    ending |= {"removed_by": who, "message": f"the fault was removed{forced} by {who['detail']}"}
                if ending is not None:
                    self.log.warning("kill switch: %s after %d checks: %s", ending["status"], checks, ending["message"])
                    await self._end_heartbeat(heartbeat, renewal)
                    await _not_before(first)
                    yield TriggerEvent(ending | {"state": state, "checks": checks, "at": time.time(), "deletion": deletion})
                    return
                if deletion is not None:
                    deletion["checks"] += 1
                if breach is None and cluster_failures >= self.max_failed_reads:
                    breach = failed_reads_breach("fault-state", cluster_failures, now, "Kubernetes API unreachable")
                progress.add(current, self.baseline)
                line = progress.line(checks, self.baseline, now - created if created else None, self.ends_at - now if self.ends_at else None)
                if line is not None:
                    self.log.info(line)  # no arguments: a "%" in a reading stays as it is
                if breach is not None:
                    self.log.error("kill switch: breach at check %d: %s; removing the fault", checks, breach.message)
                    removed, error = await self._remove_until_accepted(cluster, kind, name, namespace, "breach")
                    await self._end_heartbeat(heartbeat, renewal)
                    await _not_before(first)
                    yield TriggerEvent(
                        {
                            "status": "breach",
                            "breach": breach.as_dict(),
                            "removal_requested_at": removed,
                            "removal_error": error,
                            "checks": checks,
                            "values": readings.last,
                            "message": breach.message,
                            "halt": halt.as_dict(history=False) if halt is not None else None,
                            "deletion": deletion,
                        }
                    )
                    return
                await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
        finally:
            for task in (renewal, look):
                if task is not None and not task.done():
                    task.cancel()

    async def _look(self, cluster: Any, kind: ChaosKind, name: str, namespace: str, flag: Any) -> tuple[dict[str, Any] | None, str, Any]:
        """The fault (None: gone) and the halt flag, read together: (object, error, halt state)."""
        fault, seen = await asyncio.gather(asyncio.to_thread(cluster.get, kind, name, namespace), self._read_halt(flag), return_exceptions=True)
        if isinstance(seen, BaseException):
            seen = None
        if isinstance(fault, BaseException):
            return None, str(fault) or type(fault).__name__, seen
        return fault, "", seen

    async def _monitor_failed(self, exc: Exception, first: float) -> TriggerEvent:
        """Whatever keeps the monitor from watching is a breach: the fault is removed, the reason named."""
        from chaos_engineering.heartbeat import Heartbeat
        from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook

        breach = fail_safe_breach("kill switch", None, f"could not watch the fault ({type(exc).__name__}: {exc})", time.time())
        removed, error = None, ""
        try:
            cluster = ChaosMeshHook(self.kubernetes_conn_id)
            kind, name, namespace = ChaosKind(self.fault["kind"]), self.fault["name"], self.fault["namespace"]
            removed, error = await self._remove_until_accepted(cluster, kind, name, namespace, "monitor failure")
            await self._end_heartbeat(Heartbeat(cluster, kind, name, namespace), None)
        except Exception as removal_exc:  # the teardown and the watchdog delete too
            error = f"{type(removal_exc).__name__}: {removal_exc}"
            self.log.error("could not remove the fault after the monitor failed: %s", error)
        await _not_before(first)
        return TriggerEvent({"status": "breach", "breach": breach.as_dict(), "removal_requested_at": removed, "removal_error": error,
                             "checks": 0, "values": {}, "message": breach.message, "halt": None, "deletion": None})

    def _ending(self, state: str, halt: Any, halt_removal: tuple[float | None, str], deletion: dict[str, Any] | None) -> dict[str, Any] | None:
        """The event that ends the watch now, or None to keep watching."""
        forced_at = (deletion or {}).get("forced_at")
        if state == "deleting" and forced_at is not None and time.time() - forced_at > self.deletion_timeout_s:
            return {
                "status": "deletion_stuck",
                "halt": halt.as_dict(history=False) if halt is not None else None,
                "message": (
                    f"the fault's deletion is stuck: requested at {deletion['requested_at']}, Chaos Mesh's finalizer clean-up forced "
                    f"{time.time() - forced_at:.0f} s ago and the object is still there: Chaos Mesh's controller is not acting. "
                    "Check chaos-controller-manager, remove the finalizers by hand and check the targets (docs/RUNBOOK.md#chaos-fault-deletion-stuck)"
                ),
            }
        if halt is not None:
            if state != "gone":
                return None  # our removal is under way: watched like any deletion until the fault is gone
            requested_at, error = halt_removal
            how = "this monitor removed the fault" if requested_at is not None else "the fault was removed before this monitor acted"
            return {"status": "halted", "halt": halt.as_dict(history=False), "removal_requested_at": requested_at, "removal_error": error,
                    "message": f"chaos {halt.cause()}; {how}"}
        if state == "gone":
            # run() names who removed it (the halt history, the heartbeat): that needs the cluster.
            return {"status": "gone", "message": "the fault was removed from outside the run"}
        if state == "ended":
            return {"status": "completed", "message": "Chaos Mesh ended the fault"}
        return None

    async def _who_removed(self, flag: Any, heartbeat: Any, since: float) -> dict[str, str]:
        from chaos_engineering.watchdog import DEFAULT_GRACE_S

        halt = await self._read_halt(flag)
        try:
            beat, error = await asyncio.to_thread(heartbeat.read), ""
        except Exception as exc:
            self.log.warning("cannot read heartbeat %s: %s", heartbeat.name, exc)
            beat, error = None, str(exc)
        return removed_by(halt, since, beat, time.time(), DEFAULT_GRACE_S, beat_error=error)

    async def _read_halt(self, flag: Any) -> Any:
        try:
            return await asyncio.to_thread(flag.state)
        except Exception as exc:
            self.log.warning("cannot read the halt flag %s/%s: %s; not taken as set (the thresholds still guard the fault, "
                             "the emergency stop and the watchdog enforce the halt too)", flag.namespace, flag.name, exc)
            return None

    async def _watch_deletion(self, cluster: Any, ref: Any, obj: dict[str, Any], deletion: dict[str, Any] | None) -> dict[str, Any]:
        """Record the deletion; past the deletion timeout, force Chaos Mesh's clean-up (once)."""
        import datetime as dt

        from chaos_engineering.emergency import deletion_age_s, force_finalizers, is_forced

        if deletion is None:
            deletion = {"requested_at": obj["metadata"]["deletionTimestamp"], "checks": 0, "age_s": 0.0, "stuck": False,
                        "forced_at": None, "forced_by": "", "force_error": ""}
            self.log.warning("%s %s/%s is being deleted (since %s): still watched until it is gone", ref.kind, ref.namespace, ref.name,
                             deletion["requested_at"])
        age = deletion_age_s(obj, dt.datetime.now(dt.timezone.utc)) or 0.0
        deletion["age_s"] = round(age, 1)
        if age <= self.deletion_timeout_s or deletion["forced_at"] is not None:
            return deletion
        deletion["stuck"] = True
        if is_forced(obj):
            # Forced already (the watchdog, the stop, or this trigger before a triggerer restart):
            # counted once, by whoever asked.
            deletion["forced_at"], deletion["forced_by"] = time.time(), "earlier, by another component"
            return deletion
        try:
            await asyncio.to_thread(force_finalizers, cluster, ref)
        except Exception as exc:  # tried again at the next check
            deletion["force_error"] = str(exc)
            self.log.error("deletion of %s %s/%s stuck for %.0f s and its clean-up could not be forced: %s", ref.kind, ref.namespace, ref.name, age, exc)
            return deletion
        deletion["forced_at"], deletion["forced_by"], deletion["force_error"] = time.time(), "this monitor", ""
        self.log.error("deletion of %s %s/%s stuck for %.0f s (safety.deletion_timeout %g s): forced Chaos Mesh's finalizer clean-up; "
                       "its fault may still be applied, check the targets", ref.kind, ref.namespace, ref.name, age, self.deletion_timeout_s)
        await asyncio.to_thread(_push_forced)
        return deletion

    async def _renew_heartbeat(self, heartbeat: Any, holder: str) -> None:
        try:
            await asyncio.to_thread(heartbeat.renew, holder, self.interval_s)
        except Exception as exc:  # monitoring goes on; a stale heartbeat makes the watchdog remove the fault
            self.log.warning("cannot renew heartbeat %s: %s", heartbeat.name, exc)

    async def _end_heartbeat(self, heartbeat: Any, renewal: asyncio.Task | None) -> None:
        """Best effort: the fault is over for this monitor. Not on cancellation (a triggerer
        handing the trigger to another one): there the Lease must stay until the next renewal.
        A renewal still under way finishes first (bounded by the hook's deadline): it would
        otherwise write the Lease again after its deletion."""
        if renewal is not None:
            await asyncio.gather(renewal, return_exceptions=True)
        try:
            await asyncio.to_thread(heartbeat.delete)
        except Exception as exc:
            self.log.warning("cannot delete heartbeat %s: %s", heartbeat.name, exc)

    async def _remove_until_accepted(self, cluster: Any, kind: ChaosKind, name: str, namespace: str, why: str) -> tuple[float | None, str]:
        """`_remove`, tried again with backoff (REMOVAL_BACKOFF_S) for up to the deletion timeout
        while the API server refuses or does not answer: the fault is what hurts, so its removal
        is not given up after one failed call. Then the teardown and the watchdog go on trying."""
        deadline = time.monotonic() + self.deletion_timeout_s
        for attempt in itertools.count(1):
            removed, error = await self._remove(cluster, kind, name, namespace, why)
            pause = removal_backoff_s(attempt)
            if removed is not None or time.monotonic() + pause > deadline:
                return removed, error if removed is None else ""
            self.log.error("removal of %s %s/%s failed (attempt %d): %s; trying again in %g s", kind.value, namespace, name, attempt, error, pause)
            await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    async def _remove(self, cluster: Any, kind: ChaosKind, name: str, namespace: str, why: str) -> tuple[float | None, str]:
        try:
            deleted = await asyncio.to_thread(cluster.delete, kind, name, namespace)
        except Exception as exc:
            # The teardown task deletes again; the sensor fails either way.
            self.log.error("could not delete %s/%s (%s): %s", namespace, name, why, exc)
            return None, str(exc)
        if deleted:
            self.log.warning("%s: deleted %s %s/%s", why, kind.value, namespace, name)
        else:
            self.log.warning("%s: %s %s/%s is not on the cluster (gone already, or never created)", why, kind.value, namespace, name)
        return time.time(), ""


def _push_forced() -> None:
    """chaos_fault_deletions_forced_total{by="monitor"} and the time: the alert of a forced clean-up."""
    from chaos_engineering.notify import metrics

    metrics.push("deletion_forced", extra={"by": "monitor"})  # never raises


#: How late after a stage's deadline the check scheduled at it may start and still count as on time:
#: the event loop's wake-up, not a stalled or restarted triggerer.
ON_TIME_S = 1.0


def stage_status(pending: list[str], checked_at: float, now: float, deadline_ts: float) -> str | None:
    """A recovery stage's status after a check that started at `checked_at` and ended at `now`
    (None: not decided, check again). Back is `recovered` only when the check that saw it started
    by the deadline (ON_TIME_S of leeway); back but first looked at later is `unobserved`: nobody
    watched in time (a worker, the triggerer or the scheduler was down or late), so whether it
    recovered within the deadline is not known, and it never counts as held. Not back once the
    deadline has passed: `deadline_missed`."""
    if not pending:
        return "recovered" if checked_at <= deadline_ts + ON_TIME_S else "unobserved"
    return "deadline_missed" if now >= deadline_ts else None


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
        query_timeout_s: float = DEFAULT_QUERY_TIMEOUT_S,
    ) -> None:
        super().__init__()
        self.prometheus_conn_id = prometheus_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id
        self.thresholds = thresholds
        self.baseline = baseline
        self.interval_s = interval_s
        self.deadline_ts = deadline_ts
        self.targets = targets or []
        self.query_timeout_s = query_timeout_s

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
                "query_timeout_s": self.query_timeout_s,
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
            problem
            for n, (value, _) in current.items()
            if value is not None and (problem := self._not_back(readings.thresholds[n], n, value, now)) is not None
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
        return _Readings(
            self.prometheus_conn_id, {k: Threshold(**v) for k, v in self.thresholds.items()}, max_failed_reads=10**9,
            query_timeout_s=self.query_timeout_s,
        )

    def _not_back(self, threshold: Threshold, name: str, value: float, at: float) -> str | None:
        """Why a reading is not back within its bound; None when it is. A threshold that cannot be
        judged (no usable baseline) is never back: the stage misses its deadline, it never raises."""
        baseline = _baseline_of(self.baseline, name)
        problem = baseline_problem(threshold, baseline)
        if problem is not None:
            return f"{name} {problem}"
        try:
            breach = check(name, threshold, value, baseline, at)
        except Exception as exc:
            return f"{name} cannot be judged ({type(exc).__name__}: {exc})"
        return breach.message if breach is not None else None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        readings = self._readings()
        checks = 0
        first = time.monotonic()
        while True:
            started, checked_at = time.monotonic(), time.time()
            pending, values = await self.check_once(readings)
            checks += 1
            now = time.time()
            if (status := stage_status(pending, checked_at, now, self.deadline_ts)) is not None:
                await _not_before(first)
                yield TriggerEvent({"status": status, "at": now, "checks": checks, "values": values, "pending": pending})
                return
            # The last check starts at the deadline itself.
            await asyncio.sleep(max(0.0, min(self.interval_s - (time.monotonic() - started), self.deadline_ts - time.time())))
