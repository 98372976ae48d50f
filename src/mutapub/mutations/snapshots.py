"""Ingesting snapshot files: read, normalise, validate, store as Parquet and register."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from mutapub.mutations import reading
from mutapub.mutations.errors import Conflict, InputError
from mutapub.mutations.models import ChangeSet, Delivery, Snapshot
from mutapub.mutations.validation import Findings, Problem, normalise_table
from mutapub.mutations.validators import fixed_width_digits, keys_width, number
from mutapub.mutations.workspace import Workspace
from mutapub.schemas import Schema, load_schema

ROW_GROUP = 256_000
_DATE_IN_NAME = re.compile(r"(?<!\d)(\d{4})[-_]?(\d{2})[-_]?(\d{2})(?!\d)")


@dataclass
class IngestResult:
    """What an ingest did: the snapshot, whether it is new, warnings about kept rows, and the change
    set against the previous snapshot when it was computed right away."""

    snapshot: Snapshot
    status: str  # "registered", "unchanged" or "replaced"
    warnings: list[str] = field(default_factory=list)
    change_set: ChangeSet | None = None


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
    ws: Workspace,
    dataset: str,
    path: Path,
    snapshot_date: dt.date | None = None,
    *,
    replace: bool = False,
    diff: bool = True,
) -> IngestResult:
    """Ingest one snapshot file of `dataset`; refuse it whole, registering nothing, if any row is bad.

    With `diff`, a snapshot newer than every other is diffed against the previous one at once: the
    nightly job needs that change set next anyway.
    """
    schema = load_schema(dataset)
    path = Path(path)
    if snapshot_date is None:
        snapshot_date = date_from_name(path.name)
        if snapshot_date is None:
            raise InputError(f"{path}: the file name carries no date: give --date YYYY-MM-DD")
    source = reading.detect(path)
    with ThreadPoolExecutor(1) as pool:  # hashing overlaps parsing: both release the GIL
        sha = pool.submit(file_sha256, path)
        result = _ingest(ws, schema, path, source, sha, snapshot_date, replace)
    if diff and result.status != "unchanged":
        pa.default_memory_pool().release_unused()  # hand the parsed rows' memory back before DuckDB runs
        result.change_set = _diff_with_previous(ws, result.snapshot)
    return result


def _ingest(
    ws: Workspace,
    schema: Schema,
    path: Path,
    source: reading.Source,
    sha: Future[str],
    snapshot_date: dt.date,
    replace: bool,
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
    table, warnings = read_validated(source, schema)
    check_unique(table, schema, source)
    tmp = write_parquet(ws, table, schema)
    try:
        snap = register(
            ws,
            schema,
            tmp,
            snapshot_date=snapshot_date,
            source=str(path.absolute()),
            sha256=sha.result(),
            rows=table.num_rows,
            replace=replace,
        )
    finally:
        tmp.unlink(missing_ok=True)
    return IngestResult(snap, "replaced" if existing is not None else "registered", warnings)


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


def read_validated(source: reading.Source, schema: Schema) -> tuple[pa.Table, list[str]]:
    """Read and normalise a source, with warnings about values kept despite a failed check.

    InputError names the line and column of the first ten refused values and counts them all.
    """
    findings = Findings()
    table = normalise_table(reading.read_table(source, schema), schema, findings)
    _raise_findings(source, schema, findings)
    return table, _warnings(source, schema, findings)


def arrow_schema(schema: Schema) -> pa.Schema:
    """The Arrow schema of a stored snapshot: every column text, in schema order."""
    return pa.schema([(c, pa.string()) for c in schema.column_names])


def write_parquet(ws: Workspace, table: pa.Table, schema: Schema) -> Path:
    """Write a table to a new Parquet file in the staging area, fsynced; return its path.

    LZ4 without statistics, dictionaries for the value columns (not the key, which is unique): about
    a sixth of the CSV's size, quick to write, and DuckDB fingerprints dictionary pages quickly in diffs.
    """
    ws.staging_dir.mkdir(parents=True, exist_ok=True)
    tmp = ws.staging_dir / f"{schema.name}-{uuid.uuid4().hex}.parquet"
    try:
        pq.write_table(
            table.cast(arrow_schema(schema)),
            tmp,
            compression="lz4",
            use_dictionary=list(schema.value_columns),
            write_statistics=False,
            row_group_size=ROW_GROUP,
        )
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


def _all_distinct(keys: pa.Array) -> bool:
    """Whether no value of a key column repeats; identifiers of equal width made of digits (INSZ) are
    compared as sorted integers, many times faster than hashing strings."""
    digits = fixed_width_digits(keys, keys_width(keys))
    if digits is not None and digits.shape[1] <= 18:
        ordered = np.sort(number(digits))
        return not bool((ordered[1:] == ordered[:-1]).any())
    return len(pc.unique(keys)) == len(keys)


def check_unique(table: pa.Table, schema: Schema, source: reading.Source) -> None:
    """InputError listing the first ten rows whose key another row has, and how many there are."""
    if len(schema.key) == 1 and _all_distinct(table.column(schema.key[0]).combine_chunks()):
        return  # the usual case, settled by one pass over the key column
    from mutapub.mutations import duck  # DuckDB only for composite keys and for reporting duplicates

    keys = ", ".join(duck.quote(k) for k in schema.key)
    con = duck.connect()
    try:
        rows = pa.array(np.arange(table.num_rows, dtype=np.int64))
        con.register("snapshot", table.select(list(schema.key)).append_column("__row", rows))
        dup = con.execute(
            f"""SELECT count(*) OVER () AS total, __row, {keys}
                FROM (SELECT *, count(*) OVER (PARTITION BY {keys}) AS n FROM snapshot)
                WHERE n > 1 ORDER BY __row LIMIT 10"""
        ).fetchall()
    finally:
        con.close()
    if not dup:
        return
    total = dup[0][0]
    found = reading.locate_rows(source, schema.input_format, [r[1] for r in dup])
    items = [
        f"  {_where(source, found.get(r[1]))}: "
        + ", ".join(f"{k}={v!r}" for k, v in zip(schema.key, r[2:], strict=True))
        for r in dup
    ]
    raise InputError(
        "\n".join(
            [
                f"{source.label}: {total} rows share their key with another row (key: {', '.join(schema.key)}); "
                f"nothing registered; first {len(items)}:",
                *items,
            ]
        )
    )


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
