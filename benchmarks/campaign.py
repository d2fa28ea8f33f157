"""Reliability campaign: real low-tier runs with one fault injected into our own stack at a chosen step.

Run: .venv/bin/python benchmarks/campaign.py [--faults kube-delete-500,triggerer-kill] [--steps during-monitor]
         [--repeat 1] [--executor LocalExecutor|CeleryExecutor] [--experiment cache-slow-quick] [--keep]

Starts the sandbox (1 s scrape) and a real Airflow on PostgreSQL, both as the end-to-end tests do
(tests/e2e: `chaos_on_airflow`, the include of `make_include` with its fast clocks and short
experiments), and the dead-man watchdog beside them (in this process, default grace and interval,
as `chaosctl watchdog` would run). For each (fault, step) pair it triggers `chaos_low_risk`
(no human approval), polls the task states through the REST API until the step is reached, breaks
one part of our stack (FAULTS below), lets the run finish and records, one table row per run:

- safe: seconds from the break until no chaos object of ours is on the cluster (the cluster is
  sampled every 100 ms; the last time it went empty),
- the run's final state and each failed task with the first error line of its log,
- leftovers once the run is over: chaos objects of ours not being deleted, the experiment lock
  held, heartbeat Leases, the halt flag set,
- whether result.json and report.html were written to the reports folder,
- double injections: more than one fault of ours at once, or more than one object with the run's
  run-key label,
- whether a fault outlived its bound: still present later than
  max(break, its creation + its duration) + max(P1, WATCHDOG_BOUND_S), i.e. the break may not
  extend a fault past the later of the break and its planned end by more than the slower of the
  two safety nets (P1 and WATCHDOG_BOUND_S are defined below).

Then the safety invariants summed over every row. Targets: 0 leftovers, 0 double injections (and
0 concurrent faults), 0 lost results, no fault outliving max(P1, watchdog bound). The exit status
is 1 when any is violated. Between rows everything is put back (API faults cleared, Prometheus and
Airflow processes running, leftovers deleted, lock released, halt cleared) and the platform
waited on until steady. The state folder (sandbox, Airflow home and logs, reports, this campaign's
log) is removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Airflow reads its configuration on import: this process (hooks, the watchdog) gets a home of its own.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="chaos-campaign-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# The e2e harness pieces (tests.e2e) are not installed like sandbox/ and plugins/: import them from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from chaos_engineering import watchdog  # noqa: E402
from chaos_engineering.chaosmesh.constants import ChaosKind  # noqa: E402
from chaos_engineering.chaosmesh.duration import parse_go_duration  # noqa: E402
from chaos_engineering.halt import HaltFlag  # noqa: E402
from chaos_engineering.heartbeat import LABEL_HEARTBEAT_OF  # noqa: E402
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook  # noqa: E402
from chaos_engineering.render import LABEL_RUN_KEY, OWNED_SELECTOR, run_key  # noqa: E402
from sandbox.runner import Sandbox  # noqa: E402
from sandbox.steady import wait_steady  # noqa: E402
from tests.e2e.test_tier_runs import NAMESPACE, Chaos, FaultWatch, chaos_on_airflow, clean_up_after, policy_of  # noqa: E402

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
    """P1, the monitor's own bound: it removes the fault after `max_failed_reads` failed checks,
    one every `check_interval`, plus the deletion (DELETION_S)."""
    safety = policy_of(chaos.include).safety
    return safety.check_interval * safety.max_failed_reads + DELETION_S


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


def kube_delete_500(stack: Stack) -> Undo:
    """The Kubernetes API answers the next three DELETEs of chaos objects with 500."""
    stack.sandbox.api_faults.inject(r".*/(podchaos|networkchaos|stresschaos|iochaos|httpchaos)/.*", "error",
                                    verb="DELETE", status=500, times=3)
    return stack.sandbox.api_faults.clear


def kube_lease_hang(stack: Stack) -> Undo:
    """The next three Lease writes (lock, heartbeats, halt) hang 30 s."""
    stack.sandbox.api_faults.inject(r"/apis/coordination\.k8s\.io/v1/namespaces/[^/]+/leases/.*", "hang",
                                    verb="PUT", seconds=30, times=3)
    return stack.sandbox.api_faults.clear


def _component_kill(name: str) -> Callable[[Stack], Undo]:
    def kill(stack: Stack) -> Undo:
        stack.chaos.stack.restart(name)
        return lambda: None

    kill.__doc__ = f"SIGKILL the {name} (its process group) and start it again at once."
    return kill


FAULTS: dict[str, Callable[[Stack], Undo]] = {
    "prometheus-stop": prometheus_stop,
    "kube-delete-500": kube_delete_500,
    "kube-lease-hang": kube_lease_hang,
    "triggerer-kill": _component_kill("triggerer"),
    "scheduler-kill": _component_kill("scheduler"),
}


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


class Timeline(FaultWatch):
    """FaultWatch sampling every 100 ms on a hook of its own, recording each object's times too."""

    def __init__(self, chaos: Chaos) -> None:
        super().__init__(chaos)
        self.hook = ChaosMeshHook()
        self.seen: dict[str, Seen] = {}
        self.emptied_at: float | None = None  # the last time the cluster went from some to none
        self.errors = 0

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
                    self.seen[meta["name"]] = Seen(
                        meta["name"], (meta.get("labels") or {}).get(LABEL_RUN_KEY, ""),
                        dt.datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00")).timestamp(),
                        parse_go_duration(duration) if duration else None, now, now)
                else:
                    seen.last, seen.gone = now, None
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
    note: str = ""

    @property
    def lost_result(self) -> bool:
        return not (self.result_json and self.report_html)

    @property
    def double(self) -> bool:
        return self.run_objects > 1


