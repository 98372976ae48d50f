"""Publication: per-subscriber files of each new snapshot, placed in the outbox atomically.

For every snapshot not yet published (oldest first) and every subscriber with a grant valid on its date,
a delivery is first *planned* (its sequence number, generation time, reference and file name fixed and
committed), then *produced*: its rows are selected by the subscriber's policy, written in the staging
area, fsynced, renamed into `publish/<code>/outbox/<dataset>/`, followed by the manifest, and only then
marked published together with its disclosures. A crash anywhere leaves planned rows that a rerun
produces with the same bytes; no file is ever visible half-written and no published row lacks its file.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Select, bindparam, func, insert, or_, select
from sqlalchemy.orm import Session

from mutapub.mutations import changesets, leases, packaging, predicates
from mutapub.mutations.diff import AFTER, BEFORE
from mutapub.mutations.errors import Conflict, InputError, MutapubError
from mutapub.mutations.grants import GrantRule, Policy, effective_policy, to_rule
from mutapub.mutations.models import (
    ChangeSet,
    Delivery,
    DeliveryEvent,
    Disclosure,
    FollowedKey,
    Grant,
    PublishedSnapshot,
    Snapshot,
    Subscriber,
    utcnow,
)
from mutapub.mutations.snapshots import file_sha256, latest_snapshot
from mutapub.mutations.workspace import Workspace
from mutapub.schemas import Schema, load_schema

LEASE = "publish"
_SEP = "\x1f"  # joins the parts of a composite key; never found in register data


class PublishError(MutapubError):
    """A delivery could not be produced; what was already published stays, nothing is half-published."""


@dataclass(frozen=True)
class Planned:
    """One delivery a publish made or, with dry_run, would make."""

    path: str
    kind: str
    seq: int
    counts: dict[str, int] | None


@dataclass
class PublishReport:
    """What a `publish` did or, with dry_run, would do: (dataset, date, snapshot id) and deliveries."""

    snapshots: list[tuple[str, dt.date, int]] = field(default_factory=list)
    deliveries: list[Planned] = field(default_factory=list)
    dry_run: bool = False


# --- the policy as it was at a moment -------------------------------------------------------------


def _utc(moment: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _rules_at(rows: Sequence[Grant], sub: Subscriber, at: dt.datetime) -> list[GrantRule]:
    """The rules of the grants (in id order) that existed and were not revoked at `at`."""
    return [
        to_rule(g, sub)
        for g in rows
        if _utc(g.created_at) <= at and (g.revoked_at is None or _utc(g.revoked_at) > at)
    ]


@functools.cache
def _followed_query(moments: int) -> Select:
    """The query behind `followed_as_of` for a number of moments, built once (it runs per delivery)."""
    c = FollowedKey.__table__.c  # Core columns: the rows are plain tuples, no ORM loading
    held = [
        (c.added_at <= bindparam(f"at{i}")) & (c.removed_at.is_(None) | (c.removed_at > bindparam(f"at{i}")))
        for i in range(moments)
    ]
    return (
        select(c.subject_key, *held)
        .where(c.subscriber_id == bindparam("subscriber"), c.dataset == bindparam("dataset"), or_(*held))
        .order_by(c.subject_key)
    )


def followed_as_of(session: Session, sub: Subscriber, dataset: str, *moments: dt.datetime) -> list[pa.Array]:
    """The subjects the subscriber followed in `dataset` at each of `moments`, sorted, without repeats
    (one query for all moments)."""
    params: dict[str, object] = {"subscriber": sub.id, "dataset": dataset}
    params.update((f"at{i}", m) for i, m in enumerate(moments))
    rows = session.connection().execute(_followed_query(len(moments)), params).all()
    out = []
    for i in range(len(moments)):
        keys = [row[0] for row in rows if row[i + 1]]
        out.append(pa.array(list(dict.fromkeys(keys)), pa.string()))  # a key re-added has two rows
    return out


# --- selecting the rows of a delivery (pure, given the tables) -------------------------------------


def key_strings(table: pa.Table, key: Sequence[str]) -> pa.Array:
    """One text per row identifying its key (composite keys joined; a missing part kept distinct)."""
    parts = [pc.fill_null(pc.binary_join_element_wise("=", table.column(k), ""), "\x00") for k in key]
    joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, _SEP)
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


def _fields(policy: Policy, schema: Schema) -> tuple[str, ...]:
    return tuple(f for f in policy.fields if f not in schema.key)


def _empty_content(schema: Schema, fields: tuple[str, ...]) -> pa.Table:
    cols: dict[str, pa.Array] = {"op": pa.array([], pa.string())}
    for k in schema.key:
        cols[k] = pa.array([], pa.string())
    for f in fields:
        cols[f] = pa.array([], pa.string())
        cols[BEFORE + f] = pa.array([], pa.string())
    cols["changed"] = pa.array([], pa.list_(pa.string()))
    return pa.table(cols)


def _rows(
    op: str,
    schema: Schema,
    fields: tuple[str, ...],
    keys: pa.Table,
    after: pa.Table | None,
    allowed: dict[str, np.ndarray] | None,
    before: pa.Table | None = None,
    changed: pa.Array | None = None,
) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """Content rows of one operation in the packaging layout, with their per-field masks."""
    n = keys.num_rows
    null = pa.nulls(n, pa.string())
    cols: dict[str, pa.Array] = {"op": pa.array([op] * n, pa.string())}
    for k in schema.key:
        cols[k] = keys.column(k).combine_chunks()
    masks: dict[str, np.ndarray] = {}
    for f in fields:
        has = after is not None and f in after.column_names
        cols[f] = after.column(f).combine_chunks() if has and after is not None else null
        cols[BEFORE + f] = (
            before.column(f).combine_chunks() if before is not None and f in before.column_names else null
        )
        mask = allowed.get(f) if allowed is not None else None
        masks[f] = np.asarray(mask, dtype=bool) if mask is not None else np.full(n, op != "D")
    cols["changed"] = changed if changed is not None else pa.array([[]] * n, pa.list_(pa.string()))
    return pa.table(cols), masks


def _only_changed_rows_matter(before: Policy, after: Policy, before_args: dict, after_args: dict) -> bool:
    """Whether a row absent from the change set is judged alike on both sides: the same grants, no
    related dataset (whose own changes could move a row in or out) and the same followed keys."""
    if before.grants != after.grants or before.related_datasets or after.related_datasets:
        return False
    followed_b, followed_a = before_args.get("followed"), after_args.get("followed")
    return followed_b is None or followed_a is None or followed_b.equals(followed_a)


def changed_rows(changes: pa.Table, schema: Schema) -> tuple[pa.Table, pa.Table]:
    """The old and new rows of the keys a change set touches, rebuilt from its before/after columns."""

    def side(ops: tuple[str, ...], prefix: str) -> pa.Table:
        rows = changes.filter(pc.is_in(changes.column("op"), value_set=pa.array(ops)))
        return pa.table({c: rows.column(c if c in schema.key else prefix + c) for c in schema.column_names})

    return side(("U", "D"), BEFORE), side(("I", "U"), AFTER)


def select_initial(policy: Policy, schema: Schema, snapshot: pa.Table, **select_args: object) -> tuple:
    """Every row the policy selects from the snapshot, as inserts: (content table, masks, subjects)."""
    sel = policy.select(snapshot, **select_args)  # type: ignore[arg-type]
    fields = _fields(policy, schema)
    table, masks = _rows("I", schema, fields, sel.table, sel.table, sel.allowed)
    return table, masks, sel.table.column(schema.subject).combine_chunks()


def select_delta(
    before_policy: Policy,
    after_policy: Policy,
    schema: Schema,
    old: pa.Table,
    new: pa.Table,
    changes: pa.Table,
    before_args: dict,
    after_args: dict,
) -> tuple[pa.Table, dict[str, np.ndarray], pa.Array]:
    """The delta judged on both sides: entering the selection → I, leaving → D (key only), staying and
    changed in a field the row may carry → U; returns (content table, masks, subjects)."""
    fields = _fields(after_policy, schema)
    sel_b = before_policy.select(old, **before_args)
    sel_a = after_policy.select(new, **after_args)
    kb, ka = key_strings(sel_b.table, schema.key), key_strings(sel_a.table, schema.key)
    entering = pc.invert(pc.is_in(ka, value_set=kb)).to_numpy(zero_copy_only=False)
    leaving = pc.invert(pc.is_in(kb, value_set=ka)).to_numpy(zero_copy_only=False)
    updates = changes.filter(pc.equal(changes.column("op"), "U"))
    staying_a = ~entering
    ku = key_strings(updates, schema.key)
    updated = staying_a & pc.is_in(ka, value_set=ku).to_numpy(zero_copy_only=False)

    def take(table: pa.Table, mask: np.ndarray) -> pa.Table:
        return table.filter(pa.array(mask))

    ins = take(sel_a.table, entering)
    t, m = _rows("I", schema, fields, ins, ins, {f: v[entering] for f, v in sel_a.allowed.items()})
    parts = [(t, m, ins.column(schema.subject))]
    dels = take(sel_b.table, leaving)
    t, m = _rows("D", schema, fields, dels, None, None)
    parts.append((t, m, dels.column(schema.subject)))
    if updated.any():
        after_rows = take(sel_a.table, updated)
        allowed = {f: v[updated] for f, v in sel_a.allowed.items()}
        # the change set's rows for these keys, in the same order, for their before values and changed fields
        cs_rows = updates.take(pc.index_in(key_strings(after_rows, schema.key), value_set=ku))
        before = pa.table({f: cs_rows.column(BEFORE + f) for f in fields})
        visible = _visible_changes(cs_rows.column("changed").combine_chunks(), fields, allowed)
        t, m = _rows("U", schema, fields, after_rows, after_rows, allowed, before, visible)
        # an update touching only fields this subscriber may not see is not delivered to it
        keep = pc.greater(pc.list_value_length(visible), 0).to_numpy(zero_copy_only=False)
        keep_arr = pa.array(keep)
        parts.append(
            (
                t.filter(keep_arr),
                {f: v[keep] for f, v in m.items()},
                after_rows.filter(keep_arr).column(schema.subject),
            )
        )
    table = pa.concat_tables([p[0] for p in parts]).combine_chunks()
    masks = {f: np.concatenate([p[1][f] for p in parts]) for f in fields}
    subject = pa.chunked_array([p[2] for p in parts], pa.string()).combine_chunks()
    return _sorted(table, masks, subject, schema)


def _visible_changes(changed: pa.Array, fields: tuple[str, ...], allowed: dict[str, np.ndarray]) -> pa.Array:
    """Per update, the changed fields the row may carry (schema order kept)."""
    out = []
    for i, names in enumerate(changed.to_pylist()):
        out.append([f for f in names if f in allowed and allowed[f][i]])
    return pa.array(out, pa.list_(pa.string()))


def _sorted(
    table: pa.Table, masks: dict[str, np.ndarray], subjects: pa.Array, schema: Schema
) -> tuple[pa.Table, dict[str, np.ndarray], pa.Array]:
    """Rows ordered by key, so that the same inputs give the same file."""
    if table.num_rows == 0:
        return table, masks, subjects
    order = pc.sort_indices(table, sort_keys=[(k, "ascending") for k in schema.key])
    idx = order.to_numpy()
    return table.take(order), {f: m[idx] for f, m in masks.items()}, subjects.take(order)


# --- planning ------------------------------------------------------------------------------------


def _subscribers_of(session: Session, dataset: str) -> list[Subscriber]:
    ids = select(Grant.subscriber_id).where(Grant.dataset == dataset).distinct()
    return list(session.scalars(select(Subscriber).where(Subscriber.id.in_(ids)).order_by(Subscriber.code)))


def _last_deliveries(session: Session, dataset: str) -> dict[int, Delivery]:
    """Each subscriber's latest delivery of `dataset`, by subscriber id (one query for all)."""
    latest = (
        select(Delivery.subscriber_id, func.max(Delivery.seq).label("seq"))
        .where(Delivery.dataset == dataset)
        .group_by(Delivery.subscriber_id)
        .subquery()
    )
    rows = session.scalars(
        select(Delivery)
        .join(latest, (Delivery.subscriber_id == latest.c.subscriber_id) & (Delivery.seq == latest.c.seq))
        .where(Delivery.dataset == dataset)
    )
    return {d.subscriber_id: d for d in rows}


