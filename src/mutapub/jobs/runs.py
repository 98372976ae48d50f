"""Runs: one record per attempt of the job for a source and business date, and the lock per source.

A date is done once an attempt is `done`; another trigger for it is a no-op. Attempts of one source
never overlap: each holds the database lease `run:<source>`, renewed by a thread while it works, so
two schedulers, or a scheduler and an operator, never process the same source at once, and a lease
left by a crashed process expires (or, on this host, is taken over at once).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from mutapub.mutations import leases
from mutapub.mutations.errors import NotFound
from mutapub.mutations.models import Run, utcnow

log = logging.getLogger("mutapub.jobs.runs")

RUNNING, DONE, FAILED = "running", "done", "failed"


def lease_name(source: str) -> str:
    """The lease that serialises the runs of one source."""
    return f"run:{source}"


@dataclass
class Lock:
    """A held run lease; `lost` is set when renewal found it taken (the run must then stop)."""

    name: str
    holder: str
    lost: threading.Event


@contextmanager
def locked(
    sessions: sessionmaker[Session],
    source: str,
    *,
    wait: float | None = 0.0,
    ttl: dt.timedelta = dt.timedelta(minutes=10),
    poll: float = 0.5,
) -> Iterator[Lock]:
    """Hold the source's lease for the block, renewing it every third of `ttl`; LeaseHeld (exit 3) when
    another process holds it for longer than `wait` seconds (None: wait for as long as it takes)."""
    name = lease_name(source)
    holder = leases.holder_name()
    deadline = None if wait is None else time.monotonic() + wait
    while not leases.try_acquire(sessions, name, holder, ttl):
        if deadline is not None and time.monotonic() >= deadline:
            lease = leases.current(sessions, name)
            who = (
                f"{lease.holder} (until {lease.expires_at:%Y-%m-%d %H:%M:%S} UTC)" if lease else "another run"
            )
            raise leases.LeaseHeld(f"{source} is being processed by {who}; use --wait to wait for it")
        time.sleep(poll)
    lock = Lock(name, holder, threading.Event())
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl.total_seconds() / 3):
            try:
                if not leases.renew(sessions, name, holder, ttl):
                    lock.lost.set()
                    log.error("the lock %s was lost: another process took it over", name)
                    return
            except Exception:  # a database hiccup: try again at the next beat, the lease has slack
                log.warning("could not renew the lock %s; retrying", name, exc_info=True)

    renewer = threading.Thread(target=renew, name=f"renew-{name}", daemon=True)
    renewer.start()
    try:
        yield lock
    finally:
        stop.set()
        renewer.join()
        leases.release(sessions, name, holder)


def done_run(session: Session, source: str, date: dt.date) -> Run | None:
    """The attempt that completed `date` for `source`, if any."""
    return session.scalars(
        select(Run).where(Run.dataset == source, Run.run_date == date, Run.status == DONE).limit(1)
    ).one_or_none()


def last_done_date(session: Session, source: str) -> dt.date | None:
    """The latest business date completed for `source`."""
    return session.scalar(select(func.max(Run.run_date)).where(Run.dataset == source, Run.status == DONE))


def first_date(session: Session, source: str) -> dt.date | None:
    """The earliest business date ever attempted for `source`."""
    return session.scalar(select(func.min(Run.run_date)).where(Run.dataset == source))


def abandon_stale(session: Session, source: str, now: dt.datetime) -> int:
    """Mark `running` attempts of `source` failed: called while holding its lock, so their process ended."""
    done = session.execute(
        update(Run)
        .where(Run.dataset == source, Run.status == RUNNING)
        .values(
            status=FAILED,
            ended_at=now,
            error="abandoned: the process running it ended before finishing (crash or kill)",
        )
    )
    return int(done.rowcount or 0)  # type: ignore[attr-defined]


def start(
    sessions: sessionmaker[Session], source: str, date: dt.date, trigger: str, holder: str, now: dt.datetime
) -> Run:
    """Record a new attempt of `date` (the next attempt number), status running."""
    with sessions() as session, session.begin():
        abandoned = abandon_stale(session, source, now)
        if abandoned:
            log.warning("%s: %d earlier attempt(s) left running were marked failed", source, abandoned)
        attempt = (
            session.scalar(select(func.max(Run.attempt)).where(Run.dataset == source, Run.run_date == date))
            or 0
        ) + 1
        run = Run(
            dataset=source,
            run_date=date,
            attempt=attempt,
            status=RUNNING,
            trigger=trigger,
            holder=holder,
            started_at=now,
            steps=[],
            counts={},
            deliveries=0,
        )
        session.add(run)
    return run


def save(
    sessions: sessionmaker[Session],
    run: Run,
    *,
    status: str | None = None,
    ended_at: dt.datetime | None = None,
    failed_step: str | None = None,
    error: str | None = None,
) -> None:
    """Write a run's steps, counts and (when given) its outcome."""
    with sessions() as session, session.begin():
        row = session.get(Run, run.id)
        assert row is not None
        row.steps = list(run.steps)
        row.counts = dict(run.counts)
        row.deliveries = run.deliveries
        if status is not None:
            row.status = run.status = status
        if ended_at is not None:
            row.ended_at = run.ended_at = ended_at
        if failed_step is not None:
            row.failed_step = run.failed_step = failed_step
        if error is not None:
            row.error = run.error = error


def list_runs(
    sessions: sessionmaker[Session],
    *,
    source: str | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> list[Run]:
    """Runs, newest first."""
    q = select(Run).order_by(Run.started_at.desc(), Run.id.desc())
    if source is not None:
        q = q.where(Run.dataset == source)
    if status is not None:
        q = q.where(Run.status == status)
    if limit is not None:
        q = q.limit(limit)
    with sessions() as session:
        return list(session.scalars(q))


def get_run(sessions: sessionmaker[Session], run_id: int) -> Run:
    """The run with this id; NotFound otherwise."""
    with sessions() as session:
        run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run {run_id}: see `mutapub runs list`")
    return run


def _ts(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def as_dict(run: Run, detail: bool = False) -> dict[str, Any]:
    """A run as `runs list --json` (and, with `detail`, `runs show --json`) prints it."""
    doc: dict[str, Any] = {
        "id": run.id,
        "dataset": run.dataset,
        "date": run.run_date.isoformat(),
        "attempt": run.attempt,
        "status": run.status,
        "trigger": run.trigger,
        "started": _ts(run.started_at),
        "ended": _ts(run.ended_at),
        "seconds": (
            round((_aware(run.ended_at) - _aware(run.started_at)).total_seconds(), 3)
            if run.ended_at
            else None
        ),
        "deliveries": run.deliveries,
        "failed_step": run.failed_step,
        "error": run.error,
    }
    if detail:
        doc["holder"] = run.holder
        doc["steps"] = run.steps
        doc["counts"] = run.counts
    return doc


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def now_utc() -> dt.datetime:
    """The clock of the edges (commands, scheduler callbacks); the library takes `now` from them."""
    return utcnow()
