"""One fault of our own stack at one step of a real run, and what it left: the rows of the
reliability campaign (benchmarks/campaign.py) and of its CI subset (test_own_stack_faults.py).

A row triggers `chaos_low_risk` (no human approval) on the e2e harness's Airflow, polls the task
states until the step is reached, breaks one part of our stack (FAULTS), lets the run finish and
records what benchmarks/campaign.py's docstring lists: the time to a safe state, the run's final
state and failed tasks, leftovers, result and report, double injections, faults outliving their
bound. Everything is put back between rows.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos_engineering import watchdog
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.cli_run import read_result
from chaos_engineering.chaosmesh.duration import parse_go_duration
from chaos_engineering.emergency import emergency_stop
from chaos_engineering.halt import HaltFlag
from chaos_engineering.heartbeat import LABEL_HEARTBEAT_OF
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.policy import Tier
from chaos_engineering.reach import forbidden_reasons
from chaos_engineering.render import ANNOTATION_APPROVALS, LABEL_RUN_KEY, LABEL_TIER, OWNED_SELECTOR, run_key
from chaos_engineering.verification import APPROVE
from chaos_engineering.windows import span_verdict
from sandbox.airflow_stack import CELERY_WORKER
from sandbox.runner import Sandbox
from sandbox.steady import wait_steady
from tests.e2e.test_tier_runs import NAMESPACE, Chaos, FaultWatch, clean_up_after, policy_of
from tests.e2e.stack_services import PostgresServer, PrometheusProxy, RedisServer
from tests.integration.receivers import S3Server

DAG_ID = "chaos_low_risk"
RUN_TIMEOUT_S = 600
#: The sandbox's emulated Chaos Mesh clears its records finalizer within a couple of seconds of a
#: delete; benchmarks/halt_latency.py measures it ("finalizer"). A real cluster: measure it there.
DELETION_S = 3.0
#: The watchdog's bound on a fault whose monitor died: its grace after the last heartbeat plus one sweep.
WATCHDOG_BOUND_S = watchdog.DEFAULT_GRACE_S + watchdog.DEFAULT_INTERVAL_S
UNFINISHED = ("scheduled", "queued", "running", "deferred", "up_for_reschedule", "up_for_retry", "restarting")

log = logging.getLogger("campaign")


def p1_s(chaos: Chaos) -> float:
    """P1, the monitor's own bound from a break to the fault gone: up to one `check_interval` to
    its next check, then `max_failed_reads` failed checks, each as long as its interval or its
    reads' total deadline (`query_timeout`) if longer, then the deletion (DELETION_S)."""
    safety = policy_of(chaos.include).safety
    return safety.check_interval + safety.max_failed_reads * max(safety.check_interval, safety.query_timeout) + DELETION_S


# --- where in the run to break ------------------------------------------------------------------------

StepReached = Callable[[dict[str, str | None]], str | None]


def _first(states: dict[str, str | None], tasks: tuple[str, ...], among: tuple[str, ...]) -> str | None:
    """`task=state` of the first of `tasks` in one of the states `among`, else None."""
    return next((f"{t}={states[t]}" for t in tasks if states.get(t) in among), None)


STEPS: dict[str, StepReached] = {
    # The lock is ours and the fault not yet created: inject queued or running (or about to be).
    "before-inject": lambda s: _first(s, ("inject",), ("scheduled", "queued", "running"))
    or (s.get("acquire_lock") == "success" and s.get("inject") in (None, "none") and "acquire_lock=success") or None,
    "during-monitor": lambda s: _first(s, ("monitor",), ("deferred",)),
    "during-removal": lambda s: _first(s, ("remove_fault",), ("scheduled", "queued", "running", "up_for_retry"))
    or _first(s, ("monitor",), ("success", "failed")),
    "during-recovery": lambda s: _first(s, ("recovery_immediate", "recovery_short_term", "recovery_business"),
                                        ("queued", "running", "deferred", "up_for_reschedule")),
    "during-report": lambda s: _first(s, ("write_result", "report"), ("scheduled", "queued", "running")),
}


# --- what to break ----------------------------------------------------------------------------------


