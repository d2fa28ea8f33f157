"""A scenario run's report: the steps' timeline, each step's impact and the step a breach followed, in report.json,
report.html, report.pdf and the plots; a single experiment's report unchanged."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaos_engineering.operators.result import verdict
from chaos_engineering.report import ReportSchemaError, analyse_run, build_report, validate_report
from chaos_engineering.report.analysis import series_times
from chaos_engineering.report.document import build_document
from chaos_engineering.report.findings import RULES, SCENARIO_RULES, evaluate
from chaos_engineering.report.html import render_html
from chaos_engineering.report.pdf import layout_pages
from chaos_engineering.report.plots import MetricCharts, downsample
from chaos_engineering.report.scores import business_metrics_of, health_score, impact_score
from chaos_engineering.safety import check
from tests.unit.test_report_files import pdf_structure
from tests.unit.test_report_synthetic import BASE, THRESHOLDS, Shape, plan, synthetic_run

BASELINE_S = 300.0


@dataclass(frozen=True)
class Step:
    """A synthetic step: planned from `start_s` to `end_s` (from the scenario's start); `created_s`/`ended_s` when
    the kill switch saw it created and ended (None: never / not by Chaos Mesh); `shift` added to metrics while it stands."""

    name: str
    experiment: str
    kind: str
    start_s: float
    end_s: float
    created_s: float | None = 0.0
    ended_s: float | None = None
    removal_s: float | None = None
    not_started: str | None = None
    shift: tuple[tuple[str, float], ...] = ()


HELD = (
    Step("cache-down", "cache-failure", "PodChaos", 0.0, 120.0, created_s=0.0, ended_s=120.2, shift=(("p95_latency", 400.0),)),
    Step("worker-cpu", "booking-worker-cpu-stress", "StressChaos", 30.0, 270.0, created_s=30.4, ended_s=270.5, shift=(("p95_latency", 150.0),)),
    Step("database-slow", "database-io-latency", "IOChaos", 150.0, 390.0, created_s=150.3, ended_s=390.1, shift=(("p95_latency", 900.0),)),
)


def scenario_plan(steps: tuple[Step, ...], name: str = "cache-then-database") -> dict:
    """The plan operators/plan_scenario.py returns, as result.json keeps it (without its manifest)."""
    single = plan()
    return {
        "scenario": name,
        "experiment": name,
        "kind": "Scenario",
        "tier": "medium",
        "title": "Cache failure followed by database I/O latency",
        "hypothesis": "Bookings keep succeeding throughout; p95 stays under 3 s.",
        "description": "One cache pod fails; a worker is starved; one database replica's writes slow down.",
        "target_service": ", ".join(dict.fromkeys(s.experiment.split("-")[0] for s in steps)),
        "duration_s": max(s.end_s for s in steps),
        "thresholds": single["thresholds"],
        "dry_run": False,
        "planned_at": single["planned_at"],
        "note": f"scenario {name} (medium)",
        "source": f"include/scenarios/{name}.yaml",
        "blast_radius": {"peak": 2, "max_pods": 2, "problems": []},
        "steps": [
            {
                "step": s.name,
                "experiment": s.experiment,
                "title": f"{s.experiment} as a step",
                "kind": s.kind,
                "actions": ["pod-failure"] if s.kind == "PodChaos" else ["latency"] if s.kind == "IOChaos" else [],
                "target_service": s.experiment.split("-")[0],
                "start_s": s.start_s,
                "end_s": s.end_s,
                "starts": f"{s.start_s:g}s after the scenario's start",
                "sides": [],
                "manifest": {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": s.kind, "metadata": {"name": f"{s.name}-0a1b2c3d", "namespace": "chaos-engineering"}, "spec": {}},
                "digest": f"sha256:{i:064x}",
            }
            for i, s in enumerate(steps)
        ],
    }


def scenario_run(steps: tuple[Step, ...] = HELD, *, breach: tuple[str, float, str | None] | None = None, removal_s: float | None = None, seed: int = 7) -> tuple[dict, pd.DataFrame]:
    """A scenario run and its series, from a held single-experiment run of the scenario's span. `breach` =
    (metric, seconds from the scenario's start, the step the monitor names); `removal_s`: when the run's removal
    confirmed every object gone (default: 4 s after the last step's end)."""
    started = [s for s in steps if s.created_s is not None]
    last_end = max([s.ended_s or s.removal_s or s.end_s for s in started] or [0.0])
    removal_s = last_end + 4.0 if removal_s is None else removal_s
    result, series = synthetic_run(baseline_s=BASELINE_S, fault_s=removal_s, recovery_s=900, seed=seed)
    start = result["fault"]["injected_at"]
    times = series_times(series)
    for step in started:
        end = step.ended_s if step.ended_s is not None else step.removal_s if step.removal_s is not None else removal_s
        standing = (times >= start + step.created_s) & (times < start + end)
        for metric, shift in step.shift:
            series.loc[standing, metric] += shift
    result["experiment"] = scenario_plan(steps)
    result["manifest"] = None
    result["fault"] = {
        "kind": "Scenario",
        "injected_at": start,
        "started_at": start,
        "objects": [{"step": s.name, "kind": s.kind, "name": f"{s.name}-0a1b2c3d", "namespace": "chaos-engineering"} for s in steps if s.created_s == 0.0],
        "digests": {s.name: f"sha256:{i:064x}" for i, s in enumerate(steps)},
    }
    monitor = {
        "status": "completed",
        "state": "ended",
        "checks": int(last_end // 10),
        "at": start + last_end + 0.5,
        "started_at": start,
        "steps": {
            s.name: {
                "object": f"{s.name}-0a1b2c3d",
                "kind": s.kind,
                "planned_start_s": s.start_s,
                "planned_end_s": s.end_s,
                "created_at": None if s.created_s is None else start + s.created_s,
                "ended_at": None if s.ended_s is None else start + s.ended_s,
                "removal_requested_at": None if s.removal_s is None else start + s.removal_s,
                "not_started": s.not_started if s.created_s is None else None,
            }
            for s in steps
        },
    }
    if breach:
        name, after, step = breach
        at = start + after
        value = float(series[name].iloc[int(np.searchsorted(times, at))])
        found = check(name, THRESHOLDS[name], value, BASE[name], at)
        assert found is not None, f"the synthetic breach of {name} at +{after} s does not cross its bound ({value})"
        monitor |= {"status": "breach", "breach": found.as_dict(), "breach_after_step": step, "removal_requested_at": at + 0.3, "removal_error": "",
                    "values": {n: BASE[n] for n in BASE} | {name: value}}
        del monitor["at"]
        result["task_states"]["monitor"] = "failed"
    result["monitor"] = monitor
    result["removal"] = {"removed": [f"{s.name}-0a1b2c3d" for s in started], "removed_at": start + removal_s}
    result["verdict"], result["verdict_reason"] = verdict(result)
    return result, series


BREACH = (
    Step("cache-down", "cache-failure", "PodChaos", 0.0, 120.0, created_s=0.0, removal_s=100.3, shift=(("p95_latency", 400.0),)),
    Step("database-slow", "database-io-latency", "IOChaos", 60.0, 300.0, created_s=60.2, removal_s=100.3, shift=(("error_rate", 1.0),)),
    Step("worker-cpu", "booking-worker-cpu-stress", "StressChaos", 200.0, 320.0, created_s=None, not_started="the run was stopped before it was due"),
)


def pdf_text(document: dict) -> str:
    lines = [t.get_text() for page in layout_pages(document, {}) for t in page.texts]
    return "\n".join(lines)


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def held():
    result, series = scenario_run()
    return build_report(result, THRESHOLDS, series), result, series


@pytest.fixture(scope="module")
def broken():
    result, series = scenario_run(BREACH, breach=("error_rate", 100.0, "database-slow"), removal_s=104.3)
    return build_report(result, THRESHOLDS, series), result, series


def test_a_held_scenario_s_timeline_in_report_json(held):
    files, result, _ = held
    document = files.document
    validate_report(document)
    scenario = document["scenario"]
    assert result["verdict"] == document["verdict"]["value"] == "held"
    assert scenario["name"] == "cache-then-database" and scenario["planned_duration_s"] == 390.0
    assert scenario["start"] == document["fault"]["start"] == "2026-05-28T20:31:40.000+00:00"
    assert [s["step"] for s in scenario["steps"]] == ["cache-down", "worker-cpu", "database-slow"]
    rows = [(s["planned"]["start_s"], s["planned"]["end_s"], s["started"]["offset_s"], s["started"]["delay_s"], s["ended"]["offset_s"], s["stood_s"])
            for s in scenario["steps"]]
    assert [tuple(round(x, 3) for x in row) for row in rows] == [(0.0, 120.0, 0.0, 0.0, 120.2, 120.2), (30.0, 270.0, 30.4, 0.4, 270.5, 240.1),
                                                                 (150.0, 390.0, 150.3, 0.3, 390.1, 239.8)]
    assert [s["end"]["by"] for s in scenario["steps"]] == ["chaos_mesh"] * 3
    assert all(s["removal_requested"] is None and s["not_started"] is None for s in scenario["steps"])
    assert scenario["steps"][2]["object"] == {"kind": "IOChaos", "name": "database-slow-0a1b2c3d", "namespace": "chaos-engineering"}
    assert scenario["steps"][2]["experiment"] == "database-io-latency" and scenario["steps"][2]["actions"] == ["latency"]
    assert scenario["breach"] is None
    # The run's timeline has each step's start and end, in order.
    events = [(e["event"], e["label"]) for e in document["timeline"] if e["event"].startswith("step_")]
    assert events == [("step_started", "Step started: cache-down"), ("step_started", "Step started: worker-cpu"), ("step_ended", "Step ended: cache-down"),
                      ("step_started", "Step started: database-slow"), ("step_ended", "Step ended: worker-cpu"), ("step_ended", "Step ended: database-slow")]
    assert next(e for e in document["timeline"] if e["event"] == "fault_injected")["label"] == "Scenario started"
    assert document["fault"]["object"] == {"kind": "Scenario", "name": "cache-then-database", "namespace": "chaos-engineering", "uid": None}
    assert document["fault"]["ended_detail"] == "every step's duration elapsed"


def test_a_held_scenario_s_timeline_in_html_and_pdf(held):
    files, _, _ = held
    html = files.report_html
    assert html.count('id="scenario"') == 1 and html.index('id="timeline"') < html.index('id="scenario"') < html.index('id="metrics"')
    section = html[html.index('id="scenario"'):html.index('id="metrics"')]
    assert '<td class="n">T+150.0 s to T+390.0 s</td>\n<td class="n">T+150.3 s (0.3 s late)</td><td class="n">T+390.1 s</td><td class="n">–</td><td>239.8 s (Chaos Mesh ended it)</td>' in section
    assert "IOChaos (latency) on database" in section and "chaos-engineering/database-slow-0a1b2c3d" in section
    assert "Steps started<b>3 of 3</b>" in html and 'id="breach-step"' not in html
    text = pdf_text(files.document)
    assert "Scenario steps" in text
    assert "Scenario cache-then-database: 3 of 3 steps started, from 2026-05-28 20:31:40 UTC to 2026-05-28 20:38:14 UTC." in flat(text)
    row = next(line for line in text.splitlines() if line.startswith("worker-cpu ") and "T+30.0 s to T+270.0 s" in line)
    assert flat(row) == "worker-cpu T+30.0 s to T+270.0 s T+30.4 s (0.4 s late) T+270.5 s – 240.1 s Chaos Mesh ended it"
    structure = pdf_structure(files.report_pdf)
    assert structure["pages"] == structure["declared_pages"] and len(structure["images"]) == 6


def test_the_fault_window_spans_the_scenario(held):
    """From the first create to the last step's end (or the run's removal when later): every step inside it."""
    files, result, series = held
    start = result["fault"]["injected_at"]
    run = analyse_run(result, THRESHOLDS, series)
    assert (run.injected_at, run.removed_at) == (start, start + 394.1)  # the removal, 4 s after the last step ended
    assert run.metrics["p95_latency"].windows["fault"].n == 395  # T+0 .. T+394
    # Without the run's removal nor a monitor time, the last step's end closes the window.
    result = copy.deepcopy(result) | {"removal": None}
    del result["monitor"]["at"]
    run = analyse_run(result, THRESHOLDS, series)
    assert run.removed_at == pytest.approx(start + 390.1)
    assert run.metrics["p95_latency"].windows["fault"].n == 391


def test_each_step_s_impact_is_the_worst_while_it_stood(held):
    files, result, series = held
    start = result["fault"]["injected_at"]
    times = series_times(series)
    p95 = series["p95_latency"].to_numpy()
    for step, (since, until, n) in zip(files.document["scenario"]["steps"], [(0.0, 120.2, 121), (30.4, 270.5, 240), (150.3, 390.1, 240)]):
        inside = (times >= start + since) & (times < start + until)
        impact = step["impact"]["p95_latency"]
        assert impact["samples"] == n == inside.sum(), step["step"]
        assert impact["worst"] == p95[inside].max() and impact["baseline"] == 250.0 and impact["bound"] == 3000.0
        assert impact["change"] == pytest.approx(impact["worst"] - 250.0)
        assert impact["headroom_used"] == pytest.approx((impact["worst"] - 250.0) / (3000.0 - 250.0))
        assert step["window"] == {"start": step["started"]["at"], "end": step["end"]["at"]}
        assert set(step["impact"]) == set(THRESHOLDS)
    # cache-down alone, then with the starved worker: 250 + 400 + 150; the database under both: 250 + 900 + 150.
    worst = [s["impact"]["p95_latency"]["worst"] for s in files.document["scenario"]["steps"]]
    assert worst == pytest.approx([800.0, 1300.0, 1300.0], abs=60.0)
    booking = files.document["scenario"]["steps"][0]["impact"]["booking_rate"]
    assert booking["worst"] == series["booking_rate"].to_numpy()[(times >= start) & (times < start + 120.2)].min()  # lower is worse
    html = files.report_html
    assert f"<td>database-slow</td><td>p95_latency</td><td class=\"n\">250</td><td class=\"n\">3000</td>\n    <td class=\"n\">{worst[2]:.4g}</td>" in html
    assert any(flat(line).startswith(f"database-slow p95_latency 250 3000 {worst[2]:.4g} +") for line in pdf_text(files.document).splitlines())


def test_a_breach_on_the_second_step_names_it(broken):
    files, result, _ = broken
    document = files.document
    validate_report(document)
    assert document["verdict"]["value"] == "broken" and document["fault"]["ended_by"] == "breach"
    breach = document["scenario"]["breach"]
    sentence = "The breach of error_rate came 39.8 s after step database-slow started; standing then: cache-down, database-slow."
    assert breach["step"] == "database-slow" and breach["after_step_s"] == pytest.approx(39.8) and breach["named_by"] == "monitor"
    assert breach["sentence"] == sentence and breach["standing"] == ["cache-down", "database-slow"]
    assert [(f["id"], f["rule"]) for f in document["findings"]][:2] == [("F1", "safety-breach"), ("F2", "breach-after-step")]
    finding = document["findings"][1]
    assert finding["detail"] == sentence and finding["evidence"]["step"] == "database-slow" and finding["metric"] == "error_rate"
    advice = next(r["text"] for r in document["recommendations"] if r["findings"] == ["F2"])
    assert advice.startswith("Run step database-slow's experiment (database-io-latency) alone") and "combination with cache-down" in advice
    assert f'<p id="breach-step" class="fail">{sentence}</p>' in files.report_html
    assert sentence in flat(pdf_text(document))
    # Both standing steps ended when the kill switch asked for their removal.
    ends = [(s["end"]["by"], s["end"]["offset_s"]) for s in document["scenario"]["steps"][:2]]
    assert ends == [("removal_request", pytest.approx(100.3)), ("removal_request", pytest.approx(100.3))]


def test_the_scenario_rule_ids():
    assert set(SCENARIO_RULES) == {"breach-after-step", "step-not-started"} and not set(SCENARIO_RULES) & set(RULES)


def test_an_event_without_breach_after_step_is_judged_by_the_times(broken):
    _, result, series = broken
    result = copy.deepcopy(result)
    del result["monitor"]["breach_after_step"]
    breach = analyse_run(result, THRESHOLDS, series).scenario.breach
    assert (breach.step, breach.named_by, round(breach.after_step_s, 1)) == ("database-slow", "times", 39.8)
    result["monitor"]["breach_after_step"] = None  # the monitor says no step had started
    breach = analyse_run(result, THRESHOLDS, series).scenario.breach
    assert breach.step is None and breach.sentence.startswith("The breach of error_rate came before any step had started")


def test_a_step_never_started_reads_so(broken):
    files, _, series = broken
    document = files.document
    step = document["scenario"]["steps"][2]
    assert step["step"] == "worker-cpu" and step["started"] is None and step["end"] is None and step["stood_s"] is None
    assert step["not_started"] == "the run was stopped before it was due" and step["impact"] == {} and step["window"] is None
    assert step["planned"] == {"start_s": 200.0, "end_s": 320.0, "duration_s": 120.0}
    assert step["object"]["name"] == "worker-cpu-0a1b2c3d"  # the planned, deterministic name
    html = files.report_html
    assert '<td class="not_run">not started</td><td class="not_run" colspan="3">the run was stopped before it was due</td>' in html
    assert '<tr><td>worker-cpu</td><td class="not_run" colspan="7">not started: no impact</td></tr>' in html
    assert "Steps started<b>2 of 3</b>" in html
    lines = [flat(line) for line in pdf_text(document).splitlines()]
    assert "worker-cpu T+200.0 s to T+320.0 s not started – – – the run was stopped" in lines
    assert "worker-cpu not started: no impact" in lines
    (finding,) = [f for f in document["findings"] if f["rule"] == "step-not-started"]
    assert finding["severity"] == "info" and finding["detail"] == "Step worker-cpu (due 200 s after the scenario's start) was never created: the run was stopped before it was due."
    assert not any(e["label"].endswith("worker-cpu") for e in document["timeline"])


def test_a_dry_run_scenario_shows_its_plan_and_nothing_started():
    result, _ = scenario_run()
    result |= {"fault": None, "monitor": None, "removal": None, "preflight": None, "recovery": dict.fromkeys(result["recovery"])}
    result["experiment"]["dry_run"] = True
    result["verdict"], result["verdict_reason"] = verdict(result)
    files = build_report(result, THRESHOLDS, None)
    validate_report(files.document)
    steps = files.document["scenario"]["steps"]
    assert [s["not_started"] for s in steps] == ["dry run: nothing was injected"] * 3
    assert files.document["findings"] == [] and files.document["scenario"]["start"] is None
    assert "T+150.0 s to T+390.0 s" in files.report_html


def test_a_step_the_kill_switch_never_reported_started_with_the_scenario_if_inject_created_it(held):
    _, result, series = held
    result = copy.deepcopy(result)
    result["monitor"] = None
    result["task_states"]["monitor"] = "failed"
    run = analyse_run(result, THRESHOLDS, series)
    created = [(s.name, s.created_at, s.not_started) for s in run.scenario.steps]
    start = result["fault"]["injected_at"]
    assert created == [("cache-down", start, None), ("worker-cpu", None, "the kill switch recorded no start of it"),
                       ("database-slow", None, "the kill switch recorded no start of it")]
    assert run.scenario.steps[0].ended_by == "run_removal" and run.scenario.steps[0].end == result["removal"]["removed_at"]


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        (lambda d: d["scenario"]["steps"][0]["end"].update(by="gremlins"), "scenario/steps/0/end/by"),
        (lambda d: d["scenario"]["steps"][0]["started"].update(offset_s="soon"), "scenario/steps/0/started/offset_s"),
        (lambda d: d["scenario"]["steps"][1].update(colour="red"), "scenario/steps/1"),
        (lambda d: d["scenario"]["steps"][2]["impact"]["p95_latency"].update(samples=-1), "scenario/steps/2/impact/p95_latency/samples"),
        (lambda d: d["scenario"].pop("steps"), "'steps' is a required property"),
    ],
    ids=["unknown-ending", "offset-not-a-number", "unknown-key", "negative-samples", "no-steps"],
)
def test_a_broken_scenario_section_does_not_validate(held, damage, field):
    document = copy.deepcopy(held[0].document)
    damage(document)
    with pytest.raises(ReportSchemaError, match=re.escape(field)):
        validate_report(document)


def test_a_single_experiment_s_report_has_no_scenario_section():
    result, series = synthetic_run({"error_rate": Shape(during=1.0, ramp_s=50.0, lingers_s=40.0)}, breach=("error_rate", 75.0), noise={"error_rate": 0.0})
    files = build_report(result, THRESHOLDS, series)
    validate_report(files.document)
    assert "scenario" not in files.document and analyse_run(result, THRESHOLDS, series).scenario is None
    assert 'id="scenario"' not in files.report_html and 'id="breach-step"' not in files.report_html and "Steps started" not in files.report_html
    assert "Scenario steps" not in pdf_text(files.document)
    assert {f["rule"] for f in files.document["findings"]} == {"safety-breach", "late-detection"}
    assert not any(e["event"].startswith("step_") for e in files.document["timeline"])
    assert all(b"/Height 320" in image for image in pdf_structure(files.report_pdf)["images"])


def scenario_charts(document: dict, series: pd.DataFrame) -> MetricCharts:
    times = series_times(series)
    return MetricCharts(document, times, {m["name"]: downsample(times, series[m["name"]].to_numpy(dtype=float)) for m in document["metrics"]})


def test_each_step_is_marked_on_the_plots(broken):
    files, _, series = broken
    charts = scenario_charts(files.document, series)
    strip = charts.strip
    assert strip is not None and strip.get_shared_x_axes().joined(strip, charts.axes)
    labels = [t.get_text() for t in strip.texts]
    assert labels == ["cache-down", "database-slow", "worker-cpu (not started)"]
    renderer = charts.canvas.get_renderer()
    for text in strip.texts:  # every label inside the image, in its own lane
        box = text.get_window_extent(renderer)
        assert charts.figure.bbox.x0 <= box.x0 and box.x1 <= charts.figure.bbox.x1
    lanes = sorted(round(t.get_position()[1]) for t in strip.texts)
    assert lanes == [0, 1, 2]
    # A planned outline per step, a filled bar per step that stood, a start line per started step on the plot.
    outlines = [p for p in strip.patches if not p.get_fill()]
    bars = [p for p in strip.patches if p.get_fill()]
    assert len(outlines) == 3 and len(bars) == 2
    start = files.document["scenario"]["steps"][1]["started"]["at"]
    assert bars[1].get_x() * 86400 == pytest.approx(pd.Timestamp(start).timestamp(), abs=1e-3)
    starts = [line for line in charts.axes.lines if line.get_zorder() < 1]
    assert len(starts) == 2
    legend = strip.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["planned", "stood"]
    assert legend.get_window_extent(renderer).x1 <= charts.figure.bbox.x1


def test_each_scenario_chart_is_what_a_full_draw_of_it_shows(broken):
    files, _, series = broken
    charts = scenario_charts(files.document, series)
    for metric in files.document["metrics"]:
        chart = charts.chart(metric)
        charts.canvas.draw()
        np.testing.assert_array_equal(chart.pixels, np.asarray(charts.canvas.buffer_rgba())[..., :3], err_msg=metric["name"])
    assert chart.pixels.shape[0] > 320  # the strip is added below a plot as tall as a single experiment's
    assert charts.axes.bbox.height == pytest.approx(320 * (0.9 - 0.17))


step_times = st.tuples(
    st.floats(-400.0, 1500.0),  # created, from the scenario's start (the series runs from -300 to 1300)
    st.floats(0.0, 600.0),  # stood for
    st.sampled_from(["ended", "removal", "run", "never"]),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(step_times, min_size=1, max_size=4), st.booleans())
def test_any_steps_give_a_valid_report_whose_step_windows_lie_in_the_series(windows, removal_recorded):
    steps = tuple(
        Step(f"step-{i}", "cache-failure", "PodChaos", max(created, 0.0), max(created, 0.0) + stood,
             created_s=None if how == "never" else created, ended_s=created + stood if how == "ended" else None,
             removal_s=created + stood if how == "removal" else None, not_started="the run was stopped before it was due" if how == "never" else None)
        for i, (created, stood, how) in enumerate(windows)
    )
    result, series = scenario_run(steps)
    series = series.iloc[: 300 + 1300]  # ends 1300 s after the scenario's start, whatever the steps
    if not removal_recorded:
        result["removal"] = None
    files = build_report_document(result, series)
    validate_report(files)
    first, last = pd.Timestamp(files["series"]["start"]), pd.Timestamp(files["series"]["end"])
    for step, (created, _, how) in zip(files["scenario"]["steps"], windows):
        assert (step["started"] is None) == (how == "never") and (step["impact"] == {}) == (how == "never")
        if step["window"] is None:
            continue
        low, high = pd.Timestamp(step["window"]["start"]), pd.Timestamp(step["window"]["end"])
        assert first <= low <= high <= last
        assert low >= pd.Timestamp(step["started"]["at"]) and (step["end"]["at"] is None or high <= pd.Timestamp(step["end"]["at"]))
        assert all(i["samples"] <= (high - low).total_seconds() + 1 for i in step["impact"].values())
    run = analyse_run(result, THRESHOLDS, series)
    ends = [s.end for s in run.scenario.steps if s.end is not None]
    assert run.removed_at is None or all(end <= run.removed_at for end in ends)


def build_report_document(result: dict, series: pd.DataFrame) -> dict:
    """report.json's content, its HTML page checked on the way (the plots and the PDF are left out: they cost a
    second each)."""
    run = analyse_run(result, THRESHOLDS, series)
    impact = impact_score(run, business_metrics_of(run, None))
    document = build_document(result, run, evaluate(run), impact, health_score(run, series), series)
    assert 'id="scenario"' in render_html(document, {})
    return document


@settings(max_examples=12, deadline=None)
@given(st.lists(st.tuples(st.floats(-600.0, 2500.0), st.floats(0.0, 3000.0), st.booleans()), min_size=1, max_size=4))
def test_every_step_label_stays_inside_the_chart(windows):
    """Steps before, across or after the series: each lane's label is drawn inside the strip, clear of the legends."""
    steps = tuple(
        Step(f"a-rather-long-step-name-{i}", "cache-failure", "PodChaos", max(created, 0.0), max(created, 0.0) + stood,
             created_s=created if started else None, ended_s=created + stood if started else None, not_started=None if started else "the run was stopped")
        for i, (created, stood, started) in enumerate(windows)
    )
    result, series = scenario_run(steps)
    series = series.iloc[: 300 + 1300]
    document = build_report_document(result, series)
    charts = scenario_charts(document, series)
    frame, renderer = charts.strip.bbox, charts.canvas.get_renderer()
    assert len(charts.strip.texts) == len(steps)
    for text in charts.strip.texts:
        box = text.get_window_extent(renderer)
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, text.get_text()