def _outbox(ws: Workspace, code: str, dataset: str) -> Path:
    """The subscriber's outbox folder for a dataset; refuses a path that would leave the publish root."""
    root = ws.publish_dir.resolve()
    folder = (ws.publish_dir / code / "outbox" / dataset).resolve()
    if root not in folder.parents:
        raise PublishError(
            f"the outbox of {code}/{dataset} resolves to {folder}, outside the publish root {root}"
        )
    return folder


def plan(
    session: Session, ws: Workspace, snap: Snapshot, now: dt.datetime, tables: Tables | None = None
) -> list[Delivery]:
    """Record the deliveries of one snapshot (once: an existing plan is returned as it is).

    Grants and latest deliveries are read once for all subscribers and the new rows written in one flush.
    """
    schema = load_schema(snap.dataset)
    tables = tables or Tables(ws)
    existing = {
        d.subscriber_id: d
        for d in session.scalars(
            select(Delivery).where(Delivery.dataset == snap.dataset, Delivery.snapshot_id == snap.id)
        )
    }
    latest = _last_deliveries(session, snap.dataset)
    grant_rows = {g.id: g for rows in tables.grants(session, snap.dataset).values() for g in rows}
    planned: list[Delivery] = []
    for sub in tables.subscribers_of(session, snap.dataset):
        if sub.id in existing:
            planned.append(existing[sub.id])
            continue
        policy = effective_policy(
            tables.rules(session, sub, snap.dataset, now), snap.dataset, snap.snapshot_date
        )
        if not policy.grants:
            continue
        stale = [g for g in policy.grants if g.schema_version != snap.schema_version]
        if stale:
            raise Conflict(
                f"grant {stale[0].id} of {sub.code} was made for {snap.dataset} schema version "
                f"{stale[0].schema_version}, snapshot {snap.id} has version {snap.schema_version}: "
                "review the grant and add it again for the new version"
            )
        last = latest.get(sub.id)
        widened = last is not None and any(
            _utc(grant_rows[r.id].created_at) > _utc(last.policy_at)
            for r in policy.grants
            if r.id is not None
        )
        kind = "initial" if last is None or widened else "delta"
        seq = 1 if last is None else last.seq + 1
        env = packaging.Envelope(
            subscriber=sub.code,
            dataset=snap.dataset,
            seq=seq,
            generated_at=now,
            reference=str(uuid.uuid4()),
            schema_version=schema.version,
        )
        ext = packaging.extension(sub.format, sub.compression)
        name = packaging.file_name(sub.file_name_template, env, ext)
        _outbox(ws, sub.code, snap.dataset)
        delivery = Delivery(
            subscriber_id=sub.id,
            dataset=snap.dataset,
            seq=seq,
            previous_seq=last.seq if last else None,
            kind=kind,
            snapshot_id=snap.id,
            from_snapshot_id=last.snapshot_id if kind == "delta" and last else None,
            status="planned",
            file_name=name,
            path=f"{sub.code}/outbox/{snap.dataset}/{name}",
            generated_at=now,
            reference=env.reference,
            format=sub.format,
            compression=sub.compression,
            csv_delimiter=sub.csv_delimiter,
            schema_version=schema.version,
            policy_at=now,
            fields=list(_fields(policy, schema)),
            grants=[{"id": g.id, "legal_basis": g.legal_basis, "purpose": g.purpose} for g in policy.grants],
            created_at=now,
        )
        session.add(delivery)
        planned.append(delivery)
    session.flush()
    return planned


