"""`mutapub policy`: declare subscribers and grants in one YAML file."""

from __future__ import annotations

from typing import IO

import click

from mutapub.mutations.cli import handle_errors
from mutapub.mutations.commands.audit import actor_option


@click.group()
def policy() -> None:
    """Declarative subscribers and grants (YAML)."""


@policy.command()
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@actor_option
@handle_errors
def apply(file: IO[str], dry_run: bool, actor: str | None) -> None:
    """Create, change and revoke so that the database matches FILE, in one transaction.

    Applying the same file twice changes nothing.

    \b
    Example:
      mutapub policy apply policy.yaml --dry-run
      mutapub policy apply policy.yaml
    """
    from mutapub.mutations import policy as policies
    from mutapub.mutations.audit import AuditContext
    from mutapub.mutations.workspace import open_workspace

    doc = policies.load(file, getattr(file, "name", "<policy>"))
    with open_workspace().sessions() as session:
        session.begin()
        try:
            changes = policies.apply(session, AuditContext.current(actor), doc)
        except BaseException:
            session.rollback()
            raise
        if dry_run:
            session.rollback()
        else:
            session.commit()
    prefix = "would " if dry_run else ""
    for line in changes:
        click.echo(prefix + line)
    if not changes:
        click.echo("nothing to change")


@policy.command()
@click.option(
    "-o", "--output", type=click.File("w", encoding="utf-8"), default="-", help="File (default stdout)."
)
@handle_errors
def export(output: IO[str]) -> None:
    """Write the current subscribers and grants as a policy file.

    \b
    Example:
      mutapub policy export -o policy.yaml
    """
    from mutapub.mutations import policy as policies
    from mutapub.mutations.workspace import open_workspace

    with open_workspace().sessions() as session:
        text = policies.dump(policies.export(session))
    output.write(text)
