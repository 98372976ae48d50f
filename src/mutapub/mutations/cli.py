"""The `mutapub` command: a root group whose sub-commands come from the `mutapub.commands` entry points."""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
from collections.abc import Callable
from importlib.metadata import distribution, entry_points
from typing import Any, TypeVar

import click

from mutapub import __version__

F = TypeVar("F", bound=Callable[..., Any])
GROUP = "mutapub.commands"


class EntryPointGroup(click.Group):
    """A click group that imports a sub-command's module only when that command is used."""

    @staticmethod
    def _entry_points(everywhere: bool) -> dict[str, Any]:
        # mutapub's own commands are found in its own metadata; scanning every installed
        # distribution (for plug-ins of other packages) costs more and is done only when needed.
        own = distribution("mutapub").entry_points
        found = {ep.name: ep for ep in own if ep.group == GROUP}
        if everywhere:
            found = {ep.name: ep for ep in entry_points(group=GROUP)} | found
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self._entry_points(everywhere=True)) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        ep = self._entry_points(everywhere=False).get(cmd_name) or self._entry_points(everywhere=True).get(
            cmd_name
        )
        return ep.load() if ep is not None else None


def handle_errors(func: F) -> F:
    """Turn mutapub's errors into one clear message on stderr and the error's exit code."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from mutapub.mutations.errors import MutapubError, SchemaError

        try:
            return func(*args, **kwargs)
        except (MutapubError, SchemaError) as exc:
            click.echo(f"error: {exc}", err=True)
            for note in getattr(exc, "__notes__", ()):
                click.echo(f"note: {note}", err=True)
            sys.exit(getattr(exc, "exit_code", 1))

    return wrapper  # type: ignore[return-value]


def print_json(value: Any) -> None:
    """Print a JSON document on stdout (stable key order, UTF-8 kept)."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Print rows as aligned text columns."""
    if not rows:
        click.echo("(none)")
        return
    cells = [[str("" if r.get(c) is None else r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@click.group(cls=EntryPointGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mutapub")
def main() -> None:
    """Publish daily mutation files of government registers to authorised subscribers over FTPS.

    The workspace is $MUTAPUB_HOME (default ./mutapub-data); start with `mutapub init`.

    \b
    Example:
      mutapub init
      mutapub snapshot ingest persons persons_2025-10-01.csv
      mutapub diff persons --json
    """


def run() -> None:
    """The `mutapub` console script: run the command, then exit without tearing the interpreter down.

    Finalising the thousand-odd modules a command imports takes about 0.1 s, a fifth of a short
    command. Output is flushed, atexit handlers run (they close database connections) and no other
    thread may still be working; otherwise, and on an uncaught exception, Python exits as usual.
    """
    try:
        main()
    except SystemExit as done:
        others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
        if isinstance(done.code, int | None) and not others:
            atexit._run_exitfuncs()  # private, but what interpreter shutdown would run first
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except OSError:  # the reader went away (`mutapub … | head`): Python's own exit code for it
                os._exit(120)
            os._exit(done.code or 0)
        raise


if __name__ == "__main__":
    run()
