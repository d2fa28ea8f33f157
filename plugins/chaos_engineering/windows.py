"""When a tier may inject: the window guard's verdict, and the next moment a tier's window opens."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from collections.abc import Iterator, Mapping, Sequence

from pydantic import TypeAdapter, ValidationError

from chaos_engineering.policy import SafetyPolicy, Tier, Weekday, WeeklyHours

#: How far ahead `next_window_start` looks. It steps from one boundary of the window to the next,
#: not minute by minute, so a year costs a few milliseconds and outlasts any run of freeze dates.
SEARCH_DAYS = 366

UTC = dt.timezone.utc

_WEEKLY = TypeAdapter(WeeklyHours)
_DATES = TypeAdapter(list[dt.date])


@dataclasses.dataclass(frozen=True)
class WindowVerdict:
    """The window guard's answer for one moment, as recorded on the run and shown in the UI.

    `next_allowed` is when the tier's window next opens (UTC), given whenever the moment is outside
    it (refused, or allowed by a manual override); None inside the window, or if it never opens.
    """

    allowed: bool
    reason: str
    override_used: bool = False
    next_allowed: dt.datetime | None = None


def _validated(adapter: TypeAdapter, value: object, field: str):
    """`value` checked by the policy's own type, or a ValueError naming the field and every problem."""
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join([field, *map(str, e['loc'])])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
        raise ValueError(problems) from None


def _require_aware(moment: dt.datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} {moment.isoformat()} has no time zone; pass an aware datetime (UTC or any zone)")


def _range_text(start: dt.time, end: dt.time | None) -> str:
    return f"{start:%H:%M}-{'24:00' if end is None else f'{end:%H:%M}'}"


def _inside(weekly: WeeklyHours, local: dt.datetime) -> bool:
    """Whether the local wall time is in one of the day's intervals (start included, end excluded)."""
    now = local.time()
    return any(start <= now and (end is None or now < end) for start, end in weekly.get(Weekday.of(local.date()), []))


def weekly_text(weekly: WeeklyHours) -> str:
    """{mon: [08:00-20:00], ...} as 'mon 08:00-20:00; ...', or '00:00-06:00 daily' when every day is alike."""
    per_day = {day: ", ".join(_range_text(*r) for r in weekly.get(day, [])) for day in Weekday}
    if len(set(per_day.values())) == 1 and per_day[Weekday.MON]:
        return f"{per_day[Weekday.MON]} daily"
    return "; ".join(f"{day.value} {text}" for day, text in per_day.items() if text)


def weekly_plain(weekly: WeeklyHours) -> dict[str, list[str]]:
    """The policy file's own form ({"mon": ["08:00-20:00"]}), for JSON and back through `WindowRules.from_plain`."""
    return {day.value: [_range_text(*r) for r in weekly[day]] for day in Weekday if day in weekly}


def _local_text(local: dt.datetime) -> str:
    return local.strftime("%a %Y-%m-%d %H:%M %Z")


