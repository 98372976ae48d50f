"""Reading snapshot files (CSV plain, gzip or zip; Parquet) as batches of text, with exact error locations.

Every value is read as text: nothing is inferred, `NA`/`NULL`/`N/A` stay values, an empty field and a
quoted empty field are both missing (null). The fast path is Arrow's CSV reader; when it fails, a slow
scan with Python's csv module finds the line and column to report.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import gzip
import io
import mmap
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.csv as pacsv

from mutapub.mutations.errors import InputError
from mutapub.schemas import InputFormat, Schema

BLOCK_SIZE = 1 << 24  # Arrow parses this many bytes per batch
PIECE_SIZE = 16 << 20  # a plain CSV file is read in pieces of at least this size, one per core
_DELIMITERS = (";", ",", "\t", "|")
_ASCII_BASED = {
    "utf-8",
    "utf-8-sig",
    "iso8859-1",
    "iso8859-15",
    "cp1252",
    "ascii",
}  # a quote is the byte 0x22


@dataclass(frozen=True)
class Source:
    """A file to read: its path, the container it is in and, for a ZIP, the member to read."""

    path: Path
    kind: str  # "csv", "gzip", "zip" or "parquet"
    member: str | None = None

    @property
    def label(self) -> str:
        """How error messages name this file."""
        return f"{self.path}:{self.member}" if self.member else str(self.path)


def detect(path: Path, member: str | None = None) -> Source:
    """Recognise a file by its first bytes (not its name); refuse what cannot be read."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from exc
    if magic[:2] == b"\x1f\x8b":
        return Source(path, "gzip")
    if magic == b"PAR1":
        return Source(path, "parquet")
    if magic[:2] == b"PK":
        if member is None:
            member = _single_member(path)
        return Source(path, "zip", member)
    return Source(path, "csv")


