"""Configuration: file, environment overrides, and clear errors for what is unknown or mistyped."""

from __future__ import annotations

from pathlib import Path

import pytest

from mutapub.mutations.config import load_settings
from mutapub.mutations.errors import ConfigError, WorkspaceMissing


def test_defaults_file_and_environment(tmp_path: Path) -> None:
    (tmp_path / "mutapub.toml").write_text('[log]\nlevel = "DEBUG"\n[publication]\nretention_days = 7\n')
    s = load_settings(tmp_path, environ={"MUTAPUB_PUBLICATION_RETENTION_DAYS": "9", "MUTAPUB_HOME": "x"})
    assert s.section("log")["level"] == "DEBUG"
    assert s.section("publication")["retention_days"] == 9
    assert s.database_url == f"sqlite:///{tmp_path / 'mutapub.db'}"
    pg = load_settings(tmp_path, environ={"MUTAPUB_DATABASE_URL": "postgresql+psycopg://u@h/db"})
    assert pg.database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    "text, message",
    [
        ("[nope]\nx = 1\n", r"unknown section \[nope\]"),
        ("[log]\ncolour = 1\n", "unknown setting log.colour"),
        ("[publication]\nretention_days = 'ten'\n", "retention_days must be int"),
        ("[log\n", "mutapub.toml"),
    ],
)
def test_bad_configuration_is_named(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "mutapub.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, environ={})


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / "mutapub.toml").write_text("")
    with pytest.raises(ConfigError, match="MUTAPUB_PUBLICATION_RETENTION_DAYS"):
        load_settings(tmp_path, environ={"MUTAPUB_PUBLICATION_RETENTION_DAYS": "ten"})


def test_missing_workspace(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceMissing, match="mutapub init"):
        load_settings(tmp_path / "none", environ={})
