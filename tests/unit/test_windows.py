"""The window guard: freeze dates, business hours, tier windows, manual overrides and DST."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from chaos_engineering.policy import SafetyPolicy, load_policy
from chaos_engineering.windows import (
    WindowRules,
    WindowVerdict,
    next_window_start,
    window_verdict,
)
from tests.unit.catalogue_support import POLICY_PATH, base_policy, mutated

NY = zoneinfo.ZoneInfo("America/New_York")
UTC = dt.timezone.utc


def ny(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NY)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def policy() -> SafetyPolicy:
    loaded, issues = load_policy(POLICY_PATH)
    assert issues == []
    return loaded


# (id, tier, moment, manual, allowed, override_used, next_allowed, words the reason must contain)
VERDICTS = [
    # business hours (shipped policy: Fri 08:00-21:00, Sat 08:00-18:00, Sun 10:00-16:00, America/New_York)
    ("business-hours-scheduled-refused", "low", ny(2026, 11, 27, 12, 0), False, False, False,
     utc(2026, 11, 28, 2, 0), "a scheduled run never overrides its window"),
    ("off-peak-scheduled-allowed", "low", ny(2026, 11, 27, 22, 0), False, True, False, None, "inside"),
    ("business-hours-end-is-exclusive", "low", ny(2026, 11, 28, 18, 0), False, True, False, None, "inside"),
    ("business-hours-start-is-inclusive", "low", ny(2026, 11, 29, 10, 0), False, False, False,
     utc(2026, 11, 29, 21, 0), "is in business hours"),
    # manual override, recorded
    ("manual-override-recorded", "low", ny(2026, 11, 27, 12, 0), True, True, True,
     utc(2026, 11, 28, 2, 0), "Allowed by manual override (recorded)"),
    ("manual-inside-window-needs-no-override", "low", ny(2026, 11, 27, 22, 0), True, True, False, None, "inside"),
    ("medium-inside-maintenance-window", "medium", ny(2026, 11, 25, 3, 0), False, True, False, None,
     "within wed 02:00-05:00 and outside business hours"),
    ("medium-window-end-is-exclusive", "medium", ny(2026, 11, 25, 5, 0), False, False, False,
     utc(2026, 12, 2, 7, 0), "is outside the medium tier's hours (wed 02:00-05:00)"),
    ("medium-manual-override-outside-weekly", "medium", ny(2026, 11, 27, 3, 0), True, True, True,
     utc(2026, 12, 2, 7, 0), "override"),
    # high tier
    ("high-refused-in-business-hours-even-manual", "high", ny(2026, 11, 27, 12, 0), True, False, False,
     utc(2026, 11, 28, 5, 0), "the high tier never runs in business hours, manual or not"),
    ("high-manual-outside-window-no-override", "high", ny(2026, 11, 27, 22, 0), True, False, False,
     utc(2026, 11, 28, 5, 0), "(manual_override: false)"),
    ("high-inside-night-window", "high", ny(2026, 11, 28, 3, 0), False, True, False, None, "inside"),
    # freeze dates: local dates, nothing runs, manual or not
    ("freeze-date-refused-even-manual", "low", ny(2026, 12, 25, 3, 0), True, False, False,
     utc(2026, 12, 26, 5, 0), "2026-12-25 is a freeze date"),
    ("freeze-date-is-a-local-date", "low", utc(2026, 12, 26, 4, 30), True, False, False,
     utc(2026, 12, 26, 5, 0), "2026-12-25 is a freeze date"),
    ("day-after-freeze-is-open", "low", utc(2026, 12, 26, 5, 0), False, True, False, None, "inside"),
    # DST: the policy's zone decides, with the offset in force at that instant
    ("dst-spring-forward-in-business-hours", "low", utc(2026, 3, 8, 14, 30), False, False, False,
     utc(2026, 3, 8, 20, 0), "Sun 2026-03-08 10:30 EDT is in business hours"),
    ("dst-fall-back-before-business-hours", "low", utc(2026, 11, 1, 14, 30), False, True, False, None,
     "Sun 2026-11-01 09:30 EST is inside"),
    ("dst-fall-back-night-window-still-open", "high", utc(2026, 11, 1, 10, 30), False, True, False, None,
     "05:30 EST"),
    ("dst-fall-back-night-window-closed", "high", utc(2026, 11, 1, 11, 0), False, False, False,
     utc(2026, 11, 2, 5, 0), "06:00 EST is outside the high tier's hours"),
]


@pytest.mark.parametrize(
    ("tier", "moment", "manual", "allowed", "override_used", "next_allowed", "words"),
    [case[1:] for case in VERDICTS],
    ids=[case[0] for case in VERDICTS],
)
def test_window_verdict(policy, tier, moment, manual, allowed, override_used, next_allowed, words):
    verdict = window_verdict(policy, tier, moment, manual=manual)
    assert (verdict.allowed, verdict.override_used, verdict.next_allowed) == (allowed, override_used, next_allowed)
    assert words in verdict.reason
    assert verdict.reason.startswith(("Allowed by manual override", "Allowed:") if allowed else "Refused:")
    if verdict.next_allowed is not None:
        assert verdict.next_allowed.utcoffset() == dt.timedelta(0)


def test_reasons_are_whole_sentences_for_the_record(policy):
    assert window_verdict(policy, "low", ny(2026, 11, 27, 12, 0), manual=True) == WindowVerdict(
        allowed=True,
        reason=(
            "Allowed by manual override (recorded): Fri 2026-11-27 12:00 EST is in business hours, and the low "
            "tier runs only outside them; the policy lets a manual run of the low tier override its window."
        ),
        override_used=True,
        next_allowed=utc(2026, 11, 28, 2, 0),
    )
    assert window_verdict(policy, "high", ny(2026, 11, 27, 12, 0), manual=True).reason == (
        "Refused: the high tier never runs in business hours, manual or not, and Fri 2026-11-27 12:00 EST is "
        "in business hours. Its window next opens at Sat 2026-11-28 00:00 EST."
    )
    assert window_verdict(policy, "medium", ny(2026, 12, 25, 3, 0), manual=True).reason == (
        "Refused: 2026-12-25 is a freeze date (America/New_York); nothing runs on it, manual or not. "
        "Its window next opens at Wed 2026-12-30 02:00 EST."
    )


def test_high_tier_never_runs_in_business_hours_whatever_its_window_says():
    lax = SafetyPolicy.model_validate(
        mutated(
            base_policy(),
            {"tiers.high.window": {"business_hours": True}, "tiers.high.manual_override": True},
        )
    )
    refused = window_verdict(lax, "high", ny(2026, 11, 27, 12, 0), manual=True)
    assert not refused.allowed and "never runs in business hours" in refused.reason
    # The same policy lets the high tier run off-hours at any time: the window itself is honoured.
    assert window_verdict(lax, "high", ny(2026, 11, 27, 22, 0), manual=False).allowed


def test_a_tier_allowed_in_business_hours_runs_in_them():
    lax = SafetyPolicy.model_validate(mutated(base_policy(), {"tiers.low.window": {"business_hours": True}}))
    verdict = window_verdict(lax, "low", ny(2026, 11, 27, 12, 0), manual=False)
    assert verdict.allowed and not verdict.override_used and "(at any time)" in verdict.reason


def test_a_naive_datetime_is_an_error(policy):
    with pytest.raises(ValueError, match="has no time zone; pass an aware datetime"):
        window_verdict(policy, "low", dt.datetime(2026, 11, 27, 12, 0), manual=False)
    with pytest.raises(ValueError, match="has no time zone"):
        next_window_start(policy, "low", dt.datetime(2026, 11, 27, 12, 0))


def test_any_aware_zone_is_read_in_the_policy_zone(policy):
    berlin = dt.datetime(2026, 11, 27, 18, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin"))  # 12:00 in New York
    assert window_verdict(policy, "low", berlin, manual=False) == window_verdict(
        policy, "low", ny(2026, 11, 27, 12, 0), manual=False
    )


def rules(weekly: dict[str, list[str]] | None, **changes) -> WindowRules:
    """A tier with its own weekly hours and the shipped business hours."""
    return WindowRules.from_plain(
        **{
            **WindowRules.for_tier(load_policy(POLICY_PATH)[0], "medium").plain(),
            "weekly": weekly,
            **changes,
        }
    )


EVERY_NIGHT = {day: ["00:00-01:30"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}

# (id, rules, after, expected first open moment)
NEXT_STARTS = [
    ("inside-returns-the-moment", rules(None), ny(2026, 11, 27, 22, 15), utc(2026, 11, 28, 3, 15)),
    ("business-hours-end", rules(None), ny(2026, 11, 27, 12, 0), utc(2026, 11, 28, 2, 0)),
    ("next-week", rules({"wed": ["02:00-05:00"]}), ny(2026, 11, 25, 5, 0), utc(2026, 12, 2, 7, 0)),
    ("skips-freeze-dates", rules(None), ny(2026, 12, 24, 0, 0), utc(2026, 12, 26, 5, 0)),
    ("skips-frozen-weekly-slot", rules({"thu": ["01:00-02:00"]}), ny(2026, 12, 23, 0, 0), utc(2027, 1, 7, 6, 0)),
    # 2026-03-08 02:00 EST -> 03:00 EDT: a window from 02:30 opens when the clock reaches 03:00.
    ("dst-window-starts-in-skipped-hour", rules({"sun": ["02:30-05:00"]}), ny(2026, 3, 8, 0, 0),
     utc(2026, 3, 8, 7, 0)),
    # 2026-11-01 02:00 EDT -> 01:00 EST: 00:00-01:30 closes at 01:30 EDT and opens again at 01:00 EST.
    ("dst-window-reopens-in-repeated-hour", rules(EVERY_NIGHT), utc(2026, 11, 1, 5, 45), utc(2026, 11, 1, 6, 0)),
    ("dst-repeated-hour-then-next-night", rules(EVERY_NIGHT), utc(2026, 11, 1, 6, 30), utc(2026, 11, 2, 5, 0)),
    ("never-opens", rules({"sun": ["12:00-13:00"]}), ny(2026, 11, 27, 0, 0), None),
]


@pytest.mark.parametrize(("window", "after", "expected"), [c[1:] for c in NEXT_STARTS], ids=[c[0] for c in NEXT_STARTS])
def test_next_window_start(window, after, expected):
    assert window.next_start(after) == expected
    if expected is not None:
        assert window.is_open(expected)
        # Nothing earlier is open: check every minute between `after` and the answer.
        probe = after
        while probe < expected:
            assert not window.is_open(probe), probe
            probe += dt.timedelta(minutes=1)


def test_next_window_start_of_the_shipped_policy(policy):
    assert next_window_start(policy, "high", ny(2026, 11, 27, 12, 0)) == utc(2026, 11, 28, 5, 0)
    assert next_window_start(policy, "medium", ny(2026, 11, 26, 0, 0)) == utc(2026, 12, 2, 7, 0)
    assert next_window_start(policy, "low", utc(2026, 11, 27, 14, 0)) == utc(2026, 11, 28, 2, 0)


def test_plain_round_trip_keeps_the_rules(policy):
    for tier in ("low", "medium", "high"):
        original = WindowRules.for_tier(policy, tier)
        assert WindowRules.from_plain(**original.plain()) == original


def test_plain_data_is_validated_like_the_policy():
    with pytest.raises(ValueError, match=r"^weekly.wed.0: '2-5' is not a time range 'HH:MM-HH:MM'$"):
        rules({"wed": ["2-5"]})
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        rules(None, timezone="Mars/Olympus")
