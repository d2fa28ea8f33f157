"""The run's report set (JSON, HTML, PDF, raw series) beside its result, from Prometheus' series."""

from __future__ import annotations

import datetime as dt
import json
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, ObjectStoragePath
from chaos_engineering.hooks.prometheus import PrometheusHook, PrometheusQueryError
from chaos_engineering.operators.common import policy_or_fail
from chaos_engineering.ui.links import ReportHtmlLink, ReportPdfLink

# pandas, scipy and matplotlib are imported when a report is built, never at DAG parse time.

# Enough samples to judge a run by, few enough for one range query (Prometheus caps at 11,000).
MAX_POINTS = 10_000


def fetch_series(prometheus: PrometheusHook, thresholds: dict[str, dict[str, Any]], start: dt.datetime, end: dt.datetime, step: float) -> tuple[Any, list[str]]:
    """One column per threshold over [start, end]; a query that fails leaves its column out."""
    import pandas as pd

    step = max(step, (end - start).total_seconds() / MAX_POINTS)
    columns: dict[str, pd.Series] = {}
    problems: list[str] = []
    for name, threshold in thresholds.items():
        try:
            samples = prometheus.query_range(threshold["query"], start, end, step)
        except PrometheusQueryError as exc:
            problems.append(f"{name}: {exc}")
            continue
        index = pd.to_datetime([t for t, _ in samples], unit="s", utc=True)
        columns[name] = pd.Series([v for _, v in samples], index=index, dtype=float)
    return pd.DataFrame(columns), problems


class RunReportOperator(BaseOperator):
    """Reads the run's result.json, fetches its series and writes the report set beside it.

    Its extra links open the report through the Chaos page (`/chaos/reports/...`), behind
    Airflow's own login, wherever the reports are stored."""

    template_fields = ("outcome",)
    ui_color = "#f1f3f4"
    operator_extra_links = (ReportHtmlLink(), ReportPdfLink())

    def __init__(self, *, outcome: Any, prometheus_conn_id: str = PrometheusHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outcome = outcome
        self.prometheus_conn_id = prometheus_conn_id

    @cached_property
    def prometheus(self) -> PrometheusHook:
        return PrometheusHook(self.prometheus_conn_id, timeout=policy_or_fail().safety.query_timeout)

    def execute(self, context: Any) -> str:
        from chaos_engineering.report import build_report, write_report

        policy = policy_or_fail()
        path = ObjectStoragePath(self.outcome["path"], conn_id=policy.reports.conn_id)
        result = json.loads(path.read_text())
        thresholds = (result.get("experiment") or {}).get("thresholds") or {}
        series = None
        window = (result.get("preflight") or {}).get("window")
        if result.get("fault") and window:
            start = dt.datetime.fromisoformat(window[0])
            series, problems = fetch_series(self.prometheus, thresholds, start, dt.datetime.now(dt.timezone.utc), policy.safety.check_interval)
            for problem in problems:
                self.log.warning("series missing from the report: %s", problem)
        files = build_report(result, thresholds, series, business_metrics=policy.recovery.business.thresholds)
        written = write_report(path.parent, files)
        self.log.info("report written: %s", ", ".join(str(p) for p in written))
        return str(path.parent / "report.html")
