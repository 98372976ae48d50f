"""Schedules across daylight-saving changes in Europe/Brussels, with an injected clock: every business
date runs exactly once, none is skipped in spring, none repeats in the doubled autumn hour."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from mutapub.jobs.scheduler import dates_to_run
from mutapub.jobs.schedules import Schedule

BRUSSELS = ZoneInfo("Europe/Brussels")
UTC = dt.UTC
# (year, spring-forward Sunday, fall-back Sunday) in the EU
TRANSITIONS = [
    pytest.param(dt.date(2025, 3, 30), id="spring-2025"),
    pytest.param(dt.date(2025, 10, 26), id="autumn-2025"),
    pytest.param(dt.date(2026, 3, 29), id="spring-2026"),
    pytest.param(dt.date(2026, 10, 25), id="autumn-2026"),
]
# in the skipped/doubled hour (02:xx), at its edges, and ordinary night times
CRONS = ["30 2 * * *", "0 2 * * *", "59 2 * * *", "0 3 * * *", "30 1 * * *", "0 0 * * *", "45 23 * * *"]


class FakeStore:
    """What the runs table would say: the dates done, in the order they ran."""

    def __init__(self) -> None:
        self.ran: list[dt.date] = []

    def tick(self, schedule: Schedule, now: dt.datetime) -> list[dt.date]:
        last = max(self.ran, default=None)
        first = min(self.ran, default=None)
        todo = [d for d in dates_to_run(schedule, now, last, first, 31) if d not in self.ran]
        self.ran.extend(todo)
        return todo


def _utc_steps(start: dt.datetime, end: dt.datetime, minutes: int) -> list[dt.datetime]:
    out, t = [], start
    while t <= end:
        out.append(t)
        t += dt.timedelta(minutes=minutes)
    return out


def _every_day(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


@pytest.mark.parametrize("day", TRANSITIONS)
@pytest.mark.parametrize("cron", CRONS)
def test_a_clock_ticking_through_the_change_runs_each_date_once(day: dt.date, cron: str) -> None:
    schedule = Schedule("persons", cron, "Europe/Brussels")
    store = FakeStore()
    start = dt.datetime.combine(day - dt.timedelta(days=3), dt.time(12), BRUSSELS).astimezone(UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=3), dt.time(12), BRUSSELS).astimezone(UTC)
    for now in _utc_steps(start, end, 5):  # UTC steps pass through the doubled hour twice
        store.tick(schedule, now)
    # the first tick runs the latest due date; after that every night's date exactly once, in order
    assert store.ran == _every_day(store.ran[0], store.ran[-1])
    last_due = max(
        d
        for d in _every_day(day - dt.timedelta(days=4), day + dt.timedelta(days=3))
        if schedule.moment(d) <= end
    )
    assert store.ran[-1] == schedule.business_date(last_due)
    assert store.ran[0] <= day - dt.timedelta(days=3) and store.ran[-1] >= day + dt.timedelta(days=1)


def _fires(trigger, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """The fire times of an APScheduler trigger, computed the way the scheduler does."""
    fires, previous, now = [], None, start
    while True:
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None or fire > end:
            return fires
        fires.append(fire)
        previous, now = fire, fire


@pytest.mark.parametrize("day", TRANSITIONS)
@pytest.mark.parametrize("cron", CRONS)
def test_the_scheduler_trigger_fires_once_a_day_and_each_firing_runs_its_date(
    day: dt.date, cron: str
) -> None:
    schedule = Schedule("persons", cron, "Europe/Brussels")
    start = dt.datetime.combine(day - dt.timedelta(days=3), dt.time(12), BRUSSELS)
    end = dt.datetime.combine(day + dt.timedelta(days=3), dt.time(12), BRUSSELS)
    fires = _fires(schedule.trigger(), start, end)
    local_days = [f.astimezone(BRUSSELS).date() for f in fires]
    assert local_days == _every_day(local_days[0], local_days[-1]) and len(fires) == 6
    store = FakeStore()
    for fire in fires:
        assert store.tick(schedule, fire.astimezone(UTC)) == [
            schedule.business_date(fire.astimezone(BRUSSELS).date())
        ]


@pytest.mark.parametrize("day", TRANSITIONS)
@pytest.mark.parametrize("cron", CRONS)
def test_apscheduler_cron_firings_still_give_each_date_once(day: dt.date, cron: str) -> None:
    """APScheduler's CronTrigger fires twice at 02:30 on an autumn night and, for some times, loses
    the firing after a spring change; driven by it, the ticks still run every date exactly once."""
    from apscheduler.triggers.cron import CronTrigger

    schedule = Schedule("persons", cron, "Europe/Brussels")
    start = dt.datetime.combine(day - dt.timedelta(days=3), dt.time(12), BRUSSELS)
    end = dt.datetime.combine(day + dt.timedelta(days=3), dt.time(12), BRUSSELS)
    fires = _fires(CronTrigger.from_crontab(cron, timezone=BRUSSELS), start, end)
    store = FakeStore()
    for fire in fires:
        store.tick(schedule, fire.astimezone(UTC))
    assert store.ran == _every_day(store.ran[0], store.ran[-1])
    assert store.ran[-1] == schedule.business_date(fires[-1].astimezone(BRUSSELS).date())
    if cron.startswith(("30 2", "0 2", "59 2")) and day.month == 10:
        assert len(fires) == 7  # the doubled 02:xx fired twice; one run came of it


def test_apscheduler_cron_trigger_loses_a_firing_after_the_spring_change() -> None:
    """Why the scheduler wakes on its own trigger: the defect, shown (if APScheduler fixes it, fine)."""
    from apscheduler.triggers.cron import CronTrigger

    fires = _fires(
        CronTrigger.from_crontab("0 0 * * *", timezone=BRUSSELS),
        dt.datetime(2025, 3, 29, 12, tzinfo=BRUSSELS),
        dt.datetime(2025, 4, 1, 12, tzinfo=BRUSSELS),
    )
    ours = _fires(
        Schedule("p", "0 0 * * *", "Europe/Brussels").trigger(),
        dt.datetime(2025, 3, 29, 12, tzinfo=BRUSSELS),
        dt.datetime(2025, 4, 1, 12, tzinfo=BRUSSELS),
    )
    assert [f.astimezone(BRUSSELS).day for f in ours] == [30, 31, 1]
    assert len(fires) <= 3


def test_spring_night_runs_an_hour_later_in_wall_time() -> None:
    """02:30 does not exist on 30 March 2025: the run is due at 03:30 summer time (01:30 UTC)."""
    schedule = Schedule("persons", "30 2 * * *", "Europe/Brussels")
    day = dt.date(2025, 3, 30)
    assert schedule.moment(day) == dt.datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
    assert (
        dates_to_run(schedule, dt.datetime(2025, 3, 30, 1, 29, tzinfo=UTC), dt.date(2025, 3, 28), None, 31)
        == []
    )
    assert dates_to_run(
        schedule, dt.datetime(2025, 3, 30, 1, 30, tzinfo=UTC), dt.date(2025, 3, 28), None, 31
    ) == [dt.date(2025, 3, 29)]


def test_autumn_night_runs_at_the_first_of_the_two_0230s() -> None:
    schedule = Schedule("persons", "30 2 * * *", "Europe/Brussels")
    first, second = dt.datetime(2025, 10, 26, 0, 30, tzinfo=UTC), dt.datetime(2025, 10, 26, 1, 30, tzinfo=UTC)
    assert (
        first.astimezone(BRUSSELS).strftime("%H:%M")
        == second.astimezone(BRUSSELS).strftime("%H:%M")
        == "02:30"
    )
    assert dates_to_run(schedule, first, dt.date(2025, 10, 24), None, 31) == [dt.date(2025, 10, 25)]
    assert dates_to_run(schedule, second, dt.date(2025, 10, 25), None, 31) == []


def test_dates_missed_while_down_are_due_once_each_in_order() -> None:
    schedule = Schedule("persons", "30 2 * * *", "Europe/Brussels")
    back_up = dt.datetime(2025, 10, 28, 9, 0, tzinfo=UTC)  # down from the 24th, across the autumn change
    assert dates_to_run(schedule, back_up, dt.date(2025, 10, 23), None, 31) == [
        dt.date(2025, 10, 24),
        dt.date(2025, 10, 25),
        dt.date(2025, 10, 26),
        dt.date(2025, 10, 27),
    ]
    # a date that failed (attempted, never done) is due again, and so is what came after it
    assert dates_to_run(schedule, back_up, None, dt.date(2025, 10, 26), 31) == [
        dt.date(2025, 10, 26),
        dt.date(2025, 10, 27),
    ]
    # no history at all: only the latest due date, never a backlog from nowhere
    assert dates_to_run(schedule, back_up, None, None, 31) == [dt.date(2025, 10, 27)]
    # a long outage is caught up only as far back as the window
    assert len(dates_to_run(schedule, back_up, dt.date(2025, 1, 1), None, 7)) == 8


def test_weekday_schedules_skip_weekends_by_design() -> None:
    schedule = Schedule("kbo", "0 7 * * tue-sat", "Europe/Brussels")  # KBO publishes on working days
    now = dt.datetime(2025, 11, 4, 12, tzinfo=UTC)  # a Tuesday
    assert dates_to_run(schedule, now, dt.date(2025, 10, 29), None, 31) == [
        dt.date(2025, 10, 30),
        dt.date(2025, 10, 31),
        dt.date(2025, 11, 3),
    ]


def test_next_run_and_business_date() -> None:
    schedule = Schedule("persons", "30 2 * * *", "Europe/Brussels")
    nxt = schedule.next_run(dt.datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert nxt == dt.datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 summer time, the spring night
    assert schedule.business_date(schedule.local_day(nxt)) == dt.date(2026, 3, 28)
    other = Schedule("persons", "0 6 * * *", "America/New_York", date_offset_days=0)
    assert other.moment(dt.date(2025, 11, 2)) == dt.datetime(2025, 11, 2, 11, tzinfo=UTC)
