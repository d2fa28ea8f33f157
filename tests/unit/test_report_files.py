"""The report set: report.json against its schema, the HTML page's sections and plots, the PDF's structure, the files written."""

from __future__ import annotations

import copy
import io
import json
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from markupsafe import escape
from matplotlib.backends.backend_agg import FigureCanvasAgg

from airflow.sdk import ObjectStoragePath
from chaos_engineering.report import REPORT_SCHEMA, ReportSchemaError, build_report, validate_report, write_report
from chaos_engineering.report import plots
from chaos_engineering.report.html import fault_duration
from chaos_engineering.report.pdf import CORE_FONTS, MARGIN_IN, PAGE_IN, UNICODE_FONTS, fonts_for, layout_pages
from chaos_engineering.report.analysis import series_times
from chaos_engineering.report.plots import COLUMNS, MetricCharts, downsample
from tests.unit.test_report_synthetic import THRESHOLDS, Shape, base_result, plan, synthetic_run

SECTIONS = ("summary", "timeline", "metrics", "analysis", "findings", "recommendations", "approvals")


@pytest.fixture(scope="module")
def breach_report():
    result, series = synthetic_run({"error_rate": Shape(during=1.0, ramp_s=50.0, lingers_s=40.0)}, breach=("error_rate", 75.0), noise={"error_rate": 0.0})
    return build_report(result, THRESHOLDS, series), series


def no_fault_runs():
    rejected = base_result(
        approvals=[{"chosen_options": ["Reject"], "params_input": {}, "responded_at": "2026-05-28 20:16:40+00:00", "responded_by_user": {"id": "sre-oncall", "name": "sre-oncall"}, "task_id": "approve_sre"}],
        window=None,
        task_states={"plan": "success", "approve_sre": "success", "window_guard": "skipped", "inject": "skipped"},
    )
    dry_run = base_result(experiment=plan(dry_run=True), approvals=[], window=None, task_states={"plan": "success", "dry_run_gate": "skipped", "inject": "skipped"})
    plan_failed = base_result(experiment=None, manifest=None, approvals=[], window=None, recovery={"immediate": None, "short_term": None, "business": None}, task_states={"plan": "failed", "inject": "upstream_failed"})
    refused = base_result(
        window={
            "allowed": False,
            "reason": "business hours: no high-risk run",
            "override_used": False,
            "next_allowed": "2026-05-29T04:00:00+00:00",
            "checked_at": "2026-05-28T20:20:00+00:00",
            "manual": True,
            "planned_injection": None,
        },
        task_states={"plan": "success", "approve_sre": "success", "window_guard": "failed", "inject": "upstream_failed"},
    )
    return {"rejected": rejected, "dry_run": dry_run, "plan_failed": plan_failed, "window_refused": refused}


