"""`chaosctl`: validate and render experiments; stop, resume, inspect and guard the cluster.

The cluster commands (`stop`, `resume`, `status`, `watchdog`) reach Kubernetes the way the DAGs
do, through the Airflow connection `kubernetes_default` (ChaosMeshHook):

- in a terminal: `--kubeconfig PATH [--context NAME]`, or an `AIRFLOW_CONN_KUBERNETES_DEFAULT`
  you already export (as the Airflow deployment does);
- as a Deployment in the cluster: nothing to set; with no such connection the hook uses the pod's
  service account (in-cluster config), or say `--in-cluster`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import yaml

from chaos_engineering.catalogue import Catalogue, ScenarioBook, experiment_files, is_scenario_file, load_catalogue, load_scenarios
from chaos_engineering.render import render_chaos_object, render_scenario_objects


def _validate(args: argparse.Namespace) -> int:
    from chaos_engineering.issues import github_annotation, junit_report

    catalogue, book = _load_for_validation([Path(p) for p in args.paths], args.policy)
    files = [*catalogue.files, *book.files]
    issues = [*catalogue.issues, *book.issues]
    if args.format == "json":
        print(
            json.dumps(
                {
                    "valid": not issues,
                    "files": [str(f) for f in files],
                    "experiments": sorted(catalogue.experiments),
                    "scenarios": sorted(book.scenarios),
                    "issues": [i.as_dict() for i in issues],
                },
                indent=2,
            )
        )
    elif args.format == "junit":
        print(junit_report([str(f) for f in [catalogue.policy_file, *files]], issues))
    else:
        for issue in issues:
            print(github_annotation(issue) if args.format == "github" else issue)
        verdict = "valid" if not issues else f"INVALID: {len(issues)} issue(s)"
        scenarios = f", {len(book.scenarios)} valid scenario(s)" if book.files else ""
        print(f"{len(files)} file(s), {len(catalogue.experiments)} valid experiment(s){scenarios}: {verdict}")
    return 0 if not issues else 1


def _load_for_validation(paths: list[Path], policy: Path | None) -> tuple[Catalogue, ScenarioBook]:
    """The catalogue and the scenarios; with `paths`, the files among them holding a scenario
    are read as scenarios, their steps named from those files' experiments and the catalogue's."""
    if not paths:
        catalogue = load_catalogue(None, policy)
        return catalogue, load_scenarios(catalogue)
    files = experiment_files(paths)
    scenario_files = [f for f in files if is_scenario_file(f)]
    catalogue = load_catalogue([f for f in files if f not in scenario_files], policy)
    if not scenario_files:
        return catalogue, ScenarioBook()
    named = replace(catalogue, experiments=load_catalogue(None, policy).experiments | catalogue.experiments)
    return catalogue, load_scenarios(named, scenario_files)


def _render(args: argparse.Namespace) -> int:
    catalogue = load_catalogue([Path(p) for p in args.catalogue] if args.catalogue else None, args.policy)
    experiment = catalogue.get(args.name)
    scenario = load_scenarios(catalogue).scenarios.get(args.name) if experiment is None and catalogue.policy is not None else None
    if (experiment is None and scenario is None) or catalogue.policy is None:
        for issue in catalogue.issues:
            print(issue, file=sys.stderr)
        print(f"no valid experiment or scenario named {args.name!r} (valid experiments: "
              f"{', '.join(sorted(catalogue.experiments)) or 'none'})", file=sys.stderr)
        return 1
    if scenario is not None:  # every step's object, in the order of the file
        manifests = list(render_scenario_objects(scenario, catalogue.policy, dag_id=args.dag_id, run_id=args.run_id).values())
    else:
        manifests = [render_chaos_object(experiment, catalogue.policy, dag_id=args.dag_id, run_id=args.run_id)]
    if args.output == "json":
        print(json.dumps(manifests[0] if len(manifests) == 1 else manifests, indent=2))
    else:
        print(yaml.safe_dump_all(manifests, sort_keys=False), end="")
    return 0


def _cluster(args: argparse.Namespace):
    """The hook and policy of a cluster command; `--kubeconfig`/`--context`/`--in-cluster` become
    this process's `kubernetes_default` connection (the one every Airflow component reads)."""
    import os

    from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
    from chaos_engineering.policy import load_policy

    extra = {k: v for k, v in (("kube_config_path", args.kubeconfig), ("cluster_context", args.context)) if v}
    if args.in_cluster:
        extra["in_cluster"] = True
    if extra:
        os.environ[f"AIRFLOW_CONN_{args.conn_id.upper()}"] = json.dumps({"conn_type": "kubernetes", "extra": extra})
    policy, issues = load_policy(args.policy)
    if policy is None:
        for issue in issues:
            print(issue, file=sys.stderr)
        raise SystemExit("the safety policy is invalid: fix it (chaosctl validate) before using the cluster commands")
    return ChaosMeshHook(args.conn_id), policy


