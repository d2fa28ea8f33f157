"""The generated load at baseline: the safety policy's numbers are sane, stable, yet not flat."""

from __future__ import annotations

import statistics

import pytest

from sandbox.platform import Platform


@pytest.fixture(scope="module")
def windows() -> list:
    """Six consecutive 30 s windows of a fault-free platform at the default rate (virtual time)."""
    platform = Platform(seed=3, start_time=1_000_000.0)
    platform.simulate(5)
    return [platform.measure(30) for _ in range(6)]


def test_baseline_matches_the_safety_policy_expectations(windows):
    for window in windows:
        # 1 % of cards are declined, so confirmed bookings are 99 % of the attempts.
        assert window.booking_rate == pytest.approx(20 * 0.99, rel=0.05)
        assert 0.5 < window.payment_failure_pct < 1.6
        assert window.error_pct("web-frontend") < 0.1
        assert 80 < window.p95_ms("web-frontend") < 1000


def test_the_booking_rate_stays_within_five_percent_but_is_not_flat(windows):
    rates = [window.booking_rate for window in windows]
    mean = statistics.fmean(rates)
    assert all(abs(rate - mean) / mean < 0.05 for rate in rates), rates
    # Natural noise: a baseline with a little variation, not a constant.
    assert statistics.pstdev(rates) > 0.001 * mean
    assert len({round(window.p95_ms(), 3) for window in windows}) > 1


def test_background_traffic_reaches_every_service(windows):
    window = windows[0]
    for service in ("booking-worker", "cache", "database", "stripe-webhook-handler", "sms-notifications",
                    "email-service", "booking-confirmation", "payment-processor"):
        assert window.request_rate(service) > 1, service
    # Three page views per booking, plus probes.
    assert window.request_rate("web-frontend") == pytest.approx(20 * 4, rel=0.1)


@pytest.mark.parametrize("rate", [5.0, 50.0])
def test_the_rate_is_configurable(rate):
    window = Platform(rate=rate, seed=5, start_time=0.0).measure(30)
    assert window.booking_rate == pytest.approx(rate * 0.99, rel=0.06)
