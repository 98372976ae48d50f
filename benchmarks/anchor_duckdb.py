"""The benchmark's anchor: I/U/D counts between two CSV snapshots, computed with plain DuckDB.

    python benchmarks/anchor_duckdb.py OLD.csv NEW.csv KEY[,KEY...] [--delimiter ';']

Reads both files with every column as text, fingerprints each row with one 64-bit hash, then counts
inserts (new keys missing from old: anti-join), deletes (old keys missing from new: anti-join) and
updates (keys in both whose fingerprints differ: join). Prints "I U D" on one line.

This is what a competent engineer would write in an afternoon with DuckDB; mutapub's daily cost
(ingest of the new snapshot plus the diff against the stored previous one) is measured against it.
It imports nothing from mutapub.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import duckdb


def quote(name: str) -> str:
    """A column name quoted for SQL."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def read_csv(path: Path, delimiter: str) -> str:
    """A DuckDB table function reading a headed CSV with every value as text."""
    return f"read_csv({literal(str(path))}, delim={literal(delimiter)}, quote='\"', header=true, all_varchar=true)"


def counts(old: Path, new: Path, key: list[str], delimiter: str = ";") -> tuple[int, int, int]:
    """(inserts, updates, deletes) turning the CSV snapshot `old` into `new`."""
    con = duckdb.connect(":memory:")
    try:
        columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {read_csv(old, delimiter)}").fetchall()]
        missing = [k for k in key if k not in columns]
        if missing:
            raise SystemExit(f"{old}: no key column(s) {', '.join(missing)}; columns: {', '.join(columns)}")
        keys = ", ".join(quote(k) for k in key)
        fingerprint = f"hash({', '.join(quote(c) for c in columns)})"
        for name, path in (("o", old), ("n", new)):
            con.execute(
                f"CREATE TEMP TABLE {name} AS SELECT {keys}, {fingerprint} AS __h FROM {read_csv(path, delimiter)}"
            )
        using = f"USING ({keys})"
        row = con.execute(
            f"""SELECT (SELECT count(*) FROM n ANTI JOIN o {using}),
                       (SELECT count(*) FROM n JOIN o {using} WHERE n.__h <> o.__h),
                       (SELECT count(*) FROM o ANTI JOIN n {using})"""
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and print "I U D"."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("old", type=Path, help="the older snapshot (CSV with a header line)")
    parser.add_argument("new", type=Path, help="the newer snapshot")
    parser.add_argument("key", help="key column(s), comma-separated")
    parser.add_argument("--delimiter", default=";")
    args = parser.parse_args(argv)
    i, u, d = counts(args.old, args.new, args.key.split(","), args.delimiter)
    print(i, u, d)


if __name__ == "__main__":
    main()
