"""Impact analysis on known synthetic runs: the tests' judgements, the timings, the scores and the findings."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaos_engineering.policy import Threshold
from chaos_engineering.report.analysis import AnalysisSettings, analyse_run, beyond, compare, effective_thresholds, moment, worse_direction
from chaos_engineering.operators.result import verdict
from chaos_engineering.report.findings import RULES, evaluate
from chaos_engineering.report.scores import business_metrics_of, health_score, impact_score
from chaos_engineering.safety import bound_of, check, failed_reads_breach
from tests.unit.test_report_synthetic import T0, THRESHOLDS, Shape, base_result, synthetic_run


def analysed(result, series):
    run = analyse_run(result, THRESHOLDS, series)
    return run, evaluate(run)


def rules_of(findings):
    return [(f.rule, f.metric or f.stage) for f in findings]


def test_the_windows_split_at_injection_and_removal():
    run, _ = analysed(*synthetic_run(baseline_s=300, fault_s=120, recovery_s=900))
    windows = run.metrics["booking_rate"].windows
    assert (windows["baseline"].n, windows["fault"].n, windows["recovery"].n) == (300, 120, 900)
    assert run.ended_by == "duration" and run.removed_at - run.injected_at == 120


def test_no_change_is_no_finding():
    result, series = synthetic_run()
    run, findings = analysed(result, series)
    for metric in run.metrics.values():
        assert {c.judgement for c in metric.versus_baseline.values()} == {"no significant change"}, metric.name
        assert metric.time_to_baseline_s is not None
    assert findings == []
    assert impact_score(run, business_metrics_of(run, None)).value == 0.0
    assert health_score(run, series).value == 100.0


def test_a_clear_shift_that_recovers():
    result, series = synthetic_run({"p95_latency": Shape(during=800.0, lingers_s=90.0)})
    run, findings = analysed(result, series)
    p95 = run.metrics["p95_latency"]
    during, after = p95.versus_baseline["fault"], p95.versus_baseline["recovery"]
    assert during.judgement == "rose" and during.p_value < 1e-10 and during.cliffs_delta > 0.9
    # 90 of the 900 recovery samples are still high: significant maybe, but a small effect only.
    assert after.judgement == "no significant change" and abs(after.cliffs_delta) < 0.33
    assert p95.time_to_baseline_s == pytest.approx(90.0, abs=2.0)
    assert p95.time_to_bound_s == 0.0  # 1050 ms never crossed the 3000 ms bound
    assert p95.headroom_used == pytest.approx((p95.worst_in_fault - 250.0) / (3000.0 - 250.0))
    assert rules_of(findings) == [("held-but-moved", "p95_latency")]
    assert "p95_latency rose from a median of" in findings[0].detail and "Cliff's delta = +1.00" in findings[0].detail


def test_slow_recovery_past_its_stage_deadline():
    result, series = synthetic_run(
        {"payment_failure_rate": Shape(during=1.2, lingers_s=1000.0, after=2.5)},
        recovery={"short_term": ("deadline_missed", 300.0), "business": ("deadline_missed", 900.0)},
        recovery_s=1200,
    )
    run, findings = analysed(result, series)
    slow = [f for f in findings if f.rule == "recovery-slow"]
    assert [f.stage for f in slow] == ["short_term", "business"]
    business = slow[1]
    assert business.severity == "critical"
    assert business.evidence["time_to_recover_s"] == 900.0 and business.evidence["deadline_s"] == 900.0
    assert business.evidence["series_time_to_recover_s"] == pytest.approx(1000.0, abs=1.0)
    assert business.detail.startswith("The business stage had not recovered after 900.0 s (deadline 900 s).")
    assert run.metrics["payment_failure_rate"].time_to_bound_s == pytest.approx(1000.0, abs=1.0)
    # One stage of three met its deadline.
    health = health_score(run, series)
    assert health.components["recovery"] == pytest.approx(1 / 3)
    assert result["verdict"] == "broken"


def test_a_stage_first_checked_after_its_deadline_is_not_judged():
    """Back when first looked at, but after the deadline (its worker died, the retry came late):
    neither held nor slow: the run is aborted, the finding says what is known, with the series' time."""
    result, series = synthetic_run(recovery={"immediate": ("unobserved", 312.0)})
    run, findings = analysed(result, series)

    assert (result["verdict"], result["verdict_reason"]) == (
        "aborted", "recovery not observed in time, so not judged: immediate (first checked after its deadline)")
    assert [f for f in findings if f.rule == "recovery-slow"] == []
    unobserved = [f for f in findings if f.rule == "recovery-unobserved"]
    assert [(f.stage, f.severity) for f in unobserved] == [("immediate", "warning")]
    assert unobserved[0].detail.startswith("The immediate stage was first checked 312.0 s after the fault's removal, after its 60 s deadline, "
                                           "and found back: whether it recovered in time is not known. In the series every stage metric")
    assert not run.stages[0].met_deadline


