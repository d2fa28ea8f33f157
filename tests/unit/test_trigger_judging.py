"""The kill switch's judging in the monitor trigger: a baseline it cannot judge against is a fail-safe
breach at the first check, whatever the readings; judging never raises."""

from __future__ import annotations

import asyncio
import math

import pytest

from chaos_engineering import triggers
from chaos_engineering.policy import Threshold
from chaos_engineering.triggers import RecoveryTrigger, _Readings

THRESHOLDS = {
    "booking_rate": Threshold(query="bookings", unit="bookings/s", rule="max_drop_percent", limit=10),
    "error_rate": Threshold(query="errors", unit="%", rule="max_increase", limit=0.5),
    "p95_latency": Threshold(query="p95", unit="ms", rule="at_most", limit=3000),
}
BASELINE = {"booking_rate": 20.0, "error_rate": 0.1, "p95_latency": 250.0}
HEALTHY = {"booking_rate": (19.5, ""), "error_rate": (0.2, ""), "p95_latency": (260.0, "")}
UNREAD = {name: (None, "no data") for name in THRESHOLDS}
FAIL_SAFE = "; removing the fault (fail-safe)"


def readings(max_failed_reads: int = 2) -> _Readings:
    return _Readings("prometheus_default", THRESHOLDS, max_failed_reads)


CASES = [
    # id, baseline, current readings, (threshold, rule, message) of the breach or None
    ("holds", BASELINE, HEALTHY, None),
    ("a-zero-booking-baseline", BASELINE | {"booking_rate": 0.0}, HEALTHY, (
        "booking_rate", "fail_safe",
        "booking_rate baseline is 0 bookings/s: a relative rule (max_drop_percent 10) cannot be judged against it "
        f"(no reading can drop below its bound of 0 bookings/s){FAIL_SAFE}",
    )),
    ("a-missing-key", {"error_rate": 0.1, "p95_latency": 250.0}, HEALTHY, (
        "booking_rate", "fail_safe",
        f"booking_rate has no baseline: a relative rule (max_drop_percent 10) cannot be judged without one{FAIL_SAFE}",
    )),
    ("an-edited-text-baseline", BASELINE | {"error_rate": "0.1"}, HEALTHY, (
        "error_rate", "fail_safe", f"error_rate baseline '0.1' is not a number: a relative rule (max_increase 0.5) cannot be judged{FAIL_SAFE}",
    )),
    ("a-nan-baseline", BASELINE | {"error_rate": math.nan}, HEALTHY, (
        "error_rate", "fail_safe", f"error_rate baseline is nan: a relative rule (max_increase 0.5) cannot be judged{FAIL_SAFE}",
    )),
    ("no-baseline-record-at-all", None, HEALTHY, (
        "booking_rate", "fail_safe",
        f"booking_rate has no baseline: a relative rule (max_drop_percent 10) cannot be judged without one{FAIL_SAFE}",
    )),
    ("a-record-that-is-not-a-mapping", [20.0, 0.1], HEALTHY, (
        "booking_rate", "fail_safe",
        f"booking_rate has no baseline: a relative rule (max_drop_percent 10) cannot be judged without one{FAIL_SAFE}",
    )),
    # The first check: the readings failed once (below max_failed_reads) and the baseline still trips it.
    ("unusable-baseline-with-unreadable-metrics", BASELINE | {"booking_rate": 0.0}, UNREAD, (
        "booking_rate", "fail_safe",
        "booking_rate baseline is 0 bookings/s: a relative rule (max_drop_percent 10) cannot be judged against it "
        f"(no reading can drop below its bound of 0 bookings/s){FAIL_SAFE}",
    )),
    ("an-absolute-rule-needs-no-baseline", {"booking_rate": 20.0, "error_rate": 0.1}, HEALTHY, None),
    ("a-reading-that-cannot-be-judged", BASELINE, HEALTHY | {"p95_latency": (math.inf, "")}, (
        "p95_latency", "fail_safe", f"p95_latency cannot be judged (ValueError: p95_latency: no finite reading to judge){FAIL_SAFE}",
    )),
    ("a-crossed-bound", BASELINE, HEALTHY | {"booking_rate": (15.0, "")}, (
        "booking_rate", "max_drop_percent",
        "booking_rate = 15 bookings/s is below its bound 18 bookings/s (baseline 20 bookings/s, max_drop_percent 10)",
    )),
]


@pytest.mark.parametrize(("baseline", "current", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_judge_at_the_first_check(baseline, current, expected):
    judge = readings()
    judge.failures.update({n: 1 for n, (v, _) in current.items() if v is None})
    breach = judge.judge(current, baseline, at=7.0)
    if expected is None:
        assert breach is None
        return
    assert (breach.threshold, breach.rule, breach.message, breach.at) == (*expected, 7.0)


def test_a_fail_safe_breach_serialises_without_non_numbers():
    breach = readings().judge(HEALTHY, BASELINE | {"error_rate": math.nan}, at=1.0)
    assert breach.as_dict() | {"message": ""} == {
        "threshold": "error_rate", "rule": "fail_safe", "value": None, "baseline": None, "limit": 0.5, "bound": None, "at": 1.0, "message": "",
    }


def test_any_error_while_judging_is_a_fail_safe_breach(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(triggers, "check", broken)
    breach = readings().judge(HEALTHY, BASELINE, at=1.0)
    assert (breach.threshold, breach.rule, breach.message) == ("booking_rate", "fail_safe", f"booking_rate cannot be judged (RuntimeError: bug){FAIL_SAFE}")
    monkeypatch.setattr(triggers, "baseline_problem", broken)
    breach = readings().judge(HEALTHY, BASELINE, at=1.0)
    assert (breach.threshold, breach.rule, breach.limit) == ("kill switch", "fail_safe", None)
    assert breach.message == f"kill switch could not judge the readings (RuntimeError: bug){FAIL_SAFE}"


def test_a_recovery_stage_never_holds_against_an_unusable_baseline(monkeypatch):
    """The recovery trigger reads the same way: the stage stays pending (it misses its deadline), it never raises."""
    trigger = RecoveryTrigger(
        prometheus_conn_id="p", kubernetes_conn_id="k", thresholds={n: t.model_dump(mode="json") for n, t in THRESHOLDS.items()},
        baseline={"error_rate": 0.1}, interval_s=1, deadline_ts=0.0,
    )
    judge = readings()

    async def read_all():
        judge.last = {n: v for n, (v, _) in HEALTHY.items()}
        return HEALTHY

    monkeypatch.setattr(judge, "read_all", read_all)
    pending, _ = asyncio.run(trigger.check_once(judge))
    assert pending == ["booking_rate has no baseline: a relative rule (max_drop_percent 10) cannot be judged without one"]
