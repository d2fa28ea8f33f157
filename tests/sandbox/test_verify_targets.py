"""The run-time target check (`targets.verify_targets`) and pre-flight's use of it, against the
emulated API server: both sides resolved, protected and out-of-namespace pods refused, the blast
radius counted over both sides, externalTargets resolved, remote clusters refused."""

from __future__ import annotations

import json

import pytest

from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.chaosmesh.spec import parse_spec
from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.operators.preflight import PreflightCheckOperator
from chaos_engineering.policy import Tier
from chaos_engineering.targets import verify_targets
from sandbox.platform.effects import PodRef
from tests.sandbox.kubeapi_support import CHAOS_NS, serve

kube = pytest.fixture(scope="module", name="kube")(serve)
CATALOGUE = load_catalogue()
POLICY = CATALOGUE.policy

BOOKING_API = {"namespaces": ["booking"], "labelSelectors": {"app": "booking-api", "app.kubernetes.io/name": "booking-api"}}
DATABASE = {"namespaces": ["booking"], "labelSelectors": {"app": "database", "app.kubernetes.io/name": "database"}}
PAYMENTS = {"namespaces": ["payments"], "labelSelectors": {"app": "payment-processor"}}


@pytest.fixture
def cluster(kube, monkeypatch) -> ChaosMeshHook:
    connection = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(kube.kubeconfig), "namespace": CHAOS_NS}}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_TARGETS", json.dumps(connection))
    return ChaosMeshHook("kubernetes_targets")


def network(**fields):
    raw = {"action": "partition", "mode": "one", "direction": "both", "selector": BOOKING_API} | fields
    spec, issues = parse_spec("NetworkChaos", raw)
    assert not issues
    return spec


def pod_kill(selector: dict, **fields):
    spec, issues = parse_spec("PodChaos", {"action": "pod-kill", "mode": "one", "selector": selector} | fields)
    assert not issues
    return spec


def refs(pods) -> list[str]:
    return sorted(p.ref for p in pods)


@pytest.mark.parametrize("name", sorted(CATALOGUE.experiments))
def test_every_catalogue_experiment_passes(cluster, name):
    experiment = CATALOGUE.get(name)
    check = verify_targets(cluster, POLICY, experiment.tier, experiment.spec)
    assert check.problems == [] and check.ok
    assert any(p.ready for p in check.targets)


def test_both_sides_count_against_the_blast_radius(cluster):
    spec = network(target={"mode": "all", "selector": DATABASE})
    low = verify_targets(cluster, POLICY, Tier.LOW, spec)
    assert (len(low.targets), refs(low.peers)) == (3, ["booking/database-0", "booking/database-1"])
    assert low.problems == [
        "3 pods would be hit: 1 of 3 (selector, mode one) + 2 of 2 (target selector, mode all); the low tier allows 1"
    ]
    assert verify_targets(cluster, POLICY, Tier.HIGH, spec).problems == []  # 3 pods: the high tier's maximum


def test_a_protected_pod_on_the_target_side_is_refused(cluster):
    check = verify_targets(cluster, POLICY, Tier.HIGH, network(target={"mode": "one", "selector": PAYMENTS}))
    assert refs(check.peers) and all(p.namespace == "payments" for p in check.peers)
    assert check.problems == [
        problem
        for ref in refs(check.peers)
        for problem in (
            f"{ref} is in namespace 'payments', not a target namespace of the policy",
            f"{ref} carries app=payment-processor, app.kubernetes.io/name=payment-processor of protected service "
            "'payment-processor' (level absolute)",
        )
    ]


def test_a_pod_carrying_one_protected_label_pair_is_refused(cluster, kube):
    victim = next(p for p in kube.platform.pods() if p.namespace == "booking" and p.labels.get("app") == "booking-api")
    original = dict(victim.labels)
    kube.platform.set_labels(PodRef("booking", victim.name), original | {"app.kubernetes.io/name": "payment-processor"})
    try:
        check = verify_targets(cluster, POLICY, Tier.LOW, pod_kill({"namespaces": ["booking"], "labelSelectors": {"app": "booking-api"}}))
    finally:
        kube.platform.set_labels(PodRef("booking", victim.name), original)
    assert check.problems == [
        f"booking/{victim.name} carries app.kubernetes.io/name=payment-processor of protected service 'payment-processor' (level absolute)"
    ]


def test_no_ready_pod_on_either_side_is_refused(cluster):
    nothing = {"namespaces": ["booking"], "labelSelectors": {"app": "no-such-service"}}
    assert verify_targets(cluster, POLICY, Tier.LOW, pod_kill(nothing)).problems == ["the selector resolves to no ready pod (0 pod(s) found)"]
    check = verify_targets(cluster, POLICY, Tier.HIGH, network(target={"mode": "one", "selector": nothing}))
    assert check.problems == ["the target selector resolves to no ready pod (0 pod(s) found)"]


def test_a_remote_cluster_fails_closed(cluster):
    check = verify_targets(cluster, POLICY, Tier.LOW, pod_kill(BOOKING_API, remoteCluster="eu-west"))
    assert (check.targets, check.peers) == ([], [])
    assert check.problems == [
        "remoteCluster 'eu-west': the fault would select pods in another cluster, which this run cannot list, so "
        "it cannot prove them unprotected; run it without remoteCluster"
    ]


def test_external_targets_are_resolved_now(cluster):
    spec = network(action="delay", direction="to", delay={"latency": "10ms"}, externalTargets=["api.stripe.com", "8.8.8.8"])
    resolved = {"api.stripe.com": ["10.96.4.2"]}
    check = verify_targets(cluster, POLICY, Tier.LOW, spec, resolve=resolved.__getitem__)
    assert check.problems == [
        "externalTargets entry 'api.stripe.com' reaches the non-public range 10.0.0.0/8, where pod and Service IPs "
        "live, so it cannot be proven outside every protected service; name the external service by its public "
        "address, or select in-cluster peers with target.selector (resolved to 10.96.4.2)"
    ]
    resolved["api.stripe.com"] = ["34.117.59.81"]
    assert verify_targets(cluster, POLICY, Tier.LOW, spec, resolve=resolved.__getitem__).problems == []


def test_preflight_checks_targets_with_verify_targets(cluster):
    experiment = CATALOGUE.get("booking-api-database-partition")
    manifest = {"spec": experiment.spec.to_manifest()}
    operator = PreflightCheckOperator(task_id="preflight", plan={}, kubernetes_conn_id="kubernetes_targets")
    problems: list[str] = []
    targets, peers = operator._targets({"tier": "low", "kind": "NetworkChaos", "manifest": manifest}, POLICY, problems)
    assert (len(targets), refs(peers)) == (3, ["booking/database-0", "booking/database-1"])
    assert problems == ["3 pods would be hit: 1 of 3 (selector, mode one) + 2 of 2 (target selector, mode all); the low tier allows 1"]
