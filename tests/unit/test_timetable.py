"""SafeWindowTimetable: the runs each tier gets, announce-ahead, restrictions, serialisation, registration."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pendulum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction
from chaos_engineering import timetables
from chaos_engineering.policy import SafetyPolicy, load_policy
from chaos_engineering.timetables import SafeWindowTimetable, planned_injection_time
from tests.unit.catalogue_support import POLICY_PATH, base_policy, mutated

REPO = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc
H72 = dt.timedelta(hours=72)


def utc(*args: int) -> pendulum.DateTime:
    return pendulum.datetime(*args, tz="UTC")


@pytest.fixture(scope="module")
def shipped() -> SafetyPolicy:
    loaded, issues = load_policy(POLICY_PATH)
    assert issues == []
    return loaded


@pytest.fixture(scope="module")
def policy(shipped: SafetyPolicy) -> SafetyPolicy:
    """The shipped policy with every tier's schedule switched on: most tests here are about it."""
    return shipped.model_copy(update={"tiers": {t: p.model_copy(update={"scheduled": True}) for t, p in shipped.tiers.items()}})


def runs(timetable, count: int, *, earliest=None, latest=None, catchup=True) -> list[DagRunInfo | None]:
    """The next `count` runs the scheduler would create, each from the one before (as it does)."""
    restriction = TimeRestriction(earliest=earliest, latest=latest, catchup=catchup)
    found, last = [], None
    for _ in range(count):
        info = timetable.next_dagrun_info(
            last_automated_data_interval=last.data_interval if last else None, restriction=restriction
        )
        found.append(info)
        if info is None:
            break
        last = info
    return found


def injections(infos) -> list[pendulum.DateTime]:
    return [info.data_interval.end for info in infos]


# All times from Fri 2026-11-20 00:00 UTC (Thu 19:00 EST), the shipped policy, America/New_York (EST = UTC-5).
EXPECTED = {
    # every 6 h (00, 06, 12, 18 local), outside business hours (Fri 08-21, Sat 08-18, Sun 10-16, Mon 08-20):
    # Fri 12/18, Sat 12, Sun 12 and Mon 12/18 are skipped.
    "low": [
        utc(2026, 11, 20, 5),  # Fri 00:00
        utc(2026, 11, 20, 11),  # Fri 06:00
        utc(2026, 11, 21, 5),  # Sat 00:00
        utc(2026, 11, 21, 11),  # Sat 06:00
        utc(2026, 11, 21, 23),  # Sat 18:00 (business hours end at 18:00, exclusive)
        utc(2026, 11, 22, 5),  # Sun 00:00
        utc(2026, 11, 22, 11),  # Sun 06:00
        utc(2026, 11, 22, 23),  # Sun 18:00
        utc(2026, 11, 23, 5),  # Mon 00:00
        utc(2026, 11, 23, 11),  # Mon 06:00
        utc(2026, 11, 24, 5),  # Tue 00:00
    ],
    # Wednesdays 03:00, inside wed 02:00-05:00.
    "medium": [utc(2026, 11, 25, 8), utc(2026, 12, 2, 8), utc(2026, 12, 9, 8), utc(2026, 12, 16, 8)],
    # The 1st at 02:00; 2027-01-01 is a freeze date, so January has no run; April is EDT (UTC-4).
    "high": [utc(2026, 12, 1, 7), utc(2027, 2, 1, 7), utc(2027, 3, 1, 7), utc(2027, 4, 1, 6)],
}


@pytest.mark.parametrize("tier", ["low", "medium", "high"])
def test_each_tier_runs_only_at_the_ticks_its_window_allows(policy, tier):
    timetable = SafeWindowTimetable.for_tier(policy, tier)
    infos = runs(timetable, len(EXPECTED[tier]), earliest=utc(2026, 11, 20))
    assert injections(infos) == EXPECTED[tier]
    assert all(timetable.window.is_open(t) for t in injections(infos))


def test_skipped_ticks_make_no_run(policy):
    low = SafeWindowTimetable.for_tier(policy, "low")
    every_tick = []
    tick = low.ticks.at_or_after(utc(2026, 11, 20))
    while tick < EXPECTED["low"][-1]:
        every_tick.append(tick)
        tick = low.ticks.next_after(tick)
    skipped = [t for t in every_tick if t not in EXPECTED["low"]]
    assert [t.astimezone(low.ticks.zone).strftime("%a %H:%M") for t in skipped] == [
        "Fri 12:00", "Fri 18:00", "Sat 12:00", "Sun 12:00", "Mon 12:00", "Mon 18:00",
    ]


