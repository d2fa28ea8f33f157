"""A scenario's plan against the sandbox: every step rendered, dry-run and resolved, the pods the
standing steps touch together, the window for the whole span (a high-tier scenario that cannot fit
it refused before anyone is asked), and the approval request listing every step's digest."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.catalogue import load_catalogue, load_scenarios
from chaos_engineering.operators import plan_scenario as plan_module
from chaos_engineering.operators.approval import scenario_approval_body
from chaos_engineering.operators.plan_scenario import PlanScenarioOperator
from chaos_engineering.policy import Tier
from chaos_engineering.render import LABEL_RUN_KEY, LABEL_SCENARIO, LABEL_STEP, LABEL_TIER, OWNED_SELECTOR, run_key
from chaos_engineering.verification import digests_in
from chaos_engineering.windows import span_outlook
from tests.integration.test_plan import context

NY = ZoneInfo("America/New_York")
CATALOGUE = load_catalogue()
POLICY = CATALOGUE.policy


@pytest.fixture
def at(monkeypatch):
    """Plan as if it were `moment` (New York wall time)."""
    def set_now(*args: int) -> dt.datetime:
        moment = dt.datetime(*args, tzinfo=NY).astimezone(dt.timezone.utc)
        monkeypatch.setattr(plan_module, "_now", lambda: moment)
        return moment
    return set_now


def plan(scenario: str, ctx: dict, *, dry_run: bool = False) -> dict:
    return PlanScenarioOperator(task_id="plan", scenario=scenario, dry_run=dry_run).execute(ctx)


def test_the_zone_outage_is_planned_step_by_step_with_the_union_of_its_pods(connections, at):
    at(2026, 5, 6, 1, 0)  # Wednesday 01:00: inside the high window
    ctx = context("chaos_scenario_booking-zone-outage")
    planned = plan("booking-zone-outage", ctx, dry_run=True)
    assert [s["step"] for s in planned["steps"]] == ["zone-partition", "zone-pods-fail", "database-failover"]
    assert [(s["start_s"], s["end_s"]) for s in planned["steps"]] == [(0, 120), (20, 110), (40, 70)]
    assert planned["steps"][1]["starts"] == "20s after zone-partition started"
    assert planned["duration_s"] == 120 and planned["tier"] == "high"
    assert planned["window"]["words"] == "in window"
    assert planned["note"] == "booking-zone-outage · high · dry run"
    partition = planned["steps"][0]
    selector, target = partition["sides"]
    assert (selector["mode"], target["mode"]) == ("all", "all") and selector["pods"] and target["pods"]
    assert not set(selector["pods"]) & set(target["pods"])
    # Every booking pod is on one side of the partition; the failing zone and the primary are among them.
    assert planned["blast_radius"] == {"peak": len(selector["pods"]) + len(target["pods"]), "max_pods": 12, "problems": []}
    key = run_key(*(ctx["dag_run"].dag_id, ctx["dag_run"].run_id))
    for step in planned["steps"]:
        labels = step["manifest"]["metadata"]["labels"]
        assert step["manifest"]["metadata"]["name"] == f"{step['step']}-{key[:8]}"
        assert (labels[LABEL_RUN_KEY], labels[LABEL_TIER], labels[LABEL_SCENARIO], labels[LABEL_STEP]) == (key, "high", "booking-zone-outage", step["step"])
        assert OWNED_SELECTOR == f"app.kubernetes.io/managed-by={labels['app.kubernetes.io/managed-by']}"
    assert len({s["digest"] for s in planned["steps"]}) == 3


def test_the_thresholds_are_the_tightest_of_every_step_and_the_scenario(connections, at):
    at(2026, 5, 6, 3, 0)  # Wednesday 03:00: inside the medium window
    planned = plan("booking-api-slow-worker-starved", context("chaos_scenario_booking-api-slow-worker-starved"))
    assert planned["thresholds"]["p95_latency"]["limit"] == 1500  # the worker step's and the scenario's
    assert planned["thresholds"]["error_rate"]["limit"] == POLICY.safety.thresholds["error_rate"].limit
    assert planned["blast_radius"]["peak"] == 2 and planned["window"]["words"] == "in window"


def test_a_high_tier_scenario_that_cannot_fit_its_window_is_refused_at_plan(connections, at):
    at(2026, 5, 5, 14, 0)  # Tuesday afternoon: business hours
    with pytest.raises(AirflowFailException) as refused:
        plan("booking-zone-outage", context("chaos_scenario_booking-zone-outage"))
    assert str(refused.value).startswith(
        "refused at plan, before anyone is asked to approve: the 120 s fault planned for Tue 2026-05-05 14:00 EDT cannot inject "
        "in the high tier's window"
    )


def test_an_unknown_scenario_fails_naming_it(connections):
    with pytest.raises(AirflowFailException, match="no valid scenario 'nope' in include/scenarios"):
        plan("nope", context("chaos_scenario_nope"))


def test_the_approval_lists_every_step_with_its_digest(connections, at):
    moment = at(2026, 5, 6, 1, 0)
    planned = plan("booking-zone-outage", context("chaos_scenario_booking-zone-outage"))
    outlook = span_outlook(POLICY, Tier.HIGH, moment, planned["duration_s"], manual=True)
    body = scenario_approval_body(planned, policy=POLICY, tier=Tier.HIGH, outlook=outlook, deadline=moment + dt.timedelta(hours=4))
    assert digests_in(body) == [s["digest"] for s in planned["steps"]]
    lines = body.splitlines()
    assert lines[0] == ("**Zone outage of the booking namespace's pods in zone-a** (scenario `booking-zone-outage`, high tier): "
                        "3 steps over 2m, each fault ended by Chaos Mesh's own duration")
    steps = [line for line in lines if line.startswith("- Step ")]
    assert steps[0].startswith("- Step `zone-partition` (0s–2m, 0s after the scenario's start): NetworkChaos `partition` on `booking-api`; "
                               "selector: mode `all` in `booking` hits ")
    assert steps[2].startswith("- Step `database-failover` (40s–1m10s, 40s after zone-partition started): PodChaos `pod-kill` on `database`")
    assert any(line.startswith("- Window: **in window** for the whole span") for line in lines)


def test_every_shipped_scenario_plans_on_the_sandbox(connections, at):
    at(2026, 5, 6, 3, 0)
    for name in load_scenarios(CATALOGUE).scenarios:
        planned = plan(name, context(f"chaos_scenario_{name}"), dry_run=True)
        assert planned["blast_radius"]["problems"] == [], name
