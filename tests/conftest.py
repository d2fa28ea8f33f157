"""Shared test settings: an Airflow home of the tests' own, and where the shared Chaos Mesh data lives."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Airflow reads its configuration on import: give the tests a home of their own, never ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="chaos-tests-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """`../shared` beside the repository: CI always has it; a user's clone may not."""
    path = REPO_ROOT.parent / "shared"
    if not (path / "chaos-mesh").is_dir():
        pytest.skip("../shared/chaos-mesh is absent (a user's clone); CI always has it")
    return path
