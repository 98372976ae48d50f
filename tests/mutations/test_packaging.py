"""Packaging: every format and compression validates, reads back, and is byte-for-byte deterministic."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from mutapub.mutations import csvwrite, packaging
from mutapub.mutations.errors import InputError
from mutapub.mutations.packaging import (
    COMPRESSIONS,
    DEFAULT_TEMPLATE,
    FORMATS,
    DeliveryContent,
    Envelope,
    extension,
    file_name,
    manifest,
    manifest_bytes,
    read_rows,
    write,
)

SCHEMAS = resources.files("mutapub.schemas")
XSD = etree.XMLSchema(etree.fromstring((SCHEMAS / "publication.xsd").read_bytes()))
MANIFEST_SCHEMA = json.loads((SCHEMAS / "manifest.schema.json").read_text("utf-8"))
jsonschema.Draft202012Validator.check_schema(MANIFEST_SCHEMA)
MANIFEST_VALIDATOR = jsonschema.Draft202012Validator(
    MANIFEST_SCHEMA, format_checker=jsonschema.FormatChecker()
)

KEY = ("nr", "type")
FIELDS = ("name", "street", "city")
ENV = Envelope(
    subscriber="gemeente-gent",
    dataset="demo",
    seq=7,
    generated_at=dt.datetime(2025, 10, 1, 6, 30, 15, 123456, tzinfo=dt.UTC),
    reference="0F8FAD5B-D9CB-469F-A165-70867728950E",
    schema_version=2,
)


@dataclass
class Row:
    """One change as the test states it; `allowed` None means every field."""

    op: str
    key: tuple[str, str]
    after: dict[str, str | None] = field(default_factory=dict)
    before: dict[str, str | None] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    allowed: set[str] | None = None

    def may(self, f: str) -> bool:
        return self.allowed is None or f in self.allowed


ROWS = [
    Row("I", ("0001", "A"), {"name": "Zoë D'Hondt", "street": "Kerkstraat; achterbouw", "city": "Gent"}),
    Row("I", ("0002", "A"), {"name": 'Residentie "Ter Linde"', "street": "Hoog\nstraat", "city": "a\r\nb"}),
    Row("I", ("0003", "B"), {"name": "NA", "street": "", "city": None}),
    Row(
        "I", ("0004", "A"), {"name": "<&> ]]> 'x'", "street": "tab\there", "city": "Liège"}, allowed={"name"}
    ),
    # The update lists its fields out of schema order, and one field no subscriber receives.
    Row(
        "U",
        ("0005", "A"),
        {"name": "New", "street": "Meir 1", "city": "Antwerpen"},
        before={"name": "Old", "street": None, "city": "Gent"},
        changed=["city", "secret", "street", "name"],
    ),
    # Per-row grants: this row may not carry street, so its change to street is not shown.
    Row(
        "U",
        ("0006", "B"),
        {"name": "Same", "street": "Secret 9", "city": "Brugge"},
        before={"street": "Secret 1", "city": None},
        changed=["street", "city"],
        allowed={"name", "city"},
    ),
    # A delete carries its key only, even if the table holds values for it.
    Row("D", ("0007", "A"), {"name": "should not leak", "street": "x", "city": "y"}),
    Row("D", ("0008;x", 'q"'), {}),
]


def content_of(rows: list[Row], fields: tuple[str, ...] = FIELDS, *, masks: bool = True) -> DeliveryContent:
    """The rows as a DeliveryContent table (with an unrelated column that must never appear)."""
    cols: dict[str, pa.Array] = {"op": pa.array([r.op for r in rows], pa.string())}
    for i, k in enumerate(KEY):
        cols[k] = pa.array([r.key[i] for r in rows], pa.string())
    for f in fields:
        cols[f] = pa.array([r.after.get(f) for r in rows], pa.string())
    cols["unrelated"] = pa.array(["nope"] * len(rows), pa.string())
    cols["changed"] = pa.array([r.changed for r in rows], pa.list_(pa.string()))
    for f in fields:
        cols[f"before.{f}"] = pa.array([r.before.get(f) for r in rows], pa.string())
    allowed = {f: np.array([r.may(f) for r in rows], dtype=bool) for f in fields} if masks else None
    return DeliveryContent("demo", KEY, fields, pa.table(cols), allowed)


def expected(rows: list[Row], fmt: str, fields: tuple[str, ...] = FIELDS) -> list[dict[str, Any]]:
    """What read_rows must give back for these rows in this format."""
    out = []
    for r in rows:
        doc: dict[str, Any] = {"op": r.op, "key": dict(zip(KEY, r.key, strict=True))}
        visible = [f for f in fields if f in r.changed and r.may(f)]
        if r.op != "D":
            if (
                fmt == "csv"
            ):  # every column, empty for what the row may not carry; "" and null both read as None
                doc["after"] = {f: (r.after.get(f) or None) if r.may(f) else None for f in fields}
            else:
                doc["after"] = {f: r.after.get(f) for f in fields if r.may(f)}
        if r.op == "U":
            if fmt != "csv":
                doc["before"] = {f: r.before.get(f) for f in visible}
            doc["changed"] = visible
        out.append(doc)
    return out


def package(content: DeliveryContent, fmt: str, compression: str, env: Envelope = ENV, **kw: Any) -> bytes:
    out = io.BytesIO()
    name = file_name(DEFAULT_TEMPLATE, env, extension(fmt, compression))
    written = write(
        content, env, out, fmt=fmt, compression=compression, inner_name=name.removesuffix(".zip"), **kw
    )
    data = out.getvalue()
    assert written.size == len(data)
    assert written.sha256 == hashlib.sha256(data).hexdigest()
    return data


def plain(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.decompress(data)
    if compression == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            (member,) = zf.namelist()
            return zf.read(member)
    return data


def a_manifest(data: bytes, fmt: str, compression: str, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "kind": "delta",
        "previous_seq": 6,
        "change_set_id": 12,
        "snapshot_from": dt.date(2025, 9, 30),
        "snapshot_to": dt.date(2025, 10, 1),
        "counts": {"I": 4, "U": 2, "D": 2},
        "fields": FIELDS,
        "grants": [{"id": 3, "legal_basis": "BA/2025/017", "purpose": "Bevolkingsregister"}],
        "file_name": file_name(DEFAULT_TEMPLATE, ENV, extension(fmt, compression)),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "format": fmt,
        "compression": compression,
    }
    args.update(overrides)
    return manifest(ENV, **args)


# --------------------------------------------------------------------------------------------------
# Every format × compression
# --------------------------------------------------------------------------------------------------

BOTH = pytest.mark.parametrize(("fmt", "compression"), [(f, c) for f in FORMATS for c in COMPRESSIONS])


@BOTH
def test_every_format_validates_and_reads_back(fmt: str, compression: str) -> None:
    data = package(content_of(ROWS), fmt, compression)
    if fmt == "xml":
        XSD.assertValid(etree.fromstring(plain(data, compression)))
    MANIFEST_VALIDATOR.validate(a_manifest(data, fmt, compression))
    assert read_rows(data, fmt, compression, key=KEY) == expected(ROWS, fmt)
    text = plain(data, compression).decode("utf-8")
    assert "should not leak" not in text and "Secret" not in text and "secret" not in text
    assert "unrelated" not in text and "nope" not in text


@BOTH
def test_same_input_same_bytes(fmt: str, compression: str, tmp_path: Path) -> None:
    first = package(content_of(ROWS), fmt, compression)
    assert package(content_of(ROWS), fmt, compression) == first
    # A real (seekable) file already holding bytes gets the same bytes appended: zip offsets are its own.
    path = tmp_path / "out"
    inner = file_name(DEFAULT_TEMPLATE, ENV, extension(fmt, compression)).removesuffix(".zip")
    with open(path, "wb") as f:
        f.write(b"prefix")
        write(content_of(ROWS), ENV, f, fmt=fmt, compression=compression, inner_name=inner)
    assert path.read_bytes() == b"prefix" + first


@BOTH
def test_chunks_do_not_change_the_bytes(fmt: str, compression: str, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = package(content_of(ROWS), fmt, compression)
    monkeypatch.setattr(packaging, "_CHUNK_ROWS", 3)
    assert package(content_of(ROWS), fmt, compression) == whole


@BOTH
def test_an_empty_delivery(fmt: str, compression: str) -> None:
    data = package(content_of([]), fmt, compression)
    text = plain(data, compression)
    if fmt == "csv":
        assert text == b"op;nr;type;name;street;city;changed\r\n"
    elif fmt == "jsonl":
        assert text == b""
    else:
        XSD.assertValid(etree.fromstring(text))
        assert b"<subjects>\n  </subjects>" in text
    assert read_rows(data, fmt, compression, key=KEY) == []
    doc = a_manifest(data, fmt, compression, counts={"I": 0, "U": 0, "D": 0})
    MANIFEST_VALIDATOR.validate(doc)


@BOTH
def test_without_masks_every_row_carries_every_field(fmt: str, compression: str) -> None:
    rows = [Row(r.op, r.key, r.after, r.before, r.changed) for r in ROWS]
    data = package(content_of(rows, masks=False), fmt, compression)
    assert read_rows(data, fmt, compression, key=KEY) == expected(rows, fmt)


# --------------------------------------------------------------------------------------------------
# The formats, byte for byte
# --------------------------------------------------------------------------------------------------


def test_csv_bytes() -> None:
    text = package(content_of(ROWS), "csv", "none").decode("utf-8")
    assert text == (
        "op;nr;type;name;street;city;changed\r\n"
        'I;0001;A;Zoë D\'Hondt;"Kerkstraat; achterbouw";Gent;\r\n'
        'I;0002;A;"Residentie ""Ter Linde""";"Hoog\nstraat";"a\r\nb";\r\n'
        "I;0003;B;NA;;;\r\n"
        "I;0004;A;<&> ]]> 'x';;;\r\n"
        "U;0005;A;New;Meir 1;Antwerpen;name|street|city\r\n"
        "U;0006;B;Same;;Brugge;city\r\n"
        "D;0007;A;;;;\r\n"
        'D;"0008;x";"q""";;;;\r\n'
    )