@dataclass
class Stack:
    """What a fault may break: the sandbox and the Airflow stack (with its include)."""

    sandbox: Sandbox
    chaos: Chaos
    outage_s: float
    s3: S3Server | None = None  # the reports' storage, when the policy writes them to S3
    postgres: PostgresServer | None = None  # Airflow's metadata database server, when it is the campaign's own
    redis: RedisServer | None = None  # the Celery broker's server, when it is the campaign's own
    prometheus: PrometheusProxy | None = None  # between Airflow and Prometheus, when the campaign put one there
    #: (time.time(), name) of every Airflow process the supervisor (`supervise`) started again.
    restarted: list[tuple[float, str]] = field(default_factory=list)


Undo = Callable[[], None]


def prometheus_stop(stack: Stack) -> Undo:
    """Prometheus down for `outage_s`, then back on the same port and data."""
    stack.sandbox.stop_prometheus()
    timer = threading.Timer(stack.outage_s, stack.sandbox.start_prometheus)
    timer.start()

    def undo() -> None:
        timer.cancel()
        stack.sandbox.start_prometheus()  # returns at once when the timer already did

    return undo


def _prometheus_answering(mode: str) -> Callable[[Stack], Undo]:
    def fault(stack: Stack) -> Undo:
        if stack.prometheus is None:
            raise ValueError(f"prometheus-{mode} needs the proxy between Airflow and Prometheus (Stack.prometheus)")
        stack.prometheus.set(mode)
        timer = threading.Timer(stack.outage_s, stack.prometheus.set, args=("pass",))
        timer.start()

        def undo() -> None:
            timer.cancel()
            stack.prometheus.set("pass")

        return undo

    fault.__doc__ = f"Prometheus's query answers {mode} (PrometheusProxy) for `outage_s`, then right again."
    return fault


def kube_delete_500(stack: Stack) -> Undo:
    """The Kubernetes API answers the next three DELETEs of chaos objects with 500."""
    stack.sandbox.api_faults.inject(r".*/(podchaos|networkchaos|stresschaos|iochaos|httpchaos)/.*", "error",
                                    verb="DELETE", status=500, times=3)
    return stack.sandbox.api_faults.clear


def kube_delete_409(stack: Stack) -> Undo:
    """The Kubernetes API answers the next three DELETEs of chaos objects with 409 Conflict."""
    stack.sandbox.api_faults.inject(r".*/(podchaos|networkchaos|stresschaos|iochaos|httpchaos)/.*", "error",
                                    verb="DELETE", status=409, reason="Conflict", times=3)
    return stack.sandbox.api_faults.clear


def kube_delete_hang(stack: Stack) -> Undo:
    """The next three DELETEs of chaos objects hang 30 s, past the hook's deadline (dropped, never served)."""
    stack.sandbox.api_faults.inject(r".*/(podchaos|networkchaos|stresschaos|iochaos|httpchaos)/.*", "hang",
                                    verb="DELETE", seconds=30, times=3)
    return stack.sandbox.api_faults.clear


def kube_lease_500(stack: Stack) -> Undo:
    """The next three Lease writes (lock, heartbeats, halt) answer 500."""
    stack.sandbox.api_faults.inject(r"/apis/coordination\.k8s\.io/v1/namespaces/[^/]+/leases/.*", "error",
                                    verb="PUT", status=500, times=3)
    return stack.sandbox.api_faults.clear


#: A Lease by name (read, replace, delete) and the Lease collection (create).
LEASE = r"/apis/coordination\.k8s\.io/v1/namespaces/[^/]+/leases/[^/]+"
LEASES = r"/apis/coordination\.k8s\.io/v1/namespaces/[^/]+/leases"


def kube_lease_409(stack: Stack) -> Undo:
    """The next three creates, replaces and deletes of a Lease (lock, heartbeats, halt) each answer
    409 Conflict though nothing else wrote: a Lease of ours must not be left as if it were someone else's."""
    faults = stack.sandbox.api_faults
    for verb, path in (("POST", LEASES), ("PUT", LEASE), ("DELETE", LEASE)):
        faults.inject(path, "error", verb=verb, status=409, reason="Conflict", times=3,
                      message="the object has been modified (injected by the campaign: nothing else wrote)")
    return faults.clear


