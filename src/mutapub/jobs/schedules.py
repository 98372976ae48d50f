"""When each dataset runs: cron expressions in a time zone, and which business dates are due at a moment.

Pure functions of `now`, so that daylight-saving changes are tested with an injected clock. A business
date is due once its scheduled local time has passed; the days a cron expression selects are found on
the calendar (through a copy of the trigger in UTC, which has no gaps or doubled hours), never by
counting fire times, so a DST change can neither skip a date nor produce one twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from mutapub.mutations.config import Settings
from mutapub.mutations.errors import ConfigError

JOB_PREFIX = "mutapub-run:"


@dataclass(frozen=True)
class Schedule:
    """One configured schedule: the source it runs, a cron expression and its time zone."""

    name: str
    cron: str
    timezone: str
    date_offset_days: int = -1
    enabled: bool = True

    @property
    def job_id(self) -> str:
        """The APScheduler job id of this schedule."""
        return JOB_PREFIX + self.name

    @cached_property
    def zone(self) -> ZoneInfo:
        """The schedule's time zone."""
        return ZoneInfo(self.timezone)

    def trigger(self) -> ScheduleTrigger:
        """The APScheduler trigger that wakes the scheduler when a date becomes due."""
        return ScheduleTrigger(self.cron, self.timezone)

    def local_day(self, moment: dt.datetime) -> dt.date:
        """The calendar day in the schedule's zone at `moment`."""
        return moment.astimezone(self.zone).date()

    def first_time(self, day: dt.date) -> dt.time | None:
        """The first wall-clock time the cron selects on `day`, or None when `day` is not selected."""
        return _first_time(self.cron, day)

    def moment(self, day: dt.date) -> dt.datetime | None:
        """When `day`'s run is due (UTC): its local time; a time skipped by DST counts an hour later,
        a doubled time counts at its first occurrence."""
        at = self.first_time(day)
        if at is None:
            return None
        # zoneinfo reads a wall time in a spring gap with the offset before the change (02:30 → 03:30
        # summer time) and a doubled autumn time as its first occurrence (fold=0): both what we want.
        return dt.datetime.combine(day, at, self.zone).astimezone(dt.UTC)

    def business_date(self, day: dt.date) -> dt.date:
        """The snapshot date a run on local `day` processes."""
        return day + dt.timedelta(days=self.date_offset_days)

    def due_dates(self, now: dt.datetime, after: dt.date | None, window_days: int) -> list[dt.date]:
        """Business dates due at `now`, oldest first: those after `after` (None: only the latest due
        date), looking back at most `window_days` days."""
        today = self.local_day(now)
        days = []
        for back in range(window_days, -1, -1):
            day = today - dt.timedelta(days=back)
            when = self.moment(day)
            if when is not None and when <= now:
                days.append(self.business_date(day))
        if after is None:
            return days[-1:]
        return [d for d in days if d > after]

    def next_run(self, now: dt.datetime) -> dt.datetime | None:
        """The next moment (UTC) a run becomes due after `now`."""
        day = self.local_day(now)
        for ahead in range(0, 400):
            when = self.moment(day + dt.timedelta(days=ahead))
            if when is not None and when > now:
                return when
        return None


class ScheduleTrigger(BaseTrigger):
    """An APScheduler 3 trigger firing once per selected day, at `Schedule.moment`.

    APScheduler's own CronTrigger is not used to wake the scheduler because it can lose a firing next
    to a DST change (3.11 goes from 30 March 00:00 straight to 1 April 00:00 for `0 0 * * *`) and
    fires twice in a doubled hour; this one fires exactly once per day, checked by the DST tests.
    """

    def __init__(self, cron: str, timezone: str) -> None:
        self.cron, self.timezone = cron, timezone
        CronTrigger.from_crontab(cron, timezone=ZoneInfo(timezone))  # validate now, not at the first firing

    def get_next_fire_time(
        self, previous_fire_time: dt.datetime | None, now: dt.datetime
    ) -> dt.datetime | None:
        schedule = Schedule("", self.cron, self.timezone)
        if previous_fire_time is not None:
            return schedule.next_run(previous_fire_time)
        return schedule.next_run(now - dt.timedelta(microseconds=1))

    def __getstate__(self) -> dict[str, Any]:
        return {"version": 1, "cron": self.cron, "timezone": self.timezone}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.cron, self.timezone = state["cron"], state["timezone"]

    def __str__(self) -> str:
        return f"cron[{self.cron}] in {self.timezone}, once a day"

    def __repr__(self) -> str:
        return f"<ScheduleTrigger {self.cron!r} {self.timezone}>"


@lru_cache(maxsize=4096)
def _calendar(cron: str) -> CronTrigger:
    # the same fields evaluated in UTC: which days fire and at which wall-clock time, free of DST
    return CronTrigger.from_crontab(cron, timezone=dt.UTC)


@lru_cache(maxsize=65536)
def _first_time(cron: str, day: dt.date) -> dt.time | None:
    fire = _calendar(cron).get_next_fire_time(None, dt.datetime.combine(day, dt.time(0), dt.UTC))
    if fire is None or fire.date() != day:
        return None
    return fire.time().replace(tzinfo=None)


def load_schedules(settings: Settings) -> dict[str, Schedule]:
    """The `[schedules.<name>]` tables of the configuration, checked."""
    default_zone = str(settings.section("jobs").get("timezone") or "Europe/Brussels")
    out: dict[str, Schedule] = {}
    raw: Mapping[str, Any] = settings.section("schedules")
    for name, values in raw.items():
        schedule = Schedule(
            name=name,
            cron=values["cron"],
            timezone=values["timezone"] or default_zone,
            date_offset_days=values["date_offset_days"],
            enabled=values["enabled"],
        )
        try:
            schedule.zone  # noqa: B018 - checked now rather than at the first run
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"schedules.{name}.timezone: unknown time zone {schedule.timezone!r}") from exc
        try:
            schedule.trigger()
        except ValueError as exc:
            raise ConfigError(f"schedules.{name}.cron: {schedule.cron!r}: {exc}") from exc
        out[name] = schedule
    return out
