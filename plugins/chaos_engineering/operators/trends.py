"""The monthly trend report as an Airflow task."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from airflow.sdk import BaseOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException
from chaos_engineering.operators.common import policy_or_fail
from chaos_engineering.trends import previous_month, summary, write_trends

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def month_of(value: str | None, now: dt.datetime) -> tuple[int, int]:
    """`YYYY-MM`, or the last full month when empty (a manual run without a data interval)."""
    text = str(value or "").strip()
    if not text:
        return previous_month(now.year, now.month)
    match = _MONTH.match(text)
    if match is None:
        raise AirflowFailException(f"month {text!r} is not YYYY-MM (the `month` parameter of chaos_monthly_trends)")
    return int(match[1]), int(match[2])


class MonthlyTrendsOperator(BaseOperator):
    """Reads every run report of a month under the policy's reports base and writes trends.json and trends.html."""

    template_fields = ("month",)
    ui_color = "#e8f0fe"

    def __init__(self, *, month: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.month = month

    def execute(self, context: Any) -> dict[str, Any]:
        year, month = month_of(self.month, dt.datetime.now(dt.timezone.utc))
        policy = policy_or_fail()
        base = ObjectStoragePath(policy.reports.base_url.rstrip("/") + "/", conn_id=policy.reports.conn_id)
        try:
            trends = write_trends(base, year, month)
        except OSError as exc:
            raise AirflowFailException(f"cannot write the trends under {base}: {exc}") from exc
        self.log.info("%s\nwritten to %s and %s", summary(trends), trends["json_path"], trends["html_path"])
        return {"month": trends["month"], "json_path": trends["json_path"], "html_path": trends["html_path"], "total": trends["total"]}
