"""The change-set engine: exact, order-independent, deterministic, and the inverse of `apply`."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mutapub.mutations.diff import AFTER, BEFORE, apply, counts, diff
from mutapub.schemas import load_schema
from mutapub.schemas.loader import parse_schema

PAIRS = parse_schema(
    {
        "name": "pairs",
        "version": 1,
        "key": ["a", "b"],
        "subject": "a",
        "columns": [{"name": "a"}, {"name": "b"}, {"name": "x"}, {"name": "y"}],
    }
)
MULTI = parse_schema(
    {"name": "multi", "version": 1, "subject": "a", "columns": [{"name": "a"}, {"name": "b"}]}
)


def _table(rows: list[tuple], schema=PAIRS) -> pa.Table:  # type: ignore[no-untyped-def]
    names = list(schema.column_names)
    return pa.table({n: pa.array([r[i] for r in rows], pa.string()) for i, n in enumerate(names)})


def _sorted(table: pa.Table, schema) -> list[dict]:  # type: ignore[no-untyped-def]
    return sorted(table.to_pylist(), key=lambda r: tuple((r[k] is None, r[k] or "") for k in schema.key))


def test_inserts_updates_deletes_with_composite_keys() -> None:
    old = _table([("1", "a", "x", "y"), ("1", "b", "x", None), ("2", "a", "x", "y"), ("3", None, "x", "y")])
    new = _table([("3", None, "x", "y"), ("2", "a", "X", "y"), ("1", "b", "x", ""), ("4", "a", None, None)])
    changes = diff(old, new, PAIRS)
    got = [(r["op"], r["a"], r["b"], r["changed"]) for r in changes.to_pylist()]
    assert got == [
        ("D", "1", "a", []),
        ("U", "1", "b", ["y"]),  # null → empty string is a change at this level (the reader makes both null)
        ("U", "2", "a", ["x"]),
        ("I", "4", "a", []),
    ]
    u = changes.to_pylist()[2]
    assert (u[BEFORE + "x"], u[AFTER + "x"], u[BEFORE + "y"], u[AFTER + "y"]) == ("x", "X", "y", "y")
    assert counts(changes) == {"I": 1, "U": 2, "D": 1}


def test_null_key_parts_match_each_other() -> None:
    old = _table([("3", None, "x", "y")])
    assert diff(old, _table([("3", None, "x", "y")]), PAIRS).num_rows == 0
    assert counts(diff(old, _table([("3", None, "z", "y")]), PAIRS)) == {"I": 0, "U": 1, "D": 0}


def test_keyed_on_all_columns_only_inserts_and_deletes() -> None:
    old = _table([("1", "a"), ("1", "b")], MULTI)
    new = _table([("1", "b"), ("1", "c")], MULTI)
    assert [(r["op"], r["b"]) for r in diff(old, new, MULTI).to_pylist()] == [("D", "a"), ("I", "c")]


def test_row_order_never_matters_and_output_is_by_key() -> None:
    rows = [(str(i), "k", f"v{i}", None) for i in range(200)]
    new_rows = [(a, b, x + "'", y) if int(a) % 7 == 0 else (a, b, x, y) for a, b, x, y in rows[10:]]
    forward = diff(_table(rows), _table(new_rows), PAIRS)
    shuffled = diff(_table(rows[::-1]), _table(new_rows[::3] + new_rows[1::3] + new_rows[2::3]), PAIRS)
    assert forward.equals(shuffled)
    keys = [r["a"] for r in forward.to_pylist()]
    assert keys == sorted(keys)


def test_persons_update_lists_the_changed_fields_in_schema_order() -> None:
    schema = load_schema("persons")
    base = {c: "v" for c in schema.column_names}
    old = pa.Table.from_pylist([base], schema=pa.schema([(c, pa.string()) for c in schema.column_names]))
    new = old.set_column(schema.column_names.index("street"), "street", pa.array(["w"]))
    new = new.set_column(schema.column_names.index("box"), "box", pa.array([None], pa.string()))
    (change,) = diff(old, new, schema).to_pylist()
    assert change["op"] == "U" and change["changed"] == ["street", "box"]


values = st.one_of(st.none(), st.sampled_from(["", "NA", "0", "00", "a;b", 'q"', "é", "x\ny"]))
rows = st.dictionaries(
    st.tuples(st.sampled_from(["1", "2", "01", "3"]), st.sampled_from(["a", "b", None])),
    st.tuples(values, values),
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(old=rows, new=rows)
def test_applying_the_change_set_to_the_old_snapshot_gives_the_new_one(old: dict, new: dict) -> None:
    old_t = _table([(*k, *v) for k, v in old.items()])
    new_t = _table([(*k, *v) for k, v in new.items()])
    changes = diff(old_t, new_t, PAIRS)
    assert _sorted(apply(old_t, changes, PAIRS), PAIRS) == _sorted(new_t, PAIRS)
    assert diff(old_t, new_t, PAIRS).equals(changes)
    n = counts(changes)
    assert n["I"] == len(new.keys() - old.keys()) and n["D"] == len(old.keys() - new.keys())
    assert n["U"] == sum(1 for k in old.keys() & new.keys() if old[k] != new[k])


@pytest.mark.parametrize("n", [0, 1])
def test_empty_inputs(n: int) -> None:
    rows = [("1", "a", "x", "y")][:n]
    assert diff(_table(rows), _table(rows), PAIRS).num_rows == 0
