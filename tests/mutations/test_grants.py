"""Grants: checking against schemas, the pure effective policy with per-row unions, and the store."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import func, select

from mutapub.mutations import grants, subscribers
from mutapub.mutations.audit import AuditContext
from mutapub.mutations.db import transaction
from mutapub.mutations.errors import Conflict, InputError, NotFound
from mutapub.mutations.grants import GrantRule, build_rule, effective_policy, resolve_fields
from mutapub.mutations.models import Grant
from mutapub.mutations.workspace import Workspace
from mutapub.schemas import load_schema

CTX = AuditContext("tester", "pytest")
D = dt.date


def rule(**kw: Any) -> GrantRule:
    """A persons grant for `gent`, checked like one the operator would add."""
    kw.setdefault("groups", ["identity"])
    kw.setdefault("legal_basis", "VTC/2019/042")
    return build_rule("gent", kw.pop("dataset", "persons"), **kw)


# --- resolving fields ----------------------------------------------------------------------------


def test_resolve_fields_always_includes_key_and_subject_in_schema_order() -> None:
    schema = load_schema("persons")
    assert resolve_fields(schema, ["civil_status"]) == ("insz", "civil_status")
    assert resolve_fields(schema, [], ["postal_code", "last_name"]) == ("insz", "last_name", "postal_code")
    vehicles = load_schema("vehicles")
    assert resolve_fields(vehicles, [], ["make"]) == ("plate", "make", "holder_insz")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "no_such_dataset"}, "unknown dataset 'no_such_dataset'"),
        ({"groups": ["no_such_group"]}, "no field group 'no_such_group'"),
        ({"groups": [], "columns": ["no_such_column"]}, "no column 'no_such_column'"),
        ({"groups": []}, "must name --groups and/or --fields"),
        ({"where": ["municipality_nis in ("]}, "cannot parse --where"),
        ({"where": ["nope = '1'"]}, "no column 'nope'"),
        (
            {"valid_from": D(2026, 1, 1), "valid_to": D(2025, 1, 1)},
            "valid-to 2025-01-01 is before valid-from 2026-01-01",
        ),
        ({"legal_basis": "  "}, "needs a legal basis"),
    ],
)
def test_build_rule_refuses(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        rule(**kwargs)


def test_groups_and_fields_accept_commas_and_repeats() -> None:
    r = rule(groups=["identity,address", "civil_status"], columns=["box"])
    assert r.groups == ("identity", "address", "civil_status")
    assert "box" in r.fields and "civil_status" in r.fields


# --- effective policy (pure, table-driven) ---------------------------------------------------------

DAY = D(2025, 10, 1)

VALIDITY = [
    ("open on both ends", {}, True),
    ("starts that day", {"valid_from": DAY}, True),
    ("ends that day", {"valid_to": DAY}, True),
    ("expired", {"valid_to": D(2025, 9, 30)}, False),
    ("not yet valid", {"valid_from": D(2025, 10, 2)}, False),
    ("inside its window", {"valid_from": D(2025, 1, 1), "valid_to": D(2025, 12, 31)}, True),
    ("suspended subscriber", {"subscriber_status": "suspended"}, True),  # still delivered: no sequence gap
]


@pytest.mark.parametrize(("case", "kwargs", "valid"), VALIDITY, ids=[c for c, _, _ in VALIDITY])
def test_effective_policy_keeps_grants_valid_that_day(case: str, kwargs: dict[str, Any], valid: bool) -> None:
    policy = effective_policy([rule(**kwargs)], "persons", DAY)
    assert len(policy.grants) == (1 if valid else 0)
    table = pa.table(
        {c: ["85073100130"] if c == "insz" else ["x"] for c in load_schema("persons").column_names}
    )
    assert len(policy.select(table)) == (1 if valid else 0)


def test_effective_policy_ignores_other_datasets_and_refuses_mixed_subscribers() -> None:
    vehicles = build_rule("gent", "vehicles", groups=[], columns=["make"], legal_basis="X")
    assert effective_policy([rule(), vehicles], "persons", DAY).grants == (rule(),)
    other = build_rule("leuven", "persons", groups=["identity"], legal_basis="X")
    with pytest.raises(ValueError, match="one subscriber"):
        effective_policy([rule(), other], "persons", DAY)


def test_effective_policy_refuses_unknown_columns() -> None:
    stale = GrantRule("gent", "persons", ("insz", "shoe_size"), "X")
    with pytest.raises(InputError, match="unknown column.*shoe_size"):
        effective_policy([stale], "persons", DAY)
    bad_where = GrantRule("gent", "persons", ("insz",), "X", where=("shoe_size = '42'",))
    with pytest.raises(InputError, match="no column 'shoe_size'"):
        effective_policy([bad_where], "persons", DAY)


PERSONS = pa.table(
    {
        "insz": ["85073100130", "85073100229", "85073100328", "85073100427"],
        "last_name": ["Peeters", "Janssens", "Maes", "Jacobs"],
        "first_names": ["An", "Bart", "Chris", "Dirk"],
        "birth_date": ["1985-07-31"] * 4,
        "sex": ["F", "M", "M", "M"],
        "nationality": ["BE"] * 4,
        "municipality_nis": ["44021", "44021", "24062", "11002"],
        "street": ["Veldstraat", "Kouter", "Bondgenotenlaan", "Meir"],
        "house_number": ["1", "2", "3", "4"],
        "box": [None, None, "A", None],
        "postal_code": ["9000", "9000", "3000", "2000"],
        "civil_status": ["1", "2", "1", "3"],
        "death_date": [None, None, None, None],
    }
)

UNIONS = [
    (
        "one grant: its rows, its fields",
        [{"groups": ["identity"], "where": ["municipality_nis = '44021'"]}],
        {"85073100130": {"identity"}, "85073100229": {"identity"}},
    ),
    (
        "two grants on disjoint rows: each row has its own grant's fields only",
        [
            {"groups": ["identity"], "where": ["municipality_nis = '44021'"]},
            {"groups": ["address"], "where": ["municipality_nis = '24062'"]},
        ],
        {"85073100130": {"identity"}, "85073100229": {"identity"}, "85073100328": {"address"}},
    ),
    (
        "overlapping grants: the union on the overlap",
        [
            {"groups": ["identity"], "where": ["municipality_nis in (44021, 24062)"]},
            {"groups": ["address"], "where": ["sex = 'M'"]},
        ],
        {
            "85073100130": {"identity"},
            "85073100229": {"identity", "address"},
            "85073100328": {"identity", "address"},
            "85073100427": {"address"},
        },
    ),
    (
        "several --where on one grant: all must hold",
        [{"groups": ["civil_status"], "where": ["sex = 'M'", "postal_code startswith '9'"]}],
        {"85073100229": {"civil_status"}},
    ),
    (
        "followed only",
        [{"groups": ["civil_status"], "followed_only": True}],
        {"85073100427": {"civil_status"}},
    ),
]


def _groups_of(fields: list[str]) -> set[str]:
    schema = load_schema("persons")
    return {g for g, cols in schema.groups.items() if set(cols) & set(fields)}


@pytest.mark.parametrize(("case", "specs", "expected"), UNIONS, ids=[c for c, _, _ in UNIONS])
def test_select_gives_each_row_the_union_of_the_grants_selecting_it(
    case: str, specs: list[dict[str, Any]], expected: dict[str, set[str]]
) -> None:
    policy = effective_policy([rule(**s) for s in specs], "persons", DAY)
    sel = policy.select(PERSONS, followed=["85073100427"])
    keys = sel.table.column("insz").to_pylist()
    assert {k: _groups_of(sel.fields_of(i)) for i, k in enumerate(keys)} == expected
    # A cell a row may not carry is null, never the value of a grant that did not select the row.
    for i, _key in enumerate(keys):
        for field in sel.table.column_names:
            value = sel.table.column(field)[i].as_py()
            original = PERSONS.column(field)[sel.indices[i].as_py()].as_py()
            assert value == (original if field in sel.fields_of(i) else None)
    assert sel.table.column_names == list(policy.fields)


def test_select_related_dataset_predicate() -> None:
    denom = build_rule(
        "antwerpen",
        "kbo_denomination",
        columns=["Denomination"],
        where=["kbo_address[TypeOfAddress = 'REGO'].Zipcode between '2000' and '2999'"],
        legal_basis="X",
    )
    policy = effective_policy([denom], "kbo_denomination", DAY)
    assert policy.related_datasets == {"kbo_address"}
    names = pa.table(
        {
            "EntityNumber": ["0403.170.701", "0200.065.765", "0201.400.309"],
            "Language": ["1", "2", "1"],
            "TypeOfDenomination": ["001"] * 3,
            "Denomination": ["A", "B", "C"],
        }
    )
    address = pa.table(
        {
            "EntityNumber": ["0403.170.701", "0200.065.765", "0201.400.309"],
            "TypeOfAddress": ["REGO", "BAET", "REGO"],
            "Zipcode": ["2018", "2000", "9000"],
        }
    )
    with pytest.raises(InputError, match="needs the table of kbo_address"):
        policy.select(names)
    sel = policy.select(names, related={"kbo_address": address})
    assert sel.table.column("EntityNumber").to_pylist() == ["0403.170.701"]
    assert sel.indices.to_pylist() == [0]


def test_select_is_vectorised_over_many_rows() -> None:
    n = 200_000
    table = pa.table(
        {
            "insz": [f"{i:011d}" for i in range(n)],
            "municipality_nis": ["44021" if i % 3 == 0 else "24062" for i in range(n)],
            **{
                c: pa.nulls(n, pa.string())
                for c in load_schema("persons").column_names
                if c not in ("insz", "municipality_nis")
            },
        }
    )
    policy = effective_policy(
        [rule(groups=["identity"], where=["municipality_nis = '44021'"]), rule(groups=["address"])],
        "persons",
        DAY,
    )
    sel = policy.select(table)
    assert len(sel) == n
    assert int(sel.allowed["last_name"].sum()) == len(range(0, n, 3))
    assert bool(sel.allowed["street"].all())


# --- store ---------------------------------------------------------------------------------------


@pytest.fixture
def gent(workspace: Workspace) -> Workspace:
    with transaction(workspace.sessions) as s:
        subscribers.add(s, CTX, "gent", name="Stad Gent", password="S3cure-pass-123!")
    return workspace


def _grant_count(ws: Workspace) -> int:
    with ws.sessions() as s:
        return s.scalar(select(func.count()).select_from(Grant)) or 0


def test_add_list_and_revoke(gent: Workspace) -> None:
    with transaction(gent.sessions) as s:
        g = grants.add(
            s,
            CTX,
            "gent",
            "persons",
            groups=["identity"],
            where=["municipality_nis in (44021)"],
            legal_basis="VTC/2019/042",
            valid_to=D(2030, 12, 31),
        )
    with gent.sessions() as s:
        (row,) = [grants.as_dict(x, c.code) for x, c in grants.list_all(s)]
        rules = grants.rules(s, "gent", "persons")
    assert row == {
        "id": g.id,
        "subscriber": "gent",
        "dataset": "persons",
        "groups": ["identity"],
        "fields": ["insz", "last_name", "first_names", "birth_date", "sex", "nationality", "death_date"],
        "where": ["municipality_nis in (44021)"],
        "followed_only": False,
        "legal_basis": "VTC/2019/042",
        "purpose": "",
        "valid_from": None,
        "valid_to": "2030-12-31",
    }
    assert rules[0].schema_version == load_schema("persons").version
    with transaction(gent.sessions) as s:
        grants.revoke(s, CTX, g.id)
    with gent.sessions() as s:
        assert grants.list_all(s) == []
        assert len(grants.list_all(s, include_revoked=True)) == 1  # kept for the auditor
    with pytest.raises(Conflict, match="already revoked"), transaction(gent.sessions) as s:
        grants.revoke(s, CTX, g.id)
    with pytest.raises(NotFound, match="no grant 999"), transaction(gent.sessions) as s:
        grants.revoke(s, CTX, 999)


BAD_GRANTS = [
    ("unknown subscriber", {"code": "nobody"}, NotFound, "no subscriber 'nobody'"),
    ("unknown dataset", {"dataset": "no_such_dataset"}, InputError, "no_such_dataset"),
    ("unknown column", {"columns": ["no_such_column"]}, InputError, "no_such_column"),
    ("unknown group", {"groups": ["no_such_group"]}, InputError, "no_such_group"),
    ("unparsable where", {"where": ["municipality_nis in ("]}, InputError, "municipality_nis in \\("),
    (
        "valid-to before valid-from",
        {"valid_from": D(2026, 1, 1), "valid_to": D(2025, 1, 1)},
        InputError,
        "2025-01-01",
    ),
]


@pytest.mark.parametrize(("case", "kwargs", "error", "message"), BAD_GRANTS, ids=[c for c, *_ in BAD_GRANTS])
def test_bad_grant_writes_nothing(
    gent: Workspace, case: str, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    args: dict[str, Any] = {
        "code": "gent",
        "dataset": "persons",
        "groups": ["identity"],
        "legal_basis": "X",
        **kwargs,
    }
    with pytest.raises(error, match=message), transaction(gent.sessions) as s:
        grants.add(s, CTX, args.pop("code"), args.pop("dataset"), **args)
    assert _grant_count(gent) == 0
