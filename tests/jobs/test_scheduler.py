"""The scheduler against a real database: repeated firings are no-ops through the run key, missed dates
are caught up at start-up (logged), schedules are declared in the job store at every start-up."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import run_cli
from tests.jobs.helpers import DAY1, configure, drop_file, persons_source, published, subscriber_with_grant

from mutapub.jobs import job, runs
from mutapub.jobs import scheduler as sched
from mutapub.jobs.schedules import load_schedules
from mutapub.mutations.models import Run
from mutapub.mutations.workspace import Workspace

UTC = dt.UTC


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _scheduled(ws: Workspace, tmp_path: Path, days: list[dt.date], cron: str = "30 2 * * *") -> Workspace:
    ws = persons_source(ws, tmp_path / "drop")
    for day in days:
        drop_file(tmp_path / "drop", day, DAY1)
    return configure(ws, f'[schedules.persons]\ncron = "{cron}"\ntimezone = "Europe/Brussels"')


def _done(ws: Workspace) -> list[dt.date]:
    return sorted(r.run_date for r in runs.list_runs(ws.sessions, status="done"))


def test_firings_through_the_autumn_change_run_each_date_once_in_the_database(
    workspace: Workspace, tmp_path: Path
) -> None:
    """The real job, fired by the scheduler's trigger and by a repeated firing in the doubled hour."""
    ws = _scheduled(workspace, tmp_path, _days(dt.date(2025, 10, 23), dt.date(2025, 10, 28)))
    subscriber_with_grant(ws)
    schedule = load_schedules(ws.settings)["persons"]
    trigger = schedule.trigger()
    now = dt.datetime(2025, 10, 24, 12, tzinfo=UTC)
    previous = None
    ticks = []
    while True:
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        if fire > dt.datetime(2025, 10, 28, 12, tzinfo=UTC):
            break
        ticks.append(fire)
        previous, now = fire, fire
    ticks.append(dt.datetime(2025, 10, 26, 1, 30, tzinfo=UTC))  # 02:30 again, winter time: a repeat
    ticks.append(dt.datetime(2025, 10, 26, 1, 31, tzinfo=UTC))
    for moment in sorted(ticks):
        sched.tick(ws, schedule, moment)
    assert _done(ws) == _days(dt.date(2025, 10, 24), dt.date(2025, 10, 27))
    with ws.sessions() as s:
        assert s.query(Run).count() == 4  # no attempt came of the repeated firings
    assert [seq for seq, _d in published(ws)] == [1, 2, 3, 4]
    ws.engine.dispose()


def _fake_runner(ws: Workspace, ran: list[dt.date]):  # type: ignore[no-untyped-def]
    """Records runs in the real table the way the job does, without fetching anything."""

    def run(_ws, source, dates, clock, *, wait=0.0, trigger="cli"):  # type: ignore[no-untyped-def]
        out = []
        for date in dates:
            with ws.sessions() as s:
                if runs.done_run(s, source, date) is not None:
                    continue
            r = runs.start(ws.sessions, source, date, trigger, "test", clock())
            runs.save(ws.sessions, r, status=runs.DONE, ended_at=clock())
            ran.append(date)
            out.append(job.Outcome(source, date, r))
        return out

    return run


@pytest.mark.parametrize(
    "start, end",
    [
        (dt.datetime(2025, 3, 27, tzinfo=UTC), dt.datetime(2025, 4, 2, tzinfo=UTC)),
        (dt.datetime(2025, 10, 23, tzinfo=UTC), dt.datetime(2025, 10, 29, tzinfo=UTC)),
        (dt.datetime(2026, 3, 26, tzinfo=UTC), dt.datetime(2026, 4, 1, tzinfo=UTC)),
        (dt.datetime(2026, 10, 22, tzinfo=UTC), dt.datetime(2026, 10, 28, tzinfo=UTC)),
    ],
    ids=["spring-2025", "autumn-2025", "spring-2026", "autumn-2026"],
)
def test_two_schedulers_ticking_every_ten_minutes_run_each_date_once(
    workspace: Workspace, tmp_path: Path, start: dt.datetime, end: dt.datetime
) -> None:
    """Two schedulers on one database, their clocks five minutes apart, across each DST change."""
    ws = _scheduled(workspace, tmp_path, [])
    schedule = load_schedules(ws.settings)["persons"]
    ran: list[dt.date] = []
    runner = _fake_runner(ws, ran)
    moment = start
    while moment <= end:
        for skew in (dt.timedelta(0), dt.timedelta(minutes=5)):
            at = moment + skew
            sched.tick(ws, schedule, at, runner=runner, clock=lambda at=at: at)
        moment += dt.timedelta(minutes=10)
    assert ran == _days(ran[0], ran[-1]) and len(ran) >= 5
    ws.engine.dispose()


