"""Shared fixtures: workspaces on SQLite and on PostgreSQL, and the mutapub command as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mutapub.mutations.workspace import Workspace, init_workspace

ROOT = Path(__file__).resolve().parent.parent
KBO_FULL = ROOT / "examples" / "kbo" / "KboOpenData_0146_2025_10_11_Full.zip"
KBO_UPDATE = ROOT / "examples" / "kbo" / "KboOpenData_0147_2025_10_12_Update.zip"
PG_URL = os.environ.get("MUTAPUB_TEST_DATABASE_URL", "")


def _pg_schema_url(schema: str) -> str:
    """The test server's URL with a search_path confined to one schema, so tests never see each other."""
    url = make_url(PG_URL)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: SQLite in tmp_path, or a new schema on the PostgreSQL test server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mutapub.db'}"
        return
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must set MUTAPUB_TEST_DATABASE_URL (see .ci/run)")
        pytest.skip(
            "PostgreSQL tests need MUTAPUB_TEST_DATABASE_URL (e.g. postgresql+psycopg://user@localhost/db)"
        )
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def workspace(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """An initialised workspace, once on SQLite and once on PostgreSQL; MUTAPUB_HOME points at it."""
    home = tmp_path / "ws"
    monkeypatch.setenv("MUTAPUB_HOME", str(home))
    monkeypatch.setenv("MUTAPUB_DATABASE_URL", database_url)
    ws, _ = init_workspace(home)
    yield ws
    ws.engine.dispose()


@pytest.fixture
def sqlite_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """An initialised workspace on SQLite only, for tests of files rather than of the database."""
    home = tmp_path / "ws"
    monkeypatch.setenv("MUTAPUB_HOME", str(home))
    monkeypatch.delenv("MUTAPUB_DATABASE_URL", raising=False)
    ws, _ = init_workspace(home)
    yield ws
    ws.engine.dispose()


def run_cli(
    *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the real `mutapub` console entry point in a subprocess with the current environment."""
    return subprocess.run(
        [sys.executable, "-m", "mutapub.mutations.cli", *args],
        input=input,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
