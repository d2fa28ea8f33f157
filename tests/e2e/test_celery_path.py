"""The tier DAGs on the compose file's executor: CeleryExecutor, Redis broker, a Celery worker process.

The scenarios and their assertions on the cluster are test_tier_runs' own; each test here also
proves from the worker's log that the Celery worker, not the scheduler, ran the run's tasks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from sandbox.airflow_stack import CELERY_WORKER
from tests.e2e.test_tier_runs import (  # noqa: F401 (clean_cluster: an autouse fixture, for this module too)
    Chaos,
    chaos_on_airflow,
    clean_cluster,
    clean_low_risk_run,
    medium_run_approved_by_an_sre,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory, sandbox, connections) -> Iterator[Chaos]:
    # Module scope and stopped at the module's end: on two cores it must not idle beside the
    # LocalExecutor stack of test_tier_runs.
    with chaos_on_airflow(tmp_path_factory, sandbox, connections, executor="CeleryExecutor") as chaos:
        yield chaos


def tasks_the_worker_ran(chaos: Chaos, run_id: str) -> set[str]:
    """Task ids of `run_id` whose workload the Celery worker logged executing."""
    found: set[str] = set()
    with chaos.stack.log_path(CELERY_WORKER).open(errors="replace") as log:
        for line in log:
            if "Executing workload in Celery" in line and f"run_id='{run_id}'" in line:
                found.update(re.findall(r"task_id='([^']+)'", line))
    return found


def assert_ran_on_the_worker(chaos: Chaos, dag_id: str, run_id: str) -> None:
    # A task instance gets a hostname when a worker starts it; those never sent to an executor
    # (skipped, or EmptyOperators) have none.
    ran = {ti["task_id"] for ti in chaos.admin.task_instances(dag_id, run_id) if ti["hostname"]}
    on_worker = tasks_the_worker_ran(chaos, run_id)
    assert "inject" in ran, ran
    assert ran <= on_worker, f"not run by the Celery worker: {sorted(ran - on_worker)}"


def test_clean_low_risk_run_on_the_celery_worker(chaos: Chaos, sandbox) -> None:
    assert CELERY_WORKER in chaos.stack.processes
    run_id = clean_low_risk_run(chaos, sandbox)
    assert_ran_on_the_worker(chaos, "chaos_low_risk", run_id)


def test_medium_run_approved_by_an_sre_on_the_celery_worker(chaos: Chaos) -> None:
    run_id = medium_run_approved_by_an_sre(chaos)
    assert_ran_on_the_worker(chaos, "chaos_medium_risk", run_id)
    assert "approve_sre" in tasks_the_worker_ran(chaos, run_id)
