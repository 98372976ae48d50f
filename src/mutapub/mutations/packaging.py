"""Packaging one delivery's rows into the bytes a subscriber receives: CSV, JSON Lines or XML, compressed.

Pure: no database, no clock, no file system. Everything that varies between runs (time, reference UUID,
sequence number) comes in through the Envelope, so the same content and envelope give the same bytes.
Rows are turned into text with pyarrow.compute, whole columns at a time, chunk by chunk.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import re
import string
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, BinaryIO, cast
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mutapub.mutations import csvwrite
from mutapub.mutations.errors import InputError

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_TEMPLATE",
    "FORMATS",
    "NAMESPACE",
    "DeliveryContent",
    "Envelope",
    "Written",
    "counts",
    "drop_invisible_updates",
    "extension",
    "file_name",
    "manifest",
    "manifest_bytes",
    "manifest_name",
    "read_rows",
    "write",
]

FORMATS = ("csv", "jsonl", "xml")
COMPRESSIONS = ("gzip", "zip", "none")
DEFAULT_TEMPLATE = "{subscriber}_{dataset}-mutaties_{ts}_{seq:06d}.{ext}"
NAMESPACE = "urn:mutapub:publication:1"
MESSAGE_TYPE = "PUBLICATIE"
OPS = ("I", "U", "D")

_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_CHUNK_ROWS = 200_000
# Fixed, so that the same rows compress to the same bytes (given the same zlib).
_COMPRESS_LEVEL = 6
_TEMPLATE_FIELDS = frozenset({"subscriber", "dataset", "ts", "seq", "ext"})
_MAX_NAME_BYTES = 255
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class DeliveryContent:
    """The rows of one delivery.

    `table` has "op" (I/U/D), each key column, each field f (its value after the change; null for D),
    optionally "changed" (list<string>: for U the changed fields) and "before.<f>" (the value before, read
    for U rows where f changed). `allowed` says per row whether that row may carry field f (None: all).
    """

    dataset: str
    key: tuple[str, ...]
    fields: tuple[str, ...]
    table: pa.Table
    allowed: Mapping[str, np.ndarray] | None = None


@dataclass(frozen=True)
class Envelope:
    """What is fixed when a delivery is first planned, so a rerun or resend gives the same bytes."""

    subscriber: str
    dataset: str
    seq: int
    generated_at: dt.datetime
    reference: str
    schema_version: int
    sender: str = "mutapub"

    def __post_init__(self) -> None:
        if self.generated_at.tzinfo is None or self.generated_at.utcoffset() is None:
            raise ValueError("Envelope.generated_at must be timezone-aware (UTC)")
        if self.seq < 1:
            raise ValueError(f"sequence numbers start at 1, not {self.seq}")
        # Normalised, so that equal envelopes render identically.
        object.__setattr__(self, "generated_at", self.generated_at.astimezone(dt.UTC))
        object.__setattr__(self, "reference", str(uuid.UUID(self.reference)))


@dataclass(frozen=True)
class Written:
    """What write() put into its output: size and SHA-256 of the bytes, and the rows per operation."""

    size: int
    sha256: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """The number of changes in the file."""
        return sum(self.counts.values())


# --------------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------------


def extension(fmt: str, compression: str) -> str:
    """The file extension for a format and compression: "csv.gz", "jsonl.zip", "xml"."""
    _check_choice(fmt, compression)
    return fmt + {"gzip": ".gz", "zip": ".zip", "none": ""}[compression]


def _ts(moment: dt.datetime) -> str:
    """UTC as yyyyMMddHHmmssSSS."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y%m%d%H%M%S") + f"{utc.microsecond // 1000:03d}"