T = TypeVar("T")

# A read command's Kubernetes read is tried READ_ATTEMPTS times when it fails transiently: no
# complete answer (KubernetesRequestError: deadline passed, connection failed) or an answer that
# says "later" (429, or 500/502/503/504: etcd timeouts, an API server restarting). Waits of
# READ_BACKOFF_S, then twice that, or longer when a 429/503 says Retry-After (up to
# READ_RETRY_AFTER_MAX_S). Never used on the safety paths (stop, the watchdog's removals).
READ_ATTEMPTS = 3
READ_BACKOFF_S = 1.0
READ_RETRY_AFTER_MAX_S = 10.0
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


class ClusterUnreadable(RuntimeError):
    """A read command could not read what it shows from the Kubernetes API."""


def _read(what: str, read: Callable[[], T]) -> T:
    """`read()`, tried again with backoff when it fails transiently (each retry said on stderr).
    Raises `ClusterUnreadable` naming `what`, the call and how long it tried."""
    from chaos_engineering.hooks.chaos_mesh import KubernetesApiError, KubernetesRequestError

    started, attempt = time.monotonic(), 1
    while True:
        try:
            return read()
        except (KubernetesRequestError, KubernetesApiError) as exc:
            transient = isinstance(exc, KubernetesRequestError) or exc.status in TRANSIENT_STATUSES
            if not transient or attempt >= READ_ATTEMPTS:
                tried = (f" (gave up after {attempt} attempts over {time.monotonic() - started:.0f} s: check that the Kubernetes "
                         "API is reachable, then run it again)") if transient else ""
                raise ClusterUnreadable(f"cannot read {what}: {exc}{tried}") from exc
            wait = max(READ_BACKOFF_S * 2 ** (attempt - 1), _retry_after(exc))
            attempt += 1
            print(f"chaosctl: reading {what}: {exc}; retrying in {wait:g} s (attempt {attempt} of {READ_ATTEMPTS})",
                  file=sys.stderr, flush=True)
            time.sleep(wait)


def _retry_after(exc: Exception) -> float:
    """The seconds an error answer's Retry-After asks for (capped), else 0."""
    value = (getattr(exc, "headers", None) or {}).get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return 0.0
    return min(max(seconds, 0.0), READ_RETRY_AFTER_MAX_S) if math.isfinite(seconds) else 0.0


def _who(args: argparse.Namespace) -> str:
    import getpass
    import socket

    if args.who:
        return args.who
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()} (chaosctl)"


def _stop(args: argparse.Namespace) -> int:
    from chaos_engineering.emergency import emergency_stop
    from chaos_engineering.notify import announce

    hook, policy = _cluster(args)
    report = emergency_stop(hook, policy, _who(args), args.reason, recovery_timeout_s=args.recovery_timeout)
    if not args.no_alert:
        forced = [f"finalizer clean-up forced on {r.kind} {r.namespace}/{r.name}: check its targets" for r in report.forced]
        announce("emergency_stop", extra={"removed": [r.__dict__ for r in report.removed], "forced": [r.__dict__ for r in report.forced],
                                          "requested_by": report.requested_by, "reason": report.reason, "failed_runs": report.runs,
                                          "errors": report.errors + forced})
    print(json.dumps(report.as_dict(), indent=2) if args.format == "json" else report.summary())
    return 0 if report.halt is not None and not report.errors else 1


def _resume(args: argparse.Namespace) -> int:
    from chaos_engineering.emergency import resume

    hook, policy = _cluster(args)
    state = resume(hook, policy, _who(args), args.reason)
    print(state.describe())
    return 0


