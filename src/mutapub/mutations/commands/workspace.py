"""`mutapub init` and `mutapub db`: create a workspace and migrate its database."""

from __future__ import annotations

import click

from mutapub.mutations.cli import handle_errors


@click.command()
@handle_errors
def init() -> None:
    """Create the workspace ($MUTAPUB_HOME) and its database; safe to run again.

    \b
    Example:
      MUTAPUB_HOME=/srv/mutapub mutapub init
    """
    from mutapub.mutations.workspace import init_workspace

    ws, created = init_workspace()
    what = "created" if created else "already there, database migrated to the latest revision"
    click.echo(f"workspace {ws.home}: {what}")
    click.echo(f"database: {ws.engine.url.render_as_string(hide_password=True)}")


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command()
@handle_errors
def upgrade() -> None:
    """Apply pending migrations to the workspace's database.

    \b
    Example:
      MUTAPUB_DATABASE_URL=postgresql+psycopg://mutapub@db/mutapub mutapub db upgrade
    """
    from mutapub.mutations import db as database
    from mutapub.mutations.workspace import open_workspace

    ws = open_workspace(check_database=False)
    before = database.current_revision(ws.engine)
    database.upgrade(ws.engine)
    after = database.current_revision(ws.engine)
    click.echo(f"database at revision {after}" + (" (unchanged)" if before == after else f" (was {before})"))
