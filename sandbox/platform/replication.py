"""The database's asynchronous streaming replication, followed row by row for the DR probe's
canary bookings.

The primary acknowledges a commit before its WAL is shipped; a replica replays what was shipped
`replication_lag_s` later. When the primary crashes, what it acknowledged in its last `lag`
seconds never left it: promoting a replica loses those commits, as a real asynchronous
failover does (its RPO). The old primary comes back as a replica of the new timeline
(`pg_rewind`): its unshipped commits are gone for good. A StatefulSet pod keeps its volume, so
an instance that restarts keeps what it had replayed.

Only the canaries are tracked one by one (customers' bookings are counted, not stored), which is
enough for a drill to count what was acknowledged and is missing after the failover.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class Canary:
    id: int
    committed_at: float
    # The database instance that acknowledged it.
    instance: str


class Replication:
    """One timeline (the commits the current primary holds, in commit order) and how far each
    replica has replayed it."""

    def __init__(self) -> None:
        self.timeline: list[Canary] = []
        self.lost: list[Canary] = []
        self._present: set[int] = set()
        self._known: set[int] = set()
        self._replayed: dict[str, int] = {}
        self._ids = itertools.count(1)
        # When the primary stopped (crash, kill, failure): nothing it committed later shipped.
        self._shipping_stopped_at: float | None = None

    def commit(self, instance: str, now: float) -> Canary:
        canary = Canary(next(self._ids), now, instance)
        self.timeline.append(canary)
        self._present.add(canary.id)
        self._known.add(canary.id)
        self._replayed[instance] = len(self.timeline)
        return canary

    def primary_stopped(self, now: float) -> None:
        if self._shipping_stopped_at is None:
            self._shipping_stopped_at = now

    def primary_running(self) -> None:
        self._shipping_stopped_at = None

    def replay(self, lags: dict[str, float], now: float) -> None:
        """Each replica (name -> lag) replays the commits shipped at least `lag` seconds ago."""
        stopped = self._shipping_stopped_at
        for name, lag in lags.items():
            cutoff = (now if stopped is None else min(now, stopped)) - lag
            done = self._replayed.get(name, 0)
            while done < len(self.timeline) and self.timeline[done].committed_at <= cutoff:
                done += 1
            self._replayed[name] = done

    def promote(self, instance: str) -> list[Canary]:
        """`instance` becomes the primary with what it replayed; returns the commits lost."""
        kept = self._replayed.get(instance, 0)
        lost, self.timeline = self.timeline[kept:], self.timeline[:kept]
        self.lost.extend(lost)
        self._present.difference_update(canary.id for canary in lost)
        # Every other instance follows the new timeline (an old primary is rewound).
        self._replayed = {name: min(done, kept) for name, done in self._replayed.items()}
        self._replayed[instance] = kept
        self._shipping_stopped_at = None
        return lost

    def status(self, canary_id: int) -> str:
        """"present", "lost" (acknowledged, then lost at a failover) or "unknown" (never acknowledged)."""
        if canary_id in self._present:
            return "present"
        return "lost" if canary_id in self._known else "unknown"
