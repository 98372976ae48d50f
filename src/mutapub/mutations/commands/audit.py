"""`mutapub audit`: the trail of changes to subscribers, credentials, grants and followed keys.

Also the `--actor` option every mutating command shares.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

import click

from mutapub.mutations.cli import handle_errors, print_json, print_table

F = TypeVar("F", bound=Callable[..., Any])


def actor_option(func: F) -> F:
    """Add `--actor NAME` (default: the OS user, or $MUTAPUB_ACTOR) to a mutating command."""
    return click.option(
        "--actor",
        envvar="MUTAPUB_ACTOR",
        help="Who makes the change, for the audit trail (default: the OS user).",
    )(func)


def parse_since(value: str) -> dt.datetime:
    """A date or date-time for `--since`; naive values are UTC."""
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date or date-time (YYYY-MM-DD[THH:MM])") from exc
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@click.group()
def audit() -> None:
    """Inspect the audit trail."""


@audit.command("list")
@click.option("--since", help="Only entries from this UTC date or date-time on.")
@click.option(
    "--entity", type=click.Choice(["subscriber", "grant", "follow"]), help="Only changes of this kind."
)
@click.option("--ref", help="Only entries about this record (a subscriber code, a grant id, CODE/DATASET).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def list_(since: str | None, entity: str | None, ref: str | None, as_json: bool) -> None:
    """List audit entries, oldest first.

    \b
    Example:
      mutapub audit list --since 2025-10-01 --json
      mutapub audit list --entity grant
    """
    from mutapub.mutations import audit as trail
    from mutapub.mutations.workspace import open_workspace

    when = parse_since(since) if since else None
    with open_workspace().sessions() as session:
        rows = [trail.entry_as_dict(e) for e in trail.list_entries(session, when, entity, ref)]
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["id", "at", "actor", "action", "ref", "command"])
