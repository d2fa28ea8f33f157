"""The Chaos page's status of active faults, from objects as the cluster stores them: no Airflow, no cluster."""

from __future__ import annotations

import copy

import pytest

from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.render import LABEL_EXPERIMENT, render_chaos_object
from chaos_engineering.ui.status import active_faults
from sandbox.kubeapi.admission import admit
from sandbox.kubeapi.resources import CHAOS_KINDS
from tests.unit.cluster_fake import FakeCluster

CATALOGUE = load_catalogue()
RESOURCES = {r.kind: r for r in CHAOS_KINDS.values()}


class SteadyPrometheus:
    """Every query reads 1.0: the readings are not what these tests look at."""

    def query(self, promql: str) -> float:
        return 1.0


def stored(experiment: str, run_id: str = "manual__page") -> dict:
    """The object inject creates for `experiment`, defaulted and admitted as Chaos Mesh's webhooks do."""
    obj = render_chaos_object(CATALOGUE.get(experiment), CATALOGUE.policy, dag_id="chaos_low_risk", run_id=run_id)
    assert admit(RESOURCES[obj["kind"]], obj) == []
    return obj


def shown(*objects: dict) -> dict[str, dict]:
    faults = active_faults(FakeCluster(objects), CATALOGUE, SteadyPrometheus())
    return {f["name"]: f for f in faults}


@pytest.mark.parametrize(
    ("experiment", "kind", "action"),
    [
        ("booking-api-http-delay", "HTTPChaos", "delay"),
        ("email-service-http-abort", "HTTPChaos", "abort"),
        ("booking-api-pod-kill", "PodChaos", "pod-kill"),
        ("web-frontend-latency", "NetworkChaos", "delay"),
        ("database-io-latency", "IOChaos", "latency"),
        ("booking-worker-cpu-stress", "StressChaos", "cpu"),
        ("booking-api-memory-pressure", "StressChaos", "memory"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_status_shows_each_kinds_action_as_the_policy_names_it(experiment, kind, action):
    obj = stored(experiment)
    [fault] = shown(obj).values()
    assert (fault["experiment"], fault["kind"], fault["action"]) == (experiment, kind, action)
    assert fault["readings_error"] is None


def test_status_shows_the_action_applied_on_the_cluster_even_for_an_experiment_no_longer_in_the_catalogue():
    obj = stored("booking-api-http-delay")
    obj["metadata"]["labels"][LABEL_EXPERIMENT] = "since-deleted"
    [fault] = shown(obj).values()
    assert (fault["kind"], fault["action"]) == ("HTTPChaos", "delay")
    assert fault["readings_error"] == "experiment 'since-deleted' is not a valid experiment of the catalogue: no thresholds to show"


def test_status_shows_what_the_object_applies_not_what_the_catalogue_now_says():
    # The catalogue's experiment may have been edited since the run injected its fault.
    obj = stored("booking-api-http-delay")
    edited = copy.deepcopy(obj)
    del edited["spec"]["delay"]
    edited["spec"]["abort"] = True
    [fault] = shown(edited).values()
    assert (fault["experiment"], fault["action"]) == ("booking-api-http-delay", "abort")