def first_error(chaos: Chaos, run_id: str, ti: dict) -> str:
    """The first error line of the task's last try (the exception, else an ERROR event)."""
    try:
        text = chaos.admin.task_log(DAG_ID, run_id, ti["task_id"], max(ti["try_number"], 1), ti.get("map_index", -1))
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


def leftovers(chaos: Chaos, hook: ChaosMeshHook) -> list[str]:
    found = [f"{o['kind']}/{o['metadata']['name']}" for o in chaos.objects() if not o["metadata"].get("deletionTimestamp")]
    if (holder := chaos.lock_holder()) is not None:
        found.append(f"lock held by {holder}")
    found += [f"lease/{lease.metadata.name}" for lease in hook.list_leases(label_selector=OWNED_SELECTOR)
              if LABEL_HEARTBEAT_OF in (lease.metadata.labels or {})]
    if HaltFlag(hook, NAMESPACE).state().halted:
        found.append("halt set")
    return found


def put_back(stack: Stack, hook: ChaosMeshHook, undo: Undo | None) -> None:
    """Undo the break and delete whatever the run left, so the next row starts clean."""
    if undo is not None:
        undo()
    stack.sandbox.api_faults.clear()
    stack.sandbox.start_prometheus()
    for name, process in stack.chaos.stack.processes.items():
        if process.poll() is not None:
            log.warning("%s had exited (%s): started again", name, process.returncode)
            stack.chaos.stack.restart(name)
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
            row.leftovers = leftovers(chaos, hook)
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
                gone = seen.gone if seen.gone is not None else time.time()
                over = gone - max(broke_at, planned_end)
                row.over_s = over if row.over_s is None else max(row.over_s, over)
                if gone > max(broke_at, planned_end) + bound_s:
                    row.outlived.append(f"{seen.name} gone {gone - max(broke_at, planned_end):.1f} s after "
                                        f"max(break, planned end){'' if seen.gone else ' (still there)'}")
        for ti in chaos.admin.task_instances(DAG_ID, run_id):
            if ti["state"] == "failed":
                row.failed[ti["task_id"]] = first_error(chaos, run_id, ti)
        folders = list(chaos.reports.glob(f"{DAG_ID}/*/*/{run_id}"))
        row.result_json = any((f / "result.json").is_file() for f in folders)
        row.report_html = any((f / "report.html").is_file() for f in folders)
    finally:
        put_back(stack, hook, undo)
    return row


# --- the campaign -----------------------------------------------------------------------------------


