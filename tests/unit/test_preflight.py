"""Pre-flight's rules, one case per rule with its exact message: absolute steady limits, readable
through the window's end, no fault of ours in the window, a relative rule needs a usable baseline,
blocking alerts; and the operator's wait for another run's fault."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.hooks.prometheus import PrometheusQueryError
from chaos_engineering.operators import preflight
from chaos_engineering.operators.preflight import (
    PreflightCheckOperator,
    coverage_problem,
    lookback_s,
    quiet_period_s,
    steady_state,
)
from chaos_engineering.policy import SteadyLimit, Threshold, load_policy
from chaos_engineering.render import ANNOTATION_DAG_ID, ANNOTATION_RUN_ID

END = dt.datetime(2026, 3, 4, 3, 0, tzinfo=dt.timezone.utc)
WINDOW = 120.0  # step 2 s: samples at 0, 2, ..., 120 s into the window (61)
START = END.timestamp() - WINDOW

BOOKINGS = {"query": "sum(rate(bookings_total[30s]))", "unit": "bookings/s", "rule": "max_drop_percent", "limit": 10}
ERRORS = {"query": "100 * sum(rate(errors[30s])) / sum(rate(requests[30s]))", "unit": "%", "rule": "max_increase", "limit": 0.5}
LATENCY = {"query": "p95", "unit": "ms", "rule": "at_most", "limit": 3000}
THRESHOLDS = {"booking_rate": BOOKINGS, "error_rate": ERRORS, "p95_latency": LATENCY}
LIMITS = {"booking_rate": SteadyLimit(at_least=1), "error_rate": SteadyLimit(at_most=0.5)}
STEADY = {"booking_rate": 20.0, "error_rate": 0.1, "p95_latency": 250.0}

Series = Callable[[float], float | None]  # seconds into the window -> value (None: no sample)


def flat(value: float) -> Series:
    return lambda _: value


def until(seconds: float, value: float) -> Series:
    """Reports `value` up to `seconds` into the window, then nothing."""
    return lambda t: value if t <= seconds else None


def gap(start: float, stop: float, value: float) -> Series:
    return lambda t: None if start < t < stop else value


class FakePrometheus:
    """Range queries from per-query functions; instant series by what they ask for."""

    def __init__(self, values: dict[str, Series] | None = None, *, peaks=(), current=(), starts=(), alerts=(), fail: str = "",
                 started: float | None = START - 3600) -> None:
        self.values = {THRESHOLDS[n]["query"]: f for n, f in (STEADY_SERIES | (values or {})).items()}
        self.started = started
        self.instant = {"max_over_time": list(peaks), "start": list(starts), "active": list(current), "ALERTS": list(alerts)}
        self.fail = fail
        self.asked: list[str] = []

    def query_range(self, promql: str, start: dt.datetime, end: dt.datetime, step: float) -> list[tuple[float, float]]:
        if self.fail and self.fail in promql:
            raise PrometheusQueryError("range query failed: ConnectionError: refused")
        assert (start.timestamp(), end.timestamp(), step) == (START, END.timestamp(), 2.0)
        points = [(START + k * step, self.values[promql](k * step)) for k in range(61)]
        return [(t, v) for t, v in points if v is not None]

    def started_at(self) -> float | None:
        """When Prometheus started (its runtime information); `fail="runtimeinfo"` makes it unreachable."""
        if self.fail == "runtimeinfo":
            raise PrometheusQueryError("runtime information failed at http://prometheus:9090/api/v1/status/runtimeinfo: ConnectionError: refused")
        return self.started

    def series(self, promql: str) -> list[dict]:
        self.asked.append(promql)
        if self.fail and self.fail in promql:
            raise PrometheusQueryError("query failed: ConnectionError: refused")
        for key in ("max_over_time", "ALERTS", "start", "active"):
            if key in promql:
                return self.instant[key]
        raise AssertionError(promql)


STEADY_SERIES = {name: flat(value) for name, value in STEADY.items()}


def record(experiment: str, value: float, tier: str = "low") -> dict:
    return {"labels": {"tier": tier, "experiment": experiment}, "value": value}


LIFETIME = 670.0  # the longest a fault of ours stands before its removal is recorded (fault_lifetime_s)


def run(prometheus: FakePrometheus, limits=LIMITS) -> tuple[dict, list[str]]:
    return steady_state(prometheus, THRESHOLDS, WINDOW, END, steady_limits=limits, lifetime_s=LIFETIME)


NOT_HEALTHY = "the platform is not healthy enough for a fault"
STEADY_CASES = [
    # id, fake Prometheus, problems
    ("steady", FakePrometheus(), []),
    ("already-at-a-high-error-rate", FakePrometheus({"error_rate": flat(5.0)}), [
        f"error_rate = 5 % is above its steady limit 0.5 % (preflight.steady_limits.error_rate.at_most) in 61 of 61 samples: {NOT_HEALTHY}",
    ]),
    ("one-sample-beyond-a-steady-limit", FakePrometheus({"error_rate": lambda t: 0.6 if t == 60 else 0.1}), [
        f"error_rate = 0.6 % is above its steady limit 0.5 % (preflight.steady_limits.error_rate.at_most) in 1 of 61 samples: {NOT_HEALTHY}",
    ]),
    ("bookings-below-their-minimum", FakePrometheus({"booking_rate": flat(0.5)}), [
        f"booking_rate = 0.5 bookings/s is below its steady limit 1 bookings/s (preflight.steady_limits.booking_rate.at_least) in 61 of 61 samples: {NOT_HEALTHY}",
    ]),
    ("zero-bookings-baseline", FakePrometheus({"booking_rate": flat(0.0)}), [
        f"booking_rate = 0 bookings/s is below its steady limit 1 bookings/s (preflight.steady_limits.booking_rate.at_least) in 61 of 61 samples: {NOT_HEALTHY}",
        "booking_rate baseline is 0 bookings/s: a relative rule (max_drop_percent 10) cannot be judged against it (no reading can "
        "drop below its bound of 0 bookings/s); pre-flight refuses a fault the kill switch could not stop: check that the platform "
        "is serving and that the query matches its metrics",
    ]),
    ("absolute-rule-beyond-its-limit", FakePrometheus({"p95_latency": lambda t: 3500.0 if t >= 100 else 250.0}), [
        "not healthy before the fault: p95_latency = 3500 ms is above its bound 3000 ms (11 of 61 samples)",
    ]),
    ("a-drop-beyond-the-relative-bound-of-the-median", FakePrometheus({"booking_rate": lambda t: 17.0 if t >= 110 else 20.0}), [
        "not healthy before the fault: booking_rate = 17 bookings/s is below its bound 18 bookings/s (baseline 20 bookings/s, "
        "max_drop_percent 10) (6 of 61 samples)",
    ]),
    ("stopped-in-the-second-half", FakePrometheus({"booking_rate": until(84, 20.0)}), [
        "booking_rate: no data in the last 36 s of the window: it stopped reporting (pre-flight needs a sample at most 4 s before the window's end)",
    ]),
    ("stopped-two-steps-before-the-end", FakePrometheus({"booking_rate": until(114, 20.0)}), [
        "booking_rate: no data in the last 6 s of the window: it stopped reporting (pre-flight needs a sample at most 4 s before the window's end)",
    ]),
    ("last-step-missed-is-tolerated", FakePrometheus({"booking_rate": until(118, 20.0)}), []),
    ("stopped-and-already-failing-lists-both", FakePrometheus({"error_rate": until(60, 5.0)}), [
        "error_rate: no data in the last 60 s of the window: it stopped reporting (pre-flight needs a sample at most 4 s before the window's end)",
        f"error_rate = 5 % is above its steady limit 0.5 % (preflight.steady_limits.error_rate.at_most) in 31 of 31 samples: {NOT_HEALTHY}",
    ]),
    ("started-late", FakePrometheus({"error_rate": lambda t: 0.1 if t >= 30 else None}), [
        "error_rate: no data in the first 30 s of the window (pre-flight needs the whole window)",
    ]),
    ("a-gap-of-two-steps", FakePrometheus({"p95_latency": gap(50, 56, 250.0)}), [
        "p95_latency: no data for 6 s, 50 s into the window (at most 4 s may pass without a sample)",
    ]),
    ("one-missed-step-is-tolerated", FakePrometheus({"p95_latency": gap(50, 54, 250.0)}), []),
    ("nan-samples-are-missing", FakePrometheus({"error_rate": lambda t: math.nan if t > 60 else 0.1}), [
        "error_rate: no data in the last 60 s of the window: it stopped reporting (pre-flight needs a sample at most 4 s before the window's end)",
    ]),
    ("no-data", FakePrometheus({"error_rate": lambda t: None}), ["error_rate: no data over the last 120 s"]),
    # The window (120 s) and the look-back of the relative thresholds' queries (30 s): Prometheus
    # must have run through all of it, or a rate reads the gap of its restart as a drop.
    ("prometheus-started-within-the-window-and-look-back", FakePrometheus(started=END.timestamp() - 149), [
        "Prometheus started 149 s ago: its data has a gap before that, which a rate reads as a drop once the gap reaches the "
        "start of its range (the kill switch would take it for a breach); pre-flight needs 150 s of data (the window and the "
        "look-back of the relative thresholds' queries): run again in 1 s",
    ]),
    ("prometheus-started-just-before-the-look-back", FakePrometheus(started=END.timestamp() - 150), []),
    ("prometheus-does-not-say-when-it-started", FakePrometheus(started=None), []),
    ("prometheus-runtime-information-unreadable", FakePrometheus(fail="runtimeinfo"), [
        "runtime information failed at http://prometheus:9090/api/v1/status/runtimeinfo: ConnectionError: refused: pre-flight "
        "cannot tell whether Prometheus has the whole window's data",
    ]),
    ("unreadable", FakePrometheus(fail="bookings_total"), ["booking_rate: range query failed: ConnectionError: refused"]),
]


@pytest.mark.parametrize(("prometheus", "problems"), [c[1:] for c in STEADY_CASES], ids=[c[0] for c in STEADY_CASES])
def test_steady_state(prometheus, problems):
    baseline, found = run(prometheus)
    assert found == problems
    if not problems:
        assert baseline == STEADY


def test_a_relative_threshold_without_a_steady_limit_is_refused():
    _, problems = run(FakePrometheus(), limits={"booking_rate": SteadyLimit(at_least=1)})
    assert problems == [
        "error_rate is relative (max_increase) and has no absolute bound in preflight.steady_limits.error_rate: pre-flight "
        "cannot tell a steady platform from one already failing; add one to the policy"
    ]


def test_steady_limits_default_to_the_policy_in_force():
    policy, _ = load_policy()
    thresholds = {"booking_rate": BOOKINGS}
    assert policy.preflight.steady_limits["booking_rate"].at_least == 1
    _, problems = steady_state(FakePrometheus({"booking_rate": flat(0.5)}), thresholds, WINDOW, END)
    assert problems == [
        f"booking_rate = 0.5 bookings/s is below its steady limit 1 bookings/s (preflight.steady_limits.booking_rate.at_least) in 61 of 61 samples: {NOT_HEALTHY}"
    ]


# --- no fault of ours in the window --------------------------------------------------------------

QUIET = 150  # the window (120 s) and the 30 s the relative thresholds' queries look back
HISTORY_CASES = [
    # id, peaks over the quiet period, current values, fault starts, problems
    ("none-recorded-in-the-period", [record("cache-latency", 0)], [record("cache-latency", 0)], [], []),
    ("removed-in-the-period", [record("cache-latency", 1)], [record("cache-latency", 0)], [record("cache-latency", START - 100)], [
        "a fault of ours (cache-latency, low tier) was removed less than 150 s ago: the window and the look-back of its "
        "queries must hold none; run again 150 s after its removal",
    ]),
    ("injected-in-the-period-and-never-removed", [record("db-io", 1, "medium")], [record("db-io", 1, "medium")],
     [record("db-io", END.timestamp() - 40, "medium")], [
        "a fault of ours (db-io, medium tier) was injected 40 s ago and is recorded as still injected (it may still stand, or "
        "its removal is on its way): the window and the look-back of its queries must hold none; run again 150 s after its removal",
    ]),
    # Started before the period, within a fault's lifetime: it may have ended by its duration a moment
    # ago with the push of its removal still on its way (the cluster is empty already).
    ("recorded-as-injected-within-a-faults-lifetime", [record("db-io", 1)], [record("db-io", 1)],
     [record("db-io", END.timestamp() - 600)], [
        "a fault of ours (db-io, low tier) was injected 600 s ago and is recorded as still injected (it may still stand, or "
        "its removal is on its way): the window and the look-back of its queries must hold none; run again 150 s after its removal",
    ]),
    # Its removal was never recorded (its run died): undatable, the cluster check decides (logged).
    ("recorded-as-injected-since-before-the-period", [record("db-io", 1)], [record("db-io", 1)], [record("db-io", START - 3600)], []),
    ("never-recorded", [], [], [], []),
]


@pytest.mark.parametrize(("peaks", "current", "starts", "problems"), [c[1:] for c in HISTORY_CASES], ids=[c[0] for c in HISTORY_CASES])
def test_no_fault_of_ours_in_the_window(peaks, current, starts, problems):
    prometheus = FakePrometheus(peaks=peaks, current=current, starts=starts)
    _, found = run(prometheus)
    assert found == problems
    assert prometheus.asked[0] == f"max by (tier, experiment) (max_over_time(chaos_experiment_active[{QUIET}s]))"


@settings(max_examples=300, deadline=None)
@given(age=st.floats(0, 10_000), lifetime=st.floats(0, 5_000), removed=st.booleans())
def test_a_fault_recorded_as_injected_counts_until_it_cannot_be_standing(age, lifetime, removed):
    """One rule for any age, lifetime and quiet period: a record of a fault still injected refuses
    while the fault may still stand (injected within the quiet period or a fault's lifetime); a
    recorded removal in the period always refuses; beyond both, the record is undatable."""
    prometheus = FakePrometheus(
        peaks=[record("db-io", 1)], current=[record("db-io", 0 if removed else 1)], starts=[record("db-io", END.timestamp() - age)]
    )
    problems = preflight.recorded_faults(prometheus, QUIET, END, lifetime_s=lifetime)
    assert len(problems) == (1 if removed or age <= max(QUIET, lifetime) else 0)


def test_what_cannot_be_dated_is_logged(caplog):
    with caplog.at_level(logging.WARNING):
        run(FakePrometheus())
        run(FakePrometheus(peaks=[record("db-io", 1)], current=[record("db-io", 1)], starts=[record("db-io", START - 3600)]))
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "chaos_experiment_active has no series (is the Pushgateway scraped? was no fault ever recorded?): no record of earlier "
        "faults; pre-flight relies on the cluster holding none of ours now",
        "db-io (low tier) is recorded as injected since before the window, but its removal was never recorded: it cannot be "
        "dated; pre-flight relies on the cluster holding no fault of ours now",
    ]


def test_an_unreadable_record_of_our_faults_is_refused():
    _, problems = run(FakePrometheus(fail="chaos_experiment_active"))
    assert problems == [
        "chaos_experiment_active: query failed: ConnectionError: refused: pre-flight cannot tell whether a fault of ours was "
        "active in the window"
    ]


LOOKBACK_CASES = [
    ("range", ["sum(rate(x[30s]))"], 30.0),
    ("longest-of-several", ["rate(x[30s])", "rate(y[1m30s])"], 90.0),
    ("subquery", ["avg_over_time(max(up)[5m:5s])"], 300.0),
    ("offset-adds", ["rate(x[30s] offset 1m)"], 90.0),
    ("milliseconds", ["rate(x[1500ms])"], 1.5),
    ("none-written", ["booking:bookings_confirmed:rate1m"], 0.0),
]


@pytest.mark.parametrize(("queries", "seconds"), [c[1:] for c in LOOKBACK_CASES], ids=[c[0] for c in LOOKBACK_CASES])
def test_lookback(queries, seconds):
    assert lookback_s(queries) == pytest.approx(seconds)


def test_the_quiet_period_counts_only_the_relative_thresholds_look_back():
    thresholds = {n: Threshold(**t) for n, t in THRESHOLDS.items()} | {
        "availability": Threshold(query="avg_over_time(max(up)[5m:5s])", rule="at_least", limit=99.95)
    }
    assert quiet_period_s(thresholds, 120) == 150


def test_coverage_rule_is_stated_in_steps():
    assert coverage_problem([0.0, 2.0, 4.0], 0.0, 4.0, 2.0) is None
    assert coverage_problem([0.0, 5.0], 0.0, 5.0, 2.0) == "no data for 5 s, 0 s into the window (at most 4 s may pass without a sample)"
    assert coverage_problem([], 0.0, 20.0, 1.0) == "no data over the last 20 s"


# --- the operator ------------------------------------------------------------------------------------

class FakeCluster:
    """The five kinds listed with our selector; each call to `list` of PodChaos pops the next answer."""

    def __init__(self, answers: list[list[dict] | Exception]) -> None:
        self.answers = answers

    def list(self, kind: ChaosKind, namespace, label_selector):
        assert namespace is None and label_selector == "app.kubernetes.io/managed-by=airflow-chaos-engineering"
        if kind is not ChaosKind.POD_CHAOS:
            return []
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def fault(deleting: bool = False) -> dict:
    meta = {"name": "low-cache-kill-1", "namespace": "chaos-engineering", "annotations": {ANNOTATION_DAG_ID: "chaos_low_risk", ANNOTATION_RUN_ID: "manual__1"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-03-04T02:59:00Z"
    return {"kind": "PodChaos", "metadata": meta}


@pytest.fixture
def operator(monkeypatch) -> Callable[..., PreflightCheckOperator]:
    policy, _ = load_policy()
    fast = policy.model_copy(update={"safety": policy.safety.model_copy(update={"lock_wait": 0.5, "check_interval": 0.05})})
    monkeypatch.setattr(preflight, "policy_or_fail", lambda: fast)
    monkeypatch.setattr(PreflightCheckOperator, "_targets", lambda self, *args, **kwargs: ([], []))
    monkeypatch.setattr(preflight, "steady_state", lambda *args, **kwargs: (dict(STEADY), []))

    def build(cluster: FakeCluster, prometheus: FakePrometheus | None = None) -> PreflightCheckOperator:
        op = PreflightCheckOperator(task_id="preflight", plan={"thresholds": THRESHOLDS, "tier": "low"})
        op.__dict__["cluster"], op.__dict__["prometheus"] = cluster, prometheus or FakePrometheus()
        return op

    return build


def refusal(op: PreflightCheckOperator) -> list[str]:
    with pytest.raises(AirflowFailException) as failed:
        op.execute({})
    head, *lines = str(failed.value).split("\n  ")
    assert head == "pre-flight check failed, nothing injected:"
    return lines


def test_another_fault_of_ours_on_the_cluster_is_refused_after_waiting(operator):
    assert refusal(operator(FakeCluster([[fault()]]))) == [
        "another fault of ours is still on the cluster: PodChaos chaos-engineering/low-cache-kill-1 (run chaos_low_risk/manual__1); wait until "
        "it is gone (`chaosctl status`) or remove it (`chaosctl stop`)"
    ]


def test_one_being_deleted_counts_too(operator):
    assert refusal(operator(FakeCluster([[fault(deleting=True)]]))) == [
        "another fault of ours is still on the cluster: PodChaos chaos-engineering/low-cache-kill-1 (run chaos_low_risk/manual__1), being "
        "deleted since 2026-03-04T02:59:00Z; wait until it is gone (`chaosctl status`) or remove it (`chaosctl stop`)"
    ]


def test_preflight_waits_for_another_runs_fault_to_go_then_measures(operator):
    op = operator(FakeCluster([[fault()], [fault(deleting=True)], []]))
    assert op.execute({})["baseline"] == STEADY


def test_an_unreadable_cluster_is_refused_without_waiting(operator):
    assert refusal(operator(FakeCluster([RuntimeError("403 Forbidden")]))) == [
        "cannot list the chaos objects of ours on the cluster (403 Forbidden): pre-flight cannot tell whether another fault is active"
    ]


ALERT_CASES = [
    ("a-critical-alert", [{"labels": {"alertname": "ChaosSafetyViolation", "severity": "critical"}, "value": 1.0}], [
        "alert firing: ChaosSafetyViolation (severity critical); no fault starts while an alert of preflight.critical_alerts_query fires",
    ]),
    ("a-blocking-warning", [{"labels": {"alertname": "ErrorRateHigh", "severity": "warning", "chaos_preflight": "block"}, "value": 1.0}], [
        "alert firing: ErrorRateHigh (severity warning); no fault starts while an alert of preflight.critical_alerts_query fires",
    ]),
]


@pytest.mark.parametrize(("alerts", "problems"), [c[1:] for c in ALERT_CASES], ids=[c[0] for c in ALERT_CASES])
def test_alerts_the_gate_reads_block_the_fault(operator, alerts, problems):
    prometheus = FakePrometheus(alerts=alerts)
    assert refusal(operator(FakeCluster([[]]), prometheus)) == problems
    policy, _ = load_policy()
    assert policy.preflight.critical_alerts_query in prometheus.asked


def test_unreadable_alerts_are_refused(operator):
    assert refusal(operator(FakeCluster([[]]), FakePrometheus(fail="ALERTS"))) == [
        "alerts (preflight.critical_alerts_query): query failed: ConnectionError: refused: pre-flight cannot tell whether one fires"
    ]
