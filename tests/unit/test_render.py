"""The Chaos Mesh object rendered for each catalogue experiment, checked against the real CRDs."""

from __future__ import annotations

import jsonschema
import pytest
import yaml

from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.chaosmesh.constants import PLURALS, ChaosKind
from chaos_engineering.render import OWNED_SELECTOR, render_chaos_object, run_key
from tests.conftest import shared_dir
from tests.unit.catalogue_support import DELETE, base_experiment, load, mutated

CATALOGUE = load_catalogue()


def crd_schema(kind: ChaosKind) -> dict:
    crd = yaml.safe_load((shared_dir() / "chaos-mesh" / "crds" / f"chaos-mesh.org_{PLURALS[kind]}.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


def test_the_catalogue_is_valid_and_covers_every_tier_and_kind():
    assert CATALOGUE.issues == []
    for tier in CATALOGUE.policy.tiers:
        assert len(CATALOGUE.for_tier(tier)) >= 3, tier
    assert {e.kind for e in CATALOGUE.experiments.values()} == set(ChaosKind)


@pytest.mark.parametrize("name", sorted(CATALOGUE.experiments))
def test_rendered_object_validates_against_the_crd(name):
    experiment = CATALOGUE.experiments[name]
    manifest = render_chaos_object(experiment, CATALOGUE.policy, dag_id="chaos_low_risk", run_id="scheduled__2026-11-27T00:00:00+00:00")
    jsonschema.validate(manifest, crd_schema(experiment.kind))
    metadata = manifest["metadata"]
    assert metadata["namespace"] == "chaos-engineering"
    assert len(metadata["name"]) <= 63 and metadata["name"].startswith(name + "-")
    assert metadata["labels"]["airflow-chaos.dev/tier"] == experiment.tier.value
    assert metadata["labels"]["airflow-chaos.dev/experiment"] == name
    assert manifest["spec"]["duration"]


def test_render_enforces_the_tier_maximum_when_no_duration_is_given(tmp_path):
    experiment = load(tmp_path, mutated(base_experiment(), {"chaos.spec.duration": DELETE})).get("booking-api-pod-kill")
    manifest = render_chaos_object(experiment, load(tmp_path).policy)
    assert manifest["spec"]["duration"] == "10m"


def test_render_keeps_the_users_spec_verbatim(tmp_path):
    catalogue = load(tmp_path, base_experiment())
    manifest = render_chaos_object(catalogue.get("booking-api-pod-kill"), catalogue.policy, dag_id="d", run_id="r")
    assert manifest["spec"] == base_experiment()["chaos"]["spec"]
    assert manifest["metadata"]["labels"]["airflow-chaos.dev/run-key"] == run_key("d", "r")
    key, value = OWNED_SELECTOR.split("=")
    assert manifest["metadata"]["labels"][key] == value


def test_run_key_is_stable_and_distinct():
    assert run_key("d", "r") == run_key("d", "r")
    assert run_key("d", "r1") != run_key("d", "r2")
    assert run_key("a", "b\0c") != run_key("a\0b", "c")
