"""`chaosctl run` and `chaosctl runs`: a tier run triggered and followed through Airflow's REST API,
with exit codes a pipeline can branch on (`ENDINGS`)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import quote

import requests

from chaos_engineering import airflow_rest
from chaos_engineering.airflow_rest import (
    AWAITING_INPUT,
    AirflowApiError,
    AirflowClient,
    AirflowUnavailable,
    AirflowWaitTimeout,
    TaskStateChange,
    describe_failure,
)
from chaos_engineering.cli import _duration
from chaos_engineering.experiment import ROTATION
from chaos_engineering.hooks.http import without_credentials
from chaos_engineering.policy import Tier

#: How `chaosctl run` ends: (exit code, what it means). The one table: the `--help` epilog and
#: the README's "In your pipeline" show it.
ENDINGS: dict[str, tuple[int, str]] = {
    "held": (0, "verdict held: no threshold breached, every recovery stage met its deadline"),
    "dry_run": (0, "verdict dry_run (--dry-run): validated and dry-run by the API server, nothing injected"),
    "triggered": (0, "without --wait: the run was triggered"),
    "broken": (1, "verdict broken: a safety breach, a missed recovery deadline or missed disaster-recovery targets"),
    "aborted_after_injection": (1, "verdict aborted after the fault was injected (emergency stop, watchdog, a failed step): not held"),
    "refused": (2, "verdict aborted, nothing injected: invalid experiment, outside its window, approval rejected or "
                   "timed out, pre-flight or lock failed"),
    "not_triggered": (2, "no run started: experiment not in the catalogue, conf refused by Airflow (HTTP 400/422), DAG paused"),
    "awaiting_approval": (2, "--timeout passed while the run waited for an approval (the run keeps its own approval deadline)"),
    "timeout_before_injection": (2, "--timeout passed before the run began to inject (plan, window, pre-flight, lock): it goes on under its own deadlines"),
    "timeout": (3, "--timeout passed once the run had begun to inject: no verdict yet (the run goes on under its own deadlines)"),
    "unreachable": (3, "Airflow unreachable or answering 5xx after retries, credentials missing or refused (401/403), DAG missing"),
    "no_result": (3, "the run ended without a result document, or with a verdict this chaosctl does not know"),
}

#: airflowctl's variable for a bearer token (airflow-ctl/src/airflowctl/ctl/commands/auth_command.py).
TOKEN_ENV = "AIRFLOW_CLI_TOKEN"
URL_ENV = "AIRFLOW_API_URL"
USERNAME_ENV = "AIRFLOW_API_USERNAME"
PASSWORD_ENV = "AIRFLOW_API_PASSWORD"
#: Not `airflow_api_default`: that is the read-only account inject trusts, which must never trigger.
DEFAULT_CONN_ID = "airflow_api_chaosctl"
#: A read is tried 3 times (waits 0 and 2 s): an unreachable Airflow is reported within seconds.
READ_ATTEMPTS = 3
REQUEST_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 2.0
RESULT_TASK, RESULT_KEY = "write_result", "result"  # operators.result (which imports Airflow)
APPROVAL_PREFIX = "approve_"  # verification.approval_task_id
#: The inject task's states in which it has not begun: nothing of the run can be on the cluster.
NOT_INJECTING = frozenset({None, "scheduled", "skipped", "upstream_failed", "removed"})


def ending_of(result: Mapping[str, Any]) -> str:
    """The ending of a run from its result document (the verdict and whether a fault was injected)."""
    verdict = result.get("verdict")
    if verdict == "aborted":
        return "refused" if result.get("fault") is None else "aborted_after_injection"
    return verdict if verdict in ("held", "dry_run", "broken") else "no_result"


def exit_code_table() -> str:
    return "\n".join(f"  {code}  {name:24} {meaning}" for name, (code, meaning) in ENDINGS.items())


class RunEnded(Exception):
    """`chaosctl run` ends with `ending`; the message says why and what to do."""

    def __init__(self, ending: str, message: str) -> None:
        super().__init__(message)
        self.ending = ending


# -- reaching Airflow ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AirflowAccess:
    """Where the api-server is and how chaosctl authenticates, and where each came from."""

    base_url: str
    source: str
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def client(self) -> AirflowClient:
        return AirflowClient(self.base_url, self.username, self.password, token=self.token, poll_interval=POLL_INTERVAL_S,
                             request_timeout=REQUEST_TIMEOUT_S, read_attempts=READ_ATTEMPTS)

    def link(self, path: str) -> str:
        return without_credentials(self.base_url) + path


def airflow_access(conn_id: str, environ: Mapping[str, str] = os.environ) -> AirflowAccess:
    """The URL from `AIRFLOW_API_URL`, else the connection's host; the credentials from
    `AIRFLOW_CLI_TOKEN`, else `AIRFLOW_API_USERNAME`/`AIRFLOW_API_PASSWORD`, else the connection's
    extra `token`, else its login/password (the fields `AirflowApiHook` reads)."""
    url, token = environ.get(URL_ENV), environ.get(TOKEN_ENV)
    username, password = environ.get(USERNAME_ENV), environ.get(PASSWORD_ENV)
    if url and (token or (username and password)):
        return _access(url, token, username, password, source=TOKEN_ENV if token else f"{USERNAME_ENV}/{PASSWORD_ENV}")
    conn = _connection(conn_id)
    if not url:
        if conn is None or not conn.host:
            raise RunEnded("unreachable", f"no Airflow URL: set {URL_ENV} (e.g. https://airflow.example.com) or define the "
                                          f"connection {conn_id!r} (AIRFLOW_CONN_{conn_id.upper()}) with its host")
        from chaos_engineering.hooks.http import connection_base_url

        url = connection_base_url(conn, "https://airflow.example.com")
    if token or (username and password):
        return _access(url, token, username, password, source=TOKEN_ENV if token else f"{USERNAME_ENV}/{PASSWORD_ENV}")
    extra_token = (conn.extra_dejson or {}).get("token") if conn is not None else None
    if extra_token:
        return _access(url, str(extra_token), None, None, source=f"connection {conn_id!r} (extra token)")
    if conn is not None and conn.login and conn.password:
        return _access(url, None, conn.login, conn.password, source=f"connection {conn_id!r} (login/password)")
    raise RunEnded("unreachable", f"no Airflow credentials: set {TOKEN_ENV} to a token (as for airflowctl), or {USERNAME_ENV} and "
                                  f"{PASSWORD_ENV} to an account with Airflow's `user` role, or give the connection {conn_id!r} "
                                  "a login/password or extra token")


def _access(url: str, token: str | None, username: str | None, password: str | None, *, source: str) -> AirflowAccess:
    if token:
        return AirflowAccess(url, source, token=token)
    return AirflowAccess(url, source, username=username, password=password)


def _connection(conn_id: str) -> Any:
    """The Airflow connection `conn_id` through Airflow's lookup (environment, secrets backend), or None."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def _api_failure(error: Exception, access: AirflowAccess | None, doing: str) -> RunEnded:
    """An error from the REST API as the ending it means (never showing a secret)."""
    if isinstance(error, AirflowUnavailable):
        return RunEnded("unreachable", f"{doing}: Airflow unreachable: {error}")
    if isinstance(error, requests.RequestException):
        cause = error.args[0] if error.args and isinstance(error.args[0], BaseException) else error
        return RunEnded("unreachable", f"{doing}: Airflow unreachable: {describe_failure(cause, REQUEST_TIMEOUT_S)}")
    if isinstance(error, AirflowApiError) and error.status_code == 401:
        source = access.source if access else "the environment"
        return RunEnded("unreachable", f"{doing}: Airflow refused the credentials from {source} (HTTP 401): set {TOKEN_ENV} to a "
                                       f"valid token, or {USERNAME_ENV} and {PASSWORD_ENV} to an Airflow account")
    if isinstance(error, AirflowApiError) and error.status_code == 403:
        source = access.source if access else "the environment"
        return RunEnded("unreachable", f"{doing}: the account from {source} may not (HTTP 403): give it Airflow's "
                                       f"`user` role (it triggers runs and reads their results); {error.detail}")
    return RunEnded("unreachable", f"{doing}: {error}")


