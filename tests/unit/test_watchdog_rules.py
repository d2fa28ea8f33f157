"""When the watchdog removes a fault: one case per rule."""

from __future__ import annotations

import datetime as dt

import pytest

from chaos_engineering.heartbeat import Beat
from chaos_engineering.watchdog import stale_reason

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def obj(created_s_ago: float = 100, *, deleting: bool = False, ended: bool = False) -> dict:
    meta = {"name": "f", "namespace": "chaos-engineering", "creationTimestamp": (NOW - dt.timedelta(seconds=created_s_ago)).isoformat().replace("+00:00", "Z")}
    if deleting:
        meta["deletionTimestamp"] = NOW.isoformat()
    status = {"experiment": {"desiredPhase": "Stop"}, "conditions": [{"type": "AllRecovered", "status": "True"}]} if ended else {}
    return {"kind": "NetworkChaos", "metadata": meta, "status": status}


def beat(age_s: float, *, holder: str = "triggerer-1/42", promise_s: int = 1) -> Beat:
    return Beat(holder, NOW - dt.timedelta(seconds=age_s), promise_s)


@pytest.mark.parametrize(
    ("fault", "heartbeat", "expected"),
    [
        (obj(), beat(3.0), None),
        (obj(), beat(20.0), None),
        (obj(), beat(20.5), "heartbeat 20.5 s old (grace 20 s): its monitor is gone"),
        (obj(created_s_ago=10), None, None),
        (obj(created_s_ago=25), None, "no heartbeat, created 25.0 s ago (grace 20 s): nothing monitors it"),
        (obj(), beat(45.0, holder="inject:worker-1/7", promise_s=60), None),
        (obj(), beat(60.5, holder="inject:worker-1/7", promise_s=60),
         "heartbeat 60.5 s old, written at injection (hand-over 60 s): its monitor never started"),
        (obj(), beat(10.0, holder="inject:worker-1/7", promise_s=5), None),  # the grace is the floor
        (obj(deleting=True), beat(500.0), None),
        (obj(ended=True), beat(500.0), None),
    ],
    ids=["fresh", "at-grace", "stale", "young-without-beat", "old-without-beat", "hand-over-pending",
         "hand-over-missed", "short-promise", "already-deleting", "ended-by-chaos-mesh"],
)
def test_stale_reason(fault, heartbeat, expected):
    assert stale_reason(fault, heartbeat, 20, NOW) == expected