@dataclasses.dataclass(frozen=True)
class WindowRules:
    """The part of the safety policy that decides when one tier may inject, held as plain values.

    The window is open at a moment when its local date (in `timezone`) is not a freeze date, it is
    outside business hours unless the tier may run in them (the high tier never may), and it is
    inside the tier's `weekly` intervals when the tier has them. Intervals include their start and
    exclude their end.
    """

    tier: Tier
    timezone: str
    business_hours: WeeklyHours
    freeze_dates: frozenset[dt.date]
    allowed_in_business_hours: bool
    weekly: WeeklyHours | None
    manual_override: bool

    @classmethod
    def for_tier(cls, policy: SafetyPolicy, tier: Tier | str) -> WindowRules:
        tier = Tier(tier)
        rules = policy.tiers[tier]
        return cls(
            tier=tier,
            timezone=policy.business_hours.timezone,
            business_hours=policy.business_hours.weekly,
            freeze_dates=frozenset(policy.business_hours.freeze_dates),
            allowed_in_business_hours=rules.window.business_hours,
            weekly=rules.window.weekly,
            manual_override=rules.manual_override,
        )

    @classmethod
    def from_plain(
        cls,
        *,
        tier: str,
        timezone: str,
        business_hours: Mapping[str, Sequence[str]],
        freeze_dates: Sequence[str | dt.date] = (),
        allowed_in_business_hours: bool = False,
        weekly: Mapping[str, Sequence[str]] | None = None,
        manual_override: bool = False,
    ) -> WindowRules:
        """Build from JSON-ready values (as `plain()` returns), validated by the policy's own types."""
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r}; use an IANA name such as 'America/New_York'") from None
        return cls(
            tier=Tier(tier),
            timezone=timezone,
            business_hours=_validated(_WEEKLY, dict(business_hours), "business_hours"),
            freeze_dates=frozenset(_validated(_DATES, list(freeze_dates), "freeze_dates")),
            allowed_in_business_hours=bool(allowed_in_business_hours),
            weekly=None if weekly is None else _validated(_WEEKLY, dict(weekly), "weekly"),
            manual_override=bool(manual_override),
        )

    def plain(self) -> dict[str, object]:
        return {
            "tier": self.tier.value,
            "timezone": self.timezone,
            "business_hours": weekly_plain(self.business_hours),
            "freeze_dates": sorted(d.isoformat() for d in self.freeze_dates),
            "allowed_in_business_hours": self.allowed_in_business_hours,
            "weekly": None if self.weekly is None else weekly_plain(self.weekly),
            "manual_override": self.manual_override,
        }

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def excludes_business_hours(self) -> bool:
        return self.tier is Tier.HIGH or not self.allowed_in_business_hours

    def describe(self) -> str:
        """The window in words: 'outside business hours', 'within wed 02:00-05:00 and outside business hours'."""
        parts = [f"within {weekly_text(self.weekly)}"] if self.weekly is not None else []
        if self.excludes_business_hours:
            parts.append("outside business hours")
        return " and ".join(parts) or "at any time"

    def local(self, moment: dt.datetime) -> dt.datetime:
        _require_aware(moment, "moment")
        return moment.astimezone(self.zone)

    def _outside_because(self, local: dt.datetime) -> str | None:
        """Why a moment that is not a freeze date is outside the window (a predicate for the local
        time), or None if it is inside."""
        name = f"the {self.tier.value} tier"
        if self.excludes_business_hours and _inside(self.business_hours, local):
            return f"is in business hours, and {name} runs only outside them"
        if self.weekly is not None and not _inside(self.weekly, local):
            return f"is outside {name}'s hours ({weekly_text(self.weekly)})"
        return None

    def is_open(self, moment: dt.datetime) -> bool:
        local = self.local(moment)
        return local.date() not in self.freeze_dates and self._outside_because(local) is None

    def verdict(self, moment: dt.datetime, *, manual: bool) -> WindowVerdict:
        """`window_verdict` for rules already taken from the policy (as the timetable holds them)."""
        local = self.local(moment)
        when, name = _local_text(local), f"the {self.tier.value} tier"

        def refused(why: str) -> WindowVerdict:
            opens = self.next_start(moment)
            then = (
                f" Its window next opens at {_local_text(opens.astimezone(self.zone))}."
                if opens is not None
                else f" Its window does not open in the next {SEARCH_DAYS} days."
            )
            return WindowVerdict(allowed=False, reason=f"Refused: {why}.{then}", next_allowed=opens)

        if local.date() in self.freeze_dates:
            day = local.date().isoformat()
            return refused(f"{day} is a freeze date ({self.timezone}); nothing runs on it, manual or not")
        if self.tier is Tier.HIGH and _inside(self.business_hours, local):
            return refused(f"{name} never runs in business hours, manual or not, and {when} is in business hours")
        outside = self._outside_because(local)
        if outside is None:
            reason = f"Allowed: {when} is inside {name}'s window ({self.describe()})."
            return WindowVerdict(allowed=True, reason=reason)
        where = f"{when} {outside}"
        if manual and self.manual_override:
            return WindowVerdict(
                allowed=True,
                reason=(
                    f"Allowed by manual override (recorded): {where}; "
                    f"the policy lets a manual run of {name} override its window."
                ),
                override_used=True,
                next_allowed=self.next_start(moment),
            )
        if not manual:
            return refused(f"{where}; a scheduled run never overrides its window")
        return refused(f"{where}; the policy does not allow a manual override for {name} (manual_override: false)")

    def next_start(self, after: dt.datetime) -> dt.datetime | None:
        """The first moment at or after `after` when the window is open (`after` itself if open), in UTC."""
        _require_aware(after, "after")
        if self.is_open(after):
            return after.astimezone(UTC)
        return next((c for c in self._boundaries(after) if self.is_open(c)), None)

    def _boundaries(self, after: dt.datetime) -> Iterator[dt.datetime]:
        """Every instant after `after` (ascending, UTC) at which the window may open, for SEARCH_DAYS days.

        Openness depends only on the local date and wall time, so it can change only where the wall
        clock crosses a day or interval boundary, or jumps at a DST transition. A boundary's wall
        time is tried with both `fold`s: in a repeated hour it happens twice; in a skipped hour
        neither instant is real, and the transition instant itself stands in for it.
        """
        zone, first = self.zone, after.astimezone(self.zone).date()
        after_utc = after.astimezone(UTC)
        for offset in range(SEARCH_DAYS + 1):
            day = first + dt.timedelta(days=offset)
            weekday = Weekday.of(day)
            times = {dt.time(0)}
            for weekly in (self.business_hours, self.weekly or {}):
                for start, end in weekly.get(weekday, []):
                    times.update(t for t in (start, end) if t is not None)
            instants = {
                dt.datetime.combine(day, t, tzinfo=zone).replace(fold=fold).astimezone(UTC)
                for t in times
                for fold in (0, 1)
            }
            instants.update(_transitions(day, zone))
            yield from sorted(i for i in instants if i > after_utc)


