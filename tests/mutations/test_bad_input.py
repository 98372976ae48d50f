"""Each kind of bad snapshot input is refused with its file and line named, and nothing changes."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import pytest
from tests.conftest import run_cli
from tests.mutations.persons_rows import HEADER, insz, row, write

from mutapub.mutations.workspace import Workspace


def _state(ws: Workspace) -> tuple[str, list[str]]:
    """What an ingest could change: the snapshot list and every stored or staged file."""
    listed = run_cli("snapshot", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    listing = listed.stdout
    files = sorted(
        str(p.relative_to(ws.home))
        for p in ws.home.rglob("*")
        if p.is_file() and not p.name.startswith("mutapub.db")
    )
    return listing, files


def _refused(ws: Workspace, path: Path, *expected: str, dataset: str = "persons") -> str:
    before = _state(ws)
    result = run_cli("snapshot", "ingest", dataset, str(path), "--date", "2025-10-03")
    assert result.returncode != 0, result.stdout
    message = result.stderr
    assert str(path.name) in message
    for part in expected:
        assert part in message, message
    assert "Traceback" not in message
    assert _state(ws) == before
    return message


@pytest.fixture
def ws(workspace: Workspace, tmp_path: Path) -> Workspace:
    """A workspace that already holds one good snapshot, so a refusal must leave it as it was."""
    good = write(tmp_path / "good.csv", [row(1), row(2)])
    assert run_cli("snapshot", "ingest", "persons", str(good), "--date", "2025-10-01").returncode == 0
    return workspace


def test_missing_column(ws: Workspace, tmp_path: Path) -> None:
    header = HEADER.replace(";death_date", "")
    path = write(tmp_path / "missing.csv", [row(3).rsplit(";", 1)[0]], header=header)
    _refused(ws, path, "line 1", "missing column", "death_date")


def test_unknown_column(ws: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "unknown.csv", [row(3) + ";x"], header=HEADER + ";email")
    _refused(ws, path, "line 1", "column 14 'email'")


def test_header_read_with_the_wrong_delimiter(ws: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "commas.csv", [row(3).replace(";", ",")], header=HEADER.replace(";", ","))
    _refused(ws, path, "line 1", "','-separated")


def test_duplicate_keys_name_the_first_ten_lines_and_the_total(ws: Workspace, tmp_path: Path) -> None:
    lines = [row(i) for i in range(1, 21)] + [row(i, last="Again") for i in range(1, 13)]
    path = write(tmp_path / "dups.csv", lines)
    message = _refused(ws, path, "24 rows share their key", "line 2:", f"insz='{insz(1)}'")
    assert message.count("  line ") == 10


def test_key_failing_its_validator(ws: Workspace, tmp_path: Path) -> None:
    bad = insz(5)[:-2] + "00"
    path = write(tmp_path / "check.csv", [row(3), row(4), row(5, insz=bad)])
    _refused(ws, path, "line 4, column insz", bad, "insz check")


def test_undecodable_bytes(ws: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "latin1.csv", [row(3), row(4, last="Dupré")], encoding="latin-1")
    _refused(ws, path, "line 3", "0xe9", "utf-8")


def test_truncated_gzip(ws: Workspace, tmp_path: Path) -> None:
    data = gzip.compress(write(tmp_path / "x.csv", [row(i) for i in range(3, 400)]).read_bytes())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    _refused(ws, path, "truncated or corrupt gzip")


def test_truncated_zip(ws: Workspace, tmp_path: Path) -> None:
    plain = write(tmp_path / "x.csv", [row(i) for i in range(3, 400)])
    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(plain, "persons.csv")
    path = tmp_path / "cut.zip"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    _refused(ws, path, "truncated or corrupt zip")


def test_empty_file_without_header(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    _refused(ws, path, "empty")


def test_unparsable_date(ws: Workspace, tmp_path: Path) -> None:
    path = write(
        tmp_path / "dates.csv", [row(3), row(4, birth_date="1985-02-30"), row(6, birth_date="30/07/1985")]
    )
    _refused(ws, path, "2 invalid value(s)", "line 3, column birth_date: '1985-02-30'", "line 4", "%Y-%m-%d")


def test_row_with_too_few_fields(ws: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "short.csv", [row(3), row(4).rsplit(";", 2)[0]])
    _refused(ws, path, "line 3", "expected 13 fields")


def test_required_value_missing(ws: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "nokey.csv", [row(3), row(4, insz="")])
    _refused(ws, path, "line 3, column insz", "required")


def test_line_numbers_count_quoted_newlines(ws: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "multiline.csv", [row(3, street='"a\nb\nc"'), row(4, birth_date="bad")])
    _refused(ws, path, "line 5, column birth_date")
