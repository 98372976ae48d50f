"""The nightly job for one source and business date: fetch, ingest, diff, inbox, publish, purge.

Every attempt is recorded as a run with per-step timings and counts. A failure at any step records the
run as failed with the step and the reason and publishes nothing for that date: the snapshot ingest is
all-or-nothing, publication happens last, and the next run retries from the start (what an earlier
attempt completed, such as a registered snapshot, is found again rather than redone).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mutapub.jobs import inbox, runs, sources
from mutapub.mutations import changesets, publication
from mutapub.mutations.errors import MutapubError
from mutapub.mutations.models import Run
from mutapub.mutations.snapshots import find_snapshot, ingest_file, latest_snapshot
from mutapub.mutations.workspace import Workspace
from mutapub.schemas import SchemaError

log = logging.getLogger("mutapub.jobs.job")


class RunFailed(MutapubError):
    """A step of the job failed; the run is recorded as failed and the next run retries."""


class DiskFull(RunFailed):
    """The workspace has less free space than `jobs.min_free_mb`."""


@dataclass
class Outcome:
    """What one call of the job did for a date: ran it (done or failed) or found it already done."""

    source: str
    date: dt.date
    run: Run
    already_done: bool = False

    @property
    def ok(self) -> bool:
        """Whether the date is done (now or before)."""
        return self.already_done or self.run.status == runs.DONE


@dataclass
class _Recorder:
    """Times the steps of a run, logs them and writes them to its record as they end."""

    ws: Workspace
    run: Run
    lock: runs.Lock
    current: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        if self.lock.lost.is_set():
            raise RunFailed(f"the lock {self.lock.name} was lost to another process; stopping")
        self.current = name
        detail: dict[str, Any] = {}
        tags = {**self.extra, "step": name}
        log.info(
            "%s %s: %s …", self.run.dataset, self.run.run_date, name, extra={**tags, "event": "step-start"}
        )
        began = time.monotonic()
        yield detail
        seconds = round(time.monotonic() - began, 3)
        self.run.steps = [*self.run.steps, {"step": name, "seconds": seconds, **detail}]
        shown = ", ".join(f"{k} {v}" for k, v in detail.items())
        log.info(
            "%s %s: %s done in %.1f s%s",
            self.run.dataset,
            self.run.run_date,
            name,
            seconds,
            f" ({shown})" if shown else "",
            extra={
                **tags,
                "event": "step-end",
                "seconds": seconds,
                **{f"n_{k}": v for k, v in detail.items()},
            },
        )
        runs.save(self.ws.sessions, self.run)


def _settings(ws: Workspace) -> dict[str, Any]:
    return dict(ws.settings.section("jobs"))


def check_space(ws: Workspace, min_free_mb: int) -> int:
    """Free megabytes on the workspace's filesystem; DiskFull below `min_free_mb`."""
    free = shutil.disk_usage(ws.home).free // (1024 * 1024)
    if free < min_free_mb:
        raise DiskFull(
            f"the workspace {ws.home} has {free} MB free, less than jobs.min_free_mb = {min_free_mb}: "
            "nothing was published; free some space and the next run retries"
        )
    return free


