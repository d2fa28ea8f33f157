"""Extra links "Report (HTML)" and "Report (PDF)" on the report task, served by the Chaos page."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink
from airflow.sdk.configuration import conf

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


def ui_url(path: str) -> str:
    """A link into the Airflow UI (or the Chaos page): under `[api] base_url` when set, else site-relative."""
    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    return f"{base}{path}"


def report_url(dag_id: str, run_id: str, name: str) -> str:
    """A run's report file through `/chaos/reports/...`: behind Airflow's auth, whatever the storage."""
    return ui_url(f"/chaos/reports/{quote(dag_id, safe='')}/{quote(run_id, safe='')}/{quote(name, safe='')}")


class ReportHtmlLink(BaseOperatorLink):
    name = "Report (HTML)"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return report_url(ti_key.dag_id, ti_key.run_id, "report.html")


class ReportPdfLink(BaseOperatorLink):
    name = "Report (PDF)"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return report_url(ti_key.dag_id, ti_key.run_id, "report.pdf")
