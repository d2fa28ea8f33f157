"""A run's files written through ObjectStoragePath: to an S3 API over HTTP (moto's server) through
an Airflow connection, and to a local folder, then read back."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from airflow.sdk import ObjectStoragePath
from chaos_engineering.operators.result import run_folder
from chaos_engineering.report import build_report, validate_report, write_report
from tests.integration.receivers import free_port
from tests.unit.test_report_synthetic import THRESHOLDS, Shape, synthetic_run

BUCKET = "chaos-reports"
RUN_ID = "manual__2026-11-27T03:00:00+00:00"
WHEN = dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    os.environ["AIRFLOW_CONN_AWS_REPORTS"] = json.dumps(
        {"conn_type": "aws", "login": "testing", "password": "testing", "extra": {"endpoint_url": url, "region_name": "us-east-1"}}
    )
    client = boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    try:
        yield url
    finally:
        server.stop()
        del os.environ["AIRFLOW_CONN_AWS_REPORTS"]


def files():
    result, series = synthetic_run({"p95_latency": Shape(during=800.0)}, baseline_s=120, fault_s=60, recovery_s=120)
    return result, build_report(result, THRESHOLDS, series)


def test_report_set_in_s3_through_a_connection(s3):
    folder = run_folder(f"s3://{BUCKET}/chaos", "aws_reports", "chaos_low_risk", RUN_ID, WHEN)
    result, report = files()
    (folder / "result.json").write_text(json.dumps(result))
    write_report(folder, report)
    client = boto3.client("s3", endpoint_url=s3, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="chaos/")["Contents"])
    prefix = f"chaos/chaos_low_risk/2026/11/{RUN_ID}/"
    assert keys == [prefix + name for name in ("metrics.csv", "report.html", "report.json", "report.pdf", "result.json")]
    document = json.loads(ObjectStoragePath(f"s3://{BUCKET}/{prefix}report.json", conn_id="aws_reports").read_text())
    validate_report(document)
    assert ObjectStoragePath(f"s3://{BUCKET}/{prefix}report.pdf", conn_id="aws_reports").read_bytes().startswith(b"%PDF-")


def test_report_set_in_a_local_folder(tmp_path):
    folder = run_folder(tmp_path.as_uri(), None, "chaos_low_risk", RUN_ID, WHEN)
    result, report = files()
    write_report(folder, report)
    written = tmp_path / "chaos_low_risk" / "2026" / "11" / RUN_ID
    assert sorted(p.name for p in written.iterdir()) == ["metrics.csv", "report.html", "report.json", "report.pdf"]
    validate_report(json.loads((written / "report.json").read_text()))
