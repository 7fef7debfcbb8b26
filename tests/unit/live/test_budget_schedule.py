"""The budget schedule (live/budget.py ScheduleBudget, src/powerplanner/budget_schedule.py): daily HH:MM and cron
entries in an IANA time zone, across daylight saving time, and one line for each bad entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerplanner.config import ScheduleEntry, config_from_mapping
from powerplanner.errors import ConfigError
from powerplanner.live.budget import ScheduleBudget

BERLIN = "Europe/Berlin"


def at(text: str) -> datetime:
    """An instant, written in UTC: ``2026-03-29 01:05``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def schedule(*entries: tuple[str, float], zone: str = "UTC") -> ScheduleBudget:
    def entry(when: str, watts: float) -> ScheduleEntry:
        return ScheduleEntry(cron=when, watts=watts) if " " in when else ScheduleEntry(start=when, watts=watts)

    return ScheduleBudget([entry(when, watts) for when, watts in entries], zone)


def test_cron_weekdays_and_the_weekend_keeps_fridays_last_entry() -> None:
    office = schedule(("0 8 * * 1-5", 5000), ("0 18 * * 1-5", 9000))
    assert office.watts_at(at("2026-12-04 12:00")) == 5000  # Friday noon
    assert office.watts_at(at("2026-12-05 12:00")) == 9000  # Saturday: Friday 18:00 still applies
    assert office.watts_at(at("2026-12-07 07:59")) == 9000  # Monday before 08:00
    assert office.watts_at(at("2026-12-07 08:00")) == 5000  # a start at this very minute counts


def test_a_local_daily_time_follows_daylight_saving_time() -> None:
    day = schedule(("08:00", 5000), ("20:00", 9000), zone=BERLIN)
    assert day.watts_at(at("2026-01-15 06:59")) == 9000 and day.watts_at(at("2026-01-15 07:00")) == 5000  # CET
    assert day.watts_at(at("2026-07-15 05:59")) == 9000 and day.watts_at(at("2026-07-15 06:00")) == 5000  # CEST


def test_spring_forward_a_start_in_the_skipped_hour_happens_when_the_clock_jumps() -> None:
    night = schedule(("22:00", 3000), ("02:30", 7000), zone=BERLIN)  # 2026-03-29: 02:00 CET -> 03:00 CEST
    assert night.watts_at(at("2026-03-29 00:59")) == 3000  # 01:59 CET
    assert night.watts_at(at("2026-03-29 01:00")) == 7000  # 03:00 CEST, the jump
    assert night.watts_at(at("2026-03-29 12:00")) == 7000


def test_fall_back_the_repeated_hour_keeps_the_entry() -> None:
    night = schedule(("22:00", 3000), ("02:30", 7000), ("04:00", 8000), zone=BERLIN)  # 2026-10-25 03:00 -> 02:00
    assert night.watts_at(at("2026-10-25 00:29")) == 3000  # 02:29 CEST, first pass
    assert night.watts_at(at("2026-10-25 00:45")) == 7000  # 02:45 CEST
    assert night.watts_at(at("2026-10-25 01:45")) == 7000  # 02:45 CET, second pass
    assert night.watts_at(at("2026-10-25 02:59")) == 7000  # 03:59 CET
    assert night.watts_at(at("2026-10-25 03:00")) == 8000  # 04:00 CET


def test_a_tie_takes_the_lower_budget() -> None:
    assert schedule(("0 8 * * *", 6000), ("08:00", 5000)).watts_at(at("2026-12-01 09:00")) == 5000
    assert ScheduleBudget([]).watts_at(at("2026-12-01 09:00")) is None


@st.composite
def daily_entries(draw: st.DrawFn) -> list[tuple[int, float]]:
    minutes = draw(st.lists(st.integers(0, 24 * 60 - 1), min_size=1, max_size=6, unique=True))
    return [(m, float(draw(st.integers(1, 20)) * 500)) for m in minutes]


@given(daily_entries(), st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31)))
def test_daily_utc_entries_match_the_latest_start_today_else_yesterdays_last(entries: list[tuple[int, float]],
                                                                              naive: datetime) -> None:
    now = naive.replace(tzinfo=UTC)
    budget = schedule(*((f"{m // 60:02d}:{m % 60:02d}", w) for m, w in entries))
    minute = now.hour * 60 + now.minute
    ordered = sorted(entries)
    started = [w for m, w in ordered if m <= minute]
    assert budget.watts_at(now) == (started[-1] if started else ordered[-1][1])


@given(daily_entries(), st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31)),
       st.sampled_from([BERLIN, "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]))
def test_in_any_zone_an_entry_is_always_active_and_a_lone_entry_always_applies(
        entries: list[tuple[int, float]], naive: datetime, zone: str) -> None:
    budget = schedule(*((f"{m // 60:02d}:{m % 60:02d}", w) for m, w in entries), zone=zone)
    now = naive.replace(tzinfo=UTC)
    assert budget.watts_at(now) in {w for _, w in entries}
    lone_minute, lone_watts = entries[0]
    lone = schedule((f"{lone_minute // 60:02d}:{lone_minute % 60:02d}", lone_watts), zone=zone)
    assert lone.watts_at(now) == lone.watts_at(now + timedelta(hours=13)) == lone_watts


@pytest.mark.parametrize(("budget", "says"), [
    ({"schedule": [{"cron": "0 8 * *", "watts": 1}]}, "5-field cron"),
    ({"schedule": [{"cron": "0 8 * * mon-fry", "watts": 1}]}, "5-field cron"),
    ({"schedule": [{"cron": "0 0 30 2 *", "watts": 1}]}, "never matches"),
    ({"schedule": [{"cron": "0 8 * * *", "start": "08:00", "watts": 1}]}, "either start"),
    ({"schedule": [{"watts": 1}]}, "either start"),
    ({"schedule": [{"start": "8:0x", "watts": 1}]}, "HH:MM"),
    ({"schedule_timezone": "Europe/Berlinn"}, "not an IANA time zone"),
    ({"schedule_timezone": "../../etc/passwd"}, "not an IANA time zone"),
])
def test_a_bad_schedule_is_one_line_naming_the_field(budget: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"budget": {"watts": 100, **budget}})
    (line,) = info.value.lines
    assert "budget.schedule" in line and says in line
