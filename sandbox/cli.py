"""`chaos-sandbox up | down | status`: the laptop stand-in for a cluster with Chaos Mesh and Prometheus."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sandbox import processes
from sandbox.runner import Sandbox, SandboxError

DEFAULT_STATE_DIR = ".sandbox"


def _up(options: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        sandbox = Sandbox.start(
            options.state_dir,
            scrape_interval=options.scrape_interval,
            rate=options.rate,
            restart_delay=options.restart_delay,
            seed=options.seed,
            rule_files=options.rule_file,
            kube_port=options.kube_port,
            prometheus_port=options.prometheus_port,
            pushgateway_port=options.pushgateway_port,
            metrics_port=options.metrics_port,
            timeout=options.timeout,
        )
    except SandboxError as error:
        print(f"chaos-sandbox up: {error}", file=sys.stderr)
        return 1
    print(f"sandbox up in {time.monotonic() - started:.1f}s ({sandbox.state_dir})")
    print(f"  Kubernetes API:  {sandbox.kube_url}")
    print(f"  Prometheus:      {sandbox.prometheus_url}")
    print(f"  Pushgateway:     {sandbox.pushgateway_url}")
    print(f"  Platform state:  {sandbox.metrics_url}/sandbox/state")
    print(f"  kubeconfig:      {sandbox.kubeconfig_path}")
    print(f"  export KUBECONFIG={sandbox.kubeconfig_path}")
    return 0


def _down(options: argparse.Namespace) -> int:
    state_dir = Path(options.state_dir).resolve()
    sandbox = Sandbox.load(state_dir)
    stopped = [process for process in processes.tracked(state_dir) if process.alive()]
    if sandbox is not None:
        sandbox.stop()
    else:
        # No state file (start-up failed half-way): the pid files are still authoritative.
        for process in processes.tracked(state_dir):
            processes.stop(process, state_dir)
    print(f"sandbox down ({state_dir}): stopped {', '.join(p.name for p in stopped) or 'nothing, none was running'}")
    return 0


def _status(options: argparse.Namespace) -> int:
    state_dir = Path(options.state_dir).resolve()
    sandbox = Sandbox.load(state_dir)
    if sandbox is None:
        print(f"no sandbox is up in {state_dir}")
        return 1
    healthy = True
    for name, (ok, detail) in sandbox.health().items():
        healthy = healthy and ok
        print(f"  {name:17s} {'healthy' if ok else 'UNHEALTHY':10s} {detail}")
    print(f"  kubeconfig:       {sandbox.kubeconfig_path}")
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chaos-sandbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start the sandbox and wait until it is healthy")
    down = commands.add_parser("down", help="stop every process the sandbox started")
    status = commands.add_parser("status", help="show what runs and whether it is healthy (exit 1 if not)")
    for command in (up, down, status):
        command.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                             help="where config, data, logs and pid files live (default: ./.sandbox)")
    up.add_argument("--scrape-interval", default="5s", help="Prometheus scrape and rule evaluation interval")
    up.add_argument("--rate", type=float, default=20.0, help="bookings per second the load generator sends")
    up.add_argument("--restart-delay", type=float, default=3.0, help="seconds until a replaced pod is ready")
    up.add_argument("--seed", type=int, default=None, help="random seed of the simulation")
    up.add_argument("--rule-file", action="append", default=[], help="extra Prometheus rule file (repeatable)")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a healthy sandbox")
    for port in ("kube", "prometheus", "pushgateway", "metrics"):
        up.add_argument(f"--{port}-port", type=int, default=None, help="default: a free port")

    options = parser.parse_args(argv)
    return {"up": _up, "down": _down, "status": _status}[options.command](options)


if __name__ == "__main__":
    sys.exit(main())