def pdf_structure(pdf: bytes) -> dict:
    """What a reader of the file needs, checked by hand: header, trailer, a cross-reference table
    whose every offset points at its object, the page tree, and the embedded images."""
    assert pdf.startswith(b"%PDF-1.") and pdf.rstrip().endswith(b"%%EOF")
    xref_at = int(re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", pdf).group(1))
    assert pdf[xref_at:].startswith(b"xref")
    first, count = map(int, re.match(rb"xref\s+(\d+) (\d+)\s+", pdf[xref_at:]).groups())
    entries = re.findall(rb"(\d{10}) (\d{5}) ([nf])", pdf[xref_at:])[:count]
    for number, (offset, _, kind) in enumerate(entries, start=first):
        if kind == b"n":
            assert re.match(rb"%d 0 obj" % number, pdf[int(offset):]), f"object {number} is not at its offset"
    pages = re.findall(rb"/Type\s*/Page\b(?!s)", pdf)
    (declared,) = map(int, re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", pdf, re.S) or re.findall(rb"/Count\s+(\d+)", pdf)[:1])
    images = re.findall(rb"<<[^>]*?/Subtype\s*/Image[^>]*?>>", pdf, re.S)
    return {"pages": len(pages), "declared_pages": declared, "images": images}


def test_the_schema_is_valid_draft_2020_12():
    Draft202012Validator.check_schema(REPORT_SCHEMA)
    assert REPORT_SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_a_built_report_validates_and_is_its_json(breach_report):
    files, _ = breach_report
    validate_report(files.document)
    assert json.loads(files.report_json) == files.document
    doc = files.document
    assert doc["schema_version"] == 1 and doc["verdict"]["value"] == "broken" and doc["verdict"]["label"] == "hypothesis broken"
    assert doc["tier"] == "medium" and doc["hypothesis"].startswith("Bookings keep flowing")
    assert doc["fault"]["ended_by"] == "breach" and doc["fault"]["duration_s"] == pytest.approx(79.0)
    (breach,) = doc["breaches"]
    assert breach["threshold"] == "error_rate" and breach["time_to_detect_s"] == pytest.approx(49.0) and breach["time_to_remove_s"] == pytest.approx(0.3)
    assert [s["stage"] for s in doc["recovery"]] == ["immediate", "short_term", "business"]
    assert [(s["deadline_s"], s["time_to_recover_s"], s["met_deadline"]) for s in doc["recovery"]] == [(60.0, 5.0, True), (300.0, 60.0, True), (900.0, 120.0, True)]
    assert [a["by"]["name"] for a in doc["approvals"]] == ["sre-oncall"] and doc["approvals"][0]["at"].startswith("2026-05-28T20:16:40")
    assert {c["check"] for c in doc["safety_checks"]} >= {"approval (sre)", "window guard", "pre-flight health", "experiment lock", "kill switch", "recovery (business)"}
    kill = next(c for c in doc["safety_checks"] if c["check"] == "kill switch")
    assert kill["decision"] == "fail" and "error_rate" in kill["readings"]
    assert [f["rule"] for f in doc["findings"]] == ["safety-breach", "late-detection"]
    assert [r["findings"] for r in doc["recommendations"]] == [["F1"], ["F2"]]


def test_the_timeline_is_in_order_and_marks_the_run(breach_report):
    files, _ = breach_report
    timeline = files.document["timeline"]
    events = [e["event"] for e in timeline]
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)
    assert [e for e in events if e in ("approval", "window_guard", "preflight", "fault_injected", "breach", "kill", "fault_removed")] == ["approval", "window_guard", "preflight", "fault_injected", "breach", "kill", "fault_removed"]
    assert {"recovery_immediate", "recovery_short_term", "recovery_business"} <= set(events)
    assert next(e for e in timeline if e["event"] == "breach")["offset_s"] == pytest.approx(75.0)


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        (lambda d: d.pop("verdict"), "'verdict' is a required property"),
        (lambda d: d["verdict"].update(value="maybe"), "verdict/value"),
        (lambda d: d["impact_score"].update(value=140), "impact_score/value"),
        (lambda d: d["metrics"][0]["tests"]["fault"].update(judgement="went up"), "metrics/0/tests/fault/judgement"),
        (lambda d: d["breaches"][0].update(at="yesterday"), "breaches/0/at"),
    ],
    ids=["missing-verdict", "unknown-verdict", "score-over-100", "unknown-judgement", "not-a-time"],
)
def test_a_broken_report_does_not_validate(breach_report, damage, field):
    document = copy.deepcopy(breach_report[0].document)
    damage(document)
    with pytest.raises(ReportSchemaError, match=re.escape(field)):
        validate_report(document)


def test_the_html_page_has_every_section_and_a_plot_per_metric(breach_report):
    files, _ = breach_report
    html = files.report_html
    for section in SECTIONS:
        assert html.count(f'id="{section}"') == 1, section
    assert html.count("<img") == len(THRESHOLDS) == 6
    assert html.count('src="data:image/png;base64,') == 6
    # Self-contained: nothing is fetched from anywhere.
    assert not re.search(r'(src|href)="(?!data:)', html) and "<script" not in html and "<link" not in html
    assert "hypothesis broken" in html and "Breach: error_rate" in html and "Kill: removal requested" in html and "Recovery: business" in html
    assert "late-detection" in html and "49.0 s" in html


def test_the_pdf_parses_and_has_a_plot_per_metric(breach_report):
    files, _ = breach_report
    structure = pdf_structure(files.report_pdf)
    assert structure["pages"] == structure["declared_pages"] >= 3
    assert len(structure["images"]) == 6
    assert all(b"/Width 1000" in image and b"/Height 320" in image for image in structure["images"])
    assert len(files.report_pdf) > 100_000
    assert b"/Title (Chaos report: Kill one booking-api pod)" in files.report_pdf


