"""Ingesting snapshot files: values stay exact, a file is registered once, replacing is explicit."""

from __future__ import annotations

import datetime as dt
import gzip
import mmap
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.mutations.persons_rows import HEADER, insz, row, write

from mutapub.mutations import reading
from mutapub.mutations.errors import Conflict, InputError
from mutapub.mutations.snapshots import date_from_name, ingest_file, list_snapshots
from mutapub.mutations.workspace import Workspace
from mutapub.schemas import load_schema

D1, D2 = dt.date(2025, 10, 1), dt.date(2025, 10, 2)


def _stored(ws: Workspace, snapshot_id: int) -> list[dict]:
    snap = next(s for s in list_snapshots(ws) if s.id == snapshot_id)
    return pq.read_table(ws.path_in(snap.path)).to_pylist()


def test_values_stay_exact(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    zero = insz(7, yymmdd="010203")  # born 2001: the number starts with a zero
    lines = [
        row(1, last="NA", street='"Kerkstraat; achterbouw"', box='""'),
        row(2, last="NULL", street='"Rue ""Haute""\nbis"', box="N/A"),
        ";".join(
            [zero, "Ölçer", "Zoë", "2001-02-03", "F", "150", "44021", "", "1", "", "9000", "single", ""]
        ),
    ]
    path = write(tmp_path / "persons.csv", lines)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # a UTF-8 BOM before the header
    result = ingest_file(sqlite_workspace, "persons", path, D1)
    rows = {r["insz"]: r for r in _stored(sqlite_workspace, result.snapshot.id)}
    assert rows[insz(1)]["last_name"] == "NA" and rows[insz(1)]["street"] == "Kerkstraat; achterbouw"
    assert rows[insz(1)]["box"] is None  # quoted empty is missing, like empty
    assert rows[insz(2)]["last_name"] == "NULL" and rows[insz(2)]["box"] == "N/A"
    assert rows[insz(2)]["street"] == 'Rue "Haute"\nbis'
    assert (
        rows[zero]["last_name"] == "Ölçer"
        and rows[zero]["street"] is None
        and rows[zero]["insz"].startswith("0")
    )


def test_compressed_and_parquet_inputs_give_the_same_rows(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    plain = write(tmp_path / "p.csv", [row(i) for i in range(1, 6)], newline="\r\n")
    gz = tmp_path / "p.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    zipped = tmp_path / "p.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.write(plain, "persons.csv")
    parquet = tmp_path / "p.parquet"
    ids = [
        ingest_file(sqlite_workspace, "persons", p, dt.date(2025, 10, d)).snapshot.id
        for d, p in ((1, plain), (2, gz), (3, zipped))
    ]
    first = _stored(sqlite_workspace, ids[0])
    pq.write_table(pa.Table.from_pylist(first), parquet)
    ids.append(ingest_file(sqlite_workspace, "persons", parquet, dt.date(2025, 10, 4)).snapshot.id)
    assert all(_stored(sqlite_workspace, i) == first for i in ids)
    assert first[0]["birth_date"] == "1985-07-30"


def test_kbo_dates_are_stored_as_iso(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "enterprise.csv"
    path.write_text(
        '"EnterpriseNumber","Status","JuridicalSituation","TypeOfEnterprise","JuridicalForm",'
        '"JuridicalFormCAC","StartDate"\n"0403170701","AC","000","2","014",,09-08-1960\n'
    )
    snap = ingest_file(sqlite_workspace, "kbo_enterprise", path, D1).snapshot
    (stored,) = _stored(sqlite_workspace, snap.id)
    assert stored["StartDate"] == "1960-08-09"
    assert stored["EnterpriseNumber"] == "0403.170.701"
    assert stored["JuridicalFormCAC"] is None


def test_same_file_again_changes_nothing(workspace: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", [row(1), row(2)])
    first = ingest_file(workspace, "persons", path, D1)
    again = ingest_file(workspace, "persons", path, D1)
    assert (first.status, again.status) == ("registered", "unchanged")
    assert again.snapshot.id == first.snapshot.id
    assert len(list_snapshots(workspace)) == 1


def test_another_file_for_the_same_date_needs_replace(workspace: Workspace, tmp_path: Path) -> None:
    one = write(tmp_path / "one.csv", [row(1)])
    two = write(tmp_path / "two.csv", [row(1), row(2)])
    ingest_file(workspace, "persons", one, D1)
    with pytest.raises(Conflict, match="--replace"):
        ingest_file(workspace, "persons", two, D1)
    replaced = ingest_file(workspace, "persons", two, D1, replace=True)
    assert replaced.status == "replaced"
    assert [s.rows for s in list_snapshots(workspace)] == [2]


def test_date_from_the_file_name(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    assert date_from_name("persons_2025-10-02.csv") == D2
    assert date_from_name("persons_20251002.csv.gz") == D2
    assert date_from_name("persons.csv") is None
    path = write(tmp_path / "persons_20251002.csv", [row(1)])
    assert ingest_file(sqlite_workspace, "persons", path).snapshot.snapshot_date == D2
    with pytest.raises(InputError, match="--date"):
        ingest_file(sqlite_workspace, "persons", write(tmp_path / "persons.csv", [row(1)]))


def test_header_may_list_columns_in_any_order(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    names = HEADER.split(";")
    values = row(1).split(";")
    path = tmp_path / "p.csv"
    path.write_text(";".join(reversed(names)) + "\n" + ";".join(reversed(values)) + "\n")
    snap = ingest_file(sqlite_workspace, "persons", path, D1).snapshot
    assert _stored(sqlite_workspace, snap.id)[0]["insz"] == insz(1)


def test_configured_encoding_is_honoured(tmp_path: Path) -> None:
    from mutapub.mutations import reading
    from mutapub.schemas import InputFormat, load_schema

    path = write(tmp_path / "cp1252.csv", [row(1, last="Dupré", street="Rue de l’Église")], encoding="cp1252")
    table = reading.read_table(reading.detect(path), load_schema("persons"), InputFormat(encoding="cp1252"))
    assert table.column("last_name").to_pylist() == ["Dupré"]
    assert table.column("street").to_pylist() == ["Rue de l’Église"]


def test_same_input_same_bytes(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    lines = [row(i, street=f"Straat {i}") for i in range(1, 300)]
    one = ingest_file(sqlite_workspace, "persons", write(tmp_path / "a.csv", lines), D1).snapshot
    two = ingest_file(
        sqlite_workspace, "persons", write(tmp_path / "b.csv", lines, newline="\r\n"), D2
    ).snapshot
    assert sqlite_workspace.path_in(one.path).read_bytes() == sqlite_workspace.path_in(two.path).read_bytes()


def test_a_parse_started_early_stores_the_same_bytes(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    from mutapub.mutations import parsing

    lines = [row(i, street=f"Straat {i}") for i in range(1, 300)]
    plain = ingest_file(sqlite_workspace, "persons", write(tmp_path / "a.csv", lines), D1).snapshot
    path = write(tmp_path / "b.csv", lines)
    pending = parsing.start("persons", path)
    early = ingest_file(sqlite_workspace, "persons", path, D2, pending=pending).snapshot
    assert (
        sqlite_workspace.path_in(plain.path).read_bytes() == sqlite_workspace.path_in(early.path).read_bytes()
    )
    with pytest.raises(RuntimeError, match="already taken"):
        pending.take()


def test_an_early_parse_starts_before_validation_and_the_database_layer_are_imported(tmp_path: Path) -> None:
    """The file is read while the command imports the rest; the thread then validates it."""
    path = write(tmp_path / "p.csv", [row(1), row(2)])
    probe = "\n".join(
        [
            "import sys",
            "from mutapub.mutations import parsing, reading",
            "heavy, real = [], reading.read_table",
            "def spy(*args):",
            "    names = ('pyarrow.parquet', 'sqlalchemy', 'duckdb', 'mutapub.mutations.validation')",
            "    heavy.extend(m for m in names if m in sys.modules)",
            "    return real(*args)",
            "reading.read_table = spy",
            f"rows = parsing.start('persons', {str(path)!r}).take().table.num_rows",
            "print(heavy, rows, 'mutapub.mutations.staging' in sys.modules)",
        ]
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] 2 True"  # nothing heavy when the read starts; validated after


def test_a_bad_file_parsed_early_registers_nothing(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    from mutapub.mutations import parsing

    path = write(tmp_path / "p.csv", [row(1), row(1)])  # the same INSZ twice
    with pytest.raises(InputError, match=r"share their key.*\n.*line 2"):
        ingest_file(sqlite_workspace, "persons", path, D1, pending=parsing.start("persons", path))
    assert list_snapshots(sqlite_workspace) == []
    assert list(sqlite_workspace.staging_dir.glob("*")) == []


def _quoted_rows(count: int) -> list[str]:
    """Rows whose streets hold quotes, escaped quotes, delimiters and line breaks, some of each."""
    streets = [
        '"Kerkstraat\nachterbouw"',
        '"Residentie ""Ter Linde"""',
        '"Dorp; achter"',
        "Markt",
        '"a\r\nb"',
    ]
    return [row(i, street=streets[i % len(streets)]) for i in range(1, count)]


def test_row_ranges_cut_only_at_line_breaks_outside_quoted_values(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", _quoted_rows(300))
    data = path.read_bytes()
    fmt = load_schema("persons").input_format
    ranges = reading.row_ranges(reading.detect(path), fmt, "utf8", pieces=9)
    assert ranges is not None and len(ranges) == 9
    assert ranges[0][0] == data.index(b"\n") + 1  # after the header line
    assert ranges[-1][1] == len(data)
    for (_, end), (start, _) in zip(ranges, ranges[1:], strict=False):
        assert end == start  # the pieces tile the rows
        assert data[start - 1 : start] == b"\n" and data[:start].count(b'"') % 2 == 0  # never inside quotes
    assert reading.row_ranges(reading.detect(path), fmt, "utf8", pieces=1) is None


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_file_read_in_pieces_gives_the_rows_of_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, newline: str
) -> None:
    path = write(tmp_path / "p.csv", _quoted_rows(500), header="\ufeff" + HEADER, newline=newline)
    schema = load_schema("persons")
    whole = reading.read_table(reading.detect(path), schema)
    monkeypatch.setattr(reading, "PIECE_SIZE", 1000)
    monkeypatch.setattr(reading.pa, "cpu_count", lambda: 7)
    monkeypatch.setattr(reading, "BLOCK_SIZE", 2000)  # and several blocks per piece
    read_in: list[int] = []
    real = reading._read_pieces
    monkeypatch.setattr(
        reading,
        "_read_pieces",
        lambda src, ranges, *a: (read_in.append(len(ranges)), real(src, ranges, *a))[1],
    )
    pieces = reading.read_table(reading.detect(path), schema)
    assert read_in == [7]
    assert pieces.equals(whole)
    assert pieces.column("street").to_pylist()[:5] == [
        'Residentie "Ter Linde"',
        "Dorp; achter",
        "Markt",
        "a\r\nb",
        "Kerkstraat\nachterbouw",
    ]


def test_cuts_read_quotes_as_arrow_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quote inside an unquoted value is a letter; one at a field's start opens a quoted value."""
    lines = [row(i, last='O"Brien' if i == 3 else "Peeters") for i in range(1, 60)]
    lines += [row(i, street='"Hoog\nstraat"', first_names='"Jan ""Bob"""') for i in range(60, 120)]
    lines += [row(120, street='""'), row(121, death_date='"open to the end')]  # unclosed, as Arrow allows
    path = write(tmp_path / "p.csv", lines, header="\ufeff" + HEADER)
    data = path.read_bytes()
    schema = load_schema("persons")
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        opens, closes = reading._quoted_spans(mm, b'"', b";")
    assert data.index(b'O"Brien') + 1 not in opens
    assert len(opens) == 2 * 60 + 2 and closes[-1] == len(data)
    assert all(data[o] == data[c] == ord('"') for o, c in zip(opens[:-1], closes[:-1], strict=True))
    ranges = reading.row_ranges(reading.detect(path), schema.input_format, "utf8", 40)
    assert ranges is not None and len(ranges) > 20
    for start, _ in ranges[1:]:
        assert not any(o < start <= c for o, c in zip(opens, closes, strict=True))  # never inside a value
    whole = reading.read_table(reading.detect(path), schema)
    monkeypatch.setattr(reading, "PIECE_SIZE", 200)
    monkeypatch.setattr(reading.pa, "cpu_count", lambda: 40)
    assert reading.read_table(reading.detect(path), schema).equals(whole)
    assert (
        whole.column("last_name")[2].as_py() == 'O"Brien'
        and whole.column("first_names")[60].as_py() == 'Jan "Bob"'
    )


def test_a_file_in_another_encoding_read_in_pieces_gives_the_rows_of_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mutapub.schemas import InputFormat

    lines = [
        row(i, last="Dupré", street='"Rue de l’Église\nachter"' if i % 7 == 0 else "Markt")
        for i in range(1, 300)
    ]
    path = write(tmp_path / "cp1252.csv", lines, encoding="cp1252")
    schema, fmt = load_schema("persons"), InputFormat(encoding="cp1252")
    whole = reading.read_table(reading.detect(path), schema, fmt)
    monkeypatch.setattr(reading, "PIECE_SIZE", 1000)
    monkeypatch.setattr(reading.pa, "cpu_count", lambda: 5)
    assert reading.row_ranges(reading.detect(path), fmt, "cp1252", 5) is not None
    assert reading.read_table(reading.detect(path), schema, fmt).equals(whole)
    assert whole.column("street")[6].as_py() == "Rue de l’Église\nachter"


def test_a_bad_row_in_a_later_piece_is_reported_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _quoted_rows(400)
    lines[350] = "only;three;fields"
    path = write(tmp_path / "p.csv", lines)
    monkeypatch.setattr(reading, "PIECE_SIZE", 1000)
    monkeypatch.setattr(reading.pa, "cpu_count", lambda: 4)
    expected = path.read_bytes()[: path.read_bytes().index(b"only;three")].count(b"\n") + 1
    with pytest.raises(InputError, match=rf"line {expected}: expected 13 fields"):
        reading.read_table(reading.detect(path), load_schema("persons"))


@pytest.mark.parametrize("quoted", [True, False])
def test_line_breaks_in_quoted_values_survive_every_block_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quoted: bool
) -> None:
    from mutapub.mutations import reading
    from mutapub.schemas import load_schema

    street = '"Kerkstraat\nachterbouw"' if quoted else "Kerkstraat"
    lines = [row(i, street=street) for i in range(1, 40)]
    path = write(tmp_path / "p.csv", lines)
    monkeypatch.setattr(reading, "BLOCK_SIZE", 300)  # Arrow splits the file every few rows
    schema = load_schema("persons")
    source = reading.detect(path)
    assert reading._may_quote(source, schema.input_format, "utf-8") is quoted  # both ways of splitting
    table = reading.read_table(source, schema)
    assert table.column("insz").to_pylist() == [insz(i) for i in range(1, 40)]
    expected = "Kerkstraat\nachterbouw" if quoted else "Kerkstraat"
    assert set(table.column("street").to_pylist()) == {expected}
