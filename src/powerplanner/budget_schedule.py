"""The budget schedule's entries (``budget.schedule``) and their time zone (``budget.schedule_timezone``): a daily
``HH:MM`` start or a cron expression, read in one IANA time zone.

Why croniter and zoneinfo (docs/internals.md, "Libraries instead of hand-written parts"): facility power contracts
and demand-response windows are stated in local time (``weekdays 08:00 Europe/Berlin``), which a hand-written
``HH:MM``-in-UTC parser cannot say and gets wrong by an hour twice a year. croniter is imported only when a cron
entry is checked or read, so processes without a schedule (the node agent) never load it. live/budget.py reads
the schedule (``ScheduleBudget``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from powerplanner.input_schema import InputModel, PositiveFloat


class ScheduleEntry(InputModel):
    """A budget that applies from each start until the next entry's start: ``start`` (daily ``HH:MM``) or
    ``cron`` (a 5-field cron expression), both in ``budget.schedule_timezone``."""

    start: str | None = Field(None, description="Time of day HH:MM (in budget.schedule_timezone) from which this "
                              "budget applies, daily. Give start or cron.")
    cron: str | None = Field(None, description="Cron expression (minute hour day month weekday, in "
                             "budget.schedule_timezone): this budget applies from each time it matches, e.g. "
                             "'0 8 * * 1-5' (weekdays 08:00). Give start or cron.")
    watts: PositiveFloat = Field(description="Budget in watts while this entry is active.")

    @field_validator("start")
    @classmethod
    def _hhmm(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = value.split(":")
        ok = len(parts) == 2 and all(p.isascii() and p.isdigit() for p in parts)
        if not ok or not (0 <= int(parts[0]) < 24 and 0 <= int(parts[1]) < 60):
            raise ValueError("must be a time of day HH:MM, e.g. 08:30")
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from croniter import CroniterError, croniter

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError("must be a 5-field cron expression (minute hour day month weekday), e.g. '0 8 * * 1-5'")
        try:  # a valid expression that never matches (30 February) would leave the entry forever inactive
            croniter(value, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
        except CroniterError:
            raise ValueError(f"{value!r} never matches a date; fix the day and month fields") from None
        return value

    @model_validator(mode="after")
    def _one_of(self) -> ScheduleEntry:
        if (self.start is None) == (self.cron is None):
            raise ValueError("give either start (HH:MM, daily) or cron (e.g. '0 8 * * 1-5'), not both or neither")
        return self

    def cron_expression(self) -> str:
        """The entry as cron: ``start: "06:30"`` is ``30 6 * * *``."""
        if self.cron is not None:
            return self.cron
        hours, minutes = (self.start or "00:00").split(":")
        return f"{int(minutes)} {int(hours)} * * *"


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (``UTC``, ``Europe/Berlin``); ValueError with the fix when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone; use e.g. UTC, Europe/Berlin or America/New_York") \
            from None
