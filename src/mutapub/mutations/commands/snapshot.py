"""`mutapub snapshot`: ingest and list snapshots."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from mutapub.mutations.cli import handle_errors, print_json, print_table


@click.group()
def snapshot() -> None:
    """Ingest and list snapshots of datasets."""


@snapshot.command()
@click.argument("dataset")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--date",
    "snapshot_date",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Snapshot date (YYYY-MM-DD); required unless the file name carries one.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Replace the snapshot of that date (only while nothing was published from it).",
)
@click.option(
    "--no-diff",
    "no_diff",
    is_flag=True,
    help="Do not compute the change set against the previous snapshot now.",
)
@handle_errors
def ingest(dataset: str, path: Path, snapshot_date: dt.datetime | None, replace: bool, no_diff: bool) -> None:
    """Validate a snapshot file (CSV, .csv.gz, .zip or Parquet) and register it.

    A snapshot newer than all others is diffed against the previous one right away (see `mutapub diff`).

    \b
    Example:
      mutapub snapshot ingest persons persons.csv --date 2025-10-02
    """
    from mutapub.mutations import allocator, parsing

    allocator.keep_freed_memory()  # a short command: reuse beats handing memory back
    pending = parsing.start(dataset, path)  # the file is read while the rest is imported,
    from mutapub.mutations import staging  # noqa: F401  first what the parse thread needs next
    from mutapub.mutations.snapshots import ingest_file
    from mutapub.mutations.workspace import open_workspace

    ws = open_workspace()
    day = snapshot_date.date() if snapshot_date else None
    result = ingest_file(ws, dataset, path, day, replace=replace, diff=not no_diff, pending=pending)
    for line in result.warnings:
        click.echo(f"warning: {line}" if not line.startswith(" ") else line, err=True)
    s = result.snapshot
    if result.status == "unchanged":
        click.echo(
            f"{dataset} {s.snapshot_date}: already ingested as snapshot {s.id} (same file), nothing changed"
        )
    else:
        click.echo(f"{dataset} {s.snapshot_date}: snapshot {s.id} {result.status}, {s.rows} rows")
    cs = result.change_set
    if cs is not None:
        c = cs.counts
        click.echo(
            f"change set {cs.id} against snapshot {cs.from_snapshot_id}: "
            f"{c['I']} inserts, {c['U']} updates, {c['D']} deletes"
        )


@snapshot.command("ingest-kbo")
@click.argument("zip_path", metavar="ZIP", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--force", is_flag=True, help="Accept an update whose extract number does not follow the latest."
)
@handle_errors
def ingest_kbo(zip_path: Path, force: bool) -> None:
    """Ingest a KBO Open Data full or update ZIP: one snapshot per KBO table.

    \b
    Example:
      mutapub snapshot ingest-kbo KboOpenData_0147_2025_10_12_Update.zip
    """
    from mutapub.mutations import allocator
    from mutapub.mutations.kbo import ingest_zip
    from mutapub.mutations.workspace import open_workspace

    allocator.keep_freed_memory()

    ws = open_workspace()
    result = ingest_zip(ws, zip_path, force=force)
    click.echo(
        f"KBO extract {result.meta.extract_number} ({result.meta.extract_type}), "
        f"snapshot date {result.meta.snapshot_date}:"
    )
    for r in result.tables:
        s = r.snapshot
        what = "unchanged (already ingested)" if r.status == "unchanged" else f"snapshot {s.id} {r.status}"
        click.echo(f"  {s.dataset:<20} {s.rows:>9} rows  {what}")


@snapshot.command("list")
@click.argument("dataset", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def list_(dataset: str | None, as_json: bool) -> None:
    """List registered snapshots.

    \b
    Example:
      mutapub snapshot list persons --json
    """
    from mutapub.mutations.snapshots import list_snapshots
    from mutapub.mutations.workspace import open_workspace

    rows = [
        {
            "id": s.id,
            "dataset": s.dataset,
            "date": s.snapshot_date.isoformat(),
            "rows": s.rows,
            "source": s.source,
            "sha256": s.sha256,
        }
        for s in list_snapshots(open_workspace(), dataset)
    ]
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["id", "dataset", "date", "rows", "source"])
