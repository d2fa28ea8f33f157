"""When the watchdog removes a fault: one case per rule."""

from __future__ import annotations

import datetime as dt

import pytest

from chaos_engineering.watchdog import stale_reason

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def obj(created_s_ago: float = 100, *, deleting: bool = False, ended: bool = False) -> dict:
    meta = {"name": "f", "namespace": "chaos-engineering", "creationTimestamp": (NOW - dt.timedelta(seconds=created_s_ago)).isoformat().replace("+00:00", "Z")}
    if deleting:
        meta["deletionTimestamp"] = NOW.isoformat()
    status = {"experiment": {"desiredPhase": "Stop"}, "conditions": [{"type": "AllRecovered", "status": "True"}]} if ended else {}
    return {"kind": "NetworkChaos", "metadata": meta, "status": status}


@pytest.mark.parametrize(
    ("fault", "beat_age", "expected"),
    [
        (obj(), 3.0, None),
        (obj(), 20.0, None),
        (obj(), 20.5, "heartbeat 20.5 s old (grace 20 s): its monitor is gone"),
        (obj(created_s_ago=10), None, None),
        (obj(created_s_ago=25), None, "no heartbeat, created 25.0 s ago (grace 20 s): nothing monitors it"),
        (obj(deleting=True), 500.0, None),
        (obj(ended=True), 500.0, None),
    ],
    ids=["fresh", "at-grace", "stale", "young-without-beat", "old-without-beat", "already-deleting", "ended-by-chaos-mesh"],
)
def test_stale_reason(fault, beat_age, expected):
    assert stale_reason(fault, beat_age, 20, NOW) == expected
