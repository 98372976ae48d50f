"""In-process DuckDB connections for out-of-core work on Parquet (diffs, duplicate checks)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    import duckdb


def connect(spill_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB that spills to `spill_dir` when a join does not fit in memory."""
    import duckdb  # imported on first use: commands that only read the database start faster

    con = duckdb.connect(":memory:")
    if spill_dir is not None:
        spill_dir.mkdir(parents=True, exist_ok=True)
        con.execute("SET temp_directory = ?", [str(spill_dir)])
    return con


def load() -> None:
    """Import DuckDB now (about 0.1 s), e.g. while another thread writes a file it will read."""
    import duckdb  # noqa: F401


def quote(name: str) -> str:
    """A column name quoted for SQL."""
    return '"' + name.replace('"', '""') + '"'


def literal(path: Path) -> str:
    """A file path as a SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


def fetch_table(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """Run a query and return its result as one Arrow table (across DuckDB's 1.x and 2.x APIs)."""
    rel = con.sql(sql)
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow
    return fetch()
