"""Waiting until the sandbox would pass a pre-flight check (used by the demo, benchmarks and tests):
an earlier fault leaves traces in the rate windows, and pods restart, for a while."""

from __future__ import annotations

import datetime as dt
import time

from chaos_engineering.hooks.prometheus import PrometheusHook
from chaos_engineering.operators.preflight import fault_lifetime_s, steady_state
from chaos_engineering.policy import SafetyPolicy


def wait_steady(policy: SafetyPolicy, window_s: float | None = None, timeout: float = 180) -> None:
    thresholds = {n: t.model_dump(mode="json") for n, t in policy.safety.thresholds.items()}
    window_s = window_s or policy.preflight.healthy_window
    deadline = time.monotonic() + timeout
    while True:
        _, problems = steady_state(
            PrometheusHook(), thresholds, window_s, dt.datetime.now(dt.timezone.utc), steady_limits=policy.preflight.steady_limits,
            lifetime_s=fault_lifetime_s(policy),
        )
        if not problems:
            return
        assert time.monotonic() < deadline, f"the sandbox did not settle in {timeout} s: {problems}"
        time.sleep(2)
