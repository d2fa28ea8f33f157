"""Pre-flight health check: thresholds green over a recent window, no critical alert, targets
resolved, ready and unprotected; returns the baseline the kill switch measures against."""

from __future__ import annotations

import datetime as dt
import math
import statistics
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.chaosmesh.spec import parse_spec
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.hooks.prometheus import PrometheusHook, PrometheusQueryError
from chaos_engineering.operators.common import policy_or_fail
from chaos_engineering.policy import Mode, Threshold, Tier
from chaos_engineering.safety import check
from chaos_engineering.targets import TargetPod, protected_violations, resolve_pods


def affected_pods(mode: str, value: str | None, candidates: int) -> int:
    """How many of `candidates` pods Chaos Mesh may hit under `mode` (the most, for random modes)."""
    number = int(value) if value not in (None, "") else 0
    return {
        Mode.ONE: min(1, candidates),
        Mode.ALL: candidates,
        Mode.FIXED: min(number, candidates),
        Mode.FIXED_PERCENT: math.floor(candidates * number / 100),
        Mode.RANDOM_MAX_PERCENT: math.floor(candidates * number / 100),
    }[Mode(mode)]


def steady_state(
    prometheus: PrometheusHook, thresholds: dict[str, dict[str, Any]], window_s: float, end: dt.datetime
) -> tuple[dict[str, float], list[str]]:
    """The baseline (median over the window) of every threshold, and why the platform is not
    steady: a metric with no data, or any sample of the window beyond its bound."""
    start = end - dt.timedelta(seconds=window_s)
    step = max(1.0, window_s / 60)
    baseline: dict[str, float] = {}
    problems: list[str] = []
    for name, spec in thresholds.items():
        threshold = Threshold(**spec)
        try:
            samples = [v for _, v in prometheus.query_range(threshold.query, start, end, step) if math.isfinite(v)]
        except PrometheusQueryError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if not samples:
            problems.append(f"{name}: no data over the last {window_s:g} s")
            continue
        baseline[name] = statistics.median(samples)
        breaches = [b for v in samples if (b := check(name, threshold, v, baseline[name], end.timestamp()))]
        if breaches:
            problems.append(f"not healthy before the fault: {breaches[-1].message} ({len(breaches)} of {len(samples)} samples)")
    return baseline, problems


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
        return PrometheusHook(self.prometheus_conn_id)

    @cached_property
    def cluster(self) -> ChaosMeshHook:
        return ChaosMeshHook(self.kubernetes_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        policy = policy_or_fail()
        plan = self.plan
        end = dt.datetime.now(dt.timezone.utc)
        baseline, problems = steady_state(self.prometheus, plan["thresholds"], policy.preflight.healthy_window, end)
        try:
            firing = self.prometheus.series(policy.preflight.critical_alerts_query)
        except PrometheusQueryError as exc:
            problems.append(f"critical alerts: {exc}")
            firing = []
        problems += [f"critical alert firing: {a['labels'].get('alertname', a['labels'])}" for a in firing]

        targets, peers = self._targets(plan, policy, problems)
        if problems:
            raise AirflowFailException("pre-flight check failed, nothing injected:\n  " + "\n  ".join(problems))
        self.log.info("pre-flight passed; baseline %s", baseline)
        return {
            "baseline": baseline,
            "window": [(end - dt.timedelta(seconds=policy.preflight.healthy_window)).isoformat(), end.isoformat()],
            "targets": [t.ref for t in targets],
            "peers": [t.ref for t in peers],
            "checked_at": end.isoformat(),
        }

    def _targets(self, plan: dict[str, Any], policy: Any, problems: list[str]) -> tuple[list[TargetPod], list[TargetPod]]:
        tier = Tier(plan["tier"])
        spec, issues = parse_spec(plan["kind"], plan["manifest"]["spec"])
        if spec is None:
            problems += [str(i) for i in issues]
            return [], []
        targets = resolve_pods(self.cluster, spec.selector)
        peers = resolve_pods(self.cluster, spec.target.selector) if getattr(spec, "target", None) is not None and getattr(spec.target, "selector", None) else []
        if not any(t.ready for t in targets):
            problems.append(f"the selector resolves to no ready pod ({len(targets)} pod(s) found)")
        problems += protected_violations(policy, tier, targets + peers)
        radius = policy.tiers[tier].blast_radius
        affected = affected_pods(getattr(spec.mode, "value", spec.mode), spec.value, len(targets))
        if affected > radius.max_pods:
            problems.append(f"{affected} pods would be hit (mode {getattr(spec.mode, 'value', spec.mode)} of {len(targets)}); the {tier.value} tier allows {radius.max_pods}")
        return targets, peers