def test_a_stage_whose_task_failed_before_measuring_is_not_a_missed_deadline():
    result, _ = synthetic_run()
    result["recovery"]["short_term"] = None  # its worker was killed: no record, the task failed
    result["task_states"]["recovery_short_term"] = "failed"

    assert verdict(result) == ("aborted", "recovery not observed in time, so not judged: short_term (recovery_short_term failed before measuring)")


def test_a_missed_deadline_outweighs_a_stage_not_observed():
    result, _ = synthetic_run(recovery={"immediate": ("unobserved", 312.0), "business": ("deadline_missed", 900.0)})

    assert (result["verdict"], result["verdict_reason"]) == ("broken", "recovery missed its deadline: business")


def test_a_breach_detected_late():
    result, series = synthetic_run({"error_rate": Shape(during=1.0, ramp_s=50.0, lingers_s=40.0)}, breach=("error_rate", 75.0), noise={"error_rate": 0.0})
    run, findings = analysed(result, series)
    breach = run.breach
    # 0.2 + t/50 first exceeds the 0.7 bound at t = 26 s; the breach was declared at 75 s.
    assert breach.first_beyond_at == run.injected_at + 26
    assert breach.time_to_detect_s == pytest.approx(49.0)
    assert breach.time_to_remove_s == pytest.approx(0.3) and breach.time_to_removed_s == pytest.approx(4.0)
    assert run.ended_by == "breach"
    assert run.metrics["error_rate"].time_to_bound_s == pytest.approx(40.0)
    assert rules_of(findings) == [("safety-breach", "error_rate"), ("late-detection", "error_rate")]
    late = findings[1]
    assert late.evidence["time_to_detect_s"] == pytest.approx(49.0)
    assert "49.0 s later (more than 30 s)" in late.detail


def test_the_fail_safe_s_detection_starts_at_the_first_missing_sample():
    result, series = synthetic_run(gaps={"booking_rate": [(31.0, 10_000.0)]})
    at = result["fault"]["injected_at"] + 50.0
    result["monitor"] = {"status": "breach", "breach": failed_reads_breach("booking_rate", 2, at, "no data").as_dict(), "removal_requested_at": at + 0.2, "removal_error": "", "checks": 5, "values": {}}
    run = analyse_run(result, THRESHOLDS, series)
    assert run.breach.first_beyond_at == result["fault"]["injected_at"] + 31.0
    assert run.breach.time_to_detect_s == pytest.approx(19.0)


def test_a_breach_detected_in_time_is_not_late():
    result, series = synthetic_run({"error_rate": Shape(during=1.0, ramp_s=50.0)}, breach=("error_rate", 30.0), noise={"error_rate": 0.0})
    run, findings = analysed(result, series)
    assert run.breach.time_to_detect_s == pytest.approx(4.0)
    assert [f.rule for f in findings] == ["safety-breach"]


def test_data_gaps():
    result, series = synthetic_run(gaps={"booking_rate": [(100.0, 160.0)]})
    series = series.drop(columns="system_health")
    run, findings = analysed(result, series)
    quality = run.metrics["booking_rate"].quality
    assert (quality.expected, quality.present, quality.missing) == (1320, 1260, 60)
    assert quality.longest_gap_s == 61.0
    gaps = {f.metric: f for f in findings if f.rule == "data-gaps"}
    assert set(gaps) == {"booking_rate", "system_health"}
    assert gaps["booking_rate"].detail.startswith("60 of 1320 expected samples of booking_rate are missing (4.5%)")
    assert gaps["system_health"].evidence["missing_share"] == 1.0