# --- producing -----------------------------------------------------------------------------------


class ChangeIndex:
    """A change set with its old and new rows (see `changed_rows`) and where each subject's rows are on
    either side: built once per change set, so that a delivery limited to followed keys starts from its
    keys and costs what it delivers, not what the change set holds."""

    def __init__(self, changes: pa.Table, schema: Schema) -> None:
        self.changes = changes
        self.schema = schema
        old, new = changed_rows(changes, schema)
        self.old, self.new = old.combine_chunks(), new.combine_chunks()
        # what `select_delta` reads of the change set itself (the after values are in `new`)
        wanted = ["op", *schema.key, *(BEFORE + c for c in schema.value_columns), "changed"]
        self._judged = changes.select(wanted).combine_chunks()
        ops = np.asarray(changes.column("op").to_numpy(zero_copy_only=False), dtype=object)
        # the change-set row of each old and new row (changed_rows keeps the change set's order)
        self.old_rows = np.flatnonzero((ops == "U") | (ops == "D"))
        self.new_rows = np.flatnonzero((ops == "I") | (ops == "U"))
        self._group: dict[str, int] = {}  # subject → its number, over both sides
        old_numbers = self._number(predicates.as_text(self.old, schema.subject))
        new_numbers = self._number(predicates.as_text(self.new, schema.subject))
        self._old_runs, self._new_runs = self._runs(old_numbers), self._runs(new_numbers)

    def _number(self, subjects: pa.ChunkedArray) -> np.ndarray:
        """Each row's subject number (-1 for a row without a subject, which is nobody's)."""
        setdefault = self._group.setdefault
        return np.fromiter(
            (-1 if s is None else setdefault(s, len(self._group)) for s in subjects.to_pylist()),
            dtype=np.int64,
            count=len(subjects),
        )

    def _runs(self, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One side's row numbers ordered by subject number, and where each subject's run starts."""
        order = np.argsort(numbers, kind="stable")
        order = order[numbers[order] >= 0]
        counts = np.bincount(numbers[numbers >= 0], minlength=len(self._group))
        return order, np.concatenate(([0], np.cumsum(counts)))

    @staticmethod
    def _at(runs: tuple[np.ndarray, np.ndarray], groups: np.ndarray) -> np.ndarray:
        """The row numbers, ascending, of one side's rows about the subjects numbered `groups`."""
        order, starts = runs
        lo, n = starts[groups], starts[groups + 1] - starts[groups]
        # the runs [lo, lo + n) laid end to end
        offsets = np.repeat(lo - np.concatenate(([0], np.cumsum(n)[:-1])), n)
        return np.unique(order[np.arange(int(n.sum())) + offsets])

    def about(self, subjects: pa.Array) -> tuple[pa.Table, pa.Table, pa.Table, pa.Array]:
        """The old and new rows about `subjects` and the change-set rows behind them (without their
        after values), each in change-set order, and those of `subjects` the change set is about."""
        get = self._group.get
        found = [(s, g) for s in subjects.to_pylist() if (g := get(s)) is not None]
        groups = np.fromiter((g for _, g in found), dtype=np.int64, count=len(found))
        old_at, new_at = self._at(self._old_runs, groups), self._at(self._new_runs, groups)
        rows = np.union1d(self.old_rows[old_at], self.new_rows[new_at])
        present = pa.array([s for s, _ in found], pa.string())
        return self.old.take(old_at), self.new.take(new_at), self._judged.take(rows), present


class Tables:
    """Snapshot tables, change sets and grants read once and shared by every subscriber's delivery;
    `keep_only` drops what the next snapshot no longer needs."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._snapshots: dict[int, pa.Table] = {}
        self._changes: dict[int, pa.Table] = {}
        self._indexes: dict[int, ChangeIndex] = {}
        # What planning and every delivery read again: the grants of a dataset (a few per subscriber,
        # revoked ones too: `rules` judges them by their times), the policy time of the deliveries
        # that deltas follow, and the change set of each pair of snapshots.
        self._grants: dict[str, dict[int, list[Grant]]] = {}
        self._policy_at: dict[tuple[int, str, int], dt.datetime] = {}
        self._policy_read: set[int | None] = set()
        self._change_sets: dict[tuple[int, int], ChangeSet] = {}
        # Rows every delivery looks up by id. A session's identity map holds its objects weakly, so
        # without these references each lookup would read them again.
        self._subscribers: dict[int, Subscriber] = {}
        self._snapshot_rows: dict[int, Snapshot] = {}

    def subscribers_of(self, session: Session, dataset: str) -> list[Subscriber]:
        """The subscribers with a grant on `dataset` (revoked or not), by code; kept for the snapshot."""
        subs = _subscribers_of(session, dataset)
        self._subscribers.update((s.id, s) for s in subs)
        return subs

    def subscriber(self, session: Session, subscriber_id: int) -> Subscriber:
        """A subscriber by id, read at most once per snapshot."""
        if subscriber_id not in self._subscribers:
            sub = session.get(Subscriber, subscriber_id)
            assert sub is not None
            self._subscribers[subscriber_id] = sub
        return self._subscribers[subscriber_id]

    def snapshot_row(self, session: Session, snapshot_id: int) -> Snapshot:
        """A snapshot's database row by id, read at most once per snapshot published."""
        if snapshot_id not in self._snapshot_rows:
            snap = session.get(Snapshot, snapshot_id)
            assert snap is not None
            self._snapshot_rows[snapshot_id] = snap
        return self._snapshot_rows[snapshot_id]

    def grants(self, session: Session, dataset: str) -> dict[int, list[Grant]]:
        """Every grant on `dataset` by subscriber id, read once per snapshot."""
        if dataset not in self._grants:
            by_sub: dict[int, list[Grant]] = {}
            for g in session.scalars(select(Grant).where(Grant.dataset == dataset).order_by(Grant.id)):
                by_sub.setdefault(g.subscriber_id, []).append(g)
            self._grants[dataset] = by_sub
        return self._grants[dataset]

    def rules(self, session: Session, sub: Subscriber, dataset: str, at: dt.datetime) -> list[GrantRule]:
        """The subscriber's rules on `dataset` at `at`: its grants that existed and were not revoked then."""
        return _rules_at(self.grants(session, dataset).get(sub.id, []), sub, at)

    def previous_policy_at(self, session: Session, delivery: Delivery) -> dt.datetime:
        """When the policy of the delivery a delta follows was fixed (read for all deltas of its
        snapshot at once: a delta's previous delivery is the one of its `from_snapshot_id`)."""
        key = (delivery.subscriber_id, delivery.dataset, delivery.previous_seq or 0)
        if key not in self._policy_at and delivery.from_snapshot_id not in self._policy_read:
            self._policy_read.add(delivery.from_snapshot_id)
            rows = session.execute(
                select(Delivery.subscriber_id, Delivery.dataset, Delivery.seq, Delivery.policy_at).where(
                    Delivery.snapshot_id == delivery.from_snapshot_id
                )
            )
            self._policy_at.update({(s, d, q): _utc(at) for s, d, q, at in rows})
        if key not in self._policy_at:
            previous = session.scalars(
                select(Delivery).where(
                    Delivery.subscriber_id == delivery.subscriber_id,
                    Delivery.dataset == delivery.dataset,
                    Delivery.seq == delivery.previous_seq,
                )
            ).one()
            self._policy_at[key] = _utc(previous.policy_at)
        return self._policy_at[key]

    def change_set(self, dataset: str, old_id: int, new_id: int) -> ChangeSet:
        """The change set between two snapshots, computed or found once per run."""
        if (old_id, new_id) not in self._change_sets:
            self._change_sets[(old_id, new_id)] = changesets.compute(
                self.ws, dataset, old_id, new_id
            ).change_set
        return self._change_sets[(old_id, new_id)]

    def snapshot(self, snap: Snapshot) -> pa.Table:
        """The rows of a stored snapshot."""
        if snap.id not in self._snapshots:
            self._snapshots[snap.id] = pq.read_table(self.ws.path_in(snap.path))
        return self._snapshots[snap.id]

    def changes(self, cs: ChangeSet) -> pa.Table:
        """The rows of a stored change set."""
        if cs.id not in self._changes:
            self._changes[cs.id] = changesets.read(self.ws, cs)
        return self._changes[cs.id]

    def change_index(self, cs: ChangeSet, schema: Schema) -> ChangeIndex:
        """The change set's old and new rows and their subject index (see `ChangeIndex`), built once."""
        if cs.id not in self._indexes:
            self._indexes[cs.id] = ChangeIndex(self.changes(cs), schema)
        return self._indexes[cs.id]

    def keep_only(self, snapshot_id: int) -> None:
        """Forget all but one snapshot (the next day's deltas start from it): bounded memory in a catch-up."""
        self._snapshots = {k: v for k, v in self._snapshots.items() if k == snapshot_id}
        self._changes.clear()
        self._indexes.clear()
        self._change_sets.clear()
        self._grants.clear()
        self._policy_at.clear()
        self._policy_read.clear()
        self._subscribers.clear()
        self._snapshot_rows.clear()


def _select_args(
    tables: Tables, session: Session, policy: Policy, sub: Subscriber, day: dt.date, followed: pa.Array | None
) -> dict:
    args: dict = {}
    if policy.needs_followed_keys:
        assert followed is not None
        args["followed"] = followed
    related = {}
    for name in policy.related_datasets:
        snap = latest_snapshot(session, name, before=day + dt.timedelta(days=1))
        if snap is None:
            raise PublishError(
                f"the grants of {sub.code} on {policy.dataset} need {name}, which has no snapshot yet"
            )
        related[name] = tables.snapshot(snap)
    if related:
        args["related"] = related
    return args


@dataclass
class Content:
    """A delivery's rows, ready for packaging, and the subjects they are about."""

    content: packaging.DeliveryContent
    subjects: pa.Array
    change_set_id: int | None


def build(ws: Workspace, session: Session, delivery: Delivery, tables: Tables | None = None) -> Content:
    """Select a planned delivery's rows again from the stored snapshots and the policy as it was."""
    tables = tables or Tables(ws)
    sub = tables.subscriber(session, delivery.subscriber_id)
    snap = tables.snapshot_row(session, delivery.snapshot_id)
    schema = load_schema(delivery.dataset)
    at = _utc(delivery.policy_at)
    after = effective_policy(
        tables.rules(session, sub, delivery.dataset, at), delivery.dataset, snap.snapshot_date
    )
    change_set_id = None
    if delivery.kind == "initial":
        followed = (
            followed_as_of(session, sub, delivery.dataset, at)[0] if after.needs_followed_keys else None
        )
        after_args = _select_args(tables, session, after, sub, snap.snapshot_date, followed)
        table, masks, subjects = select_initial(after, schema, tables.snapshot(snap), **after_args)
    else:
        assert delivery.from_snapshot_id is not None
        old_snap = tables.snapshot_row(session, delivery.from_snapshot_id)
        before_at = tables.previous_policy_at(session, delivery)
        before = effective_policy(
            tables.rules(session, sub, delivery.dataset, before_at), delivery.dataset, old_snap.snapshot_date
        )
        followed_b, followed_a = (
            followed_as_of(session, sub, delivery.dataset, before_at, at)
            if before.needs_followed_keys or after.needs_followed_keys
            else (None, None)
        )
        before_args = _select_args(tables, session, before, sub, old_snap.snapshot_date, followed_b)
        after_args = _select_args(tables, session, after, sub, snap.snapshot_date, followed_a)
        cs = tables.change_set(delivery.dataset, old_snap.id, snap.id)
        change_set_id = cs.id
        changes = tables.changes(cs)
        if _only_changed_rows_matter(before, after, before_args, after_args):
            index = tables.change_index(cs, schema)
            if before.followed_only and after.followed_only:
                # Only rows about followed subjects can be selected: start from those subjects (the same
                # before and after, or the changed rows would not be all that matter). Every row left is
                # about one of them, so the subjects found stand for all the followed keys.
                old, new, changes, found = index.about(after_args["followed"])
                before_args, after_args = (
                    {**before_args, "followed": found},
                    {**after_args, "followed": found},
                )
            else:
                old, new = index.old, index.new
        else:
            old, new = tables.snapshot(old_snap), tables.snapshot(snap)
        table, masks, subjects = select_delta(
            before, after, schema, old, new, changes, before_args, after_args
        )
    fields = tuple(delivery.fields)
    content = packaging.DeliveryContent(
        dataset=delivery.dataset, key=schema.key, fields=fields, table=table, allowed=masks
    )
    return Content(content, subjects, change_set_id)


def _envelope(delivery: Delivery, code: str) -> packaging.Envelope:
    return packaging.Envelope(
        subscriber=code,
        dataset=delivery.dataset,
        seq=delivery.seq,
        generated_at=_utc(delivery.generated_at),
        reference=delivery.reference,
        schema_version=delivery.schema_version,
    )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _crash_point(step: str) -> None:
    """Fault injection for the crash tests: MUTAPUB_CRASH_AT=<step> ends the process abruptly there."""
    if os.environ.get("MUTAPUB_CRASH_AT") == step:
        os._exit(99)


def _staging(ws: Workspace) -> Path:
    """Where publication writes before renaming: its own folder in the staging area (same filesystem)."""
    if not ws.staging_dir.is_dir():
        raise PublishError(f"the staging directory {ws.staging_dir} is missing: run `mutapub init` again")
    folder = ws.staging_dir / "publish"
    folder.mkdir(exist_ok=True)
    return folder


def _clear_staging(ws: Workspace) -> None:
    """Remove what a crashed publisher left in staging; called only while holding the publish lease."""
    folder = ws.staging_dir / "publish"
    if folder.is_dir():
        for leftover in folder.iterdir():
            leftover.unlink(missing_ok=True)


@contextmanager
def _staged(ws: Workspace, name: str) -> Iterator[Path]:
    """A file in the staging area, removed if the block fails before moving it away."""
    tmp = _staging(ws) / f"{uuid.uuid4().hex}-{name}"
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def write_files(
    ws: Workspace, session: Session, delivery: Delivery, target: Path, tables: Tables | None = None
) -> tuple[packaging.Written, Content]:
    """Write a delivery's data file and manifest into `target` (a folder), each atomically, data first."""
    tables = tables or Tables(ws)
    sub = tables.subscriber(session, delivery.subscriber_id)
    snap = tables.snapshot_row(session, delivery.snapshot_id)
    built = build(ws, session, delivery, tables)
    env = _envelope(delivery, sub.code)
    target.mkdir(parents=True, exist_ok=True)
    inner = delivery.file_name.removesuffix(".zip")
    try:
        with _staged(ws, delivery.file_name) as tmp:
            with open(tmp, "wb") as out:
                written = packaging.write(
                    built.content,
                    env,
                    out,
                    fmt=delivery.format,
                    compression=delivery.compression,
                    delimiter=delivery.csv_delimiter,
                    inner_name=inner,
                )
                out.flush()
                os.fsync(out.fileno())
            _crash_point("after-staging")
            os.replace(tmp, target / delivery.file_name)
            _fsync_dir(target)
        _crash_point("after-rename")
        old_snap = (
            tables.snapshot_row(session, delivery.from_snapshot_id) if delivery.from_snapshot_id else None
        )
        doc = packaging.manifest(
            env,
            kind=delivery.kind,
            previous_seq=delivery.previous_seq,
            change_set_id=built.change_set_id,
            snapshot_from=old_snap.snapshot_date if old_snap else None,
            snapshot_to=snap.snapshot_date,
            counts=written.counts,
            fields=list(delivery.fields),
            grants=delivery.grants,
            file_name=delivery.file_name,
            size=written.size,
            sha256=written.sha256,
            format=delivery.format,
            compression=delivery.compression,
        )
        with _staged(ws, delivery.file_name + ".manifest") as tmp:
            with open(tmp, "wb") as fh:
                fh.write(packaging.manifest_bytes(doc))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target / packaging.manifest_name(delivery.file_name))
            _fsync_dir(target)
    except OSError as exc:
        raise PublishError(
            f"cannot write {delivery.path} for {sub.code}: {exc.strerror or exc}; nothing of it was published"
        ) from exc
    _crash_point("after-manifest")
    return written, built


