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


# --- the monitor's progress lines and the naming of who removed a fault ------------------------

import datetime as dt  # noqa: E402

from chaos_engineering.halt import HaltState  # noqa: E402
from chaos_engineering.heartbeat import Beat  # noqa: E402
from chaos_engineering.triggers import _Progress, progress_every, reading_text, removed_by  # noqa: E402


@pytest.mark.parametrize(("interval_s", "every"), [(10, 3), (1, 30), (0.5, 60), (45, 1), (20, 2)], ids=["10s", "1s", "half-s", "45s", "20s"])
def test_a_progress_line_comes_about_every_30_seconds(interval_s, every):
    assert progress_every(interval_s) == every


@pytest.mark.parametrize(("name", "value", "text"), [
    ("error_rate", 0.4, "error_rate 0.4% of ≤ 0.6% (headroom 0.2 pp)"),
    ("booking_rate", 19.5, "booking_rate 19.5 bookings/s of ≥ 18 bookings/s (headroom 1.5 bookings/s)"),
    ("p95_latency", 3100.0, "p95_latency 3100 ms of ≤ 3000 ms (headroom -100 ms)"),
], ids=["percent-in-pp", "a-drop-rule-keeps-above", "beyond-the-bound-is-negative"])
def test_a_reading_is_shown_against_its_bound(name, value, text):
    assert reading_text(name, THRESHOLDS[name], value, BASELINE[name]) == text


def test_a_reading_without_a_usable_baseline_says_why():
    assert reading_text("booking_rate", THRESHOLDS["booking_rate"], 19.0, None) == (
        "booking_rate 19 bookings/s (no bound: has no baseline: a relative rule (max_drop_percent 10) cannot be judged without one)"
    )


def test_progress_lines_show_the_worst_reading_since_the_last_line():
    progress = _Progress(THRESHOLDS, interval_s=10)
    lines = []
    for check, (booking, error, p95) in enumerate([(19.5, 0.2, None), (19.0, 0.3, 260.0), (18.5, 0.15, 250.0), (19.9, 0.1, None)], start=1):
        progress.add({"booking_rate": (booking, ""), "error_rate": (error, ""), "p95_latency": (p95, "no data" if p95 is None else "")}, BASELINE)
        lines.append(progress.line(check, BASELINE, 10.0 * check, 300.0 - 10 * check))
    assert lines == [
        "kill switch check 1: fault on for 10 s, 290 s left; worst of this check: booking_rate 19.5 bookings/s of ≥ 18 bookings/s "
        "(headroom 1.5 bookings/s); error_rate 0.2% of ≤ 0.6% (headroom 0.4 pp); p95_latency unread in 1 of 1 checks (no data)",
        None,
        "kill switch check 3: fault on for 30 s, 270 s left; worst of the last 2 checks: booking_rate 18.5 bookings/s of ≥ 18 bookings/s "
        "(headroom 0.5 bookings/s); error_rate 0.3% of ≤ 0.6% (headroom 0.3 pp); p95_latency 260 ms of ≤ 3000 ms (headroom 2740 ms)",
        None,
    ]
    assert progress.line(6, BASELINE, None, None) == (
        "kill switch check 6: fault age unknown, no planned end; worst of this check: booking_rate 19.9 bookings/s of ≥ 18 bookings/s "
        "(headroom 1.9 bookings/s); error_rate 0.1% of ≤ 0.6% (headroom 0.5 pp); p95_latency unread in 1 of 1 checks (no data)"
    )


NOW = dt.datetime(2026, 3, 1, 12, 5, tzinfo=dt.timezone.utc).timestamp()
SINCE = NOW - 300  # the fault was created five minutes ago
HISTORY = [{"action": "halt", "by": "bob", "at": "2026-03-01T10:00:00+00:00", "reason": "an older stop"}]
FRESH = Beat("triggerer/1", dt.datetime(2026, 3, 1, 12, 4, 57, tzinfo=dt.timezone.utc), 10)


