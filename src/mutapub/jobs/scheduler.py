"""`mutapub scheduler run`: APScheduler 3 firing the job per configured schedule, with catch-up.

The schedules are declared from `mutapub.toml` at every start-up (`replace_existing=True`, and jobs no
longer configured are removed, logged), so renamed code or configuration never leaves a stale or
missing schedule in the job store, which lives in the workspace database. What makes several
schedulers (or a scheduler and an operator's `mutapub run`) safe is not the job store but the run lock
and the run key (source, date) in `jobs.runs`: a repeated trigger, such as the doubled hour of an
autumn night, finds its date done and does nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from mutapub.jobs import job, runs, sources
from mutapub.jobs.schedules import JOB_PREFIX, Schedule, load_schedules
from mutapub.mutations.errors import ConfigError
from mutapub.mutations.leases import LeaseHeld
from mutapub.mutations.workspace import Workspace, open_workspace

log = logging.getLogger("mutapub.jobs.scheduler")

ENTRY_POINT = "mutapub.jobs.scheduler:scheduled_run"
JOBS_TABLE = "apscheduler_jobs"

Runner = Callable[..., list[job.Outcome]]


def dates_to_run(
    schedule: Schedule,
    now: dt.datetime,
    last_done: dt.date | None,
    first_attempt: dt.date | None,
    window_days: int,
) -> list[dt.date]:
    """The business dates a trigger at `now` must process, oldest first (pure).

    Every due date after the last done one (or from the first attempted one, when none is done yet);
    with no history at all, just the latest due date.
    """
    after = last_done
    if after is None and first_attempt is not None:
        after = first_attempt - dt.timedelta(days=1)
    return schedule.due_dates(now, after, window_days)


def _history(ws: Workspace, name: str) -> tuple[dt.date | None, dt.date | None]:
    with ws.sessions() as session:
        return runs.last_done_date(session, name), runs.first_date(session, name)


def tick(
    ws: Workspace,
    schedule: Schedule,
    now: dt.datetime,
    *,
    trigger: str = "schedule",
    runner: Runner = job.run_dates,
    clock: Callable[[], dt.datetime] = runs.now_utc,
) -> list[job.Outcome]:
    """What one firing of `schedule` at `now` does: run each due date not yet done, in order."""
    window = int(ws.settings.section("jobs")["catch_up_days"])
    last, first = _history(ws, schedule.name)
    dates = dates_to_run(schedule, now, last, first, window)
    if not dates:
        log.info(
            "%s: nothing due at %s (last done %s)",
            schedule.name,
            now.isoformat(timespec="seconds"),
            last,
            extra={"source": schedule.name, "event": "nothing-due"},
        )
        return []
    try:
        # wait for a run already holding the lock: it may be busy with another date of this source
        return runner(ws, schedule.name, dates, clock, wait=None, trigger=trigger)
    except LeaseHeld as exc:  # only with a finite wait
        log.warning("%s: %s", schedule.name, exc, extra={"source": schedule.name, "event": "lock-held"})
        return []


def catch_up(
    ws: Workspace,
    schedules: dict[str, Schedule],
    now: dt.datetime,
    *,
    runner: Runner = job.run_dates,
    clock: Callable[[], dt.datetime] = runs.now_utc,
) -> dict[str, list[job.Outcome]]:
    """At start-up: run the dates missed while no scheduler ran, each once and in order, logged."""
    window = int(ws.settings.section("jobs")["catch_up_days"])
    done: dict[str, list[job.Outcome]] = {}
    for name, schedule in schedules.items():
        if not schedule.enabled:
            continue
        last, first = _history(ws, name)
        tags = {"source": name, "event": "catch-up"}
        if last is None and first is None:
            log.info(
                "%s: no earlier run, so nothing to catch up; first run %s",
                name,
                _next(schedule, now),
                extra=tags,
            )
            continue
        missed = dates_to_run(schedule, now, last, first, window)
        if not missed:
            log.info("%s: nothing missed (last done %s)", name, last, extra=tags)
            continue
        log.warning(
            "%s: catching up %d missed date(s): %s",
            name,
            len(missed),
            ", ".join(map(str, missed)),
            extra={**tags, "dates": [d.isoformat() for d in missed]},
        )
        done[name] = tick(ws, schedule, now, trigger="catch-up", runner=runner, clock=clock)
    return done


def _next(schedule: Schedule, now: dt.datetime) -> str:
    nxt = schedule.next_run(now)
    return nxt.astimezone(schedule.zone).isoformat(timespec="minutes") if nxt else "never"


def scheduled_run(home: str, source: str) -> None:
    """APScheduler's entry point for one firing (`mutapub.jobs.scheduler:scheduled_run`)."""
    ws = open_workspace(Path(home))
    try:
        schedules = load_schedules(ws.settings)
        if source not in schedules:
            log.warning("%s: no longer configured; this firing does nothing", source)
            return
        tick(ws, schedules[source], runs.now_utc())
    finally:
        ws.engine.dispose()


