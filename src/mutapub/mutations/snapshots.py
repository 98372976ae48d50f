"""Snapshots in the store: ingesting a file (staged by `staging`), registering, finding and listing."""

from __future__ import annotations

import datetime as dt
import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from mutapub.mutations import duck, parsing
from mutapub.mutations.errors import Conflict, InputError
from mutapub.mutations.models import ChangeSet, Delivery, Snapshot
from mutapub.mutations.parsing import Pending
from mutapub.mutations.staging import file_sha256, write_parquet
from mutapub.mutations.workspace import Workspace
from mutapub.schemas import Schema, load_schema

_DATE_IN_NAME = re.compile(r"(?<!\d)(\d{4})[-_]?(\d{2})[-_]?(\d{2})(?!\d)")


@dataclass
class IngestResult:
    """What an ingest did: the snapshot, whether it is new, warnings about kept rows, and the change
    set against the previous snapshot when it was computed right away."""

    snapshot: Snapshot
    status: str  # "registered", "unchanged" or "replaced"
    warnings: list[str] = field(default_factory=list)
    change_set: ChangeSet | None = None


def date_from_name(name: str) -> dt.date | None:
    """The date a file name carries (`persons_2025-10-02.csv`, `..._20251002.csv`), if any."""
    for m in _DATE_IN_NAME.finditer(name):
        try:
            return dt.date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            continue
    return None


def ingest_file(
    ws: Workspace,
    dataset: str,
    path: Path,
    snapshot_date: dt.date | None = None,
    *,
    replace: bool = False,
    diff: bool = True,
    pending: Pending | None = None,
) -> IngestResult:
    """Ingest one snapshot file of `dataset`; refuse it whole, registering nothing, if any row is bad.

    With `diff`, a snapshot newer than every other is diffed against the previous one at once: the
    nightly job needs that change set next anyway. `pending` is this file's parse if already started
    (`parsing.start`).
    """
    schema = load_schema(dataset)
    path = Path(path)
    if snapshot_date is None:
        snapshot_date = date_from_name(path.name)
        if snapshot_date is None:
            raise InputError(f"{path}: the file name carries no date: give --date YYYY-MM-DD")
    with ThreadPoolExecutor(
        1
    ) as pool:  # hashing and writing overlap parsing and imports: all release the GIL
        sha = pool.submit(file_sha256, path)
        result = _ingest(ws, schema, path, pending, sha, pool, snapshot_date, replace, diff)
    if diff and result.status != "unchanged":
        pa.default_memory_pool().release_unused()  # hand the parsed rows' memory back before DuckDB runs
        result.change_set = _diff_with_previous(ws, result.snapshot)
    return result


def _ingest(
    ws: Workspace,
    schema: Schema,
    path: Path,
    pending: Pending | None,
    sha: Future[str],
    pool: ThreadPoolExecutor,
    snapshot_date: dt.date,
    replace: bool,
    diff: bool,
) -> IngestResult:
    dataset = schema.name
    with ws.sessions() as session:
        existing = find_snapshot(session, dataset, snapshot_date)
        if existing is not None:
            if existing.sha256 == sha.result():
                return IngestResult(existing, "unchanged")
            if not replace:
                raise Conflict(
                    f"{path}: {dataset} already has snapshot {existing.id} for {snapshot_date} from another file "
                    f"({existing.source}); use --replace to replace it"
                )
            if published_from(session, existing):
                raise Conflict(
                    f"{path}: snapshot {existing.id} of {dataset} for {snapshot_date} was already published to "
                    "subscribers and cannot be replaced; ingest the correction as the next day's snapshot"
                )
    if pending is None:
        pending = parsing.start(schema.name, path)
    parsed, keys = pending.take_validated()
    # The rows are written while their keys are checked: a duplicate then only costs a staging file.
    staged = pool.submit(write_parquet, ws, parsed.table, schema)
    try:
        if diff:
            duck.load()  # while the Parquet file is written
        keys.result()
    except BaseException:
        staged.add_done_callback(_discard_staged)  # once written: the pool's shutdown waits for it
        raise
    tmp = staged.result()
    try:
        snap = register(
            ws,
            schema,
            tmp,
            snapshot_date=snapshot_date,
            source=str(path.absolute()),
            sha256=sha.result(),
            rows=parsed.table.num_rows,
            replace=replace,
        )
    finally:
        tmp.unlink(missing_ok=True)
    return IngestResult(snap, "replaced" if existing is not None else "registered", parsed.warnings)