def test_a_frozen_wednesday_moves_the_medium_run_a_week(policy):
    frozen = SafetyPolicy.model_validate(mutated(base_policy(), {"business_hours.freeze_dates": ["2026-12-02"]}))
    infos = runs(SafeWindowTimetable.for_tier(frozen, "medium", scheduled=True), 2, earliest=utc(2026, 11, 26))
    assert injections(infos) == [utc(2026, 12, 9, 8), utc(2026, 12, 16, 8)]


def test_high_tier_runs_are_created_72_hours_before_the_injection(policy):
    high = SafeWindowTimetable.for_tier(policy, "high")
    for info in runs(high, 4, earliest=utc(2026, 11, 20)):
        start, end = info.data_interval
        assert info.run_after == start == info.logical_date == end - H72
        assert planned_injection_time(data_interval_end=end, run_after=info.run_after) == end
    first = runs(high, 1, earliest=utc(2026, 11, 20))[0]
    assert first == DagRunInfo(run_after=utc(2026, 11, 28, 7), data_interval=DataInterval(utc(2026, 11, 28, 7), utc(2026, 12, 1, 7)))


def test_tiers_without_notice_inject_at_run_after(policy):
    info = runs(SafeWindowTimetable.for_tier(policy, "medium"), 1, earliest=utc(2026, 11, 20))[0]
    assert info.run_after == info.data_interval.start == info.data_interval.end == utc(2026, 11, 25, 8)


def test_manual_runs_inject_as_soon_as_approved(policy):
    high = SafeWindowTimetable.for_tier(policy, "high")
    triggered = utc(2026, 11, 27, 15, 4)
    assert high.infer_manual_data_interval(run_after=triggered) == DataInterval(triggered, triggered)
    # Airflow 3 gives a manual run without a logical date no data interval at all.
    assert planned_injection_time(data_interval_end=None, run_after=triggered) == triggered
    with pytest.raises(ValueError, match="has no time zone"):
        planned_injection_time(data_interval_end=None, run_after=dt.datetime(2026, 11, 27))


def test_earliest_applies_to_the_announcement(policy):
    high = SafeWindowTimetable.for_tier(policy, "high")
    assert injections(runs(high, 1, earliest=utc(2026, 11, 28, 7))) == [utc(2026, 12, 1, 7)]
    # One second later the December run could not be announced after the start date.
    assert injections(runs(high, 1, earliest=utc(2026, 11, 28, 7, 0, 1))) == [utc(2027, 2, 1, 7)]


@pytest.mark.parametrize(
    ("tier", "latest", "expected"),
    [
        ("low", utc(2026, 11, 20, 11), [utc(2026, 11, 20, 5), utc(2026, 11, 20, 11), None]),  # inclusive
        ("low", utc(2026, 11, 20, 10, 59), [utc(2026, 11, 20, 5), None]),
        ("high", utc(2026, 12, 1, 7), [utc(2026, 12, 1, 7), None]),
        ("high", utc(2026, 12, 1, 6, 59), [None]),  # announced before `latest`, but injected after it
    ],
    ids=["low-latest-inclusive", "low-latest-before-tick", "high-latest-at-injection", "high-latest-before-injection"],
)
def test_restriction_latest_applies_to_the_injection(policy, tier, latest, expected):
    infos = runs(SafeWindowTimetable.for_tier(policy, tier), 3, earliest=utc(2026, 11, 20), latest=latest)
    assert [i.data_interval.end if i else None for i in infos] == expected