def _single_member(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
    except zipfile.BadZipFile as exc:
        raise InputError(f"{path}: truncated or corrupt zip: {exc}") from exc
    if len(names) != 1:
        raise InputError(
            f"{path}: a zip must hold exactly one file, found {len(names)}: {', '.join(names[:5])}"
        )
    return names[0]


@contextmanager
def open_bytes(source: Source) -> Iterator[IO[bytes]]:
    """The decompressed bytes of a CSV source."""
    if source.kind == "gzip":
        with gzip.open(source.path, "rb") as fh:
            yield fh  # type: ignore[misc]
    elif source.kind == "zip":
        try:
            with zipfile.ZipFile(source.path) as zf, zf.open(source.member or "") as fh:
                yield fh
        except zipfile.BadZipFile as exc:
            raise InputError(f"{source.label}: truncated or corrupt zip: {exc}") from exc
        except KeyError as exc:
            raise InputError(f"{source.path}: no member {source.member!r} in the zip") from exc
    else:
        with open(source.path, "rb") as fh:
            yield fh


def _container_error(source: Source, exc: BaseException) -> InputError | None:
    if isinstance(exc, EOFError | zlib.error | gzip.BadGzipFile) or "gzip" in str(exc).lower():
        return InputError(f"{source.label}: truncated or corrupt gzip: {exc}")
    if isinstance(exc, zipfile.BadZipFile) or "crc" in str(exc).lower():
        return InputError(f"{source.label}: truncated or corrupt zip: {exc}")
    return None


def read_header(source: Source, fmt: InputFormat) -> list[str]:
    """The column names of a CSV source's first record, BOM stripped; InputError if there is none."""
    try:
        with open_bytes(source) as raw:
            text = io.TextIOWrapper(raw, encoding=fmt.encoding, newline="")
            reader = csv.reader(text, delimiter=fmt.delimiter, quotechar=fmt.quote)
            header = next(reader, None)
    except (UnicodeDecodeError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise diagnose(source, fmt, None, exc) from exc
    if not header:
        raise InputError(f"{source.label}: the file is empty (no header line)")
    header[0] = header[0].removeprefix("\ufeff")
    return header


def check_header(source: Source, header: Sequence[str], schema: Schema) -> None:
    """Refuse a header that is not exactly the schema's columns (in any order), naming what differs."""
    expected = set(schema.column_names)
    seen: set[str] = set()
    for i, name in enumerate(header, start=1):
        if name in seen:
            raise InputError(f"{source.label}: line 1, column {i}: column {name!r} appears twice")
        seen.add(name)
    if len(header) == 1 and len(expected) > 1:
        hint = next((d for d in _DELIMITERS if d in header[0]), None)
        why = f"; it holds {hint!r}: is the file {hint!r}-separated?" if hint else ""
        raise InputError(
            f"{source.label}: line 1: the header has one column {header[0][:80]!r} where {schema.name} has "
            f"{len(expected)} separated by {schema.input_format.delimiter!r}{why}"
        )
    missing = [c for c in schema.column_names if c not in seen]
    unknown = [(i, c) for i, c in enumerate(header, start=1) if c not in expected]
    if unknown:
        where = ", ".join(f"column {i} {c!r}" for i, c in unknown[:10])
        raise InputError(f"{source.label}: line 1: unknown column(s) for {schema.name}: {where}")
    if missing:
        raise InputError(f"{source.label}: line 1: missing column(s) for {schema.name}: {', '.join(missing)}")


def read_table(source: Source, schema: Schema, fmt: InputFormat | None = None) -> pa.Table:
    """The source's rows as a table of string columns in schema order (header checked first).

    Arrow parses the whole file on every core at once: several times faster than a streamed read,
    at the price of holding the table in memory (about 1.4 times the CSV's size).
    """
    fmt = fmt or schema.input_format
    if source.kind == "parquet":
        return _parquet_table(source, schema)
    # Arrow decodes UTF-8 natively; any other name makes it transcode through Python, much slower.
    encoding = "utf8" if codecs.lookup(fmt.encoding).name == "utf-8" else fmt.encoding
    names = list(schema.column_names)
    if fmt.header:
        names = read_header(source, fmt)
        check_header(source, names, schema)
        read_opts = pacsv.ReadOptions(block_size=BLOCK_SIZE, encoding=encoding)
    else:
        read_opts = pacsv.ReadOptions(block_size=BLOCK_SIZE, encoding=encoding, column_names=names)
    parse_opts = pacsv.ParseOptions(
        delimiter=fmt.delimiter, quote_char=fmt.quote, newlines_in_values=_may_quote(source, fmt, encoding)
    )
    convert_opts = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in schema.column_names},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        include_columns=list(schema.column_names),
    )
    try:
        # Without quotes Arrow splits the file at any line break, on every core: no pieces needed.
        table = _read_in_pieces(source, fmt, encoding, names, parse_opts, convert_opts)
        if table is None:
            with _arrow_stream(source) as stream:
                table = pacsv.read_csv(
                    stream, read_options=read_opts, parse_options=parse_opts, convert_options=convert_opts
                )
    except InputError:
        raise
    except (pa.ArrowException, OSError, EOFError, zlib.error, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise diagnose(source, fmt, len(schema.column_names), exc) from exc
    return table.select(list(schema.column_names))


def _bytewise(source: Source, fmt: InputFormat, encoding: str) -> bool:
    """Whether the file is plain text in which a quote and a line break are each a byte of their own
    (an ASCII quote, an ASCII-based encoding), so it can be scanned for them without decoding."""
    return source.kind == "csv" and fmt.quote.isascii() and codecs.lookup(encoding).name in _ASCII_BASED


def _read_in_pieces(
    source: Source,
    fmt: InputFormat,
    encoding: str,
    names: list[str],
    parse_opts: pacsv.ParseOptions,
    convert_opts: pacsv.ConvertOptions,
) -> pa.Table | None:
    """The file's rows read in one piece per core (see `row_ranges`); None when values cannot hold
    line breaks, the file is not cut, or a piece is refused (the caller then reads it whole, for
    Arrow's own account of the bad row)."""
    if not parse_opts.newlines_in_values or not _bytewise(source, fmt, encoding):
        return None
    ranges = row_ranges(source, fmt, encoding, min(pa.cpu_count(), source.path.stat().st_size // PIECE_SIZE))
    if ranges is None:
        return None
    read_opts = pacsv.ReadOptions(
        block_size=BLOCK_SIZE, encoding=encoding, column_names=names, use_threads=False
    )
    try:
        return _read_pieces(source, ranges, read_opts, parse_opts, convert_opts)
    except pa.ArrowException:
        return None


def row_ranges(source: Source, fmt: InputFormat, encoding: str, pieces: int) -> list[tuple[int, int]] | None:
    """Byte ranges of a plain CSV file's rows (the header line left out), cut into up to `pieces` at
    line breaks outside quoted values; None when the file is not cut (one piece; an encoding in which
    a quote or a line break is not one byte of its own; more than `QUOTES_TO_CUT` quotes).

    When values may hold line breaks, Arrow's reader finds where each block's last row ends on one
    thread while the others wait; pieces read side by side, each on its own core, avoid that wait:
    a million persons rows with a few quoted values are read in 0.30-0.37 s instead of 0.41-0.47 s.
    """
    if pieces < 2 or not _bytewise(source, fmt, encoding) or not fmt.delimiter.isascii():
        return None
    quote = fmt.quote.encode("ascii")
    with open(source.path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        quoted = _quoted_spans(mm, quote, fmt.delimiter.encode("ascii"))
        if quoted is None:
            return None
        size = len(mm)
        start = _line_end(mm, quoted, 0) if fmt.header else 0
        cuts = [start]
        for k in range(1, pieces):
            cut = _line_end(mm, quoted, max(cuts[-1], start + (size - start) * k // pieces))
            if cuts[-1] < cut < size:
                cuts.append(cut)
    cuts.append(size)
    return list(zip(cuts, cuts[1:], strict=False)) if len(cuts) > 2 else None


QUOTES_TO_CUT = 100_000  # beyond this many quote characters a file is read whole


def _quoted_spans(mm: mmap.mmap, quote: bytes, delimiter: bytes) -> tuple[list[int], list[int]] | None:
    """Where each quoted value opens and closes, as Arrow's reader sees them: a quote opens a value
    only at the start of a field, a doubled quote inside one is a quote, and a single one closes it.
    None when the file holds more than `QUOTES_TO_CUT` quotes (finding them would cost too much)."""
    positions: list[int] = []
    pos = mm.find(quote)
    while pos != -1:
        positions.append(pos)
        if len(positions) > QUOTES_TO_CUT:
            return None
        pos = mm.find(quote, pos + 1)
    field_start = {ord(delimiter), ord("\n"), ord("\r")}
    bom = len(codecs.BOM_UTF8) if mm[:3] == codecs.BOM_UTF8 else 0
    opens: list[int] = []
    closes: list[int] = []
    i, n = 0, len(positions)
    while i < n:
        p = positions[i]
        i += 1
        if p not in (0, bom) and mm[p - 1] not in field_start:
            continue  # a quote inside an unquoted value: a letter like any other
        while i + 1 < n and positions[i + 1] == positions[i] + 1:
            i += 2  # a doubled quote inside the value
        opens.append(p)
        if i >= n:  # open to the end of the file
            closes.append(len(mm))
            break
        closes.append(positions[i])
        i += 1
    return opens, closes


def _line_end(mm: mmap.mmap, quoted: tuple[list[int], list[int]], target: int) -> int:
    """The offset just after the first line break at or after `target` that no quoted value holds
    (the end of the file if none)."""
    opens, closes = quoted
    pos = target
    while (nl := mm.find(b"\n", pos)) != -1:
        k = bisect.bisect_left(opens, nl) - 1  # the last value opened before this line break
        if k < 0 or closes[k] < nl:
            return nl + 1
        pos = closes[k] + 1
    return len(mm)


def _read_pieces(
    source: Source,
    ranges: list[tuple[int, int]],
    read_opts: pacsv.ReadOptions,
    parse_opts: pacsv.ParseOptions,
    convert_opts: pacsv.ConvertOptions,
) -> pa.Table:
    """The rows of each byte range, read side by side in threads, in file order."""
    with pa.memory_map(str(source.path)) as mapped:
        data = mapped.read_buffer()

        def read(span: tuple[int, int]) -> pa.Table:
            piece = pa.BufferReader(data.slice(span[0], span[1] - span[0]))
            return pacsv.read_csv(
                piece, read_options=read_opts, parse_options=parse_opts, convert_options=convert_opts
            )

        with ThreadPoolExecutor(len(ranges), thread_name_prefix="mutapub-read") as pool:
            return pa.concat_tables(list(pool.map(read, ranges)))


def _may_quote(source: Source, fmt: InputFormat, encoding: str) -> bool:
    """Whether a value of the file may be quoted, and so hold a line break.

    A plain file without a single quote character cannot: Arrow may then split it at any line
    break, a third faster than tracking quotes. Finding that out reads the file once more from the
    page cache (about 30 ms for 80 MB); compressed files are assumed to quote.
    """
    if not _bytewise(source, fmt, encoding):
        return True
    quote = fmt.quote.encode("ascii")
    with open(source.path, "rb") as fh:
        return any(quote in chunk for chunk in iter(lambda: fh.read(1 << 22), b""))


@contextmanager
def _arrow_stream(source: Source) -> Iterator[object]:
    if source.kind == "gzip":
        with pa.input_stream(str(source.path), compression="gzip") as stream:
            yield stream
    elif source.kind == "zip":
        with open_bytes(source) as fh:
            yield fh
    else:
        with pa.input_stream(str(source.path)) as stream:
            yield stream


def _parquet_table(source: Source, schema: Schema) -> pa.Table:
    import pyarrow.parquet as pq  # here: a CSV read starts before this module is even loaded

    try:
        pf = pq.ParquetFile(source.path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{source.label}: not a readable Parquet file: {exc}") from exc
    check_header(source, pf.schema_arrow.names, schema)
    for name in schema.column_names:
        typ = pf.schema_arrow.field(name).type
        if not (pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_null(typ)):
            raise InputError(
                f"{source.label}: column {name!r} is {typ} in the Parquet file; mutapub reads every value "
                "as text so identifiers keep their leading zeros: write it as a string column"
            )
    try:
        table = pf.read(columns=list(schema.column_names))
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{source.label}: truncated or corrupt Parquet file: {exc}") from exc
    return table.cast(pa.schema([(c, pa.string()) for c in schema.column_names]))


def diagnose(source: Source, fmt: InputFormat, columns: int | None, cause: BaseException) -> InputError:
    """Re-read a CSV source slowly to say where Arrow's reader failed (line, column, byte)."""
    decoder = codecs.getincrementaldecoder(fmt.encoding)()
    try:
        with open_bytes(source) as raw:
            for line_no, line in enumerate(raw, start=1):
                try:
                    decoder.decode(line, final=False)
                except UnicodeDecodeError as exc:
                    col = exc.start + 1
                    byte = line[exc.start : exc.start + 1].hex()
                    return InputError(
                        f"{source.label}: line {line_no}, byte {col}: 0x{byte} is not valid {fmt.encoding}"
                    )
        with open_bytes(source) as raw:
            text = io.TextIOWrapper(raw, encoding=fmt.encoding, newline="")
            reader = csv.reader(text, delimiter=fmt.delimiter, quotechar=fmt.quote, strict=True)
            start = 1
            for record in reader:
                if columns is not None and len(record) != columns:
                    return InputError(
                        f"{source.label}: line {start}: expected {columns} fields separated by "
                        f"{fmt.delimiter!r}, found {len(record)}"
                    )
                start = reader.line_num + 1
    except csv.Error as exc:
        return InputError(f"{source.label}: line {start}: {exc}")
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        found = _container_error(source, exc)
        if found:
            return found
        return InputError(f"{source.label}: {exc}")
    found = _container_error(source, cause)
    return found or InputError(f"{source.label}: cannot be read as CSV: {cause}")


def locate_rows(source: Source, fmt: InputFormat, rows: Sequence[int]) -> dict[int, int]:
    """Map 0-based data row numbers to the file line where each row starts (slow path, errors only)."""
    if source.kind == "parquet":
        return {r: r + 1 for r in rows}
    wanted, found = set(rows), {}
    with open_bytes(source) as raw:
        text = io.TextIOWrapper(raw, encoding=fmt.encoding, newline="")
        reader = csv.reader(text, delimiter=fmt.delimiter, quotechar=fmt.quote)
        if fmt.header:
            next(reader, None)
        start = reader.line_num + 1
        for row, _record in enumerate(reader):
            if row in wanted:
                found[row] = start
                if len(found) == len(wanted):
                    break
            start = reader.line_num + 1
    return found
