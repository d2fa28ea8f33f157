"""Checks of a DAG's shape shared by the tier and scenario DAG tests."""

from __future__ import annotations

from chaos_engineering.tier_chain import chain_steps


def assert_chain(dag, approvals: list[str]) -> None:
    """The DAG's tasks are the chain's; every task of a step comes right after every task of the one
    before, and the tasks of one step run side by side (none waits for another)."""
    steps = chain_steps(approvals)
    for step in steps:
        for task in step:
            assert not set(step) & dag.get_task(task).get_flat_relative_ids(upstream=True), f"{dag.dag_id}: {task} waits for its own step {step}"
    assert sorted(dag.task_ids) == sorted(task for step in steps for task in step), dag.dag_id
    for earlier, later in zip(steps, steps[1:]):
        for before in earlier:
            for after in later:
                assert before in dag.get_task(after).upstream_task_ids, f"{dag.dag_id}: {before} must come right before {after}"
