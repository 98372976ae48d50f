"""Followed-keys deliveries: starting from the subscriber's keys gives what judging every changed row
gives, and the followed keys are read as they were at each moment."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import select, update
from tests.mutations.persons_rows import insz, row

from mutapub.mutations import follows, grants, publication, subscribers
from mutapub.mutations.audit import AuditContext
from mutapub.mutations.diff import diff
from mutapub.mutations.grants import build_rule, effective_policy
from mutapub.mutations.models import FollowedKey
from mutapub.mutations.workspace import Workspace
from mutapub.schemas import Schema, load_schema

CTX = AuditContext(actor="test", command="pytest")
DAY = dt.date(2025, 10, 2)


# --- the subject index against judging every changed row (pure) -----------------------------------


def _vehicles(rng: np.random.Generator) -> tuple[pa.Table, pa.Table]:
    """Two days of a vehicle register: several plates per holder, holders changing, some without one."""
    holders = [f"h{i:02d}" for i in range(15)]

    def pick(n: int) -> list[str | None]:
        return [None if rng.random() < 0.1 else holders[int(rng.integers(len(holders)))] for _ in range(n)]

    def table(plates: list[str], holder: list[str | None], fuel: list[str], make: list[str]) -> pa.Table:
        n = len(plates)
        return pa.table(
            {
                "plate": plates,
                "vin": ["WVWZZZ1JZXW000001"] * n,
                "make": make,
                "model": ["m"] * n,
                "fuel": fuel,
                "first_registration": ["2020-01-01"] * n,
                "holder_insz": pa.array(holder, pa.string()),
                "holder_municipality_nis": ["44021"] * n,
            }
        )

    plates = [f"1-ABC-{i:03d}" for i in range(60)]
    fuel = [str(rng.choice(["D", "E"])) for _ in plates]
    make = [str(rng.choice(["VW", "BMW"])) for _ in plates]
    old = table(plates, pick(len(plates)), fuel, make)
    keep = [i for i in range(len(plates)) if rng.random() > 0.1]
    new_plates = [plates[i] for i in keep] + [f"2-XYZ-{i:03d}" for i in range(8)]
    holder = old.column("holder_insz").to_pylist()
    new_holder = [holder[i] if rng.random() > 0.3 else pick(1)[0] for i in keep] + pick(8)
    new_fuel = [fuel[i] for i in keep] + ["E"] * 8
    new_make = [make[i] if rng.random() > 0.3 else "Audi" for i in keep] + ["VW"] * 8
    return old, table(new_plates, new_holder, new_fuel, new_make)


def _persons(rng: np.random.Generator) -> tuple[pa.Table, pa.Table]:
    """Two days of persons: moves, name changes, births and deaths."""
    schema = load_schema("persons")

    def table(lines: list[str]) -> pa.Table:
        cols = list(zip(*[line.split(";") for line in lines], strict=True))
        names = schema.column_names
        return pa.table(
            {n: pa.array([v or None for v in c], pa.string()) for n, c in zip(names, cols, strict=True)}
        )

    day1 = [row(i, nis=str(rng.choice(["44021", "24062"]))) for i in range(1, 50)]
    day2 = []
    for i in range(1, 50):
        r = rng.random()
        if r < 0.1:
            continue  # died or left
        if r < 0.4:
            day2.append(
                row(i, nis=str(rng.choice(["44021", "24062"])), last=str(rng.choice(["Peeters", "Maes"])))
            )
        else:
            day2.append(day1[i - 1])
    day2 += [row(i) for i in range(50, 56)]
    return table(day1), table(day2)


def _followed(schema: Schema, old: pa.Table, new: pa.Table, rng: np.random.Generator) -> pa.Array:
    subjects = {s for t in (old, new) for s in t.column(schema.subject).to_pylist() if s is not None}
    chosen = sorted(s for s in subjects if rng.random() < 0.4) + ["not-a-subject-anywhere"]
    return pa.array(sorted(chosen), pa.string())


CASES = {
    "persons": (
        _persons,
        [
            {"groups": ["identity"], "followed_only": True},
            {"groups": ["address"], "followed_only": True, "where": ["municipality_nis = '44021'"]},
        ],
    ),
    "vehicles": (
        _vehicles,
        [
            {"groups": ["vehicle"], "followed_only": True},
            {"columns": ["holder_municipality_nis"], "followed_only": True, "where": ["fuel = 'E'"]},
        ],
    ),
}


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dataset", sorted(CASES))
def test_starting_from_the_followed_subjects_equals_judging_every_changed_row(
    dataset: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    make, specs = CASES[dataset]
    schema = load_schema(dataset)
    old, new = make(rng)
    changes = diff(old, new, schema)
    rules = [build_rule("x", dataset, legal_basis="L", id=i, **spec) for i, spec in enumerate(specs, 1)]
    policy = effective_policy(rules[: 1 + seed % 2], dataset, DAY)
    assert policy.followed_only
    args = {"followed": _followed(schema, old, new, rng)}
    index = publication.ChangeIndex(changes, schema)
    every = publication.select_delta(policy, policy, schema, index.old, index.new, changes, args, args)
    few_old, few_new, few_changes, found = index.about(args["followed"])
    assert set(found.to_pylist()) < set(args["followed"].to_pylist())
    # the rows left are all about the subjects found: they stand for every followed key
    few_args = {"followed": found}
    few = publication.select_delta(policy, policy, schema, few_old, few_new, few_changes, few_args, few_args)
    whole = publication.select_delta(policy, policy, schema, old, new, changes, args, args)
    for got in (few, whole):
        assert got[0].equals(every[0]) and got[2].equals(every[2])
        assert all((got[1][f] == every[1][f]).all() for f in every[1])
    assert every[0].num_rows  # the case delivers something


def test_no_followed_subject_in_the_change_set_selects_nothing() -> None:
    schema = load_schema("persons")
    old, new = _persons(np.random.default_rng(1))
    index = publication.ChangeIndex(diff(old, new, schema), schema)
    nobody = pa.array(["00000000000"], pa.string())
    few_old, few_new, few_changes, found = index.about(nobody)
    assert (few_old.num_rows, few_new.num_rows, few_changes.num_rows, len(found)) == (0, 0, 0, 0)
    policy = effective_policy(
        [build_rule("x", "persons", legal_basis="L", groups=["identity"], followed_only=True)], "persons", DAY
    )
    args = {"followed": nobody}
    table, masks, subjects = publication.select_delta(
        policy, policy, schema, few_old, few_new, few_changes, args, args
    )
    assert table.num_rows == 0 and len(subjects) == 0


# --- followed keys as they were -------------------------------------------------------------------


def test_followed_keys_are_read_as_they_were_at_each_moment(workspace: Workspace) -> None:
    t = [dt.datetime(2025, 10, 1, h, tzinfo=dt.UTC) for h in range(8)]
    a, b = insz(1), insz(2)
    with workspace.sessions() as s, s.begin():
        subscribers.add(s, CTX, "ocmw", **subscribers.settings(name="OCMW"))
        grants.add(s, CTX, "ocmw", "persons", legal_basis="L", groups=["identity"], followed_only=True)
        follows.add(s, CTX, "ocmw", "persons", [a])
        follows.remove(s, CTX, "ocmw", "persons", [a])
        follows.add(s, CTX, "ocmw", "persons", [a, b])  # a followed again: a second row
    with workspace.sessions() as s, s.begin():
        rows = list(s.scalars(select(FollowedKey).order_by(FollowedKey.id)))
        times = {rows[0].id: (t[1], t[3]), rows[1].id: (t[5], None), rows[2].id: (t[2], None)}
        assert [r.subject_key for r in rows] == [a, a, b]
        for rid, (added, removed) in times.items():
            s.execute(
                update(FollowedKey).where(FollowedKey.id == rid).values(added_at=added, removed_at=removed)
            )
    with workspace.sessions() as s:
        sub = subscribers.get(s, "ocmw")
        got = publication.followed_as_of(s, sub, "persons", t[0], t[1], t[2], t[3], t[4], t[5], t[6])
        assert [k.to_pylist() for k in got] == [[], [a], [a, b], [b], [b], [a, b], [a, b]]
        (alone,) = publication.followed_as_of(s, sub, "persons", t[3])
        assert alone.to_pylist() == [b]


def test_a_followed_keys_subscriber_gets_the_changes_of_its_subjects_only(
    workspace: Workspace, tmp_path: Path
) -> None:
    """End to end through the subject index: the same keys followed on both days."""
    from tests.mutations.test_publication import DAY1, DAY2, _files, _grant, _ingest, _ops, _subscriber

    _subscriber(workspace, "ocmw")
    _subscriber(workspace, "cpas")
    _grant(workspace, "ocmw", groups=["identity", "address"], followed_only=True)
    _grant(workspace, "cpas", groups=["civil_status"], followed_only=True)
    with workspace.sessions() as s, s.begin():
        follows.add(s, CTX, "ocmw", "persons", [insz(1), insz(2), insz(5), insz(7)])
        follows.add(s, CTX, "cpas", "persons", [insz(2), insz(4)])
    _ingest(workspace, tmp_path, 1, DAY1)
    publication.publish(workspace)
    _ingest(workspace, tmp_path, 2, DAY2[:3] + DAY2[4:])  # person 4 leaves the register
    publication.publish(workspace)
    ocmw, cpas = _files(workspace, "ocmw")[1], _files(workspace, "cpas")[1]
    # 1 moved (U), 2 changed only a field ocmw may not see (nothing), 5 was born (I)
    assert _ops(ocmw["rows"]) == [("U", insz(1)), ("I", insz(5))]
    assert _ops(cpas["rows"]) == [("U", insz(2)), ("D", insz(4))]
    assert cpas["rows"][0]["changed"] == ["civil_status"]
