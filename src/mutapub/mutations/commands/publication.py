"""`mutapub publish`, `deliveries`, `retention` and `disclosures`: per-subscriber files and their trail."""

from __future__ import annotations

import getpass
import re

import click

from mutapub.mutations.cli import handle_errors, print_json, print_table


@click.command()
@click.argument("dataset", required=False)
@click.option("--dry-run", is_flag=True, help="Show the deliveries that would be published; change nothing.")
@click.option(
    "--wait", type=float, default=600, show_default=True, help="Seconds to wait for another publisher."
)
@handle_errors
def publish(dataset: str | None, dry_run: bool, wait: float) -> None:
    """Publish every snapshot not yet published, oldest first, as one file per authorised subscriber.

    \b
    Example:
      mutapub publish
      mutapub publish persons --dry-run
    """
    from mutapub.mutations.publication import publish as run
    from mutapub.mutations.workspace import open_workspace

    report = run(open_workspace(), dataset, dry_run=dry_run, wait=wait)
    verb = "would publish" if dry_run else "published"
    if not report.snapshots:
        click.echo("nothing to publish: every snapshot is published")
        return
    for name, day, snapshot_id in report.snapshots:
        click.echo(f"{name} {day} (snapshot {snapshot_id})")
    for d in report.deliveries:
        counts = f" I {d.counts['I']} U {d.counts['U']} D {d.counts['D']}" if d.counts else ""
        click.echo(f"  {verb} {d.path} ({d.kind}, seq {d.seq}){counts}")
    if not report.deliveries:
        click.echo("  no subscriber has a grant valid on these dates")


@click.group()
def deliveries() -> None:
    """List and resend deliveries."""


@deliveries.command("list")
@click.option("--subscriber", help="Only this subscriber (code).")
@click.option("--dataset", help="Only this dataset.")
@click.option("--status", type=click.Choice(["planned", "published", "expired"]), help="Only this status.")
@click.option("--not-downloaded", is_flag=True, help="Only published deliveries not yet downloaded in full.")
@click.option("--older-than", help="With --not-downloaded: only those published longer ago, e.g. 2d or 12h.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def list_(
    subscriber: str | None,
    dataset: str | None,
    status: str | None,
    not_downloaded: bool,
    older_than: str | None,
    as_json: bool,
) -> None:
    """List deliveries by subscriber, dataset and sequence number.

    \b
    Example:
      mutapub deliveries list --subscriber gent --json
      mutapub deliveries list --not-downloaded --older-than 2d
    """
    from mutapub.mutations.publication import as_dict, list_deliveries
    from mutapub.mutations.workspace import open_workspace

    if older_than and not not_downloaded:
        raise click.UsageError("--older-than goes with --not-downloaded")
    ws = open_workspace()
    found = list_deliveries(ws, subscriber=subscriber, dataset=dataset, status=status)
    if not_downloaded:
        from mutapub.mutations.tracking import not_downloaded as pending

        age = _duration(older_than) if older_than else None
        ids = {d.id for d, _code in pending(ws, older_than=age)}  # type: ignore[arg-type]
        found = [r for r in found if r[0].id in ids]
    rows = [as_dict(*r) for r in found]
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["subscriber", "dataset", "seq", "kind", "snapshot_date", "rows", "status", "path"])


@deliveries.command()
@click.argument("code")
@click.argument("dataset")
@click.option(
    "--from-seq", type=click.IntRange(min=1), required=True, help="First sequence number to resend."
)
@click.option("--actor", default=getpass.getuser, help="Who asks (recorded); default: the OS user.")
@handle_errors
def resend(code: str, dataset: str, from_seq: int, actor: str) -> None:
    """Put a subscriber's files back in its outbox, byte for byte as first published.

    \b
    Example:
      mutapub deliveries resend gent persons --from-seq 12
    """
    from mutapub.mutations.publication import resend as run
    from mutapub.mutations.workspace import open_workspace

    for d in run(open_workspace(), code, dataset, from_seq, actor):
        click.echo(f"resent {d.path} (seq {d.seq})")


@click.group()
def retention() -> None:
    """Remove old published files from the outboxes."""


def _duration(text: str) -> object:
    import datetime as dt

    m = re.fullmatch(r"(\d+)([dh])", text.strip())
    if not m:
        raise click.BadParameter(f"{text!r}: give a number of days or hours, e.g. 30d or 12h")
    n = int(m[1])
    return dt.timedelta(days=n) if m[2] == "d" else dt.timedelta(hours=n)


@retention.command()
@click.option("--older-than", default=None, help="Age, e.g. 30d (default: publication.retention_days).")
@click.option("--actor", default=getpass.getuser, help="Who asks (recorded); default: the OS user.")
@handle_errors
def purge(older_than: str | None, actor: str) -> None:
    """Remove published files past the retention period; their deliveries stay, marked expired.

    \b
    Example:
      mutapub retention purge --older-than 30d
    """
    import datetime as dt

    from mutapub.mutations.publication import purge as run
    from mutapub.mutations.workspace import open_workspace

    ws = open_workspace()
    age = (
        _duration(older_than)
        if older_than
        else dt.timedelta(days=ws.settings.section("publication")["retention_days"])
    )
    done = run(ws, age, actor)  # type: ignore[arg-type]
    click.echo(f"purged {len(done)} file(s) older than {age}")


@click.command()
@click.argument("subject")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def disclosures(subject: str, as_json: bool) -> None:
    """Every delivery that carried data about SUBJECT (an INSZ or an enterprise number), for an auditor.

    \b
    Example:
      mutapub disclosures 85073003328
      mutapub disclosures 0403.170.701 --json
    """
    from mutapub.mutations.errors import InputError
    from mutapub.mutations.tracking import disclosures as query
    from mutapub.mutations.tracking import is_subject_number
    from mutapub.mutations.workspace import open_workspace

    rows = query(open_workspace(), subject)
    if not rows and not is_subject_number(subject):
        raise InputError(
            f"disclosures: {subject!r} is neither an INSZ (11 digits) nor an enterprise or establishment "
            "number (10 digits, dots allowed) with a valid check: no delivery was found for it; check the number"
        )
    if as_json:
        print_json(rows)
        return
    print_table(
        [
            {**r, "legal_basis": ", ".join(r["legal_basis"]), "downloaded": r["first_downloaded"] or "no"}
            for r in rows
        ],
        ["date", "subscriber", "dataset", "seq", "op", "legal_basis", "downloaded"],
    )
