"""The customers: bookings, page views and reminder jobs arriving at a steady, slightly noisy rate."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# Per booking: browsing customers look at a few pages, and a tenth of bookings get a reminder job.
PAGE_VIEWS_PER_BOOKING = 3.0
REMINDERS_PER_BOOKING = 0.1
# Demand drifts slowly around the configured rate (an Ornstein-Uhlenbeck walk): visible on a
# graph, yet any 30 s average stays within a few percent of the rate.
DRIFT_STD = 0.012
DRIFT_LIMIT = 0.035
DRIFT_TIME_S = 15.0
# Within a tick, arrivals are bursty; a carried remainder keeps the long-run count exact.
BURST = 0.3


@dataclass
class Arrivals:
    bookings: int
    page_views: int
    reminders: int


class LoadGenerator:
    def __init__(self, rate: float, rng: random.Random) -> None:
        self.rate = rate
        self.rng = rng
        self.drift = 0.0
        self._carry = {"bookings": rng.random(), "page_views": rng.random(), "reminders": rng.random()}

    def arrivals(self, dt: float) -> Arrivals:
        rng = self.rng
        self.drift += -self.drift * dt / DRIFT_TIME_S + DRIFT_STD * math.sqrt(2 * dt / DRIFT_TIME_S) * rng.gauss(0, 1)
        self.drift = max(-DRIFT_LIMIT, min(DRIFT_LIMIT, self.drift))
        demand = self.rate * (1 + self.drift) * dt
        return Arrivals(
            bookings=self._take("bookings", demand),
            page_views=self._take("page_views", demand * PAGE_VIEWS_PER_BOOKING),
            reminders=self._take("reminders", demand * REMINDERS_PER_BOOKING),
        )

    def _take(self, kind: str, expected: float) -> int:
        wanted = self._carry[kind] + expected * (1 + self.rng.uniform(-BURST, BURST))
        count = int(wanted)
        self._carry[kind] = wanted - count
        return count


class SteadyShare:
    """Something that happens on a fixed share of occasions (declined cards), spread evenly with
    jitter instead of drawn independently: a 30 s window then shows about the share, not a
    binomial draw that a 2-point safety limit could mistake for an incident."""

    def __init__(self, share: float, rng: random.Random) -> None:
        self.share = share
        self.rng = rng
        self._carry = rng.random()

    def happens(self) -> bool:
        self._carry += self.share * self.rng.uniform(0.5, 1.5)
        if self._carry >= 1.0:
            self._carry -= 1.0
            return True
        return False