def _iso(moment: dt.datetime) -> str:
    """UTC, ISO 8601 with milliseconds and Z."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_safe_name(name: str, what: str) -> None:
    if (
        not name
        or "/" in name
        or "\\" in name
        or ".." in name
        or name.startswith(".")
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)
        or len(name.encode("utf-8")) > _MAX_NAME_BYTES
    ):
        raise InputError(
            f"{what} {name!r} is not a safe file name (it must not be empty, start with '.', contain "
            f"'/', '\\\\', '..' or control characters, or exceed {_MAX_NAME_BYTES} bytes)"
        )


def file_name(template: str, env: Envelope, ext: str) -> str:
    """The data file's name from a subscriber's template ({subscriber} {dataset} {ts} {seq} {ext})."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InputError(f"file name template {template!r}: {exc}") from None
    for _, name, _, _ in parsed:
        if name is not None and name not in _TEMPLATE_FIELDS:
            raise InputError(
                f"file name template {template!r}: unknown placeholder {{{name}}}; "
                f"use {', '.join('{' + f + '}' for f in sorted(_TEMPLATE_FIELDS))}"
            )
    values = {"subscriber": env.subscriber, "dataset": env.dataset, "ts": _ts(env.generated_at)}
    try:
        name = template.format(**values, seq=env.seq, ext=ext)
    except (ValueError, IndexError) as exc:
        raise InputError(f"file name template {template!r}: {exc}") from None
    _check_safe_name(name, f"file name from template {template!r}:")
    return name


def manifest_name(data_file_name: str) -> str:
    """The manifest's name next to a data file."""
    return data_file_name + ".manifest.json"


# --------------------------------------------------------------------------------------------------
# Preparing rows: which values each row carries
# --------------------------------------------------------------------------------------------------


def _check_choice(fmt: str, compression: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}")


def _check_content(content: DeliveryContent) -> None:
    names = set(content.table.column_names)
    missing = [c for c in ("op", *content.key, *content.fields) if c not in names]
    if missing:
        raise ValueError(f"delivery content of {content.dataset} lacks the columns {', '.join(missing)}")
    clash = {"op", "changed"} & {*content.key, *content.fields}
    if clash:
        raise ValueError(f"columns named {', '.join(sorted(clash))} would clash with the file's own columns")
    if len(set(content.key) | set(content.fields)) != len(content.key) + len(content.fields):
        raise ValueError("key columns and fields must be distinct")
    op = content.table.column("op")
    if op.null_count or (len(op) and not pc.all(pc.is_in(op, value_set=pa.array(OPS))).as_py()):
        raise ValueError("every row's op must be I, U or D")
    if content.allowed is not None:
        for f in content.fields:
            mask = content.allowed.get(f)
            if mask is None:
                raise ValueError(f"allowed has no mask for field {f}")
            if len(mask) != content.table.num_rows:
                raise ValueError(f"allowed[{f!r}] has {len(mask)} entries for {content.table.num_rows} rows")


