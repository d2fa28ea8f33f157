"""A run's report files, read from the reports storage (local folder or S3) for the Chaos page.

The folder is derived, never taken from the request: the run must exist in Airflow's metadata,
and its folder is `run_folder(...)` of the policy's `reports` settings and the run's `run_after`,
the very call the result step wrote it with. A requested name is one plain file name in it.
"""

from __future__ import annotations

import mimetypes
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from airflow.models.dagrun import DagRun
from airflow.sdk import ObjectStoragePath
from chaos_engineering.operators.result import run_folder
from chaos_engineering.policy import SafetyPolicy
from chaos_engineering.verification import run_id_problem

#: A file of the run's folder: a plain name (letters, digits, `.`, `_`, `-`), not hidden, no path.
_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")


class ReportNotFound(LookupError):
    """No such run, no such file, or a name that is not a file of the run's folder."""


def file_name_problem(name: str) -> str | None:
    """Why `name` cannot be a file of a run's report folder, or None."""
    if not _FILE_NAME.fullmatch(name) or ".." in name:
        return f"{name!r} is not a report file name (one plain file name of the run's folder: letters, digits, '.', '_', '-')"
    return None


def report_file(session: Session, policy: SafetyPolicy, dag_id: str, run_id: str, name: str) -> tuple[bytes, str]:
    """The file's bytes and media type; ReportNotFound for anything that is not one of them."""
    if problem := file_name_problem(name) or run_id_problem(run_id):
        raise ReportNotFound(problem)
    run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if run is None:
        raise ReportNotFound(f"no run {run_id!r} of {dag_id!r}")
    path: ObjectStoragePath = run_folder(policy.reports.base_url, policy.reports.conn_id, dag_id, run_id, run.run_after) / name
    if not path.is_file():
        raise ReportNotFound(f"{name} is not in the report folder of {dag_id}/{run_id} (yet)")
    return path.read_bytes(), mimetypes.guess_type(name)[0] or "application/octet-stream"
