"""The alerts pre-flight's gate reads: every critical alert and every alert labelled
chaos_preflight="block" (the platform or our safety machinery is not healthy enough to start a
fault); promtool evaluates the policy's own query in chaos-rules.test.yml."""

from __future__ import annotations

import yaml

from chaos_engineering.policy import load_policy
from tests.monitoring.metric_names import RULE_TESTS_FILE, rule_groups

ALERTS = {rule["alert"]: rule["labels"] for group in rule_groups() for rule in group["rules"] if "alert" in rule}
GATED = {name for name, labels in ALERTS.items() if labels["severity"] == "critical" or labels.get("chaos_preflight") == "block"}

# Each means "do not start a fault now": a fault of ours still active or stuck, a halt, a safety
# violation or kill-switch failure in progress, the platform's own SLOs broken, a blind Pushgateway
# (pre-flight's record of our faults), a platform that did not recover from the last run.
MUST_BLOCK = {
    "ChaosExperimentActiveTooLong", "ChaosExperimentStuckInjecting", "ChaosFaultLeftBehind", "ChaosMultipleExperimentsActive",
    "ChaosSafetyViolation", "ChaosKillSwitchFailed", "ChaosFailSafeTripped", "ChaosHaltSet",
    "BookingRateDrop", "PaymentFailureRateHigh", "ErrorRateHigh", "P95LatencyHigh", "SystemHealthScoreLow",
    "ChaosRecoverySuccessRateLow", "ChaosWatchdogDownDuringFault", "PushgatewayDown",
}
# Each would block for a reason that is not the platform's health now, some for ever: a kill
# switch slow once (no time bound), a lock (its own wait), a pending approval, a stop a human has
# since resumed from, a quiet week without runs.
MUST_NOT_BLOCK = {
    "ChaosKillSwitchSlow", "ChaosLockHeldWithoutFault", "ChaosApprovalPendingTooLong", "ChaosEmergencyStopPerformed",
    "ChaosPushgatewayStale", "ChaosExperimentBroken",
}


def test_the_gate_reads_every_alert_that_means_not_healthy_enough_to_start():
    assert MUST_BLOCK <= GATED, sorted(MUST_BLOCK - GATED)
    assert not MUST_NOT_BLOCK & GATED, sorted(MUST_NOT_BLOCK & GATED)


def test_the_label_has_one_value():
    assert {labels["chaos_preflight"] for labels in ALERTS.values() if "chaos_preflight" in labels} == {"block"}


def test_promtool_evaluates_the_policys_own_query():
    policy, _ = load_policy()
    tests = yaml.safe_load(RULE_TESTS_FILE.read_text())["tests"]
    group = next(t for t in tests if t["name"].startswith("the pre-flight gate"))
    expr = group["promql_expr_test"][0]["expr"]
    assert expr.startswith(f"({policy.preflight.critical_alerts_query})"), expr
