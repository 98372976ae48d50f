"""Vectorised CSV writing with pyarrow.compute: whole columns are quoted and joined, no per-row Python."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["byte_table", "encode_field", "header_line", "rows_with_bytes", "write_encoded", "write_table"]


def _check_delimiter(delimiter: str) -> None:
    if len(delimiter) != 1 or delimiter in '"\r\n' or not delimiter.isascii():
        raise ValueError(
            f"the CSV delimiter must be one character other than a quote or a line break: {delimiter!r}"
        )


def byte_table(chars: str | bytes) -> np.ndarray:
    """A lookup table of 256 booleans, set for the given ASCII characters (or bytes)."""
    table = np.zeros(256, dtype=bool)
    table[list(chars.encode("ascii") if isinstance(chars, str) else chars)] = True
    return table


def rows_with_bytes(arr: pa.Array, table: np.ndarray) -> np.ndarray | None:
    """Per row, whether its UTF-8 holds a byte set in table; None when no row does (the usual case).

    A scan of the data buffer in numpy, far cheaper than a regular expression per value. ASCII bytes
    never occur inside a multi-byte UTF-8 sequence, so a table of ASCII bytes finds exactly those characters.
    """
    if len(arr) == 0:
        return None
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        raise TypeError(f"rows_with_bytes needs text, not {arr.type}")
    _, offsets_buf, data_buf = arr.buffers()
    if data_buf is None:
        return None
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=width)[arr.offset : arr.offset + len(arr) + 1]
    start, stop = int(offsets[0]), int(offsets[-1])
    hits = table[np.frombuffer(data_buf, dtype=np.uint8)[start:stop]]
    if not hits.any():
        return None
    seen = np.concatenate([[0], np.cumsum(hits, dtype=np.int64)])
    return np.asarray(seen[offsets[1:] - start] > seen[offsets[:-1] - start])


def encode_field(
    arr: pa.Array | pa.ChunkedArray, delimiter: str = ";", *, quote_empty: bool = False
) -> pa.Array:
    """The text of one CSV column (RFC 4180): quoted only where it holds the delimiter, a quote, CR or LF.

    Null becomes an empty field; with quote_empty an empty string becomes `""`, so a reader can tell the two apart.
    """
    _check_delimiter(delimiter)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.string())
    needs = rows_with_bytes(arr, byte_table(delimiter + '"\r\n'))
    if quote_empty:
        empty = np.asarray(pc.fill_null(pc.equal(pc.binary_length(arr), 0), False))
        needs = empty if needs is None else needs | empty
    if needs is not None and needs.any():
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(arr, '"', '""'), '"', "")
        arr = pc.if_else(pa.array(needs, pa.bool_()), quoted, arr)
    return pc.fill_null(arr, "")


def header_line(names: Iterable[str], delimiter: str = ";", line_terminator: str = "\r\n") -> bytes:
    """The header line for the given column names, quoted like the fields, with its line terminator."""
    encoded = encode_field(pa.array(list(names), pa.string()), delimiter)
    return (delimiter.join(encoded.to_pylist()) + line_terminator).encode("utf-8")


def write_encoded(
    columns: Sequence[pa.Array | pa.ChunkedArray],
    out: BinaryIO,
    delimiter: str = ";",
    line_terminator: str = "\r\n",
) -> None:
    """Append one line per row of already encoded columns (see encode_field) to out."""
    if not columns:
        raise ValueError("a CSV line needs at least one column")
    cols = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns]
    cols[-1] = pc.binary_join_element_wise(
        cols[-1], "", line_terminator
    )  # the terminator after the last field
    lines = pc.binary_join_element_wise(*cols, delimiter)
    if len(lines):
        # The lines lie back to back in the array's data buffer: write that range in one call.
        _, offsets_buf, data = lines.buffers()
        width = np.int64 if pa.types.is_large_string(lines.type) else np.int32
        offsets = np.frombuffer(offsets_buf, dtype=width)[lines.offset : lines.offset + len(lines) + 1]
        out.write(memoryview(data)[int(offsets[0]) : int(offsets[-1])])


def write_table(
    table: pa.Table,
    out: BinaryIO,
    *,
    delimiter: str = ";",
    line_terminator: str = "\r\n",
    header: bool = True,
    quote_empty: bool = False,
    chunk_rows: int = 200_000,
) -> None:
    """Write a table of text (or castable) columns as CSV to out, chunk by chunk."""
    if header:
        out.write(header_line(table.column_names, delimiter, line_terminator))
    for start in range(0, table.num_rows, chunk_rows):
        part = table.slice(start, chunk_rows)
        write_encoded(
            [encode_field(c, delimiter, quote_empty=quote_empty) for c in part.columns],
            out,
            delimiter,
            line_terminator,
        )
