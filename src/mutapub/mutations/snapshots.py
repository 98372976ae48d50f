"""Ingesting snapshot files: read, normalise, validate, store as Parquet and register."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from mutapub.mutations import duck, reading
from mutapub.mutations.errors import Conflict, InputError, NotFound
from mutapub.mutations.models import ChangeSet, Snapshot
from mutapub.mutations.validation import Findings, Problem, normalise_batch
from mutapub.mutations.workspace import Workspace
from mutapub.schemas import Schema, load_schema

_DATE_IN_NAME = re.compile(r"(?<!\d)(\d{4})[-_]?(\d{2})[-_]?(\d{2})(?!\d)")


@dataclass
class IngestResult:
    """What an ingest did: the snapshot, whether it is new, and warnings about kept rows."""

    snapshot: Snapshot
    status: str  # "registered", "unchanged" or "replaced"
    warnings: list[str] = field(default_factory=list)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def date_from_name(name: str) -> dt.date | None:
    """The date a file name carries (`persons_2025-10-02.csv`, `..._20251002.csv`), if any."""
    for m in _DATE_IN_NAME.finditer(name):
        try:
            return dt.date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            continue
    return None


def ingest_file(
    ws: Workspace, dataset: str, path: Path, snapshot_date: dt.date | None = None, *, replace: bool = False
) -> IngestResult:
    """Ingest one snapshot file of `dataset`; refuse it whole, registering nothing, if any row is bad."""
    schema = load_schema(dataset)
    path = Path(path)
    if snapshot_date is None:
        snapshot_date = date_from_name(path.name)
        if snapshot_date is None:
            raise InputError(f"{path}: the file name carries no date: give --date YYYY-MM-DD")
    source = reading.detect(path)
    sha = file_sha256(path)
    with ws.sessions() as session:
        existing = find_snapshot(session, dataset, snapshot_date)
        if existing is not None:
            if existing.sha256 == sha:
                return IngestResult(existing, "unchanged")
            if not replace:
                raise Conflict(
                    f"{path}: {dataset} already has snapshot {existing.id} for {snapshot_date} from another file "
                    f"({existing.source}); use --replace to replace it"
                )
    findings = Findings()
    batches = _validated(reading.iter_batches(source, schema), schema, findings)
    tmp = write_parquet(ws, batches, schema)
    try:
        _raise_findings(source, schema, findings)
        rows = check_unique(ws, tmp, schema, source)
        snap = register(
            ws, schema, tmp, snapshot_date=snapshot_date, source=str(path.absolute()), sha256=sha, rows=rows,
            replace=replace,
        )
    finally:
        tmp.unlink(missing_ok=True)
    return IngestResult(snap, "replaced" if existing is not None else "registered", _warnings(source, schema, findings))


def _validated(batches: Iterable[pa.RecordBatch], schema: Schema, findings: Findings) -> Iterator[pa.RecordBatch]:
    row = 0
    for batch in batches:
        yield normalise_batch(batch, schema, row, findings)
        row += batch.num_rows


def arrow_schema(schema: Schema) -> pa.Schema:
    """The Arrow schema of a stored snapshot: every column text, in schema order."""
    return pa.schema([(c, pa.string()) for c in schema.column_names])


def write_parquet(ws: Workspace, batches: Iterable[pa.RecordBatch], schema: Schema) -> Path:
    """Write batches to a new Parquet file in the staging area, fsynced; return its path."""
    ws.staging_dir.mkdir(parents=True, exist_ok=True)
    tmp = ws.staging_dir / f"{schema.name}-{uuid.uuid4().hex}.parquet"
    try:
        with pq.ParquetWriter(tmp, arrow_schema(schema), compression="snappy") as writer:
            for batch in batches:
                writer.write_batch(batch)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _where(source: reading.Source, line: int | None) -> str:
    if line is None:
        return "somewhere"
    return f"row {line}" if source.kind == "parquet" else f"line {line}"


def _describe(source: reading.Source, problems: list[Problem], fmt_lines: dict[int, int]) -> list[str]:
    return [
        f"  {_where(source, fmt_lines.get(p.row))}, column {p.column}: {p.value!r} {p.reason}"
        if p.value is not None
        else f"  {_where(source, fmt_lines.get(p.row))}, column {p.column}: {p.reason}"
        for p in problems
    ]


def _raise_findings(source: reading.Source, schema: Schema, findings: Findings) -> None:
    if not findings.error_count:
        return
    lines = reading.locate_rows(source, schema.input_format, [p.row for p in findings.errors])
    shown = len(findings.errors)
    head = f"{source.label}: {findings.error_count} invalid value(s), nothing registered"
    if findings.error_count > shown:
        head += f" (first {shown} shown)"
    raise InputError("\n".join([head + ":", *_describe(source, findings.errors, lines)]))


def _warnings(source: reading.Source, schema: Schema, findings: Findings) -> list[str]:
    if not findings.warning_count:
        return []
    lines = reading.locate_rows(source, schema.input_format, [p.row for p in findings.warnings])
    head = f"{source.label}: {findings.warning_count} value(s) kept despite failing a check"
    return [head + ":", *_describe(source, findings.warnings, lines)]


def check_unique(ws: Workspace, parquet: Path, schema: Schema, source: reading.Source | None = None) -> int:
    """Row count of a stored table; InputError listing the first ten duplicate keys and their total."""
    keys = ", ".join(duck.quote(k) for k in schema.key)
    con = duck.connect(ws.staging_dir / "duckdb-spill")
    try:
        rel = f"read_parquet({duck.literal(parquet)}, file_row_number = true)"
        rows = con.execute(f"SELECT count(*) FROM read_parquet({duck.literal(parquet)})").fetchone()[0]  # type: ignore[index]
        dup = con.execute(
            f"""SELECT count(*) OVER () AS total, file_row_number, {keys}
                FROM (SELECT *, count(*) OVER (PARTITION BY {keys}) AS n FROM {rel})
                WHERE n > 1 ORDER BY file_row_number LIMIT 10"""
        ).fetchall()
    finally:
        con.close()
    if not dup:
        return int(rows)
    total = dup[0][0]
    label = source.label if source else parquet.name
    found: dict[int, int] = {}
    if source is not None:
        found = reading.locate_rows(source, schema.input_format, [r[1] for r in dup])
    items = []
    for r in dup:
        key = ", ".join(f"{k}={v!r}" for k, v in zip(schema.key, r[2:], strict=True))
        where = _where(source, found.get(r[1])) if source is not None else f"row {r[1] + 1}"
        items.append(f"  {where}: {key}")
    raise InputError(
        "\n".join(
            [f"{label}: {total} rows share a key with another row (key: {', '.join(schema.key)}); "
             f"first {len(items)}:", *items]
        )
    )


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


def get_snapshot(session: Session, snapshot_id: int) -> Snapshot:
    """The snapshot with this id; NotFound otherwise."""
    snap = session.get(Snapshot, snapshot_id)
    if snap is None:
        raise NotFound(f"no snapshot {snapshot_id}: see `mutapub snapshot list`")
    return snap


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
        dataset=schema.name, snapshot_date=snapshot_date, source=source, sha256=sha256, rows=rows,
        path=ws.relative(final), schema_version=schema.version, extract_number=extract_number,
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