def test_csv_with_another_delimiter() -> None:
    rows = [Row("I", ("1", "A"), {"name": "a,b", "street": "a;b", "city": None})]
    data = package(content_of(rows), "csv", "none", delimiter=",")
    assert data == b'op,nr,type,name,street,city,changed\r\nI,1,A,"a,b",a;b,,\r\n'
    assert read_rows(data, "csv", "none", ",", key=KEY) == expected(rows, "csv")


@pytest.mark.parametrize("delimiter", ["", ";;", '"', "\n", "\r"])
def test_csv_refuses_a_bad_delimiter(delimiter: str) -> None:
    with pytest.raises(ValueError, match="delimiter"):
        write(content_of(ROWS), ENV, io.BytesIO(), fmt="csv", compression="none", delimiter=delimiter)


def test_jsonl_lines_are_json_dumps_in_a_fixed_order() -> None:
    lines = package(content_of(ROWS), "jsonl", "none").decode("utf-8").split("\n")
    assert lines[-1] == ""
    for line, doc in zip(lines[:-1], expected(ROWS, "jsonl"), strict=True):
        doc.pop("changed", None)
        assert line == json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    assert lines[6] == '{"op":"D","key":{"nr":"0007","type":"A"}}'
    assert list(json.loads(lines[4])) == ["op", "key", "after", "before"]