@pytest.mark.parametrize(("halt", "beat", "beat_error", "expected"), [
    (HaltState(False, history=[*HISTORY, {"action": "halt", "by": "alice", "at": "2026-03-01T12:03:04+00:00", "reason": "db on fire"},
                               {"action": "resume", "by": "carol", "at": "2026-03-01T12:04:00+00:00", "reason": "all clear"}]),
     FRESH, "", {"by": "emergency_stop", "detail": "the emergency stop of alice at 2026-03-01T12:03:04Z: 'db on fire' "
                                                   "(resumed since by carol at 2026-03-01T12:04:00Z)"}),
    (HaltState(False, history=HISTORY), Beat("triggerer/1", dt.datetime(2026, 3, 1, 12, 4, 25, tzinfo=dt.timezone.utc), 10), "",
     {"by": "watchdog", "detail": "the dead-man watchdog: heartbeat expired (35 s since its last renewal, grace 20 s)"}),
    (None, None, "", {"by": "watchdog", "detail": "the dead-man watchdog: the fault had no heartbeat"}),
    (HaltState(False, history=HISTORY), FRESH, "", {"by": "unknown", "detail": (
        "someone outside this system: no emergency stop since 2026-03-01T12:00:00Z and its heartbeat was 3 s old "
        "(the watchdog removes none this fresh); the API server's audit log names who deleted it")}),
    (HaltState(False), None, "connection refused", {"by": "unknown", "detail": (
        "someone outside the run: no emergency stop since 2026-03-01T12:00:00Z; the heartbeat could not be read "
        "(connection refused), so whether the watchdog removed it is unknown")}),
], ids=["a-stop-resumed-between-two-checks", "an-expired-heartbeat", "no-heartbeat-at-all", "neither", "heartbeat-unreadable"])
def test_a_vanished_fault_names_who_removed_it(halt, beat, beat_error, expected):
    assert removed_by(halt, SINCE, beat, NOW, 20.0, beat_error=beat_error) == expected


# --- a recovery stage's status: recovered only when seen back in time ---------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from chaos_engineering.triggers import ON_TIME_S, stage_status  # noqa: E402

moments = st.floats(min_value=0, max_value=10_000, allow_nan=False)


@given(st.lists(st.text(min_size=1), max_size=3), moments, st.floats(min_value=0, max_value=100, allow_nan=False), moments)
def test_a_stage_is_recovered_only_when_a_check_started_by_its_deadline_saw_it_back(pending, checked_at, took, deadline):
    now = checked_at + took
    status = stage_status(pending, checked_at, now, deadline)
    if not pending:
        # Back: in time, or first looked at late; never undecided, never missed.
        assert status == ("recovered" if checked_at <= deadline + ON_TIME_S else "unobserved")
    else:
        # Not back: missed once the deadline has passed, else check again.
        assert status == ("deadline_missed" if now >= deadline else None)


def recovery_trigger(deadline_ts: float) -> RecoveryTrigger:
    return RecoveryTrigger(prometheus_conn_id="p", kubernetes_conn_id="k", thresholds={}, baseline={}, interval_s=0.05, deadline_ts=deadline_ts)


def first_event_of(trigger: RecoveryTrigger, answers: list[list[str]]) -> dict:
    """The trigger's event when its checks find `answers` in turn (the last one for ever)."""
    async def check_once(readings=None):
        return (answers.pop(0) if len(answers) > 1 else answers[0]), {}

    trigger.check_once = check_once

    async def first():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(first())


def test_a_recovery_trigger_resumed_after_its_deadline_does_not_claim_the_stage_held(monkeypatch):
    """A triggerer that was down past the deadline finds the platform back: `unobserved`."""
    import time

    monkeypatch.setattr(triggers, "MIN_EVENT_DELAY_S", 0.0)
    assert first_event_of(recovery_trigger(time.time() - 60), [[]])["status"] == "unobserved"
    assert first_event_of(recovery_trigger(time.time() - 60), [["p95_latency not back"]])["status"] == "deadline_missed"
    # Watched from before the deadline: back at the third check, in time.
    event = first_event_of(recovery_trigger(time.time() + 30), [["p95_latency not back"], ["p95_latency not back"], []])
    assert (event["status"], event["checks"]) == ("recovered", 3)
