"""Generate a synthetic persons snapshot pair as CSV: python benchmarks/gen_persons.py ROWS OUTDIR."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from mutapub.mutations.synthetic import COLUMNS, write_persons_pair


def count_rows(path: Path) -> int:
    """Number of CSV records in path (a quoted field may span lines)."""
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=1 << 24),
        parse_options=pacsv.ParseOptions(delimiter=";", newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in COLUMNS}),
    )
    return sum(batch.num_rows for batch in reader)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, write the pair and print the row count of each day."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rows", type=int, help="number of persons in day 1")
    parser.add_argument("outdir", type=Path, help="directory for persons_day1.csv and persons_day2.csv")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--change-rate", type=float, default=0.005)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    day1, day2 = write_persons_pair(args.rows, args.outdir, seed=args.seed, change_rate=args.change_rate)
    elapsed = time.perf_counter() - t0
    for path in (day1, day2):
        print(f"{path}: {count_rows(path)} rows, {path.stat().st_size:,} bytes")
    print(f"generated in {elapsed:.2f} s")


if __name__ == "__main__":
    main()
