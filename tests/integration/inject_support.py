"""A tier run as its tasks see it, against the sandbox with every window open: for the tests of
inject and of what follows it (hand-over heartbeat, lock release)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.halt import HaltFlag
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.lock import ExperimentLock
from chaos_engineering.policy import load_policy
from chaos_engineering.operators.fault import InjectFaultOperator, RemoveFaultOperator
from chaos_engineering.render import LABEL_RUN_KEY, render_chaos_object, run_key
from chaos_engineering.verification import object_digest
from sandbox.steady import wait_steady
from tests.e2e.test_include import make_include
from tests.integration.chaos_support import NAMESPACE

ALL_DAY = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def open_include(tmp_path_factory, connections) -> Iterator[None]:
    """The shipped policy with a 30 s healthy window, every tier open all day (no business hours,
    no freeze date), so the test does not depend on the hour CI runs at."""
    folder = make_include(
        tmp_path_factory.mktemp("inject") / "include",
        tmp_path_factory.mktemp("reports"),
        **{"business_hours.weekly": {}, "business_hours.freeze_dates": [], "tiers.medium.window.weekly": ALL_DAY,
           "tiers.high.window.weekly": ALL_DAY},
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHAOS_INCLUDE_DIR", str(folder))
        # Inject takes its own steady state over this window: start from a steady platform, not
        # from whatever the test before left (or a sandbox that has just started).
        wait_steady(load_policy()[0])
        yield


class Records:
    """Airflow's human-in-the-loop records of one run, as the REST API would answer them."""

    def __init__(self, records: dict[str, dict | None]) -> None:
        self.records = records
        self.asked: list[str] = []

    def hitl_detail(self, dag_id: str, run_id: str, task_id: str) -> dict | None:
        self.asked.append(task_id)
        return self.records.get(task_id)


class Run:
    """One DAG run as its tasks see it, holding the lock; everything it left is removed after."""

    def __init__(self, dag_id: str, experiment: str, **params: object) -> None:
        self.dag_id = dag_id
        self.run_id = f"manual__inject-{uuid.uuid4().hex[:10]}"
        self.params = {"experiment": experiment, "dry_run": False} | params
        self.cluster = ChaosMeshHook()
        self.key = run_key(self.dag_id, self.run_id)

    @property
    def context(self) -> dict:
        return {"dag_run": SimpleNamespace(dag_id=self.dag_id, run_id=self.run_id, run_type="manual"), "params": self.params}

    def plan(self, experiment: str | None = None) -> dict:
        catalogue = load_catalogue()
        manifest = render_chaos_object(catalogue.get(experiment or self.params["experiment"]), catalogue.policy, dag_id=self.dag_id, run_id=self.run_id)
        return {"experiment": experiment or self.params["experiment"], "manifest": manifest, "digest": object_digest(manifest), "duration_s": 60}

    def inject(self, tier: str, records: Records | None = None, plan: dict | None = None) -> dict:
        operator = InjectFaultOperator(task_id="inject", tier=tier, plan=plan or self.plan())
        operator.airflow_api = records or Records({})
        return operator.execute(self.context)

    def objects(self) -> list[dict]:
        return [o for kind in ChaosKind for o in self.cluster.list(kind, None, f"{LABEL_RUN_KEY}={self.key}")]

    def lock(self) -> None:
        ExperimentLock(self.cluster, NAMESPACE).acquire(f"{self.dag_id}/{self.run_id}", 300)

    def cleanup(self) -> None:
        RemoveFaultOperator(task_id="remove_fault", plan={}).execute(self.context)
        ExperimentLock(self.cluster, NAMESPACE).release(f"{self.dag_id}/{self.run_id}")


def made_runs() -> Iterator[list[Run]]:
    """For a fixture: the runs a test makes, cleaned up after it (fault, lock, a halt it left)."""
    # Inject measures the platform itself: wait until it would pass (earlier faults settle).
    wait_steady(load_catalogue().policy)
    made: list[Run] = []
    yield made
    for run in made:
        run.cleanup()
    halt = HaltFlag(ChaosMeshHook(), NAMESPACE)
    if halt.state().halted:
        halt.clear("test", "test over")


def new_run(runs: list[Run], dag_id: str, experiment: str, **params: object) -> Run:
    run = Run(dag_id, experiment, **params)
    runs.append(run)
    run.lock()
    return run
