"""Tracking queries for auditors: which deliveries carried data about a subject, and their downloads."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from mutapub.mutations.models import Delivery, Disclosure, Snapshot, Subscriber
from mutapub.mutations.validators import normalise_keys
from mutapub.mutations.workspace import Workspace


def subject_forms(subject: str) -> list[str]:
    """The ways a subject may be stored: as typed, and as a KBO number in its dotted form."""
    forms = [subject.strip()]
    normalised, _invalid = normalise_keys("kbo_number", [subject])
    forms += [n for n in normalised if n not in forms]
    return forms


def _ts(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return value.isoformat().replace("+00:00", "Z")


def disclosures(ws: Workspace, subject: str) -> list[dict[str, Any]]:
    """Every delivery that carried data about `subject` (a person's INSZ or an enterprise number)."""
    with ws.sessions() as session:
        rows = session.execute(
            select(Disclosure.op, Delivery, Subscriber.code, Snapshot.snapshot_date)
            .join(Delivery, Delivery.id == Disclosure.delivery_id)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .join(Snapshot, Snapshot.id == Delivery.snapshot_id)
            .where(Disclosure.subject.in_(subject_forms(subject)))
            .order_by(Snapshot.snapshot_date, Subscriber.code, Delivery.dataset, Delivery.seq)
        ).all()
    return [
        {
            "subscriber": code,
            "dataset": d.dataset,
            "date": day.isoformat(),
            "seq": d.seq,
            "kind": d.kind,
            "op": op,
            "fields": list(d.fields),
            "legal_basis": [g["legal_basis"] for g in d.grants],
            "path": d.path,
            "published": _ts(d.published_at),
            "downloaded": d.first_downloaded_at is not None,
            "first_downloaded": _ts(d.first_downloaded_at),
        }
        for op, d, code, day in rows
    ]