class Recorder:
    """Marks produced deliveries published, with their disclosures, a batch per transaction.

    A delivery is added only once its files are in the outbox (renamed, directory fsynced), so every
    row a commit marks published has its files; a crash before the commit leaves rows planned, which a
    rerun produces again with the same bytes. A batch ends after `max_deliveries` deliveries or
    `max_rows` disclosure rows, and before the next delivery (`before`) once its first delivery is
    `max_seconds` old or when the next one is an initial extract, so a delivery already in the outbox
    is not left unrecorded while a long one is written.
    """

    def __init__(
        self, session: Session, max_deliveries: int = 200, max_rows: int = 200_000, max_seconds: float = 2.0
    ) -> None:
        self.session = session
        self.max_deliveries, self.max_rows, self.max_seconds = max_deliveries, max_rows, max_seconds
        self._disclosures: list[tuple[int, pa.Array, pa.ChunkedArray]] = []
        self._deliveries = 0
        self._rows = 0
        self._since = time.monotonic()

    def add(self, delivery: Delivery, written: packaging.Written, built: Content) -> None:
        """Record one delivery whose files are in place; commits when the batch is full."""
        delivery.status = "published"
        delivery.published_at = utcnow()
        delivery.size, delivery.sha256 = written.size, written.sha256
        delivery.rows = written.rows
        delivery.inserts, delivery.updates, delivery.deletes = (written.counts.get(o, 0) for o in "IUD")
        delivery.change_set_id = built.change_set_id
        if not self._deliveries:
            self._since = time.monotonic()
        self._disclosures.append((delivery.id, built.subjects, built.content.table.column("op")))
        self._deliveries += 1
        self._rows += len(built.subjects)
        if self._deliveries >= self.max_deliveries or self._rows >= self.max_rows:
            self.flush()

    def before(self, delivery: Delivery) -> None:
        """Commit the batch before `delivery` is written if it is an initial extract (which may take
        minutes) or the batch's first delivery was added `max_seconds` ago or more."""
        if delivery.kind == "initial" or time.monotonic() - self._since >= self.max_seconds:
            self.flush()

    def flush(self) -> None:
        """Commit what was added: the rows published together with their disclosures."""
        pending, count = self._disclosures, self._deliveries
        self._disclosures, self._deliveries, self._rows = [], 0, 0
        if count:
            record_disclosures(self.session, pending)
            self.session.commit()
            _crash_point("after-commit")

    def flush_after(self, exc: BaseException) -> None:
        """Mark published what is already in the outbox when a later delivery failed with `exc`; if
        the database refuses too (its transaction may be what failed), `exc` stays the error, with a
        note on what that means."""
        try:
            self.flush()
        except Exception as flush_exc:
            self.session.rollback()
            exc.add_note(
                f"the deliveries already in the outbox could not be marked published ({flush_exc.__class__.__name__}); "
                "the next `mutapub publish` writes them again, with the same names and bytes"
            )


