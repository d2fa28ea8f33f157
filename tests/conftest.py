"""Shared fixtures: where the shared Chaos Mesh test data lives."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """`../shared` beside the repository: CI always has it; a user's clone may not."""
    path = REPO_ROOT.parent / "shared"
    if not (path / "chaos-mesh").is_dir():
        pytest.skip("../shared/chaos-mesh is absent (a user's clone); CI always has it")
    return path
