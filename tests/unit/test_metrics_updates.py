"""What each state change sets in the chaos metrics (pure: no Pushgateway)."""

from __future__ import annotations

from chaos_engineering.notify.metrics import updates_for

PLAN = {"experiment": "booking-api-pod-kill", "tier": "low", "target_service": "booking-api"}


def gauges(event: str, **kwargs) -> dict:
    (update,) = updates_for(event, plan=PLAN, now=100.0, **kwargs)
    return update.gauges


def test_started_then_removed_ends_active_before_recovery():
    assert gauges("started", extra={"fault": {"injected_at": 90.0}})["chaos_experiment_active"] == 1.0
    removed = gauges("removed")
    assert removed["chaos_experiment_active"] == 0.0
    assert removed["chaos_experiment_phase"]["recovering"] == 1.0 and removed["chaos_experiment_phase"]["injected"] == 0.0


def test_only_a_fail_safe_kill_sets_the_fail_safe_time():
    failsafe = {"threshold": "error_rate", "rule": "max_failed_reads", "at": 95.0}
    assert gauges("breach_and_kill", breach=failsafe)["chaos_experiment_last_failsafe_timestamp_seconds"] == 95.0
    breach = {"threshold": "error_rate", "rule": "max_increase", "at": 95.0}
    assert "chaos_experiment_last_failsafe_timestamp_seconds" not in gauges("breach_and_kill", breach=breach)


def test_stop_sets_the_halt_and_resume_clears_it():
    (stop,) = updates_for("emergency_stop", now=100.0)
    assert stop.grouping_key == {} and stop.gauges["chaos_halt_active"] == 1.0
    (resumed,) = updates_for("resumed", now=101.0)
    assert resumed.grouping_key == {} and resumed.gauges == {"chaos_halt_active": 0.0}
