"""`chaos-sandbox up | status | down` as a user runs them: detached processes, a usable kubeconfig, a clean stop."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client, config

from sandbox import processes

CONSOLE_SCRIPT = Path(sys.executable).with_name("chaos-sandbox")


def cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """The console script for `up`, `python -m sandbox` otherwise: both entry points are covered."""
    command = [str(CONSOLE_SCRIPT)] if args[0] == "up" else [sys.executable, "-m", "sandbox"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout)


def listening(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, int(port))) == 0


def test_up_status_down(tmp_path):
    state_dir = tmp_path / "state"
    up = cli("up", "--state-dir", str(state_dir), "--scrape-interval", "1s", "--rate", "10")
    started = processes.tracked(state_dir)
    try:
        assert up.returncode == 0, up.stderr
        recorded = json.loads((state_dir / "sandbox.json").read_text())
        for key in ("kube_url", "prometheus_url", "pushgateway_url", "kubeconfig"):
            assert recorded[key] in up.stdout
        assert {process.name for process in started} == {"sandbox-server", "prometheus", "pushgateway"}
        assert set(recorded["pids"].values()) == {process.pid for process in started}
        assert all(process.alive() for process in started)
        for log in ("sandbox-server", "prometheus", "pushgateway"):
            assert (state_dir / "logs" / f"{log}.log").exists()

        # An ordinary kubeconfig: the official client reaches the platform's pods with it.
        api = client.CoreV1Api(config.new_client_from_config(str(state_dir / "kubeconfig"), context="sandbox"))
        assert len(api.list_namespaced_pod("payments").items) == 5

        status = cli("status", "--state-dir", str(state_dir))
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("healthy") == 4 and "UNHEALTHY" not in status.stdout

        again = cli("up", "--state-dir", str(state_dir))
        assert again.returncode == 1 and "already runs" in again.stderr
    finally:
        down = cli("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert started and not any(process.alive() for process in started)
    assert not any(listening(recorded[key]) for key in ("kube_url", "prometheus_url", "pushgateway_url"))
    assert processes.tracked(state_dir) == []

    assert cli("down", "--state-dir", str(state_dir)).returncode == 0
    status = cli("status", "--state-dir", str(state_dir))
    assert status.returncode == 1 and "no sandbox" in status.stdout


def test_status_without_a_sandbox_exits_1(tmp_path):
    result = cli("status", "--state-dir", str(tmp_path))
    assert result.returncode == 1


def test_a_missing_rule_file_is_refused_before_anything_starts(tmp_path):
    result = cli("up", "--state-dir", str(tmp_path), "--rule-file", str(tmp_path / "missing.yml"))
    assert result.returncode == 1 and "missing.yml does not exist" in result.stderr
    assert processes.tracked(tmp_path) == []


@pytest.mark.parametrize("command", ["up", "down", "status"])
def test_help_documents_the_state_dir(command):
    result = cli(command, "--help")
    assert result.returncode == 0 and "--state-dir" in result.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_the_server_listens_on_the_address_it_is_given(tmp_path, host):
    """docker-compose runs it with --host 0.0.0.0 so that other containers reach it."""
    import time

    import psutil
    import requests

    kube, metrics = free_port(), free_port()
    server = subprocess.Popen([sys.executable, "-m", "sandbox.server", "--state-dir", str(tmp_path), "--host", host,
                               "--kube-port", str(kube), "--metrics-port", str(metrics)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (listening(f"http://127.0.0.1:{kube}") and listening(f"http://127.0.0.1:{metrics}")):
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        bound = {c.laddr.port: c.laddr.ip for c in psutil.Process(server.pid).net_connections("inet") if c.status == psutil.CONN_LISTEN}
        assert bound == {kube: host, metrics: host}
        assert requests.get(f"http://127.0.0.1:{metrics}/healthz", timeout=5).ok
    finally:
        server.terminate()
        server.wait(30)