def produce(
    ws: Workspace,
    session: Session,
    delivery: Delivery,
    tables: Tables | None = None,
    recorder: Recorder | None = None,
) -> Delivery:
    """Write one planned delivery into the outbox and mark it published with its disclosures.

    `session` is the one that planned it, kept for the whole snapshot so that the subscribers, snapshots
    and deliveries it loaded are not read again. With a `recorder` the commit may wait for the end of
    its batch; without one it happens here.
    """
    if delivery.status != "planned":
        return delivery
    tables = tables or Tables(ws)
    sub = tables.subscriber(session, delivery.subscriber_id)
    target = _outbox(ws, sub.code, delivery.dataset)
    written, built = write_files(ws, session, delivery, target, tables)
    own = recorder is None
    recorder = recorder or Recorder(session)
    recorder.add(delivery, written, built)
    if own:
        recorder.flush()
    return delivery


def record_disclosures(session: Session, deliveries: Sequence[tuple[int, pa.Array, pa.ChunkedArray]]) -> None:
    """Write the disclosure log of deliveries (id, subjects, operations) in bulk, each in subject order
    (kind to the subject index).

    Through the database driver, not the ORM: an initial extract can disclose millions of subjects.
    """
    values: list[tuple[int, str, str]] = []
    for delivery_id, subjects, ops in deliveries:
        if not len(subjects):
            continue
        rows = pa.table({"subject": subjects, "op": ops}).sort_by("subject")
        values += zip(
            [delivery_id] * rows.num_rows,
            rows.column("subject").to_pylist(),
            rows.column("op").to_pylist(),
            strict=True,
        )
    if not values:
        return
    conn = session.connection()
    # the driver's own cursor, in the session's transaction: no per-row parameter processing
    if conn.dialect.name not in ("postgresql", "sqlite"):
        conn.execute(insert(Disclosure), [{"delivery_id": d, "subject": s, "op": o} for d, s, o in values])
        return
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if conn.dialect.name == "postgresql":
            with cursor.copy("COPY disclosures (delivery_id, subject, op) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
        else:
            cursor.executemany("INSERT INTO disclosures (delivery_id, subject, op) VALUES (?, ?, ?)", values)
    finally:
        cursor.close()


def _unpublished(session: Session, dataset: str | None) -> list[Snapshot]:
    done = select(PublishedSnapshot.snapshot_id)
    q = select(Snapshot).where(Snapshot.id.not_in(done)).order_by(Snapshot.snapshot_date, Snapshot.dataset)
    if dataset is not None:
        q = q.where(Snapshot.dataset == dataset)
    return list(session.scalars(q))


def publish(
    ws: Workspace,
    dataset: str | None = None,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    wait: float | None = 600.0,
) -> PublishReport:
    """Publish every snapshot not yet published, oldest first; one publisher at a time (a database lease)."""
    if dataset is not None:
        load_schema(dataset)
    report = PublishReport(dry_run=dry_run)
    if dry_run:
        with ws.sessions() as session:
            moment = now or utcnow()
            for snap in _unpublished(session, dataset):
                report.snapshots.append((snap.dataset, snap.snapshot_date, snap.id))
                report.deliveries += [
                    Planned(d.path, d.kind, d.seq, None) for d in plan(session, ws, snap, moment)
                ]
            session.rollback()
        return report
    with leases.held(ws.sessions, LEASE, wait=wait) as holder:
        _clear_staging(ws)
        with ws.sessions() as session:
            snaps = _unpublished(session, dataset)
        tables = Tables(ws)
        for snap in snaps:
            moment = now or utcnow()
            with ws.sessions() as session:
                with session.begin():  # the plan is recorded before any file is written
                    planned = plan(session, ws, snap, moment, tables)
                _crash_point("after-plan")
                renewed = time.monotonic()
                recorder = Recorder(session)
                # no autoflush: the rows marked published are written by the recorder, a batch at a time
                with session.no_autoflush:
                    try:
                        for delivery in planned:
                            recorder.before(delivery)
                            d = produce(ws, session, delivery, tables, recorder)
                            report.deliveries.append(Planned(d.path, d.kind, d.seq, d.counts))
                            if time.monotonic() - renewed > 60:  # the lease lasts ten minutes; renew before
                                leases.renew(ws.sessions, LEASE, holder, dt.timedelta(minutes=10))
                                renewed = time.monotonic()
                    except BaseException as exc:
                        recorder.flush_after(exc)
                        raise
                    recorder.flush()
                session.add(PublishedSnapshot(snapshot_id=snap.id, published_at=utcnow()))
                session.commit()
            report.snapshots.append((snap.dataset, snap.snapshot_date, snap.id))
            tables.keep_only(snap.id)
    return report


# --- listing, resending, retention ----------------------------------------------------------------


def list_deliveries(
    ws: Workspace, *, subscriber: str | None = None, dataset: str | None = None, status: str | None = None
) -> list[tuple[Delivery, str, Snapshot]]:
    """Deliveries with their subscriber code and snapshot, by subscriber, dataset and sequence."""
    with ws.sessions() as session:
        q = (
            select(Delivery, Subscriber.code, Snapshot)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .join(Snapshot, Snapshot.id == Delivery.snapshot_id)
            .order_by(Subscriber.code, Delivery.dataset, Delivery.seq)
        )
        if subscriber is not None:
            q = q.where(Subscriber.code == subscriber)
        if dataset is not None:
            q = q.where(Delivery.dataset == dataset)
        if status is not None:
            q = q.where(Delivery.status == status)
        return [(d, code, snap) for d, code, snap in session.execute(q).all()]


def as_dict(delivery: Delivery, code: str, snap: Snapshot) -> dict:
    """A delivery as `deliveries list --json` shows it."""

    def ts(v: dt.datetime | None) -> str | None:
        return _utc(v).isoformat().replace("+00:00", "Z") if v else None

    return {
        "subscriber": code,
        "dataset": delivery.dataset,
        "seq": delivery.seq,
        "previous_seq": delivery.previous_seq,
        "kind": delivery.kind,
        "snapshot_date": snap.snapshot_date.isoformat(),
        "path": delivery.path,
        "sha256": delivery.sha256,
        "size": delivery.size,
        "rows": delivery.rows,
        "counts": delivery.counts,
        "status": delivery.status,
        "created": ts(delivery.created_at),
        "published": ts(delivery.published_at),
        "first_downloaded": ts(delivery.first_downloaded_at),
        "last_downloaded": ts(delivery.last_downloaded_at),
        "legal_basis": [g["legal_basis"] for g in delivery.grants],
    }


def resend(ws: Workspace, code: str, dataset: str, from_seq: int, actor: str) -> list[Delivery]:
    """Put published or expired files from `from_seq` on back in the outbox, byte for byte as first sent."""
    done = []
    with ws.sessions() as session:
        sub = session.scalars(select(Subscriber).where(Subscriber.code == code)).one_or_none()
        if sub is None:
            raise InputError(f"no subscriber {code!r}")
        rows = list(
            session.scalars(
                select(Delivery)
                .where(
                    Delivery.subscriber_id == sub.id, Delivery.dataset == dataset, Delivery.seq >= from_seq
                )
                .order_by(Delivery.seq)
            )
        )
        if not rows:
            raise InputError(f"{code} has no delivery of {dataset} from sequence {from_seq} on")
        target = _outbox(ws, code, dataset)
        for delivery in rows:
            if delivery.status == "planned":
                continue  # not published yet: `mutapub publish` finishes it
            path = target / delivery.file_name
            if not (path.exists() and file_sha256(path) == delivery.sha256):
                written, _ = write_files(ws, session, delivery, target)
                if written.sha256 != delivery.sha256:
                    raise PublishError(
                        f"regenerating {delivery.path} gave other bytes ({written.sha256}) than first sent "
                        f"({delivery.sha256}); the stored snapshots or grants changed"
                    )
            delivery.status, delivery.expired_at = "published", None
            session.add(
                DeliveryEvent(
                    delivery_id=delivery.id, event="resend", actor=actor, detail=f"from seq {from_seq}"
                )
            )
            done.append(delivery)
        session.commit()
    return done


def purge(
    ws: Workspace, older_than: dt.timedelta, actor: str, now: dt.datetime | None = None
) -> list[Delivery]:
    """Remove published files older than `older_than` from the outboxes; their rows stay, marked expired."""
    cutoff = (now or utcnow()) - older_than
    purged = []
    with ws.sessions() as session:
        rows = session.execute(
            select(Delivery, Subscriber.code)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.status == "published")
        ).all()
        for delivery, code in rows:
            if _utc(delivery.published_at or delivery.created_at) >= cutoff:
                continue
            folder = _outbox(ws, code, delivery.dataset)
            for name in (delivery.file_name, packaging.manifest_name(delivery.file_name)):
                (folder / name).unlink(missing_ok=True)
            delivery.status, delivery.expired_at = "expired", utcnow()
            session.add(
                DeliveryEvent(
                    delivery_id=delivery.id, event="purge", actor=actor, detail=f"older than {older_than}"
                )
            )
            purged.append(delivery)
        session.commit()
    return purged
