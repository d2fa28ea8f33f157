"""An S3 outage at a run's end (moto's server stopped, then started again on the same port): the
result is kept in XCom, nothing is lost, and the maintenance step writes result.json and the
report set once storage is back. Airflow's REST reads are a fake AirflowApiHook here (the e2e
suite drives the real api-server)."""

from __future__ import annotations

import json
import logging
import os
from types import SimpleNamespace

import boto3
import pendulum
from moto.server import ThreadedMotoServer

from chaos_engineering.maintenance import MaintenanceReport, write_pending_reports
from chaos_engineering.operators import result as result_module
from chaos_engineering.operators.report import build_run_report
from chaos_engineering.operators.result import RESULT_KEY, WriteResultOperator, run_folder
from chaos_engineering.policy import load_policy
from chaos_engineering.report import validate_report
from tests.integration.receivers import free_port
from tests.unit.test_report_outage import RUN_AFTER, RUN_ID, FakeApi, FakeTI
from tests.unit.test_report_synthetic import THRESHOLDS, synthetic_run

BUCKET = "chaos-reports-outage"
BASE = f"s3://{BUCKET}/chaos"


class SyntheticPrometheus:
    """Prometheus answering each threshold's query with the synthetic run's series."""

    def __init__(self, series) -> None:
        self.by_query = {t.query: series[name] for name, t in THRESHOLDS.items() if name in series}

    def query_range(self, promql, start, end, step):
        column = self.by_query.get(promql)
        return [] if column is None else [(t.timestamp(), float(v)) for t, v in column.items()]


def test_an_outage_at_write_time_loses_nothing_and_maintenance_writes_the_report_later(monkeypatch):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # One botocore attempt per call: the outage is seen in seconds, not a minute.
    monkeypatch.setenv("AIRFLOW_CONN_AWS_REPORTS_OUTAGE", json.dumps(
        {"conn_type": "aws", "login": "testing", "password": "testing",
         "extra": {"endpoint_url": url, "region_name": "us-east-1", "config_kwargs": {"retries": {"max_attempts": 1}}}}
    ))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    server.stop()  # storage goes down before the run's end

    policy, _ = load_policy()
    policy = policy.model_copy(update={"reports": policy.reports.model_copy(update={"base_url": BASE, "conn_id": "aws_reports_outage"})})
    monkeypatch.setattr(result_module, "policy_or_fail", lambda: policy)
    monkeypatch.setattr(result_module, "announce", lambda event, **kw: None)
    monkeypatch.setattr(result_module, "write_run_note", lambda context, note: None)
    result, series = synthetic_run()
    ti = FakeTI([])
    ti.xcom_pull = lambda task_ids, key="return_value": {  # noqa: E731  the steps' records
        ("inject", "return_value"): result["fault"], ("preflight", "return_value"): result["preflight"],
        ("monitor", "monitor"): result["monitor"], ("remove_fault", "return_value"): result["removal"],
    }.get((task_ids, key)) or {f"recovery_{s}": r for s, r in result["recovery"].items()}.get(task_ids) if key in ("return_value", "monitor", "recovery") else None
    ti.get_task_states = lambda dag_id, run_ids: {RUN_ID: result["task_states"]}
    context = {"ti": ti, "dag_run": SimpleNamespace(dag_id="chaos_low_risk", run_id=RUN_ID, run_type="manual", run_after=RUN_AFTER), "task": SimpleNamespace(task_id="write_result")}

    outcome = WriteResultOperator(task_id="write_result", storage_deadline_s=2).execute(context)

    assert outcome["stored"] is False and "Could not connect to the endpoint URL" in outcome["storage_error"]
    kept = ti.pushed[("write_result", RESULT_KEY)]
    assert kept["run_id"] == RUN_ID and kept["fault"] == result["fault"]

    # Storage comes back on the same endpoint; moto's state lives in the process.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        folder = run_folder(BASE, "aws_reports_outage", "chaos_low_risk", RUN_ID, RUN_AFTER)
        assert not (folder / "result.json").exists()
        api = FakeApi({"chaos_low_risk": [{"dag_run_id": RUN_ID, "run_after": RUN_AFTER.isoformat(), "state": "success"}]}, {("chaos_low_risk", RUN_ID): kept})
        prometheus = SyntheticPrometheus(series)
        report = MaintenanceReport()
        write_pending_reports(
            api, BASE, "aws_reports_outage",
            lambda r, f: build_run_report(r, f, prometheus, policy, end=series.index[-1].to_pydatetime(), log=logging.getLogger("test")),
            report, dag_ids=("chaos_low_risk",), now=RUN_AFTER + pendulum.duration(days=1),
        )
        assert report.errors == [] and report.unrecoverable == []
        assert report.pending_reports == [f"chaos_low_risk/{RUN_ID}: wrote result.json, metrics.csv, report.pdf, report.html, report.json into {folder}"]
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="chaos/")["Contents"])
        prefix = f"chaos/chaos_low_risk/2026/11/{RUN_ID}/"
        assert keys == [prefix + name for name in ("metrics.csv", "report.html", "report.json", "report.pdf", "result.json")]
        assert json.loads((folder / "result.json").read_text()) == kept
        document = json.loads((folder / "report.json").read_text())
        validate_report(document)
        assert (folder / "report.pdf").read_bytes().startswith(b"%PDF-")

        # A second pass finds the set complete and writes nothing.
        again = MaintenanceReport()
        write_pending_reports(api, BASE, "aws_reports_outage", lambda r, f: [], again, dag_ids=("chaos_low_risk",), now=RUN_AFTER + pendulum.duration(days=1))
        assert again.pending_reports == [] and again.errors == []
    finally:
        server.stop()
        os.environ.pop("AIRFLOW_CONN_AWS_REPORTS_OUTAGE", None)