def test_plots_are_downsampled_without_losing_a_spike():
    times = np.arange(100_000, dtype=float)
    values = np.zeros(100_000)
    values[54_321] = 9.0
    values[70_000:70_500] = np.nan
    x, mean, low, high = downsample(times, values)
    assert len(x) == COLUMNS and np.nanmax(high) == 9.0 and np.nanmin(low) == 0.0
    assert np.isnan(mean).any()  # a bucket with no sample is drawn as a gap, not as zero


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6) | st.just(float("nan")), min_size=1, max_size=3000),
    st.integers(3, 400),
    st.floats(0.5, 30.0),
)
def test_every_bucket_keeps_its_min_and_max(samples, columns, step):
    """Whatever the series, each bucket drawn holds the extreme samples of the time it covers."""
    values = np.array(samples)
    times = 1_780_000_000.0 + step * np.arange(values.size)
    x, mean, low, high = downsample(times, values, columns)
    if values.size <= columns:
        assert x is times and low is values and high is values
        return
    assert len(x) == columns and np.all(np.diff(x) > 0)
    bucket = np.searchsorted(x, times, side="right") - 1  # the bucket each sample falls in
    for b in range(len(x)):
        inside = values[bucket == b]
        finite = inside[np.isfinite(inside)]
        if finite.size:
            assert low[b] == finite.min() and high[b] == finite.max()
        else:
            assert np.isnan(low[b]) and np.isnan(high[b])


def page_texts(pages) -> list:
    return [t for page in pages for t in page.texts]


def test_pdf_tables_wrap_long_cells_inside_the_page(breach_report):
    """A cell longer than its column continues on the row's next line: all of it printed, none past the margin."""
    files, _ = breach_report
    document = copy.deepcopy(files.document)
    detail = "removed from outside the run by the emergency stop of a-very-long-operator-name@example.org: " + "db on fire " * 8
    document["timeline"][0]["detail"] = detail
    pages = layout_pages(document, {})
    lines = [t.get_text() for t in page_texts(pages)]
    first = next(i for i, line in enumerate(lines) if "Planned" in line)
    column = [line[23 + 1 + 11 + 1 + 24 + 1:] for line in lines[first:first + 4]]  # the detail column of the row's lines
    assert " ".join(" ".join(column).split()) == " ".join(detail.split())
    assert all(not line.startswith(" ") for line in column[:3])  # the text continues in its own column
    right = (PAGE_IN[0] - MARGIN_IN) * 72  # points
    with matplotlib.rc_context(CORE_FONTS.rc):
        for page in pages:
            FigureCanvasAgg(page)
            renderer = page.canvas.get_renderer()
            for text in page.texts:
                extent = text.get_window_extent(renderer)
                assert extent.x1 / page.dpi * 72 <= right, text.get_text()


def test_steps_never_reached_are_neutral():
    """A run refused by the window guard: the later steps are "not reached" in grey, never a red fail."""
    files = build_report(no_fault_runs()["window_refused"], THRESHOLDS, None)
    checks = {c["check"]: c["decision"] for c in files.document["safety_checks"]}
    assert checks["window guard"] == "fail"
    assert checks["pre-flight health"] == checks["experiment lock"] == checks["kill switch"] == "not_run"
    html = files.report_html
    assert '<td>pre-flight health</td><td class="not_run">not reached</td>' in html
    assert '<td>kill switch</td><td class="not_run">not reached</td>' in html
    assert ".not_run { color: #5f6368; }" in html
    lines = {t.get_text(): t.get_color() for t in page_texts(layout_pages(files.document, {}))}
    reached = next(line for line in lines if line.startswith("kill switch: "))
    assert reached.startswith("kill switch: NOT REACHED - no record (task not run)") and lines[reached] == "#5f6368"
    assert lines[next(line for line in lines if line.startswith("window guard: "))] == "#d93025"


def test_a_stage_never_reached_reads_so():
    result, series = synthetic_run()
    result["recovery"]["business"] = None
    files = build_report(result, THRESHOLDS, series)
    assert '<td>business</td><td class="not_run">not reached</td>' in files.report_html
    assert any(t.get_text().startswith("business   not reached") for t in page_texts(layout_pages(files.document, {})))


