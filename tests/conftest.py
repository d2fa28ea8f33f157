"""Shared test settings: an Airflow home of the tests' own, the shared Chaos Mesh data, and one
sandbox per session with Airflow connections pointing at it."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from sandbox.runner import Sandbox
from tests.sandbox.sandbox_support import PrometheusAPI

# Airflow reads its configuration on import: give the tests a home of their own, never ~/airflow.
if "AIRFLOW_HOME" not in os.environ:
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="chaos-tests-airflow-")
    atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], ignore_errors=True)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """`../shared` beside the repository: CI always has it; a user's clone may not."""
    path = REPO_ROOT.parent / "shared"
    if not (path / "chaos-mesh").is_dir():
        if os.environ.get("CI"):  # CI always has it: its absence there is a broken checkout, not a skip
            pytest.fail(f"{path / 'chaos-mesh'} is absent, and CI must have ../shared beside the clone")
        pytest.skip("../shared/chaos-mesh is absent (a user's clone); CI always has it")
    return path


# --- two workers (`make test`: pytest-xdist, -n 2 --no-loadscope-reorder) -----------------------

E2E_SCOPE = "tests/e2e/"
#: End-to-end modules that start an Airflow of their own (another executor, the demo's, the
#: harness checks, the pipelines', the scenarios' long runs): each may run on either worker,
#: beside the shared one.
OWN_AIRFLOW = frozenset(
    f"{E2E_SCOPE}{name}.py" for name in ("test_celery_path", "test_demo", "test_harness_smoke", "test_pipelines", "test_scenario_runs")
)


#: Modules outside the shared-Airflow scope that wait minutes on the sandbox's real clock (the
#: shipped scenarios' whole timelines: 8 min): collected right after the end-to-end ones, so that
#: their worker starts them early and the suite never ends waiting on one while the other worker
#: idles (it did: 3 of the 51 min of the CI run of 2026-12-06).
LONG_FIRST = frozenset({"tests/sandbox/test_shipped_scenarios_hold.py"})


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The end-to-end modules first (as collected), then LONG_FIRST, then the rest (a stable sort)."""
    def rank(item: pytest.Item) -> int:
        module = item.nodeid.split("::", 1)[0]
        return 0 if module.startswith(E2E_SCOPE) else 1 if module in LONG_FIRST else 2

    items.sort(key=rank)


@pytest.hookimpl(optionalhook=True)  # only with pytest-xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """A module runs whole on one worker (its module fixtures start once). The end-to-end modules
    on the session's shared Airflow (tests/e2e/conftest.py `chaos`) run one after another on one
    worker; the few with an Airflow of their own (`OWN_AIRFLOW`) and the rest run on the other.
    At most two Airflows run at once, on two cores; most of the rest waits on the sandbox's clock,
    not the CPU. Each worker is a pytest session with a sandbox of its own (`sandbox` below).
    (xdist's own `--dist loadgroup` cannot group here: it renames test ids, which pytest 9 no
    longer lets it.)"""
    from xdist.scheduler import LoadScopeScheduling

    class EndToEndTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return E2E_SCOPE if module.startswith(E2E_SCOPE) and module not in OWN_AIRFLOW else module

    return EndToEndTogether(config, log)


# --- the sandbox: one per session, started as early as possible -----------------------------

# A recording rule handed to Prometheus through --rule-file, to prove extra rule files load.
RULES = """\
groups:
  - name: sandbox-test
    rules:
      - record: sandbox_test:bookings_confirmed:rate30s
        expr: sum(rate(bookings_total{outcome="confirmed"}[30s]))
"""

_STARTING = pytest.StashKey[tuple[Path, Future]]()


def _start(state_dir: Path) -> Sandbox:
    rules = state_dir / "test-rules.yml"
    rules.write_text(RULES)
    return Sandbox.start(state_dir, scrape_interval="1s", rule_files=[rules])


def pytest_collection_finish(session: pytest.Session) -> None:
    # Start in the background as soon as we know a test needs the sandbox: the minute of
    # baseline data the Prometheus tests wait for then accrues while the other tests run.
    if any("sandbox" in getattr(item, "fixturenames", ()) for item in session.items):
        state_dir = Path(tempfile.mkdtemp(prefix="chaos-sandbox-test-"))
        future = ThreadPoolExecutor(1, thread_name_prefix="sandbox-start").submit(_start, state_dir)
        session.config.stash[_STARTING] = (state_dir, future)


def pytest_sessionfinish(session: pytest.Session) -> None:
    starting = session.config.stash.get(_STARTING, None)
    if starting is None:
        return
    state_dir, future = starting
    try:
        future.result().stop()
    except Exception:
        # Start-up failed: whatever did start is still listed in the pid files.
        Sandbox(state_dir, 0, 0, 0, 0).stop()
    if session.testsfailed:
        print(f"\nsandbox logs kept in {state_dir / 'logs'}")
    else:
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    """The session's sandbox, 1 s scrape interval; it is stopped when the session ends."""
    _, future = request.config.stash[_STARTING]
    return future.result()


@pytest.fixture(scope="session")
def prometheus(sandbox: Sandbox) -> PrometheusAPI:
    return PrometheusAPI(sandbox.prometheus_url)


@pytest.fixture(scope="session")
def connections(sandbox: Sandbox) -> dict[str, str]:
    """`kubernetes_default`, `prometheus_default` and `dr_probe_default` as environment connections."""
    env = {
        "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(
            {"conn_type": "kubernetes", "extra": {"kube_config_path": str(sandbox.kubeconfig_path), "namespace": "chaos-engineering"}}
        ),
        "AIRFLOW_CONN_PROMETHEUS_DEFAULT": json.dumps({"conn_type": "http", "host": sandbox.prometheus_url}),
        "AIRFLOW_CONN_PROMETHEUS_DEAD": json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9"}),
        # The booking platform's disaster-recovery probe (canary bookings) on the sandbox.
        "AIRFLOW_CONN_DR_PROBE_DEFAULT": json.dumps({"conn_type": "http", "host": sandbox.metrics_url}),
    }
    os.environ.update(env)
    _wait_for_metrics(sandbox)
    return env


def _wait_for_metrics(sandbox: Sandbox, timeout: float = 90) -> None:
    """Until every threshold query of the shipped policy has a value: rates need two scrapes."""
    import time

    from chaos_engineering.policy import load_policy

    policy, _ = load_policy()
    api, deadline = PrometheusAPI(sandbox.prometheus_url), time.monotonic() + timeout
    while missing := [n for n, t in policy.safety.thresholds.items() if api.value(t.query) is None]:
        assert time.monotonic() < deadline, f"no data for {missing} after {timeout} s"
        time.sleep(1)

