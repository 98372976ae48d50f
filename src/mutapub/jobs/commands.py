"""`mutapub run`, `mutapub runs` and `mutapub scheduler`: the unattended job from the command line."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import click

from mutapub.mutations.cli import handle_errors, print_json, print_table

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3

_log_format = click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log lines as text, or one JSON object per line (journald, log shippers); default: log.format.",
)


def _logging(ws: Any, fmt: str | None) -> None:
    from mutapub.jobs import logs

    section = ws.settings.section("log")
    logs.configure(fmt or str(section.get("format") or "text"), str(section.get("level") or "INFO"))


@click.command()
@click.option("--date", "day", type=click.DateTime(formats=["%Y-%m-%d"]), help="Only this snapshot date.")
@click.option("--dataset", "source", help="Only this source (a dataset, or e.g. kbo); default: every source.")
@click.option("--wait", is_flag=True, help="Wait for a run holding the lock instead of exiting with 3.")
@_log_format
@handle_errors
def run(day: dt.datetime | None, source: str | None, wait: bool, log_format: str | None) -> None:
    """Run the nightly job: fetch, ingest, diff, apply inbox uploads, publish, purge.

    For each configured source ([sources.<name>] in mutapub.toml) and each snapshot date it offers that
    is not done yet, oldest first (or only --date), one run is recorded with its steps, timings and
    counts. A date already done publishes nothing and says so. A failed date holds back the later
    dates of its source until a run succeeds for it.

    Exit codes: 0 done or nothing to do, 1 a run failed, 2 usage or configuration error, 3 another
    process holds the lock of a source (--wait waits for it instead).

    \b
    Example:
      mutapub run
      mutapub run --dataset persons --date 2025-10-02
      mutapub run --wait --log-format json
    """
    from mutapub.jobs import job, runs, sources
    from mutapub.mutations.leases import LeaseHeld
    from mutapub.mutations.workspace import open_workspace

    ws = open_workspace()
    _logging(ws, log_format)
    configured = sources.load_sources(ws.settings)
    names = [source] if source else list(configured)
    if source:
        sources.source_for(ws.settings, source)
    if not names:
        click.echo("nothing to do: no [sources.<name>] in mutapub.toml (see README, 'Running unattended')")
        return
    code = EXIT_OK
    text = (log_format or ws.settings.section("log").get("format")) != "json"
    for name in names:
        try:
            dates = [day.date()] if day else job.offered_dates(ws, name)
            if not dates:
                _say(text, f"{name}: nothing new to do")
                continue
            outcomes = job.run_dates(ws, name, dates, runs.now_utc, wait=None if wait else 0.0)
        except LeaseHeld as exc:
            click.echo(f"error: {exc}", err=True)
            code = max(code, EXIT_LOCKED) if code != EXIT_FAILED else code
            continue
        except sources.SourceError as exc:
            click.echo(f"error: {exc}", err=True)
            code = EXIT_FAILED
            continue
        for o in outcomes:
            _say(text, _summary(o))
            if not o.ok:
                code = EXIT_FAILED
    sys.exit(code)


def _say(text: bool, line: str) -> None:
    if text:
        click.echo(line)


def _summary(o: Any) -> str:
    r = o.run
    if o.already_done:
        return f"{o.source} {o.date}: already done by run {r.id}; nothing published"
    if r.status == "done":
        return f"{o.source} {o.date}: done, {r.deliveries} deliver{'y' if r.deliveries == 1 else 'ies'} (run {r.id})"
    return f"{o.source} {o.date}: FAILED at {r.failed_step}: {r.error} (run {r.id}; the next run retries)"


@click.group()
def runs() -> None:
    """Show the runs of the nightly job."""


@runs.command("list")
@click.option("--dataset", "source", help="Only this source.")
@click.option("--status", type=click.Choice(["running", "done", "failed"]), help="Only this status.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def list_(source: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first: dataset, date, status, times, deliveries and error.

    \b
    Example:
      mutapub runs list --status failed
      mutapub runs list --dataset persons --json
    """
    from mutapub.jobs import runs as store
    from mutapub.mutations.workspace import open_workspace

    rows = [
        store.as_dict(r)
        for r in store.list_runs(open_workspace().sessions, source=source, status=status, limit=limit)
    ]
    if as_json:
        print_json(rows)
    else:
        print_table(
            rows, ["id", "dataset", "date", "attempt", "status", "started", "seconds", "deliveries", "error"]
        )


@runs.command()
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def show(run_id: int, as_json: bool) -> None:
    """Show one run with its steps (timings, counts) and error.

    \b
    Example:
      mutapub runs show 12 --json
    """
    from mutapub.jobs import runs as store
    from mutapub.mutations.workspace import open_workspace

    doc = store.as_dict(store.get_run(open_workspace().sessions, run_id), detail=True)
    if as_json:
        print_json(doc)
        return
    for key in (
        "id",
        "dataset",
        "date",
        "attempt",
        "status",
        "trigger",
        "holder",
        "started",
        "ended",
        "seconds",
        "deliveries",
    ):
        click.echo(f"{key}: {'' if doc[key] is None else doc[key]}")
    if doc["error"]:
        click.echo(f"failed at: {doc['failed_step']}")
        click.echo(f"error: {doc['error']}")
    click.echo("steps:")
    for s in doc["steps"]:
        extra = ", ".join(f"{k} {v}" for k, v in s.items() if k not in ("step", "seconds"))
        click.echo(f"  {s['step']:<8} {s['seconds']:>8.2f} s  {extra}".rstrip())
    if doc["counts"]:
        click.echo("counts: " + ", ".join(f"{k} {v}" for k, v in doc["counts"].items()))


@click.group()
def scheduler() -> None:
    """Run the nightly job on its schedules, or show them."""


@scheduler.command("run")
@_log_format
@handle_errors
def run_scheduler(log_format: str | None) -> None:
    """Run APScheduler with the schedules of mutapub.toml until stopped (SIGTERM or Ctrl-C).

    Schedules ([schedules.<name>]: cron and time zone, default Europe/Brussels) are declared at every
    start-up; dates missed while no scheduler ran are caught up first, each once and in order. Several
    schedulers may share one database: the run lock and the run key keep every date to one run.

    \b
    Example:
      mutapub scheduler run --log-format json
    """
    from mutapub.jobs import scheduler as sched
    from mutapub.mutations.workspace import open_workspace

    ws = open_workspace()
    _logging(ws, log_format)
    sched.serve(ws)


@scheduler.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def list_schedules(as_json: bool) -> None:
    """Show the configured schedules, their next run times and the last date done.

    \b
    Example:
      mutapub scheduler list
      mutapub scheduler list --json
    """
    from mutapub.jobs import runs as store
    from mutapub.jobs import scheduler as sched
    from mutapub.mutations.workspace import open_workspace

    rows = sched.overview(open_workspace(), store.now_utc())
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo(
            "no schedules: add [schedules.<name>] tables to mutapub.toml (see README, 'Running unattended')"
        )
        return
    print_table(rows, ["name", "cron", "timezone", "next_run", "next_date", "last_done", "enabled"])