@pytest.mark.parametrize(("monitor", "ended_by", "sentence"), [
    ({"status": "completed", "checks": 12}, "duration", "120.0 s of 120.0 s planned (as planned); ended by its duration running out (Chaos Mesh's duration elapsed)"),
    ({"status": "halted", "checks": 4, "message": "chaos halted by alice at 2026-05-28T20:30:00+00:00: db on fire; this monitor removed the fault"},
     "emergency_stop", "120.0 s of 120.0 s planned (as planned); ended by an emergency stop (chaos halted by alice at 2026-05-28T20:30:00+00:00: "
                       "db on fire; this monitor removed the fault)"),
    ({"status": "gone", "checks": 4, "removed_by": {"by": "watchdog", "detail": "the dead-man watchdog: heartbeat expired (35 s since its last renewal, grace 20 s)"},
      "message": "the fault was removed by the dead-man watchdog: heartbeat expired (35 s since its last renewal, grace 20 s)"},
     "watchdog", "120.0 s of 120.0 s planned (as planned); ended by the dead-man watchdog (the fault was removed by the dead-man watchdog: "
                 "heartbeat expired (35 s since its last renewal, grace 20 s))"),
    ({"status": "gone", "checks": 4, "message": "the fault was removed from outside the run"}, "outside",
     "120.0 s of 120.0 s planned (as planned); ended by a removal from outside the run (the fault was removed from outside the run)"),
], ids=["duration", "emergency-stop", "watchdog", "someone-else"])
def test_the_fault_shows_planned_and_actual_duration_and_why(monitor, ended_by, sentence):
    result, series = synthetic_run()
    result["monitor"] = monitor | {"at": result["fault"]["injected_at"] + 40}
    files = build_report(result, THRESHOLDS, series)
    fault = files.document["fault"]
    assert fault["ended_by"] == ended_by
    assert f'<p id="fault-duration"><b>Fault duration:</b> {escape(sentence)}.</p>' in files.report_html
    pdf_text = " ".join(" ".join(t.get_text() for t in page_texts(layout_pages(files.document, {}))).split())
    assert f"Duration: {sentence}." in pdf_text


def test_a_fault_cut_short_says_by_how_much(breach_report):
    files, _ = breach_report
    assert fault_duration(files.document["fault"]) == (
        "79.0 s of 120.0 s planned (41.0 s early); ended by a safety breach (removed on a breach: "
        f"{files.document['breaches'][0]['message']})"
    )


def metric_charts(document: dict, series: pd.DataFrame) -> MetricCharts:
    times = series_times(series)
    return MetricCharts(document, times, {m["name"]: downsample(times, series[m["name"]].to_numpy(dtype=float)) for m in document["metrics"]})


def test_every_legend_ends_inside_its_chart(breach_report):
    files, series = breach_report
    document = copy.deepcopy(files.document)
    document["metrics"][0]["unit"] = "confirmed bookings per second across every region"
    charts = metric_charts(document, series)
    figure, axes = charts.figure, charts.axes
    for metric in document["metrics"]:
        charts.chart(metric)
        legend = axes.get_legend()
        box, frame = legend.get_window_extent(figure.canvas.get_renderer()), figure.bbox
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, metric["name"]
        assert box.x0 >= axes.bbox.x1  # beside the plot, not over it
        assert max(len(line) for t in legend.get_texts() for line in t.get_text().splitlines()) <= plots.LEGEND_CHARS


def test_each_chart_is_what_a_full_draw_of_it_shows(breach_report):
    """The shared background plus a chart's own artists: pixel for pixel what drawing the whole figure gives
    (so no mark, axis, title or legend is lost or drawn in another order)."""
    files, series = breach_report
    charts = metric_charts(files.document, series)
    for metric in files.document["metrics"]:
        chart = charts.chart(metric)
        assert charts.title.get_text().startswith(metric["name"])
        charts.canvas.draw()
        np.testing.assert_array_equal(chart.pixels, np.asarray(charts.canvas.buffer_rgba())[..., :3], err_msg=metric["name"])


