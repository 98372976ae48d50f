"""Grants ("machtigingen"): which rows and fields of a dataset a subscriber may receive.

The middle is pure: `build_rule` checks a grant against its dataset's schema, `effective_policy`
keeps the grants valid on a day, and `Policy.select` filters an Arrow table vectorised, giving each
row the union of the fields of the grants that select it. The store functions at the bottom read and
write the `grants` table.

Suspended subscribers still get a policy: their deliveries keep being produced, so when they are
resumed their sequence numbers have no gap; the FTPS server refuses their log-in meanwhile.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from mutapub.mutations import audit, predicates
from mutapub.mutations import subscribers as subscribers_store
from mutapub.mutations.audit import AuditContext
from mutapub.mutations.errors import Conflict, InputError, NotFound
from mutapub.mutations.models import Grant, Subscriber, utcnow
from mutapub.schemas import Schema, SchemaError, load_schema

# --- rules (pure) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrantRule:
    """A grant as evaluation sees it: resolved fields, predicates as text, validity dates."""

    subscriber: str
    dataset: str
    fields: tuple[str, ...]
    legal_basis: str
    where: tuple[str, ...] = ()
    followed_only: bool = False
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None
    groups: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    purpose: str = ""
    schema_version: int = 1
    subscriber_status: str = "active"
    id: int | None = None

    def valid_on(self, day: dt.date) -> bool:
        """Whether `day` lies in [valid_from, valid_to], both ends inclusive and open when unset."""
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_to is None or day <= self.valid_to
        )


def resolve_fields(
    schema: Schema, groups: Iterable[str] = (), columns: Iterable[str] = ()
) -> tuple[str, ...]:
    """The columns a grant allows, in schema order: key and subject always, plus groups and columns."""
    wanted = set(schema.key) | {schema.subject}
    for g in groups:
        if g not in schema.groups:
            known = ", ".join(schema.groups) or "none"
            raise InputError(f"dataset {schema.name} has no field group {g!r} (groups: {known})")
        wanted.update(schema.groups[g])
    for c in columns:
        if c not in schema.column_names:
            raise InputError(
                f"dataset {schema.name} has no column {c!r} (columns: {', '.join(schema.column_names)})"
            )
        wanted.add(c)
    return tuple(c for c in schema.column_names if c in wanted)


def _split(values: Iterable[str]) -> tuple[str, ...]:
    """`a,b` and `a b` and repeated options all give a list of names."""
    out: list[str] = []
    for v in values:
        for part in v.replace(",", " ").split():
            if part not in out:
                out.append(part)
    return tuple(out)


def build_rule(
    subscriber: str,
    dataset: str,
    *,
    legal_basis: str,
    groups: Iterable[str] = (),
    columns: Iterable[str] = (),
    where: Iterable[str] = (),
    followed_only: bool = False,
    valid_from: dt.date | None = None,
    valid_to: dt.date | None = None,
    purpose: str = "",
    subscriber_status: str = "active",
    id: int | None = None,
) -> GrantRule:
    """Check a grant against its dataset's schema and return it as a rule; InputError names what is wrong."""
    try:
        schema = load_schema(dataset)
    except SchemaError as exc:
        raise InputError(str(exc)) from exc
    groups, columns = _split(groups), _split(columns)
    if not groups and not columns:
        raise InputError(f"a grant on {dataset} must name --groups and/or --fields (the data it allows)")
    fields = resolve_fields(schema, groups, columns)
    texts = tuple(w.strip() for w in where)
    for text in texts:
        predicates.compile_where(text, schema)
    if valid_from and valid_to and valid_to < valid_from:
        raise InputError(f"valid-to {valid_to.isoformat()} is before valid-from {valid_from.isoformat()}")
    if not legal_basis.strip():
        raise InputError("a grant needs a legal basis (--legal-basis, e.g. a deliberation number)")
    return GrantRule(
        subscriber=subscriber,
        dataset=dataset,
        fields=fields,
        legal_basis=legal_basis.strip(),
        where=texts,
        followed_only=followed_only,
        valid_from=valid_from,
        valid_to=valid_to,
        groups=groups,
        columns=columns,
        purpose=purpose,
        schema_version=schema.version,
        subscriber_status=subscriber_status,
        id=id,
    )