def test_xml_envelope_context() -> None:
    root = etree.fromstring(package(content_of(ROWS), "xml", "none"))
    ns = {"p": packaging.NAMESPACE}
    context = {el.tag.split("}")[1]: el.text for el in root.find("p:context", ns)}
    assert context == {
        "name": "demo-mutaties",
        "version": "2",
        "messageType": "PUBLICATIE",
        "timestamp": "2025-10-01T06:30:15.123Z",
        "sender": "mutapub",
        "reference": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "subscriber": "gemeente-gent",
        "sequence": "7",
    }
    assert len(root.findall("p:subjects/p:subject", ns)) == len(ROWS)


def test_xml_schema_rejects_what_is_not_a_publication() -> None:
    good = package(content_of(ROWS), "xml", "none")
    for bad in (
        good.replace(b'op="D"', b'op="X"', 1),
        good.replace(b"PUBLICATIE", b"PUBLICATION"),
        good.replace(b'<key><field name="nr">0001</field><field name="type">A</field></key>', b"", 1),
        good.replace(b"</context>", b"<extra/></context>"),
        good.replace(b'<field name="type">A</field></key>', b'<field name="nr">A</field></key>', 1),
        good.replace(
            b'<field name="city" xsi:nil="true"/>', b'<field name="city" xsi:nil="true">x</field>', 1
        ),
    ):
        assert bad != good
        assert not XSD.validate(etree.fromstring(bad))