def kube_lease_hang(stack: Stack) -> Undo:
    """The next three Lease writes (lock, heartbeats, halt) hang 30 s."""
    stack.sandbox.api_faults.inject(r"/apis/coordination\.k8s\.io/v1/namespaces/[^/]+/leases/.*", "hang",
                                    verb="PUT", seconds=30, times=3)
    return stack.sandbox.api_faults.clear


#: A chaos object's collection: where its create goes (POST; a dry run's too, but plan's is over by then).
CHAOS_COLLECTION = r"/apis/chaos-mesh\.org/v1alpha1/namespaces/[^/]+/(podchaos|networkchaos|stresschaos|iochaos|httpchaos)"


def kube_create_409(stack: Stack) -> Undo:
    """The next create of a chaos object answers 409 AlreadyExists, as if an earlier try's create
    had landed, though nothing is there: inject must find no object of its run and fail, nothing injected."""
    stack.sandbox.api_faults.inject(CHAOS_COLLECTION, "error", verb="POST", status=409, reason="AlreadyExists",
                                    message="object already exists (injected by the campaign: nothing was created)", times=1)
    return stack.sandbox.api_faults.clear


def kube_create_500(stack: Stack) -> Undo:
    """The next create of a chaos object answers 500 (nothing stored): inject must find no object
    of its run and fail, nothing injected."""
    stack.sandbox.api_faults.inject(CHAOS_COLLECTION, "error", verb="POST", status=500, times=1)
    return stack.sandbox.api_faults.clear


def kube_create_hang(stack: Stack) -> Undo:
    """The next create of a chaos object hangs 30 s, past the hook's 10 s deadline: its client gives
    up and the server drops it (never stored). Inject must find nothing of its run and fail."""
    stack.sandbox.api_faults.inject(CHAOS_COLLECTION, "hang", verb="POST", seconds=30, times=1)
    return stack.sandbox.api_faults.clear


def kube_create_lose_reply(stack: Stack) -> Undo:
    """The next create of a chaos object is stored but its answer is held 30 s, past the hook's
    deadline (mode lose-reply): the fault is on the cluster and inject never heard of it. The run
    must end with that one fault watched by the monitor (adopted), or none; never unwatched, never two."""
    stack.sandbox.api_faults.inject(CHAOS_COLLECTION, "lose-reply", verb="POST", seconds=30, times=1)
    return stack.sandbox.api_faults.clear


def s3_down(stack: Stack) -> Undo:
    """The reports' S3 API off the network for `outage_s`, then back with every object."""
    if stack.s3 is None:
        raise ValueError("s3-down needs the reports in S3 (Stack.s3 and a policy with reports.base_url s3://...)")
    stack.s3.stop()
    timer = threading.Timer(stack.outage_s, stack.s3.start)
    timer.start()

    def undo() -> None:
        timer.cancel()
        stack.s3.start()

    return undo


def _component_kill(name: str) -> Callable[[Stack], Undo]:
    def kill(stack: Stack) -> Undo:
        if name not in stack.chaos.stack.processes:
            raise ValueError(f"{name}-kill: this Airflow has no {name} (processes: {', '.join(stack.chaos.stack.processes)})")
        stack.chaos.stack.restart(name)
        return lambda: None

    kill.__doc__ = f"SIGKILL the {name} (its process group) and start it again at once."
    return kill


def _server_restart(name: str) -> Callable[[Stack], Undo]:
    def restart(stack: Stack) -> Undo:
        server = getattr(stack, name)
        if server is None:
            raise ValueError(f"{name}-restart needs a {name} server of the campaign's own (Stack.{name}), not the machine's")
        server.restart()
        return lambda: None

    restart.__doc__ = (f"Restart the {name} server Airflow uses, as `docker compose restart {name}` does: open "
                       "connections cut, the server back within a second with its data.")
    return restart


def slack_down(stack: Stack) -> Undo:
    """The Slack webhook unreachable (its port closed: connection refused) for the rest of the run:
    notifications fail, the run must hold, and write its result and report. Back on the same port after."""
    stack.chaos.slack.stop()
    return stack.chaos.slack.start


