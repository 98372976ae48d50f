"""Computing, storing and reading change sets between registered snapshots.

Arrow, DuckDB and the snapshot store are imported where they are used: asking for a change set that
is already stored (what `mutapub diff` mostly does) then needs only the database.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mutapub.mutations.errors import Conflict, InputError, NotFound
from mutapub.mutations.models import ChangeSet, Snapshot
from mutapub.mutations.workspace import Workspace
from mutapub.schemas import Schema, load_schema

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass
class DiffResult:
    """A change set and whether this call computed it (False: it was already there)."""

    change_set: ChangeSet
    created: bool


def _snapshot(session: Session, snapshot_id: int) -> Snapshot:
    snap = session.get(Snapshot, snapshot_id)
    if snap is None:
        raise NotFound(f"no snapshot {snapshot_id}: see `mutapub snapshot list`")
    return snap


def _pick_pair(
    session: Session, dataset: str, from_id: int | None, to_id: int | None
) -> tuple[Snapshot, Snapshot]:
    if (from_id is None) != (to_id is None):
        raise InputError("give both --from and --to, or neither (the two latest snapshots)")
    if from_id is not None and to_id is not None:
        old, new = _snapshot(session, from_id), _snapshot(session, to_id)
        for s in (old, new):
            if s.dataset != dataset:
                raise InputError(f"snapshot {s.id} is of {s.dataset}, not {dataset}")
        if old.snapshot_date >= new.snapshot_date:
            raise InputError(
                f"--from {old.id} ({old.snapshot_date}) must be older than --to {new.id} ({new.snapshot_date})"
            )
        return old, new
    latest = session.scalars(
        select(Snapshot).where(Snapshot.dataset == dataset).order_by(Snapshot.snapshot_date.desc()).limit(2)
    ).all()
    if len(latest) < 2:
        have = "no snapshot" if not latest else f"only one snapshot ({latest[0].snapshot_date})"
        raise NotFound(
            f"{dataset} has {have}: a change set needs two; ingest another with `mutapub snapshot ingest`"
        )
    return latest[1], latest[0]


def _check_version(snap: Snapshot, schema: Schema) -> None:
    if snap.schema_version != schema.version:
        raise Conflict(
            f"snapshot {snap.id} of {snap.dataset} was stored with schema version {snap.schema_version}, "
            f"this mutapub has version {schema.version}: ingest it again"
        )


def compute(
    ws: Workspace,
    dataset: str,
    from_id: int | None = None,
    to_id: int | None = None,
) -> DiffResult:
    """The change set between two snapshots (default: the two latest), computed once and stored."""
    schema = load_schema(dataset)
    with ws.sessions() as session:
        old, new = _pick_pair(session, dataset, from_id, to_id)
        done = find(session, old.id, new.id)
        if done is not None:
            return DiffResult(done, created=False)
    for snap in (old, new):
        _check_version(snap, schema)
    import pyarrow.parquet as pq

    from mutapub.mutations import diff as engine
    from mutapub.mutations.snapshots import file_sha256

    changes = engine.diff_files(
        ws.path_in(old.path), ws.path_in(new.path), schema, ws.staging_dir / "duckdb-spill"
    )
    final = ws.changesets_dir / dataset / f"{old.id}-{new.id}.parquet"
    final.parent.mkdir(parents=True, exist_ok=True)
    ws.staging_dir.mkdir(parents=True, exist_ok=True)
    tmp = ws.staging_dir / f"changeset-{uuid.uuid4().hex}.parquet"
    try:
        pq.write_table(changes, tmp, compression="snappy")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        sha = file_sha256(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    n = engine.counts(changes)
    cs = ChangeSet(
        dataset=dataset,
        from_snapshot_id=old.id,
        to_snapshot_id=new.id,
        inserts=n["I"],
        updates=n["U"],
        deletes=n["D"],
        path=ws.relative(final),
        sha256=sha,
        schema_version=schema.version,
    )
    with ws.sessions() as session, session.begin():
        already = find(session, old.id, new.id)
        if already is not None:  # another process computed the same bytes meanwhile
            return DiffResult(already, created=False)
        session.add(cs)
    return DiffResult(cs, created=True)


def find(session: Session, from_id: int, to_id: int) -> ChangeSet | None:
    """The stored change set between two snapshots, if any."""
    return session.scalars(
        select(ChangeSet).where(ChangeSet.from_snapshot_id == from_id, ChangeSet.to_snapshot_id == to_id)
    ).one_or_none()


def get(ws: Workspace, change_set_id: int) -> ChangeSet:
    """The change set with this id; NotFound otherwise."""
    with ws.sessions() as session:
        cs = session.get(ChangeSet, change_set_id)
    if cs is None:
        raise NotFound(f"no change set {change_set_id}: see `mutapub changes list`")
    return cs


def list_all(ws: Workspace, dataset: str | None = None) -> list[ChangeSet]:
    """Stored change sets, oldest first."""
    with ws.sessions() as session:
        q = select(ChangeSet).order_by(ChangeSet.id)
        if dataset is not None:
            q = q.where(ChangeSet.dataset == dataset)
        return list(session.scalars(q))


def read(ws: Workspace, cs: ChangeSet) -> pa.Table:
    """The rows of a stored change set."""
    import pyarrow.parquet as pq

    return pq.read_table(ws.path_in(cs.path))


def as_records(changes: pa.Table, schema: Schema, limit: int | None = None) -> list[dict[str, Any]]:
    """Change rows as JSON-ready objects: `op`, `key`, `changes` (U: field → [before, after]), `row` (I, D)."""
    from mutapub.mutations.diff import AFTER, BEFORE

    if limit is not None:
        changes = changes.slice(0, limit)
    out: list[dict[str, Any]] = []
    for rec in changes.to_pylist():
        op = rec["op"]
        item: dict[str, Any] = {"op": op, "key": {k: rec[k] for k in schema.key}}
        if op == "U":
            item["changes"] = {c: [rec[BEFORE + c], rec[AFTER + c]] for c in rec["changed"]}
        else:
            side = AFTER if op == "I" else BEFORE
            item["row"] = {c: rec[c] if c in schema.key else rec[side + c] for c in schema.column_names}
        out.append(item)
    return out