def _transitions(day: dt.date, zone: zoneinfo.ZoneInfo) -> list[dt.datetime]:
    """The instant (UTC, to the second) the zone's UTC offset changes during the local `day`, if it does."""
    lo = dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(UTC)
    hi = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone).astimezone(UTC)
    if lo.astimezone(zone).utcoffset() == hi.astimezone(zone).utcoffset():
        return []
    before = lo.astimezone(zone).utcoffset()
    while hi - lo > dt.timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid.astimezone(zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return [hi]


def window_verdict(
    policy: SafetyPolicy, tier: Tier | str, moment: dt.datetime, *, manual: bool
) -> WindowVerdict:
    """May a `tier` experiment inject at `moment`? (MISSION.md, "Window guard").

    On a freeze date nothing runs, ever. The high tier never runs in business hours, manual or not.
    Otherwise a moment outside the tier's window is allowed only to a manual run of a tier whose
    policy has `manual_override: true`, and the verdict then records that the override was used.
    """
    return WindowRules.for_tier(policy, tier).verdict(moment, manual=manual)


def next_window_start(policy: SafetyPolicy, tier: Tier | str, after: dt.datetime) -> dt.datetime | None:
    """The first moment at or after `after` (UTC) when `tier`'s window is open; None if it does not
    open within SEARCH_DAYS days. A moment already inside the window is returned unchanged."""
    return WindowRules.for_tier(policy, tier).next_start(after)


def span_verdict(
    policy: SafetyPolicy, tier: Tier | str, start: dt.datetime, end: dt.datetime, *, manual: bool
) -> WindowVerdict:
    """May a `tier` fault be active through the whole of [start, end)? A fault that would still be
    running when business hours begin, a freeze date starts or the tier's window closes is refused
    at its start, not discovered halfway. The verdict says whether a manual override was needed."""
    rules = WindowRules.for_tier(policy, tier)
    verdict = rules.verdict(start, manual=manual)
    if not verdict.allowed or end <= start:
        return verdict
    for moment in rules._boundaries(start):
        if moment >= end:
            break
        later = rules.verdict(moment, manual=manual)
        if not later.allowed:
            until = _local_text(end.astimezone(rules.zone))
            return dataclasses.replace(
                later, reason=f"Refused: the fault would last until {until}; {later.reason.removeprefix('Refused: ')}"
            )
        if later.override_used and not verdict.override_used:
            verdict = dataclasses.replace(later, reason=f"{later.reason} (from {_local_text(moment.astimezone(rules.zone))}, before the fault ends)")
    return verdict


def first_span_start(
    policy: SafetyPolicy, tier: Tier | str, after: dt.datetime, duration_s: float, *, manual: bool
) -> dt.datetime | None:
    """The first moment at or after `after` (UTC) at which a `tier` fault of `duration_s` seconds
    would pass `span_verdict` for its whole length; None if none does within SEARCH_DAYS days.

    Whether a span is allowed changes only where its start crosses a boundary of the window (a
    start inside an open stretch can always move back to where the stretch opened), so `after`
    and the boundaries after it are the only candidates.
    """
    rules = WindowRules.for_tier(policy, tier)
    _require_aware(after, "after")
    length = dt.timedelta(seconds=duration_s)
    for start in (after.astimezone(UTC), *rules._boundaries(after)):
        if span_verdict(policy, tier, start, start + length, manual=manual).allowed:
            return start
    return None


def local_text(policy: SafetyPolicy, moment: dt.datetime) -> str:
    """`moment` as the policy's people read it: 'Wed 2026-05-06 02:00 EDT' (the business-hours zone)."""
    _require_aware(moment, "moment")
    return _local_text(moment.astimezone(zoneinfo.ZoneInfo(policy.business_hours.timezone)))


@dataclasses.dataclass(frozen=True)
class SpanOutlook:
    """What the window says of a fault planned for [at, at + duration): the verdict, in short
    words for people ('in window', 'manual override will be used', 'cannot run before ...'), and
    when refused, the first start it would allow."""

    verdict: WindowVerdict
    at: dt.datetime
    first_start: dt.datetime | None
    words: str


def span_outlook(
    policy: SafetyPolicy, tier: Tier | str, at: dt.datetime, duration_s: float, *, manual: bool
) -> SpanOutlook:
    verdict = span_verdict(policy, tier, at, at + dt.timedelta(seconds=duration_s), manual=manual)
    if verdict.allowed:
        words = "manual override will be used" if verdict.override_used else "in window"
        return SpanOutlook(verdict, at, None, words)
    first = first_span_start(policy, tier, at, duration_s, manual=manual)
    words = f"cannot run before {local_text(policy, first)}" if first else f"cannot run in the next {SEARCH_DAYS} days"
    return SpanOutlook(verdict, at, first, words)
