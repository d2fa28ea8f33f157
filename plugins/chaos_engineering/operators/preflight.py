"""Pre-flight health check: thresholds readable, green and within their steady limits over a recent
window that no fault of ours touched, no blocking alert, targets resolved, ready and unprotected;
returns the baseline the kill switch measures against."""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import statistics
import time
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.chaosmesh.spec import parse_spec
from chaos_engineering.emergency import ObjectRef, owned_objects
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.hooks.prometheus import PrometheusHook, PrometheusQueryError
from chaos_engineering.operators.common import catalogue_or_fail, policy_or_fail
from chaos_engineering.policy import SteadyLimit, Threshold, Tier
from chaos_engineering.safety import baseline_problem, check, needs_baseline
from chaos_engineering.targets import TargetPod, verify_targets

log = logging.getLogger(__name__)


#: How pre-flight reads its window, stated once. The window [end - healthy_window, end] is read at
#: `window_step` resolution. A threshold is readable through the window when it has a finite
#: sample at most MAX_GAP_STEPS steps after the window's start, at most MAX_GAP_STEPS steps before
#: its end, and at most MAX_GAP_STEPS steps after each previous sample: one missed evaluation is
#: tolerated; two in a row, a metric that started late or one that stopped reporting are not.
MAX_GAP_STEPS = 2

#: Pushed at each state change of a run (notify/metrics.py): 1 while a fault of ours is injected.
ACTIVE_METRIC = "chaos_experiment_active"
FAULT_START_METRIC = "chaos_experiment_fault_start_timestamp_seconds"

_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_LOOKBACKS = re.compile(r"\[\s*((?:\d+(?:ms|[smhdwy]))+)\s*(?::[^\]]*)?\]|\boffset\s+((?:\d+(?:ms|[smhdwy]))+)")


def window_step(window_s: float) -> float:
    return max(1.0, window_s / 60)


def _duration_s(text: str) -> float:
    return sum(int(number) * _SECONDS[unit] for number, unit in _DURATION_PART.findall(text))


def lookback_s(queries: list[str]) -> float:
    """How far before an evaluation the queries read: their longest range plus their longest
    offset, as written (a range hidden inside a recording rule is not seen)."""
    ranges, offsets = [0.0], [0.0]
    for query in queries:
        for range_, offset in _LOOKBACKS.findall(query):
            (ranges if range_ else offsets).append(_duration_s(range_ or offset))
    return max(ranges) + max(offsets)


def coverage_problem(times: list[float], start: float, end: float, step: float) -> str | None:
    """Why samples at `times` (sorted) do not cover [start, end] (the rule of MAX_GAP_STEPS)."""
    allowed = MAX_GAP_STEPS * step + 1e-6
    if not times:
        return f"no data over the last {end - start:g} s"
    if end - times[-1] > allowed:
        return (
            f"no data in the last {end - times[-1]:.0f} s of the window: it stopped reporting "
            f"(pre-flight needs a sample at most {allowed:.0f} s before the window's end)"
        )
    if times[0] - start > allowed:
        return f"no data in the first {times[0] - start:.0f} s of the window (pre-flight needs the whole window)"
    gap, after = max((b - a, a) for a, b in zip([start, *times], times))
    if gap > allowed:
        return f"no data for {gap:.0f} s, {after - start:.0f} s into the window (at most {allowed:.0f} s may pass without a sample)"
    return None


def _steady_limit_problems(name: str, threshold: Threshold, limit: SteadyLimit | None, samples: list[float]) -> list[str]:
    """Every sample of the window within the absolute bounds of preflight.steady_limits."""
    unit = f" {threshold.unit}" if threshold.unit else ""
    if limit is None:
        if not needs_baseline(threshold):
            return []
        return [
            f"{name} is relative ({threshold.rule.value}) and has no absolute bound in preflight.steady_limits.{name}: "
            "pre-flight cannot tell a steady platform from one already failing; add one to the policy"
        ]
    problems = []
    for field, bound, beyond, worst in (
        ("at_most", limit.at_most, lambda v, b: v > b, max),
        ("at_least", limit.at_least, lambda v, b: v < b, min),
    ):
        if bound is None:
            continue
        outside = [v for v in samples if beyond(v, bound)]
        if outside:
            relation = "above" if field == "at_most" else "below"
            problems.append(
                f"{name} = {worst(outside):.4g}{unit} is {relation} its steady limit {bound:g}{unit} "
                f"(preflight.steady_limits.{name}.{field}) in {len(outside)} of {len(samples)} samples: "
                "the platform is not healthy enough for a fault"
            )
    return problems