def smtp_down(stack: Stack) -> Undo:
    """The SMTP server unreachable (stopped: connection refused) for the rest of the run: e-mails
    fail, the run must hold, and write its result and report. Back on the same port after."""
    stack.chaos.smtp.stop()
    return stack.chaos.smtp.start


#: How late a slow Slack or SMTP server answers: past every notifier's timeout.
SLOW_CHANNEL_S = 60.0


def slack_slow(stack: Stack) -> Undo:
    """The Slack webhook answers SLOW_CHANNEL_S late for the rest of the run: the run must not wait on it."""
    stack.chaos.slack.delay_s = SLOW_CHANNEL_S

    def undo() -> None:
        stack.chaos.slack.delay_s = 0.0

    return undo


def smtp_slow(stack: Stack) -> Undo:
    """The SMTP server acknowledges each message SLOW_CHANNEL_S late for the rest of the run."""
    stack.chaos.smtp.inbox.delay_s = SLOW_CHANNEL_S

    def undo() -> None:
        stack.chaos.smtp.inbox.delay_s = 0.0

    return undo


def emergency_stop_pressed(stack: Stack) -> Undo:
    """An operator's emergency stop (`chaosctl stop`), not a failure: the faults must be gone within
    STOP_FAULT_BOUND_S of it whatever the run was doing. Undone by resuming."""
    # Synchronous: its sweeps must be over before put_back readies the cluster for the next row.
    report = emergency_stop(ChaosMeshHook(), policy_of(stack.chaos.include), "campaign", "the campaign's stop row")
    log.info("emergency stop: %s", report)
    return lambda: None  # put_back clears the halt with the rest


#: The rows whose "fault" is an emergency stop: their faults must be gone within STOP_FAULT_BOUND_S of it.
STOPS = frozenset({"emergency-stop"})
STOP_FAULT_BOUND_S = 5.0
HALT_SET = "halt set"

def nothing_broken(stack: Stack) -> Undo:
    """Nothing: a run with our whole stack up (the soak's rows, a baseline)."""
    return lambda: None


FAULTS: dict[str, Callable[[Stack], Undo]] = {
    "none": nothing_broken,
    "emergency-stop": emergency_stop_pressed,
    "prometheus-stop": prometheus_stop,
    **{f"prometheus-{mode}": _prometheus_answering(mode) for mode in ("slow", "trickle", "empty", "nan")},
    "kube-delete-500": kube_delete_500,
    "kube-delete-409": kube_delete_409,
    "kube-delete-hang": kube_delete_hang,
    "kube-lease-500": kube_lease_500,
    "kube-lease-409": kube_lease_409,
    "kube-lease-hang": kube_lease_hang,
    "kube-create-500": kube_create_500,
    "kube-create-409": kube_create_409,
    "kube-create-hang": kube_create_hang,
    "kube-create-lose-reply": kube_create_lose_reply,
    "slack-down": slack_down,
    "smtp-down": smtp_down,
    "slack-slow": slack_slow,
    "smtp-slow": smtp_slow,
    "s3-down": s3_down,
    "triggerer-kill": _component_kill("triggerer"),
    "scheduler-kill": _component_kill("scheduler"),
    "dag-processor-kill": _component_kill("dag-processor"),
    "api-server-kill": _component_kill("api-server"),
    "celery-worker-kill": _component_kill(CELERY_WORKER),
    "postgres-restart": _server_restart("postgres"),
    "redis-restart": _server_restart("redis"),
}


def supervise(stack: Stack, stop: threading.Event, every_s: float = 1.0) -> None:
    """The compose file's `restart: always` for the Airflow processes: one that exits (a crash, or
    its database gone) is started again within `every_s`, and noted in `stack.restarted`."""
    while not stop.wait(every_s):
        try:
            for name in stack.chaos.stack.restart_exited():
                log.warning("supervisor: %s had exited: started again", name)
                stack.restarted.append((time.time(), name))
        except Exception:  # noqa: BLE001 (the supervisor must outlive any one failed start)
            log.exception("supervisor")


# --- watching the cluster ---------------------------------------------------------------------------


