"""The kill switch's arithmetic, one case per rule and edge."""

from __future__ import annotations

import math

import pytest

from chaos_engineering.policy import Threshold
from chaos_engineering.safety import bound_of, check, failed_reads_breach


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


@pytest.mark.parametrize("baseline", [None, math.nan, math.inf])
def test_relative_rules_need_a_finite_baseline(baseline):
    with pytest.raises(ValueError, match="needs a baseline"):
        bound_of(threshold("max_increase", 1), baseline)


@pytest.mark.parametrize("value", [None, math.nan, math.inf])
def test_missing_readings_are_never_judged_healthy(value):
    with pytest.raises(ValueError, match="no finite reading"):
        check("m", threshold("at_most", 1), value, None, at=0)


def test_failed_reads_breach():
    breach = failed_reads_breach("error_rate", 2, at=5.0, reason="connection refused")
    assert breach.rule == "max_failed_reads" and breach.value is None
    assert "2 times in a row (connection refused)" in breach.message
