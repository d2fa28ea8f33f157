"""The approval request an approver reads (rendered exactly), the window's words in it, and the
plan's refusal of a high-tier run that cannot inject in its window."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.operators.approval import APPROVAL_KEY, approval_body, human_approval
from chaos_engineering.operators.common import ROTATION, requested_experiment
from chaos_engineering.operators.plan import refusal_at_plan, run_note
from chaos_engineering.operators.result import final_note
from chaos_engineering.policy import Tier
from chaos_engineering.render import render_chaos_object
from chaos_engineering.rules import effective_duration, fault_actions
from chaos_engineering.verification import digests_in, experiment_thresholds, object_digest
from chaos_engineering.windows import first_span_start, span_outlook

CATALOGUE = load_catalogue()
POLICY = CATALOGUE.policy
NY = ZoneInfo("America/New_York")
UTC = dt.timezone.utc
KILL_SWITCH = (
    "- Kill switch, every 10 s (2 unreadable checks in a row = breach): booking_rate ≥ baseline − 10 %; "
    "payment_failure_rate ≤ baseline + 2 %; error_rate ≤ baseline + 0.5 %; p95_latency ≤ 3000 ms; "
    "availability ≥ 99.95 %; system_health ≥ 95 %"
)
CLOSING = (
    "Approve: the run goes on to the window guard and pre-flight; any breach removes the fault at once. "
    "Reject or no answer: nothing is injected. Inject re-checks this answer in Airflow's records (who, when, the digest)."
)


def ny(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NY)


def plan_of(name: str, dag_id: str, run_id: str, sides: list[dict], problems: list[str] = ()) -> dict:
    """A plan as the plan task returns it, with the pods it resolved given here."""
    experiment = CATALOGUE.get(name)
    manifest = render_chaos_object(experiment, POLICY, dag_id=dag_id, run_id=run_id)
    return {
        "experiment": name,
        "tier": experiment.tier.value,
        "title": experiment.title,
        "hypothesis": experiment.hypothesis,
        "target_service": experiment.target_service,
        "kind": experiment.kind.value,
        "actions": fault_actions(experiment.spec),
        "manifest": manifest,
        "digest": object_digest(manifest),
        "duration_s": effective_duration(experiment, POLICY),
        "thresholds": experiment_thresholds(experiment, POLICY),
        "blast_radius": {"sides": sides, "max_pods": POLICY.tiers[experiment.tier].blast_radius.max_pods, "problems": list(problems)},
    }


MEDIUM = plan_of(
    "cache-failure", "chaos_medium_risk", "manual__2026-05-05T18:00:00+00:00",
    [{"side": "selector", "mode": "one", "value": None, "namespaces": ["booking"], "pods": ["booking/cache-0", "booking/cache-1"], "ready": 2}],
)
HIGH = plan_of(
    "booking-api-database-partition", "chaos_high_risk", "scheduled__2026-04-28T06:00:00+00:00",
    [
        {"side": "selector", "mode": "one", "value": None, "namespaces": ["booking"],
         "pods": ["booking/booking-api-0", "booking/booking-api-1", "booking/booking-api-2", "booking/booking-api-3"], "ready": 4},
        {"side": "target", "mode": "all", "value": None, "namespaces": ["booking"], "pods": ["booking/database-0"], "ready": 1},
    ],
)
SRE_ANSWER = {
    "chosen_options": ["Approve"],
    "params_input": {},
    "responded_at": "2026-04-28T07:00:00+00:00",
    "responded_by_user": {"id": "sre-oncall", "name": "sre-oncall"},
}


def test_the_medium_request_of_a_manual_run_outside_its_window_says_the_override_will_be_used():
    asked = ny(2026, 5, 5, 14, 0)  # a Tuesday afternoon: business hours, outside wed 02:00-05:00
    body = approval_body(
        MEDIUM,
        policy=POLICY,
        tier=Tier.MEDIUM,
        outlook=span_outlook(POLICY, Tier.MEDIUM, asked, MEDIUM["duration_s"], manual=True),
        deadline=asked + dt.timedelta(hours=4),
    )
    assert body == "\n".join([
        "**One cache pod fails** (`cache-failure`, medium tier): PodChaos `pod-failure` on `cache` for 120 s (enforced by Chaos Mesh)",
        "",
        "- Hypothesis: Latency rises while the cache is cold; bookings keep succeeding.",
        "- Blast radius (tier max 1 pod(s)): mode `one` in `booking` hits 1 of the 2 pod(s) resolved at plan (2 ready): "
        "booking/cache-0, booking/cache-1",
        KILL_SWITCH,
        "- Window: **manual override will be used** for the injection once approved (judged at Tue 2026-05-05 14:00 EDT); "
        "the medium tier runs within wed 02:00-05:00 and outside business hours",
        "- Answer by Tue 2026-05-05 18:00 EDT; an approval counts for 8 h after it is given",
        f"- Object: chaos-engineering/{MEDIUM['manifest']['metadata']['name']}",
        f"- Object digest: `{MEDIUM['digest']}` (inject creates the object only if it still has this digest)",
        "",
        CLOSING,
        "",
    ])
    # Inject finds the digest it compares in the request Airflow recorded.
    assert digests_in(body) == [MEDIUM["digest"]]


def test_the_executive_request_names_the_sre_approval_the_pods_and_the_planned_time():
    planned = ny(2026, 5, 1, 2, 0)  # the monthly tick, announced 72 h ahead
    body = approval_body(
        HIGH | {"blast_radius": HIGH["blast_radius"] | {"problems": ["a", "b", "c"]}},
        policy=POLICY,
        tier=Tier.HIGH,
        outlook=span_outlook(POLICY, Tier.HIGH, planned, HIGH["duration_s"], manual=False),
        deadline=ny(2026, 5, 1, 2, 0),
        scheduled=True,
        earlier=[("sre", SRE_ANSWER)],
    )
    assert body == "\n".join([
        "**Network partition between booking-api and the database** (`booking-api-database-partition`, high tier): "
        "NetworkChaos `partition` on `booking-api` for 90 s (enforced by Chaos Mesh)",
        "",
        "- Hypothesis: The partitioned replica fails its readiness probe and leaves the pool; bookings continue on the others.",
        "- Blast radius (tier max 3 pod(s)): selector: mode `one` in `booking` hits 1 of the 4 pod(s) resolved at plan (4 ready): "
        "booking/booking-api-0, booking/booking-api-1, booking/booking-api-2 … (+1 more); target: mode `all` in `booking` "
        "hits 1 of the 1 pod(s) resolved at plan (1 ready): booking/database-0",
        "- ⚠ Target check at plan: a, b … (+1 more)",
        KILL_SWITCH,
        "- Window: **in window** for the injection at its planned time, Fri 2026-05-01 02:00 EDT; "
        "the high tier runs within 00:00-06:00 daily and outside business hours",
        "- Answer by Fri 2026-05-01 02:00 EDT; an approval counts for 96 h after it is given",
        "- Earlier approval: SRE `sre-oncall`: Approve, Tue 2026-04-28 03:00 EDT",
        f"- Object: chaos-engineering/{HIGH['manifest']['metadata']['name']}",
        f"- Object digest: `{HIGH['digest']}` (inject creates the object only if it still has this digest)",
        "",
        CLOSING,
        "",
    ])


def test_the_operator_asks_with_the_runs_plan_earlier_answers_and_planned_time():
    """What the approval task reads when it runs: the plan and earlier answers from XCom, the
    planned time of a scheduled announced run, its own timeout for the deadline."""
    pulled = []

    def xcom_pull(task_ids: str, key: str = "return_value"):
        pulled.append((task_ids, key))
        return {("plan", "return_value"): HIGH, ("approve_sre", APPROVAL_KEY): SRE_ANSWER}.get((task_ids, key))

    planned = ny(2026, 5, 1, 2, 0)
    context = {
        "ti": SimpleNamespace(xcom_pull=xcom_pull),
        "dag_run": SimpleNamespace(run_type="scheduled", run_after=planned - dt.timedelta(hours=72)),
        "data_interval_end": planned,
    }
    operator = human_approval(POLICY, Tier.HIGH, "executive")
    asked = (planned - dt.timedelta(hours=70)).astimezone(UTC)
    body = operator.request_text(context, asked)
    assert pulled == [("plan", "return_value"), ("approve_sre", APPROVAL_KEY)]
    assert body == approval_body(
        HIGH,
        policy=POLICY,
        tier=Tier.HIGH,
        outlook=span_outlook(POLICY, Tier.HIGH, planned, HIGH["duration_s"], manual=False),
        deadline=asked + dt.timedelta(hours=72),
        scheduled=True,
        earlier=[("sre", SRE_ANSWER)],
    )
    assert "- Answer by Fri 2026-05-01 04:00 EDT;" in body  # asked 70 h before, the high tier waits 72 h
    assert "- Earlier approval: SRE `sre-oncall`: Approve, Tue 2026-04-28 03:00 EDT" in body

    # The SRE, asked first, sees no earlier approval; a manual run is judged at the moment asked.
    manual = context | {"dag_run": SimpleNamespace(run_type="manual", run_after=asked)}
    sre = human_approval(POLICY, Tier.HIGH, "sre").request_text(manual, ny(2026, 5, 5, 14, 0))
    assert "Earlier approval" not in sre
    assert "- Window: **cannot run before Wed 2026-05-06 00:00 EDT** for the injection once approved (judged at Tue 2026-05-05 14:00 EDT);" in sre


def test_an_approval_without_a_plan_is_never_asked():
    context = {"ti": SimpleNamespace(xcom_pull=lambda task_ids, key="return_value": None),
               "dag_run": SimpleNamespace(run_type="manual", run_after=ny(2026, 5, 5, 14, 0))}
    with pytest.raises(Exception, match="^the run has no plan: nothing to ask an approval for$"):
        human_approval(POLICY, Tier.MEDIUM, "sre").request_text(context, ny(2026, 5, 5, 14, 0))


@pytest.mark.parametrize(
    ("tier", "at", "duration_s", "manual", "words"),
    [
        pytest.param(Tier.MEDIUM, ny(2026, 5, 6, 2, 30), 120, False, "in window", id="inside"),
        pytest.param(Tier.MEDIUM, ny(2026, 5, 5, 14, 0), 120, True, "manual override will be used", id="override"),
        pytest.param(Tier.MEDIUM, ny(2026, 5, 5, 14, 0), 120, False, "cannot run before Wed 2026-05-06 02:00 EDT", id="scheduled-outside"),
        # The fault would outlast the window (05:00): the first start is the next Wednesday's.
        pytest.param(Tier.MEDIUM, ny(2026, 5, 6, 4, 59), 120, False, "cannot run before Wed 2026-05-13 02:00 EDT", id="outlasts"),
        pytest.param(Tier.HIGH, ny(2026, 5, 5, 14, 0), 90, True, "cannot run before Wed 2026-05-06 00:00 EDT", id="high-business-hours"),
        pytest.param(Tier.HIGH, ny(2026, 5, 5, 20, 30), 90, True, "cannot run before Wed 2026-05-06 00:00 EDT", id="high-evening"),
        pytest.param(Tier.LOW, ny(2026, 12, 24, 3, 0), 60, True, "cannot run before Sat 2026-12-26 00:00 EST", id="freeze-dates"),
    ],
)
def test_the_window_in_words(tier, at, duration_s, manual, words):
    assert span_outlook(POLICY, tier, at, duration_s, manual=manual).words == words


def test_the_first_span_start_fits_the_whole_fault():
    first = first_span_start(POLICY, Tier.HIGH, ny(2026, 5, 6, 5, 59), 120, manual=False)
    assert first == ny(2026, 5, 7, 0, 0).astimezone(UTC)
    assert first_span_start(POLICY, Tier.HIGH, ny(2026, 5, 6, 5, 58), 120, manual=False) == ny(2026, 5, 6, 5, 58).astimezone(UTC)


def test_the_refusal_at_plan_names_the_window_and_the_first_time_it_could_run():
    outlook = span_outlook(POLICY, Tier.HIGH, ny(2026, 5, 5, 14, 0), 90, manual=True)
    assert refusal_at_plan(POLICY, Tier.HIGH, outlook, 90) == (
        "refused at plan, before anyone is asked to approve: the 90 s fault planned for Tue 2026-05-05 14:00 EDT "
        "cannot inject in the high tier's window (within 00:00-06:00 daily and outside business hours, America/New_York): "
        "cannot run before Wed 2026-05-06 00:00 EDT. Refused: the high tier never runs in business hours, manual or not, "
        "and Tue 2026-05-05 14:00 EDT is in business hours. Its window next opens at Wed 2026-05-06 00:00 EDT."
    )


@pytest.mark.parametrize(("value", "expected"), [(ROTATION, None), ("", None), ("  ", None), (None, None), (" cache-failure ", "cache-failure")])
def test_the_rotation_is_asked_for_by_its_value_or_the_empty_one(value, expected):
    assert requested_experiment(value) == expected


def test_run_notes(monkeypatch):
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    assert run_note("cache-failure", Tier.MEDIUM, False) == "cache-failure · medium · real"
    assert run_note("cache-failure", Tier.MEDIUM, True) == "cache-failure · medium · dry run"
    plan = {"note": "cache-failure · medium · real"}
    assert final_note(plan, "held", "no threshold breached", "chaos_medium_risk", "manual__2026-05-05T18:00:00+00:00") == (
        "cache-failure · medium · real · held: no threshold breached\n\n"
        "Report: [HTML](/chaos/reports/chaos_medium_risk/manual__2026-05-05T18%3A00%3A00%2B00%3A00/report.html)"
        " · [PDF](/chaos/reports/chaos_medium_risk/manual__2026-05-05T18%3A00%3A00%2B00%3A00/report.pdf)"
    )
    assert final_note(None, "aborted", "the plan step failed: nothing was injected", "chaos_low_risk", "r1") == (
        "aborted: the plan step failed: nothing was injected\n\n"
        "Report: [HTML](/chaos/reports/chaos_low_risk/r1/report.html) · [PDF](/chaos/reports/chaos_low_risk/r1/report.pdf)"
    )


def test_the_run_notes_report_links_are_the_report_tasks_extra_links_under_the_api_base_url(monkeypatch):
    """Behind a proxy that serves Airflow under a sub-path, a site-relative `/chaos/...` would miss it."""
    from chaos_engineering.ui.links import ReportHtmlLink, ReportPdfLink

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://ops.example.com/airflow/")
    run_id = "manual__2026-05-05T18:00:00+00:00"
    key = SimpleNamespace(dag_id="chaos_medium_risk", run_id=run_id)
    html, pdf = ReportHtmlLink().get_link(None, ti_key=key), ReportPdfLink().get_link(None, ti_key=key)
    assert html == "https://ops.example.com/airflow/chaos/reports/chaos_medium_risk/manual__2026-05-05T18%3A00%3A00%2B00%3A00/report.html"
    assert final_note(None, "held", "no threshold breached", "chaos_medium_risk", run_id) == (
        f"held: no threshold breached\n\nReport: [HTML]({html}) · [PDF]({pdf})"
    )


def test_the_request_airflow_records_is_the_text_written_when_the_approval_is_asked(monkeypatch):
    """`execute` writes the request (Airflow's own upsert, patched: it needs a running task) with
    the body built at that moment, then parks the task awaiting the answer."""
    from airflow.providers.standard.operators import hitl
    from airflow.sdk.exceptions import TaskAwaitingInput
    from chaos_engineering.operators import approval

    recorded = {}
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **kwargs: recorded.update(kwargs))
    asked = ny(2026, 5, 5, 14, 0).astimezone(UTC)
    monkeypatch.setattr(approval, "_now", lambda: asked)
    context = {
        "ti": SimpleNamespace(xcom_pull=lambda task_ids, key="return_value": MEDIUM if task_ids == "plan" else None),
        "task_instance": SimpleNamespace(id="ti-1"),
        "dag_run": SimpleNamespace(run_type="manual", run_after=asked),
    }
    operator = human_approval(POLICY, Tier.MEDIUM, "sre")
    operator.notifiers = []  # the notifier is tested with the notification channels
    with pytest.raises(TaskAwaitingInput):
        operator.execute(context)
    assert recorded["body"] == operator.request_text(context, asked)
    assert "- Window: **manual override will be used**" in recorded["body"]
