"""Reliability campaign: real low-tier runs with one fault injected into our own stack at a chosen step.

Run: .venv/bin/python benchmarks/campaign.py [--faults kube-delete-500,triggerer-kill] [--steps during-monitor]
         [--repeat 1] [--executor LocalExecutor|CeleryExecutor] [--experiment cache-slow-quick] [--keep]

Starts the sandbox (1 s scrape) and a real Airflow, both as the end-to-end tests do
(tests/e2e: `chaos_on_airflow`, the include of `make_include` with its fast clocks and short
experiments), its metadata database (and with CeleryExecutor its Redis broker) on a server of the
campaign's own (tests/e2e/stack_services.py: rows restart them; the machine's serve others), the
dead-man watchdog beside them (in this process, default grace and interval, as `chaosctl watchdog`
would run), and a supervisor doing what the compose file's `restart: always` does: an Airflow
process that exits is started again within a second (the row lists them). For each (fault, step) pair it triggers `chaos_low_risk`
(no human approval), polls the task states through the REST API until the step is reached, breaks
one part of our stack (own_stack.FAULTS), lets the run finish and records, one table row per run:

- safe: seconds from the break until no chaos object of ours is on the cluster (the cluster is
  sampled every 100 ms; the last time it went empty),
- the run's final state and each failed task with the first error line of its log,
- leftovers once the run is over: chaos objects of ours not being deleted, the experiment lock
  held, heartbeat Leases, the halt flag set,
- whether result.json and report.html were written (reports go to S3, moto's server, as in
  production; the s3-down fault takes it off the network),
- double injections: more than one fault of ours at once, or more than one object with the run's
  run-key label,
- whether a fault outlived its bound: still applied (a record Injected, the object there) later
  than max(break, its creation + its duration) + max(P1, WATCHDOG_BOUND_S), i.e. the break may
  not extend a fault past the later of the break and its planned end by more than the slower of
  the two safety nets (P1 and WATCHDOG_BOUND_S are in tests/e2e/own_stack.py); a finished
  experiment's object left for the run's teardown to delete is not an applied fault,
- protected pods touched: a pod the fault's records name that the low tier may not touch,
- breaches not removed within P1: a breach the monitor recorded whose fault stood longer after it.

- injections outside the window's span, injections without verified approvals (from the
  object's approvals annotation), and faults still applied 5 s after an emergency stop (the
  `emergency-stop` row).

The rows' machinery is tests/e2e/own_stack.py; tests/e2e/test_own_stack_faults.py runs six of
them in CI. Then the safety invariants summed over every row; each must be 0. The exit status
is 1 when any is violated. Between rows everything is put back (API faults cleared, Prometheus and
Airflow processes running, leftovers deleted, lock released, halt cleared) and the platform
waited on until steady. The state folder (sandbox, Airflow home and logs, reports, this campaign's
log) is removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

# Airflow reads its configuration on import: this process (hooks, the watchdog) gets a home of its
# own, removed when it exits.
if "AIRFLOW_HOME" not in os.environ:
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="chaos-campaign-airflow-")
    atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], ignore_errors=True)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# The e2e harness pieces (tests.e2e) are not installed like sandbox/ and plugins/: import them from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from chaos_engineering import watchdog  # noqa: E402
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook  # noqa: E402
from sandbox.runner import Sandbox  # noqa: E402
from tests.e2e.own_stack import DAG_ID, FAULTS, STEPS, WATCHDOG_BOUND_S, Row, Stack, invariants, one_row, p1_s, supervise  # noqa: E402
from tests.e2e.stack_services import PostgresServer, PrometheusProxy, RedisServer  # noqa: E402
from tests.e2e.test_tier_runs import NAMESPACE, REPORTS_BUCKET, chaos_on_airflow, reports_in  # noqa: E402
from tests.integration.receivers import S3Server  # noqa: E402

log = logging.getLogger("campaign")


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
                   "protected", "breach late", "outside window", "unapproved", "stop late", "result.json", "report.html", "failed tasks"):
        table.add_column(column)
    for r in rows:
        table.add_row(r.fault, r.step, r.hit, r.state, "never" if r.safe_s is None and r.hit != "-" else
                      (f"{r.safe_s:.1f}" if r.safe_s is not None else "-"),
                      f"{r.over_s:.1f}" if r.over_s is not None else "-", str(len(r.outlived)), str(r.most),
                      str(r.run_objects), str(len(r.leftovers)), str(len(r.protected)), str(len(r.breach_late)),
                      str(len(r.outside_window)), str(len(r.unapproved)), str(len(r.stop_late)),
                      "yes" if r.result_json else "NO",
                      "yes" if r.report_html else "NO", ", ".join(r.failed) or "-")
    console.print(table)
    for r in rows:
        details = [f"  {t}: {reason}" for t, reason in r.failed.items()]
        details += [f"  leftover: {x}" for x in r.leftovers] + [f"  outlived: {x}" for x in r.outlived]
        details += [f"  protected pod touched: {x}" for x in r.protected] + [f"  breach not removed in time: {x}" for x in r.breach_late]
        details += [f"  outside the window: {x}" for x in r.outside_window] + [f"  unapproved: {x}" for x in r.unapproved]
        details += [f"  outlived the stop: {x}" for x in r.stop_late]
        details += [f"  restarted by the supervisor: {x}" for x in r.restarted]
        details += [f"  note: {r.note}"] if r.note else []
        if details:
            console.print(f"[bold]{r.fault} at {r.step}[/bold]\n" + "\n".join(details), highlight=False, markup=True)


@contextlib.contextmanager
def campaign_stack(state: Path, console: Console, *, executor: str = "LocalExecutor", outage_s: float = 30.0,
                   watchdog_beside: bool = True) -> Iterator[Stack]:
    """The sandbox (1 s scrape), a real Airflow with reports in S3 (moto's server) and the watchdog
    beside them, in `state`; this process logs to state/campaign.log. Stopped on exit."""
    # Everything this process logs (hooks, pre-flight reads, the watchdog) to a file: the console keeps the rows.
    logging.basicConfig(filename=state / "campaign.log", level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console.print(f"state folder {state}")
    sandbox = Sandbox.start(state / "sandbox", scrape_interval="1s")
    stop_watchdog, stop_supervisor = threading.Event(), threading.Event()
    sweeper: threading.Thread | None = None
    servers = contextlib.ExitStack()
    try:
        # Airflow's database and broker on servers of the campaign's own: rows restart them.
        postgres = servers.enter_context(PostgresServer())
        redis = servers.enter_context(RedisServer()) if executor == "CeleryExecutor" else None
        # Airflow reads Prometheus through a proxy that rows make slow, trickling, empty or NaN.
        prometheus = servers.enter_context(PrometheusProxy(sandbox.prometheus_url))
        connections = {
            "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps({"conn_type": "kubernetes", "extra": {
                "kube_config_path": str(sandbox.kubeconfig_path), "namespace": NAMESPACE}}),
            "AIRFLOW_CONN_PROMETHEUS_DEFAULT": json.dumps({"conn_type": "http", "host": prometheus.url}),
            "AIRFLOW_CONN_PUSHGATEWAY_DEFAULT": json.dumps({"conn_type": "http", "host": sandbox.pushgateway_url}),
            # The disaster-recovery drill's canary probe (benchmarks/load.py runs drills too).
            "AIRFLOW_CONN_DR_PROBE_DEFAULT": json.dumps({"conn_type": "http", "host": sandbox.metrics_url}),
        }
        os.environ.update(connections)
        with S3Server(REPORTS_BUCKET) as s3, chaos_on_airflow(
                StateFolder(state), sandbox, connections, executor=executor, s3=s3,
                database_url=postgres.url, broker_url=redis.url if redis else None) as chaos:
            console.print(f"Airflow ({executor}) up in {chaos.stack.startup_seconds:.0f} s; home {chaos.stack.home}")
            # Reports go to S3 (moto's server), as in production: s3-down breaks their storage.
            chaos.policy(**reports_in(s3))
            if watchdog_beside:
                sweeper = threading.Thread(target=watchdog.run, args=(ChaosMeshHook(),), daemon=True, kwargs={
                    "stop": stop_watchdog, "pushgateway_conn_id": "pushgateway_default"})
                sweeper.start()
            console.print(f"P1 {p1_s(chaos):.1f} s, watchdog bound {WATCHDOG_BOUND_S:.0f} s")
            stack = Stack(sandbox, chaos, outage_s, s3, postgres, redis, prometheus)
            supervisor = threading.Thread(target=supervise, args=(stack, stop_supervisor), daemon=True)
            supervisor.start()
            try:
                yield stack
            finally:
                stop_supervisor.set()
                supervisor.join(60)
            stop_watchdog.set()
    finally:
        stop_watchdog.set()
        if sweeper is not None:
            sweeper.join(30)
        sandbox.stop()
        servers.close()


def guarded_row(stack: Stack, fault: str, step: str, experiment: str, bound_s: float) -> Row:
    """One row; an error of the campaign itself becomes a row saying so: one must not hide the others."""
    try:
        return one_row(stack, fault, step, experiment, bound_s)
    except Exception as error:  # noqa: BLE001
        log.exception("row %s at %s", fault, step)
        return Row(fault, step, note=f"campaign error: {error}".splitlines()[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}")
    parser.add_argument("--steps", default="during-monitor", help=f"comma-separated, of {', '.join(STEPS)}")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--executor", default="LocalExecutor", choices=("LocalExecutor", "CeleryExecutor"))
    parser.add_argument("--experiment", default="cache-slow-quick", help="a short low-tier experiment of the e2e include")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds a prometheus-* or s3-down row keeps its part broken")
    parser.add_argument("--no-watchdog", action="store_true", help="run without the dead-man watchdog")
    parser.add_argument("--keep", action="store_true", help="keep the state folder (logs, reports)")
    args = parser.parse_args(argv)
    faults, steps = args.faults.split(","), args.steps.split(",")
    unknown = [f for f in faults if f not in FAULTS] + [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown fault or step {unknown}: faults are {list(FAULTS)}, steps {list(STEPS)}")

    state = Path(tempfile.mkdtemp(prefix="chaos-campaign-"))
    console = Console(width=None if sys.stdout.isatty() else 200)
    rows: list[Row] = []
    bound_s = WATCHDOG_BOUND_S  # max(P1, watchdog bound) once the policy is read
    try:
        with campaign_stack(state, console, executor=args.executor, outage_s=args.outage, watchdog_beside=not args.no_watchdog) as stack:
            bound_s = max(p1_s(stack.chaos), WATCHDOG_BOUND_S)
            for _ in range(args.repeat):
                for fault in faults:
                    for step in steps:
                        console.print(f"[{dt.datetime.now():%H:%M:%S}] {fault} at {step} ...", highlight=False)
                        rows.append(guarded_row(stack, fault, step, args.experiment, bound_s))
                        r = rows[-1]
                        console.print(f"  run {r.state}, safe {r.safe_s}, leftovers {r.leftovers}, failed {list(r.failed)}",
                                      highlight=False)
    finally:
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
