"""The Alembic migrations build exactly the tables the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mutapub.mutations import db
from mutapub.mutations.models import Base
from mutapub.mutations.workspace import Workspace


def test_migrations_match_the_models(workspace: Workspace) -> None:
    with workspace.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diffs = [d for d in compare_metadata(ctx, Base.metadata) if not _apscheduler(d)]
    assert diffs == []


def test_head_revision_is_the_newest_file_and_the_database_is_at_it(workspace: Workspace) -> None:
    from alembic.script import ScriptDirectory

    assert db.head_revision() == ScriptDirectory(str(db.MIGRATIONS)).get_current_head()
    assert db.current_revision(workspace.engine) == db.head_revision()


def _apscheduler(diff: object) -> bool:
    """APScheduler's job store table is created by a migration but has no model here."""
    return "apscheduler" in repr(diff)
