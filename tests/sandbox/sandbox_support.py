"""Helpers for tests against a running sandbox: polling with a deadline, a small Prometheus client."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
import requests

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, message: str, interval: float = 0.5) -> T:
    """Poll `condition` until it returns something truthy; fail with `message` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s: {message}")
        time.sleep(interval)


class PrometheusAPI:
    """The few calls of the Prometheus HTTP API the tests need."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[dict]:
        response = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The single value of an instant query; None when it returns nothing."""
        result = self.query(promql)
        if not result:
            return None
        assert len(result) == 1, f"{promql} returned {len(result)} series"
        return float(result[0]["value"][1])

    def range(self, promql: str, start: float, end: float, step: float) -> list[tuple[float, float]]:
        response = requests.get(
            f"{self.url}/api/v1/query_range",
            params={"query": promql, "start": start, "end": end, "step": step},
            timeout=10,
        )
        response.raise_for_status()
        result = response.json()["data"]["result"]
        if not result:
            return []
        return [(float(at), float(value)) for at, value in result[0]["values"] if not math.isnan(float(value))]