@dataclass
class Seen:
    """One chaos object of ours as sampled: when it was there, and when it was planned to end."""

    name: str
    run_key: str
    created: float
    duration_s: float | None
    first: float
    last: float
    gone: float | None = None
    pods: set[str] = field(default_factory=set)  # "namespace/name" of every pod its records name
    injected: bool = False  # a record was seen Injected
    recovered: float | None = None  # since when no record is Injected any more (the fault no longer applied)
    tier: str = ""
    approvals: list[dict] = field(default_factory=list)  # the verified approvals inject wrote on the object

    def note_records(self, records: list[dict], now: float) -> None:
        if any(r.get("phase") == "Injected" for r in records):
            self.injected, self.recovered = True, None
        elif self.injected and self.recovered is None:
            self.recovered = now

    def applied_until(self, now: float) -> float:
        """When the fault stopped being applied: Chaos Mesh recovered every pod, or the object went
        (a finished experiment's object may stay until the run's teardown deletes it; the fault does not)."""
        return min(t for t in (self.recovered, self.gone, now) if t is not None)


def _approvals(text: str | None) -> list[dict]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [a for a in value if isinstance(a, dict)] if isinstance(value, list) else []


class Timeline(FaultWatch):
    """FaultWatch sampling every 100 ms on a hook of its own, recording each object's times too."""

    def __init__(self, chaos: Chaos) -> None:
        super().__init__(chaos)
        self.hook = ChaosMeshHook()
        self.seen: dict[str, Seen] = {}
        self.emptied_at: float | None = None  # the last time the cluster went from some to none
        self.errors = 0
        self.labels: dict[str, dict[str, str]] = {}  # each pod a fault's records named, as first seen

    def _note_pods(self, seen: Seen, obj: dict) -> None:
        records = ((obj.get("status") or {}).get("experiment") or {}).get("containerRecords") or []
        seen.note_records(records, time.time())
        for pod_id in (r["id"] for r in records if "id" in r):
            seen.pods.add(pod_id)
            if pod_id not in self.labels:
                namespace, name = pod_id.split("/", 1)
                pod = self.hook.get_pod(namespace, name)
                self.labels[pod_id] = dict((pod.metadata.labels or {}) if pod is not None else {})

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                objects = [o for kind in ChaosKind for o in self.hook.list(kind, None, OWNED_SELECTOR)]
            except Exception as error:  # a failed list is a gap in the timeline, not the end of it
                self.errors += 1
                log.warning("cluster sample failed: %s", error)
                time.sleep(0.1)
                continue
            now = time.time()
            active = [o for o in objects if not o["metadata"].get("deletionTimestamp")]
            self.most = max(self.most, len(active))
            names = {o["metadata"]["name"] for o in objects}
            self.names.update(names)
            for obj in objects:
                meta = obj["metadata"]
                seen = self.seen.get(meta["name"])
                if seen is None:
                    duration = obj.get("spec", {}).get("duration")
                    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
                    seen = self.seen[meta["name"]] = Seen(
                        meta["name"], labels.get(LABEL_RUN_KEY, ""),
                        dt.datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00")).timestamp(),
                        parse_go_duration(duration) if duration else None, now, now,
                        tier=labels.get(LABEL_TIER, ""), approvals=_approvals(annotations.get(ANNOTATION_APPROVALS)))
                else:
                    seen.last, seen.gone = now, None
                self._note_pods(seen, obj)
            for seen in self.seen.values():
                if seen.name not in names and seen.gone is None:
                    seen.gone = now
            if not objects and any(s.gone == now for s in self.seen.values()):
                self.emptied_at = now
            time.sleep(0.1)

    def present(self) -> bool:
        return any(s.gone is None for s in self.seen.values())


# --- one row ----------------------------------------------------------------------------------------


