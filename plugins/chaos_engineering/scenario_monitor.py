"""The kill switch of a scenario: one trigger that starts each later step when it is due and
watches every threshold while any step stands, removing every step's fault on a breach."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow.triggers.base import TriggerEvent
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.policy import Threshold
from chaos_engineering.safety import failed_reads_breach
from chaos_engineering.triggers import (
    ONE_SHOT_ACTIONS,
    WATCHED_STATES,
    FaultMonitorTrigger,
    _not_before,
    _Progress,
    _Readings,
    created_at,
    fault_state,
)

#: A step after another's `ended` starts when the monitor sees that end: up to a check later than
#: planned. Its planned end may pass the approved span by this much plus two checks, no more.
SPAN_SLACK_S = 5.0


@dataclass(frozen=True)
class StepState:
    """What the monitor knows of one step at a check: `pending` (not created), `never` (it will
    not start), or its object's `fault_state` (active, paused, ended, deleting, gone)."""

    state: str
    created_at: float | None = None


def steps_due(
    steps: Sequence[Mapping[str, Any]], states: Mapping[str, StepState], now: float, span_end: float, slack_s: float
) -> tuple[list[str], dict[str, str]]:
    """Which pending steps to create now, and which can never start (step -> why).

    The one rule (pure, so it is proven apart from the cluster): a pending step starts when its
    planned time has come, what it starts after has started (or, for `ended`, has been ended by
    Chaos Mesh), and every step planned to start before it has been created and still stands or
    ended by itself: one removed or being removed means the run is being stopped, and nothing
    starts after that. A step whose fault would outlast the approved span (plus `slack_s`) never
    starts. Steps are in planned start order."""
    create: list[str] = []
    never: dict[str, str] = {}
    for index, step in enumerate(steps):
        name = step["step"]
        if states[name].state != "pending":
            continue
        if now < step["start_at"]:
            continue
        earlier = [s["step"] for s in steps[:index] if s["start_at"] <= step["start_at"]]
        if any(states[e].state in ("gone", "deleting") for e in earlier):
            never[name] = "an earlier step's fault was removed: the run is being stopped"
            continue
        if any(states[e].state == "never" or e in never for e in earlier):
            never[name] = "a step planned before it did not start"
            continue
        if any(states[e].state == "pending" for e in earlier):
            continue
        after, when = step.get("after"), step.get("when")
        if after is not None:
            before = states[after]
            if before.state == "pending" or (when == "ended" and before.state != "ended"):
                continue
        if now + step["duration_s"] > span_end + slack_s:
            never[name] = (f"it would end {now + step['duration_s'] - span_end:.0f} s after the approved span: "
                           "the step after it ended later than planned")
            continue
        create.append(name)
    return create, never


def _step_record(step: Mapping[str, Any], started_at: float) -> dict[str, Any]:
    return {
        "object": step["body"]["metadata"]["name"],
        "kind": step["body"]["kind"],
        "planned_start_s": step["start_at"] - started_at,
        "planned_end_s": step["start_at"] - started_at + step["duration_s"],
        "created_at": step.get("created_at"),
        "ended_at": None,
        "removal_requested_at": None,
        "not_started": None,
    }


