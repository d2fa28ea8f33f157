"""Each validation rule of an experiment, one case per rule, with the exact issue it produces."""

from __future__ import annotations

import pytest

from tests.unit.catalogue_support import DELETE, base_experiment, load, mutated, service_labels

NOTIFICATIONS_ALL = {"namespaces": ["notifications"]}
# What the low and medium tiers may not reach (absolute and high levels).
FORBIDDEN_LOW = ["payment-processor", "stripe-webhook-handler", "booking-confirmation", "sms-notifications"]


LEVELS = {"payment-processor": "absolute", "stripe-webhook-handler": "absolute", "booking-confirmation": "high", "sms-notifications": "high"}


def reach(field: str, services: list[str] = FORBIDDEN_LOW) -> list[tuple[str, str, str]]:
    """One issue for every service the same fix keeps out of reach, naming them all."""
    names = ", ".join(f"{name!r} (level {LEVELS[name]})" for name in services)
    return [(field, "protected-reach", f" of protected services {names}, all forbidden to the low tier: ")]


# (id, changes to the base experiment, expected [(field, rule, words in the message)])
CASES = [
    ("valid", {}, []),
    ("unknown-top-level-key", {"owner": "me"}, [("owner", "unknown-field", "'owner'")]),
    ("name-not-dns-label", {"name": "Booking_API"}, [("name", "format", "'Booking_API' is not a valid name: use lowercase letters (a-z), "
                                                      "digits and '-', starting and ending with a letter or digit, e.g. 'booking-api'")]),
    ("name-too-long", {"name": "a" * 51}, [("name", "range", "the name is 51 characters long; a name is at most 50 characters")]),
    ("name-reserved", {"name": "rotation"}, [("name", "reserved", "'rotation' is the trigger form's choice for the tier's rotation; give the experiment another name")]),
    ("tier-enum", {"tier": "extreme"}, [("tier", "enum", "")]),
    ("hypothesis-required", {"hypothesis": DELETE}, [("hypothesis", "required", "hypothesis")]),
    ("api-version", {"chaos.apiVersion": "chaos-mesh.org/v1"}, [("chaos.apiVersion", "enum", "chaos-mesh.org/v1alpha1")]),
    ("kind-enum", {"chaos.kind": "DNSChaos"}, [("chaos.kind", "enum", "")]),
    ("spec-typo", {"chaos.spec.durration": "60s"}, [("chaos.spec.durration", "unknown-field", "durration")]),
    ("unknown-service", {"target.service": "nope"}, [("target.service", "unknown-service", "'nope'")]),
    (
        "protected-target",
        {
            "target.service": "booking-confirmation",
            "chaos.spec.selector": {"namespaces": ["notifications"], "labelSelectors": service_labels("booking-confirmation")},
        },
        [
            ("target.service", "protected-target", "level 'high'"),
            ("chaos.spec.selector", "protected-reach", "'booking-confirmation'"),
        ],
    ),
    ("tier-kind", {"chaos.kind": "IOChaos", "chaos.spec": {
        "action": "latency", "mode": "one", "volumePath": "/data", "delay": "10ms",
        "selector": {"namespaces": ["booking"], "labelSelectors": service_labels("booking-api")}}},
     [("chaos.kind", "tier-kind", "IOChaos is not allowed in the low tier")]),
    ("tier-action", {"chaos.spec.action": "pod-failure"}, [("chaos.spec.action", "tier-action", "'pod-failure'")]),
    ("tier-action-stressor", {"chaos.kind": "StressChaos", "chaos.spec": {
        "mode": "one", "stressors": {"memory": {"workers": 1, "size": "64MB"}},
        "selector": {"namespaces": ["booking"], "labelSelectors": service_labels("booking-api")}}},
     [("chaos.spec", "tier-action", "'memory'")]),
    ("max-duration", {"chaos.spec.duration": "11m"}, [("chaos.spec.duration", "max-duration", "11m exceeds the low tier's maximum of 10m")]),
    ("blast-radius-mode", {"chaos.spec.mode": "all"}, [("chaos.spec.mode", "blast-radius-mode", "'all'")]),
    ("blast-radius-pods", {"chaos.spec.mode": "fixed", "chaos.spec.value": "2"}, [("chaos.spec.value", "blast-radius", "2 pods exceed")]),
    ("blast-radius-percent", {"chaos.spec.mode": "fixed-percent", "chaos.spec.value": "50"}, [("chaos.spec.value", "blast-radius", "50 %")]),
    ("explicit-namespaces", {"chaos.spec.selector.namespaces": DELETE}, [("chaos.spec.selector.namespaces", "explicit-namespaces", "explicitly")]),
    (
        "allowed-namespace",
        {"chaos.spec.selector.namespaces": ["payments"]},
        [
            ("chaos.spec.selector.namespaces", "allowed-namespace", "'payments'"),
            ("chaos.spec.selector", "target-mismatch", "'booking-api'"),
        ],
    ),
    (
        # A pod with ANY label pair of a protected service counts as the service's, in any
        # namespace: the whole namespace reaches every protected service, not only its own.
        "protected-reach-namespace-wide",
        {"target.service": "email-service", "chaos.spec.selector": NOTIFICATIONS_ALL},
        reach("chaos.spec.selector"),
    ),
    (
        # `app: booking-api` leaves app.kubernetes.io/name open: a pod carrying
        # app.kubernetes.io/name=payment-processor as well would be selected.
        "protected-reach-other-key",
        {"chaos.spec.selector.labelSelectors": {"app": "booking-api"}},
        [(f, r, "could select a pod carrying " + ", ".join(f"app.kubernetes.io/name={name}" for name in FORBIDDEN_LOW) + words)
         for f, r, words in reach("chaos.spec.selector")],
    ),
    (
        "protected-reach-expression",
        {
            "target.service": "email-service",
            "chaos.spec.selector": {
                "namespaces": ["notifications"],
                "labelSelectors": {"app.kubernetes.io/name": "email-service"},
                "expressionSelectors": [{"key": "app", "operator": "NotIn", "values": ["sms-notifications"]}],
            },
        },
        reach("chaos.spec.selector", ["payment-processor", "stripe-webhook-handler", "booking-confirmation"]),
    ),
    (
        "protected-reach-expression-excludes",
        {
            "target.service": "email-service",
            "chaos.spec.selector": {
                "namespaces": ["notifications"],
                "expressionSelectors": [
                    {"key": "app", "operator": "In", "values": ["email-service"]},
                    {"key": "app.kubernetes.io/name", "operator": "NotIn", "values": FORBIDDEN_LOW},
                ],
            },
        },
        [],
    ),
    (
        "protected-reach-network-target",
        {"chaos.kind": "NetworkChaos", "chaos.spec": {
            "action": "delay", "mode": "one", "delay": {"latency": "10ms"}, "direction": "to",
            "selector": {"namespaces": ["booking"], "labelSelectors": service_labels("booking-api")},
            "target": {"mode": "fixed-percent", "value": "25", "selector": {"namespaces": ["notifications"]}}}},
        reach("chaos.spec.target.selector"),
    ),
    (
        "network-target-namespaces",
        {"chaos.kind": "NetworkChaos", "chaos.spec": {
            "action": "delay", "mode": "one", "delay": {"latency": "10ms"}, "direction": "to",
            "selector": {"namespaces": ["booking"], "labelSelectors": service_labels("booking-api")},
            "target": {"mode": "fixed-percent", "value": "25", "selector": {"labelSelectors": service_labels("database")}}}},
        [("chaos.spec.target.selector.namespaces", "explicit-namespaces", "explicitly")],
    ),
    (
        "network-target-mode",
        {"chaos.kind": "NetworkChaos", "chaos.spec": {
            "action": "delay", "mode": "one", "delay": {"latency": "10ms"}, "direction": "to",
            "selector": {"namespaces": ["booking"], "labelSelectors": service_labels("booking-api")},
            "target": {"mode": "all", "selector": {"namespaces": ["booking"], "labelSelectors": service_labels("database")}}}},
        [("chaos.spec.target.mode", "blast-radius-mode", "target mode 'all' is not allowed in the low tier")],
    ),
    (
        # Named pods' labels are only known at run time: they could be any service's.
        "pods-list",
        {"target.service": "email-service", "chaos.spec.selector": {"pods": {"notifications": ["email-service-abcde"]}}},
        reach("chaos.spec.selector"),
    ),
    ("target-mismatch", {"chaos.spec.selector.labelSelectors": service_labels("cache")}, [("chaos.spec.selector", "target-mismatch", "'booking-api'")]),
    ("unknown-threshold", {"thresholds": {"latency": {"limit": 1}}}, [("thresholds.latency", "unknown-threshold", "'latency'")]),
    ("loosened-drop", {"thresholds": {"booking_rate": {"limit": 20}}}, [("thresholds.booking_rate.limit", "loosened-threshold", "20 is looser than the policy's 10")]),
    ("loosened-at-least", {"thresholds": {"availability": {"limit": 99}}}, [("thresholds.availability.limit", "loosened-threshold", "99 is looser")]),
    ("tightened-ok", {"thresholds": {"availability": {"limit": 99.99}, "p95_latency": {"limit": 1000}}}, []),
]