# --- policy (pure) -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The rows a policy selects from a table and, per row, the fields it may carry.

    `indices` are the positions of the selected rows in the input table; `table` holds them with the
    union of fields, a cell set to null where no grant selecting that row allows its field;
    `allowed[field]` and `matched[:, g]` (grant g of the policy selects the row) are per selected row.
    """

    indices: pa.Int64Array
    table: pa.Table
    allowed: dict[str, np.ndarray]
    matched: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    def fields_of(self, row: int) -> list[str]:
        """The fields selected row `row` may carry (for inspection and tests, not for bulk work)."""
        return [f for f, mask in self.allowed.items() if mask[row]]


@dataclass(frozen=True)
class Policy:
    """What one subscriber may receive of one dataset on one day: the grants valid then."""

    dataset: str
    day: dt.date
    grants: tuple[GrantRule, ...]
    schema: Schema = field(repr=False)
    conditions: tuple[tuple[predicates.Expr, ...], ...] = field(repr=False, default=())

    @property
    def subscriber(self) -> str | None:
        """The subscriber's code, or None when no grant is valid."""
        return self.grants[0].subscriber if self.grants else None

    @property
    def fields(self) -> tuple[str, ...]:
        """The union of the fields of every valid grant, in schema order."""
        wanted = {f for g in self.grants for f in g.fields}
        return tuple(c for c in self.schema.column_names if c in wanted)

    @property
    def legal_bases(self) -> tuple[str, ...]:
        """The legal-basis references of the valid grants, without repeats."""
        return tuple(dict.fromkeys(g.legal_basis for g in self.grants))

    @property
    def related_datasets(self) -> set[str]:
        """The related datasets whose tables `select` needs."""
        return {d for conds in self.conditions for c in conds for d in predicates.related_datasets(c)}

    @property
    def needs_followed_keys(self) -> bool:
        """Whether a grant is limited to followed keys."""
        return any(g.followed_only for g in self.grants)

    @property
    def followed_only(self) -> bool:
        """Whether every grant is limited to followed keys: only rows about them can be selected."""
        return bool(self.grants) and all(g.followed_only for g in self.grants)

    def select(
        self,
        table: pa.Table,
        *,
        followed: Iterable[str] | pa.Array = (),
        related: Mapping[str, pa.Table] | None = None,
    ) -> Selection:
        """The rows of `table` at least one grant selects, each with the union of those grants' fields.

        `followed` are the subjects the subscriber follows (normalised); `related` the tables of the
        related datasets the predicates read, by dataset name.
        """
        n = table.num_rows
        related = related or {}
        missing = self.related_datasets - set(related)
        if missing:
            raise InputError(f"policy on {self.dataset} needs the table of {', '.join(sorted(missing))}")
        rel = {name: (related[name], load_schema(name).subject) for name in self.related_datasets}
        followed_arr = followed if isinstance(followed, pa.Array) else pa.array(list(followed), pa.string())
        matched = np.zeros((n, len(self.grants)), dtype=bool)
        for g, (grant, conds) in enumerate(zip(self.grants, self.conditions, strict=True)):
            mask = np.ones(n, dtype=bool)
            for cond in conds:
                mask &= predicates.evaluate(cond, table, self.schema.subject, rel)
            if grant.followed_only:
                subjects = predicates.as_text(table, self.schema.subject)
                mask &= predicates.to_mask(pc.is_in(subjects, value_set=followed_arr.cast(pa.string())))
            matched[:, g] = mask
        rows = np.flatnonzero(matched.any(axis=1))
        matched = matched[rows]
        fields = self.fields
        # fields × grants: which grant allows which field; a row's fields are those of its matching grants.
        allows = np.array([[f in g.fields for g in self.grants] for f in fields], dtype=bool).reshape(
            len(fields), len(self.grants)
        )
        allowed_matrix = (matched.astype(np.int32) @ allows.T.astype(np.int32)) > 0
        indices = pa.array(rows, pa.int64())
        for f in fields:
            if f not in table.column_names:
                raise InputError(f"column {f!r} of dataset {self.dataset} is not in the table")
        picked = table.select(list(fields)).take(indices)
        allowed: dict[str, np.ndarray] = {}
        columns = []
        for j, f in enumerate(fields):
            mask = allowed_matrix[:, j]
            allowed[f] = mask
            col = picked.column(f)
            if not mask.all():
                col = pc.if_else(pa.array(mask, pa.bool_()), col, pa.scalar(None, col.type))
            columns.append(col)
        out = pa.table(columns, names=list(fields)) if fields else picked
        return Selection(indices=indices, table=out, allowed=allowed, matched=matched)


def effective_policy(grants: Sequence[GrantRule], dataset: str, day: dt.date) -> Policy:
    """The policy of one subscriber on `dataset` for `day`: its grants on the dataset valid that day.

    Pure: grants come in as values (revoked ones already left out by the caller). Suspended
    subscribers get their policy too (see the module docstring). A predicate naming a column the
    dataset does not have raises InputError.
    """
    schema = load_schema(dataset)
    codes = {g.subscriber for g in grants}
    if len(codes) > 1:
        raise ValueError(
            f"effective_policy takes the grants of one subscriber, got {', '.join(sorted(codes))}"
        )
    valid = tuple(g for g in grants if g.dataset == dataset and g.valid_on(day))
    for g in valid:
        unknown = [f for f in g.fields if f not in schema.column_names]
        if unknown:
            raise InputError(f"grant {g.id} on {dataset} names unknown column(s) {', '.join(unknown)}")
    conditions = tuple(tuple(predicates.compile_where(w, schema) for w in g.where) for g in valid)
    return Policy(dataset=dataset, day=day, grants=valid, schema=schema, conditions=conditions)


