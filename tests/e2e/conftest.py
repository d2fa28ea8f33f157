"""Fixtures that start a real Airflow once per test session and stop it whatever happens."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from sandbox.airflow_stack import AirflowStack

StackFactory = Callable[..., AirflowStack]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: starts a real Airflow (four processes, PostgreSQL) and drives its REST API"
    )


def start_stack(
    tmp_path_factory: pytest.TempPathFactory,
    dags_folder: Path,
    plugins_folder: Path,
    env: Mapping[str, str] | None = None,
    *,
    executor: str = "LocalExecutor",
) -> AirflowStack:
    """Start Airflow on `dags_folder` and `plugins_folder` with `env` (AIRFLOW_CONN_*, ...) added.

    Its home (config, logs of every process and task) is a pytest temp folder, kept after the
    session for reading; the caller must `stop()` the stack.
    """
    home = tmp_path_factory.mktemp("airflow-home")
    # Every run of a test is triggered by the test. The tier DAGs' own schedules (the low tier's
    # rotation at its latest tick, once unpaused) would otherwise inject beside it, depending on
    # the hour CI runs at. The timetables themselves are tested without a scheduler.
    settings = {"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"} | dict(env or {})
    stack = AirflowStack.start(
        home, dags_folder=dags_folder, plugins_folder=plugins_folder, env=settings, executor=executor
    )
    timings = ", ".join(f"{phase} at {seconds:.1f}s" for phase, seconds in stack.timings.items())
    memory = stack.memory()
    print(
        f"\nAirflow ({executor}) healthy in {stack.startup_seconds:.1f}s ({timings}); {memory['processes']} processes, "
        f"RSS {memory['rss'] / 2**20:.0f} MiB, PSS {memory['pss'] / 2**20:.0f} MiB; home {home}"
    )
    return stack


@pytest.fixture(scope="session")
def airflow_stack_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackFactory]:
    """`factory(dags_folder, plugins_folder, env=None)`: one stack per distinct set of arguments,
    started on first use, reused for the rest of the session, stopped at its end."""
    stacks: dict[tuple, AirflowStack] = {}

    def factory(
        dags_folder: Path, plugins_folder: Path, env: Mapping[str, str] | None = None
    ) -> AirflowStack:
        key = (
            Path(dags_folder).resolve(),
            Path(plugins_folder).resolve(),
            tuple(sorted((env or {}).items())),
        )
        if key not in stacks:
            stacks[key] = start_stack(tmp_path_factory, dags_folder, plugins_folder, env)
        stack = stacks[key]
        stack.check_alive()
        return stack

    yield factory
    failures = []
    for stack in stacks.values():
        try:
            stack.stop()
        except Exception as error:  # stop every stack before reporting any
            failures.append(error)
    if failures:
        raise failures[0]
