"""The README's main command, `make demo ONCE=1`, as a newcomer runs it: the sandbox, a real Airflow
and one low-risk experiment followed to its verdict, then everything stopped."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e


def test_make_demo_once_runs_the_main_job():
    """`make demo ONCE=1` is this command (the make targets before it only install)."""
    dry = subprocess.run(["make", "-n", "demo", "ONCE=1"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert re.search(r"^\.venv/bin/python -m sandbox\.demo --once$", dry.stdout, re.MULTILINE), dry.stdout


def test_the_demo_runs_one_experiment_to_its_verdict_and_stops_everything(tmp_path):
    state = tmp_path / "demo"
    demo = subprocess.run(
        [sys.executable, "-m", "sandbox.demo", "--once", "--state-dir", str(state)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200,
    )
    print(demo.stdout[-4000:])
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    out = demo.stdout

    # The UI's address and login, each task as it changes, then the verdict and where the result is.
    assert re.search(r"Airflow UI http://127\.0\.0\.1:\d+ +\(login admin / \S+\)", out)
    for task in ("plan", "approve_by_policy", "window_guard", "preflight", "acquire_lock", "inject", "monitor",
                 "remove_fault", "recovery_business", "release_lock", "write_result", "verdict"):
        assert re.search(rf"\] {task}: \S+ -> success", out), f"no success line for {task}"
    assert "run success: verdict held (no threshold breached and every recovery stage met its deadline)" in out
    [result_path] = re.findall(r"result +(\S+/result\.json)", out)
    result = json.loads(Path(result_path).read_text())
    assert result["verdict"] == "held" and result["experiment"]["experiment"] == "booking-api-pod-kill"
    assert (Path(result_path).parent / "report.html").is_file()

    # --once leaves nothing running: no Airflow process of its home, no sandbox process.
    def leftovers() -> list[str]:
        found = []
        for process in psutil.process_iter(["cmdline", "cwd"]):
            try:
                text = " ".join(process.info["cmdline"] or []) + " " + (process.info["cwd"] or "")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if str(state) in text:
                found.append(text)
        return found

    assert leftovers() == []
