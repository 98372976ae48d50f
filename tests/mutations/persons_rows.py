"""Small persons files for tests: valid INSZ numbers and rows written exactly as given."""

from __future__ import annotations

from pathlib import Path

HEADER = (
    "insz;last_name;first_names;birth_date;sex;nationality;municipality_nis;street;house_number;box;"
    "postal_code;civil_status;death_date"
)


def insz(serial: int, yymmdd: str = "850730", born_2000: bool = False) -> str:
    """A valid INSZ number with the given birth date digits and serial."""
    base = int(f"{yymmdd}{serial:03d}")
    check = 97 - ((2_000_000_000 + base) if born_2000 else base) % 97
    return f"{yymmdd}{serial:03d}{check:02d}"


def row(serial: int, last: str = "Peeters", street: str = "Kerkstraat", nis: str = "44021", **kw: str) -> str:
    """One persons line, `;`-separated, fields given by keyword override the defaults."""
    fields = {
        "insz": insz(serial),
        "last_name": last,
        "first_names": "Jan",
        "birth_date": "1985-07-30",
        "sex": "M",
        "nationality": "150",
        "municipality_nis": nis,
        "street": street,
        "house_number": "1",
        "box": "",
        "postal_code": "9000",
        "civil_status": "single",
        "death_date": "",
    }
    fields.update(kw)
    return ";".join(fields.values())


def write(
    path: Path, lines: list[str], header: str = HEADER, newline: str = "\n", encoding: str = "utf-8"
) -> Path:
    """Write a persons file with a header line."""
    path.write_bytes((newline.join([header, *lines]) + newline).encode(encoding))
    return path
