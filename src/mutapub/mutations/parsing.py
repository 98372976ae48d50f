"""A snapshot file parsed in a worker thread, started before a command imports its heavier modules.

This module needs only Arrow's CSV reader: `mutapub snapshot ingest` calls `start` first, so the
file is being read (Arrow's multi-threaded C++, which releases the GIL) while the command imports
the validation code, the database layer and DuckDB (about 0.5 s) on the main thread.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from mutapub.mutations import reading
from mutapub.schemas import load_schema

if TYPE_CHECKING:
    from mutapub.mutations.staging import Parsed


class Pending:
    """A parse running in a worker thread: first the rows read and validated, then the key check.

    `take` waits for both and hands the rows over, once; `take_validated` hands them over as soon as
    they are validated, with the key check still running, so the caller can write them meanwhile.
    """

    def __init__(self, validated: Future[Parsed], keys: Future[None]) -> None:
        self._validated: Future[Parsed] | None = validated
        self._keys = keys

    def take_validated(self) -> tuple[Parsed, Future[None]]:
        """The validated rows (or the parse's InputError) and the key check's future (InputError on
        a duplicate key); afterwards this object holds nothing."""
        future, self._validated = self._validated, None
        if future is None:
            raise RuntimeError("this parse was already taken")
        return future.result(), self._keys

    def take(self) -> Parsed:
        """The parsed file once its keys are checked (or the parse's InputError)."""
        parsed, keys = self.take_validated()
        keys.result()
        return parsed


def start(dataset: str, path: Path) -> Pending:
    """Read, validate and key-check a snapshot file in a worker thread; hand the result to
    `snapshots.ingest_file`. The thread is a daemon: a command that fails before taking the rows
    exits without waiting for them."""
    schema = load_schema(dataset)
    source = reading.detect(Path(path))
    validated: Future[Parsed] = Future()
    keys: Future[None] = Future()

    def work() -> None:
        for f in (validated, keys):
            f.set_running_or_notify_cancel()
        try:
            table = reading.read_table(source, schema)
            from mutapub.mutations import staging  # imported by the main thread meanwhile, as a rule

            table, warnings = staging.validate(source, schema, table)
        except BaseException as exc:  # handed to whoever takes the rows
            validated.set_exception(exc)
            keys.set_exception(exc)
            return
        validated.set_result(staging.Parsed(source, table, warnings))
        try:
            staging.check_unique(table, schema, source)
            keys.set_result(None)
        except BaseException as exc:
            keys.set_exception(exc)

    threading.Thread(target=work, name="mutapub-parse", daemon=True).start()
    return Pending(validated, keys)