def quiet_period_s(thresholds: Mapping[str, Threshold], window_s: float) -> float:
    """How long before pre-flight no fault of ours may have been active: the window, and before it
    the look-back of the relative thresholds' queries (the baseline is theirs; their first
    samples read data that old)."""
    return window_s + lookback_s([t.query for t in thresholds.values() if needs_baseline(t)])


def prometheus_restart_problem(prometheus: PrometheusHook, seconds: float, end: dt.datetime) -> str | None:
    """Why the data of the last `seconds` (`quiet_period_s`: the window and the look-back of the
    relative thresholds' queries) before `end` is not whole: Prometheus started within them, so
    nothing was scraped just before. A rate reads such a gap as a drop once the gap reaches the
    start of its range, up to a range's length after the restart: a relative rule's kill switch
    started then would take that for a breach, and a baseline over it is low. A Prometheus that
    does not say when it started (a compatible store without the endpoint) is logged and relied on;
    one that cannot be reached is a refusal."""
    try:
        started = prometheus.started_at()
    except PrometheusQueryError as exc:
        return f"{exc}: pre-flight cannot tell whether Prometheus has the whole window's data"
    if started is None:
        log.warning("Prometheus does not say when it started: pre-flight cannot tell a gap of a restart in the window's data")
        return None
    age = end.timestamp() - started
    if age >= seconds:
        return None
    return (
        f"Prometheus started {age:.0f} s ago: its data has a gap before that, which a rate reads as a drop once "
        f"the gap reaches the start of its range (the kill switch would take it for a breach); pre-flight needs "
        f"{seconds:.0f} s of data (the window and the look-back of the relative thresholds' queries): run again in {seconds - age:.0f} s"
    )


def our_faults_in_window(prometheus: PrometheusHook, seconds: float, end: dt.datetime, *, lifetime_s: float) -> list[str]:
    """Why the last `seconds` before `end` may hold a fault of ours (`recorded_faults`); an
    unreadable record is a refusal."""
    try:
        return recorded_faults(prometheus, seconds, end, lifetime_s=lifetime_s)
    except PrometheusQueryError as exc:
        return [f"{ACTIVE_METRIC}: {exc}: pre-flight cannot tell whether a fault of ours was active in the window"]


def fault_lifetime_s(policy: Any) -> float:
    """The longest a fault of ours can stand before its removal is recorded: the longest
    max_duration of any tier, the time Chaos Mesh may take to delete it, and a check to notice."""
    return max(t.max_duration for t in policy.tiers.values()) + policy.safety.deletion_timeout + policy.safety.check_interval


def recorded_faults(prometheus: PrometheusHook, seconds: float, end: dt.datetime, *, lifetime_s: float) -> list[str]:
    """The faults of ours the last `seconds` before `end` may hold, from what the runs pushed
    (notify/metrics.py: `chaos_experiment_active`, `chaos_experiment_fault_start_timestamp_seconds`):

    - a removal recorded in them (the gauge was 1 in them and is 0 now): refused;
    - a fault recorded as injected now (the gauge is 1) that started in them, or less than
      `lifetime_s` (`fault_lifetime_s`) before `end`: it may still stand, or it ended by its
      duration and the push of its removal is on its way (the cluster may be empty already): refused;
    - one recorded as injected that started before both: its removal was never recorded (its run
      died) and cannot be dated. Pre-flight relies on the cluster holding no fault of ours now
      (`our_faults_on_cluster`) and logs it; ChaosExperimentActiveTooLong flags the record;
    - no series of the gauge at all (the Pushgateway is not scraped, or no fault was ever
      recorded): no history; pre-flight relies on the cluster and logs it.
    Raises PrometheusQueryError when Prometheus cannot answer."""
    span = math.ceil(seconds)
    by = "max by (tier, experiment)"
    peaks = prometheus.series(f"{by} (max_over_time({ACTIVE_METRIC}[{span}s]))")
    current = {_experiment(s): s["value"] for s in prometheus.series(f"{by} ({ACTIVE_METRIC})")}
    starts = {_experiment(s): s["value"] for s in prometheus.series(f"{by} ({FAULT_START_METRIC})")}
    if not peaks:
        log.warning(
            "%s has no series (is the Pushgateway scraped? was no fault ever recorded?): no record of earlier faults; "
            "pre-flight relies on the cluster holding none of ours now", ACTIVE_METRIC,
        )
    problems = []
    for tier, experiment in (_experiment(p) for p in peaks if p["value"] >= 1):
        started = starts.get((tier, experiment))
        if current.get((tier, experiment), 0) < 1:
            problems.append(
                f"a fault of ours ({experiment}, {tier} tier) was removed less than {span} s ago: the window and the "
                f"look-back of its queries must hold none; run again {span} s after its removal"
            )
        elif started is not None and started >= end.timestamp() - max(span, lifetime_s):
            problems.append(
                f"a fault of ours ({experiment}, {tier} tier) was injected {end.timestamp() - started:.0f} s ago and is "
                f"recorded as still injected (it may still stand, or its removal is on its way): the window and the "
                f"look-back of its queries must hold none; run again {span} s after its removal"
            )
        else:
            log.warning(
                "%s (%s tier) is recorded as injected since before the window, but its removal was never recorded: "
                "it cannot be dated; pre-flight relies on the cluster holding no fault of ours now", experiment, tier,
            )
    return problems