# -- chaosctl run --------------------------------------------------------------------------------


def _what_to_trigger(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The tier DAG and the run's conf: `{"experiment", "dry_run"}` over `--conf-json`."""
    try:
        conf = json.loads(args.conf_json) if args.conf_json else {}
    except ValueError as error:
        raise RunEnded("not_triggered", f"--conf-json is not JSON: {error}") from error
    if not isinstance(conf, dict):
        raise RunEnded("not_triggered", "--conf-json must be a JSON object, e.g. '{\"dry_run\": true}'")
    if conf.get("experiment", args.experiment) != args.experiment:
        raise RunEnded("not_triggered", f"--conf-json names experiment {conf['experiment']!r}, the command {args.experiment!r}: drop one")
    conf["experiment"], conf["dry_run"] = args.experiment, args.dry_run or conf.get("dry_run") is True
    tier = args.tier
    if tier is None:
        if args.experiment in (ROTATION, ""):
            raise RunEnded("not_triggered", f"{args.experiment!r} is a tier's rotation: say which tier with --tier")
        from chaos_engineering.catalogue import load_catalogue

        catalogue = load_catalogue(None, args.policy)
        experiment = catalogue.get(args.experiment)
        if experiment is None:
            known = ", ".join(sorted(catalogue.experiments)) or "none"
            raise RunEnded("not_triggered", f"no valid experiment named {args.experiment!r} in the catalogue (valid: {known}); "
                                            "`chaosctl validate` says what is wrong with a file, --tier skips this look-up")
        tier = experiment.tier.value
    return f"chaos_{tier}_risk", conf


def _progress(out: TextIO, text: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {text}", file=out, flush=True)


def run_path(dag_id: str, run_id: str) -> str:
    """The run's page in the Airflow UI."""
    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def report_path(dag_id: str, run_id: str) -> str:
    """The run's HTML report through the Chaos plugin (ui.links.report_url, which imports Airflow)."""
    return f"/chaos/reports/{quote(dag_id, safe='')}/{quote(run_id, safe='')}/report.html"


def read_result(client: AirflowClient, dag_id: str, run_id: str) -> dict[str, Any] | None:
    """The result document write_result kept in XCom, or None when the run has none (yet)."""
    try:
        value = client.xcom(dag_id, run_id, RESULT_TASK, key=RESULT_KEY)
    except AirflowApiError as error:
        if error.status_code == 404:
            return None
        raise
    if isinstance(value, str):  # the API may answer the stored JSON as a string
        value = json.loads(value)
    return value if isinstance(value, dict) else None


def _run(args: argparse.Namespace) -> int:
    out = sys.stderr if args.format == "json" else sys.stdout
    run: dict[str, Any] = {}
    try:
        dag_id, conf = _what_to_trigger(args)
        access = airflow_access(args.conn_id)
        airflow_rest.show_warnings(out)
        _trigger_and_follow(args, access, dag_id, conf, run, out)
    except RunEnded as ended:
        code = ENDINGS[ended.ending][0]
        print(f"chaosctl run: {ended} (exit {code}: {ended.ending})", file=sys.stderr, flush=True)
        if args.format == "json":  # the result document, or what is known without one
            print(json.dumps(run.get("result") or {**run, "ending": ended.ending, "exit_code": code, "message": str(ended)}, indent=2))
        return code
    return 0


def _trigger_and_follow(args: argparse.Namespace, access: AirflowAccess, dag_id: str, conf: dict[str, Any],
                        run: dict[str, Any], out: TextIO) -> None:
    """Trigger the run, follow it with `--wait`; always ends by raising `RunEnded`."""
    client = access.client()
    try:
        dag = client.dag(dag_id)
    except (AirflowApiError, requests.RequestException) as error:
        raise _api_failure(error, access, f"getting the DAG {dag_id}") from error
    if dag is None:
        raise RunEnded("unreachable", f"Airflow at {access.link('')} has no DAG {dag_id}: is the chaos-engineering deployment there?")
    if dag.get("is_paused"):
        raise RunEnded("not_triggered", f"{dag_id} is paused: someone stopped chaos runs on purpose; unpause it in the UI to run (chaosctl never does)")
    try:
        run_id = client.trigger(dag_id, conf)
    except AirflowApiError as error:
        if error.status_code in (400, 422):
            raise RunEnded("not_triggered", f"Airflow refused the run of {dag_id} with conf {json.dumps(conf)}: {error.detail}") from error
        raise _api_failure(error, access, f"triggering {dag_id}") from error
    except requests.RequestException as error:
        # Never retried: the run may have started although its answer was lost.
        ended = _api_failure(error, access, f"triggering {dag_id}")
        raise RunEnded(ended.ending, f"{ended}; a run may have started anyway: see {access.link(run_path(dag_id, ''))}") from error
    run.update(dag_id=dag_id, run_id=run_id, run_url=access.link(run_path(dag_id, run_id)))
    _progress(out, f"triggered {dag_id} with {json.dumps(conf)}: run {run_id}")
    _progress(out, f"run page {run['run_url']}")
    if not args.wait:
        raise RunEnded("triggered", f"run {run_id} triggered; follow it at {run['run_url']}")
    _follow(args, access, client, run, out)


def _follow(args: argparse.Namespace, access: AirflowAccess, client: AirflowClient, run: dict[str, Any], out: TextIO) -> None:
    dag_id, run_id = run["dag_id"], run["run_id"]
    states: dict[str, str | None] = {}

    def on_change(change: TaskStateChange) -> None:
        states[change.task] = change.current
        _progress(out, f"  {change}")
        if change.current == AWAITING_INPUT and change.task.startswith(APPROVAL_PREFIX):
            role = change.task.removeprefix(APPROVAL_PREFIX)
            _progress(out, f"  waiting for approval by {role} in the Airflow UI: {access.link(_approval_path(dag_id, run_id, change.task))}")

    _progress(out, f"following run {run_id} until its verdict (at most {args.timeout:g} s)")
    try:
        state = client.wait_for_run(dag_id, run_id, timeout=args.timeout, on_change=on_change)
    except AirflowWaitTimeout as error:
        waiting = sorted(t for t, s in states.items() if s == AWAITING_INPUT and t.startswith(APPROVAL_PREFIX))
        if waiting:
            link = access.link(_approval_path(dag_id, run_id, waiting[0]))
            raise RunEnded("awaiting_approval", f"--timeout {args.timeout:g} s passed while {waiting[0]} waits for approval by "
                                                f"{waiting[0].removeprefix(APPROVAL_PREFIX)}: nothing injected yet. The run stays open "
                                                f"until its own approval deadline and injects if approved before it: reject it at {link} "
                                                "if it should not") from error
        ending = "timeout_before_injection" if states.get("inject") in NOT_INJECTING else "timeout"
        injected = "nothing injected yet" if ending == "timeout_before_injection" else f"inject {states.get('inject')}"
        raise RunEnded(ending, f"--timeout {args.timeout:g} s passed: {str(error).partition(chr(10))[0]}, {injected}; the run "
                               f"goes on under its own deadlines: {run['run_url']}") from error
    except (AirflowApiError, requests.RequestException) as error:
        raise _api_failure(error, access, f"following {dag_id}/{run_id}") from error
    try:
        result = read_result(client, dag_id, run_id)
    except (AirflowApiError, requests.RequestException) as error:
        raise _api_failure(error, access, f"reading the result of {dag_id}/{run_id}") from error
    if result is None:
        raise RunEnded("no_result", f"run {run_id} ended {state} without a result document ({RESULT_TASK} did not write one): "
                                    f"see {run['run_url']}")
    run["result"] = result
    ending = ending_of(result)
    _progress(out, f"run {state}: verdict {result.get('verdict')}: {result.get('verdict_reason')}")
    _progress(out, f"report {access.link(report_path(dag_id, run_id))}")
    if ending != "no_result":
        raise RunEnded(ending, f"run {run_id}: {ENDINGS[ending][1]}")
    raise RunEnded("no_result", f"run {run_id} has the verdict {result.get('verdict')!r}, which this chaosctl does not know: upgrade it")


def _approval_path(dag_id: str, run_id: str, task_id: str) -> str:
    """The task's Required Action page (HITLOperator.generate_link_to_ui's path)."""
    return f"{run_path(dag_id, run_id)}/tasks/{quote(task_id, safe='')}/required_actions"


# -- chaosctl runs -------------------------------------------------------------------------------


def _runs(args: argparse.Namespace) -> int:
    try:
        access = airflow_access(args.conn_id)
        airflow_rest.show_warnings(sys.stderr)
        client = access.client()
        rows = _recent_runs(access, client, [args.tier] if args.tier else [t.value for t in Tier], args.last)
    except RunEnded as ended:
        print(f"chaosctl runs: {ended}", file=sys.stderr)
        return ENDINGS[ended.ending][0]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        verdict = f"{row['verdict']} ({row['verdict_reason']})" if row["verdict"] else "no result yet" if row["state"] not in ("success", "failed") else "no result"
        report = f"report {row['report_url']}" if row["report_url"] else "no report"
        print(f"{row['run_after'][:19]}  {row['dag_id']}  {row['run_id']}  {row['experiment']}  {row['state']}  {verdict}  {report}")
    if not rows:
        print("no runs")
    return 0


def _recent_runs(access: AirflowAccess, client: AirflowClient, tiers: list[str], last: int) -> list[dict[str, Any]]:
    """The `last` newest runs of the tiers' DAGs, newest first, each with its verdict and report link."""
    found = []
    for tier in tiers:
        dag_id = f"chaos_{tier}_risk"
        try:
            found += [(dag_id, run) for run in client.recent_runs(dag_id, last)]
        except AirflowApiError as error:
            if error.status_code != 404:  # a tier DAG not deployed lists no runs
                raise _api_failure(error, access, f"listing the runs of {dag_id}") from error
        except requests.RequestException as error:
            raise _api_failure(error, access, f"listing the runs of {dag_id}") from error
    found.sort(key=lambda item: item[1].get("run_after") or "", reverse=True)
    rows = []
    for dag_id, run in found[:last]:
        try:
            result = read_result(client, dag_id, run["dag_run_id"]) or {}
        except (AirflowApiError, requests.RequestException) as error:
            raise _api_failure(error, access, f"reading the result of {dag_id}/{run['dag_run_id']}") from error
        planned = (result.get("experiment") or {}).get("experiment")
        rows.append({
            "dag_id": dag_id,
            "run_id": run["dag_run_id"],
            "run_after": run.get("run_after") or "",
            "state": run.get("state"),
            "experiment": planned or (run.get("conf") or {}).get("experiment") or ROTATION,
            "verdict": result.get("verdict"),
            "verdict_reason": result.get("verdict_reason"),
            "run_url": access.link(run_path(dag_id, run["dag_run_id"])),
            "report_url": access.link(report_path(dag_id, run["dag_run_id"])) if result else None,
        })
    return rows


# -- the parser ----------------------------------------------------------------------------------

RUN_EPILOG = f"""\
Airflow: {URL_ENV} (or the connection --conn-id, default {DEFAULT_CONN_ID}); credentials:
{TOKEN_ENV} (airflowctl's token variable), else {USERNAME_ENV} and {PASSWORD_ENV}
(exchanged at POST /auth/token), else the connection's extra token or login/password.

exit codes:
{exit_code_table()}
"""


def airflow_options() -> argparse.ArgumentParser:
    """The options of every command that reaches Airflow's REST API (a parent parser)."""
    airflow = argparse.ArgumentParser(add_help=False)
    airflow.add_argument("--conn-id", default=DEFAULT_CONN_ID,
                         help=f"Airflow connection of the api-server when {URL_ENV} or the credentials are not set (default: {DEFAULT_CONN_ID})")
    airflow.add_argument("--format", choices=["text", "json"], default="text")
    return airflow


def add_run_commands(commands: Any) -> None:
    """Register `run` and `runs` on chaosctl's subcommands."""
    airflow = airflow_options()

    run = commands.add_parser("run", parents=[airflow], help="trigger a tier run through Airflow's REST API (and follow it with --wait)",
                              epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("experiment", help="experiment name (or 'rotation' with --tier)")
    run.add_argument("--tier", choices=[t.value for t in Tier], help="the tier DAG to trigger (default: the experiment's tier in the catalogue)")
    run.add_argument("--dry-run", action="store_true", help="validate and dry-run on the API server; inject nothing")
    run.add_argument("--wait", action="store_true", help="follow the run task by task until its verdict")
    run.add_argument("--timeout", type=_duration, default=3600.0, help="the most --wait waits, e.g. 40s, 30m (default 60m)")
    run.add_argument("--conf-json", help="more of the run's conf, a JSON object")
    run.set_defaults(run=_run)

    runs = commands.add_parser("runs", parents=[airflow], help="recent tier runs with their verdicts and report links")
    runs.add_argument("--last", type=int, default=10, help="how many runs (default 10)")
    runs.add_argument("--tier", choices=[t.value for t in Tier], help="only this tier's runs")
    runs.set_defaults(run=_runs)
