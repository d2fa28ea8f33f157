"""`make demo`: the sandbox, a real Airflow on it, and one low-risk experiment followed to its verdict."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import requests
import yaml

from chaos_engineering.airflow_rest import AirflowApiError, describe_failure, show_warnings
from sandbox.airflow_stack import AirflowStack
from sandbox.runner import Sandbox

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "chaos_low_risk"
# The demo's only departures from the shipped policy: quicker clocks, reports in the state folder.
DEMO_POLICY = {("safety", "check_interval"): "2s", ("preflight", "healthy_window"): "45s"}
DAG_TIMEOUT_S = 180
RUN_TIMEOUT_S = 900


class DemoFailure(RuntimeError):
    """The demo cannot go on; the message says why and what to look at."""


def say(text: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {text}", flush=True)


def demo_include(state: Path) -> Path:
    include = state / "include"
    shutil.rmtree(include, ignore_errors=True)
    shutil.copytree(ROOT / "include", include)
    policy = yaml.safe_load((include / "safety_policy.yaml").read_text())
    for (section, key), value in DEMO_POLICY.items():
        policy[section][key] = value
    policy["reports"]["base_url"] = (state / "reports").resolve().as_uri()
    (include / "safety_policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return include


def connections(sandbox: Sandbox, include: Path) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(
            {"conn_type": "kubernetes", "extra": {"kube_config_path": str(sandbox.kubeconfig_path), "namespace": "chaos-engineering"}}
        ),
        "AIRFLOW_CONN_PROMETHEUS_DEFAULT": json.dumps({"conn_type": "http", "host": sandbox.prometheus_url}),
        "CHAOS_INCLUDE_DIR": str(include),
    }


def wait_for_steady_platform(include: Path) -> None:
    """The pre-flight check needs a healthy window of data: wait for it rather than fail."""
    os.environ["CHAOS_INCLUDE_DIR"] = str(include)
    from chaos_engineering.policy import load_policy
    from sandbox.steady import wait_steady

    wait_steady(load_policy()[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true", help="run the experiment, print the result and stop everything")
    parser.add_argument("--state-dir", type=Path, default=Path(".sandbox"))
    parser.add_argument("--experiment", default="booking-api-pod-kill")
    args = parser.parse_args(argv)
    show_warnings(sys.stdout)
    try:
        return demo(args)
    except KeyboardInterrupt:  # Ctrl-C while it runs: everything is stopped already (demo's finally)
        return 130
    except (RuntimeError, AssertionError, requests.RequestException) as error:
        # Sandbox, Airflow or the run failed for real (a failed poll alone never ends up here: the
        # waits poll again until their deadline). The details first, the one-line reason last.
        reason, _, details = str(error).partition("\n")
        if details:
            print(details, flush=True)
        say(f"demo failed: {reason}")
        return 1


def demo(args: argparse.Namespace) -> int:
    state = args.state_dir.resolve()

    sandbox = Sandbox.load(state)
    if sandbox is None or not all(ok for ok, _ in sandbox.health().values()):
        say("starting the sandbox: booking platform, emulated Kubernetes API, Prometheus, Pushgateway")
        sandbox = Sandbox.start(state, scrape_interval="2s")
    say(f"Kubernetes API {sandbox.kube_url}  (kubeconfig {sandbox.kubeconfig_path})")
    say(f"Prometheus     {sandbox.prometheus_url}")
    include = demo_include(state)
    env = connections(sandbox, include)
    os.environ.update({k: v for k, v in env.items() if k.startswith("AIRFLOW_CONN")})

    say("starting Airflow 3.3 (scheduler, triggerer, dag-processor, api-server; SQLite metadata)")
    home = state / "airflow"
    shutil.rmtree(home, ignore_errors=True)
    stack = AirflowStack.start(
        home, dags_folder=ROOT / "dags", plugins_folder=ROOT / "plugins", env=env, database_url=f"sqlite:///{home / 'airflow.db'}"
    )
    try:
        admin = stack.client("admin")
        admin.wait_for_dag(DAG_ID, timeout=DAG_TIMEOUT_S)
        say(f"Airflow UI {stack.base_url}  (login admin / {stack.passwords['admin']})")
        say("waiting for a steady platform (the pre-flight check needs a healthy window of metrics)")
        wait_for_steady_platform(include)
        try:
            run_id = admin.trigger(DAG_ID, conf={"experiment": args.experiment})
        except requests.RequestException as error:
            # Never retried: the run may have started although its answer was lost.
            cause = error.args[0] if error.args and isinstance(error.args[0], BaseException) else error
            raise DemoFailure(
                f"triggering {DAG_ID}: {describe_failure(cause, admin.request_timeout)}; "
                f"a run may have started anyway: see {stack.base_url}"
            ) from error
        say(f"triggered {DAG_ID} with experiment {args.experiment}: run {run_id}")
        say(f"following run {run_id} until it finishes (at most {RUN_TIMEOUT_S} s)")
        state_of_run = admin.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT_S, on_change=lambda change: say(f"  {change}"))
        try:
            outcome = admin.xcom(DAG_ID, run_id, "write_result") or {}
        except AirflowApiError as error:
            say(f"run {state_of_run}: its verdict could not be read ({error}); see the run in the UI")
            outcome = {}
        else:
            say(f"run {state_of_run}: verdict {outcome.get('verdict')} ({outcome.get('reason')})")
        if outcome.get("path"):
            folder = Path(outcome["path"].removeprefix("file://")).parent
            say(f"result  {folder / 'result.json'}")
            say(f"report  {folder / 'report.html'}  (and report.pdf, report.json, metrics.csv)")
        if args.once:
            return 0 if state_of_run == "success" else 1
        say(f"the UI stays up at {stack.base_url} (admin / {stack.passwords['admin']}); Ctrl-C stops everything")
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
    finally:
        say("stopping Airflow and the sandbox")
        stack.stop()
        sandbox.stop()


if __name__ == "__main__":
    sys.exit(main())
