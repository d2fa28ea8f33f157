"""The watchdog Deployment pushes its liveness: its command names a Pushgateway connection it defines."""

from __future__ import annotations

import json

import yaml

from chaos_engineering.cli import build_parser
from tests.monitoring.metric_names import REPO_ROOT

DEPLOYMENT = REPO_ROOT / "deploy" / "kubernetes" / "watchdog.yaml"


def container() -> dict:
    (only,) = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]["containers"]
    return only


def test_the_watchdog_command_parses_and_names_a_pushgateway_connection():
    command = container()["command"]
    assert command[:2] == ["chaosctl", "watchdog"]
    args = build_parser().parse_args(command[1:])
    assert args.pushgateway_conn_id, "without --pushgateway-conn-id the watchdog pushes no liveness and its alerts fire forever"


def test_the_pushgateway_connection_it_names_is_defined_as_an_http_connection():
    conn_id = build_parser().parse_args(container()["command"][1:]).pushgateway_conn_id
    env = {e["name"]: e.get("value") for e in container()["env"]}
    value = env.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    assert value, f"AIRFLOW_CONN_{conn_id.upper()} is not set: the connection {conn_id!r} the watchdog pushes through does not exist"
    connection = json.loads(value)
    assert connection["conn_type"] == "http" and connection["host"].startswith("http")
