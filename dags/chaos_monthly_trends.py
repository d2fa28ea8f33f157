"""
### Chaos monthly trends

Once a month, across every run report in object storage (`reports.base_url` of the policy):
per tier and per service, the runs, the pass rate (held / (held + broken)), breaches, mean and
p95 time to detect and to recover, safety violations, and the change against the month before.

Writes `<reports base>/trends/<YYYY>-<MM>/trends.json` and a self-contained `trends.html` with
plots. A scheduled run covers its data interval's month; trigger it by hand with `month`
(`YYYY-MM`) to redo one (empty = the last full month).
"""

import pendulum

from airflow.sdk import DAG, Param
from chaos_engineering.operators.trends import MonthlyTrendsOperator

with DAG(
    dag_id="chaos_monthly_trends",
    schedule="@monthly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"month": Param("", type="string", title="Month", description="YYYY-MM; empty = the data interval's month, else the last full month.")},
    tags=["chaos-engineering", "operations"],
    # A retry is safe: the report only reads runs and overwrites its own two files.
    default_args={"owner": "sre", "retries": 1, "retry_delay": pendulum.duration(minutes=5)},
    doc_md=__doc__,
):
    MonthlyTrendsOperator(
        task_id="monthly_trends",
        month="{{ params.month or (data_interval_start.strftime('%Y-%m') if data_interval_start else '') }}",
    )