# (id, tier, now, last automated run's injection, expected next injection)
NO_CATCHUP = [
    # Fri 06:20 EST: the 06:00 tick is due and the window is still open, so its run is still made.
    ("low-due-tick-window-open", "low", utc(2026, 11, 27, 11, 20), None, utc(2026, 11, 27, 11)),
    ("low-due-tick-already-run", "low", utc(2026, 11, 27, 11, 20), utc(2026, 11, 27, 11), utc(2026, 11, 28, 5)),
    # Fri 09:36 EST: business hours; a run for 06:00 now would only be refused: next is Sat 00:00.
    ("low-due-tick-window-closed", "low", utc(2026, 11, 27, 14, 36), None, utc(2026, 11, 28, 5)),
    # Old runs never pull the schedule into the past.
    ("low-old-last-run", "low", utc(2026, 11, 27, 14, 36), utc(2026, 1, 1, 5), utc(2026, 11, 28, 5)),
    # The December run is announced Sat 2026-11-28 07:00 UTC: 30 min late it is still made ...
    ("high-announcement-within-grace", "high", utc(2026, 11, 28, 7, 30), None, utc(2026, 12, 1, 7)),
    # ... two hours late it is not (too short a notice); January is frozen, so February.
    ("high-announcement-too-late", "high", utc(2026, 11, 28, 9), None, utc(2027, 2, 1, 7)),
    ("high-before-announcement", "high", utc(2026, 11, 27, 14, 36), None, utc(2026, 12, 1, 7)),
]


@pytest.mark.parametrize(("tier", "now", "last", "expected"), [c[1:] for c in NO_CATCHUP], ids=[c[0] for c in NO_CATCHUP])
def test_catchup_false(policy, monkeypatch, tier, now, last, expected):
    monkeypatch.setattr(timetables, "_utcnow", lambda: now)
    info = SafeWindowTimetable.for_tier(policy, tier).next_dagrun_info(
        last_automated_data_interval=DataInterval(last - SafeWindowTimetable.for_tier(policy, tier).announce_ahead, last)
        if last
        else None,
        restriction=TimeRestriction(earliest=utc(2026, 1, 1), latest=None, catchup=False),
    )
    assert info.data_interval.end == expected


def test_catchup_true_ignores_the_clock(policy, monkeypatch):
    monkeypatch.setattr(timetables, "_utcnow", lambda: utc(2030, 1, 1))
    infos = runs(SafeWindowTimetable.for_tier(policy, "medium"), 1, earliest=utc(2026, 11, 20))
    assert injections(infos) == [utc(2026, 11, 25, 8)]


def window_data(policy, **changes) -> dict:
    return {**SafeWindowTimetable.for_tier(policy, "low").serialize(), **changes}


def test_dst_ticks_follow_the_wall_clock(policy):
    # 2026-03-08: 02:00 EST -> 03:00 EDT. A daily 02:30 tick happens at 03:30 EDT that day, once.
    daily = SafeWindowTimetable(**window_data(policy, cron="30 2 * * *", freeze_dates=[]))
    assert injections(runs(daily, 4, earliest=utc(2026, 3, 6, 12))) == [
        utc(2026, 3, 7, 7, 30),  # 02:30 EST
        utc(2026, 3, 8, 7, 30),  # 03:30 EDT
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT
        utc(2026, 3, 10, 6, 30),
    ]
    # 2026-11-01: 02:00 EDT -> 01:00 EST. A daily 01:30 tick happens once, at its first occurrence.
    night = SafeWindowTimetable(**window_data(policy, cron="30 1 * * *", freeze_dates=[]))
    assert injections(runs(night, 3, earliest=utc(2026, 10, 31, 12))) == [
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT
        utc(2026, 11, 2, 6, 30),  # 01:30 EST
        utc(2026, 11, 3, 6, 30),
    ]


def test_a_window_that_never_opens_schedules_nothing(policy):
    never = SafeWindowTimetable(**window_data(policy, weekly={"sun": ["12:00-13:00"]}))
    assert runs(never, 1, earliest=utc(2026, 11, 20)) == [None]


@pytest.mark.parametrize("tier", ["low", "medium", "high"])
def test_serialize_round_trip(policy, tier):
    timetable = SafeWindowTimetable.for_tier(policy, tier)
    data = json.loads(json.dumps(timetable.serialize()))  # plain JSON, as stored in the metadata database
    restored = SafeWindowTimetable.deserialize(data)
    assert restored == timetable and hash(restored) == hash(timetable)
    assert restored.serialize() == data
    assert runs(restored, 3, earliest=utc(2026, 11, 20)) == runs(timetable, 3, earliest=utc(2026, 11, 20))
    assert restored != SafeWindowTimetable.deserialize({**data, "freeze_dates": []})