def test_a_chart_shows_the_fault_the_breach_and_every_stage(breach_report):
    files, series = breach_report
    charts = metric_charts(files.document, series)
    charts.chart(next(m for m in files.document["metrics"] if m["name"] == "error_rate"))
    labels = [t.get_text() for t in charts.axes.get_legend().get_texts()]
    assert labels[:2] == ["min-max per pixel column", "error_rate"] and labels[-2:] == ["fault", "breach"]
    assert any(label.startswith("baseline ") for label in labels) and any(label.startswith("bound ") for label in labels)
    assert [a.get_text() for a in charts.overlay if hasattr(a, "get_text")] == ["immediate", "short_term", "business"]
    assert charts.axes.get_ylim()[1] >= files.document["breaches"][0]["value"]  # the y range is this metric's own


def test_the_metrics_file_is_the_raw_series(breach_report):
    files, series = breach_report
    assert files.metrics_name == "metrics.csv"
    back = pd.read_csv(io.BytesIO(files.metrics), index_col="timestamp", parse_dates=True)
    assert back.shape == series.shape and list(back.columns) == list(series.columns)
    assert back.index[0] == series.index[0]
    pd.testing.assert_frame_equal(back.reset_index(drop=True), series.reset_index(drop=True), check_exact=False, rtol=1e-12)


@pytest.mark.parametrize("name", list(no_fault_runs()))
def test_runs_without_a_fault_still_make_a_readable_report(name):
    result = no_fault_runs()[name]
    files = build_report(result, THRESHOLDS, None)
    doc = files.document
    validate_report(doc)
    assert doc["fault"] is None and doc["breaches"] == [] and doc["recovery"] == []
    assert doc["impact_score"]["value"] is None and doc["system_health_score"]["value"] is None
    assert doc["verdict"]["value"] == result["verdict"] == ("dry_run" if name == "dry_run" else "aborted")
    assert [f["rule"] for f in doc["findings"]] == ([] if name == "dry_run" else ["run-aborted"])
    for section in SECTIONS:
        assert f'id="{section}"' in files.report_html
    assert "<img" not in files.report_html
    assert {"rejected": "rejected by", "dry_run": "dry run:", "plan_failed": "the plan step failed", "window_refused": "business hours: no high-risk run"}[name] in files.report_html
    structure = pdf_structure(files.report_pdf)
    assert structure["pages"] >= 1 and structure["images"] == []
    assert files.metrics.decode().strip() == "timestamp"


def test_the_tier_of_a_run_whose_plan_failed_comes_from_its_dag():
    files = build_report(no_fault_runs()["plan_failed"], THRESHOLDS, None)
    assert files.document["experiment"] is None and files.document["tier"] == "medium"
    assert "plan step failed" in files.document["verdict"]["reason"]


def test_write_report_to_a_local_folder(breach_report, tmp_path):
    files, _ = breach_report
    written = write_report(tmp_path / "chaos_medium_risk" / "2026" / "05" / "run-1", files)
    assert [p.name for p in written] == ["metrics.csv", "report.pdf", "report.html", "report.json"]
    folder = tmp_path / "chaos_medium_risk" / "2026" / "05" / "run-1"
    assert json.loads((folder / "report.json").read_text()) == files.document
    assert (folder / "report.pdf").read_bytes() == files.report_pdf


def test_write_report_through_object_storage(breach_report, tmp_path):
    files, _ = breach_report
    folder = ObjectStoragePath(f"file://{tmp_path}/reports/", conn_id=None) / "chaos_medium_risk" / "run-1"
    write_report(folder, files)
    assert (folder / "report.html").read_text() == files.report_html
    assert sorted(p.name for p in (tmp_path / "reports" / "chaos_medium_risk" / "run-1").iterdir()) == ["metrics.csv", "report.html", "report.json", "report.pdf"]