def run_date(
    ws: Workspace,
    source: str,
    date: dt.date,
    now: dt.datetime,
    *,
    wait: float | None = 0.0,
    trigger: str = "cli",
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Do the whole job for `source` and business `date` once: a date already done is left alone.

    Raises LeaseHeld (exit 3) when another process holds the source's lock longer than `wait` seconds;
    every other failure is recorded in the returned (failed) run.
    """
    cfg = sources.source_for(ws.settings, source)
    js = _settings(ws)
    ttl = dt.timedelta(seconds=int(js["lock_ttl_seconds"]))
    tags = {"source": source, "date": date.isoformat()}
    with runs.locked(ws.sessions, source, wait=wait, ttl=ttl) as lock:
        with ws.sessions() as session:
            done = runs.done_run(session, source, date)
        if done is not None:
            log.info(
                "%s %s: already done by run %d; nothing to publish",
                source,
                date,
                done.id,
                extra={**tags, "event": "already-done", "run": done.id},
            )
            return Outcome(source, date, done, already_done=True)
        run = runs.start(ws.sessions, source, date, trigger, lock.holder, now)
        tags["run"] = run.id  # type: ignore[assignment]
        log.info(
            "%s %s: run %d (attempt %d, %s) started",
            source,
            date,
            run.id,
            run.attempt,
            trigger,
            extra={**tags, "event": "run-start", "trigger": trigger, "attempt": run.attempt},
        )
        rec = _Recorder(ws, run, lock, extra=tags)
        began = time.monotonic()
        try:
            _steps(ws, cfg, rec, date, now, js, sleep)
        except (MutapubError, SchemaError, OSError) as exc:
            message = _reason(exc)
            runs.save(
                ws.sessions,
                run,
                status=runs.FAILED,
                ended_at=now + dt.timedelta(seconds=time.monotonic() - began),
                failed_step=rec.current,
                error=message,
            )
            log.error(
                "%s %s: run %d failed at %s: %s",
                source,
                date,
                run.id,
                rec.current,
                message,
                extra={**tags, "event": "run-failed", "step": rec.current, "error": message},
            )
            return Outcome(source, date, run)
        runs.save(
            ws.sessions, run, status=runs.DONE, ended_at=now + dt.timedelta(seconds=time.monotonic() - began)
        )
        log.info(
            "%s %s: run %d done: %d deliveries published",
            source,
            date,
            run.id,
            run.deliveries,
            extra={**tags, "event": "run-done", "deliveries": run.deliveries},
        )
        return Outcome(source, date, run)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, MutapubError):
        return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    return str(exc)


def _steps(
    ws: Workspace,
    cfg: sources.SourceConfig,
    rec: _Recorder,
    date: dt.date,
    now: dt.datetime,
    js: dict[str, Any],
    sleep: Callable[[float], None],
) -> None:
    run = rec.run
    min_free = int(js["min_free_mb"])
    with rec.step("space") as d:
        d["free_mb"] = check_space(ws, min_free)
    with rec.step("fetch") as d:
        with sources.connect(cfg) as conn:
            offer = sources.pick(cfg, sources.offers(cfg, conn, sleep=sleep), date)
            fetched = sources.fetch(ws, cfg, conn, offer)
        d.update(file=offer.name, bytes=fetched.size, complete_by=offer.proof, verified=fetched.verified)
        run.counts = {**run.counts, "file": offer.name, "sha256": fetched.sha256}
    with rec.step("ingest") as d:
        rows = _ingest(ws, cfg, fetched.path, date)
        d["rows"] = rows
        run.counts = {**run.counts, "rows": rows}
    with rec.step("diff") as d:
        totals = {"I": 0, "U": 0, "D": 0}
        for dataset in cfg.datasets:
            cs = _diff(ws, dataset, date)
            if cs is not None:
                totals["I"] += cs.inserts
                totals["U"] += cs.updates
                totals["D"] += cs.deletes
        d.update(inserts=totals["I"], updates=totals["U"], deletes=totals["D"])
        run.counts = {**run.counts, "inserts": totals["I"], "updates": totals["U"], "deletes": totals["D"]}
    with rec.step("inbox") as d:
        accepted = rejected = files = 0
        for dataset in cfg.datasets:
            got = inbox.process(ws, dataset, now, float(js["inbox_settle_seconds"]))
            accepted, rejected, files = (
                accepted + got.accepted,
                rejected + got.rejected,
                files + len(got.files),
            )
        d.update(files=files, accepted=accepted, rejected=rejected)
        run.counts = {
            **run.counts,
            "inbox_files": files,
            "inbox_accepted": accepted,
            "inbox_rejected": rejected,
        }
    with rec.step("publish") as d:
        check_space(ws, min_free)
        written = 0
        for dataset in cfg.datasets:
            report = publication.publish(ws, dataset, wait=float(js["lock_ttl_seconds"]))
            written += len(report.deliveries)
        run.deliveries = written
        d["files"] = written
    with rec.step("purge") as d:
        days = int(ws.settings.section("publication").get("retention_days", 30))
        purged = publication.purge(ws, dt.timedelta(days=days), actor="mutapub run")
        d["files"] = len(purged)
        run.counts = {**run.counts, "purged": len(purged)}


def _ingest(ws: Workspace, cfg: sources.SourceConfig, path: Any, date: dt.date) -> int:
    """Register the fetched file's snapshot(s) for `date`; the row count (KBO: of all its tables)."""
    if cfg.format == "kbo":
        from mutapub.mutations import kbo

        result = kbo.ingest_zip(ws, path)
        if result.meta.snapshot_date != date:
            raise RunFailed(
                f"{path.name} holds the snapshot of {result.meta.snapshot_date}, not {date}: "
                f"check sources.{cfg.name}.date_offset_days"
            )
        return sum(r.snapshot.rows for r in result.tables)
    with ws.sessions() as session:
        newer = latest_snapshot(session, cfg.name)
    if newer is not None and newer.snapshot_date > date and find_snapshot_of(ws, cfg.name, date) is None:
        raise RunFailed(
            f"{cfg.name} already has a snapshot of {newer.snapshot_date}, later than {date}: "
            "dates are processed in order"
        )
    return ingest_file(ws, cfg.name, path, date, diff=False).snapshot.rows


def find_snapshot_of(ws: Workspace, dataset: str, date: dt.date) -> Any:
    """The snapshot of `dataset` at `date`, if registered."""
    with ws.sessions() as session:
        return find_snapshot(session, dataset, date)


def _diff(ws: Workspace, dataset: str, date: dt.date) -> Any:
    """The change set into `date`'s snapshot from the one before, computed once; None for a first one."""
    with ws.sessions() as session:
        snap = find_snapshot(session, dataset, date)
        previous = latest_snapshot(session, dataset, before=date)
    if snap is None or previous is None:
        return None
    return changesets.compute(ws, dataset, previous.id, snap.id).change_set


# --- which dates ----------------------------------------------------------------------------------


def offered_dates(ws: Workspace, source: str) -> list[dt.date]:
    """The snapshot dates the source offers that are not yet done (after the last done date), oldest first."""
    cfg = sources.source_for(ws.settings, source)
    with sources.connect(cfg) as conn:
        found = sources.offers(cfg, conn, sleep=lambda _s: None)  # completeness is judged when run
    with ws.sessions() as session:
        last = runs.last_done_date(session, source)
    return [d for d in sources.dates_offered(found) if last is None or d > last]


def run_dates(
    ws: Workspace,
    source: str,
    dates: list[dt.date],
    clock: Callable[[], dt.datetime],
    *,
    wait: float | None = 0.0,
    trigger: str = "cli",
) -> list[Outcome]:
    """Run the dates in order, stopping at the first failure: a later date is never published before
    an earlier one, so a failed date blocks its successors until it is retried."""
    out = []
    for date in dates:
        outcome = run_date(ws, source, date, clock(), wait=wait, trigger=trigger)
        out.append(outcome)
        if not outcome.ok:
            rest = dates[dates.index(date) + 1 :]
            if rest:
                log.warning(
                    "%s: %s failed, so %s wait(s) for the next run",
                    source,
                    date,
                    ", ".join(map(str, rest)),
                    extra={"source": source, "event": "held-back", "dates": [d.isoformat() for d in rest]},
                )
            break
    return out
