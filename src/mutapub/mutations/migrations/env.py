"""Alembic environment: runs migrations on the engine mutapub hands over (never reads a URL itself)."""

from __future__ import annotations

from alembic import context

from mutapub.mutations.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