@dataclass
class Row:
    fault: str
    step: str
    hit: str = "-"
    state: str = "-"
    safe_s: float | None = None
    over_s: float | None = None  # the most any fault lasted past max(break, its planned end)
    outlived: list[str] = field(default_factory=list)
    most: int = 0
    run_objects: int = 0
    leftovers: list[str] = field(default_factory=list)
    result_json: bool = False
    report_html: bool = False
    failed: dict[str, str] = field(default_factory=dict)
    protected: list[str] = field(default_factory=list)  # pods a fault touched that the tier may not
    breach_late: list[str] = field(default_factory=list)  # a breach whose fault outlived it by more than P1
    outside_window: list[str] = field(default_factory=list)  # a fault whose span the tier's window refuses
    unapproved: list[str] = field(default_factory=list)  # a fault without the verified approvals its tier needs
    stop_late: list[str] = field(default_factory=list)  # a fault still applied more than STOP_FAULT_BOUND_S after a stop
    restarted: list[str] = field(default_factory=list)  # Airflow processes that exited during the row, started again
    note: str = ""

    @property
    def lost_result(self) -> bool:
        return not (self.result_json and self.report_html)

    @property
    def double(self) -> bool:
        return self.run_objects > 1


def first_error(chaos: Chaos, run_id: str, ti: dict, dag_id: str = DAG_ID) -> str:
    """The first error line of the task's last try (the exception, else an ERROR event)."""
    try:
        text = chaos.admin.task_log(dag_id, run_id, ti["task_id"], max(ti["try_number"], 1), ti.get("map_index", -1))
    except Exception as error:  # noqa: BLE001 - the row says the log was unreadable
        return f"(log unreadable: {error})"
    lines = text.splitlines()
    # The client writes a task's exception as "    ExcType: value" under its event; a value ending in
    # ":" (a list of reasons follows) gets its next line too.
    for i, line in enumerate(lines):
        if line.startswith("    ") and not line.startswith("    at ") and ": " in line:
            reason = line.strip()
            if reason.endswith(":") and i + 1 < len(lines):
                reason += " " + lines[i + 1].strip()
            return reason[:240]
    for line in lines:
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1].lower() in ("error", "critical"):
            return parts[2][:240]
    return lines[-1][:240] if lines else "(empty log)"


def protected_touched(chaos: Chaos, timeline: Timeline, key: str) -> list[str]:
    """The pods the run's faults named in their records that the low tier may not touch (outside
    the target namespaces, or of a protected service its level forbids), by the labels they had."""
    policy = policy_of(chaos.include)
    return [f"{pod_id}: {'; '.join(reasons)}"
            for seen in timeline.seen.values() if seen.run_key == key for pod_id in sorted(seen.pods)
            if (reasons := forbidden_reasons(policy, Tier.LOW, pod_id.split("/", 1)[0], timeline.labels.get(pod_id, {})))]


def breaches_not_removed_in_time(chaos: Chaos, run_id: str, timeline: Timeline, key: str, p1: float) -> list[str]:
    """A breach the monitor recorded (the run's result in XCom) whose fault was still on the cluster
    more than P1 after it: the kill switch's promise."""
    result = read_result(chaos.admin, DAG_ID, run_id) or {}  # none: counted as a lost result
    breach = ((result.get("monitor") or {}).get("breach") or {}) if (result.get("monitor") or {}).get("status") == "breach" else {}
    if "at" not in breach:
        return []
    return [f"{seen.name} gone {gone - breach['at']:.1f} s after the breach (P1 {p1:.1f} s)"
            for seen in timeline.seen.values() if seen.run_key == key
            if (gone := seen.gone if seen.gone is not None else time.time()) - breach["at"] > p1]


def injected_outside_window(chaos: Chaos, timeline: Timeline, key: str, *, manual: bool) -> list[str]:
    """The run's faults whose whole planned span, from their creation, the tier's window refuses
    (judged as the window guard does: a manual run may use its tier's override)."""
    policy = policy_of(chaos.include)
    found = []
    for seen in timeline.seen.values():
        if seen.run_key != key or seen.tier not in {t.value for t in Tier}:
            continue
        start = dt.datetime.fromtimestamp(seen.created, dt.timezone.utc)
        verdict = span_verdict(policy, Tier(seen.tier), start, start + dt.timedelta(seconds=seen.duration_s or 0.0), manual=manual)
        if not verdict.allowed:
            found.append(f"{seen.name} ({seen.tier}): {verdict.reason}")
    return found + [f"{seen.name}: no tier label" for seen in timeline.seen.values() if seen.run_key == key and not seen.tier]