def _experiment(series: dict[str, Any]) -> tuple[str, str]:
    return series["labels"].get("tier", "?"), series["labels"].get("experiment", "?")


def our_faults_on_cluster(cluster: ChaosMeshHook) -> list[str]:
    """`faults_on_cluster`; an unreadable cluster is a refusal."""
    try:
        return faults_on_cluster(cluster)
    except Exception as exc:
        return [f"cannot list the chaos objects of ours on the cluster ({exc}): pre-flight cannot tell whether another fault is active"]


def faults_on_cluster(cluster: ChaosMeshHook) -> list[str]:
    """Every chaos object of ours still on the cluster, even one being deleted: its fault may still
    be applied, and a baseline measured now would include it."""
    problems = []
    for obj in owned_objects(cluster):
        ref, deleted = ObjectRef.of(obj), obj["metadata"].get("deletionTimestamp")
        problems.append(
            f"another fault of ours is still on the cluster: {ref.kind} {ref.namespace}/{ref.name}"
            f"{f' (run {ref.run})' if ref.run else ''}{f', being deleted since {deleted}' if deleted else ''}; "
            "wait until it is gone (`chaosctl status`) or remove it (`chaosctl stop`)"
        )
    return problems


def steady_state(
    prometheus: PrometheusHook,
    thresholds: dict[str, dict[str, Any]],
    window_s: float,
    end: dt.datetime,
    *,
    steady_limits: Mapping[str, SteadyLimit] | None = None,
    lifetime_s: float | None = None,
) -> tuple[dict[str, float], list[str]]:
    """The baseline (median over the window) of every threshold, and why the platform is not
    steady. Refused: a threshold not readable through the whole window (`coverage_problem`); a
    sample outside preflight.steady_limits or beyond its threshold's bound; a relative rule whose
    baseline cannot be judged (`safety.baseline_problem`); a fault of ours active in the window or
    in the look-back of its queries (`our_faults_in_window`); a Prometheus started within them
    (`prometheus_restart_problem`).

    `steady_limits` and `lifetime_s` (`fault_lifetime_s`) default to the policy in force (never to
    no limits at all)."""
    if steady_limits is None or lifetime_s is None:
        policy = policy_or_fail()
        steady_limits = policy.preflight.steady_limits if steady_limits is None else steady_limits
        lifetime_s = fault_lifetime_s(policy) if lifetime_s is None else lifetime_s
    start = end - dt.timedelta(seconds=window_s)
    step = window_step(window_s)
    parsed = {name: Threshold(**spec) for name, spec in thresholds.items()}
    quiet_s = quiet_period_s(parsed, window_s)
    problems = our_faults_in_window(prometheus, quiet_s, end, lifetime_s=lifetime_s)
    if restarted := prometheus_restart_problem(prometheus, quiet_s, end):
        problems.append(restarted)
    baseline: dict[str, float] = {}
    for name, threshold in parsed.items():
        try:
            read = [(t, v) for t, v in prometheus.query_range(threshold.query, start, end, step) if math.isfinite(v)]
        except PrometheusQueryError as exc:
            problems.append(f"{name}: {exc}")
            continue
        gap = coverage_problem([t for t, _ in read], start.timestamp(), end.timestamp(), step)
        if gap is not None:
            problems.append(f"{name}: {gap}")
        if not read:
            continue
        # The samples there are are judged too: every problem is listed at once.
        samples = [v for _, v in read]
        problems += _steady_limit_problems(name, threshold, steady_limits.get(name), samples)
        median = statistics.median(samples)
        unusable = baseline_problem(threshold, median)
        if unusable is not None:
            problems.append(f"{name} {unusable}; pre-flight refuses a fault the kill switch could not stop: check that the platform is serving and that the query matches its metrics")
            continue
        baseline[name] = median
        breaches = [b for v in samples if (b := check(name, threshold, v, median, end.timestamp()))]
        if breaches:
            problems.append(f"not healthy before the fault: {breaches[-1].message} ({len(breaches)} of {len(samples)} samples)")
    return baseline, problems


