"""docker-compose.yaml and .env.example, checked structurally (no Docker engine runs in CI)."""

from __future__ import annotations

import json
import re
import pytest
import yaml

from chaos_engineering.deployment import REQUIRED_AIRFLOW_SETTINGS
from tests.monitoring.metric_names import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-triggerer", "airflow-init"]
STATEFUL = ["postgres", "redis", "prometheus", "pushgateway", "grafana", "minio", "sandbox"]
CONNECTIONS = ["AIRFLOW_CONN_KUBERNETES_DEFAULT", "AIRFLOW_CONN_PROMETHEUS_DEFAULT", "AIRFLOW_CONN_PUSHGATEWAY_DEFAULT",
               "AIRFLOW_CONN_SLACK_CHAOS", "AIRFLOW_CONN_AWS_REPORTS", "AIRFLOW_CONN_DR_PROBE_DEFAULT",
               "AIRFLOW_CONN_AIRFLOW_API_DEFAULT"]

def _env_example() -> dict[str, str]:
    values = {}
    for line in (REPO_ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value.strip("'")
    return values


def test_every_service_of_the_stack_is_declared() -> None:
    assert set(AIRFLOW + STATEFUL + ["minio-init"]) <= set(SERVICES)


@pytest.mark.parametrize("name", STATEFUL + [s for s in AIRFLOW if s != "airflow-init"])
def test_long_running_services_have_a_healthcheck(name: str) -> None:
    check = SERVICES[name]["healthcheck"]
    assert check["test"] and check["test"][0] in {"CMD", "CMD-SHELL"}


@pytest.mark.parametrize("name", ["postgres", "redis", "prometheus", "pushgateway", "grafana", "minio"])
def test_stateful_services_keep_their_data_in_a_named_volume(name: str) -> None:
    named = [v.split(":")[0] for v in SERVICES[name]["volumes"] if not v.startswith(".")]
    assert named and set(named) <= set(COMPOSE["volumes"])


@pytest.mark.parametrize("name", AIRFLOW)
def test_airflow_services_run_celery_with_postgres_redis_and_every_connection(name: str) -> None:
    env = SERVICES[name]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    for conn in CONNECTIONS:
        assert env[conn] == f"${{{conn}}}"
    assert {"./dags:/opt/airflow/dags", "./plugins:/opt/airflow/plugins", "./include:/opt/airflow/include"} <= set(SERVICES[name]["volumes"])
    assert SERVICES[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", AIRFLOW)
def test_every_airflow_service_carries_the_settings_the_project_needs(name: str) -> None:
    env = SERVICES[name]["environment"]
    assert {key: env.get(key) for key in REQUIRED_AIRFLOW_SETTINGS} == REQUIRED_AIRFLOW_SETTINGS


def test_the_helm_values_carry_the_settings_the_project_needs() -> None:
    values = yaml.safe_load((REPO_ROOT / "deploy" / "helm" / "values.yaml").read_text())
    env = {item["name"]: item["value"] for item in values["env"]}
    assert {key: env.get(key) for key in REQUIRED_AIRFLOW_SETTINGS} == REQUIRED_AIRFLOW_SETTINGS


def test_every_bind_mounted_file_exists() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO_ROOT / source).exists(), f"{name}: {source} does not exist"


def test_every_variable_without_a_default_is_in_env_example() -> None:
    text = (REPO_ROOT / "docker-compose.yaml").read_text()
    needed = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)\}", text))
    assert needed - set(_env_example()) == set()