def _status(args: argparse.Namespace) -> int:
    import datetime as dt

    from chaos_engineering.emergency import ObjectRef, deletion_age_s, is_forced, owned_objects
    from chaos_engineering.halt import HaltFlag
    from chaos_engineering.heartbeat import heartbeat_of
    from chaos_engineering.lock import ExperimentLock
    from chaos_engineering.triggers import fault_state

    hook, policy = _cluster(args)
    try:
        halt = _read("the halt flag", HaltFlag(hook, policy.chaos_namespace).state)
        lock = _read("the experiment lock", ExperimentLock(hook, policy.chaos_namespace).state)
        found = []
        for obj in _read("the faults of ours", lambda: owned_objects(hook)):
            ref = ObjectRef.of(obj)
            heartbeat = heartbeat_of(hook, obj)
            beat = _read(f"the heartbeat of {ref.kind} {ref.namespace}/{ref.name}", heartbeat.read)
            found.append((obj, ref, beat))
    except ClusterUnreadable as error:
        print(f"chaosctl status: {error}", file=sys.stderr)
        return 1
    now = dt.datetime.now(dt.timezone.utc)  # after the reads, however long their retries took
    faults = []
    for obj, ref, beat in found:
        deleting_for = deletion_age_s(obj, now)
        faults.append({"kind": ref.kind, "namespace": ref.namespace, "name": ref.name, "run": ref.run, "state": fault_state(obj),
                       "heartbeat_age_s": round(beat.age_s(now), 1) if beat else None,
                       "heartbeat_by": beat.holder if beat else None, "heartbeat_promise_s": beat.interval_s if beat else None,
                       "deleting_for_s": round(deleting_for, 1) if deleting_for is not None else None,
                       "stuck": deleting_for is not None and deleting_for > policy.safety.deletion_timeout, "clean_up_forced": is_forced(obj)})
    runs = _last_runs(policy.reports.base_url, args.runs)
    if args.format == "json":
        print(json.dumps({"halt": halt.as_dict(), "lock": lock and {"holder": lock.holder, "expires": str(lock.expires())},
                          "faults": faults, "last_runs": runs}, indent=2, default=str))
        return 0
    print(f"halt:   {halt.describe()}")
    print(f"lock:   {f'held by {lock.holder}, expires {lock.expires():%Y-%m-%d %H:%M:%S} UTC' if lock else 'free'}")
    print(f"faults: {len(faults)} of ours in the cluster")
    for f in faults:
        beat = "no heartbeat"
        if f["heartbeat_age_s"] is not None:
            beat = f"heartbeat {f['heartbeat_age_s']} s ago by {f['heartbeat_by']} (next within {f['heartbeat_promise_s']} s)"
        deleting = ""
        if f["deleting_for_s"] is not None:
            deleting = f", deleting for {f['deleting_for_s']} s" + (" (STUCK: past safety.deletion_timeout)" if f["stuck"] else "")
            deleting += ", finalizer clean-up forced: check its targets" if f["clean_up_forced"] else ""
        print(f"  {f['kind']} {f['namespace']}/{f['name']} [{f['state']}] run {f['run'] or '-'}, {beat}{deleting}")
    if runs is not None:
        print(f"last runs ({policy.reports.base_url}):")
        for run in runs:
            print(f"  {run['written_at']} {run['dag_id']}/{run['run_id']}: {run['verdict']}")
    return 0


def _last_runs(base_url: str, count: int) -> list[dict[str, str]] | None:
    """The newest result.json files when the reports are in a local folder; None otherwise."""
    from urllib.parse import urlparse

    url = urlparse(base_url)
    if url.scheme not in ("", "file") or not Path(url.path).is_dir():
        return None
    runs = []
    for path in Path(url.path).glob("*/*/*/*/result.json"):
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        runs.append({"written_at": str(result.get("written_at", "")), "dag_id": path.parts[-5], "run_id": path.parts[-2],
                     "verdict": f"{result.get('verdict')} ({result.get('verdict_reason', '')})"})
    return sorted(runs, key=lambda r: r["written_at"], reverse=True)[:count]


def _duration(text: str) -> float:
    from chaos_engineering.chaosmesh.duration import parse_go_duration

    try:
        return float(text)
    except ValueError:
        return parse_go_duration(text)


