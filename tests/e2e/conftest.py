"""Fixtures that start a real Airflow once per test session and stop it whatever happens."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
import requests

from sandbox.airflow_stack import AirflowStack
from tests.integration.receivers import S3Server

if TYPE_CHECKING:
    from tests.e2e.test_tier_runs import Chaos

StackFactory = Callable[..., AirflowStack]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: starts a real Airflow (four processes, PostgreSQL) and drives its REST API"
    )
    config.addinivalue_line(
        "markers",
        "no_preflight: no run of the test reaches pre-flight (refused before, or no tier run at all), so its "
        "setup does not wait for a steady platform: it runs while an earlier test's fault leaves the windows",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    """Each phase's report on the test's item (`rep_setup`, `rep_call`...), for fixtures that act on failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def needs_steady_platform(request: pytest.FixtureRequest) -> bool:
    """Whether the test's setup must wait for a platform pre-flight would pass (`no_preflight`)."""
    return request.node.get_closest_marker("no_preflight") is None


def chaos_page_url(chaos: Chaos, path: str) -> str:
    """An address of the Chaos page the plugin mounts at `/chaos`, under the stack's `[api] base_url`."""
    return f"{chaos.stack.base_url.rstrip('/')}/chaos{path}"


def report_links(chaos: Chaos, dag_id: str, run_id: str) -> dict[str, str]:
    """The report task's extra links (name: URL), as Airflow's REST API gives them to its UI."""
    path = f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances/report/links"
    return chaos.admin.request("GET", path)["extra_links"]


def get_as(chaos: Chaos, username: str, url: str) -> requests.Response:
    """GET `url` of the session's Airflow (its API or the Chaos page) with `username`'s own token."""
    return requests.get(url, headers={"Authorization": f"Bearer {chaos.stack.client(username).token()}"}, timeout=60)


def start_stack(
    tmp_path_factory: pytest.TempPathFactory,
    dags_folder: Path,
    plugins_folder: Path,
    env: Mapping[str, str] | None = None,
    *,
    executor: str = "LocalExecutor",
    database_url: str | None = None,
    broker_url: str | None = None,
) -> AirflowStack:
    """Start Airflow on `dags_folder` and `plugins_folder` with `env` (AIRFLOW_CONN_*, ...) added,
    its metadata database and broker on the machine's servers unless `database_url` (a database of
    its own) or `broker_url` (a Redis server) say otherwise.

    Its home (config, logs of every process and task) is a pytest temp folder, kept after the
    session for reading; the caller must `stop()` the stack.
    """
    home = tmp_path_factory.mktemp("airflow-home")
    # The scheduler creates runs as in production: chaos_on_deploy's asset-triggered runs need it.
    # No tier or drill run starts by itself: their schedules are a policy switch, off in the
    # include the tests run with (tests/e2e/test_include.py copies the shipped policy), and the
    # maintenance and trends DAGs arrive paused. The timetables are tested without a scheduler.
    settings = dict(env or {})
    stack = AirflowStack.start(
        home, dags_folder=dags_folder, plugins_folder=plugins_folder, env=settings, executor=executor,
        database_url=database_url, broker_url=broker_url,
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


@pytest.fixture(scope="session")
def s3_reports() -> Iterator[S3Server]:
    """moto's S3 API, reachable from the session's Airflow as connection `aws_reports`."""
    from tests.e2e.test_tier_runs import REPORTS_BUCKET

    with S3Server(REPORTS_BUCKET) as s3:
        yield s3


@pytest.fixture(scope="session")
def chaos(tmp_path_factory: pytest.TempPathFactory, sandbox, connections, s3_reports: S3Server):
    """One Airflow (LocalExecutor) on the real dags/ and plugins/ for every end-to-end module that
    needs no other: started once (a start costs a minute of the suite), shared in turn; each test
    rewrites the policy it runs under and leaves nothing of ours on the cluster (`clean_up_after`),
    and each module's last test leaves no run of the chaos DAGs going (`end_active_runs`). A module
    with another executor or Airflow builds its own `chaos`."""
    from tests.e2e.test_tier_runs import chaos_on_airflow

    with chaos_on_airflow(tmp_path_factory, sandbox, connections, s3=s3_reports) as chaos:
        yield chaos
