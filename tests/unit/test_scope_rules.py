"""The scope rules (every field that changes where a fault lands or what it does), one case per
rule, with the exact issue; and the shared definition of a protected service's pod."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.chaosmesh.spec import parse_spec
from chaos_engineering.chaosmesh.stresschaos import Stressors
from chaos_engineering.experiment import Experiment
from chaos_engineering.external_targets import parse_entry, run_time_problems
from chaos_engineering.policy import SafetyPolicy, Tier
from chaos_engineering.reach import forbidden_reasons, protected_owners
from chaos_engineering.rules import check_experiment, fault_actions
from tests.unit.catalogue_support import base_experiment, base_policy, load, mutated, service_labels

BOOKING_API = {"namespaces": ["booking"], "labelSelectors": service_labels("booking-api")}
DATABASE = {"namespaces": ["booking"], "labelSelectors": service_labels("database")}


def network(**fields) -> dict:
    spec = {"action": "delay", "mode": "one", "delay": {"latency": "10ms"}, "direction": "to", "selector": BOOKING_API}
    return {"chaos.kind": "NetworkChaos", "chaos.spec": spec | fields}


def stress(stressors: dict, tier: str = "low") -> dict:
    return {"tier": tier, "chaos.kind": "StressChaos", "chaos.spec": {"mode": "one", "selector": BOOKING_API, "stressors": stressors}}


def policy_with_hosts() -> dict:
    policy = base_policy()
    policy["protected_services"]["payment-processor"]["hosts"] = ["pay.example.com", "34.117.59.0/24"]
    return policy


FORBIDDEN = "(level absolute, forbidden to the low tier); remove the entry"
UNPROVABLE_ADDRESS = (
    "where pod and Service IPs live, so it cannot be proven outside every protected service; name the external "
    "service by its public address, or select in-cluster peers with target.selector"
)
IN_CLUSTER = (
    "is resolved by the cluster's DNS (a Service or pod name), so its pods cannot be checked: select in-cluster "
    "peers with target.selector instead, or give a fully qualified public name"
)

# (id, changes to the base experiment (low tier, PodChaos on booking-api), policy or None, [(field, rule, exact message)])
CASES = [
    (
        "protected-reach-any-label-pair",
        {"chaos.spec.selector.labelSelectors": {"app": "booking-api", "app.kubernetes.io/name": "booking-api"},
         "chaos.spec.selector.expressionSelectors": [{"key": "app", "operator": "Exists"}]},
        None,
        [],
    ),
    (
        "protected-reach-one-pair-left-open",
        {"tier": "high", "chaos.spec.action": "pod-failure",
         "chaos.spec.selector": {"namespaces": ["booking"], "labelSelectors": {"app": "booking-api"},
                                 "expressionSelectors": [{"key": "app.kubernetes.io/name", "operator": "NotIn",
                                                          "values": ["payment-processor", "stripe-webhook-handler"]}]}},
        None,
        [(
            "chaos.spec.selector",
            "protected-reach",
            "could select a pod carrying app.kubernetes.io/name=email-service of protected service 'email-service' "
            "(level medium, forbidden to the high tier): a pod with any of its labels counts as the service's, in any "
            "namespace; pin app.kubernetes.io/name in labelSelectors to your service's value, or exclude it, e.g. "
            "expressionSelectors: [{key: app.kubernetes.io/name, operator: NotIn, values: [email-service]}]",
        )],
    ),
    (
        "external-target-protected-dns-name",
        network(externalTargets=["payment-processor.payments.svc.cluster.local"]),
        None,
        [("chaos.spec.externalTargets[0]", "external-target-protected",
          "externalTargets entry 'payment-processor.payments.svc.cluster.local' is the in-cluster DNS name "
          f"'payment-processor.payments.svc.cluster.local' of protected service 'payment-processor' {FORBIDDEN}")],
    ),
    (
        "external-target-protected-sub-domain",
        network(externalTargets=["pod-0.payment-processor.payments"]),
        None,
        [("chaos.spec.externalTargets[0]", "external-target-protected",
          "externalTargets entry 'pod-0.payment-processor.payments' is under the in-cluster DNS name "
          f"'payment-processor.payments' of protected service 'payment-processor' {FORBIDDEN}")],
    ),
    (
        "external-target-protected-host",
        network(externalTargets=["API.Pay.Example.com.:443"]),
        policy_with_hosts(),
        [("chaos.spec.externalTargets[0]", "external-target-protected",
          f"externalTargets entry 'API.Pay.Example.com.:443' is under the host 'pay.example.com' of protected service 'payment-processor' {FORBIDDEN}")],
    ),
    (
        "external-target-protected-cidr-overlap",
        network(externalTargets=["34.117.0.0/16"]),
        policy_with_hosts(),
        [("chaos.spec.externalTargets[0]", "external-target-protected",
          f"externalTargets entry '34.117.0.0/16' overlaps 34.117.59.0/24, an address of protected service 'payment-processor' {FORBIDDEN}")],
    ),
    (
        "external-target-private-address",
        network(externalTargets=["8.8.8.8", "10.0.0.0/8:22", "::ffff:192.168.1.1"]),
        None,
        [
            ("chaos.spec.externalTargets[1]", "external-target-unprovable",
             f"externalTargets entry '10.0.0.0/8:22' reaches the non-public range 10.0.0.0/8, {UNPROVABLE_ADDRESS}"),
            ("chaos.spec.externalTargets[2]", "external-target-unprovable",
             f"externalTargets entry '::ffff:192.168.1.1' reaches the non-public range ::ffff:0:0/96, {UNPROVABLE_ADDRESS}"),
        ],
    ),
    (
        "external-target-in-cluster-name",
        network(externalTargets=["api.stripe.com", "cache", "cache.booking", "db.svc.cluster.local"]),
        None,
        [
            ("chaos.spec.externalTargets[1]", "external-target-unprovable", f"externalTargets entry 'cache' {IN_CLUSTER}"),
            ("chaos.spec.externalTargets[2]", "external-target-unprovable", f"externalTargets entry 'cache.booking' {IN_CLUSTER}"),
            ("chaos.spec.externalTargets[3]", "external-target-unprovable", f"externalTargets entry 'db.svc.cluster.local' {IN_CLUSTER}"),
        ],
    ),
    (
        "external-target-not-an-address",
        network(externalTargets=["http://x"]),
        None,
        [("chaos.spec.externalTargets[0]", "external-target-unprovable",
          "externalTargets entry 'http://x' is neither an IP, a CIDR nor a host name, so what it reaches cannot be "
          "checked; write an IP, a CIDR or a host name")],
    ),
    (
        "remote-cluster",
        {"chaos.spec.remoteCluster": "eu-west"},
        None,
        [("chaos.spec.remoteCluster", "remote-cluster",
          "remoteCluster 'eu-west' is not in the policy's allowed_remote_clusters (none): the fault would land in "
          "another cluster, whose pods this system does not check; remove remoteCluster")],
    ),
    ("remote-cluster-allowed", {"chaos.spec.remoteCluster": "eu-west"}, base_policy() | {"allowed_remote_clusters": ["eu-west"]}, []),
    (
        "target-side-mode",
        network(target={"mode": "all", "selector": DATABASE}),
        None,
        [("chaos.spec.target.mode", "blast-radius-mode", "target mode 'all' is not allowed in the low tier (allowed: one, fixed, fixed-percent)")],
    ),
    (
        "target-side-value",
        network(target={"mode": "fixed", "value": "2", "selector": DATABASE}),
        None,
        [("chaos.spec.target.value", "blast-radius", "2 pods exceed the low tier's maximum of 1")],
    ),
    (
        "target-side-percent",
        network(target={"mode": "fixed-percent", "value": "30", "selector": DATABASE}),
        None,
        [("chaos.spec.target.value", "blast-radius", "30 % of the pods exceeds the low tier's maximum of 25 %")],
    ),
    (
        "blast-radius-both-sides",
        network(direction="both", target={"mode": "one", "selector": DATABASE}),
        None,
        [("chaos.spec.target", "blast-radius-both-sides",
          "Chaos Mesh injects into both sides of a NetworkChaos: 1 selected + 1 target pod(s) = 2 exceed the low "
          "tier's maximum of 1; drop target (the fault then applies to all the selected pods' traffic) or move the "
          "experiment to a tier that allows it")],
    ),
    (
        "stressor-options-of-another-kind",
        stress({"cpu": {"workers": 1, "options": ["--cpu-method all", "--vm 2 --vm-bytes=1G"]}}),
        None,
        [("chaos.spec.stressors.cpu.options", "tier-action",
          "StressChaos 'stress-ng' is not allowed in the low tier (allowed: cpu): --vm, --vm-bytes=1G are not tuning "
          "options of the cpu stressor (--cpu-load-slice, --cpu-method, --cpu-ops) and stress-ng runs them as given; "
          "remove them, or move the experiment to a tier that allows it")],
    ),
    ("stressor-tuning-options", stress({"cpu": {"workers": 1, "options": ["--cpu-method=matrixprod", "--cpu-ops 100"]}}), None, []),
    (
        "stress-ng-stressors",
        {"chaos.kind": "StressChaos", "chaos.spec": {"mode": "one", "selector": BOOKING_API, "stressngStressors": "--fork 64"}},
        None,
        [("chaos.spec", "tier-action", "StressChaos 'stress-ng' is not allowed in the low tier (allowed: cpu); move it to a tier that allows it")],
    ),
    (
        "oom-score-adj",
        stress({"memory": {"workers": 1, "size": "64MB", "oomScoreAdj": -1000}}, tier="medium"),
        None,
        [("chaos.spec.stressors.memory.oomScoreAdj", "oom-score-adj",
          "oomScoreAdj -1000 makes the OOM killer spare the stressor and kill other processes instead (the pod's "
          "own, or other pods' on the node); remove it or set it to 0 or more")],
    ),
    (
        "tls-secret-namespace",
        {"tier": "medium", "chaos.kind": "HTTPChaos", "chaos.spec": {
            "mode": "one", "selector": BOOKING_API, "target": "Request", "port": 8080, "abort": True,
            "tls": {"secretName": "tls", "secretNamespace": "payments", "certName": "crt", "keyName": "key"}}},
        None,
        [("chaos.spec.tls.secretNamespace", "allowed-namespace",
          "namespace 'payments' is not a target namespace of the policy (allowed: booking, notifications); Chaos Mesh would read a secret there")],
    ),
]


@pytest.mark.parametrize(("changes", "policy", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_scope_rule(tmp_path, changes, policy, expected):
    catalogue = load(tmp_path, mutated(base_experiment(), changes), policy=policy)
    assert [(i.field, i.rule, i.message) for i in catalogue.issues] == expected


def _policy() -> SafetyPolicy:
    return SafetyPolicy.model_validate(base_policy())


def test_a_stress_chaos_that_names_no_stressor_is_refused():
    # Chaos Mesh's webhook refuses it too (so does the spec check): this is the policy's own guard.
    valid, _ = parse_spec("StressChaos", {"mode": "one", "selector": BOOKING_API, "stressors": {"cpu": {"workers": 1}}})
    spec = valid.model_copy(update={"stressors": Stressors()})
    assert fault_actions(spec) == []
    experiment = Experiment("x", Tier.LOW, "t", "", "h", "booking-api", ChaosKind.STRESS_CHAOS, spec, Path("x.yaml"))
    assert [(i.field, i.rule, i.message) for i in check_experiment(experiment, _policy())] == [(
        "chaos.spec",
        "tier-action",
        "StressChaos names nothing it does (no action, stressor or fault), so it cannot be checked against the low "
        "tier; add one the tier allows (cpu)",
    )]


@pytest.mark.parametrize(
    ("namespace", "labels", "reasons"),
    [
        ("booking", {"app": "booking-api"}, []),
        # Any one pair is enough, in any namespace.
        ("booking", {"app": "booking-api", "app.kubernetes.io/name": "payment-processor"},
         ["carries app.kubernetes.io/name=payment-processor of protected service 'payment-processor' (level absolute)"]),
        # A medium-level service is fair game for the low tier.
        ("notifications", {"app": "email-service"}, []),
        ("payments", {"app": "booking-api"}, ["is in namespace 'payments', not a target namespace of the policy"]),
    ],
    ids=["ordinary", "one-pair-elsewhere", "level-allows-tier", "outside-target-namespaces"],
)
def test_the_shared_definition_of_a_forbidden_pod(namespace, labels, reasons):
    assert forbidden_reasons(_policy(), Tier.LOW, namespace, labels) == reasons


def test_protected_owners_names_every_service_a_pod_counts_as():
    owners = protected_owners(_policy(), {"app": "email-service", "app.kubernetes.io/name": "sms-notifications"})
    assert [(name, pairs) for name, _, pairs in owners] == [
        ("sms-notifications", ["app.kubernetes.io/name=sms-notifications"]),
        ("email-service", ["app=email-service"]),
    ]


@pytest.mark.parametrize(
    ("entry", "parsed"),
    [("8.8.8.8", "8.8.8.8/32"), ("1.1.1.1:80", "1.1.1.1/32"), ("[2606:4700::1111]:443", "2606:4700::1111/128"),
     ("Example.COM.", "example.com"), ("example.com:443", "example.com"), ("10.0.0.0/8:22", "10.0.0.0/8"), ("a b", None)],
)
def test_external_target_entries_are_read_as_chaos_mesh_does(entry, parsed):
    result = parse_entry(entry)
    assert (str(result) if result is not None else None) == parsed


def test_host_names_are_resolved_again_at_run_time():
    policy = SafetyPolicy.model_validate(policy_with_hosts())
    addresses = {"api.stripe.com": ["34.117.59.81"], "status.example.org": ["93.184.215.14"], "intranet.example.org": ["10.2.3.4"]}

    def resolve(name: str) -> list[str]:
        if name not in addresses:
            raise OSError("Name or service not known")
        return addresses[name]

    entries = ["status.example.org", "api.stripe.com", "intranet.example.org", "gone.example.org", "cache"]
    assert run_time_problems(policy, Tier.LOW, entries, resolve) == [
        f"externalTargets entry 'api.stripe.com' overlaps 34.117.59.0/24, an address of protected service 'payment-processor' {FORBIDDEN} (resolved to 34.117.59.81)",
        f"externalTargets entry 'intranet.example.org' reaches the non-public range 10.0.0.0/8, {UNPROVABLE_ADDRESS} (resolved to 10.2.3.4)",
        "externalTargets entry 'gone.example.org' does not resolve here (Name or service not known); its addresses cannot be checked",
        f"externalTargets entry 'cache' {IN_CLUSTER}",
    ]
