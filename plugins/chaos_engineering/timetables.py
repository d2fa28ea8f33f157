"""The Airflow timetable that schedules a tier only at the cron ticks its safe window allows."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pendulum
from cron_descriptor import CasingTypeEnum, ExpressionDescriptor, FormatException, MissingFieldException
from croniter import CroniterBadDateError, croniter

from airflow.timetables.base import DagRunInfo, DataInterval, Timetable
from chaos_engineering.policy import SafetyPolicy, Tier
from chaos_engineering.windows import UTC, WindowRules

if TYPE_CHECKING:
    from pendulum import DateTime

    from airflow.timetables.base import TimeRestriction

#: With catchup=False, how late a run with notice (announce_ahead) may still be created: later
#: than this after its announcement time, the run is skipped rather than given too short a notice.
LATE_ANNOUNCEMENT_GRACE = dt.timedelta(hours=1)

#: How far past its starting point the timetable looks for a tick its window allows before it
#: gives up (None: no further run). Two years outlast a yearly cron whose next tick is frozen.
TICK_HORIZON = dt.timedelta(days=731)


def _utcnow() -> dt.datetime:
    """The current time; a seam for tests of catchup=False."""
    return dt.datetime.now(UTC)


def _pendulum(moment: dt.datetime) -> DateTime:
    return pendulum.instance(moment).in_timezone("UTC")


#: More than any DST shift: how far before (after) a moment `CronTicks` starts reading the cron
#: so that a tick moved forward out of a skipped hour is not missed.
_DST_SLACK = dt.timedelta(hours=3)


class CronTicks:
    """A cron expression's ticks read as wall-clock times in one time zone, as aware UTC instants.

    Around DST changes: a tick on a wall time that does not exist (spring forward) happens when
    the clock has moved past it (02:30 -> 03:30 at the new offset), once; a tick on a repeated
    wall time (fall back) happens once, at its first occurrence.
    """

    def __init__(self, expression: str, timezone: str) -> None:
        self.expression, self.zone = expression, zoneinfo.ZoneInfo(timezone)

    def _reader(self, moment: dt.datetime) -> croniter:
        return croniter(self.expression, moment.astimezone(self.zone).replace(tzinfo=None))

    def _aware(self, naive: dt.datetime) -> dt.datetime:
        return naive.replace(tzinfo=self.zone).astimezone(UTC)

    def next_after(self, moment: dt.datetime) -> dt.datetime | None:
        """The first tick strictly after `moment`, or None if the expression has no further tick."""
        ticks = self._reader(moment - _DST_SLACK)
        try:
            while (tick := self._aware(ticks.get_next(dt.datetime))) <= moment:
                pass
        except CroniterBadDateError:
            return None
        return tick

    def at_or_after(self, moment: dt.datetime) -> dt.datetime | None:
        return self.next_after(moment - dt.timedelta(microseconds=1))

    def at_or_before(self, moment: dt.datetime) -> dt.datetime | None:
        """The last tick at or before `moment`, or None if there is none."""
        ticks = self._reader(moment + _DST_SLACK)
        try:
            while (tick := self._aware(ticks.get_prev(dt.datetime))) > moment:
                pass
        except CroniterBadDateError:
            return None
        return tick


def _cron_text(expression: str) -> str:
    try:
        return ExpressionDescriptor(
            expression, casing_type=CasingTypeEnum.Sentence, use_24hour_time_format=True
        ).get_description()
    except (FormatException, MissingFieldException):
        return f"cron {expression!r}"


def _hours_text(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:g} h" if hours >= 1 else f"{seconds / 60:g} min"


OFF_TEXT = (
    "Scheduled runs are switched off in the safety policy (scheduled: false): manual runs only, and "
    "unpausing the DAG does not start the schedule"
)


class SafeWindowTimetable(Timetable):
    """Runs a tier at its cron ticks (wall time in the policy's zone), keeping only the ticks at
    which its safe window allows a scheduled injection (`WindowRules.is_open`, `manual=False`);
    the other ticks make no run at all, so the UI's next run is the next one that will inject.

    **Announce ahead** (`announce_ahead_seconds`, the high tier's 72 h): a cron tick is the
    *planned injection time*. Each run is created that long before it, so its approvals are asked
    for ahead of the injection. The run's data interval spans the notice period:

    - `data_interval_start` = `logical_date` = `run_after` = tick - announce_ahead (the
      announcement; Airflow does not start a task of a run whose logical date is in the future,
      so the logical date cannot be the tick),
    - `data_interval_end` = the tick = the planned injection time.

    Without announce_ahead the interval is the tick itself (start = end = run_after). A manual run
    has the exact interval of when it was triggered, or none at all (Airflow 3 with no logical
    date): its injection is planned for as soon as it is approved. `planned_injection_time()`
    turns a run's context into that moment; the DAG's guard task waits for it and checks the
    window there again (`window_verdict`), since a run can start late or wait long on approvals.

    **Restrictions**: a run's announcement is not before the DAG's `start_date` (`earliest`) and
    its injection is not after its `end_date` (`latest`). With `catchup=False` no past tick is run,
    except the most recent one that is due, as Airflow's own cron timetable does (a re-parse or a
    scheduler restart moments after a tick must not lose its run), and only while a late run can
    still keep the rules: without notice, while the window is still open now; with notice, up to
    `LATE_ANNOUNCEMENT_GRACE` after its announcement time, never with a notice much shorter than
    promised.

    **Switch**: the schedule runs only when the policy says so (`tiers.<tier>.scheduled`,
    `disaster_recovery.scheduled`; default off). The DAGs arrive unpaused so that a manual run
    starts at once, and pausing is not the switch: Airflow's trigger dialog unpauses a paused DAG
    by default, which would otherwise turn a monthly high-risk schedule on by one manual run.
    Scheduled chaos is a reviewed policy change.

    The constructor takes only plain data (what `serialize()` returns), so the scheduler and
    api-server rebuild it without reading the policy file; build it with `for_tier()`.
    """

    def __init__(
        self,
        *,
        tier: str,
        cron: str,
        timezone: str,
        business_hours: Mapping[str, Sequence[str]],
        freeze_dates: Sequence[str | dt.date] = (),
        allowed_in_business_hours: bool = False,
        weekly: Mapping[str, Sequence[str]] | None = None,
        announce_ahead_seconds: float | None = None,
        scheduled: bool = False,
    ) -> None:
        where = f"SafeWindowTimetable(tier={tier!r})"
        if not croniter.is_valid(cron):
            raise ValueError(f"{where}: {cron!r} is not a valid cron expression (tiers.{tier}.schedule)")
        if announce_ahead_seconds is not None and announce_ahead_seconds < 0:
            raise ValueError(f"{where}: announce_ahead_seconds must not be negative (tiers.{tier}.announce_ahead)")
        try:
            self.window = WindowRules.from_plain(
                tier=tier,
                timezone=timezone,
                business_hours=business_hours,
                freeze_dates=freeze_dates,
                allowed_in_business_hours=allowed_in_business_hours,
                weekly=weekly,
            )
        except ValueError as exc:
            raise ValueError(f"{where}: invalid window data: {exc}") from exc
        self.cron = cron
        self.announce_ahead_seconds = announce_ahead_seconds
        self.scheduled = bool(scheduled)
        self.ticks = CronTicks(cron, timezone)
        self.description = self._describe()

    @classmethod
    def for_tier(
        cls, policy: SafetyPolicy, tier: Tier | str, *, cron: str | None = None, scheduled: bool | None = None
    ) -> SafeWindowTimetable:
        """The tier's schedule and its switch (or `cron` and `scheduled`, e.g. the DR drill's)
        under the tier's window and notice."""
        tier = Tier(tier)
        window = WindowRules.for_tier(policy, tier).plain()
        del window["manual_override"]  # a scheduled run never overrides its window
        return cls(
            cron=cron or policy.tiers[tier].schedule,
            announce_ahead_seconds=policy.tiers[tier].announce_ahead,
            scheduled=policy.tiers[tier].scheduled if scheduled is None else scheduled,
            **window,
        )

    @property
    def announce_ahead(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.announce_ahead_seconds or 0)

    # -- serialisation: plain data only, mirroring __init__ ------------------------------------

    def serialize(self) -> dict[str, Any]:
        window = self.window.plain()
        del window["manual_override"]
        return {**window, "cron": self.cron, "announce_ahead_seconds": self.announce_ahead_seconds, "scheduled": self.scheduled}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> SafeWindowTimetable:
        return cls(**data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SafeWindowTimetable):
            return NotImplemented
        return self.serialize() == other.serialize()

    def __hash__(self) -> int:
        return hash(json.dumps(self.serialize(), sort_keys=True))

    # -- what the UI shows ----------------------------------------------------------------------

    def _describe(self) -> str:
        text = f"{_cron_text(self.cron)}, {self.window.describe()}, never on a freeze date"
        if self.announce_ahead_seconds:
            text += (
                f"; each run starts {_hours_text(self.announce_ahead_seconds)} before its injection time"
                " (the run's data interval end) to ask for approvals"
            )
        text = f"{text} ({self.window.timezone}). Ticks the window refuses make no run."
        return text if self.scheduled else f"{OFF_TEXT}. When switched on: {text}"

    @property
    def summary(self) -> str:
        cron = _cron_text(self.cron)
        text = f"{cron[:1].lower()}{cron[1:]}, {self.window.describe()}"
        if self.announce_ahead_seconds:
            text += f", announced {_hours_text(self.announce_ahead_seconds)} ahead"
        text = f"{text} ({self.window.timezone})"
        return text if self.scheduled else f"manual runs only (scheduled: false); when on: {text}"

    # -- scheduling -----------------------------------------------------------------------------

    def first_allowed_tick(self, start: dt.datetime) -> dt.datetime | None:
        """The first tick at or after `start` at which the window allows a scheduled injection."""
        limit = start + TICK_HORIZON
        tick = self.ticks.at_or_after(start)
        while tick is not None and tick <= limit:
            if self.window.is_open(tick):
                return tick
            opens = self.window.next_start(tick)
            if opens is None:
                return None
            tick = self.ticks.at_or_after(opens)
        return None

    def _no_catchup_floor(self, now: dt.datetime) -> dt.datetime:
        """The earliest planned injection catchup=False allows. The most recent tick that is already
        due stays eligible while a late run of it can still keep the rules: Airflow recomputes the
        next run at every parse, and a parse just after a tick but before the scheduler created its
        run must not lose that run."""
        notice = self.announce_ahead
        due = self.ticks.at_or_before(now + notice)
        if due is None:
            return now + notice
        if notice:
            late = now - (due - notice)
            return due if late <= LATE_ANNOUNCEMENT_GRACE else now + notice
        return due if self.window.is_open(now) else now

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        return DataInterval.exact(run_after)

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        if not self.scheduled:
            return None
        notice = self.announce_ahead
        floors: list[dt.datetime] = []  # the planned injection may not be earlier than any of these
        if last_automated_data_interval is not None:
            after_last = self.ticks.next_after(last_automated_data_interval.end)
            if after_last is None:
                return None
            floors.append(after_last)
        if restriction.earliest is not None:
            floors.append(restriction.earliest + notice)
        if not restriction.catchup:
            floors.append(self._no_catchup_floor(_utcnow()))
        elif not floors:  # the first run of a DAG without a start_date: the next tick from now
            floors.append(_utcnow() + notice)
        tick = self.first_allowed_tick(max(floors))
        if tick is None or (restriction.latest is not None and tick > restriction.latest):
            return None
        announced = _pendulum(tick - notice)
        return DagRunInfo(run_after=announced, data_interval=DataInterval(announced, _pendulum(tick)))


def planned_injection_time(*, data_interval_end: dt.datetime | None, run_after: dt.datetime) -> dt.datetime:
    """When the fault of this run is planned to go in (UTC): the data interval end of a scheduled
    run (its cron tick, `announce_ahead` after the run was created), else `run_after` (a manual
    run: as soon as it is approved). Call it with the task context's `data_interval_end` and
    `dag_run.run_after`.
    """
    moment = data_interval_end if data_interval_end is not None else run_after
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; pass the run's aware datetimes")
    return moment.astimezone(UTC)
