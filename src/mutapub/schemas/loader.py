"""Typed loader of the dataset schema files in `datasets/<name>.toml`."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

TYPES = ("string", "code", "integer", "date")
VALIDATORS = ("insz", "kbo_number", "regex")


class SchemaError(Exception):
    """A schema file is invalid, or a dataset or column does not exist."""

    exit_code = 1


@dataclass(frozen=True)
class Column:
    """One column: its type, nullability and optional validator."""

    name: str
    type: str = "string"
    nullable: bool = True
    date_format: str | None = None
    validator: str | None = None
    pattern: str | None = None
    on_invalid: str = "error"  # "error" refuses the file, "warn" reports and keeps the row
    description: str = ""


@dataclass(frozen=True)
class InputFormat:
    """How the source writes its files by default."""

    delimiter: str = ";"
    quote: str = '"'
    encoding: str = "utf-8"
    header: bool = True


@dataclass(frozen=True)
class Schema:
    """A dataset: its columns, key, subject, field groups and input format."""

    name: str
    version: int
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    subject: str
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    input_format: InputFormat = InputFormat()
    description: str = ""
    source: str = ""

    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names in schema order."""
        return tuple(c.name for c in self.columns)

    @property
    def value_columns(self) -> tuple[str, ...]:
        """Columns that are not part of the key."""
        return tuple(c.name for c in self.columns if c.name not in self.key)

    def column(self, name: str) -> Column:
        """The column called `name`; SchemaError when there is none."""
        for c in self.columns:
            if c.name == name:
                return c
        raise SchemaError(
            f"dataset {self.name} has no column {name!r} (columns: {', '.join(self.column_names)})"
        )


def dataset_names() -> list[str]:
    """Names of every shipped dataset, sorted."""
    files = resources.files("mutapub.schemas").joinpath("datasets").iterdir()
    return sorted(f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml"))


@cache
def load_schema(name: str) -> Schema:
    """The schema of dataset `name`; SchemaError naming the known datasets when it does not exist."""
    if name not in dataset_names():
        raise SchemaError(f"unknown dataset {name!r} (known: {', '.join(dataset_names())})")
    ref = resources.files("mutapub.schemas").joinpath("datasets", f"{name}.toml")
    return parse_schema(tomllib.loads(ref.read_text(encoding="utf-8")), origin=f"{name}.toml")


def parse_schema(doc: dict, origin: str = "<schema>") -> Schema:
    """Build and check a Schema from a parsed TOML document."""
    try:
        columns = tuple(_column(c, origin) for c in doc["columns"])
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            raise SchemaError(f"{origin}: duplicate column names")
        key = tuple(doc.get("key") or names)
        subject = doc["subject"]
        groups = {g: tuple(cols) for g, cols in doc.get("groups", {}).items()}
        for col in (*key, subject, *(c for cols in groups.values() for c in cols)):
            if col not in names:
                raise SchemaError(f"{origin}: key, subject or group names unknown column {col!r}")
        fmt = InputFormat(**doc.get("format", {}))
        return Schema(
            name=doc["name"],
            version=int(doc["version"]),
            columns=columns,
            key=key,
            subject=subject,
            groups=groups,
            input_format=fmt,
            description=doc.get("description", ""),
            source=doc.get("source", ""),
        )
    except (KeyError, TypeError) as exc:
        raise SchemaError(f"{origin}: invalid schema ({exc!r})") from exc


def _column(doc: dict, origin: str) -> Column:
    col = Column(
        name=doc["name"],
        type=doc.get("type", "string"),
        nullable=doc.get("nullable", True),
        date_format=doc.get("format"),
        validator=doc.get("validator"),
        pattern=doc.get("pattern"),
        on_invalid=doc.get("on_invalid", "error"),
        description=doc.get("description", ""),
    )
    if col.type not in TYPES:
        raise SchemaError(
            f"{origin}: column {col.name}: unknown type {col.type!r} (known: {', '.join(TYPES)})"
        )
    if col.type == "date" and not col.date_format:
        raise SchemaError(f"{origin}: date column {col.name} needs an explicit input format")
    if col.validator is not None and col.validator not in VALIDATORS:
        raise SchemaError(f"{origin}: column {col.name}: unknown validator {col.validator!r}")
    if col.validator == "regex" and not col.pattern:
        raise SchemaError(f"{origin}: column {col.name}: validator regex needs a pattern")
    if col.on_invalid not in ("error", "warn"):
        raise SchemaError(f"{origin}: column {col.name}: on_invalid must be error or warn")
    return col
