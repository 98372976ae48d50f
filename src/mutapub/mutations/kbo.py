"""Ingesting KBO Open Data ZIPs: a full extract, or a daily update applied to the latest snapshots."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from mutapub.mutations import reading
from mutapub.mutations.errors import Conflict, InputError
from mutapub.mutations.snapshots import IngestResult, find_snapshot, latest_snapshot, register
from mutapub.mutations.staging import check_unique, file_sha256, read_validated, write_parquet
from mutapub.mutations.workspace import Workspace
from mutapub.schemas import Column, Schema, load_schema

TABLES = ("enterprise", "establishment", "denomination", "address", "contact", "activity", "branch")


@dataclass(frozen=True)
class KboMeta:
    """What `meta.csv` says about an extract."""

    snapshot_date: dt.date
    extract_number: int
    extract_type: str  # "full" or "update"
    extract_timestamp: str


@dataclass
class KboResult:
    """The extract's metadata and one ingest result per table."""

    meta: KboMeta
    tables: list[IngestResult]


def read_meta(zf: zipfile.ZipFile, label: str) -> KboMeta:
    """Parse `meta.csv` of an opened KBO ZIP."""
    try:
        text = zf.read("meta.csv").decode("utf-8-sig")
    except KeyError as exc:
        raise InputError(f"{label}: no meta.csv: not a KBO Open Data ZIP") from exc
    values = {row[0]: row[1] for row in csv.reader(io.StringIO(text)) if len(row) >= 2}
    try:
        snapshot_date = dt.datetime.strptime(values["SnapshotDate"], "%d-%m-%Y").date()
        number = int(values["ExtractNumber"])
        kind = values["ExtractType"].strip().lower()
    except KeyError as exc:
        raise InputError(f"{label}:meta.csv: no {exc.args[0]}") from exc
    except ValueError as exc:
        raise InputError(f"{label}:meta.csv: {exc}") from exc
    if kind not in ("full", "update"):
        raise InputError(f"{label}:meta.csv: ExtractType {kind!r} is neither full nor update")
    return KboMeta(snapshot_date, number, kind, values.get("ExtractTimestamp", ""))


def _subjects_schema(schema: Schema) -> Schema:
    col = schema.column(schema.subject)
    return Schema(
        name=f"{schema.name} deletes",
        version=schema.version,
        columns=(Column(col.name, nullable=False, validator=col.validator),),
        key=(col.name,),
        subject=col.name,
        input_format=schema.input_format,
    )


def _read_member(path: Path, member: str, schema: Schema) -> pa.Table:
    table, _warnings = read_validated(reading.Source(path, "zip", member), schema)
    return table


def ingest_zip(ws: Workspace, path: Path, *, force: bool = False) -> KboResult:
    """Ingest every KBO table of a full or update ZIP at once: all seven snapshots or none."""
    path = Path(path)
    label = str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            meta = read_meta(zf, label)
            names = set(zf.namelist())
    except zipfile.BadZipFile as exc:
        raise InputError(f"{label}: truncated or corrupt zip: {exc}") from exc
    suffixes = ("",) if meta.extract_type == "full" else ("_insert", "_delete")
    missing = [f"{t}{s}.csv" for t in TABLES for s in suffixes if f"{t}{s}.csv" not in names]
    if missing:
        raise InputError(f"{label}: a KBO {meta.extract_type} ZIP needs {', '.join(missing)}")
    sha = file_sha256(path)
    staged: list[tuple[Schema, Path, int]] = []
    results: list[IngestResult] = []
    with ws.sessions() as session:
        unchanged = [find_snapshot(session, f"kbo_{t}", meta.snapshot_date) for t in TABLES]
        if all(s is not None and s.sha256 == sha for s in unchanged):
            return KboResult(meta, [IngestResult(s, "unchanged") for s in unchanged if s is not None])
        clash = [s for s in unchanged if s is not None]
        if clash:
            raise Conflict(
                f"{label}: KBO snapshots for {meta.snapshot_date} already exist from {clash[0].source}"
            )
        if meta.extract_type == "update":
            _check_sequence(session, meta, label, force)
    try:
        for t in TABLES:
            schema = load_schema(f"kbo_{t}")
            if meta.extract_type == "full":
                table = _read_member(path, f"{t}.csv", schema)
            else:
                table = _apply_update(ws, path, t, schema, meta)
            check_unique(table, schema, reading.Source(path, "zip", f"{t}{suffixes[0]}.csv"))
            staged.append((schema, write_parquet(ws, table, schema), table.num_rows))
        with ws.sessions() as session, session.begin():
            for schema, tmp, rows in staged:
                snap = register(
                    ws,
                    schema,
                    tmp,
                    snapshot_date=meta.snapshot_date,
                    source=f"{path.absolute()}",
                    sha256=sha,
                    rows=rows,
                    extract_number=meta.extract_number,
                    session=session,
                )
                results.append(IngestResult(snap, "registered"))
    except BaseException:
        for _schema, tmp, _rows in staged:
            tmp.unlink(missing_ok=True)
        for r in results:
            ws.path_in(r.snapshot.path).unlink(missing_ok=True)
        raise
    return KboResult(meta, results)


def _check_sequence(session: Session, meta: KboMeta, label: str, force: bool) -> None:
    latest = latest_snapshot(session, "kbo_enterprise")
    if latest is None:
        raise InputError(f"{label}: an update needs earlier KBO snapshots: ingest a full extract first")
    if latest.snapshot_date >= meta.snapshot_date:
        raise Conflict(
            f"{label}: snapshot date {meta.snapshot_date} is not after the latest KBO snapshot ({latest.snapshot_date})"
        )
    expected = (latest.extract_number or 0) + 1
    if meta.extract_number != expected and not force:
        raise Conflict(
            f"{label}: extract {meta.extract_number} does not follow the latest ingested extract "
            f"{latest.extract_number} (expected {expected}); use --force to ingest it anyway"
        )


def _apply_update(ws: Workspace, path: Path, table: str, schema: Schema, meta: KboMeta) -> pa.Table:
    """Latest snapshot minus every row of each deleted subject, plus the inserted rows."""
    with ws.sessions() as session:
        latest = latest_snapshot(session, schema.name, before=meta.snapshot_date)
    if latest is None:
        raise InputError(
            f"{path}: an update needs a previous snapshot of {schema.name}: ingest a full extract first"
        )
    deletes = _read_member(path, f"{table}_delete.csv", _subjects_schema(schema)).column(0)
    inserts = _read_member(path, f"{table}_insert.csv", schema)
    old = pq.read_table(ws.path_in(latest.path))
    kept = old.filter(pc.invert(pc.is_in(old.column(schema.subject), value_set=deletes.combine_chunks())))
    return pa.concat_tables([kept, inserts])