def test_missed_dates_are_caught_up_at_start_up_once_each_in_order(
    workspace: Workspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = _scheduled(workspace, tmp_path, [])
    schedules = load_schedules(ws.settings)
    ran: list[dt.date] = []
    runner = _fake_runner(ws, ran)
    fake_now = dt.datetime(2025, 10, 23, 12, tzinfo=UTC)
    sched.tick(ws, schedules["persons"], fake_now, runner=runner, clock=lambda: fake_now)
    assert ran == [dt.date(2025, 10, 22)]
    # down from the 23rd noon to the 28th morning, across the autumn change
    back = dt.datetime(2025, 10, 28, 9, tzinfo=UTC)
    with caplog.at_level(logging.INFO, logger="mutapub"):
        sched.catch_up(ws, schedules, back, runner=runner, clock=lambda: back)
        sched.catch_up(ws, schedules, back, runner=runner, clock=lambda: back)  # a second start-up
    assert ran == _days(dt.date(2025, 10, 22), dt.date(2025, 10, 27))
    assert (
        "catching up 5 missed date(s): 2025-10-23, 2025-10-24, 2025-10-25, 2025-10-26, 2025-10-27"
        in caplog.text
    )
    assert "nothing missed" in caplog.text
    assert {r.trigger for r in runs.list_runs(ws.sessions) if r.run_date > dt.date(2025, 10, 22)} == {
        "catch-up"
    }
    ws.engine.dispose()


def test_nothing_is_caught_up_without_an_earlier_run(
    sqlite_workspace: Workspace, tmp_path: Path, caplog
) -> None:  # type: ignore[no-untyped-def]
    ws = _scheduled(sqlite_workspace, tmp_path, [])
    ran: list[dt.date] = []
    with caplog.at_level(logging.INFO, logger="mutapub"):
        sched.catch_up(
            ws,
            load_schedules(ws.settings),
            dt.datetime(2025, 10, 28, tzinfo=UTC),
            runner=_fake_runner(ws, ran),
        )
    assert ran == [] and "nothing to catch up" in caplog.text
    ws.engine.dispose()


def test_schedules_are_declared_in_the_job_store_at_every_start_up(
    workspace: Workspace, tmp_path: Path
) -> None:
    ws = _scheduled(workspace, tmp_path, [])
    scheduler = sched.build(ws, sched.check_configuration(ws))
    scheduler.shutdown(wait=False)
    stored = sched.stored_jobs(ws)
    assert set(stored) == {"persons"}
    expected = load_schedules(ws.settings)["persons"].next_run(runs.now_utc())
    assert stored["persons"] is not None and abs((stored["persons"] - expected).total_seconds()) < 1  # type: ignore[operator]
    # renamed in the configuration: the old schedule goes, the new one comes, at the next start-up
    text = ws.settings.config_file.read_text().replace("[schedules.persons]", "[schedules.vehicles]")
    ws.settings.config_file.write_text(
        text + '\n[sources.vehicles]\npath = "/tmp"\nglob = "vehicles_*.csv"\n'
    )
    ws2 = configure(ws, "")
    scheduler = sched.build(ws2, sched.check_configuration(ws2))
    scheduler.shutdown(wait=False)
    assert set(sched.stored_jobs(ws2)) == {"vehicles"}
    listed = json.loads(run_cli("scheduler", "list", "--json").stdout)
    assert [(r["name"], r["cron"], r["timezone"], r["in_job_store"]) for r in listed] == [
        ("vehicles", "30 2 * * *", "Europe/Brussels", True)
    ]
    assert listed[0]["next_run"].endswith(("+01:00", "+02:00"))
    ws.engine.dispose()
    ws2.engine.dispose()


def test_a_schedule_without_a_source_is_a_configuration_error(sqlite_workspace: Workspace) -> None:
    configure(sqlite_workspace, '[schedules.persons]\ncron = "30 2 * * *"')
    done = run_cli("scheduler", "run")
    assert done.returncode == 2 and "has no [sources.persons]" in done.stderr
    bad = configure(sqlite_workspace, "").settings.config_file
    bad.write_text(bad.read_text().replace('cron = "30 2 * * *"', 'cron = "61 2 * * *"'))
    assert run_cli("scheduler", "list").returncode == 2


def test_scheduler_process_catches_up_logs_json_and_stops_on_sigterm(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    today = dt.datetime.now(UTC).astimezone(__import__("zoneinfo").ZoneInfo("Europe/Brussels")).date()
    days = _days(today - dt.timedelta(days=4), today - dt.timedelta(days=1))
    # a schedule that is due every day at 00:00, so the last four dates are due whatever the hour
    ws = _scheduled(sqlite_workspace, tmp_path, days, cron="0 0 * * *")
    subscriber_with_grant(ws)
    assert job.run_date(ws, "persons", days[0], runs.now_utc()).ok  # an earlier run: the anchor of catch-up
    proc = subprocess.Popen(
        [sys.executable, "-m", "mutapub.mutations.cli", "scheduler", "run", "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    deadline = time.monotonic() + 90
    while _done(ws) != days[:-1] + [days[-1]] and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert _done(ws) == days
    events = [json.loads(line) for line in err.splitlines()]
    catch = [e for e in events if e.get("event") == "catch-up" and e["level"] == "warning"]
    assert catch and catch[0]["dates"] == [d.isoformat() for d in days[1:]]
    assert {"scheduler-start", "scheduled", "scheduler-stop", "run-done"} <= {e.get("event") for e in events}
    assert sched.stored_jobs(ws)["persons"] is not None
    ws.engine.dispose()
