"""The workspace: a directory with the configuration, the database and the stored Parquet files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from mutapub.mutations import db
from mutapub.mutations.config import Settings, default_config_text, load_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


@dataclass
class Workspace:
    """Paths and database handles of one workspace; cheap to create, connects on first use."""

    settings: Settings

    @property
    def home(self) -> Path:
        """The workspace directory."""
        return self.settings.home

    @property
    def snapshots_dir(self) -> Path:
        """Normalised snapshots, `snapshots/<dataset>/<date>-<sha>.parquet`."""
        return self.home / "snapshots"

    @property
    def changesets_dir(self) -> Path:
        """Change sets, `changesets/<dataset>/<from>-<to>.parquet`."""
        return self.home / "changesets"

    @property
    def staging_dir(self) -> Path:
        """Files being written; on the same filesystem as their destination so a rename publishes them."""
        return self.home / "staging"

    @property
    def publish_dir(self) -> Path:
        """The publish tree served to subscribers."""
        return self.home / "publish"

    @cached_property
    def engine(self) -> Engine:
        """The database engine."""
        return db.make_engine(self.settings.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        """The session factory."""
        return db.session_factory(self.engine)

    def path_in(self, relative: str) -> Path:
        """A stored path (relative to the workspace) made absolute."""
        return self.home / relative

    def relative(self, path: Path) -> str:
        """A path inside the workspace as stored in the database."""
        return path.relative_to(self.home).as_posix()


def open_workspace(home: Path | None = None, *, check_database: bool = True) -> Workspace:
    """The initialised workspace at `home` (default `$MUTAPUB_HOME`); errors say to run `mutapub init`."""
    ws = Workspace(load_settings(home))
    if check_database:
        db.check_current(ws.engine)
    return ws


def init_workspace(home: Path | None = None) -> tuple[Workspace, bool]:
    """Create the workspace and its database (idempotent); return it and whether the config was new."""
    settings = load_settings(home, require_workspace=False)
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    created = not settings.config_file.exists()
    if created:
        tmp = settings.config_file.with_suffix(".toml.tmp")
        tmp.write_text(default_config_text(), encoding="utf-8")
        os.replace(tmp, settings.config_file)
    ws = Workspace(load_settings(home))
    for d in (ws.snapshots_dir, ws.changesets_dir, ws.staging_dir, ws.publish_dir):
        d.mkdir(exist_ok=True)
    db.upgrade(ws.engine)
    return ws, created
