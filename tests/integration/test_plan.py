"""The plan step against the sandbox: the pods an approver is shown, the window's verdict, and the
refusal of a high-tier run that cannot inject in its window before anyone is asked."""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.operators import plan as plan_module
from chaos_engineering.operators.plan import PlanExperimentOperator
from tests.e2e.test_include import make_include

NY = ZoneInfo("America/New_York")


def context(dag_id: str, run_type: str = "manual") -> dict:
    run_id = f"{run_type}__plan-{uuid.uuid4().hex[:10]}"
    return {"dag_run": SimpleNamespace(dag_id=dag_id, run_id=run_id, run_type=run_type, run_after=dt.datetime.now(dt.timezone.utc))}


def plan(tier: str, experiment: str, ctx: dict, *, dry_run: bool = False) -> dict:
    return PlanExperimentOperator(task_id="plan", tier=tier, experiment=experiment, dry_run=dry_run).execute(ctx)


@pytest.fixture
def at(monkeypatch):
    """Plan as if it were `moment` (New York wall time)."""
    def set_now(*args: int) -> None:
        monkeypatch.setattr(plan_module, "_now", lambda: dt.datetime(*args, tzinfo=NY).astimezone(dt.timezone.utc))
    return set_now


def test_the_plan_shows_the_pods_the_blast_radius_resolves_to_and_the_window(connections, at):
    at(2026, 5, 5, 14, 0)  # Tuesday afternoon: business hours, outside the medium window
    planned = plan("medium", "cache-failure", context("chaos_medium_risk"))
    radius = planned["blast_radius"]
    assert radius["max_pods"] == 1 and radius["problems"] == []
    [side] = radius["sides"]
    assert {k: side[k] for k in ("side", "mode", "value", "namespaces")} == {"side": "selector", "mode": "one", "value": None, "namespaces": ["booking"]}
    assert side["pods"] and all(pod.startswith("booking/cache-") for pod in side["pods"])
    assert side["ready"] == len(side["pods"])
    assert planned["actions"] == ["pod-failure"]
    assert planned["note"] == "cache-failure · medium · real"
    assert planned["window"]["words"] == "manual override will be used"
    assert planned["window"]["override_used"] is True


def test_a_network_partition_shows_both_sides(connections, at):
    at(2026, 5, 6, 1, 0)  # inside the high window
    planned = plan("high", "booking-api-database-partition", context("chaos_high_risk"), dry_run=True)
    selector, target = planned["blast_radius"]["sides"]
    assert (selector["side"], selector["mode"], target["side"], target["mode"]) == ("selector", "one", "target", "all")
    assert all(p.startswith("booking/booking-api-") for p in selector["pods"]) and selector["pods"]
    assert all(p.startswith("booking/database-") for p in target["pods"]) and target["pods"]
    assert planned["window"]["words"] == "in window"
    assert planned["note"] == "booking-api-database-partition · high · dry run"


def test_a_high_tier_run_that_cannot_inject_in_its_window_is_refused_at_plan(connections, at):
    at(2026, 5, 5, 14, 0)
    with pytest.raises(AirflowFailException) as refused:
        plan("high", "booking-api-database-partition", context("chaos_high_risk"))
    assert str(refused.value) == (
        "refused at plan, before anyone is asked to approve: the 90 s fault planned for Tue 2026-05-05 14:00 EDT "
        "cannot inject in the high tier's window (within 00:00-06:00 daily and outside business hours, America/New_York): "
        "cannot run before Wed 2026-05-06 00:00 EDT. Refused: the high tier never runs in business hours, manual or not, "
        "and Tue 2026-05-05 14:00 EDT is in business hours. Its window next opens at Wed 2026-05-06 00:00 EDT."
    )
    # A dry run injects nothing: it is planned whatever the window says, which it records.
    dry = plan("high", "booking-api-database-partition", context("chaos_high_risk"), dry_run=True)
    assert dry["window"]["words"] == "cannot run before Wed 2026-05-06 00:00 EDT" and dry["window"]["allowed"] is False


def test_a_manual_high_run_the_policy_lets_override_is_planned_saying_so(connections, at, tmp_path, monkeypatch):
    folder = make_include(tmp_path / "include", tmp_path / "reports", **{"tiers.high.manual_override": True})
    monkeypatch.setenv("CHAOS_INCLUDE_DIR", str(folder))
    at(2026, 5, 5, 7, 0)  # before business hours, after the high window
    planned = plan("high", "booking-api-database-partition", context("chaos_high_risk"))
    assert planned["window"]["words"] == "manual override will be used"
    # Business hours are never overridden for the high tier: the override may be used from 20:00.
    at(2026, 5, 5, 14, 0)
    with pytest.raises(AirflowFailException, match="cannot run before Tue 2026-05-05 20:00 EDT"):
        plan("high", "booking-api-database-partition", context("chaos_high_risk"))
