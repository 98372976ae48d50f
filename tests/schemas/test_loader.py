"""The shipped dataset schemas load and say what the issues promise."""

from __future__ import annotations

import pytest

from mutapub.schemas import SchemaError, dataset_names, load_schema
from mutapub.schemas.loader import parse_schema

PERSONS = [
    "insz",
    "last_name",
    "first_names",
    "birth_date",
    "sex",
    "nationality",
    "municipality_nis",
    "street",
    "house_number",
    "box",
    "postal_code",
    "civil_status",
    "death_date",
]


def test_every_shipped_schema_loads() -> None:
    names = dataset_names()
    assert {
        "persons",
        "vehicles",
        "kbo_enterprise",
        "kbo_establishment",
        "kbo_branch",
        "kbo_address",
        "kbo_denomination",
        "kbo_contact",
        "kbo_activity",
    } <= set(names)
    for name in names:
        schema = load_schema(name)
        assert schema.name == name and schema.version >= 1
        assert set(schema.key) <= set(schema.column_names)


def test_persons_schema() -> None:
    s = load_schema("persons")
    assert list(s.column_names) == PERSONS
    assert s.key == ("insz",) and s.subject == "insz"
    assert s.column("insz").validator == "insz"
    assert s.column("birth_date").date_format == "%Y-%m-%d"
    assert s.groups["address"] == ("municipality_nis", "street", "house_number", "box", "postal_code")
    assert s.input_format.delimiter == ";"


def test_kbo_keys_and_dates() -> None:
    assert load_schema("kbo_address").key == ("EntityNumber", "TypeOfAddress")
    assert load_schema("kbo_activity").key == (
        "EntityNumber",
        "ActivityGroup",
        "NaceVersion",
        "NaceCode",
        "Classification",
    )
    assert load_schema("kbo_enterprise").column("StartDate").date_format == "%d-%m-%Y"
    assert load_schema("vehicles").subject == "holder_insz"


def test_unknown_dataset_names_the_known_ones() -> None:
    with pytest.raises(SchemaError, match="unknown dataset 'people'.*persons"):
        load_schema("people")


@pytest.mark.parametrize(
    "doc, message",
    [
        (
            {"name": "x", "version": 1, "subject": "a", "columns": [{"name": "a", "type": "float"}]},
            "unknown type",
        ),
        (
            {"name": "x", "version": 1, "subject": "a", "columns": [{"name": "a", "type": "date"}]},
            "explicit input format",
        ),
        ({"name": "x", "version": 1, "subject": "b", "columns": [{"name": "a"}]}, "unknown column 'b'"),
        ({"name": "x", "version": 1, "subject": "a", "columns": [{"name": "a"}, {"name": "a"}]}, "duplicate"),
    ],
)
def test_invalid_schema_documents_are_refused(doc: dict, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        parse_schema(doc)