class StateFolder:
    """What `chaos_on_airflow` asks of pytest's tmp_path_factory: fresh numbered folders, here in one place."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mktemp(self, name: str) -> Path:
        for i in range(1000):
            path = self.root / f"{name}{i}"
            if not path.exists():
                path.mkdir(parents=True)
                return path
        raise RuntimeError(f"{self.root}: no free folder for {name}")


def print_table(console: Console, rows: list[Row], bound_s: float) -> None:
    table = Table(title=f"reliability campaign ({DAG_ID}; bound max(P1, watchdog) = {bound_s:.0f} s)")
    for column in ("fault", "step", "hit", "run", "safe s", "over s", "outlived", "max at once", "run objects", "leftovers",
                   "result.json", "report.html", "failed tasks"):
        table.add_column(column)
    for r in rows:
        table.add_row(r.fault, r.step, r.hit, r.state, "never" if r.safe_s is None and r.hit != "-" else
                      (f"{r.safe_s:.1f}" if r.safe_s is not None else "-"),
                      f"{r.over_s:.1f}" if r.over_s is not None else "-", str(len(r.outlived)), str(r.most),
                      str(r.run_objects), str(len(r.leftovers)), "yes" if r.result_json else "NO",
                      "yes" if r.report_html else "NO", ", ".join(r.failed) or "-")
    console.print(table)
    for r in rows:
        details = [f"  {t}: {reason}" for t, reason in r.failed.items()]
        details += [f"  leftover: {x}" for x in r.leftovers] + [f"  outlived: {x}" for x in r.outlived]
        details += [f"  note: {r.note}"] if r.note else []
        if details:
            console.print(f"[bold]{r.fault} at {r.step}[/bold]\n" + "\n".join(details), highlight=False, markup=True)


def invariants(rows: list[Row]) -> dict[str, int]:
    return {
        "concurrent faults (rows with more than one fault of ours at once)": sum(r.most > 1 for r in rows),
        "faults outliving max(P1, watchdog bound)": sum(len(r.outlived) for r in rows),
        "leftovers": sum(len(r.leftovers) for r in rows),
        "lost results (result.json or report.html missing)": sum(r.lost_result for r in rows),
        "double injections (runs with more than one object)": sum(r.double for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}")
    parser.add_argument("--steps", default="during-monitor", help=f"comma-separated, of {', '.join(STEPS)}")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--executor", default="LocalExecutor", choices=("LocalExecutor", "CeleryExecutor"))
    parser.add_argument("--experiment", default="cache-slow-quick", help="a short low-tier experiment of the e2e include")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds prometheus-stop keeps Prometheus down")
    parser.add_argument("--no-watchdog", action="store_true", help="run without the dead-man watchdog")
    parser.add_argument("--keep", action="store_true", help="keep the state folder (logs, reports)")
    args = parser.parse_args(argv)
    faults, steps = args.faults.split(","), args.steps.split(",")
    unknown = [f for f in faults if f not in FAULTS] + [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown fault or step {unknown}: faults are {list(FAULTS)}, steps {list(STEPS)}")

    state = Path(tempfile.mkdtemp(prefix="chaos-campaign-"))
    # Everything this process logs (hooks, pre-flight reads, the watchdog) to a file: the console keeps the rows.
    logging.basicConfig(filename=state / "campaign.log", level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(f"state folder {state}")
    sandbox = Sandbox.start(state / "sandbox", scrape_interval="1s")
    rows: list[Row] = []
    bound_s = WATCHDOG_BOUND_S  # max(P1, watchdog bound) once the policy is read
    stop_watchdog = threading.Event()
    sweeper: threading.Thread | None = None
    try:
        connections = {
            "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps({"conn_type": "kubernetes", "extra": {
                "kube_config_path": str(sandbox.kubeconfig_path), "namespace": NAMESPACE}}),
            "AIRFLOW_CONN_PROMETHEUS_DEFAULT": json.dumps({"conn_type": "http", "host": sandbox.prometheus_url}),
            "AIRFLOW_CONN_PUSHGATEWAY_DEFAULT": json.dumps({"conn_type": "http", "host": sandbox.pushgateway_url}),
        }
        os.environ.update(connections)
        with chaos_on_airflow(StateFolder(state), sandbox, connections, executor=args.executor) as chaos:
            console.print(f"Airflow ({args.executor}) up in {chaos.stack.startup_seconds:.0f} s; home {chaos.stack.home}")
            if not args.no_watchdog:
                sweeper = threading.Thread(target=watchdog.run, args=(ChaosMeshHook(),), daemon=True, kwargs={
                    "stop": stop_watchdog, "pushgateway_conn_id": "pushgateway_default"})
                sweeper.start()
            bound_s = max(p1_s(chaos), WATCHDOG_BOUND_S)
            console.print(f"P1 {p1_s(chaos):.1f} s, watchdog bound {WATCHDOG_BOUND_S:.0f} s")
            stack = Stack(sandbox, chaos, args.outage)
            for _ in range(args.repeat):
                for fault in faults:
                    for step in steps:
                        console.print(f"[{dt.datetime.now():%H:%M:%S}] {fault} at {step} ...", highlight=False)
                        try:
                            rows.append(one_row(stack, fault, step, args.experiment, bound_s))
                        except Exception as error:  # noqa: BLE001 - one broken row must not hide the others
                            log.exception("row %s at %s", fault, step)
                            rows.append(Row(fault, step, note=f"campaign error: {error}".splitlines()[0]))
                        r = rows[-1]
                        console.print(f"  run {r.state}, safe {r.safe_s}, leftovers {r.leftovers}, failed {list(r.failed)}",
                                      highlight=False)
            stop_watchdog.set()
    finally:
        stop_watchdog.set()
        if sweeper is not None:
            sweeper.join(30)
        sandbox.stop()
        if rows:
            print_table(console, rows, bound_s)
        if args.keep:
            console.print(f"state kept in {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)
    violations = invariants(rows)
    for name, count in violations.items():
        console.print(f"{name:>70}: {count}", highlight=False)
    return 1 if any(violations.values()) or any(r.note.startswith("campaign error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
