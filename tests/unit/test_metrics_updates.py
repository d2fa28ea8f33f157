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
