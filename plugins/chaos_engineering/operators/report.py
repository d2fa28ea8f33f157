"""The run's report set (JSON, HTML, PDF, raw series) beside its result, from Prometheus' series."""

from __future__ import annotations

import datetime as dt
import json
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from chaos_engineering.hooks.prometheus import PrometheusHook, PrometheusQueryError
from chaos_engineering.operators.common import policy_or_fail
from chaos_engineering.operators.result import PENDING_SENTENCE, STORAGE_DEADLINE_S, StorageUnavailable, with_storage_retries
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


def build_run_report(
    result: dict[str, Any],
    folder: ObjectStoragePath,
    prometheus: PrometheusHook,
    policy: Any,
    *,
    end: dt.datetime,
    log: Any,
    storage_deadline_s: float = STORAGE_DEADLINE_S,
) -> list[Any]:
    """Fetch the run's series up to `end`, build the report set and write it into `folder` (storage
    retried up to `storage_deadline_s`). The report task and the maintenance DAG both use it."""
    from chaos_engineering.report import build_report, write_report

    thresholds = (result.get("experiment") or {}).get("thresholds") or {}
    series = None
    window = (result.get("preflight") or {}).get("window")
    if result.get("fault") and window:
        start = dt.datetime.fromisoformat(window[0])
        series, problems = fetch_series(prometheus, thresholds, start, end, policy.safety.check_interval)
        for problem in problems:
            log.warning("series missing from the report: %s", problem)
    files = build_report(result, thresholds, series, business_metrics=policy.recovery.business.thresholds)
    return with_storage_retries(lambda: write_report(folder, files), f"writing the report into {folder}", deadline_s=storage_deadline_s, log=log)


class RunReportOperator(BaseOperator):
    """Reads the run's result.json, fetches its series and writes the report set beside it.

    Its extra links open the report through the Chaos page (`/chaos/reports/...`), behind
    Airflow's own login, wherever the reports are stored.

    When write_result could not store the result it skips at once (the report is pending, the
    maintenance DAG writes it); when storage fails here it retries up to `storage_deadline_s`,
    then fails naming the pending report."""

    template_fields = ("outcome",)
    ui_color = "#f1f3f4"
    operator_extra_links = (ReportHtmlLink(), ReportPdfLink())

    def __init__(
        self,
        *,
        outcome: Any,
        prometheus_conn_id: str = PrometheusHook.default_conn_name,
        storage_deadline_s: float = STORAGE_DEADLINE_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.outcome = outcome
        self.prometheus_conn_id = prometheus_conn_id
        self.storage_deadline_s = storage_deadline_s

    @cached_property
    def prometheus(self) -> PrometheusHook:
        return PrometheusHook(self.prometheus_conn_id, timeout=policy_or_fail().safety.query_timeout)

    def execute(self, context: Any) -> str:
        if self.outcome and self.outcome.get("stored") is False:
            raise AirflowSkipException(f"{PENDING_SENTENCE} (write_result: {self.outcome.get('storage_error')})")
        policy = policy_or_fail()
        path = ObjectStoragePath(self.outcome["path"], conn_id=policy.reports.conn_id)
        try:
            result = json.loads(with_storage_retries(path.read_text, f"reading {path}", deadline_s=self.storage_deadline_s, log=self.log))
            written = build_run_report(
                result, path.parent, self.prometheus, policy,
                end=dt.datetime.now(dt.timezone.utc), log=self.log, storage_deadline_s=self.storage_deadline_s,
            )
        except StorageUnavailable as exc:
            raise AirflowFailException(f"{PENDING_SENTENCE}: {exc}") from exc
        self.log.info("report written: %s", ", ".join(str(p) for p in written))
        return str(path.parent / "report.html")