def test_xml_refuses_control_characters_json_escapes_them() -> None:
    rows = [Row("I", ("1", "A"), {"name": "bell\x07", "street": "nul\x00", "city": "\x1f"})]
    with pytest.raises(InputError, match="control character"):
        package(content_of(rows), "xml", "none")
    data = package(content_of(rows), "jsonl", "none")
    assert b"bell\\u0007" in data
    assert read_rows(data, "jsonl", "none") == expected(rows, "jsonl")
    assert read_rows(package(content_of(rows), "csv", "none"), "csv", "none", key=KEY) == expected(
        rows, "csv"
    )


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_XML_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)).filter(
        lambda c: c in "\t\n\r" or (c >= " " and c not in "\ufffe\uffff")
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.tuples(st.none() | _TEXT, st.none() | _TEXT), min_size=1, max_size=8))
def test_any_text_round_trips_in_jsonl_and_csv(values: list[tuple[str | None, str | None]]) -> None:
    rows = [
        Row("U", (str(i), "A"), {"name": a, "street": b}, before={"name": b}, changed=["name"])
        for i, (a, b) in enumerate(values)
    ]
    content = content_of(rows, ("name", "street"))
    assert read_rows(package(content, "jsonl", "gzip"), "jsonl", "gzip") == expected(
        rows, "jsonl", ("name", "street")
    )
    got = read_rows(package(content, "csv", "zip"), "csv", "zip", key=KEY)
    assert got == expected(rows, "csv", ("name", "street"))


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.tuples(st.none() | _XML_TEXT, st.none() | _XML_TEXT), min_size=1, max_size=8))
def test_any_xml_text_round_trips(values: list[tuple[str | None, str | None]]) -> None:
    rows = [
        Row("U", (str(i), "A"), {"name": a, "street": b}, before={"name": b}, changed=["name"])
        for i, (a, b) in enumerate(values)
    ]
    data = package(content_of(rows, ("name", "street")), "xml", "none")
    XSD.assertValid(etree.fromstring(data))
    assert read_rows(data, "xml", "none") == expected(rows, "xml", ("name", "street"))


def test_values_that_are_not_text_are_written_as_text() -> None:
    table = pa.table(
        {
            "op": ["I"],
            "nr": pa.array([12], pa.int64()),
            "type": ["A"],
            "name": pa.array([dt.date(2025, 1, 2)], pa.date32()),
            "street": pa.array([None], pa.string()),
            "city": pa.array(["x"], pa.large_string()),
        }
    )
    content = DeliveryContent("demo", KEY, FIELDS, table)
    data = package(content, "jsonl", "none")
    assert (
        data
        == b'{"op":"I","key":{"nr":"12","type":"A"},"after":{"name":"2025-01-02","street":null,"city":"x"}}\n'
    )


# --------------------------------------------------------------------------------------------------
# Compression details
# --------------------------------------------------------------------------------------------------


def test_gzip_header_has_no_time_and_no_name() -> None:
    data = package(content_of(ROWS), "csv", "gzip")
    assert data[:4] == b"\x1f\x8b\x08\x00"  # magic, deflate, no flags (no FNAME)
    assert data[4:8] == b"\x00\x00\x00\x00"  # mtime 0


def test_zip_member_name_time_and_permissions() -> None:
    data = package(content_of(ROWS), "xml", "zip")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        (info,) = zf.infolist()
        assert info.filename == "gemeente-gent_demo-mutaties_20251001063015123_000007.xml"
        assert info.date_time == (2025, 10, 1, 6, 30, 14)  # zip keeps even seconds
        assert info.external_attr >> 16 == 0o100644
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert zf.testzip() is None


def test_zip_needs_a_safe_member_name() -> None:
    with pytest.raises(ValueError, match="inner_name"):
        write(content_of(ROWS), ENV, io.BytesIO(), fmt="csv", compression="zip")
    with pytest.raises(InputError):
        write(content_of(ROWS), ENV, io.BytesIO(), fmt="csv", compression="zip", inner_name="../x.csv")


def test_unknown_format_or_compression() -> None:
    with pytest.raises(ValueError, match="format"):
        write(content_of(ROWS), ENV, io.BytesIO(), fmt="parquet", compression="none")
    with pytest.raises(ValueError, match="compression"):
        extension("csv", "bz2")


# --------------------------------------------------------------------------------------------------
# Rows that must not be written as they are
# --------------------------------------------------------------------------------------------------


