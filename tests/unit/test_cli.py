"""`chaosctl` as a user runs it: the installed command, exit codes and output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.unit.catalogue_support import base_experiment, mutated, write_yaml

CHAOSCTL = str(Path(sys.executable).with_name("chaosctl"))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHAOSCTL, *args], capture_output=True, text=True, timeout=60)


def test_validate_the_catalogue():
    result = run("validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid experiment(s), " in result.stdout and "valid scenario(s): valid" in result.stdout


def test_validate_rejects_an_unsafe_file_with_a_precise_message(tmp_path):
    bad = write_yaml(tmp_path / "bad.yaml", mutated(base_experiment(), {"chaos.spec.duration": "30m"}))
    good = write_yaml(tmp_path / "good.yaml", mutated(base_experiment(), {"name": "good"}))
    result = run("validate", str(bad), str(good))
    assert result.returncode == 1
    line = bad.read_text().splitlines().index("    duration: 30m") + 1
    assert f"{bad}:{line}: chaos.spec.duration: [max-duration] 30m exceeds the low tier's maximum of 10m" in result.stdout
    assert "2 file(s), 1 valid experiment(s): INVALID: 1 issue(s)" in result.stdout


def test_validate_json(tmp_path):
    write_yaml(tmp_path / "a" / "bad.yaml", mutated(base_experiment(), {"chaos.spec.selector.namespaces": ["payments"]}))
    result = run("validate", "--format", "json", str(tmp_path))
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["valid"] is False
    assert {i["rule"] for i in report["issues"]} == {"allowed-namespace", "target-mismatch"}


def test_render_prints_the_object():
    result = run("render", "booking-api-pod-kill", "--run-id", "manual__1")
    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load(result.stdout)
    assert manifest["kind"] == "PodChaos"
    assert manifest["metadata"]["namespace"] == "chaos-engineering"
    assert manifest["spec"]["duration"] == "60s"


def test_render_unknown_name_fails():
    result = run("render", "no-such-experiment")
    assert result.returncode == 1
    assert "no valid experiment or scenario named 'no-such-experiment'" in result.stderr
