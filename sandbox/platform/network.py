"""How long one message takes across a (possibly impaired) link: delay, jitter, TCP loss recovery, shaping."""

from __future__ import annotations

import random
from collections import defaultdict

from sandbox.platform.faults import Link

# One hop inside the cluster network, one way.
BASE_ONE_WAY_S = 0.00015
# Linux's minimum retransmission timeout; it doubles on every consecutive loss of a segment.
MIN_RTO_S = 0.2
# A segment lost this often is given up on: the connection is as good as partitioned.
MAX_RTO_S = 30.0
# What a token bucket queues before it drops (Chaos Mesh's bandwidth `limit`, in bits).
SHAPER_QUEUE_BITS = 8 * 1024 * 1024


class Shapers:
    """Traffic through each bandwidth limit, so that queueing grows with the offered load."""

    def __init__(self) -> None:
        self._bits_this_tick: dict[tuple, float] = defaultdict(float)
        self._bps: dict[tuple, float] = {}

    def offered_bps(self, key: tuple) -> float:
        return self._bps.get(key, 0.0)

    def send(self, key: tuple, nbytes: int) -> None:
        self._bits_this_tick[key] += 8 * nbytes

    def tick(self, dt: float) -> None:
        # A ~2 s moving average: enough to smooth a 100 ms tick, quick to follow a new fault.
        alpha = min(1.0, dt / 2.0)
        for key in set(self._bps) | set(self._bits_this_tick):
            current = self._bits_this_tick.get(key, 0.0) / dt if dt > 0 else 0.0
            self._bps[key] = (1 - alpha) * self._bps.get(key, current) + alpha * current
        self._bits_this_tick.clear()


def transit(link: Link | None, nbytes: int, segments: int, rng: random.Random, shapers: Shapers) -> float | None:
    """Seconds until the whole message arrived, or None if it never does (partition, hopeless loss)."""
    if link is None:
        return BASE_ONE_WAY_S
    if link.partition:
        return None
    seconds = BASE_ONE_WAY_S + link.delay_s
    if link.jitter_s:
        seconds = max(BASE_ONE_WAY_S, seconds + rng.gauss(0.0, link.jitter_s))
    loss = link.loss
    if link.bandwidth_bps:
        shaper = link.shaper or ("link",)
        offered = shapers.offered_bps(shaper)
        shapers.send(shaper, nbytes)
        utilisation = offered / link.bandwidth_bps
        serialisation = 8 * nbytes / link.bandwidth_bps
        if utilisation < 0.9:
            # M/D/1-ish: waiting grows as the bucket fills.
            seconds += serialisation * (1 + utilisation / (2 * (1 - utilisation)))
        else:
            # Saturated: the queue is full, every message waits for all of it, and the excess drops.
            seconds += serialisation + SHAPER_QUEUE_BITS / link.bandwidth_bps
            loss = 1 - (1 - loss) * min(1.0, 1 / max(utilisation, 1e-9))
    if loss > 0:
        # Each segment is retransmitted after the RTO until it gets through (RTO backs off).
        rto0 = MIN_RTO_S + 2 * link.delay_s
        for _ in range(segments):
            rto = rto0
            while rng.random() < loss:
                seconds += rto
                rto *= 2
                if rto > MAX_RTO_S:
                    return None
    return seconds