def test_serialised_form_is_the_policy_in_plain_words(policy):
    assert SafeWindowTimetable.for_tier(policy, "medium").serialize() == {
        "tier": "medium",
        "cron": "0 3 * * 3",
        "timezone": "America/New_York",
        "business_hours": {
            "mon": ["08:00-20:00"], "tue": ["08:00-20:00"], "wed": ["08:00-20:00"], "thu": ["08:00-20:00"],
            "fri": ["08:00-21:00"], "sat": ["08:00-18:00"], "sun": ["10:00-16:00"],
        },
        "freeze_dates": ["2026-12-24", "2026-12-25", "2026-12-31", "2027-01-01"],
        "allowed_in_business_hours": False,
        "weekly": {"wed": ["02:00-05:00"]},
        "announce_ahead_seconds": None,
        "scheduled": True,
    }


@settings(max_examples=200, deadline=None)
@given(
    tier=st.sampled_from(["low", "medium", "high"]),
    earliest=st.datetimes(dt.datetime(2020, 1, 1), dt.datetime(2035, 1, 1), timezones=st.just(UTC)),
    catchup=st.booleans(),
    after_a_run=st.booleans(),
)
def test_a_schedule_switched_off_makes_no_run_whatever_the_restriction(tier, earliest, catchup, after_a_run):
    """As shipped, no tier's schedule runs (tiers.<tier>.scheduled: false): unpausing a DAG (the
    trigger dialog's default) never starts one. The same timetable switched on does schedule."""
    shipped, _ = load_policy(POLICY_PATH)
    off = SafeWindowTimetable.for_tier(shipped, tier)
    assert off.scheduled is False
    start = pendulum.instance(earliest)
    last = DataInterval(start, start) if after_a_run else None
    restriction = TimeRestriction(earliest=start, latest=None, catchup=catchup)
    assert off.next_dagrun_info(last_automated_data_interval=last, restriction=restriction) is None
    on = SafeWindowTimetable.deserialize({**off.serialize(), "scheduled": True})
    assert runs(on, 1, earliest=utc(2026, 11, 20)) != [None]


def test_a_timetable_stored_without_the_switch_is_off(policy):
    """A serialised form without `scheduled` (written before the switch existed) schedules nothing
    until the DAG is parsed again with the policy: fail closed."""
    data = SafeWindowTimetable.for_tier(policy, "low").serialize()
    del data["scheduled"]
    assert runs(SafeWindowTimetable.deserialize(data), 1, earliest=utc(2026, 11, 20)) == [None]


def test_what_the_ui_shows_for_a_schedule_switched_off(shipped, policy):
    off, on = SafeWindowTimetable.for_tier(shipped, "high"), SafeWindowTimetable.for_tier(policy, "high")
    assert off.summary == f"manual runs only (scheduled: false); when on: {on.summary}"
    assert off.description == (
        "Scheduled runs are switched off in the safety policy (scheduled: false): manual runs only, and unpausing "
        f"the DAG does not start the schedule. When switched on: {on.description}"
    )


def test_summary_and_description(policy):
    low, high = SafeWindowTimetable.for_tier(policy, "low"), SafeWindowTimetable.for_tier(policy, "high")
    assert low.summary == "every 6 hours, outside business hours (America/New_York)"
    assert SafeWindowTimetable.for_tier(policy, "medium").summary == (
        "at 03:00, only on Wednesday, within wed 02:00-05:00 and outside business hours (America/New_York)"
    )
    assert high.summary == (
        "at 02:00, on day 1 of the month, within 00:00-06:00 daily and outside business hours, "
        "announced 72 h ahead (America/New_York)"
    )
    assert high.description == (
        "At 02:00, on day 1 of the month, within 00:00-06:00 daily and outside business hours, never on a "
        "freeze date; each run starts 72 h before its injection time (the run's data interval end) to ask "
        "for approvals (America/New_York). Ticks the window refuses make no run."
    )


def test_bad_data_is_refused_with_the_field_named(policy):
    with pytest.raises(ValueError, match=r"tier='low'\): 'every 6 h' is not a valid cron expression \(tiers.low.schedule\)"):
        SafeWindowTimetable(**window_data(policy, cron="every 6 h"))
    with pytest.raises(ValueError, match=r"invalid window data: weekly.wed.0: .2am-5am. is not a time range"):
        SafeWindowTimetable(**window_data(policy, weekly={"wed": ["2am-5am"]}))


# -- Airflow itself: the plugin registers the timetable for the dag-processor and the CLI -------------

