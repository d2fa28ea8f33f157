"""The chaos Prometheus rules: promtool accepts them, every alert is unit-tested both ways and carries its labels and annotations."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from chaos_engineering.chaosmesh.duration import parse_go_duration
from tests.monitoring.metric_names import RULE_TESTS_FILE, RULES_FILE, known, metric_names, rule_groups

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
ALERTS = [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=300, cwd=RULES_FILE.parent)


def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", RULES_FILE.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", RULE_TESTS_FILE.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_a_broken_expectation_fails_promtool(tmp_path) -> None:
    """The unit tests can fail: flip one expected severity and promtool must refuse."""
    tests = yaml.safe_load(RULE_TESTS_FILE.read_text())
    tests["rule_files"] = [str(RULES_FILE)]
    group = tests["tests"][0]
    tests["tests"] = [group]  # one group keeps it fast
    case = next(c for c in group["alert_rule_test"] if c["exp_alerts"])
    case["exp_alerts"][0]["exp_labels"]["severity"] = "none"
    broken = tmp_path / "broken.test.yml"
    broken.write_text(yaml.safe_dump(tests))
    assert _promtool("test", "rules", str(broken)).returncode != 0


def test_at_least_15_alerts_covering_every_area() -> None:
    names = {rule["alert"] for rule in ALERTS}
    assert len(names) == len(ALERTS), "duplicate alert names"
    assert len(names) >= 15
    for needed in (
        "ChaosExperimentActiveTooLong", "ChaosExperimentStuckInjecting", "ChaosLockHeldWithoutFault",
        "ChaosSafetyViolation", "ChaosKillSwitchFailed", "ChaosFailSafeTripped", "ChaosHaltSet",
        "BookingRateDrop", "PaymentFailureRateHigh", "ErrorRateHigh", "P95LatencyHigh",
        "ChaosRecoveryStageMissed", "ChaosRecoverySuccessRateLow",
        "ChaosWatchdogHeartbeatMissing", "ChaosPushgatewayStale",
    ):
        assert needed in names


@pytest.mark.parametrize("rule", ALERTS, ids=[r["alert"] for r in ALERTS])
def test_alert_has_severity_summary_description_and_runbook(rule: dict) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    anchor = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", rule["alert"]).lower()
    assert annotations["runbook_url"] == f"docs/RUNBOOK.md#{anchor}"


@pytest.mark.parametrize("rule", ALERTS, ids=[r["alert"] for r in ALERTS])
def test_alert_is_unit_tested_firing_and_not_firing(rule: dict) -> None:
    cases = [c for t in yaml.safe_load(RULE_TESTS_FILE.read_text())["tests"] for c in t.get("alert_rule_test", [])
             if c["alertname"] == rule["alert"]]
    assert any(c["exp_alerts"] for c in cases), f"no case where {rule['alert']} fires"
    assert any(not c["exp_alerts"] for c in cases), f"no case where {rule['alert']} stays silent"


def test_rules_use_only_metrics_we_export_or_record() -> None:
    allowed = known()
    for group in rule_groups():
        for rule in group["rules"]:
            unknown = metric_names(str(rule["expr"])) - allowed
            assert not unknown, f"{rule.get('alert') or rule.get('record')}: unknown metrics {unknown}"


def test_a_rule_reads_only_recordings_made_before_it_in_its_own_group() -> None:
    """Prometheus evaluates rule groups independently (promtool in a random order) and the rules
    of a group in order: a rule reading a recording of another group, or of a later rule, reads
    the previous evaluation's value, one interval late (and promtool's tests flake on it)."""
    groups = rule_groups()
    recorded_in = {rule["record"]: group["name"] for group in groups for rule in group["rules"] if "record" in rule}
    for group in groups:
        recorded_so_far: set[str] = set()
        for rule in group["rules"]:
            reads = metric_names(str(rule["expr"])) & recorded_in.keys()
            late = reads - recorded_so_far
            assert not late, (
                f"{rule.get('alert') or rule.get('record')} (group {group['name']}) reads {sorted(late)}, "
                f"recorded in {sorted({recorded_in[m] for m in late})} {'after it' if all(recorded_in[m] == group['name'] for m in late) else ''}: "
                "put the rule after its recordings, in their group"
            )
            if "record" in rule:
                recorded_so_far.add(rule["record"])


def test_tier_limits_match_the_safety_policy() -> None:
    policy = yaml.safe_load((RULES_FILE.parents[1] / "safety_policy.yaml").read_text())
    recorded = {
        rule["labels"]["tier"]: float(rule["expr"].removeprefix("vector(").removesuffix(")"))
        for group in rule_groups() for rule in group["rules"] if rule.get("record") == "chaos:tier_max_fault_duration_seconds"
    }
    assert recorded == {tier: parse_go_duration(spec["max_duration"]) for tier, spec in policy["tiers"].items()}


def test_metric_name_parser() -> None:
    expr = 'sum by (le) (rate(a_b{c="d{e}"}[1m] offset 5m)) / on (job) group_left () x:y:z > bool 2 and ALERTS'
    assert metric_names(expr) == {"a_b", "x:y:z", "ALERTS"}