def check_configuration(ws: Workspace) -> dict[str, Schedule]:
    """The schedules, each naming a configured source; ConfigError otherwise."""
    schedules = load_schedules(ws.settings)
    configured = sources.load_sources(ws.settings)
    for name in schedules:
        if name not in configured:
            raise ConfigError(f"[schedules.{name}] has no [sources.{name}] to take snapshots from")
    return schedules


def build(ws: Workspace, schedules: dict[str, Schedule]) -> Any:
    """A paused BackgroundScheduler with the job store in the workspace database and the schedules
    declared (replacing what the store held; jobs no longer configured are removed)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(
        timezone=dt.UTC,
        jobstores={"default": SQLAlchemyJobStore(engine=ws.engine, tablename=JOBS_TABLE)},
        # one firing at a time per schedule; firings missed while busy collapse into one, and the
        # run itself works out every due date, so nothing is lost by coalescing
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    scheduler.start(paused=True)
    for schedule in schedules.values():
        if not schedule.enabled:
            continue
        scheduler.add_job(
            ENTRY_POINT,
            trigger=schedule.trigger(),
            args=[str(ws.home), schedule.name],
            id=schedule.job_id,
            name=f"mutapub run {schedule.name}",
            replace_existing=True,
        )
        log.info(
            "%s: scheduled %r (%s), next run %s",
            schedule.name,
            schedule.cron,
            schedule.timezone,
            _next(schedule, runs.now_utc()),
            extra={"source": schedule.name, "event": "scheduled", "cron": schedule.cron},
        )
    wanted = {s.job_id for s in schedules.values() if s.enabled}
    for stored in scheduler.get_jobs():
        if stored.id.startswith(JOB_PREFIX) and stored.id not in wanted:
            scheduler.remove_job(stored.id)
            log.warning(
                "%s: no longer configured; removed from the job store", stored.id.removeprefix(JOB_PREFIX)
            )
    return scheduler


def serve(ws: Workspace, stop: threading.Event | None = None) -> None:
    """Run the scheduler until SIGTERM/SIGINT (or `stop`): declare, catch up, then fire on schedule."""
    stop = stop or threading.Event()
    schedules = check_configuration(ws)
    if not any(s.enabled for s in schedules.values()):
        raise ConfigError("no [schedules.<name>] enabled in mutapub.toml: nothing to schedule")
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _n, _f: stop.set())
    scheduler = build(ws, schedules)
    try:
        log.info("scheduler started with %d schedule(s)", len(schedules), extra={"event": "scheduler-start"})
        catch_up(ws, schedules, runs.now_utc())
        scheduler.resume()
        stop.wait()
    finally:
        log.info("scheduler stopping", extra={"event": "scheduler-stop"})
        scheduler.shutdown(wait=True)


def stored_jobs(ws: Workspace) -> dict[str, dt.datetime | None]:
    """Next run time of each schedule as the job store holds it (read without starting a scheduler)."""
    with ws.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT id, next_run_time FROM {JOBS_TABLE}")).all()
    return {
        str(i).removeprefix(JOB_PREFIX): dt.datetime.fromtimestamp(t, dt.UTC) if t is not None else None
        for i, t in rows
        if str(i).startswith(JOB_PREFIX)
    }


def overview(ws: Workspace, now: dt.datetime) -> list[dict[str, Any]]:
    """Each configured schedule with its next run, the date that run will do and the last done date."""
    out = []
    stored = stored_jobs(ws)
    for name, schedule in load_schedules(ws.settings).items():
        nxt = schedule.next_run(now) if schedule.enabled else None
        last, _first = _history(ws, name)
        out.append(
            {
                "name": name,
                "cron": schedule.cron,
                "timezone": schedule.timezone,
                "enabled": schedule.enabled,
                "next_run": nxt.astimezone(schedule.zone).isoformat(timespec="minutes") if nxt else None,
                "next_date": (
                    schedule.business_date(nxt.astimezone(schedule.zone).date()).isoformat() if nxt else None
                ),
                "last_done": last.isoformat() if last else None,
                "in_job_store": name in stored,
            }
        )
    return out