def test_an_update_the_subscriber_cannot_see_is_refused_and_can_be_dropped() -> None:
    rows = [
        *ROWS,
        Row(
            "U",
            ("0009", "A"),
            {"name": "x", "street": "y"},
            before={"street": "z"},
            changed=["street"],
            allowed={"name"},
        ),
        Row("U", ("0010", "A"), {"name": "x"}, changed=["secret"]),
    ]
    content = content_of(rows)
    with pytest.raises(ValueError, match="drop them first"):
        package(content, "csv", "none")
    kept = packaging.drop_invisible_updates(content)
    assert kept.table.num_rows == len(ROWS)
    assert package(kept, "csv", "none") == package(content_of(ROWS), "csv", "none")
    unchanged = content_of(ROWS)
    assert packaging.drop_invisible_updates(unchanged) is unchanged
    assert packaging.counts(kept) == {"I": 4, "U": 2, "D": 2}


def test_content_must_be_coherent() -> None:
    content = content_of(ROWS)
    with pytest.raises(ValueError, match="lacks the columns"):
        write(
            DeliveryContent("demo", KEY, ("name", "zip"), content.table),
            ENV,
            io.BytesIO(),
            compression="none",
        )
    with pytest.raises(ValueError, match="I, U or D"):
        bad = content.table.set_column(0, "op", pa.array(["X"] * len(ROWS)))
        write(DeliveryContent("demo", KEY, FIELDS, bad), ENV, io.BytesIO(), compression="none")
    with pytest.raises(ValueError, match="allowed"):
        masks = {"name": np.ones(2, dtype=bool)}
        write(
            DeliveryContent("demo", KEY, FIELDS, content.table, masks), ENV, io.BytesIO(), compression="none"
        )
    with pytest.raises(ValueError, match="before.street"):
        without = content.table.drop_columns(["before.street"])
        write(DeliveryContent("demo", KEY, FIELDS, without), ENV, io.BytesIO(), compression="none")
    with pytest.raises(ValueError, match="envelope"):
        write(DeliveryContent("other", KEY, FIELDS, content.table), ENV, io.BytesIO(), compression="none")


def test_inserts_and_deletes_need_no_changed_or_before_columns() -> None:
    rows = [r for r in ROWS if r.op != "U"]
    table = content_of(rows).table.drop_columns(["changed", *(f"before.{f}" for f in FIELDS)])
    content = DeliveryContent("demo", KEY, FIELDS, table, content_of(rows).allowed)
    assert package(content, "csv", "gzip") == package(content_of(rows), "csv", "gzip")


# --------------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------------


def test_extensions() -> None:
    assert [extension(f, c) for f in FORMATS for c in COMPRESSIONS] == [
        "csv.gz", "csv.zip", "csv",
        "jsonl.gz", "jsonl.zip", "jsonl",
        "xml.gz", "xml.zip", "xml",
    ]  # fmt: skip


