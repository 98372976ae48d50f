"""Normalising and validating snapshot rows by their schema, vectorised over Arrow batches."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mutapub.mutations.validators import validator_for
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


def normalise_batch(batch: pa.RecordBatch, schema: Schema, first_row: int, findings: Findings) -> pa.RecordBatch:
    """The batch in schema order with dates as ISO 8601 and identifiers normalised; problems go to findings."""
    arrays: list[pa.Array] = []
    for col in schema.columns:
        values = batch.column(col.name)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        values = _check_column(values, col, first_row, findings)
        arrays.append(values)
    return pa.RecordBatch.from_arrays(arrays, names=list(schema.column_names))


def _report(
    values: pa.Array, bad: np.ndarray, col: Column, first_row: int, findings: Findings, reason: str, severity: str
) -> None:
    idx = np.flatnonzero(bad)
    if not len(idx):
        return
    sample = idx[: findings.limit]
    raw = values.take(pa.array(sample)).to_pylist()
    problems = [Problem(first_row + int(i), col.name, v, reason, severity) for i, v in zip(sample, raw, strict=True)]
    n = len(idx)
    findings.add(problems, n if severity == "error" else 0, n if severity == "warning" else 0)


def _check_column(values: pa.Array, col: Column, first_row: int, findings: Findings) -> pa.Array:
    present = pc.is_valid(values).to_numpy(zero_copy_only=False)
    if not col.nullable:
        _report(values, ~present, col, first_row, findings, "a value is required", "error")
    if col.type == "date":
        assert col.date_format is not None
        values = _parse_dates(values, present, col, first_row, findings)
    elif col.type == "integer":
        bad = present & ~pc.fill_null(pc.match_substring_regex(values, r"^-?[0-9]+$"), False).to_numpy(
            zero_copy_only=False
        )
        _report(values, bad, col, first_row, findings, "not an integer", "error")
    if col.validator:
        normalised, bad = validator_for(col.validator, col.pattern)(values)
        severity = "warning" if col.on_invalid == "warn" else "error"
        _report(values, bad, col, first_row, findings, f"fails the {col.validator} check", severity)
        values = normalised
    return values


def _parse_dates(values: pa.Array, present: np.ndarray, col: Column, first_row: int, findings: Findings) -> pa.Array:
    """Parse with the column's explicit format; a value that does not print back identically is refused."""
    fmt = col.date_format or ISO_DATE
    parsed = pc.strptime(values, format=fmt, unit="s", error_is_null=True)
    back = pc.strftime(parsed, format=fmt)
    same = pc.fill_null(pc.equal(back, values), False).to_numpy(zero_copy_only=False)
    bad = present & ~same
    _report(values, bad, col, first_row, findings, f"not a date in the format {fmt}", "error")
    if fmt == ISO_DATE:
        return values
    iso = pc.strftime(parsed, format=ISO_DATE)
    return pc.if_else(pa.array(bad), values, iso)
