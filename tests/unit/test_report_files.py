"""The report set: report.json against its schema, the HTML page's sections and plots, the PDF's structure, the files written."""

from __future__ import annotations

import copy
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from jsonschema import Draft202012Validator

from airflow.sdk import ObjectStoragePath
from chaos_engineering.report import REPORT_SCHEMA, ReportSchemaError, build_report, validate_report, write_report
from chaos_engineering.report.plots import MAX_POINTS, downsample
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
    assert len(x) <= MAX_POINTS and np.nanmax(high) == 9.0 and np.nanmin(low) == 0.0
    assert np.isnan(mean).any()  # a bucket with no sample is drawn as a gap, not as zero


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