def test_default_file_name() -> None:
    assert (
        file_name(DEFAULT_TEMPLATE, ENV, "csv.gz")
        == "gemeente-gent_demo-mutaties_20251001063015123_000007.csv.gz"
    )
    other = Envelope(
        "s",
        "d",
        1,
        dt.datetime(2026, 1, 2, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        ENV.reference,
        1,
    )
    assert file_name("{dataset}.{ts}.{seq}.{ext}", other, "xml") == "d.20260102020506000.1.xml"


@pytest.mark.parametrize(
    "template",
    [
        "../{subscriber}.{ext}",
        "{subscriber}/{seq}.{ext}",
        "a\\{seq}.{ext}",
        ".{seq}.{ext}",
        "{seq}..{ext}",
        "",
        "{seq}\n.{ext}",
        "{unknown}.{ext}",
        "{subscriber.__class__}.{ext}",
        "{0}.{ext}",
        "{seq:zz}.{ext}",
        "{seq",
        "x" * 300 + "{ext}",
    ],
)
def test_unsafe_templates_are_refused(template: str) -> None:
    with pytest.raises(InputError):
        file_name(template, ENV, "csv.gz")


def test_a_subscriber_code_cannot_smuggle_a_path() -> None:
    env = Envelope("../etc", "demo", 1, ENV.generated_at, ENV.reference, 1)
    with pytest.raises(InputError, match="safe file name"):
        file_name(DEFAULT_TEMPLATE, env, "csv")


def test_envelope_is_normalised() -> None:
    assert ENV.reference == "0f8fad5b-d9cb-469f-a165-70867728950e"
    with pytest.raises(ValueError, match="timezone"):
        Envelope("s", "d", 1, dt.datetime(2025, 1, 1), ENV.reference, 1)
    with pytest.raises(ValueError):
        Envelope("s", "d", 1, ENV.generated_at, "not-a-uuid", 1)
    with pytest.raises(ValueError, match="start at 1"):
        Envelope("s", "d", 0, ENV.generated_at, ENV.reference, 1)


# --------------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------------


def test_manifest_document_and_bytes() -> None:
    data = package(content_of(ROWS), "csv", "gzip")
    doc = a_manifest(data, "csv", "gzip")
    assert doc["generated_at"] == "2025-10-01T06:30:15.123Z"
    assert doc["snapshot_from"] == "2025-09-30"
    assert doc["file"]["name"].endswith(".csv.gz")
    raw = manifest_bytes(doc)
    assert raw.endswith(b"}\n") and raw.count(b'\n  "') == len(doc)
    assert json.loads(raw) == doc
    assert list(json.loads(raw)) == sorted(doc)
    assert packaging.manifest_name("a.csv.gz") == "a.csv.gz.manifest.json"


def test_initial_manifest() -> None:
    env = Envelope("s", "demo", 1, ENV.generated_at, ENV.reference, 1)
    data = package(content_of([r for r in ROWS if r.op == "I"]), "csv", "gzip", env)
    doc = manifest(
        env,
        kind="initial",
        previous_seq=None,
        change_set_id=None,
        snapshot_from=None,
        snapshot_to=dt.date(2025, 10, 1),
        counts={"I": 4},
        fields=FIELDS,
        grants=[{"id": 1, "legal_basis": "RR-2025-1", "purpose": ""}],
        file_name="s.csv.gz",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        format="csv",
        compression="gzip",
    )
    MANIFEST_VALIDATOR.validate(doc)
    assert doc["counts"] == {"I": 4, "U": 0, "D": 0}
    assert doc["previous_sequence"] is None and doc["change_set_id"] is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"kind": "full"},
        {"kind": "initial"},  # with a change set and snapshot_from
        {"change_set_id": None},
        {"previous_seq": 5},
        {"previous_seq": None},
        {"counts": {"X": 1}},
        {"sha256": "ABC"},
        {"grants": []},
        {"file_name": "../x"},
        {"format": "pdf"},
    ],
)
def test_manifest_refuses_incoherent_input(overrides: dict[str, Any]) -> None:
    with pytest.raises((ValueError, InputError)):
        a_manifest(b"", "csv", "none", **overrides)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(extra=1),
        lambda d: d.update(kind="initial"),
        lambda d: d.update(previous_sequence=None),
        lambda d: d.update(change_set_id=None),
        lambda d: d.update(generated_at="2025-10-01T06:30:15Z"),
        lambda d: d["counts"].pop("D"),
        lambda d: d["grants"][0].update(extra="x"),
        lambda d: d["file"].update(name=".hidden"),
        lambda d: d["file"].update(sha256="0" * 63),
        lambda d: d["file"].update(compression="bz2"),
    ],
)
def test_manifest_schema_rejects(change: Any) -> None:
    doc = a_manifest(b"", "csv", "none")
    MANIFEST_VALIDATOR.validate(doc)
    change(doc)
    assert not MANIFEST_VALIDATOR.is_valid(doc)


# --------------------------------------------------------------------------------------------------
# csvwrite
# --------------------------------------------------------------------------------------------------


def test_csvwrite_encodes_fields() -> None:
    arr = pa.array(["plain", "a;b", 'q"', "l\nf", "c\rr", "", None, "a,b"], pa.string())
    assert csvwrite.encode_field(arr).to_pylist() == [
        "plain",
        '"a;b"',
        '"q"""',
        '"l\nf"',
        '"c\rr"',
        "",
        "",
        "a,b",
    ]
    assert csvwrite.encode_field(arr, ",", quote_empty=True).to_pylist()[5:] == ['""', "", '"a,b"']


def test_csvwrite_table_in_chunks() -> None:
    table = pa.table({"a;": ["x", None, "z"], "b": ["1", "2", "3;"]})
    out = io.BytesIO()
    csvwrite.write_table(table, out, chunk_rows=2)
    assert out.getvalue() == b'"a;";b\r\nx;1\r\n;2\r\nz;"3;"\r\n'
    out = io.BytesIO()
    csvwrite.write_table(table, out, delimiter=",", line_terminator="\n", header=False)
    assert out.getvalue() == b"x,1\n,2\nz,3;\n"
