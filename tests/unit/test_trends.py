"""Monthly trends from generated run folders: the aggregates are the ones computed by hand."""

from __future__ import annotations

import json

import pytest

from airflow.sdk import ObjectStoragePath
from chaos_engineering.operators.trends import month_of
from chaos_engineering.trends import monthly_trends, previous_month, write_trends


def _report(tier, service, verdict, ttd=(), ttr=(), checks=()):
    return {
        "experiment": {"name": "x", "tier": tier, "target_service": service},
        "verdict": {"value": verdict, "label": verdict, "reason": ""},
        "breaches": [{"threshold": "error_rate", "time_to_detect_s": t} for t in ttd],
        "recovery": [{"stage": f"s{i}", "status": "recovered", "time_to_recover_s": t} for i, t in enumerate(ttr)],
        "safety_checks": [{"check": "preflight", "decision": d} for d in checks],
    }


def _put(base, dag_id, year, month, run_id, name, doc):
    folder = base / dag_id / f"{year:04d}" / f"{month:02d}" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(doc if isinstance(doc, str) else json.dumps(doc))


@pytest.fixture
def base(tmp_path):
    root = tmp_path / "reports"
    # May 2026
    _put(root, "chaos_low_risk", 2026, 5, "r1", "report.json", _report("low", "cache", "held", ttr=(10, 20), checks=("pass",)))
    _put(root, "chaos_low_risk", 2026, 5, "r2", "report.json", _report("low", "cache", "broken", ttd=(4, 6), ttr=(30,), checks=("fail",)))
    _put(root, "chaos_medium_risk", 2026, 5, "r3", "report.json", _report("medium", "payments", "aborted"))
    # no report (its report step failed): result.json instead
    _put(root, "chaos_medium_risk", 2026, 5, "r4", "result.json", {
        "experiment": {"tier": "medium", "target_service": "payments"}, "verdict": "held", "monitor": {"status": "completed"},
        "recovery": {"pods": {"status": "recovered", "time_to_recover_s": 12}, "slo": None},
    })
    _put(root, "chaos_medium_risk", 2026, 5, "unreadable", "report.json", "{not json")  # skipped
    _put(root, "chaos_low_risk", 2026, 6, "june", "report.json", _report("low", "cache", "broken", ttd=(99,)))  # other month
    # April 2026
    _put(root, "chaos_low_risk", 2026, 4, "p1", "report.json", _report("low", "cache", "held", ttr=(40,)))
    _put(root, "chaos_low_risk", 2026, 4, "p2", "report.json", _report("low", "cache", "held"))
    (root / "trends" / "2026-04").mkdir(parents=True)
    (root / "trends" / "2026-04" / "trends.json").write_text("{}")
    return ObjectStoragePath(f"file://{root}/")


LOW_MAY = {"runs": 2, "held": 1, "broken": 1, "pass_rate": 0.5, "breaches": 2, "ttd_mean_s": 5.0, "ttd_p95_s": 5.9,
           "ttr_mean_s": 20.0, "ttr_p95_s": 29.0, "safety_violations": 1}
MEDIUM_MAY = {"runs": 2, "held": 1, "broken": 0, "pass_rate": 1.0, "breaches": 0, "ttd_mean_s": None, "ttd_p95_s": None,
              "ttr_mean_s": 12.0, "ttr_p95_s": 12.0, "safety_violations": 0}
LOW_APRIL = {"runs": 2, "held": 2, "broken": 0, "pass_rate": 1.0, "breaches": 0, "ttd_mean_s": None, "ttd_p95_s": None,
             "ttr_mean_s": 40.0, "ttr_p95_s": 40.0, "safety_violations": 0}


def test_aggregates_per_tier_and_service(base):
    trends = monthly_trends(base, 2026, 5)
    assert trends["month"] == "2026-05" and trends["previous_month"] == "2026-04"
    assert trends["by_tier"] == {"low": LOW_MAY, "medium": MEDIUM_MAY}
    assert trends["by_service"] == {"cache": LOW_MAY, "payments": MEDIUM_MAY}
    assert trends["previous_by_tier"] == {"low": LOW_APRIL}
    # ttd [4, 6]; ttr [10, 12, 20, 30]: p95 = 20 + 0.85 * 10
    assert trends["total"] == {"runs": 4, "held": 2, "broken": 1, "pass_rate": 0.667, "breaches": 2, "ttd_mean_s": 5.0,
                               "ttd_p95_s": 5.9, "ttr_mean_s": 18.0, "ttr_p95_s": 28.5, "safety_violations": 1}


def test_month_over_month_deltas(base):
    trends = monthly_trends(base, 2026, 5)
    assert trends["delta_by_tier"]["low"] == {"runs": 0, "pass_rate": -0.5, "breaches": 2, "ttd_mean_s": None, "ttr_mean_s": -20.0, "safety_violations": 1}
    assert set(trends["delta_by_tier"]["medium"].values()) == {None}  # no medium runs in April


def test_a_month_without_runs(base):
    trends = monthly_trends(base, 2026, 1)
    assert trends["total"] is None and trends["by_tier"] == {} and trends["delta_by_service"] == {}


def test_writes_json_and_self_contained_html(base):
    out = write_trends(base, 2026, 5)
    folder = base / "trends" / "2026-05"
    assert out["json_path"] == str(folder / "trends.json")
    written = json.loads((folder / "trends.json").read_text())
    assert written["by_tier"] == {"low": LOW_MAY, "medium": MEDIUM_MAY}
    page = (folder / "trends.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "<link" not in page and "<script src" not in page
    assert "payments" in page and "(-20)" in page


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2026-05", (2026, 5)), ("", (2026, 2)), (None, (2026, 2))],
    ids=["explicit", "empty-last-full-month", "none-last-full-month"],
)
def test_month_of(value, expected):
    import datetime as dt

    assert month_of(value, dt.datetime(2026, 3, 4, tzinfo=dt.timezone.utc)) == expected


def test_month_of_rejects_a_bad_month():
    import datetime as dt

    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="'2026-13' is not YYYY-MM"):
        month_of("2026-13", dt.datetime(2026, 3, 4, tzinfo=dt.timezone.utc))


def test_previous_month_wraps_the_year():
    assert previous_month(2026, 1) == (2025, 12)