def injected_without_approvals(chaos: Chaos, timeline: Timeline, key: str) -> list[str]:
    """The run's faults whose object does not carry an approval for every role its tier needs (a
    tier without roles: the policy's own approval), as inject verified them in Airflow's records."""
    policy = policy_of(chaos.include)
    found = []
    for seen in timeline.seen.values():
        if seen.run_key != key:
            continue
        roles = list(policy.tiers[Tier(seen.tier)].approvals) if seen.tier in {t.value for t in Tier} else ["?"]
        given = {a.get("role") for a in seen.approvals if a.get("option") == APPROVE}
        missing = [role for role in roles or ["policy"] if role not in given]
        if missing:
            found.append(f"{seen.name}: no verified approval for {', '.join(missing)} (annotation: {seen.approvals})")
    return found


def outliving_the_stop(timeline: Timeline, key: str, stopped_at: float) -> list[str]:
    """The run's faults still applied more than STOP_FAULT_BOUND_S after the emergency stop was pressed."""
    return [f"{seen.name} applied until {ended - stopped_at:.1f} s after the stop"
            for seen in timeline.seen.values() if seen.run_key == key
            if (ended := seen.applied_until(time.time())) - stopped_at > STOP_FAULT_BOUND_S]


def stored_files(stack: Stack, run_id: str) -> set[str]:
    """The names of the files stored for the run, wherever the policy puts reports (a folder, or S3)."""
    if stack.s3 is not None and policy_of(stack.chaos.include).reports.base_url.startswith("s3://"):
        return {key.rsplit("/", 1)[-1] for key in stack.s3.keys() if f"/{DAG_ID}/" in f"/{key}" and f"/{run_id}/" in key}
    return {f.name for folder in stack.chaos.reports.glob(f"{DAG_ID}/*/*/{run_id}") for f in folder.iterdir()}


def leftovers(chaos: Chaos, hook: ChaosMeshHook) -> list[str]:
    found = [f"{o['kind']}/{o['metadata']['name']}" for o in chaos.objects() if not o["metadata"].get("deletionTimestamp")]
    if (holder := chaos.lock_holder()) is not None:
        found.append(f"lock held by {holder}")
    found += [f"lease/{lease.metadata.name}" for lease in hook.list_leases(label_selector=OWNED_SELECTOR)
              if LABEL_HEARTBEAT_OF in (lease.metadata.labels or {})]
    if HaltFlag(hook, NAMESPACE).state().halted:
        found.append(HALT_SET)
    return found


def put_back(stack: Stack, hook: ChaosMeshHook, undo: Undo | None) -> None:
    """Undo the break and delete whatever the run left, so the next row starts clean."""
    if undo is not None:
        undo()
    stack.sandbox.api_faults.clear()
    stack.sandbox.start_prometheus()
    if stack.prometheus is not None:
        stack.prometheus.set("pass")
    for server in (stack.postgres, stack.redis):
        if server is not None:
            server.start()  # nothing if it is up
    if stack.s3 is not None:
        stack.s3.start()
    stack.chaos.slack.start()
    stack.chaos.smtp.start()
    for name in stack.chaos.stack.restart_exited():
        log.warning("%s had exited: started again", name)
    for lease in hook.list_leases(label_selector=OWNED_SELECTOR):
        if LABEL_HEARTBEAT_OF in (lease.metadata.labels or {}):
            hook.delete_lease(lease.metadata.name, lease.metadata.namespace, lease.metadata.resource_version)
    try:
        clean_up_after(stack.chaos, "the row")  # objects, lock, halt: removed, then asserted absent
    except AssertionError:
        pass  # already recorded in the row's leftovers
    wait_for_empty(stack.chaos, 120)