@pytest.mark.parametrize(("changes", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(tmp_path, changes, expected):
    catalogue = load(tmp_path, mutated(base_experiment(), changes))
    found = [(i.field, i.rule) for i in catalogue.issues]
    assert sorted(found) == sorted((field, rule) for field, rule, _ in expected), catalogue.issues
    unmatched = list(catalogue.issues)
    for field, rule, words in expected:
        issue = next((i for i in unmatched if (i.field, i.rule) == (field, rule) and words in i.message), None)
        assert issue is not None, f"no {rule} issue at {field} saying {words!r}: {unmatched}"
        assert issue.file.endswith("e0.yaml")
        unmatched.remove(issue)
    assert (catalogue.get("booking-api-pod-kill") is not None) == (not expected)


def test_every_issue_of_a_file_is_reported_at_once(tmp_path):
    experiment = mutated(base_experiment(), {"owner": "me", "chaos.spec.durration": "1s", "tier": "extreme"})
    rules = sorted(i.rule for i in load(tmp_path, experiment).issues)
    assert rules == ["enum", "unknown-field", "unknown-field"]


def test_duplicate_names_reject_both_files(tmp_path):
    catalogue = load(tmp_path, base_experiment(), base_experiment())
    assert [(i.file.rsplit("/", 1)[-1], i.rule) for i in catalogue.issues] == [("e0.yaml", "duplicate-name"), ("e1.yaml", "duplicate-name")]
    assert catalogue.experiments == {}


def test_a_duplicate_of_an_invalid_file_is_still_reported(tmp_path):
    invalid = mutated(base_experiment(), {"chaos.spec.duration": "1h"})
    catalogue = load(tmp_path, base_experiment(), invalid)
    assert sorted(i.rule for i in catalogue.issues) == ["duplicate-name", "duplicate-name", "max-duration"]


def test_one_bad_file_does_not_hide_the_others(tmp_path):
    other = mutated(base_experiment(), {"name": "another-pod-kill"})
    catalogue = load(tmp_path, "name: [unclosed", base_experiment(), other)
    assert [i.rule for i in catalogue.issues] == ["yaml"]
    assert sorted(catalogue.experiments) == ["another-pod-kill", "booking-api-pod-kill"]


@pytest.mark.parametrize(
    ("content", "rule"),
    [("- a\n- b\n", "type"), ("name: a\n---\nname: b\n", "one-experiment"), ("", "one-experiment"), ("a: [", "yaml")],
    ids=["not-a-mapping", "two-documents", "empty", "broken-yaml"],
)
def test_unreadable_files(tmp_path, content, rule):
    assert [i.rule for i in load(tmp_path, content).issues] == [rule]


def test_default_duration_is_the_tier_maximum_and_passes(tmp_path):
    catalogue = load(tmp_path, mutated(base_experiment(), {"chaos.spec.duration": DELETE}))
    assert catalogue.ok
