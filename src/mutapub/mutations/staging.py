"""Staging a snapshot file: read it, normalise and validate every value, check its keys, and write
it as Parquet in the workspace's staging area. No database here: `mutapub snapshot ingest` starts
this work before the database layer has even been imported (see `parsing.start`)."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mutapub.mutations import reading
from mutapub.mutations.errors import InputError
from mutapub.mutations.validation import Findings, Problem, normalise_table
from mutapub.mutations.validators import fixed_width_digits, keys_width, number
from mutapub.schemas import Schema

if TYPE_CHECKING:
    from mutapub.mutations.workspace import Workspace

ROW_GROUP = 256_000


@dataclass
class Parsed:
    """A source file read, normalised and checked: its rows and the warnings about values kept."""

    source: reading.Source
    table: pa.Table
    warnings: list[str]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_validated(source: reading.Source, schema: Schema) -> tuple[pa.Table, list[str]]:
    """Read and normalise a source, with warnings about values kept despite a failed check.

    InputError names the line and column of the first ten refused values and counts them all.
    """
    return validate(source, schema, reading.read_table(source, schema))


def validate(source: reading.Source, schema: Schema, table: pa.Table) -> tuple[pa.Table, list[str]]:
    """Normalise the rows read from a source, as `read_validated` (which reads them first)."""
    findings = Findings()
    table = normalise_table(table, schema, findings)
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