class ScenarioMonitorTrigger(FaultMonitorTrigger):
    """The scenario's one monitor. Every check reads every threshold (as the single-fault monitor
    does), and beside it the run's objects and the halt flag; then:

    - a breach, or `max_failed_reads` unread checks (metrics or cluster), deletes every step's
      object at once, created or not (their names are fixed: a delete of an absent one is a
      no-op), and a create still in flight is waited for and undone;
    - the halt set: every step's object is deleted and watched until gone (`halted`);
    - a step's object removed by someone else (the stop, the watchdog, a person): the others are
      deleted at once and watched until gone (`gone`, naming who);
    - otherwise the steps due (`steps_due`) are created, only from a fresh view of the cluster
      with the halt flag read as not set; a create refused is tried again at the next check, a
      409 is the object already there (a second copy of this trigger created it);
    - the scenario run's one heartbeat (`heartbeat.ScenarioHeartbeat`, which the watchdog, the
      stop, maintenance and `chaosctl status` read for every step's object) is renewed beside the
      checks while any object of the run is on the cluster, ended ones too, until the watch ends;
    - `completed` once every step has ended by itself (or can never start).

    Idempotent as the single-fault trigger is: creates of fixed names, deletes, Lease renewals.
    Its events are the single-fault monitor's, each with `steps` (each step's times), the
    scenario's `started_at`, and on a breach `breach_after_step`.
    """

    def __init__(
        self,
        *,
        steps: list[dict[str, Any]],
        started_at: float,
        span_end: float,
        namespace: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(fault={}, **kwargs)
        self.steps = steps
        self.started_at = started_at
        self.span_end = span_end
        self.namespace = namespace

    def serialize(self) -> tuple[str, dict[str, Any]]:
        path, kwargs = super().serialize()
        kwargs.pop("fault")
        kwargs.pop("ends_at")
        return path, kwargs | {"steps": self.steps, "started_at": self.started_at, "span_end": self.span_end, "namespace": self.namespace}

    # --- the watch (FaultMonitorTrigger.run runs it, and `_monitor_failed` when it raises) -------

    async def _watch(self, first: float) -> AsyncIterator[TriggerEvent]:
        from chaos_engineering.halt import HaltFlag
        from chaos_engineering.heartbeat import default_holder
        from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook

        cluster = ChaosMeshHook(self.kubernetes_conn_id)
        readings = _Readings(
            self.prometheus_conn_id, {k: Threshold(**v) for k, v in self.thresholds.items()}, self.max_failed_reads, self.query_timeout_s
        )
        flag = HaltFlag(cluster, self.chaos_namespace or self.namespace)
        holder = default_holder()
        by_name = {s["step"]: s for s in self.steps}
        record = {s["step"]: _step_record(s, self.started_at) for s in self.steps}
        # What inject created (the sensor saw it on the cluster) stands from the start: a breach at
        # the very first check, before any look answered, still records and removes it as started.
        states = {s["step"]: StepState("active", s["created_at"]) if s.get("created_at") else StepState("pending") for s in self.steps}
        progress = _Progress(readings.thresholds, self.interval_s)
        renewal: asyncio.Task | None = None
        look: asyncio.Task | None = None
        creating: asyncio.Task | None = None
        checks = cluster_failures = 0
        halt: Any = None
        stopping: dict[str, Any] | None = None  # why every step is being removed (halt, removed outside)
        deletions: dict[str, dict[str, Any] | None] = {}
        created_here: dict[str, float] = {}  # step -> when this trigger's create of it returned
        try:
            while True:
                started = time.monotonic()
                # The run's heartbeat beats while any of its objects is on the cluster, an ended one
                # too: the watchdog cannot tell a one-shot kill ended (it stays `Run`), and would
                # otherwise remove it, which this monitor would take for the run being stopped.
                standing = [n for n, s in states.items() if s.state in (*WATCHED_STATES, "deleting", "ended")]
                if standing and (renewal is None or renewal.done()):
                    renewal = asyncio.create_task(self._renew_all(cluster, [by_name[n] for n in standing], holder))
                if look is None:
                    look = asyncio.create_task(self._look_all(cluster, flag))
                current = await readings.read_all()
                checks += 1
                now = time.time()
                breach = readings.judge(current, self.baseline, now)
                if breach is None and not look.done():
                    await asyncio.wait({look}, timeout=max(0.0, self.interval_s - (time.monotonic() - started)))
                objects, error, seen, looked_at = None, "", None, 0.0
                if look.done():
                    (objects, error, seen, looked_at), look = look.result(), None
                elif breach is None:
                    error = f"no answer in {time.monotonic() - started:.1f} s"
                if creating is not None and creating.done():
                    self._created(creating.result(), states, record, created_here)
                    creating = None
                answered = objects is not None and not error
                if answered:
                    cluster_failures = 0
                    for name, step in by_name.items():
                        obj = objects.get(step["body"]["metadata"]["name"])
                        known = states[name]
                        if obj is None and (known.state == "pending" or (created_here.get(name) or 0.0) > looked_at):
                            continue  # not created yet, or created after this list was asked for
                        one_shot = (step["body"]["kind"], step.get("action")) in ONE_SHOT_ACTIONS
                        at = created_at(obj) if obj is not None else known.created_at
                        ends_at = at + step["duration_s"] if at is not None else None
                        state = fault_state(obj, one_shot=one_shot, ends_at=ends_at)
                        if state == "ended" and record[name]["ended_at"] is None:
                            record[name]["ended_at"] = now
                        if record[name]["created_at"] is None:
                            record[name]["created_at"] = at
                        states[name] = StepState(state, at)
                        if state == "deleting":
                            deletions[name] = await self._watch_deletion(cluster, _ref(step), obj, deletions.get(name))
                if error:
                    cluster_failures += 1
                    self.log.warning("cannot read the scenario's objects (%d in a row): %s", cluster_failures, error)
                if halt is None and seen is not None and seen.halted:
                    halt = seen
                    self.log.warning("chaos %s: removing every step of the scenario", halt.cause())
                if stopping is None and halt is not None:
                    stopping = {"why": f"chaos {halt.cause()}"}
                if stopping is None and answered:
                    removed = [n for n, s in states.items() if s.state in ("gone", "deleting") and record[n]["removal_requested_at"] is None]
                    if removed:
                        who = await self._who_removed(flag, _heartbeat(cluster, by_name[removed[0]]), self.started_at)
                        stopping = {"why": f"step {removed[0]} was removed from outside the run", "removed_by": who, "step": removed[0]}
                        self.log.warning("kill switch: %s (%s): removing every other step", stopping["why"], who["detail"])
                if stopping is not None and not stopping.get("requested"):
                    stopping["requested"] = True
                    stopping["results"] = await self._remove_all(cluster, record, stopping["why"], creating)
                    creating = None
                if stopping is not None and answered and all(s.state in ("pending", "never", "gone") for s in states.values()):
                    yield await self._stopped_event(stopping, halt, record, states, checks, first, cluster, by_name, renewal)
                    return
                stuck = self._stuck(deletions)
                if stuck is not None:
                    await self._end_heartbeats(cluster, by_name.values(), renewal)
                    await _not_before(first)
                    yield TriggerEvent(stuck | self._event_common(record, checks, deletions))
                    return
                if breach is None and cluster_failures >= self.max_failed_reads:
                    breach = failed_reads_breach("fault-state", cluster_failures, now, "Kubernetes API unreachable")
                progress.add(current, self.baseline)
                line = progress.line(checks, self.baseline, now - self.started_at, self.span_end - now)
                if line is not None:
                    self.log.info(line)
                if breach is not None:
                    self.log.error("kill switch: breach at check %d: %s; removing every step", checks, breach.message)
                    results = await self._remove_all(cluster, record, "breach", creating)
                    creating = None
                    await self._end_heartbeats(cluster, by_name.values(), renewal)
                    await _not_before(first)
                    removed_at = [at for at, _ in results.values() if at is not None]
                    errors = "; ".join(f"{name}: {err}" for name, (at, err) in results.items() if at is None and err)
                    yield TriggerEvent(
                        {
                            "status": "breach",
                            "breach": breach.as_dict(),
                            "breach_after_step": step_before(record, breach.at),
                            "removal_requested_at": max(removed_at) if removed_at and not errors else None,
                            "removal_error": errors,
                            "values": readings.last,
                            "message": breach.message,
                            "halt": halt.as_dict(history=False) if halt is not None else None,
                        }
                        | self._event_common(record, checks, deletions)
                    )
                    return
                if stopping is None and answered and seen is not None and not seen.halted and creating is None:
                    due, never = steps_due(self.steps, states, now, self.span_end, SPAN_SLACK_S + 2 * self.interval_s)
                    for name, why in never.items():
                        record[name]["not_started"] = why
                        states[name] = StepState("never")
                        self.log.warning("step %s will not start: %s", name, why)
                    if due:
                        creating = asyncio.create_task(self._create_steps(cluster, [by_name[n] for n in due], holder))
                if stopping is None and creating is None and all(s.state in ("ended", "never") for s in states.values()):
                    await self._end_heartbeats(cluster, by_name.values(), renewal)
                    await _not_before(first)
                    self.log.info("kill switch: every step ended by Chaos Mesh after %d checks with no breach", checks)
                    yield TriggerEvent({"status": "completed", "message": "Chaos Mesh ended every step's fault"} | self._event_common(record, checks, deletions))
                    return
                await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
        finally:
            for task in (renewal, look, creating):
                if task is not None and not task.done():
                    task.cancel()

    def _event_common(self, record: dict[str, dict[str, Any]], checks: int, deletions: dict[str, Any]) -> dict[str, Any]:
        stuck = {n: d for n, d in deletions.items() if d is not None}
        return {"steps": record, "started_at": self.started_at, "checks": checks, "at": time.time(), "deletion": next(iter(stuck.values()), None)}

    async def _stopped_event(self, stopping, halt, record, states, checks, first, cluster, by_name, renewal) -> TriggerEvent:
        await self._end_heartbeats(cluster, by_name.values(), renewal)
        await _not_before(first)
        errors = "; ".join(f"{n}: {err}" for n, (at, err) in stopping["results"].items() if at is None and err)
        if halt is not None:
            event = {"status": "halted", "halt": halt.as_dict(history=False), "removal_requested_at": time.time(), "removal_error": errors,
                     "message": f"chaos {halt.cause()}; this monitor removed every step of the scenario"}
        else:
            who = stopping["removed_by"]
            event = {"status": "gone", "removed_by": who, "removal_error": errors,
                     "message": f"step {stopping['step']}'s fault was removed by {who['detail']}; this monitor removed every other step"}
        self.log.warning("kill switch: %s after %d checks: %s", event["status"], checks, event["message"])
        return TriggerEvent(event | self._event_common(record, checks, {}))

    def _stuck(self, deletions: dict[str, dict[str, Any] | None]) -> dict[str, Any] | None:
        for name, deletion in deletions.items():
            ending = self._ending("deleting", None, (None, ""), deletion)
            if ending is not None and ending["status"] == "deletion_stuck":
                return ending | {"message": f"step {name}: {ending['message']}"}
        return None

    # --- the cluster -------------------------------------------------------------------------

    async def _look_all(self, cluster: Any, flag: Any) -> tuple[dict[str, dict[str, Any]] | None, str, Any, float]:
        """Every object of the run's steps (by name) and the halt flag, read together, and when the
        reads were asked for."""
        from chaos_engineering.render import LABEL_RUN_KEY

        asked = time.time()
        kinds = sorted({s["body"]["kind"] for s in self.steps})
        selector = f"{LABEL_RUN_KEY}={self.steps[0]['body']['metadata']['labels'][LABEL_RUN_KEY]}"
        listed, seen = await asyncio.gather(
            asyncio.gather(*(asyncio.to_thread(cluster.list, ChaosKind(k), self.namespace, selector) for k in kinds)),
            self._read_halt(flag),
            return_exceptions=True,
        )
        if isinstance(seen, BaseException):
            seen = None
        if isinstance(listed, BaseException):
            return None, str(listed) or type(listed).__name__, seen, asked
        return {o["metadata"]["name"]: o | {"kind": o.get("kind") or k} for k, items in zip(kinds, listed) for o in items}, "", seen, asked

    async def _create_steps(self, cluster: Any, steps: list[Mapping[str, Any]], holder: str) -> dict[str, tuple[float | None, str]]:
        """Create each step's object (its first heartbeat right after): name -> (created at, error)."""
        from kubernetes.client.exceptions import ApiException

        results: dict[str, tuple[float | None, str]] = {}
        for step in steps:
            try:
                await asyncio.to_thread(cluster.create, step["body"])
            except ApiException as exc:
                if exc.status != 409:
                    results[step["step"]] = (None, str(exc))
                    continue
                self.log.info("step %s exists already (a second copy of this monitor created it)", step["step"])
            except Exception as exc:  # tried again at the next check
                results[step["step"]] = (None, str(exc))
                continue
            results[step["step"]] = (time.time(), "")
            self.log.warning("scenario step %s started: created %s %s/%s", step["step"], step["body"]["kind"], self.namespace, step["body"]["metadata"]["name"])
            await self._renew_heartbeat(_heartbeat(cluster, step), holder)
        return results

    def _created(self, results: dict[str, tuple[float | None, str]], states: dict[str, StepState], record: dict[str, dict[str, Any]],
                 created_here: dict[str, float]) -> None:
        for name, (at, error) in results.items():
            if at is None:
                self.log.error("could not create step %s (tried again at the next check): %s", name, error)
                continue
            created_here[name] = at
            record[name]["created_at"] = record[name]["created_at"] or at
            if states[name].state == "pending":
                states[name] = StepState("active", at)

    async def _remove_all(self, cluster: Any, record: dict[str, dict[str, Any]], why: str, creating: asyncio.Task | None) -> dict[str, tuple[float | None, str]]:
        """Delete every step's object at once (created or not: a delete of an absent one is a
        no-op), each retried with backoff; a create in flight is awaited, then deleted again."""

        async def remove(step: Mapping[str, Any]) -> tuple[float | None, str]:
            ref = _ref(step)
            return await self._remove_until_accepted(cluster, ChaosKind(ref.kind), ref.name, ref.namespace, why)

        results = dict(zip([s["step"] for s in self.steps], await asyncio.gather(*(remove(s) for s in self.steps))))
        if creating is not None:
            await asyncio.gather(creating, return_exceptions=True)
            late = dict(zip([s["step"] for s in self.steps], await asyncio.gather(*(remove(s) for s in self.steps))))
            results = {n: late[n] if late[n][0] is not None or results[n][0] is None else results[n] for n in results}
        for name, (at, _) in results.items():
            if at is not None and record[name]["created_at"] is not None:
                record[name]["removal_requested_at"] = record[name]["removal_requested_at"] or at
        return results

    async def _renew_all(self, cluster: Any, steps: list[Mapping[str, Any]], holder: str) -> None:
        await asyncio.gather(*(self._renew_heartbeat(h, holder) for h in _heartbeats(cluster, steps)))

    async def _end_heartbeats(self, cluster: Any, steps: Any, renewal: asyncio.Task | None) -> None:
        if renewal is not None:
            await asyncio.gather(renewal, return_exceptions=True)
        await asyncio.gather(*(self._end_heartbeat(h, None) for h in _heartbeats(cluster, steps)))

    async def _monitor_failed(self, exc: Exception, first: float) -> TriggerEvent:
        """Whatever keeps the monitor from watching is a breach: every step is removed, the reason named."""
        from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
        from chaos_engineering.safety import fail_safe_breach

        breach = fail_safe_breach("kill switch", None, f"could not watch the scenario ({type(exc).__name__}: {exc})", time.time())
        record = {s["step"]: _step_record(s, self.started_at) for s in self.steps}
        error = ""
        try:
            cluster = ChaosMeshHook(self.kubernetes_conn_id)
            results = await self._remove_all(cluster, record, "monitor failure", None)
            error = "; ".join(f"{n}: {err}" for n, (at, err) in results.items() if at is None and err)
            await self._end_heartbeats(cluster, self.steps, None)
        except Exception as removal_exc:  # the teardown and the watchdog delete too
            error = f"{type(removal_exc).__name__}: {removal_exc}"
            self.log.error("could not remove the scenario's faults after the monitor failed: %s", error)
        await _not_before(first)
        return TriggerEvent({"status": "breach", "breach": breach.as_dict(), "breach_after_step": None,
                             "removal_requested_at": None if error else time.time(), "removal_error": error, "values": {},
                             "message": breach.message, "halt": None} | self._event_common(record, 0, {}))


def step_before(record: Mapping[str, Mapping[str, Any]], at: float) -> str | None:
    """The step whose start most recently preceded `at` (None: none had started)."""
    started = [(r["created_at"], name) for name, r in record.items() if r.get("created_at") is not None and r["created_at"] <= at]
    return max(started)[1] if started else None


def _ref(step: Mapping[str, Any]) -> Any:
    from chaos_engineering.emergency import ObjectRef

    meta = step["body"]["metadata"]
    return ObjectRef(step["body"]["kind"], meta["name"], meta["namespace"])


def _heartbeat(cluster: Any, step: Mapping[str, Any]) -> Any:
    """The heartbeat watching the step's object: the scenario run's one (its body carries the
    scenario's name and the run's key)."""
    from chaos_engineering.heartbeat import heartbeat_of

    return heartbeat_of(cluster, step["body"])


def _heartbeats(cluster: Any, steps: Any) -> list[Any]:
    """The distinct heartbeats watching `steps` (one for a scenario run's steps)."""
    from chaos_engineering.heartbeat import heartbeats_of

    return heartbeats_of(cluster, [s["body"] for s in steps])
