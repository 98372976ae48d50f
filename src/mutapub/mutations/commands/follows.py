"""`mutapub follow`: the subjects a subscriber follows ("inschrijvingen")."""

from __future__ import annotations

import click

from mutapub.mutations.cli import handle_errors, print_json, print_table
from mutapub.mutations.commands.audit import actor_option


@click.group()
def follow() -> None:
    """Followed keys: subjects a subscriber registered interest in; effective at the next publication."""


def _keys(keys: tuple[str, ...], file: click.File | None) -> list[str]:
    from mutapub.mutations import follows

    out = list(keys)
    if file is not None:
        out += follows.read_keys(file)  # type: ignore[arg-type]
    if not out:
        raise click.UsageError("give keys as arguments or --file CSV")
    return out


def _change(action: str, code: str, dataset: str, keys: list[str], actor: str | None) -> None:
    from mutapub.mutations import follows
    from mutapub.mutations.audit import AuditContext
    from mutapub.mutations.db import transaction
    from mutapub.mutations.workspace import open_workspace

    fn = follows.add if action == "add" else follows.remove
    with transaction(open_workspace().sessions) as session:
        result = fn(session, AuditContext.current(actor), code, dataset, keys)
    verb = "now followed" if action == "add" else "no longer followed"
    other = "already followed" if action == "add" else "were not followed"
    click.echo(
        f"{len(result.changed)} key(s) {verb} by {code} in {dataset}"
        + (f"; {len(result.unchanged)} {other}" if result.unchanged else "")
    )


@follow.command()
@click.argument("code")
@click.argument("dataset")
@click.argument("keys", nargs=-1)
@click.option(
    "--file", type=click.File("r", encoding="utf-8-sig"), help="CSV file, keys in its first column."
)
@actor_option
@handle_errors
def add(code: str, dataset: str, keys: tuple[str, ...], file: click.File | None, actor: str | None) -> None:
    """Follow KEYS of DATASET for subscriber CODE (validated and normalised).

    \b
    Example:
      mutapub follow add gent persons 85073100130
      mutapub follow add antwerpen kbo_enterprise 0403.170.701 --file enterprises.csv
    """
    _change("add", code, dataset, _keys(keys, file), actor)


@follow.command()
@click.argument("code")
@click.argument("dataset")
@click.argument("keys", nargs=-1)
@click.option(
    "--file", type=click.File("r", encoding="utf-8-sig"), help="CSV file, keys in its first column."
)
@actor_option
@handle_errors
def remove(
    code: str, dataset: str, keys: tuple[str, ...], file: click.File | None, actor: str | None
) -> None:
    """Stop following KEYS of DATASET for subscriber CODE (the history is kept).

    \b
    Example:
      mutapub follow remove gent persons 85073100130
    """
    _change("remove", code, dataset, _keys(keys, file), actor)


@follow.command("list")
@click.argument("code")
@click.argument("dataset")
@click.option("--history", is_flag=True, help="Include keys no longer followed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def list_(code: str, dataset: str, history: bool, as_json: bool) -> None:
    """List the keys CODE follows in DATASET.

    \b
    Example:
      mutapub follow list gent persons --json
    """
    from mutapub.mutations import follows
    from mutapub.mutations.workspace import open_workspace

    with open_workspace().sessions() as session:
        rows = [follows.as_dict(r) for r in follows.list_keys(session, code, dataset, history)]
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["key", "added_at", "removed_at"] if history else ["key", "added_at"])
