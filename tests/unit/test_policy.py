"""The safety policy file: its rules, its cross-references and its time windows."""

from __future__ import annotations

import datetime as dt

import pytest

from chaos_engineering.policy import ProtectionLevel, Tier, load_policy
from tests.unit.catalogue_support import DELETE, POLICY_PATH, base_experiment, base_policy, load, mutated, write_yaml


def test_the_shipped_policy_is_valid():
    policy, issues = load_policy(POLICY_PATH)
    assert issues == []
    assert set(policy.tiers) == set(Tier)
    assert policy.tiers[Tier.LOW].max_duration == 600
    assert policy.safety.check_interval == 10
    assert policy.protection_of("payment-processor") is ProtectionLevel.ABSOLUTE
    assert policy.protection_of("booking-api") is ProtectionLevel.NONE


CASES = [
    ("unknown-key", {"safety.thresholds.error_rate.treshold": 1}, "safety.thresholds[error_rate].treshold", "unknown-field"),
    ("bad-duration", {"safety.check_interval": "10"}, "safety.check_interval", "invalid-value"),
    ("zero-duration", {"tiers.low.max_duration": "0s"}, "tiers[low].max_duration", "invalid-value"),
    ("bad-rule", {"safety.thresholds.error_rate.rule": "below"}, "safety.thresholds[error_rate].rule", "enum"),
    ("negative-limit", {"safety.thresholds.error_rate.limit": -1}, "safety.thresholds[error_rate]", "invalid-value"),
    ("failed-reads", {"safety.max_failed_reads": 0}, "safety.max_failed_reads", "range"),
    ("handover-too-short", {"safety.monitor_handover": "5s"}, "safety.monitor_handover", "range"),
    ("recovery-unknown-threshold", {"recovery.business.thresholds": ["bookings"]}, "", "invalid-value"),
    ("approval-role-without-approvers", {"tiers.medium.approvals": ["dba"]}, "", "invalid-value"),
    ("missing-tier", {"tiers.high": DELETE}, "", "invalid-value"),
    ("chaos-namespace-is-a-target", {"allowed_target_namespaces": ["booking", "chaos-engineering"]}, "", "invalid-value"),
    ("bad-cron", {"tiers.low.schedule": "every 6 hours"}, "tiers[low].schedule", "invalid-value"),
    ("bad-timezone", {"business_hours.timezone": "Mars/Olympus"}, "business_hours.timezone", "invalid-value"),
    ("bad-time-range", {"business_hours.weekly.mon": ["20:00-08:00"]}, "business_hours.weekly[mon][0]", "invalid-value"),
    ("bad-weekday", {"business_hours.weekly.monday": ["08:00-09:00"]}, "business_hours.weekly[monday]", "enum"),
    ("bad-kind", {"tiers.low.allowed_kinds.DNSChaos": ["random"]}, "tiers[low].allowed_kinds[DNSChaos]", "enum"),
    ("drill-bad-cron", {"disaster_recovery.schedule": "monthly"}, "disaster_recovery.schedule", "invalid-value"),
    ("drill-zero-interval", {"disaster_recovery.probe.interval": "0s"}, "disaster_recovery.probe.interval", "invalid-value"),
    ("drill-interval-over-settle", {"disaster_recovery.probe.interval": "20s"}, "disaster_recovery", "invalid-value"),
    ("drill-rto-beyond-observe", {"disaster_recovery.targets.rto": "5m"}, "disaster_recovery", "invalid-value"),
    ("drill-missing-targets", {"disaster_recovery.targets": DELETE}, "disaster_recovery.targets", "required"),
    ("bad-label-value", {"protected_services.payment-processor.labels": {"app": "payment processor"}}, "protected_services[payment-processor].labels", "invalid-value"),
]


@pytest.mark.parametrize(("changes", "field", "rule"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_policy_rule(tmp_path, changes, field, rule):
    policy, issues = load_policy(write_yaml(tmp_path / "policy.yaml", mutated(base_policy(), changes)))
    assert policy is None
    assert [(i.field, i.rule) for i in issues] == [(field, rule)], issues


def test_an_invalid_policy_rejects_every_experiment(tmp_path):
    catalogue = load(tmp_path, base_experiment(), policy=mutated(base_policy(), {"version": 2}))
    assert catalogue.experiments == {}
    assert [(i.field, i.rule) for i in catalogue.issues] == [("version", "enum")]


def test_a_missing_policy_rejects_every_experiment(tmp_path):
    from chaos_engineering.catalogue import load_catalogue

    path = write_yaml(tmp_path / "e.yaml", base_experiment())
    catalogue = load_catalogue([path], tmp_path / "absent.yaml")
    assert catalogue.experiments == {} and [i.rule for i in catalogue.issues] == ["unreadable"]


NEW_YORK = dt.timezone(dt.timedelta(hours=-5))  # late November: EST


@pytest.mark.parametrize(
    ("moment", "business", "frozen"),
    [
        (dt.datetime(2026, 11, 27, 12, 0, tzinfo=NEW_YORK), True, False),  # Friday noon
        (dt.datetime(2026, 11, 27, 21, 0, tzinfo=NEW_YORK), False, False),  # Friday after 21:00
        (dt.datetime(2026, 11, 29, 9, 59, tzinfo=NEW_YORK), False, False),  # Sunday before 10:00
        (dt.datetime(2026, 11, 29, 10, 0, tzinfo=NEW_YORK), True, False),
        (dt.datetime(2026, 12, 25, 3, 0, tzinfo=NEW_YORK), False, True),
        (dt.datetime(2026, 12, 25, 7, 30, tzinfo=dt.timezone.utc), False, True),  # 02:30 local on the 25th
    ],
    ids=["friday-noon", "friday-night", "sunday-early", "sunday-open", "christmas", "utc-converted"],
)
def test_business_hours(moment, business, frozen):
    policy, _ = load_policy(POLICY_PATH)
    assert policy.business_hours.is_business_time(moment) is business
    assert policy.business_hours.is_frozen(moment) is frozen


def test_the_drill_must_name_a_valid_high_tier_experiment(tmp_path, monkeypatch):
    """Checked against the whole catalogue (never when validating a few files)."""
    import shutil

    from chaos_engineering.catalogue import load_catalogue
    from chaos_engineering.policy import default_include_dir

    include = tmp_path / "include"
    shutil.copytree(default_include_dir(), include)
    monkeypatch.setenv("CHAOS_INCLUDE_DIR", str(include))
    assert load_catalogue().issues == []
    for name, why in (("no-such-experiment", "not a valid experiment"), ("booking-api-pod-kill", "of tier 'low'")):
        write_yaml(include / "safety_policy.yaml", mutated(base_policy(), {"disaster_recovery.experiment": name}))
        issues = load_catalogue().issues
        assert [(i.file, i.field, i.rule) for i in issues] == [(str(include / "safety_policy.yaml"), "disaster_recovery.experiment", "drill-experiment")]
        assert why in issues[0].message
        assert load_catalogue([include / "experiments"]).issues == []
