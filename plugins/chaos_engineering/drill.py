"""The disaster-recovery drill's measurement: canary bookings written before, during and after a
failover, then read back.

- **RTO**: from the last acknowledged write before the outage (or the injection, if later) to the
  first acknowledged write after the last failed one; None while writes never came back.
- **RPO**: the window of acknowledged canaries missing after the failover (the spread of their
  acknowledgement times plus one probe interval, the measurement's resolution); 0 when none is
  lost. A canary the platform cannot confirm either way leaves the RPO unmeasured, which misses
  the target: a drill never passes on data it could not check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chaos_engineering.hooks.dr_probe import DrProbeHook, ProbeWriteFailed
from chaos_engineering.policy import DrillProbe, DrillTargets

#: Lost canaries listed by id in the record (the count is always complete).
MAX_LISTED = 50
#: Reads of a canary the platform could not confirm, a second apart, before it counts as unverified.
VERIFY_ATTEMPTS = 5


class DrillAborted(RuntimeError):
    """The platform did not take writes before the fault: the drill must not inject."""


@dataclass(frozen=True)
class Write:
    sent_at: float
    answered_at: float
    canary_id: int | str | None = None
    instance: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.canary_id is not None


class CanaryProbe:
    """Writes one canary every `settings.interval` and keeps every answer, in order."""

    def __init__(
        self,
        hook: DrProbeHook,
        settings: DrillProbe,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.hook = hook
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.writes: list[Write] = []

    def write(self) -> Write:
        sent = self.clock()
        try:
            ack = self.hook.write()
        except ProbeWriteFailed as exc:
            write = Write(sent, self.clock(), error=str(exc))
        else:
            write = Write(sent, self.clock(), ack.canary_id, ack.instance)
        self.writes.append(write)
        # A slow answer is its own pause; the next write never starts before the interval.
        self.sleep(max(0.0, sent + self.settings.interval - self.clock()))
        return write

    def baseline(self) -> None:
        """Writes for `settings.baseline`; any failure aborts (the platform is not healthy)."""
        end = self.clock() + self.settings.baseline
        while self.clock() < end:
            write = self.write()
            if not write.ok:
                raise DrillAborted(f"a canary write failed before any fault was injected: {write.error}")

    def observe(
        self,
        injected_at: Callable[[], float | None],
        stop_waiting: Callable[[], str | None],
        wait_for_injection_s: float,
        poll_every_s: float = 1.0,
    ) -> float | None:
        """Writes until the writes are back for `settle` after an outage, or `observe` passed
        since the injection. Returns the injection time, or None when nothing was injected
        (`stop_waiting` gave a reason, or `wait_for_injection_s` passed)."""
        waiting_until = self.clock() + wait_for_injection_s
        injected, next_poll = None, 0.0
        while True:
            now = self.clock()
            if injected is None and now >= next_poll:
                next_poll = now + poll_every_s
                injected = injected_at()
                if injected is None and (stop_waiting() or now >= waiting_until):
                    return None
            self.write()
            if injected is not None and self._done(injected):
                return injected

    def _done(self, injected_at: float) -> bool:
        now = self.clock()
        if now >= injected_at + self.settings.observe:
            return True
        failed = [w for w in self.writes if not w.ok and w.sent_at >= injected_at]
        return bool(failed) and self.writes[-1].ok and now >= failed[-1].answered_at + self.settings.settle

    def verify(self) -> dict[int | str, bool | None]:
        """Reads every acknowledged canary back: True present, False missing, None unknown."""
        presence: dict[int | str, bool | None] = {w.canary_id: None for w in self.writes if w.ok}
        for attempt in range(VERIFY_ATTEMPTS):
            for canary_id in [c for c, seen in presence.items() if seen is None]:
                presence[canary_id] = self.hook.present(canary_id)
            if None not in presence.values():
                break
            if attempt + 1 < VERIFY_ATTEMPTS:
                self.sleep(1.0)
        return presence


def assess(
    writes: list[Write],
    injected_at: float,
    presence: Mapping[int | str, bool | None],
    settings: DrillProbe,
    targets: DrillTargets,
) -> dict[str, Any]:
    """RTO, RPO, the failover seen by the writes, and whether the targets were met."""
    acknowledged = [w for w in writes if w.ok]
    after = [w for w in writes if w.sent_at >= injected_at]
    failures = [w for w in after if not w.ok]
    outage: dict[str, Any] | None = None
    rto_s: float | None = 0.0
    before = after_back = None
    if failures:
        first, last = failures[0], failures[-1]
        before = next((w for w in reversed(acknowledged) if w.answered_at <= first.sent_at), None)
        after_back = next((w for w in acknowledged if w.sent_at > last.sent_at), None)
        start = max(before.answered_at, injected_at) if before else injected_at
        rto_s = after_back.answered_at - start if after_back else None
        outage = {
            "started_at": start,
            "first_failure_at": first.sent_at,
            "recovered_at": after_back.answered_at if after_back else None,
            "failed_writes": len(failures),
            "errors": sorted({w.error for w in failures if w.error})[:5],
        }
    lost = [w for w in acknowledged if presence.get(w.canary_id) is False]
    unverified = [w for w in acknowledged if presence.get(w.canary_id) is None]
    rpo_s = (max(w.answered_at for w in lost) - min(w.answered_at for w in lost) + settings.interval) if lost else 0.0

    reasons = []
    if rto_s is None:
        reasons.append(f"writes did not come back within {settings.observe:g} s of the injection (RTO target {targets.rto:g} s)")
    elif rto_s > targets.rto:
        reasons.append(f"RTO {rto_s:.1f} s over the {targets.rto:g} s target")
    if unverified:
        reasons.append(f"{len(unverified)} acknowledged canaries could not be read back: RPO unmeasured")
    elif rpo_s > targets.rpo:
        reasons.append(f"RPO {rpo_s:.2f} s ({len(lost)} acknowledged canaries lost) over the {targets.rpo:g} s target")
    primary_before = (before or next((w for w in reversed(acknowledged) if w.answered_at <= injected_at), None))
    primary_after = after_back or (acknowledged[-1] if acknowledged else None)
    switched = bool(primary_before and primary_after and primary_before.instance and primary_before.instance != primary_after.instance)
    if outage is None and not switched:
        # Nothing to measure: a drill that did not fail anything over proves nothing.
        reasons.append("no failover observed: no write failed and the same database instance took them all")
    return {
        "status": "missed" if reasons else "met",
        "reasons": reasons,
        "injected_at": injected_at,
        "rto_s": rto_s,
        "rpo_s": None if unverified else rpo_s,
        "targets": {"rto_s": targets.rto, "rpo_s": targets.rpo},
        "outage": outage,
        "primary_before": primary_before.instance if primary_before else None,
        "primary_after": primary_after.instance if primary_after else None,
        "canaries": {
            "interval_s": settings.interval,
            "sent": len(writes),
            "acknowledged": len(acknowledged),
            "failed": len(writes) - len(acknowledged),
            "lost": len(lost),
            "unverified": len(unverified),
            "lost_ids": [w.canary_id for w in lost][:MAX_LISTED],
            "first_at": writes[0].sent_at if writes else None,
            "last_at": writes[-1].answered_at if writes else None,
        },
    }