def wait_for_empty(chaos: Chaos, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while chaos.objects():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def one_row(stack: Stack, fault: str, step: str, experiment: str, bound_s: float) -> Row:
    chaos, hook, row = stack.chaos, ChaosMeshHook(), Row(fault, step)
    wait_steady(policy_of(chaos.include), timeout=300)
    undo: Undo | None = None
    broke_at: float | None = None
    try:
        with Timeline(chaos) as timeline:
            triggered_at = time.time()
            run_id = chaos.admin.trigger(DAG_ID, conf={"experiment": experiment})
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while broke_at is None and time.monotonic() < deadline:
                states = chaos.admin.task_states(DAG_ID, run_id)
                if (hit := STEPS[step](states)) is not None:
                    row.hit = hit
                    broke_at = time.time()
                    undo = FAULTS[fault](stack)
                    log.info("%s at %s (%s) of %s", fault, step, hit, run_id)
                elif chaos.admin.run_state(DAG_ID, run_id) in ("success", "failed"):
                    row.note = "step not reached: the run ended first"
                    break
                else:
                    time.sleep(0.2)
            try:
                row.state = chaos.admin.wait_for_run(DAG_ID, run_id, timeout=max(30.0, deadline - time.monotonic()))
            except AssertionError as error:  # AirflowWaitTimeout: the run never ended
                row.state, row.note = "timeout", str(error).splitlines()[0]
            # A stop's halt is the state it must leave (sticky until someone resumes), not a leftover.
            row.leftovers = [x for x in leftovers(chaos, hook) if not (fault in STOPS and x == HALT_SET)]
            # Go on sampling until the cluster is empty, at most as long as the bound allows past now.
            settle = time.monotonic() + bound_s + 10
            while timeline.present() and time.monotonic() < settle:
                time.sleep(0.2)
        row.most = timeline.most
        key = run_key(DAG_ID, run_id)
        row.run_objects = sum(1 for s in timeline.seen.values() if s.run_key == key)
        if broke_at is not None:
            empty_at = broke_at if not timeline.seen or timeline.emptied_at is None else max(broke_at, timeline.emptied_at)
            row.safe_s = None if timeline.present() else empty_at - broke_at
            for seen in timeline.seen.values():
                planned_end = seen.created + (seen.duration_s or 0.0)
                ended = seen.applied_until(time.time())
                over = ended - max(broke_at, planned_end)
                row.over_s = over if row.over_s is None else max(row.over_s, over)
                if over > bound_s:
                    row.outlived.append(f"{seen.name} applied until {over:.1f} s after max(break, planned end)"
                                        f"{'' if seen.gone or seen.recovered else ' (still applied)'}")
        row.protected = protected_touched(chaos, timeline, key)
        row.breach_late = breaches_not_removed_in_time(chaos, run_id, timeline, key, p1_s(chaos))
        row.outside_window = injected_outside_window(chaos, timeline, key, manual=True)  # triggered by a person, through the REST API
        row.unapproved = injected_without_approvals(chaos, timeline, key)
        if fault in STOPS and broke_at is not None:
            row.stop_late = outliving_the_stop(timeline, key, broke_at)
        for ti in chaos.admin.task_instances(DAG_ID, run_id):
            if ti["state"] == "failed":
                row.failed[ti["task_id"]] = first_error(chaos, run_id, ti)
        row.restarted = [f"{name} at {at - broke_at:+.1f} s" if broke_at else name
                         for at, name in stack.restarted if at >= triggered_at]
        stored = stored_files(stack, run_id)
        row.result_json, row.report_html = "result.json" in stored, "report.html" in stored
    finally:
        put_back(stack, hook, undo)
    return row


def invariants(rows: list[Row]) -> dict[str, int]:
    return {
        "concurrent faults (rows with more than one fault of ours at once)": sum(r.most > 1 for r in rows),
        "faults outliving max(P1, watchdog bound)": sum(len(r.outlived) for r in rows),
        "leftovers": sum(len(r.leftovers) for r in rows),
        "lost results (result.json or report.html missing)": sum(r.lost_result for r in rows),
        "double injections (runs with more than one object)": sum(r.double for r in rows),
        "protected pods touched": sum(len(r.protected) for r in rows),
        "breaches not removed within P1": sum(len(r.breach_late) for r in rows),
        "injections outside the window's span": sum(len(r.outside_window) for r in rows),
        "injections without verified approvals": sum(len(r.unapproved) for r in rows),
        f"faults outliving a stop by more than {STOP_FAULT_BOUND_S:g} s": sum(len(r.stop_late) for r in rows),
    }
