"""Normalising and validating snapshot rows by their schema, vectorised over Arrow batches."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mutapub.mutations.validators import iso_dates_fast, validator_for
from mutapub.schemas import Column, Schema

ISO_DATE = "%Y-%m-%d"


@dataclass(frozen=True)
class Problem:
    """One refused or suspicious value: where (row within the file, column) and why."""

    row: int
    column: str
    value: str | None
    reason: str
    severity: str = "error"  # "error" refuses the file, "warning" is reported only


@dataclass
class Findings:
    """Problems found so far: the first few of each severity, and the totals."""

    limit: int = 10
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    error_count: int = 0
    warning_count: int = 0

    def add(self, problems: list[Problem], count_errors: int, count_warnings: int) -> None:
        """Keep the first `limit` problems of each severity and count them all."""
        for p in problems:
            bucket = self.errors if p.severity == "error" else self.warnings
            if len(bucket) < self.limit:
                bucket.append(p)
        self.error_count += count_errors
        self.warning_count += count_warnings


def normalise_table(table: pa.Table, schema: Schema, findings: Findings) -> pa.Table:
    """The table in schema order with dates as ISO 8601 and identifiers normalised; problems go to findings."""
    columns = []
    for col in schema.columns:
        chunks, offset = [], 0
        for chunk in table.column(col.name).chunks:
            chunks.append(_check_column(chunk, col, offset, findings))
            offset += len(chunk)
        columns.append(pa.chunked_array(chunks, type=pa.string()))
    return pa.Table.from_arrays(columns, names=list(schema.column_names))


def _report(
    values: pa.Array,
    bad: np.ndarray,
    col: Column,
    offset: int,
    findings: Findings,
    reason: str,
    severity: str,
) -> None:
    idx = np.flatnonzero(bad)
    if not len(idx):
        return
    sample = idx[: findings.limit]
    raw = values.take(pa.array(sample)).to_pylist()
    problems = [
        Problem(offset + int(i), col.name, v, reason, severity) for i, v in zip(sample, raw, strict=True)
    ]
    n = len(idx)
    findings.add(problems, n if severity == "error" else 0, n if severity == "warning" else 0)


def _check_column(values: pa.Array, col: Column, offset: int, findings: Findings) -> pa.Array:
    present = pc.is_valid(values).to_numpy(zero_copy_only=False)
    if not col.nullable:
        _report(values, ~present, col, offset, findings, "a value is required", "error")
    if col.type == "date":
        assert col.date_format is not None
        values = _parse_dates(values, col, offset, findings)
    elif col.type == "integer":
        bad = present & ~pc.fill_null(pc.match_substring_regex(values, r"^-?[0-9]+$"), False).to_numpy(
            zero_copy_only=False
        )
        _report(values, bad, col, offset, findings, "not an integer", "error")
    if col.validator:
        normalised, bad = validator_for(col.validator, col.pattern)(values)
        severity = "warning" if col.on_invalid == "warn" else "error"
        _report(values, bad, col, offset, findings, f"fails the {col.validator} check", severity)
        values = normalised
    return values


def _parse_dates(values: pa.Array, col: Column, offset: int, findings: Findings) -> pa.Array:
    """Parse with the column's explicit format; a value that does not print back identically is refused.

    Registers hold few distinct dates, so each distinct value is parsed once.
    """
    fmt = col.date_format or ISO_DATE
    if fmt == ISO_DATE:
        fast = iso_dates_fast(values)
        if fast is not None:
            _report(values, fast, col, offset, findings, f"not a date in the format {fmt}", "error")
            return values
    encoded = pc.dictionary_encode(values)
    if len(encoded.dictionary) == 0:
        return values
    distinct, indices = encoded.dictionary, encoded.indices
    parsed = pc.strptime(distinct, format=fmt, unit="s", error_is_null=True)
    same = pc.fill_null(pc.equal(pc.strftime(parsed, format=fmt), distinct), False).to_numpy(
        zero_copy_only=False
    )
    present = pc.is_valid(indices).to_numpy(zero_copy_only=False)
    bad = present & ~same[pc.fill_null(indices, 0).to_numpy(zero_copy_only=False)]
    _report(values, bad, col, offset, findings, f"not a date in the format {fmt}", "error")
    if fmt == ISO_DATE:
        return values
    iso = pc.if_else(pa.array(same), pc.strftime(parsed, format=ISO_DATE), distinct)
    return iso.take(indices)