def test_prometheus_loads_our_rules_and_grafana_our_dashboard() -> None:
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in SERVICES["prometheus"]["volumes"] if v.startswith("."))
    config = yaml.safe_load((REPO_ROOT / "include/prometheus/prometheus.yml").read_text())
    assert mounts["./include/prometheus/chaos-rules.yml"] in config["rule_files"]
    assert mounts["./include/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert any(job.get("honor_labels") for job in config["scrape_configs"] if job["job_name"] == "pushgateway")
    grafana = {v.split(":")[0]: v.split(":")[1] for v in SERVICES["grafana"]["volumes"]}
    provider = yaml.safe_load((REPO_ROOT / "include/grafana/provisioning/dashboards/chaos.yml").read_text())
    assert grafana["./include/grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    assert (REPO_ROOT / "include/grafana/dashboards/chaos-engineering.json").is_file()


def test_env_example_connections_are_json_pointing_at_the_compose_services() -> None:
    env = _env_example()
    conns = {k: json.loads(env[k]) for k in CONNECTIONS}
    assert conns["AIRFLOW_CONN_PROMETHEUS_DEFAULT"]["host"] == "http://prometheus:9090"
    assert conns["AIRFLOW_CONN_PUSHGATEWAY_DEFAULT"]["host"].startswith("http://pushgateway:")
    assert conns["AIRFLOW_CONN_AWS_REPORTS"]["extra"]["endpoint_url"] == "http://minio:9000"
    kube = conns["AIRFLOW_CONN_KUBERNETES_DEFAULT"]["extra"]
    assert kube["namespace"] == yaml.safe_load((REPO_ROOT / "include/safety_policy.yaml").read_text())["chaos_namespace"]
    assert kube["kube_config"]["clusters"][0]["cluster"]["server"] == "http://sandbox:6443"


def test_the_airflow_image_is_built_from_the_pinned_requirements() -> None:
    """The compose services run the project's image: built from the Dockerfile, on the Airflow
    and Python the requirements pin, with constraints.txt beside the requirements that read it."""
    common = COMPOSE["x-airflow-common"]
    assert common["build"] == "." and SERVICES["sandbox"]["image"] == common["image"]
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in common["environment"]
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM apache/airflow:(\S+)$", dockerfile, re.MULTILINE)
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO_ROOT / "requirements.txt").read_text(), re.MULTILINE).group(1)
    assert base == f"{pinned}-python3.11"
    assert "-c constraints.txt" in (REPO_ROOT / "requirements.txt").read_text()
    assert re.search(r"^COPY .*requirements\.txt constraints\.txt /opt/chaos/$", dockerfile, re.MULTILINE)
    assert "pip install --no-cache-dir -r /opt/chaos/requirements.txt" in dockerfile
    for folder in ("dags", "plugins", "include"):
        assert re.search(rf"^COPY .*{folder} /opt/airflow/{folder}$", dockerfile, re.MULTILINE)


def test_the_sandbox_listens_where_the_airflow_containers_reach_it() -> None:
    """Airflow reaches the sandbox as sandbox:6443 (its own loopback would be refused)."""
    command = SERVICES["sandbox"]["command"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    kube = json.loads(_env_example()["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
    server = kube["extra"]["kube_config"]["clusters"][0]["cluster"]["server"]
    assert server == f"http://sandbox:{command[command.index('--kube-port') + 1]}"
    probe = json.loads(_env_example()["AIRFLOW_CONN_DR_PROBE_DEFAULT"])
    assert probe["host"] == f"http://sandbox:{command[command.index('--metrics-port') + 1]}"


def test_inject_reads_approvals_as_a_read_only_account_that_approves_nothing() -> None:
    """The connection's account exists with the viewer role and its password, and is no approver."""
    from chaos_engineering.policy import load_policy

    env = _env_example()
    api = json.loads(env["AIRFLOW_CONN_AIRFLOW_API_DEFAULT"])
    assert api["host"] == "http://airflow-apiserver:8080"
    common = SERVICES["airflow-apiserver"]["environment"]
    roles = dict(pair.split(":") for pair in common["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(","))
    assert roles[api["login"]] == "viewer"
    assert json.loads(env["SIMPLE_AUTH_PASSWORDS"])[api["login"]] == api["password"]
    policy, _ = load_policy()
    assert all(api["login"] not in users for users in policy.approvers.values())
    assert all(user in roles for users in policy.approvers.values() for user in users)