def _watchdog(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from chaos_engineering import watchdog

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    hook, policy = _cluster(args)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sweeps = watchdog.run(hook, grace_s=args.grace, interval_s=args.interval, stop=stop, once=args.once,
                          pushgateway_conn_id=args.pushgateway_conn_id, namespace=policy.chaos_namespace,
                          deletion_timeout_s=policy.safety.deletion_timeout)
    if args.once:
        result = sweeps[-1]
        print(f"checked {result.checked} fault(s), removed {len(result.removed)}" + "".join(f"\n  {r.fault.kind} {r.fault.namespace}/{r.fault.name}: {r.reason}" for r in result.removed))
        for stuck in result.stuck:
            forced = "clean-up forced now" if stuck in result.forced else "clean-up forced earlier, Chaos Mesh has not acted"
            print(f"STUCK {stuck.fault.kind} {stuck.fault.namespace}/{stuck.fault.name}: {stuck.reason} ({forced}; check its targets)")
        for error in result.errors:
            print(f"ERROR {error}")
        return 1 if result.errors or not result.successful else 0
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chaosctl", description=__doc__)
    parser.add_argument("--policy", type=Path, help="safety policy file (default: include/safety_policy.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check experiment files against the schema and the policy")
    validate.add_argument("paths", nargs="*", help="files or folders (default: the catalogue)")
    validate.add_argument("--format", choices=["text", "json", "junit", "github"], default="text",
                          help="junit: JUnit XML, a test case per file; github: GitHub Actions ::error annotations")
    validate.set_defaults(run=_validate)

    render = commands.add_parser("render", help="print the Chaos Mesh object the system would create")
    render.add_argument("name", help="an experiment's name, or a scenario's (every step's object)")
    render.add_argument("--catalogue", nargs="*", help="files or folders (default: the catalogue)")
    render.add_argument("--dag-id", default="chaosctl")
    render.add_argument("--run-id", default="render")
    render.add_argument("--output", choices=["yaml", "json"], default="yaml")
    render.set_defaults(run=_render)

    cluster = argparse.ArgumentParser(add_help=False)
    cluster.add_argument("--kubeconfig", help="kubeconfig file (default: the Airflow connection, else in-cluster or ~/.kube/config)")
    cluster.add_argument("--context", help="kubeconfig context")
    cluster.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    cluster.add_argument("--conn-id", default="kubernetes_default", help="Airflow connection to use or define (default: kubernetes_default)")

    stop = commands.add_parser("stop", parents=[cluster], help="EMERGENCY STOP: halt new runs, remove every fault of ours, free the lock")
    stop.add_argument("--reason", required=True)
    stop.add_argument("--who", help="recorded as who stopped (default: user@host)")
    stop.add_argument("--recovery-timeout", type=_duration, default=15.0,
                      help="wait for Chaos Mesh's recovery before forcing its finalizer clean-up (default 15s)")
    stop.add_argument("--no-alert", action="store_true", help="do not send the emergency_stop notification")
    stop.add_argument("--format", choices=["text", "json"], default="text")
    stop.set_defaults(run=_stop)

    resume = commands.add_parser("resume", parents=[cluster], help="clear the halt set by an emergency stop")
    resume.add_argument("--reason", required=True)
    resume.add_argument("--who", help="recorded as who resumed (default: user@host)")
    resume.set_defaults(run=_resume)

    status = commands.add_parser("status", parents=[cluster], help="halt, lock, active faults, last runs")
    status.add_argument("--runs", type=int, default=5, help="how many last runs to show")
    status.add_argument("--format", choices=["text", "json"], default="text")
    status.set_defaults(run=_status)

    watch = commands.add_parser("watchdog", parents=[cluster],
                                help="remove faults whose monitor stopped renewing its heartbeat (every fault while halted); force stuck deletions")
    watch.add_argument("--grace", type=_duration, default=20.0, help="heartbeat age after which a fault is removed (default 20s)")
    watch.add_argument("--interval", type=_duration, default=5.0, help="time between sweeps (default 5s)")
    watch.add_argument("--once", action="store_true", help="one sweep, then exit (1 if it hit errors or could not list every kind)")
    watch.add_argument("--pushgateway-conn-id", default=None,
                       help="push its liveness (chaos_watchdog_*), stuck deletions and the faults it removed through this Airflow connection, "
                            "e.g. pushgateway_default from AIRFLOW_CONN_PUSHGATEWAY_DEFAULT; without it the liveness alerts fire")
    watch.set_defaults(run=_watchdog)

    from chaos_engineering.cli_run import add_run_commands  # here: cli_run imports this module
    from chaos_engineering.deploys import add_deployed_command

    add_run_commands(commands)
    add_deployed_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