def test_a_near_miss():
    result, series = synthetic_run({"payment_failure_rate": Shape(during=1.75)})
    run, findings = analysed(result, series)
    pfr = run.metrics["payment_failure_rate"]
    assert pfr.beyond_bound["fault"] == 0 and 0.8 <= pfr.headroom_used <= 1.0
    near = [f for f in findings if f.rule == "near-miss"]
    assert [f.metric for f in near] == ["payment_failure_rate"]
    assert f"{pfr.headroom_used:.0%} of the headroom" in near[0].detail
    assert ("held-but-moved", "payment_failure_rate") in rules_of(findings)
    assert impact_score(run, business_metrics_of(run, None)).value == pytest.approx(round(50 * pfr.headroom_used, 1))


def test_an_excursion_between_two_checks():
    result, series = synthetic_run({"p95_latency": Shape(during=0.0)})
    injected = result["fault"]["injected_at"]
    series.loc[pd.to_datetime([injected + 40, injected + 41, injected + 42], unit="s", utc=True), "p95_latency"] = 3500.0
    run, findings = analysed(result, series)
    excursion = [f for f in findings if f.rule == "excursion-not-caught"]
    assert [f.evidence["samples_beyond"] for f in excursion] == [3]


def test_an_emergency_stop_aborts_the_run():
    result, series = synthetic_run()
    result["monitor"] = {"status": "gone", "state": "gone", "checks": 4, "at": result["fault"]["injected_at"] + 40,
                         "removed_by": {"by": "emergency_stop", "detail": "the emergency stop of alice at 2026-05-28T20:30:00Z: 'db on fire'"}}
    result["verdict"], result["verdict_reason"] = "aborted", "the fault was removed from outside the run (emergency stop or watchdog)"
    run, findings = analysed(result, series)
    assert run.ended_by == "emergency_stop"
    assert rules_of(findings) == [("run-aborted", None)]
    assert "emergency stop" in findings[0].detail


@pytest.mark.parametrize(("monitor", "ended_by"), [
    ({"status": "halted"}, "emergency_stop"),
    ({"status": "gone", "removed_by": {"by": "watchdog", "detail": "the dead-man watchdog: the fault had no heartbeat"}}, "watchdog"),
    ({"status": "gone", "removed_by": {"by": "unknown", "detail": "someone outside this system"}}, "outside"),
    ({"status": "gone"}, "outside"),
], ids=["halted", "watchdog", "someone-unknown", "an-older-event-naming-nobody"])
def test_who_ended_the_fault(monitor, ended_by):
    result, series = synthetic_run()
    result["monitor"] = monitor | {"checks": 4, "at": result["fault"]["injected_at"] + 40}
    assert analysed(result, series)[0].ended_by == ended_by


def test_a_run_that_injected_nothing_has_no_scores():
    run = analyse_run(base_result(), THRESHOLDS, None)
    assert run.injected_at is None and run.stages == [] and run.breach is None
    assert impact_score(run, list(run.metrics)).value is None
    assert health_score(run, pd.DataFrame()).value is None
    assert [f.rule for f in evaluate(run)] == ["run-aborted"]


def test_hand_computed_scores():
    """10 s samples: 12 before injection, 6 during the fault, 12 after removal.

    booking_rate (business): baseline 20 (bound 18, headroom 2); 18.9 at worst during the fault:
    (18.9 - 20) / (18 - 20) = 0.55 of the headroom -> impact 50 x 0.55 = 27.5.
    p95_latency: 3 of its 18 readings from injection on exceed 3000 ms; booking_rate's 18 all hold:
    W = 33 / 36; every stage met its deadline: R = 1 -> health 100 x (33/36 + 1) / 2 = 95.8.
    """
    thresholds = {name: THRESHOLDS[name] for name in ("booking_rate", "p95_latency")}
    times = T0 + 10.0 * np.arange(30)
    booking = [19.9, 20.1] * 6 + [18.9, 19.1] * 3 + [19.9, 20.1] * 6
    latency = [240.0, 260.0] * 6 + [2900.0, 3100.0] * 3 + [240.0, 260.0] * 6
    series = pd.DataFrame({"booking_rate": booking, "p95_latency": latency}, index=pd.to_datetime(times, unit="s", utc=True))
    result, _ = synthetic_run(baseline_s=120, fault_s=60, recovery_s=120, step=10.0)
    result["experiment"]["thresholds"] = {n: t.model_dump(mode="json") for n, t in thresholds.items()}
    result["preflight"]["baseline"] = {"booking_rate": 20.0, "p95_latency": 250.0}
    result["recovery"]["business"]["values"] = {"booking_rate": 20.0}
    run = analyse_run(result, thresholds, series)
    assert run.metrics["booking_rate"].versus_baseline["fault"].judgement == "fell"
    assert run.metrics["booking_rate"].headroom_used == pytest.approx(0.55)
    assert run.metrics["p95_latency"].beyond_bound == {"baseline": 0, "fault": 3, "recovery": 0}
    impact = impact_score(run, business_metrics_of(run, None))
    health = health_score(run, series)
    assert (impact.value, health.value) == (27.5, 95.8)
    assert impact.components == {"booking_rate": 0.55}
    assert health.components == {"within_bounds": pytest.approx(33 / 36), "recovery": 1.0}


