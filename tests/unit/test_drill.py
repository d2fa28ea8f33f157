"""The DR drill's measurement on a scripted platform: RTO and RPO from canary writes, and a drill
that refuses to inject or to pass when it cannot measure."""

from __future__ import annotations

import pytest

from chaos_engineering.drill import CanaryProbe, DrillAborted, assess
from chaos_engineering.hooks.dr_probe import Ack, ProbeWriteFailed
from chaos_engineering.policy import DrillProbe, DrillTargets

SETTINGS = DrillProbe(interval="200ms", baseline="2s", settle="3s", observe="60s")
TARGETS = DrillTargets(rto="5s", rpo="1s")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class ScriptedPlatform:
    """Writes fail during `outage` (start, end); commits acknowledged in `unshipped` (start, end)
    are lost; reads answer None for ids in `unreadable`. Each write takes 10 ms."""

    def __init__(self, clock: Clock, outage=(None, None), unshipped=(None, None), unreadable=()) -> None:
        self.clock, self.outage, self.unshipped, self.unreadable = clock, outage, unshipped, set(unreadable)
        self.ids, self.lost = 0, set()

    def _within(self, window) -> bool:
        return window[0] is not None and window[0] <= self.clock.now < window[1]

    def write(self) -> Ack:
        self.clock.now += 0.01
        if self._within(self.outage):
            raise ProbeWriteFailed("HTTP 503: no database instance takes writes")
        self.ids += 1
        if self._within(self.unshipped):
            self.lost.add(self.ids)
        after = self._within(self.outage) or (self.outage[1] is not None and self.clock.now >= self.outage[1])
        return Ack(self.ids, "database-1" if after else "database-0")

    def present(self, canary_id):
        return None if canary_id in self.unreadable else canary_id not in self.lost


def drill(platform: ScriptedPlatform, clock: Clock, inject_at: float):
    probe = CanaryProbe(platform, SETTINGS, clock=clock, sleep=clock.sleep)
    probe.baseline()
    injected = probe.observe(lambda: inject_at if clock.now >= inject_at else None, lambda: None, wait_for_injection_s=30)
    return probe, injected, assess(probe.writes, injected, probe.verify(), SETTINGS, TARGETS)


def test_a_failover_within_targets():
    clock = Clock()
    platform = ScriptedPlatform(clock, outage=(1_004.05, 1_006.0), unshipped=(1_003.95, 1_004.05))
    probe, injected, record = drill(platform, clock, inject_at=1_004.0)
    assert injected == 1_004.0
    assert record["status"] == "met", record["reasons"]
    # Last ack before the outage ~1004.0x, first ack after it ~1006.0x: RTO ~2 s (± an interval).
    assert 1.8 <= record["rto_s"] <= 2.3
    assert record["canaries"]["lost"] == 1 and record["rpo_s"] == pytest.approx(0.2)
    assert record["canaries"]["lost_ids"] == sorted(platform.lost)
    assert (record["primary_before"], record["primary_after"]) == ("database-0", "database-1")
    # Stops once writes were back for `settle`, not at the end of `observe`.
    assert clock.now < 1_006.0 + SETTINGS.settle + 1


def test_a_slow_failover_misses_the_rto():
    clock = Clock()
    platform = ScriptedPlatform(clock, outage=(1_004.05, 1_012.0))
    _, _, record = drill(platform, clock, inject_at=1_004.0)
    assert record["status"] == "missed"
    assert record["rto_s"] > TARGETS.rto and "RTO" in record["reasons"][0]


def test_writes_that_never_come_back_leave_no_rto():
    clock = Clock()
    platform = ScriptedPlatform(clock, outage=(1_004.05, 2_000.0))
    _, _, record = drill(platform, clock, inject_at=1_004.0)
    assert record["rto_s"] is None and record["outage"]["recovered_at"] is None
    assert clock.now >= 1_004.0 + SETTINGS.observe
    assert "did not come back" in record["reasons"][0]


def test_losing_more_than_the_rpo_window_misses():
    clock = Clock()
    platform = ScriptedPlatform(clock, outage=(1_004.05, 1_005.0), unshipped=(1_002.5, 1_004.05))
    _, _, record = drill(platform, clock, inject_at=1_004.0)
    assert record["canaries"]["lost"] >= 7
    assert record["rpo_s"] > TARGETS.rpo and record["status"] == "missed"


def test_an_unreadable_canary_leaves_the_rpo_unmeasured_and_misses():
    clock = Clock()
    platform = ScriptedPlatform(clock, outage=(1_004.05, 1_005.0), unreadable={3})
    _, _, record = drill(platform, clock, inject_at=1_004.0)
    assert record["rpo_s"] is None and record["canaries"]["unverified"] == 1
    assert record["status"] == "missed" and "RPO unmeasured" in record["reasons"][0]


def test_a_failed_write_during_the_baseline_aborts_before_any_injection():
    clock = Clock()
    platform = ScriptedPlatform(clock, outage=(1_000.5, 1_001.0))
    probe = CanaryProbe(platform, SETTINGS, clock=clock, sleep=clock.sleep)
    with pytest.raises(DrillAborted, match="before any fault was injected"):
        probe.baseline()


def test_no_injection_ends_the_observation_without_a_measurement():
    clock = Clock()
    probe = CanaryProbe(ScriptedPlatform(clock), SETTINGS, clock=clock, sleep=clock.sleep)
    probe.baseline()
    stopped = probe.observe(lambda: None, lambda: "inject ended failed" if clock.now > 1_005 else None, wait_for_injection_s=30)
    assert stopped is None and clock.now < 1_007
    assert probe.observe(lambda: None, lambda: None, wait_for_injection_s=3) is None


def test_a_drill_that_failed_nothing_over_does_not_pass():
    clock = Clock()
    _, _, record = drill(ScriptedPlatform(clock), clock, inject_at=1_004.0)
    assert record["rto_s"] == 0.0 and record["outage"] is None and record["rpo_s"] == 0.0
    assert record["status"] == "missed" and "no failover observed" in record["reasons"][0]
    # Without an outage the probe watches for the whole `observe`.
    assert clock.now >= 1_004.0 + SETTINGS.observe


def test_a_failover_no_write_noticed_passes_with_zero_rto():
    """A proxy that retries across the switch hides the outage: the instance still changes."""
    clock = Clock()
    platform = ScriptedPlatform(clock, outage=(1_004.5, 1_004.5))  # empty: the instance switches at 1004.5
    _, _, record = drill(platform, clock, inject_at=1_004.0)
    assert record["outage"] is None and record["rto_s"] == 0.0
    assert (record["primary_before"], record["primary_after"]) == ("database-0", "database-1")
    assert record["status"] == "met", record["reasons"]
