"""Records of logins and transfers: enqueued by the I/O threads, written to the database by one writer.

The server's threads never wait on the database: `Recorder.record` puts a plain dict on a bounded
queue and, when the queue is full, appends it to a journal file instead. The writer thread drains the
queue and the journal, and on `stop` writes everything still pending before it returns. A record
carries its own id, so a journal replayed after a crash writes nothing twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mutapub.mutations.models import Delivery, Login, Subscriber, Transfer

log = logging.getLogger(__name__)

BATCH = 500


def new_id() -> str:
    """A fresh record or session id (32 hex digits)."""
    return uuid.uuid4().hex


def covered(intervals: Iterable[tuple[int, int]], size: int) -> bool:
    """Whether the byte ranges `(offset, length)` together cover every byte of a file of `size` bytes."""
    reached = 0
    for start, length in sorted(intervals):
        if start > reached:
            return False
        reached = max(reached, start + length)
        if reached >= size:
            return True
    return reached >= size


def _ts(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


class Recorder:
    """A bounded queue in front of a writer thread, spilling to `journal` past its bound."""

    def __init__(self, sessions: sessionmaker[Session], journal: Path, maxsize: int = 10000) -> None:
        self.sessions = sessions
        self.journal = journal
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=maxsize)
        self._journal_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.spilled = 0
        self.written = 0

    # --- producers (any thread; never blocks on the database)

    def record(self, kind: str, **fields: Any) -> None:
        """Queue one record (`kind` "login" or "transfer"); past the queue's bound, append it to the journal."""
        rec = {"id": new_id(), "kind": kind, **fields}
        try:
            self.queue.put_nowait(rec)
        except queue.Full:
            self._spill([rec])

    def _spill(self, records: list[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        with self._journal_lock:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            with open(self.journal, "a", encoding="utf-8") as fh:
                fh.write(lines)
                fh.flush()
                os.fsync(fh.fileno())
            self.spilled += len(records)

    # --- the writer

    def start(self) -> None:
        """Start the writer thread (it first replays a journal left by an earlier run)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mutapub-tracking", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60) -> None:
        """Write every pending record (queue and journal), then end the writer thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _draining(self) -> Path:
        return self.journal.with_name(self.journal.name + ".draining")

    def _run(self) -> None:
        backoff = 0.0
        while True:
            batch: list[dict[str, Any]] = []
            try:
                batch.append(self.queue.get(timeout=backoff or 0.2))
                while len(batch) < BATCH:
                    batch.append(self.queue.get_nowait())
            except queue.Empty:
                pass
            ok = True
            if batch:
                ok = self._write_or_spill(batch)
            if ok and (self.journal.exists() or self._draining().exists()):
                ok = self._drain_journal()
            backoff = 0.0 if ok else min(max(backoff * 2, 0.5), 5.0)
            idle = self.queue.empty() and not self.journal.exists() and not self._draining().exists()
            if self._stop.is_set() and (idle or not ok):
                if not ok:
                    # The database is unreachable: whatever is left waits in the journal for next time.
                    self._spill(self._take_all())
                    log.error("tracking: database unreachable at shutdown; records kept in %s", self.journal)
                return

    def _take_all(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out

    def _write_or_spill(self, batch: list[dict[str, Any]]) -> bool:
        try:
            write_records(self.sessions, batch)
            self.written += len(batch)
            return True
        except Exception:
            log.exception("tracking: could not write %d record(s); kept in the journal", len(batch))
            self._spill(batch)
            return False

    def _drain_journal(self) -> bool:
        draining = self._draining()
        with self._journal_lock:
            # Producers append to `journal`; the writer works on a renamed copy of its own.
            if not draining.exists() and self.journal.exists():
                os.replace(self.journal, draining)
        if not draining.exists():
            return True
        records = [json.loads(line) for line in draining.read_text(encoding="utf-8").splitlines() if line]
        try:
            for i in range(0, len(records), BATCH):
                write_records(self.sessions, records[i : i + BATCH])
        except Exception:
            log.exception("tracking: could not replay the journal %s; will retry", draining)
            return False
        self.written += len(records)
        draining.unlink()
        return True


def write_records(sessions: sessionmaker[Session], records: list[dict[str, Any]]) -> None:
    """Write records in one transaction; records already written (same id) are skipped."""
    with sessions() as session, session.begin():
        ids = [r["id"] for r in records]
        seen = set(session.scalars(select(Transfer.record_id).where(Transfer.record_id.in_(ids))))
        seen |= set(session.scalars(select(Login.record_id).where(Login.record_id.in_(ids))))
        codes = {r.get("subscriber") or r.get("username") or "" for r in records}
        found = session.execute(select(Subscriber.code, Subscriber.id).where(Subscriber.code.in_(codes)))
        subscriber_ids = {code: sid for code, sid in found}
        for rec in records:
            if rec["id"] in seen:
                continue
            seen.add(rec["id"])
            if rec["kind"] == "login":
                _write_login(session, rec, subscriber_ids)
            elif rec["kind"] == "transfer":
                _write_transfer(session, rec, subscriber_ids)
            else:
                log.warning("tracking: unknown record kind %r", rec["kind"])


def _write_login(session: Session, rec: dict[str, Any], subscriber_ids: dict[str, int]) -> None:
    username = str(rec.get("username") or "")[:64]
    session.add(
        Login(
            record_id=rec["id"],
            session=rec.get("session", ""),
            at=_ts(rec["at"]),
            username=username,
            subscriber_id=subscriber_ids.get(username),
            remote=rec.get("remote", ""),
            ok=bool(rec["ok"]),
            reason=str(rec.get("reason") or "")[:128],
            tls_version=rec.get("tls_version"),
            tls_cipher=rec.get("tls_cipher"),
        )
    )


def _write_transfer(session: Session, rec: dict[str, Any], subscriber_ids: dict[str, int]) -> None:
    subscriber_id = subscriber_ids.get(rec["subscriber"])
    delivery = None
    if rec["direction"] == "download" and subscriber_id is not None and rec.get("publish_path"):
        delivery = session.scalars(
            select(Delivery).where(
                Delivery.subscriber_id == subscriber_id, Delivery.path == rec["publish_path"]
            )
        ).first()
    transfer = Transfer(
        record_id=rec["id"],
        session=rec.get("session", ""),
        subscriber_id=subscriber_id,
        subscriber=rec["subscriber"],
        direction=rec["direction"],
        path=rec["path"],
        delivery_id=delivery.id if delivery else None,
        remote=rec.get("remote", ""),
        started_at=_ts(rec["started"]),
        ended_at=_ts(rec["ended"]),
        rest_offset=int(rec.get("rest_offset") or 0),
        bytes=int(rec.get("bytes") or 0),
        size=rec.get("size"),
        complete=bool(rec.get("complete")),
        tls_version=rec.get("tls_version"),
        tls_cipher=rec.get("tls_cipher"),
    )
    session.add(transfer)
    session.flush()
    if delivery is not None:
        _mark_downloaded(session, delivery, transfer)


def _mark_downloaded(session: Session, delivery: Delivery, transfer: Transfer) -> None:
    """A delivery is downloaded once its subscriber's transfers of it together covered every byte;
    the last download time moves each time a transfer reaching the end completes that coverage."""
    size = delivery.size if delivery.size is not None else transfer.size
    if size is None or transfer.rest_offset + transfer.bytes < size:
        return
    pieces = session.execute(
        select(Transfer.rest_offset, Transfer.bytes).where(
            Transfer.delivery_id == delivery.id,
            Transfer.subscriber_id == transfer.subscriber_id,
            Transfer.direction == "download",
        )
    )
    if not covered(((start, length) for start, length in pieces), size):
        return
    if delivery.first_downloaded_at is None:
        delivery.first_downloaded_at = transfer.ended_at
    delivery.last_downloaded_at = transfer.ended_at


@dataclass
class Store:
    """What the server needs from the workspace: subscribers (database), files, and the recorder."""

    sessions: sessionmaker[Session]
    publish_dir: Path
    recorder: Recorder

    def record(self, kind: str, **fields: Any) -> None:
        """Queue a record; never blocks."""
        self.recorder.record(kind, **fields)


def now() -> float:
    """The current time as a Unix timestamp (records carry plain numbers, JSON-safe)."""
    return time.time()
