"""Followed keys ("inschrijvingen"): the subjects a subscriber registered interest in, per dataset.

Keys are checked and normalised with the validator of the dataset's subject column, so
`0403.170.701` and `0403170701` are one enterprise. Removing a key stamps `removed_at` on its row
and adding it again makes a new row: the history of who followed whom, when, stays. A change takes
effect at the next publication, which reads `followed` and passes the keys to `Policy.select`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from mutapub.mutations import audit, validators
from mutapub.mutations import subscribers as subscribers_store
from mutapub.mutations.audit import AuditContext
from mutapub.mutations.errors import InputError
from mutapub.mutations.models import FollowedKey, utcnow
from mutapub.schemas import SchemaError, load_schema

MAX_SHOWN = 10  # invalid keys named in one error message


@dataclass
class FollowResult:
    """What an add or remove did, key by key."""

    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def normalise(dataset: str, keys: Iterable[str]) -> list[str]:
    """Keys checked and normalised with the dataset subject's validator, without repeats.

    InputError names the keys that fail, and nothing is changed.
    """
    try:
        schema = load_schema(dataset)
    except SchemaError as exc:
        raise InputError(str(exc)) from exc
    raw = [k.strip() for k in keys]
    empty = [k for k in raw if not k]
    if empty or not raw:
        raise InputError("no key given (an empty key cannot be followed)")
    col = schema.column(schema.subject)
    if col.validator is None:
        values = raw
    else:
        out, invalid = validators.validator_for(col.validator, col.pattern)(pa.array(raw, pa.string()))
        bad = [k for k, b in zip(raw, invalid, strict=True) if b]
        if bad:
            shown = ", ".join(repr(k) for k in bad[:MAX_SHOWN]) + (
                f" and {len(bad) - MAX_SHOWN} more" if len(bad) > MAX_SHOWN else ""
            )
            raise InputError(
                f"{len(bad)} key(s) fail the {col.validator} check of {dataset}.{col.name}: {shown}"
            )
        values = [str(v) for v in out.to_pylist()]
    return list(dict.fromkeys(values))


def read_keys(fh: IO[str]) -> list[str]:
    """Keys from a CSV file: the first column of each row; a header row is skipped if it has letters only."""
    text = fh.read()
    sample = text[:4096]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|") if sample.strip() else csv.excel
    except csv.Error:
        dialect = csv.excel
    rows = [r for r in csv.reader(io.StringIO(text), dialect) if r and r[0].strip()]
    if rows and not any(ch.isdigit() for ch in rows[0][0]):
        rows = rows[1:]  # a header such as "insz" or "EnterpriseNumber"
    return [r[0].strip() for r in rows]


def _active(session: Session, sub_id: int, dataset: str) -> dict[str, FollowedKey]:
    stmt = select(FollowedKey).where(
        FollowedKey.subscriber_id == sub_id, FollowedKey.dataset == dataset, FollowedKey.removed_at.is_(None)
    )
    return {row.subject_key: row for row in session.scalars(stmt)}


def add(session: Session, ctx: AuditContext, code: str, dataset: str, keys: Iterable[str]) -> FollowResult:
    """Follow `keys` of `dataset` for subscriber `code`; already followed keys are left as they are."""
    sub = subscribers_store.get(session, code)
    values = normalise(dataset, keys)
    active = _active(session, sub.id, dataset)
    result = FollowResult()
    now = utcnow()
    for key in values:
        if key in active:
            result.unchanged.append(key)
            continue
        session.add(FollowedKey(subscriber_id=sub.id, dataset=dataset, subject_key=key, added_at=now))
        result.changed.append(key)
    if result.changed:
        session.flush()
        audit.record(
            session, ctx, "follow.add", "follow", f"{code}/{dataset}", None, {"keys": result.changed}
        )
    return result


def remove(session: Session, ctx: AuditContext, code: str, dataset: str, keys: Iterable[str]) -> FollowResult:
    """Stop following `keys`; keys not followed are reported, not refused."""
    sub = subscribers_store.get(session, code)
    values = normalise(dataset, keys)
    active = _active(session, sub.id, dataset)
    result = FollowResult()
    now = utcnow()
    for key in values:
        row = active.get(key)
        if row is None:
            result.unchanged.append(key)
            continue
        row.removed_at = now
        result.changed.append(key)
    if result.changed:
        session.flush()
        audit.record(
            session, ctx, "follow.remove", "follow", f"{code}/{dataset}", {"keys": result.changed}, None
        )
    return result


def list_keys(session: Session, code: str, dataset: str, history: bool = False) -> list[FollowedKey]:
    """The keys a subscriber follows in a dataset (with removed ones too when `history`)."""
    load_schema(dataset)
    sub = subscribers_store.get(session, code)
    stmt = select(FollowedKey).where(FollowedKey.subscriber_id == sub.id, FollowedKey.dataset == dataset)
    if not history:
        stmt = stmt.where(FollowedKey.removed_at.is_(None))
    return list(session.scalars(stmt.order_by(FollowedKey.subject_key, FollowedKey.added_at)))


def followed(session: Session, code: str, dataset: str) -> list[str]:
    """The keys currently followed: what publication passes to `Policy.select`."""
    return [row.subject_key for row in list_keys(session, code, dataset)]


def _utc(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).isoformat()


def as_dict(row: FollowedKey) -> dict[str, Any]:
    """The `follow list --json` object."""
    return {"key": row.subject_key, "added_at": _utc(row.added_at), "removed_at": _utc(row.removed_at)}