def test_a_drill_report_carries_rto_and_rpo():
    """A DR drill's measurement reaches report.json (schema-checked), the HTML and the PDF; other runs have none."""
    result, series = synthetic_run({})
    at = result["fault"]["injected_at"]
    result["drill"] = {
        "status": "missed",
        "reasons": ["RPO 1.40 s (7 acknowledged canaries lost) over the 1 s target"],
        "injected_at": at,
        "rto_s": 2.25,
        "rpo_s": 1.4,
        "targets": {"rto_s": 30.0, "rpo_s": 1.0},
        "outage": {"started_at": at + 0.1, "first_failure_at": at + 0.2, "recovered_at": at + 2.35, "failed_writes": 10},
        "primary_before": "database-0",
        "primary_after": "database-1",
        "canaries": {"interval_s": 0.2, "sent": 120, "acknowledged": 110, "failed": 10, "lost": 7, "unverified": 0, "lost_ids": [41, 42], "first_at": at - 6, "last_at": at + 14},
    }
    from chaos_engineering.operators.result import verdict

    assert result["verdict"] == "held"  # every stage recovered: only the drill's targets fail it
    result["verdict"], result["verdict_reason"] = verdict(result)
    assert result["verdict"] == "broken" and "RPO 1.40 s" in result["verdict_reason"]
    files = build_report(result, THRESHOLDS, series)
    document = json.loads(files.report_json)
    validate_report(document)
    drill = document["disaster_recovery"]
    assert (drill["rto_s"], drill["rpo_s"], drill["canaries"]["lost"], drill["status"]) == (2.25, 1.4, 7, "missed")
    assert drill["outage"]["recovered_at"].endswith("+00:00")
    assert files.report_html.count('id="disaster-recovery"') == 1
    assert "2.2 s" in files.report_html and "7 acknowledged canaries lost" in files.report_html and "database-0 → database-1" in files.report_html
    assert pdf_structure(files.report_pdf)["pages"] >= 3
    del result["drill"]
    assert json.loads(build_report(result, THRESHOLDS, series).report_json)["disaster_recovery"] is None


def test_a_document_in_windows_1252_keeps_the_core_fonts():
    result, series = synthetic_run({})
    result["experiment"]["hypothesis"] = "Zahlungsdienst fällt aus — Buchungen laufen weiter"
    files = build_report(result, THRESHOLDS, series)
    assert fonts_for(files.document) is CORE_FONTS
    with matplotlib.rc_context({"pdf.compression": 0}):  # the page streams readable as they are
        pdf = build_report(result, THRESHOLDS, series).report_pdf
    assert set(re.findall(rb"/BaseFont\s*/(\S+)", pdf)) <= {b"Helvetica", b"Helvetica-Bold", b"Courier", b"Courier-Bold"}
    assert b"FontFile2" not in pdf
    assert "(Hypothesis: Zahlungsdienst fällt aus — Buchungen laufen weiter)".encode("cp1252") in pdf


def test_a_document_beyond_windows_1252_embeds_unicode_fonts_and_keeps_every_character():
    """Nothing a user wrote becomes "?": the text is in embedded TrueType subsets whose ToUnicode maps give back
    every character (no PDF text extractor in the venv: the maps are read directly)."""
    result, series = synthetic_run({})
    hypothesis = "Zahlungsdienst fällt aus — 支付"
    result["experiment"]["hypothesis"] = hypothesis
    files = build_report(result, THRESHOLDS, series)
    assert fonts_for(files.document) is UNICODE_FONTS
    with matplotlib.rc_context({"pdf.compression": 0}):
        pdf = build_report(result, THRESHOLDS, series).report_pdf
    fonts = {name.split(b"+")[-1] for name in re.findall(rb"/BaseFont\s*/(\S+)", pdf)}
    assert {b"DejaVuSans", b"DejaVuSansMono"} <= fonts and b"Helvetica" not in fonts and b"FontFile2" in pdf
    mapped = {chr(int(code, 16)) for code in re.findall(rb"<([0-9a-f]{4})>", b"".join(re.findall(rb"beginbf(?:char|range)(.*?)endbf", pdf, re.S)))}
    assert set(hypothesis) - {" "} <= mapped
    assert b"Hypothesis: Zahlungsdienst f?llt" not in pdf and "fällt".encode("cp1252") not in pdf


def test_a_stage_not_observed_in_time_is_said_so_in_every_form():
    result, series = synthetic_run(recovery={"immediate": ("unobserved", 312.0)})
    files = build_report(result, THRESHOLDS, series)
    document = json.loads(files.report_json)
    validate_report(document)

    immediate = next(s for s in document["recovery"] if s["stage"] == "immediate")
    assert (immediate["status"], immediate["met_deadline"]) == ("unobserved", False)
    assert document["verdict"]["value"] == "aborted"
    assert "not observed in time" in files.report_html
    assert "recovery-unobserved" in [f["rule"] for f in document["findings"]]
