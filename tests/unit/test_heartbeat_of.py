"""Which heartbeat watches a chaos object (`heartbeat_of`): a scenario run's steps share the run's
one; every other object has its own; the two kinds of name never meet."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.heartbeat import ANNOTATION_FAULT_KIND, ANNOTATION_SCENARIO_RUN_KEY, Heartbeat, ScenarioHeartbeat, heartbeat_of
from chaos_engineering.render import LABEL_RUN_KEY, LABEL_SCENARIO

NAMESPACE = "chaos-engineering"
names = st.from_regex(r"[a-z][a-z0-9-]{0,40}[a-z0-9]", fullmatch=True)
keys = st.from_regex(r"[0-9a-f]{16}", fullmatch=True)
kinds = st.sampled_from(list(ChaosKind))


def chaos_object(kind: ChaosKind, name: str, labels: dict[str, str]) -> dict:
    return {"kind": kind.value, "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels}}


@given(kinds, kinds, names, names, names, keys)
def test_the_steps_of_one_scenario_run_share_its_heartbeat(kind_a, kind_b, step_a, step_b, scenario, key):
    labels = {LABEL_SCENARIO: scenario, LABEL_RUN_KEY: key}
    a, b = heartbeat_of(None, chaos_object(kind_a, step_a, labels)), heartbeat_of(None, chaos_object(kind_b, step_b, labels))
    assert isinstance(a, ScenarioHeartbeat) and a.name == b.name == f"chaos-heartbeat-scenario-{key}"
    assert a.namespace == NAMESPACE and a._annotations() == {ANNOTATION_SCENARIO_RUN_KEY: key}


@given(kinds, names, names, keys, keys)
def test_two_runs_never_share_a_heartbeat(kind, step, scenario, key_a, key_b):
    a = heartbeat_of(None, chaos_object(kind, step, {LABEL_SCENARIO: scenario, LABEL_RUN_KEY: key_a}))
    b = heartbeat_of(None, chaos_object(kind, step, {LABEL_SCENARIO: scenario, LABEL_RUN_KEY: key_b}))
    assert (a.name == b.name) == (key_a == key_b)


@given(kinds, names, st.dictionaries(st.sampled_from([LABEL_SCENARIO, LABEL_RUN_KEY, "app"]), names, max_size=1), names, keys)
def test_an_object_not_of_a_scenario_run_has_its_own_which_no_scenario_run_can_take(kind, name, labels, scenario, key):
    own = heartbeat_of(None, chaos_object(kind, name, labels))
    assert type(own) is Heartbeat and own.name == Heartbeat(None, kind, name, NAMESPACE).name
    assert own._annotations() == {ANNOTATION_FAULT_KIND: kind.value}
    assert own.name != heartbeat_of(None, chaos_object(kind, name, {LABEL_SCENARIO: scenario, LABEL_RUN_KEY: key})).name