def _discard_staged(staged: Future[Path]) -> None:
    """Remove a staged Parquet file whose snapshot was refused (the write may have failed itself)."""
    if not staged.cancelled() and staged.exception() is None:
        staged.result().unlink(missing_ok=True)


def _diff_with_previous(ws: Workspace, snap: Snapshot) -> ChangeSet | None:
    # From the stored files, once the ingested rows are freed: DuckDB streams Parquet with less memory
    # (and no more time) than it scans the Arrow table still in memory.
    with ws.sessions() as session:
        previous = latest_snapshot(session, snap.dataset, before=snap.snapshot_date)
        newest = latest_snapshot(session, snap.dataset)
    if previous is None or newest is None or newest.id != snap.id:
        return None
    from mutapub.mutations import changesets  # changesets builds on this module

    return changesets.compute(ws, snap.dataset, previous.id, snap.id).change_set


def published_from(session: Session, snap: Snapshot) -> bool:
    """Whether any delivery (planned or published) was made from this snapshot."""
    used = select(Delivery.id).where(
        (Delivery.snapshot_id == snap.id) | (Delivery.from_snapshot_id == snap.id)
    )
    return session.scalars(used.limit(1)).first() is not None


def find_snapshot(session: Session, dataset: str, snapshot_date: dt.date) -> Snapshot | None:
    """The snapshot of `dataset` at `snapshot_date`, if registered."""
    return session.scalars(
        select(Snapshot).where(Snapshot.dataset == dataset, Snapshot.snapshot_date == snapshot_date)
    ).one_or_none()


def latest_snapshot(session: Session, dataset: str, before: dt.date | None = None) -> Snapshot | None:
    """The newest snapshot of `dataset` (strictly before `before`, when given)."""
    q = select(Snapshot).where(Snapshot.dataset == dataset)
    if before is not None:
        q = q.where(Snapshot.snapshot_date < before)
    return session.scalars(q.order_by(Snapshot.snapshot_date.desc()).limit(1)).one_or_none()


def list_snapshots(ws: Workspace, dataset: str | None = None) -> list[Snapshot]:
    """Registered snapshots by dataset and date."""
    if dataset is not None:
        load_schema(dataset)
    with ws.sessions() as session:
        q = select(Snapshot).order_by(Snapshot.dataset, Snapshot.snapshot_date)
        if dataset is not None:
            q = q.where(Snapshot.dataset == dataset)
        return list(session.scalars(q))


def register(
    ws: Workspace,
    schema: Schema,
    tmp: Path,
    *,
    snapshot_date: dt.date,
    source: str,
    sha256: str,
    rows: int,
    replace: bool = False,
    extract_number: int | None = None,
    session: Session | None = None,
) -> Snapshot:
    """Move a validated staging file into the store and record it (in `session` if given, else its own)."""
    final = ws.snapshots_dir / schema.name / f"{snapshot_date.isoformat()}-{sha256[:16]}.parquet"
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    snap = Snapshot(
        dataset=schema.name,
        snapshot_date=snapshot_date,
        source=source,
        sha256=sha256,
        rows=rows,
        path=ws.relative(final),
        schema_version=schema.version,
        extract_number=extract_number,
    )
    own = session is None
    s = session or ws.sessions()
    try:
        if own:
            s.begin()
        old = find_snapshot(s, schema.name, snapshot_date)
        if old is not None:
            if not replace:
                raise Conflict(f"{schema.name} already has a snapshot for {snapshot_date}")
            _drop_snapshot(ws, s, old)
        s.add(snap)
        s.flush()
        if own:
            s.commit()
    except BaseException:
        if own:
            s.rollback()
        final.unlink(missing_ok=True)
        raise
    finally:
        if own:
            s.close()
    return snap


def _drop_snapshot(ws: Workspace, session: Session, old: Snapshot) -> None:
    """Forget a replaced snapshot and the change sets computed from it; their files are orphans after."""
    dependants = session.scalars(
        select(ChangeSet).where((ChangeSet.from_snapshot_id == old.id) | (ChangeSet.to_snapshot_id == old.id))
    ).all()
    for cs in dependants:
        session.delete(cs)
    session.delete(old)
    session.flush()