# --- store ---------------------------------------------------------------------------------------


def _date(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


def as_dict(grant: Grant, code: str) -> dict[str, Any]:
    """The `grant list --json` object (fields are the resolved column list)."""
    return {
        "id": grant.id,
        "subscriber": code,
        "dataset": grant.dataset,
        "groups": list(grant.groups),
        "fields": resolved_fields(grant),
        "where": list(grant.where),
        "followed_only": grant.followed_only,
        "legal_basis": grant.legal_basis,
        "purpose": grant.purpose,
        "valid_from": _date(grant.valid_from),
        "valid_to": _date(grant.valid_to),
    }


def resolved_fields(grant: Grant) -> list[str]:
    """The columns a stored grant allows, resolved against the current schema of its dataset."""
    return list(resolve_fields(load_schema(grant.dataset), grant.groups, grant.fields))


def to_rule(grant: Grant, sub: Subscriber) -> GrantRule:
    """A stored grant as a rule for `effective_policy`."""
    return GrantRule(
        subscriber=sub.code,
        dataset=grant.dataset,
        fields=tuple(resolved_fields(grant)),
        legal_basis=grant.legal_basis,
        where=tuple(grant.where),
        followed_only=grant.followed_only,
        valid_from=grant.valid_from,
        valid_to=grant.valid_to,
        groups=tuple(grant.groups),
        columns=tuple(grant.fields),
        purpose=grant.purpose,
        schema_version=grant.schema_version,
        subscriber_status=sub.status,
        id=grant.id,
    )


def add(
    session: Session,
    ctx: AuditContext,
    code: str,
    dataset: str,
    *,
    legal_basis: str,
    groups: Iterable[str] = (),
    columns: Iterable[str] = (),
    where: Iterable[str] = (),
    followed_only: bool = False,
    valid_from: dt.date | None = None,
    valid_to: dt.date | None = None,
    purpose: str = "",
) -> Grant:
    """Record a grant after checking it against the dataset's schema."""
    sub = subscribers_store.get(session, code)
    rule = build_rule(
        code,
        dataset,
        legal_basis=legal_basis,
        groups=groups,
        columns=columns,
        where=where,
        followed_only=followed_only,
        valid_from=valid_from,
        valid_to=valid_to,
        purpose=purpose,
    )
    grant = Grant(
        subscriber_id=sub.id,
        dataset=dataset,
        schema_version=rule.schema_version,
        groups=list(rule.groups),
        fields=list(rule.columns),
        where=list(rule.where),
        followed_only=rule.followed_only,
        valid_from=rule.valid_from,
        valid_to=rule.valid_to,
        legal_basis=rule.legal_basis,
        purpose=rule.purpose,
        created_at=utcnow(),
    )
    session.add(grant)
    session.flush()
    audit.record(session, ctx, "grant.add", "grant", str(grant.id), None, as_dict(grant, code))
    return grant


def get(session: Session, grant_id: int) -> tuple[Grant, Subscriber]:
    """A grant (revoked or not) and its subscriber; NotFound otherwise."""
    row = session.execute(
        select(Grant, Subscriber)
        .join(Subscriber, Grant.subscriber_id == Subscriber.id)
        .where(Grant.id == grant_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no grant {grant_id}")
    return row[0], row[1]


def list_all(
    session: Session, code: str | None = None, dataset: str | None = None, include_revoked: bool = False
) -> list[tuple[Grant, Subscriber]]:
    """Grants with their subscribers, by id; revoked ones only when asked."""
    stmt = select(Grant, Subscriber).join(Subscriber, Grant.subscriber_id == Subscriber.id).order_by(Grant.id)
    if code is not None:
        subscribers_store.get(session, code)
        stmt = stmt.where(Subscriber.code == code)
    if dataset is not None:
        stmt = stmt.where(Grant.dataset == dataset)
    if not include_revoked:
        stmt = stmt.where(Grant.revoked_at.is_(None))
    return [(row[0], row[1]) for row in session.execute(stmt)]


def rules(session: Session, code: str, dataset: str | None = None) -> list[GrantRule]:
    """The unrevoked grants of a subscriber as rules, ready for `effective_policy`."""
    return [to_rule(g, s) for g, s in list_all(session, code, dataset)]


def revoke(session: Session, ctx: AuditContext, grant_id: int) -> Grant:
    """Revoke a grant; the row stays (an auditor must see what was allowed when)."""
    grant, sub = get(session, grant_id)
    if grant.revoked_at is not None:
        raise Conflict(f"grant {grant_id} was already revoked on {grant.revoked_at.isoformat()}")
    grant.revoked_at = utcnow()
    session.flush()
    before = as_dict(grant, sub.code)
    audit.record(session, ctx, "grant.revoke", "grant", str(grant.id), before, {**before, "revoked": True})
    return grant