def test_a_breached_business_metric_counts_at_least_its_whole_headroom():
    result, series = synthetic_run({"booking_rate": Shape(during=-2.5)}, breach=("booking_rate", 20.0))
    series["booking_rate"] = 20.0  # the series missed it; the kill switch did not
    run = analyse_run(result, THRESHOLDS, series)
    assert impact_score(run, ["booking_rate"]).value == 50.0


def test_the_plan_s_tightened_limits_are_the_ones_judged():
    result = base_result()
    result["experiment"]["thresholds"]["p95_latency"]["limit"] = 1500
    merged = effective_thresholds(result, THRESHOLDS)
    assert merged["p95_latency"].limit == 1500 and merged["booking_rate"].limit == 10
    assert effective_thresholds({"experiment": None}, {"x": {"query": "q", "rule": "at_most", "limit": 1}})["x"].limit == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_780_000_000.5, 1_780_000_000.5),
        ("2026-05-28T20:26:40+00:00", T0),
        ("2026-05-28 20:26:40+00:00", T0),  # str(datetime), as json.dumps(default=str) writes it
        ("2026-05-28T20:26:40", T0),  # naive: UTC
        (dt.datetime(2026, 5, 28, 20, 26, 40, tzinfo=dt.timezone.utc), T0),
        (None, None),
    ],
    ids=["unix", "iso", "str-datetime", "naive", "datetime", "none"],
)
def test_moments(value, expected):
    assert moment(value) == expected


rules = st.sampled_from(["max_drop_percent", "max_increase", "at_most", "at_least"])
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(rules, st.floats(min_value=0, max_value=100), st.floats(min_value=0.001, max_value=1e4), finite)
def test_the_vectorised_judgement_agrees_with_the_kill_switch(rule, limit, baseline, value):
    threshold = Threshold(query="q", rule=rule, limit=limit)
    flagged = bool(beyond(np.array([value]), bound_of(threshold, baseline), worse_direction(threshold.rule))[0])
    assert flagged is (check("m", threshold, value, baseline, at=0) is not None)


@given(st.lists(st.integers(0, 5), min_size=3, max_size=30), st.lists(st.integers(0, 5), min_size=3, max_size=30))
def test_cliffs_delta_is_its_definition(window, baseline):
    x, y = np.array(window, float), np.array(baseline, float)
    pairs = np.sign(x[:, None] - y[None, :])
    assert compare("fault", y, x, AnalysisSettings()).cliffs_delta == pytest.approx(pairs.mean())


def test_the_rule_ids():
    tested = {"safety-breach", "recovery-slow", "recovery-unobserved", "not-back-to-baseline", "late-detection", "near-miss", "excursion-not-caught", "held-but-moved", "run-aborted", "data-gaps"}
    assert set(RULES) == tested


def test_a_metric_that_never_returned_to_baseline():
    result, series = synthetic_run({"booking_rate": Shape(during=-1.0, lingers_s=10_000.0, after=-1.0)})
    run, findings = analysed(result, series)
    stuck = [f for f in findings if f.rule == "not-back-to-baseline"]
    assert [f.metric for f in stuck] == ["booking_rate"] and stuck[0].severity == "warning"
    assert stuck[0].evidence["end_median"] == pytest.approx(19.0, abs=0.05)
    assert "below its baseline band" in stuck[0].detail
    assert run.metrics["booking_rate"].time_to_baseline_s is None and math.isclose(run.metrics["booking_rate"].time_to_bound_s, 0.0)
