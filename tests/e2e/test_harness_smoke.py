"""The e2e harness on a tiny DAG: approve, reject, and an unassigned user, through the REST API only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.airflow_stack import AirflowApiError, AirflowClient, AirflowStack, TaskStateChange
from tests.e2e.conftest import start_stack

pytestmark = pytest.mark.e2e

DAG_ID = "hitl_smoke"
SMOKE_DAGS = Path(__file__).parent / "smoke_dags"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    # Module scope, not the session factory: the product's e2e tests start their own stack on the
    # real dags/ and plugins/, and this one should not idle beside it on two cores.
    plugins = tmp_path_factory.mktemp("no-plugins")
    stack = start_stack(tmp_path_factory, SMOKE_DAGS, plugins, env={})
    try:
        stack.client("admin").wait_for_dag(DAG_ID, timeout=120)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def admin(stack: AirflowStack) -> AirflowClient:
    return stack.client("admin")


@pytest.fixture(scope="module")
def sre(stack: AirflowStack) -> AirflowClient:
    return stack.client("sre-oncall")


def test_airflow_is_healthy_and_its_startup_is_measured(stack: AirflowStack, admin: AirflowClient) -> None:
    health = admin.health()
    memory = stack.memory()
    rss_mib, pss_mib = memory["rss"] / 2**20, memory["pss"] / 2**20
    print(
        f"\nAirflow took {stack.startup_seconds:.1f}s to start (phases ended at {stack.timings}); "
        f"{memory['processes']} processes, RSS {rss_mib:.0f} MiB, PSS {pss_mib:.0f} MiB"
    )

    assert {
        part: health[part]["status"] for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
    } == {
        "metadatabase": "healthy",
        "scheduler": "healthy",
        "triggerer": "healthy",
        "dag_processor": "healthy",
    }
    assert stack.startup_seconds < 180, stack.timings
    assert memory["processes"] >= len(stack.processes)
    assert not admin.dag(DAG_ID)["is_paused"]


def test_approval_by_the_assigned_sre_runs_to_success(admin: AirflowClient, sre: AirflowClient) -> None:
    run_id = admin.trigger(DAG_ID, {"experiment": "approve-me"})
    sre.wait_for_task_state(DAG_ID, run_id, "approve", "awaiting_input", timeout=90)
    pending = [p for p in sre.pending_approvals(DAG_ID) if p["task_instance"]["dag_run_id"] == run_id]
    assert [(p["task_instance"]["task_id"], p["assigned_users"]) for p in pending] == [
        ("approve", [{"id": "sre-oncall", "name": "sre-oncall"}])
    ]

    response = sre.respond(DAG_ID, run_id, "approve", ["Approve"])
    changes: list[TaskStateChange] = []
    state = admin.wait_for_run(DAG_ID, run_id, timeout=90, on_change=changes.append, expect="success")

    print("\n" + "\n".join(map(str, changes)))
    assert state == "success"
    assert response["responded_by"] == {"id": "sre-oncall", "name": "sre-oncall"}
    assert admin.task_states(DAG_ID, run_id) == dict.fromkeys(
        ("plan", "approve", "settle", "finish"), "success"
    )
    assert "deferred" in {change.current for change in changes if change.task == "settle"}, changes
    assert admin.xcom(DAG_ID, run_id, "finish") == "done approve-me"
    assert not [p for p in sre.pending_approvals(DAG_ID) if p["task_instance"]["dag_run_id"] == run_id]


def test_rejection_fails_the_run_and_the_final_task_never_runs(
    admin: AirflowClient, sre: AirflowClient
) -> None:
    run_id = admin.trigger(DAG_ID, {"experiment": "reject-me"})

    sre.respond(DAG_ID, run_id, "approve", ["Reject"])
    with pytest.raises(AssertionError) as failure:
        admin.wait_for_run(DAG_ID, run_id, timeout=90, expect="success")

    assert admin.run_state(DAG_ID, run_id) == "failed"
    states = admin.task_states(DAG_ID, run_id)
    assert states == {
        "plan": "success",
        "approve": "failed",
        "settle": "upstream_failed",
        "finish": "upstream_failed",
    }
    finish = admin.task_instance(DAG_ID, run_id, "finish")
    # Airflow stamps start/end dates when it marks upstream_failed; "never ran" is "never queued".
    assert (finish["try_number"], finish["queued_when"], finish["hostname"] or None, finish["pid"]) == (
        0,
        None,
        None,
        None,
    )
    # The harness's error names what happened: the states and the failed task's own log.
    message = str(failure.value)
    assert "ended 'failed', expected 'success'" in message
    assert "approve" in message and "upstream_failed" in message
    assert "last 40 log lines of approve" in message
    assert 'HITLRejectException: Receive "Reject"' in message, message


@pytest.mark.parametrize("user", ["cto", "admin"])
def test_a_user_not_assigned_cannot_answer(
    stack: AirflowStack, admin: AirflowClient, sre: AirflowClient, user: str
) -> None:
    run_id = admin.trigger(DAG_ID, {"experiment": f"not-{user}"})

    with pytest.raises(AirflowApiError) as refused:
        stack.client(user).respond(DAG_ID, run_id, "approve", ["Approve"])

    assert refused.value.status_code == 403
    assert f"User={user} (id={user}) is not a respondent for the task." == refused.value.detail
    assert admin.task_instance(DAG_ID, run_id, "approve")["state"] == "awaiting_input"
    sre.respond(DAG_ID, run_id, "approve", ["Reject"])  # leave no run waiting for a human
    assert admin.wait_for_run(DAG_ID, run_id, timeout=90) == "failed"