def _text(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return arr if pa.types.is_string(arr.type) else arr.cast(pa.string())


@dataclass
class _Chunk:
    """One slice of a delivery, with what each row carries worked out as numpy masks."""

    op: pa.Array
    is_d: np.ndarray
    is_u: np.ndarray
    keys: list[pa.Array]
    after: list[pa.Array]
    carries: list[np.ndarray]  # per field: the row carries its value after (not D, and allowed)
    before: list[pa.Array | None]
    changed: list[np.ndarray]  # per field: a U row whose change to that field the subscriber may see

    def __len__(self) -> int:
        return len(self.op)


def _changed_masks(changed: pa.Array, fields: Sequence[str], n: int) -> np.ndarray:
    """A (fields × rows) boolean matrix: field j is listed in row i's `changed`."""
    out = np.zeros((len(fields), n), dtype=bool)
    if not fields or n == 0:
        return out
    flat = pc.list_flatten(changed)
    parents = np.asarray(pc.list_parent_indices(changed))
    idx = pc.index_in(flat, value_set=pa.array(list(fields), pa.string()))
    where = np.asarray(pc.fill_null(idx, -1))
    hit = where >= 0
    out[where[hit], parents[hit]] = True
    return out


def _chunks(content: DeliveryContent) -> Iterator[_Chunk]:
    table = content.table
    has_changed = "changed" in table.column_names
    for start in range(0, table.num_rows, _CHUNK_ROWS):
        part = table.slice(start, _CHUNK_ROWS)
        n = part.num_rows
        op = _text(part.column("op"))
        op_np = np.asarray(op.to_numpy(zero_copy_only=False), dtype=object)
        is_d, is_u = op_np == "D", op_np == "U"
        if has_changed:
            changed_col = part.column("changed").combine_chunks()
            listed = _changed_masks(changed_col, content.fields, n)
        else:
            listed = np.zeros((len(content.fields), n), dtype=bool)
        carries: list[np.ndarray] = []
        changed: list[np.ndarray] = []
        before: list[pa.Array | None] = []
        for j, f in enumerate(content.fields):
            allowed = (
                np.ones(n, dtype=bool)
                if content.allowed is None
                else np.asarray(content.allowed[f][start : start + n], dtype=bool)
            )
            carries.append(~is_d & allowed)
            vis = is_u & listed[j] & allowed
            changed.append(vis)
            col = f"before.{f}"
            if col in part.column_names:
                before.append(_text(part.column(col)))
            elif vis.any():
                raise ValueError(
                    f"delivery content of {content.dataset} lists {f} as changed but has no {col}"
                )
            else:
                before.append(None)
        if content.fields and is_u.any():
            blind = is_u & ~np.any(np.vstack(changed), axis=0)
            if blind.any():
                raise ValueError(
                    f"{int(blind.sum())} updates change no field this subscriber may see: drop them first "
                    "(see drop_invisible_updates)"
                )
        elif is_u.any():
            raise ValueError("updates without any authorised field cannot be delivered")
        yield _Chunk(
            op=op,
            is_d=is_d,
            is_u=is_u,
            keys=[_text(part.column(k)) for k in content.key],
            after=[_text(part.column(f)) for f in content.fields],
            carries=carries,
            before=before,
            changed=changed,
        )


def drop_invisible_updates(content: DeliveryContent) -> DeliveryContent:
    """The content without the updates that change no field the row may carry (they are not delivered)."""
    _check_content(content)
    n = content.table.num_rows
    op = np.asarray(_text(content.table.column("op")).to_numpy(zero_copy_only=False), dtype=object)
    is_u = op == "U"
    if "changed" in content.table.column_names:
        listed = _changed_masks(content.table.column("changed").combine_chunks(), content.fields, n)
    else:
        listed = np.zeros((len(content.fields), n), dtype=bool)
    if content.allowed is not None:
        for j, f in enumerate(content.fields):
            listed[j] &= np.asarray(content.allowed[f], dtype=bool)
    keep = ~is_u | listed.any(axis=0) if content.fields else ~is_u
    if keep.all():
        return content
    allowed = (
        None if content.allowed is None else {f: np.asarray(m)[keep] for f, m in content.allowed.items()}
    )
    return replace(content, table=content.table.filter(pa.array(keep)), allowed=allowed)


def counts(content: DeliveryContent) -> dict[str, int]:
    """The number of rows per operation, I, U and D (zero included)."""
    result = dict.fromkeys(OPS, 0)
    for row in pc.value_counts(content.table.column("op")).to_pylist():
        result[row["values"]] = row["counts"]
    return result


def _const(value: str, n: int) -> pa.Array:
    return pa.array(np.full(n, value, dtype=object), pa.string()) if n else pa.array([], pa.string())


def _concat(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation (strings are broadcast); null if any part is null."""
    args = [pa.scalar(p, pa.string()) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, "")


def _pick(mask: np.ndarray, values: pa.Array | str, otherwise: str = "") -> pa.Array:
    """Per row, values where mask is set, else otherwise (plain strings are broadcast)."""
    chosen = pa.scalar(values, pa.string()) if isinstance(values, str) else values
    return pc.if_else(pa.array(mask, pa.bool_()), chosen, pa.scalar(otherwise, pa.string()))


def _wrap(head: str, build: Callable[[], pa.Array], tail: str) -> pa.Array:
    return _concat(head, build(), tail)


def _join_masked(
    parts: Sequence[tuple[np.ndarray, Callable[[], pa.Array]]], n: int, cut: int = 0
) -> pa.Array:
    """Per row, the concatenation of the parts whose mask is set there, without its first `cut` characters.

    Parts are built only when some row needs them. Each part carries its own leading separator, which
    `cut` removes from the front: binary_join_element_wise's null_handling="skip" drops whole rows in
    pyarrow 26 when all their values are null, so absent parts are "" rather than null.
    """
    chosen = []
    for mask, build in parts:
        if not mask.any():
            continue
        part = build()
        chosen.append(part if mask.all() else _pick(mask, part))
    if not chosen:
        return _const("", n)
    joined = chosen[0] if len(chosen) == 1 else pc.binary_join_element_wise(*chosen, "")
    return pc.utf8_slice_codeunits(joined, cut) if cut else joined


# --------------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------------


def _write_csv(content: DeliveryContent, out: BinaryIO, delimiter: str) -> None:
    names = ["op", *content.key, *content.fields, "changed"]
    out.write(csvwrite.header_line(names, delimiter, "\r\n"))
    nulls = pa.scalar(None, pa.string())
    for ch in _chunks(content):
        after = [
            value if carry.all() else pc.if_else(pa.array(carry, pa.bool_()), value, nulls)
            for carry, value in zip(ch.carries, ch.after, strict=True)
        ]
        changed = _join_masked(
            [
                (vis, partial(_const, "|" + f, len(ch)))
                for vis, f in zip(ch.changed, content.fields, strict=True)
            ],
            len(ch),
            cut=1,
        )
        cols = [ch.op, *ch.keys, *after, changed]
        csvwrite.write_encoded([csvwrite.encode_field(c, delimiter) for c in cols], out, delimiter, "\r\n")


_JSON_SIMPLE_ESCAPES: tuple[tuple[str, str], ...] = (
    ("\\", "\\\\"),
    ('"', '\\"'),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\b", "\\b"),
    ("\f", "\\f"),
)
_JSON_RARE = csvwrite.byte_table(bytes([*range(0x08), 0x0B, *range(0x0E, 0x20)]))
_JSON_SIMPLE = csvwrite.byte_table('\\"\n\r\t\b\f')


def _json_member(prefix: str, name: str, arr: pa.Array) -> pa.Array:
    """Per row, prefix + the member "name":value, exactly as json.dumps(..., ensure_ascii=False) writes it."""
    head = prefix + json.dumps(name, ensure_ascii=False) + ":"
    if csvwrite.rows_with_bytes(arr, _JSON_RARE) is not None:
        # Rare control characters become \u00XX: leave such columns to the json module.
        return pa.array([head + json.dumps(v, ensure_ascii=False) for v in arr.to_pylist()], pa.string())
    if csvwrite.rows_with_bytes(arr, _JSON_SIMPLE) is not None:
        for old, new in _JSON_SIMPLE_ESCAPES:
            arr = pc.replace_substring(arr, old, new)
    return pc.fill_null(_concat(head + '"', arr, '"'), head + "null")


def _json_object(
    names: Sequence[str], values: Sequence[pa.Array | None], masks: Sequence[np.ndarray], n: int
) -> pa.Array:
    """Per row, the members of a JSON object (without braces) whose mask is set, in the given order."""
    parts = [
        (mask, partial(_json_member, ",", name, value if value is not None else pa.nulls(n, pa.string())))
        for name, value, mask in zip(names, values, masks, strict=True)
    ]
    return _join_masked(parts, n, cut=1)


def _write_jsonl(content: DeliveryContent, out: BinaryIO) -> None:
    for ch in _chunks(content):
        n = len(ch)
        every = np.ones(n, dtype=bool)
        key = _json_object(content.key, ch.keys, [every] * len(ch.keys), n)
        parts = [
            (every, partial(_json_member, "{", "op", ch.op)),
            (every, partial(_concat, ',"key":{', key, "}")),
            (
                ~ch.is_d,
                partial(
                    _wrap, ',"after":{', partial(_json_object, content.fields, ch.after, ch.carries, n), "}"
                ),
            ),
            (
                ch.is_u,
                partial(
                    _wrap, ',"before":{', partial(_json_object, content.fields, ch.before, ch.changed, n), "}"
                ),
            ),
            (every, partial(_const, "}\n", n)),
        ]
        csvwrite.write_encoded([_join_masked(parts, n)], out, "", "")


_XML_INVALID = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x{fffe}\x{ffff}]"
# The control characters, and the first byte of U+FFFE and U+FFFF (then confirmed by _XML_INVALID).
_XML_SUSPECT = csvwrite.byte_table(bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xEF]))
_XML_ESCAPED = csvwrite.byte_table("&<>\r")


def _xml_text(arr: pa.Array, dataset: str, column: str) -> pa.Array:
    """Values escaped for element content; CR as a character reference, so that parsers keep it."""
    suspect = csvwrite.rows_with_bytes(arr, _XML_SUSPECT)
    if suspect is not None and pc.any(pc.match_substring_regex(arr, _XML_INVALID)).as_py():
        raise InputError(
            f"{dataset}: column {column} holds a control character XML 1.0 cannot carry; "
            "deliver as CSV or JSON Lines"
        )
    if csvwrite.rows_with_bytes(arr, _XML_ESCAPED) is not None:
        for old, new in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("\r", "&#13;")):
            arr = pc.replace_substring(arr, old, new)
    return arr


def _xml_field(dataset: str, name: str, arr: pa.Array) -> pa.Array:
    """Per row, <field name="...">value</field>; a null value is xsi:nil."""
    return pc.fill_null(
        _concat(f"<field name={quoteattr(name)}>", _xml_text(arr, dataset, name), "</field>"),
        f'<field name={quoteattr(name)} xsi:nil="true"/>',
    )


def _xml_fields(
    dataset: str, names: Sequence[str], values: Sequence[pa.Array | None], masks: Sequence[np.ndarray], n: int
) -> pa.Array:
    """Per row, the <field> elements whose mask is set."""
    parts = [
        (mask, partial(_xml_field, dataset, name, value if value is not None else pa.nulls(n, pa.string())))
        for name, value, mask in zip(names, values, masks, strict=True)
    ]
    return _join_masked(parts, n)


def _xml_head(env: Envelope) -> bytes:
    def el(tag: str, value: object) -> str:
        return f"    <{tag}>{escape(str(value))}</{tag}>\n"

    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<publication xmlns="{NAMESPACE}" xmlns:xsi="{_XSI}">\n'
        "  <context>\n"
        + el("name", f"{env.dataset}-mutaties")
        + el("version", env.schema_version)
        + el("messageType", MESSAGE_TYPE)
        + el("timestamp", _iso(env.generated_at))
        + el("sender", env.sender)
        + el("reference", env.reference)
        + el("subscriber", env.subscriber)
        + el("sequence", env.seq)
        + "  </context>\n"
        "  <subjects>\n"
    ).encode("utf-8")


def _write_xml(content: DeliveryContent, env: Envelope, out: BinaryIO) -> None:
    for value, what in ((env.subscriber, "subscriber"), (env.sender, "sender"), (env.dataset, "dataset")):
        _xml_text(pa.array([value], pa.string()), env.dataset, what)
    out.write(_xml_head(env))
    for ch in _chunks(content):
        n = len(ch)
        every = np.ones(n, dtype=bool)
        dataset = content.dataset
        key = _xml_fields(dataset, content.key, ch.keys, [every] * len(ch.keys), n)
        parts = [
            (every, partial(_concat, '    <subject op="', ch.op, '"><key>', key, "</key>")),
            (
                ~ch.is_d,
                partial(
                    _wrap,
                    "<after>",
                    partial(_xml_fields, dataset, content.fields, ch.after, ch.carries, n),
                    "</after>",
                ),
            ),
            (
                ch.is_u,
                partial(
                    _wrap,
                    "<before>",
                    partial(_xml_fields, dataset, content.fields, ch.before, ch.changed, n),
                    "</before>",
                ),
            ),
            (every, partial(_const, "</subject>\n", n)),
        ]
        csvwrite.write_encoded([_join_masked(parts, n)], out, "", "")
    out.write(b"  </subjects>\n</publication>\n")


# --------------------------------------------------------------------------------------------------
# Writing, with compression
# --------------------------------------------------------------------------------------------------


class _Sink:
    """Counts and hashes what passes to out; has no seek, so zipfile streams (the same bytes to any out)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.size = 0
        self.hash = hashlib.sha256()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.out.write(data)
        self.hash.update(data)
        n = memoryview(data).nbytes
        self.size += n
        return n

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.out.flush()


def write(
    content: DeliveryContent,
    env: Envelope,
    out: BinaryIO,
    *,
    fmt: str = "csv",
    compression: str = "gzip",
    delimiter: str = ";",
    inner_name: str | None = None,
) -> Written:
    """Stream the delivery's file into out: the same content and envelope always give the same bytes.

    inner_name is the name of the zip member (the data file's name without ".zip"); zip needs it.
    """
    _check_choice(fmt, compression)
    _check_content(content)
    if env.dataset != content.dataset:
        raise ValueError(f"envelope of {env.dataset} for content of {content.dataset}")
    if fmt == "csv":
        csvwrite.encode_field(pa.array([], pa.string()), delimiter)  # checks the delimiter
    sink = _Sink(out)
    stream = cast(BinaryIO, sink)
    if compression == "none":
        _write_format(content, env, stream, fmt, delimiter)
    elif compression == "gzip":
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=stream, compresslevel=_COMPRESS_LEVEL, mtime=0
        ) as gz:
            _write_format(content, env, gz, fmt, delimiter)  # type: ignore[arg-type]
    else:
        if inner_name is None:
            raise ValueError("zip needs inner_name, the data file's name inside the archive")
        _check_safe_name(inner_name, "zip member name")
        info = zipfile.ZipInfo(inner_name, date_time=env.generated_at.timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        info.create_system = 3  # Unix, whatever the host, for the same bytes everywhere
        info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
        with (
            zipfile.ZipFile(stream, mode="w", compression=zipfile.ZIP_DEFLATED) as zf,
            zf.open(info, mode="w", force_zip64=True) as member,
        ):
            _write_format(content, env, member, fmt, delimiter)  # type: ignore[arg-type]
    return Written(size=sink.size, sha256=sink.hash.hexdigest(), counts=counts(content))


def _write_format(content: DeliveryContent, env: Envelope, out: BinaryIO, fmt: str, delimiter: str) -> None:
    if fmt == "csv":
        _write_csv(content, out, delimiter)
    elif fmt == "jsonl":
        _write_jsonl(content, out)
    else:
        _write_xml(content, env, out)


# --------------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------------


def manifest(
    env: Envelope,
    *,
    kind: str,
    previous_seq: int | None,
    change_set_id: int | None,
    snapshot_from: dt.date | None,
    snapshot_to: dt.date,
    counts: Mapping[str, int],
    fields: Sequence[str],
    grants: Sequence[Mapping[str, Any]],
    file_name: str,
    size: int,
    sha256: str,
    format: str,
    compression: str,
) -> dict[str, Any]:
    """The manifest document (see schemas/manifest.schema.json); grants hold id, legal_basis and purpose."""
    _check_choice(format, compression)
    if kind not in ("initial", "delta"):
        raise ValueError(f"kind must be initial or delta, not {kind!r}")
    if kind == "initial" and (change_set_id is not None or snapshot_from is not None):
        raise ValueError("an initial extract has no change set and no snapshot_from")
    if kind == "delta" and (change_set_id is None or snapshot_from is None):
        raise ValueError("a delta needs its change set id and snapshot_from")
    if kind == "initial" and (counts.get("U", 0) or counts.get("D", 0)):
        raise ValueError("an initial extract holds inserts only")
    expected_previous = None if env.seq == 1 else env.seq - 1
    if previous_seq != expected_previous:
        raise ValueError(
            f"delivery {env.seq} must have previous sequence {expected_previous}, not {previous_seq}"
        )
    unknown = set(counts) - set(OPS)
    if unknown:
        raise ValueError(f"counts are per operation I, U, D, not {', '.join(sorted(unknown))}")
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"sha256 must be 64 lowercase hex digits: {sha256!r}")
    if not grants:
        raise ValueError("a delivery is made under at least one grant")
    _check_safe_name(file_name, "data file name")
    return {
        "subscriber": env.subscriber,
        "dataset": env.dataset,
        "sequence": env.seq,
        "previous_sequence": previous_seq,
        "kind": kind,
        "change_set_id": change_set_id,
        "snapshot_from": None if snapshot_from is None else snapshot_from.isoformat(),
        "snapshot_to": snapshot_to.isoformat(),
        "generated_at": _iso(env.generated_at),
        "reference": env.reference,
        "schema_version": env.schema_version,
        "counts": {op: int(counts.get(op, 0)) for op in OPS},
        "fields": list(fields),
        "grants": [
            {"id": int(g["id"]), "legal_basis": str(g["legal_basis"]), "purpose": str(g.get("purpose") or "")}
            for g in grants
        ],
        "file": {
            "name": file_name,
            "size": size,
            "sha256": sha256,
            "format": format,
            "compression": compression,
        },
    }


def manifest_bytes(doc: Mapping[str, Any]) -> bytes:
    """The manifest as UTF-8 JSON: sorted keys, indent 2, trailing newline."""
    return (json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode("utf-8")


# --------------------------------------------------------------------------------------------------
# Reading back
# --------------------------------------------------------------------------------------------------


def _decompress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.decompress(data)
    if compression == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = zf.namelist()
            if len(members) != 1:
                raise InputError(f"a delivery zip holds one file, this one {len(members)}")
            return zf.read(members[0])
    return data


def read_rows(
    data: bytes, fmt: str, compression: str, delimiter: str = ";", *, key: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Parse a delivery file back into changes: op, key, after (not for D), changed and before (for U).

    CSV needs `key` (the dataset's key columns) and cannot carry before-values, nor tell an empty value
    from a null or from a field the row may not carry: those all read as None.
    """
    _check_choice(fmt, compression)
    raw = _decompress(data, compression)
    if fmt == "csv":
        if key is None:
            raise ValueError("reading CSV needs the dataset's key columns")
        return _read_csv(raw, delimiter, tuple(key))
    if fmt == "jsonl":
        return _read_jsonl(raw)
    return _read_xml(raw)


def _read_csv(raw: bytes, delimiter: str, key: tuple[str, ...]) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(raw.decode("utf-8"), newline=""), delimiter=delimiter, strict=True)
    header = next(reader, None)
    if (
        header is None
        or header[:1] != ["op"]
        or header[-1:] != ["changed"]
        or tuple(header[1 : 1 + len(key)]) != key
    ):
        raise InputError(f"not a delivery CSV with key {', '.join(key)}: header {header}")
    fields = header[1 + len(key) : -1]
    rows: list[dict[str, Any]] = []
    for record in reader:
        if len(record) != len(header):
            raise InputError(f"line {reader.line_num}: {len(record)} fields, the header has {len(header)}")
        op = record[0]
        row: dict[str, Any] = {"op": op, "key": dict(zip(key, record[1 : 1 + len(key)], strict=True))}
        if op != "D":
            row["after"] = {
                f: (v if v != "" else None) for f, v in zip(fields, record[1 + len(key) : -1], strict=True)
            }
        if op == "U":
            row["changed"] = record[-1].split("|") if record[-1] else []
        rows.append(row)
    return rows


def _read_jsonl(raw: bytes) -> list[dict[str, Any]]:
    rows = []
    for line in raw.decode("utf-8").split("\n"):
        if not line:
            continue
        row = json.loads(line)
        if row["op"] == "U":
            row["changed"] = list(row.get("before", {}))
        rows.append(row)
    return rows


def _read_xml(raw: bytes) -> list[dict[str, Any]]:
    ns = {"p": NAMESPACE}
    nil = f"{{{_XSI}}}nil"
    root = ElementTree.fromstring(raw)

    def values(parent: ElementTree.Element | None) -> dict[str, str | None]:
        if parent is None:
            return {}
        return {
            f.attrib["name"]: None if f.get(nil) in ("true", "1") else (f.text or "")
            for f in parent.findall("p:field", ns)
        }

    rows = []
    for subject in root.iterfind("p:subjects/p:subject", ns):
        op = subject.attrib["op"]
        row: dict[str, Any] = {"op": op, "key": values(subject.find("p:key", ns))}
        if op != "D":
            row["after"] = values(subject.find("p:after", ns))
        if op == "U":
            row["before"] = values(subject.find("p:before", ns))
            row["changed"] = list(row["before"])
        rows.append(row)
    return rows
