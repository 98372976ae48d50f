"""The command line: every command has help with an example, a missing workspace says what to do."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from tests.conftest import run_cli

from mutapub.mutations.cli import main


def _all_commands(
    group: click.Group, ctx: click.Context, prefix: str = ""
) -> list[tuple[str, click.Command]]:
    found = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        found.append((prefix + name, cmd))
        if isinstance(cmd, click.Group):
            found += _all_commands(cmd, ctx, prefix + name + " ")
    return found


def test_every_command_has_help_and_an_example() -> None:
    ctx = click.Context(main)
    commands = _all_commands(main, ctx)
    assert {"init", "snapshot ingest", "snapshot ingest-kbo", "snapshot list", "diff", "changes show"} <= {
        n for n, _ in commands
    }
    for name, cmd in commands:
        assert cmd.help, f"`mutapub {name}` has no help text"
        if not isinstance(cmd, click.Group):
            assert "Example" in cmd.help, f"`mutapub {name}` has no example"


def test_commands_on_a_missing_workspace_say_to_run_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUTAPUB_HOME", str(tmp_path / "nowhere"))
    monkeypatch.delenv("MUTAPUB_DATABASE_URL", raising=False)
    result = run_cli("snapshot", "list")
    assert result.returncode == 2
    assert "mutapub init" in result.stderr and "Traceback" not in result.stderr


def test_init_is_idempotent_and_help_lists_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUTAPUB_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("MUTAPUB_DATABASE_URL", raising=False)
    assert "created" in run_cli("init").stdout
    assert "already there" in run_cli("init").stdout
    assert (tmp_path / "ws" / "mutapub.toml").exists()
    assert "unchanged" in run_cli("db", "upgrade").stdout
    out = CliRunner().invoke(main, ["--help"]).output
    assert "snapshot" in out and "diff" in out


def test_a_command_exits_with_its_output_flushed_and_its_connections_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUTAPUB_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("MUTAPUB_DATABASE_URL", raising=False)
    run_cli("init")
    added = run_cli(
        "subscriber", "add", "gent", "--name", "Stad Gent", "--password-stdin", input="S3cure-pass-123!\n"
    )
    assert added.returncode == 0, added.stderr
    listed = run_cli("audit", "list", "--json")
    assert listed.returncode == 0 and listed.stdout.rstrip().endswith(
        "]"
    )  # the whole document, not a cut buffer
    assert not (tmp_path / "ws" / "mutapub.db-wal").exists()  # closed: the database file alone is complete
    refused = run_cli(
        "subscriber", "add", "gent", "--name", "again", "--password-stdin", input="S3cure-pass-123!\n"
    )
    assert refused.returncode != 0 and "gent" in refused.stderr


def test_an_error_prints_its_notes_after_it() -> None:
    from mutapub.mutations.cli import handle_errors
    from mutapub.mutations.errors import MutapubError

    @click.command()
    @handle_errors
    def failing() -> None:
        """Fail with a note."""
        exc = MutapubError("cannot write gent/outbox/persons/f.csv.gz: No space left on device")
        exc.add_note("the deliveries already in the outbox could not be marked published")
        raise exc

    result = CliRunner().invoke(failing, [])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "error: cannot write gent/outbox/persons/f.csv.gz: No space left on device",
        "note: the deliveries already in the outbox could not be marked published",
    ]
