"""Build a run's report set (report.json, report.html, report.pdf, the raw series) and write it to a folder."""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd

from chaos_engineering.report.analysis import AnalysisSettings, analyse_run
from chaos_engineering.report.document import build_document
from chaos_engineering.report.findings import evaluate
from chaos_engineering.report.html import render_html
from chaos_engineering.report.pdf import render_pdf
from chaos_engineering.report.plots import metric_plots
from chaos_engineering.report.schema import validate_report
from chaos_engineering.report.scores import business_metrics_of, health_score, impact_score


class Folder(Protocol):
    """What `write_report` needs of a folder: airflow.sdk.ObjectStoragePath and pathlib.Path both fit."""

    def __truediv__(self, name: str) -> Any: ...


@dataclass(frozen=True)
class ReportFiles:
    document: dict[str, Any]
    report_json: str
    report_html: str
    report_pdf: bytes
    metrics: bytes
    metrics_name: str  # metrics.parquet when pyarrow is installed, else metrics.csv

    def files(self) -> dict[str, bytes]:
        """File name -> content. report.json comes last: its presence means the set is complete."""
        return {
            self.metrics_name: self.metrics,
            "report.pdf": self.report_pdf,
            "report.html": self.report_html.encode("utf-8"),
            "report.json": self.report_json.encode("utf-8"),
        }


def _series_file(series: pd.DataFrame) -> tuple[str, bytes]:
    frame = series.copy()
    frame.index.name = "timestamp"
    if importlib.util.find_spec("pyarrow") is not None:
        buffer = io.BytesIO()
        frame.to_parquet(buffer)
        return "metrics.parquet", buffer.getvalue()
    return "metrics.csv", frame.to_csv().encode("utf-8")


def build_report(
    result: Mapping[str, Any],
    thresholds: Mapping[str, Any] | None,
    series: pd.DataFrame | None,
    *,
    business_metrics: Iterable[str] | None = None,
    settings: AnalysisSettings | None = None,
    generated_at: dt.datetime | None = None,
) -> ReportFiles:
    """The report set of one run from its result.json, the policy's thresholds (name -> Threshold or
    its dict) and the series (UTC index, one column per threshold; None or empty when nothing ran).

    `business_metrics` names the metrics the impact score is computed from (docs/REPORT.md);
    by default, those of the business recovery stage.
    """
    series = series if series is not None else pd.DataFrame()
    if len(series) and isinstance(series.index, pd.DatetimeIndex) and series.index.tz is None:
        series = series.tz_localize("UTC")
    series = series.sort_index()
    run = analyse_run(result, thresholds, series, settings)
    findings = evaluate(run)
    impact = impact_score(run, business_metrics_of(run, business_metrics))
    health = health_score(run, series)
    document = build_document(result, run, findings, impact, health, series, generated_at)
    validate_report(document)
    plots = metric_plots(document, series)
    name, metrics = _series_file(series)
    return ReportFiles(
        document=document,
        report_json=json.dumps(document, indent=2, allow_nan=False),
        report_html=render_html(document, plots),
        report_pdf=render_pdf(document, plots),
        metrics=metrics,
        metrics_name=name,
    )


def write_report(folder: Folder, files: ReportFiles) -> list[Any]:
    """Writes every file of the set into `folder` (created if it can be); returns their paths."""
    if hasattr(folder, "mkdir"):
        folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.files().items():
        path = folder / name
        path.write_bytes(content)
        written.append(path)
    return written
