"""When the scenario's monitor starts a step (`steps_due`): the one rule, proven over any timeline."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chaos_engineering.scenario_monitor import StepState, steps_due, step_before

STATES = ("pending", "active", "paused", "ended", "deleting", "gone", "never")


def step(name: str, start_at: float, duration_s: float = 60, after: str | None = None, when: str | None = None) -> dict:
    return {"step": name, "start_at": start_at, "duration_s": duration_s, "after": after, "when": when}


def test_a_step_starts_when_its_time_has_come():
    steps = [step("a", 0), step("b", 30)]
    states = {"a": StepState("active", 0), "b": StepState("pending")}
    assert steps_due(steps, states, 29.9, 1000, 5) == ([], {})
    assert steps_due(steps, states, 30, 1000, 5) == (["b"], {})


def test_a_step_after_another_ended_waits_for_chaos_mesh_to_end_it():
    steps = [step("a", 0, 60), step("b", 90, 60, after="a", when="ended")]
    # Planned at 90 s, but Chaos Mesh has not ended `a` yet: it waits.
    assert steps_due(steps, {"a": StepState("active", 0), "b": StepState("pending")}, 95, 1000, 5) == ([], {})
    assert steps_due(steps, {"a": StepState("ended", 0), "b": StepState("pending")}, 95, 1000, 5) == (["b"], {})


def test_nothing_starts_after_a_step_was_removed():
    steps = [step("a", 0), step("b", 10)]
    for state in ("gone", "deleting"):
        create, never = steps_due(steps, {"a": StepState(state, 0), "b": StepState("pending")}, 20, 1000, 5)
        assert create == [] and never == {"b": "an earlier step's fault was removed: the run is being stopped"}


def test_a_step_that_would_outlast_the_approved_span_never_starts():
    steps = [step("a", 0, 60), step("b", 60, 60, after="a", when="ended")]
    # The span ends at 120 s; `a` was seen ended at 70 s: `b` would end at 130 s, past 120 + 5.
    create, never = steps_due(steps, {"a": StepState("ended", 0), "b": StepState("pending")}, 70, 120, 5)
    assert create == [] and never["b"].startswith("it would end 10 s after the approved span")
    assert steps_due(steps, {"a": StepState("ended", 0), "b": StepState("pending")}, 64, 120, 5) == (["b"], {})


def test_the_step_that_preceded_a_breach():
    record = {"a": {"created_at": 100.0}, "b": {"created_at": 130.0}, "c": {"created_at": None}}
    assert step_before(record, 129) == "a"
    assert step_before(record, 131) == "b"
    assert step_before(record, 99) is None


@st.composite
def timelines(draw):
    """Any scenario's planned steps (start order) with any state each, and a moment."""
    count = draw(st.integers(1, 6))
    steps = []
    for i in range(count):
        start = draw(st.floats(0, 600, allow_nan=False))
        after = draw(st.sampled_from([None] + [s["step"] for s in steps]))
        when = draw(st.sampled_from(["started", "ended"])) if after else None
        steps.append(step(f"s{i}", start, draw(st.floats(1, 300, allow_nan=False)), after, when))
    steps.sort(key=lambda s: s["start_at"])
    states = {s["step"]: StepState(draw(st.sampled_from(STATES))) for s in steps}
    return steps, states, draw(st.floats(0, 1200, allow_nan=False)), draw(st.floats(0, 1200, allow_nan=False))


@settings(max_examples=400)
@given(timelines())
def test_no_step_starts_early_out_of_order_after_a_removal_or_past_the_span(case):
    steps, states, now, span_end = case
    create, never = steps_due(steps, states, now, span_end, 5)
    by_name = {s["step"]: s for s in steps}
    assert not set(create) & set(never)
    for name in create:
        s = by_name[name]
        assert states[name].state == "pending"
        assert now >= s["start_at"]
        assert now + s["duration_s"] <= span_end + 5
        earlier = [e for e in steps if e["start_at"] <= s["start_at"] and steps.index(e) < steps.index(s)]
        # Every step planned before it has started and has not been removed.
        assert all(states[e["step"]].state in ("active", "paused", "ended") for e in earlier)
        if s["after"] is not None:
            assert states[s["after"]].state != "pending"
            if s["when"] == "ended":
                assert states[s["after"]].state == "ended"
    for name in never:
        assert states[name].state == "pending"
