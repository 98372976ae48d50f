"""The change-set engine: the exact inserts, updates and deletes between two snapshots of a dataset.

A change set is an Arrow table, one row per changed key, ordered by key:
`op` (I, U or D), the key columns, `before.<column>` and `after.<column>` for every other column
(before is null for I, after is null for D), and `changed` (the columns an update touched, in schema
order; empty for I and D). Row order of the inputs never matters; equal inputs give equal outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from mutapub.mutations import duck
from mutapub.schemas import Schema

if TYPE_CHECKING:
    import duckdb

BEFORE, AFTER = "before.", "after."


def changeset_schema(schema: Schema) -> pa.Schema:
    """The Arrow schema of a dataset's change sets."""
    fields = [pa.field("op", pa.string())] + [pa.field(k, pa.string()) for k in schema.key]
    for c in schema.value_columns:
        fields += [pa.field(BEFORE + c, pa.string()), pa.field(AFTER + c, pa.string())]
    return pa.schema([*fields, pa.field("changed", pa.list_(pa.string()))])


def _sql(schema: Schema, old: str, new: str) -> str:
    q = duck.quote
    keys, values = schema.key, schema.value_columns
    on = " AND ".join(f"o.{q(k)} IS NOT DISTINCT FROM n.{q(k)}" for k in keys)
    differs = " OR ".join(f"o.{q(c)} IS DISTINCT FROM n.{q(c)}" for c in values) or "false"
    changed = (
        "list_filter(["
        + ", ".join(f"CASE WHEN o.{q(c)} IS DISTINCT FROM n.{q(c)} THEN '{c}' END" for c in values)
        + "], lambda x: x IS NOT NULL)"
        if values
        else "[]::VARCHAR[]"
    )
    key_cols = ", ".join(f"CASE WHEN n.__present THEN n.{q(k)} ELSE o.{q(k)} END AS {q(k)}" for k in keys)
    value_cols = "".join(f", o.{q(c)} AS {q(BEFORE + c)}, n.{q(c)} AS {q(AFTER + c)}" for c in values)
    return f"""
        SELECT CASE WHEN o.__present IS NULL THEN 'I' WHEN n.__present IS NULL THEN 'D' ELSE 'U' END AS op,
               {key_cols}{value_cols},
               CASE WHEN o.__present AND n.__present THEN {changed} ELSE []::VARCHAR[] END AS changed
        FROM (SELECT *, true AS __present FROM {old}) o
        FULL OUTER JOIN (SELECT *, true AS __present FROM {new}) n ON {on}
        WHERE o.__present IS NULL OR n.__present IS NULL OR ({differs})
        ORDER BY {", ".join(q(k) for k in keys)}
    """


def _candidates_sql(schema: Schema, old: str, new: str) -> str:
    """Keys whose row may differ: a narrow join of the keys and a 64-bit fingerprint of each row.

    Equal rows always have equal fingerprints, and every candidate is then compared column by
    column, so a collision can never invent a change. A change is missed only if DuckDB's 64-bit hash
    of an old value equals that of the new one (about 2^-64 per changed value): a second fingerprint
    would not lower that, being combined from the same value hashes.
    """
    q = duck.quote
    keys, values = schema.key, schema.value_columns
    fp = f"hash({', '.join(q(c) for c in values)}) AS __fp" if values else "0 AS __fp"
    side = ", ".join(q(k) for k in keys)
    on = " AND ".join(f"o.{q(k)} IS NOT DISTINCT FROM n.{q(k)}" for k in keys)
    key_cols = ", ".join(f"CASE WHEN n.__present THEN n.{q(k)} ELSE o.{q(k)} END AS {q(k)}" for k in keys)
    return f"""
        SELECT {key_cols}
        FROM (SELECT {side}, {fp}, true AS __present FROM {old}) o
        FULL OUTER JOIN (SELECT {side}, {fp}, true AS __present FROM {new}) n ON {on}
        WHERE o.__present IS NULL OR n.__present IS NULL OR o.__fp <> n.__fp
    """


def _run(con: duckdb.DuckDBPyConnection, schema: Schema, old: str, new: str) -> pa.Table:
    q = duck.quote
    con.execute(f"CREATE OR REPLACE TEMP TABLE __candidates AS {_candidates_sql(schema, old, new)}")
    on = " AND ".join(f"x.{q(k)} IS NOT DISTINCT FROM c.{q(k)}" for k in schema.key)
    only = "(SELECT x.* FROM {} x JOIN __candidates c ON " + on + ")"
    result = duck.fetch_table(con, _sql(schema, only.format(old), only.format(new)))
    return result.cast(changeset_schema(schema))


def diff(old: pa.Table, new: pa.Table, schema: Schema) -> pa.Table:
    """The change set turning snapshot table `old` into `new` (both with the schema's columns)."""
    con = duck.connect()
    try:
        con.register("old_snapshot", old.select(list(schema.column_names)))
        con.register("new_snapshot", new.select(list(schema.column_names)))
        return _run(con, schema, "old_snapshot", "new_snapshot")
    finally:
        con.close()


def diff_files(old: Path, new: Path, schema: Schema, spill_dir: Path | None = None) -> pa.Table:
    """`diff` on two stored Parquet snapshots, streamed by DuckDB so neither is loaded whole."""
    con = duck.connect(spill_dir)
    try:
        return _run(con, schema, f"read_parquet({duck.literal(old)})", f"read_parquet({duck.literal(new)})")
    finally:
        con.close()


def counts(changes: pa.Table) -> dict[str, int]:
    """Rows per operation, `{"I": n, "U": n, "D": n}`."""
    ops = changes.column("op")
    return {op: int(pc.sum(pc.equal(ops, op)).as_py() or 0) for op in ("I", "U", "D")}


def apply(old: pa.Table, changes: pa.Table, schema: Schema) -> pa.Table:
    """The snapshot obtained by applying `changes` to `old` (ordered by key); the inverse of `diff`."""
    con = duck.connect()
    q = duck.quote
    try:
        con.register("old_snapshot", old.select(list(schema.column_names)))
        con.register("changes", changes)
        on = " AND ".join(f"o.{q(k)} IS NOT DISTINCT FROM c.{q(k)}" for k in schema.key)
        after = ", ".join(
            q(c) if c in schema.key else f"{q(AFTER + c)} AS {q(c)}" for c in schema.column_names
        )
        cols = ", ".join(q(c) for c in schema.column_names)
        sql = f"""
            SELECT {cols} FROM old_snapshot o WHERE NOT EXISTS (SELECT 1 FROM changes c WHERE {on})
            UNION ALL
            SELECT {after} FROM changes WHERE op IN ('I', 'U')
            ORDER BY {", ".join(q(k) for k in schema.key)}
        """
        return duck.fetch_table(con, sql).cast(pa.schema([(c, pa.string()) for c in schema.column_names]))
    finally:
        con.close()
