"""Airflow settings every deployment of this project carries (docker-compose.yaml,
deploy/helm/values.yaml, and the e2e harness that stands in for them), with the reason for each.
tests/monitoring/test_docker_compose.py checks the deployments carry them."""

from __future__ import annotations

REQUIRED_AIRFLOW_SETTINGS: dict[str, str] = {
    # A task's calls to the execution API (its start, heartbeats, XCom, its end) must ride out an
    # API server restart. Airflow's 5 attempts (waits random-exponential from 1 s) give up after
    # about 10 s: the reliability campaign's api-server-kill row saw inject's worker give up at its
    # start, the task then left until the scheduler's task_instance_heartbeat_timeout (5 min).
    # 10 attempts wait minutes (the waits are capped at workers.execution_api_retry_wait_max, 90 s).
    "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "10",
}
