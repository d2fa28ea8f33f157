"""The kill switch's arithmetic, one case per rule and edge."""

from __future__ import annotations

import math

import pytest

from chaos_engineering.policy import Threshold
from chaos_engineering.safety import baseline_problem, bound_of, check, fail_safe_breach, failed_reads_breach


def threshold(rule: str, limit: float, unit: str = "") -> Threshold:
    return Threshold(query="q", rule=rule, limit=limit, unit=unit)


CASES = [
    # id, rule, limit, baseline, value, breached
    ("drop-within", "max_drop_percent", 10, 20.0, 18.01, False),
    ("drop-at-bound", "max_drop_percent", 10, 20.0, 18.0, False),
    ("drop-beyond", "max_drop_percent", 10, 20.0, 17.99, True),
    ("drop-rise-is-fine", "max_drop_percent", 10, 20.0, 40.0, False),
    ("increase-within", "max_increase", 2, 1.0, 3.0, False),
    ("increase-beyond", "max_increase", 2, 1.0, 3.01, True),
    ("increase-from-zero", "max_increase", 0.5, 0.0, 0.6, True),
    ("at-most-ok", "at_most", 3000, None, 2999, False),
    ("at-most-beyond", "at_most", 3000, None, 3000.5, True),
    ("at-least-ok", "at_least", 99.95, None, 99.95, False),
    ("at-least-below", "at_least", 99.95, None, 99.9, True),
]


@pytest.mark.parametrize(("rule", "limit", "baseline", "value", "breached"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_check(rule, limit, baseline, value, breached):
    breach = check("m", threshold(rule, limit, "ms"), value, baseline, at=1.0)
    assert (breach is not None) is breached
    if breach:
        assert breach.threshold == "m" and breach.value == value and breach.at == 1.0
        assert f"{value:.4g} ms" in breach.message


def test_the_message_names_baseline_and_rule():
    breach = check("booking_rate", threshold("max_drop_percent", 10, "bookings/s"), 5.0, 20.0, at=0)
    assert breach.message == "booking_rate = 5 bookings/s is below its bound 18 bookings/s (baseline 20 bookings/s, max_drop_percent 10)"
    assert breach.bound == pytest.approx(18.0)


BASELINE_CASES = [
    # id, rule, limit, unit, baseline, problem (None: the rule can be judged)
    ("drop-missing", "max_drop_percent", 10, "bookings/s", None,
     "has no baseline: a relative rule (max_drop_percent 10) cannot be judged without one"),
    ("drop-zero", "max_drop_percent", 10, "bookings/s", 0.0,
     "baseline is 0 bookings/s: a relative rule (max_drop_percent 10) cannot be judged against it "
     "(no reading can drop below its bound of 0 bookings/s)"),
    ("drop-negative", "max_drop_percent", 10, "bookings/s", -2.0,
     "baseline is -2 bookings/s: a relative rule (max_drop_percent 10) cannot be judged against it "
     "(no reading can drop below its bound of -1.8 bookings/s)"),
    ("drop-nan", "max_drop_percent", 10, "bookings/s", math.nan,
     "baseline is nan: a relative rule (max_drop_percent 10) cannot be judged"),
    ("increase-inf", "max_increase", 0.5, "%", math.inf, "baseline is inf: a relative rule (max_increase 0.5) cannot be judged"),
    ("increase-text", "max_increase", 0.5, "%", "0.1", "baseline '0.1' is not a number: a relative rule (max_increase 0.5) cannot be judged"),
    ("increase-bool", "max_increase", 0.5, "%", True, "baseline True is not a number: a relative rule (max_increase 0.5) cannot be judged"),
    ("increase-from-zero-is-judged", "max_increase", 0.5, "%", 0.0, None),
    ("drop-positive-is-judged", "max_drop_percent", 10, "bookings/s", 0.5, None),
    ("absolute-needs-none", "at_most", 3000, "ms", None, None),
]


@pytest.mark.parametrize(("rule", "limit", "unit", "baseline", "problem"), [c[1:] for c in BASELINE_CASES], ids=[c[0] for c in BASELINE_CASES])
def test_baseline_problem(rule, limit, unit, baseline, problem):
    assert baseline_problem(threshold(rule, limit, unit), baseline) == problem


@pytest.mark.parametrize("baseline", [None, 0.0, math.nan, math.inf], ids=["missing", "zero", "nan", "inf"])
def test_a_drop_is_never_bounded_by_an_unusable_baseline(baseline):
    """bound_of refuses what baseline_problem names: a bound of 0 would never fire."""
    with pytest.raises(ValueError, match="cannot be judged"):
        bound_of(threshold("max_drop_percent", 10), baseline)
    with pytest.raises(ValueError, match="cannot be judged"):
        check("booking_rate", threshold("max_drop_percent", 10), 0.0, baseline, at=0)


def test_fail_safe_breach_keeps_only_numbers():
    breach = fail_safe_breach("booking_rate", threshold("max_drop_percent", 10), "has no baseline", at=3.0, value=math.nan, baseline="x")
    assert breach.as_dict() == {
        "threshold": "booking_rate", "rule": "fail_safe", "value": None, "baseline": None, "limit": 10.0, "bound": None,
        "at": 3.0, "message": "booking_rate has no baseline; removing the fault (fail-safe)",
    }


@pytest.mark.parametrize("value", [None, math.nan, math.inf])
def test_missing_readings_are_never_judged_healthy(value):
    with pytest.raises(ValueError, match="no finite reading"):
        check("m", threshold("at_most", 1), value, None, at=0)


def test_failed_reads_breach():
    breach = failed_reads_breach("error_rate", 2, at=5.0, reason="connection refused")
    assert breach.rule == "max_failed_reads" and breach.value is None
    assert "2 times in a row (connection refused)" in breach.message