PROBE_DAGS = '''
    import datetime as dt

    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from chaos_engineering.policy import load_policy
    from chaos_engineering.timetables import SafeWindowTimetable

    policy, _ = load_policy()
    for tier in ("low", "medium", "high"):
        with DAG(
            dag_id=f"probe_{tier}",
            schedule=SafeWindowTimetable.for_tier(policy, tier, scheduled=True),
            start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
            catchup=False,
        ):
            EmptyOperator(task_id="noop")
'''

UNREGISTERED_DAG = '''
    import datetime as dt

    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from chaos_engineering.policy import load_policy
    from chaos_engineering.timetables import SafeWindowTimetable


    class NotRegistered(SafeWindowTimetable):
        """No plugin registers this class: Airflow must refuse the DAG (proves the check can fail)."""


    policy, _ = load_policy()
    with DAG(
        dag_id="probe_unregistered",
        schedule=NotRegistered(**SafeWindowTimetable.for_tier(policy, "low").serialize()),
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        catchup=False,
    ):
        EmptyOperator(task_id="noop")
'''


PLUGINS_REPORT = """
import json, sys
from pathlib import Path
from airflow import plugins_manager, settings

package = Path(settings.PLUGINS_FOLDER, "chaos_engineering")
print(json.dumps({
    "plugins": [[p["name"], str(p["source"]), p["timetables"]] for p in plugins_manager.get_plugin_info()],
    "errors": plugins_manager.get_import_errors(),
    "bare_modules": sorted(
        name for name, module in sys.modules.items()
        if "." not in name and name != "chaos_engineering"
        and Path(getattr(module, "__file__", None) or "/").is_relative_to(package)
    ),
}))
"""


def test_airflow_parses_a_dag_on_the_timetable_with_the_plugin_registered(tmp_path, policy):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "probe.py").write_text(textwrap.dedent(PROBE_DAGS))
    (dags / "unregistered.py").write_text(textwrap.dedent(UNREGISTERED_DAG))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env |= {
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
    }
    airflow = str(Path(sys.executable).parent / "airflow")

    def cli(*args: str, returncode: int = 0) -> str:
        done = subprocess.run([airflow, *args], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == returncode, f"airflow {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        assert "Failed to import plugin" not in done.stdout + done.stderr
        assert "already registered" not in done.stdout + done.stderr
        return done.stdout

    def last_json(output: str):
        return json.loads(output.strip().splitlines()[-1])

    cli("db", "migrate")
    cli("dag-processor", "--num-runs", "1")  # the real parser: serialises each DAG into the database

    # What every Airflow process loads from the plugins folder: one plugin, no errors, and no module
    # of the package run a second time under a bare name (plugins/.airflowignore).
    loaded = subprocess.run(
        [sys.executable, "-c", PLUGINS_REPORT], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert last_json(loaded.stdout) == {
        "plugins": [
            [
                "chaos_engineering",
                "$PLUGINS_FOLDER/chaos_engineering_plugin.py",
                ["chaos_engineering.timetables.SafeWindowTimetable"],
            ]
        ],
        "errors": {},
        "bare_modules": [],
    }
    errors = last_json(cli("dags", "list-import-errors", "-o", "json", returncode=1))  # 1: there are errors
    assert [e["filepath"] for e in errors] == ["unregistered.py"]
    assert "TimetableNotRegistered" in errors[0]["error"]
    assert sorted(d["dag_id"] for d in last_json(cli("dags", "list", "-o", "json"))) == [
        "probe_high", "probe_low", "probe_medium",
    ]

    # What the dag-processor stored, through the timetable rebuilt from the database (as the scheduler does).
    (details,) = last_json(cli("dags", "details", "probe_high", "-o", "json"))
    high = SafeWindowTimetable.for_tier(policy, "high", scheduled=True)
    expected = high.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=utc(2026, 1, 1), latest=None, catchup=False),
    )
    assert details["timetable_summary"] == high.summary
    assert pendulum.parse(details["next_dagrun_data_interval_end"]) == expected.data_interval.end
    assert pendulum.parse(details["next_dagrun_run_after"]) == expected.run_after == expected.data_interval.end - H72
    printed = cli("dags", "next-execution", "probe_high", "-n", "3", "--field", "data_interval.end").splitlines()[-3:]
    following = runs(high, 3, earliest=expected.data_interval.start)
    assert [pendulum.parse(p) for p in printed] == injections(following)