def wait_until_quiet(
    cluster: ChaosMeshHook, prometheus: PrometheusHook, quiet_s: float, *, lifetime_s: float, limit_s: float, poll_s: float
) -> None:
    """Another run's fault (on the cluster, or recorded in the quiet period) would be in the
    baseline: wait until it is gone and its quiet period has passed, at most `limit_s`, then
    return. Whatever still stands then is refused by the checks that follow; an unreadable
    cluster or Prometheus is no reason to wait (those checks refuse it)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            busy = faults_on_cluster(cluster) + recorded_faults(prometheus, quiet_s, dt.datetime.now(dt.timezone.utc), lifetime_s=lifetime_s)
        except Exception:
            return
        if not busy:
            return
        log.warning("waiting (at most %.0f s more) for a window free of our faults:\n  %s", deadline - time.monotonic(), "\n  ".join(busy))
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


class PreflightCheckOperator(BaseOperator):
    """Fails (nothing is injected) unless every check passes; returns the baseline and targets."""

    template_fields = ("plan",)
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        plan: Any,
        prometheus_conn_id: str = PrometheusHook.default_conn_name,
        kubernetes_conn_id: str = ChaosMeshHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.prometheus_conn_id = prometheus_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id

    @cached_property
    def prometheus(self) -> PrometheusHook:
        return PrometheusHook(self.prometheus_conn_id, timeout=policy_or_fail().safety.query_timeout)

    @cached_property
    def cluster(self) -> ChaosMeshHook:
        return ChaosMeshHook(self.kubernetes_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        policy = policy_or_fail()
        plan = self.plan
        window, lifetime_s = policy.preflight.healthy_window, fault_lifetime_s(policy)
        wait_until_quiet(
            self.cluster, self.prometheus, quiet_period_s({n: Threshold(**t) for n, t in plan["thresholds"].items()}, window),
            lifetime_s=lifetime_s, limit_s=policy.safety.lock_wait, poll_s=policy.safety.check_interval,
        )
        end = dt.datetime.now(dt.timezone.utc)
        baseline, problems = steady_state(
            self.prometheus, plan["thresholds"], window, end, steady_limits=policy.preflight.steady_limits, lifetime_s=lifetime_s
        )
        problems += our_faults_on_cluster(self.cluster)
        problems += self._alerts_firing(policy.preflight.critical_alerts_query)
        targets, peers = self._targets(plan, policy, problems)
        if problems:
            raise AirflowFailException("pre-flight check failed, nothing injected:\n  " + "\n  ".join(problems))
        self.log.info("pre-flight passed; baseline %s", baseline)
        return {
            "baseline": baseline,
            "window": [(end - dt.timedelta(seconds=window)).isoformat(), end.isoformat()],
            "targets": [t.ref for t in targets],
            "peers": [t.ref for t in peers],
            "checked_at": end.isoformat(),
        }

    def _alerts_firing(self, query: str) -> list[str]:
        """Every alert the gate reads (preflight.critical_alerts_query) blocks the fault."""
        try:
            firing = self.prometheus.series(query)
        except PrometheusQueryError as exc:
            return [f"alerts (preflight.critical_alerts_query): {exc}: pre-flight cannot tell whether one fires"]
        return [
            f"alert firing: {a['labels'].get('alertname', a['labels'])} (severity {a['labels'].get('severity', 'none')}); "
            "no fault starts while an alert of preflight.critical_alerts_query fires"
            for a in firing
        ]

    def _targets(self, plan: dict[str, Any], policy: Any, problems: list[str]) -> tuple[list[TargetPod], list[TargetPod]]:
        if "steps" in plan:
            return self._scenario_targets(plan, policy, problems)
        tier = Tier(plan["tier"])
        spec, issues = parse_spec(plan["kind"], plan["manifest"]["spec"])
        if spec is None:
            problems += [str(i) for i in issues]
            return [], []
        check = verify_targets(self.cluster, policy, tier, spec)
        problems += check.problems
        return check.targets, check.peers

    def _scenario_targets(self, plan: dict[str, Any], policy: Any, problems: list[str]) -> tuple[list[TargetPod], list[TargetPod]]:
        """A scenario's: every step's pods now, and the most its standing steps touch together."""
        from chaos_engineering.operators.scenario_run import scenario_of_run
        from chaos_engineering.targets import verify_scenario_targets
        from chaos_engineering.verification import VerificationFailed

        try:
            scenario = scenario_of_run(catalogue_or_fail(), plan["scenario"])
        except VerificationFailed as exc:
            problems += exc.problems
            return [], []
        check = verify_scenario_targets(self.cluster, policy, scenario)
        problems += check.problems
        targets = {t.ref: t for c in check.steps.values() for t in c.targets}
        peers = {p.ref: p for c in check.steps.values() for p in c.peers}
        return list(targets.values()), list(peers.values())
