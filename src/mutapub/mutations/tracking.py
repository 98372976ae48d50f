"""Tracking queries for auditors: which deliveries carried data about a subject, and their downloads."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from mutapub.mutations.models import Delivery, Disclosure, Snapshot, Subscriber
from mutapub.mutations.workspace import Workspace


def subject_forms(subject: str) -> list[str]:
    """The ways a subject may be stored: as typed, and as a KBO number in its dotted form.

    Plain Python rather than the vectorised validators: an auditor's query should start quickly.
    """
    typed = subject.strip()
    digits = typed.replace(".", "").replace(" ", "")
    forms = [typed]
    if len(digits) == 10 and digits.isdigit():
        dotted = (
            f"{digits[:4]}.{digits[4:7]}.{digits[7:]}"
            if digits[0] in "01"
            else f"{digits[0]}.{digits[1:4]}.{digits[4:7]}.{digits[7:]}"
        )
        forms += [dotted] if dotted != typed else []
    return forms


def is_subject_number(subject: str) -> bool:
    """Whether `subject` is a valid INSZ or KBO number (enterprise or establishment, dots allowed)."""
    from mutapub.mutations.validators import normalise_keys  # Arrow: only when nothing was found

    return any(normalise_keys(kind, [subject])[0] for kind in ("insz", "kbo_number"))


def _ts(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return value.isoformat().replace("+00:00", "Z")


def disclosures(ws: Workspace, subject: str) -> list[dict[str, Any]]:
    """Every delivery that carried data about `subject` (a person's INSZ or an enterprise number)."""
    with ws.sessions() as session:
        # columns, not Delivery objects: a subject in every daily file of a few subscribers has thousands
        rows = session.execute(
            select(
                Disclosure.op,
                Subscriber.code,
                Snapshot.snapshot_date,
                Delivery.dataset,
                Delivery.seq,
                Delivery.kind,
                Delivery.fields,
                Delivery.grants,
                Delivery.path,
                Delivery.published_at,
                Delivery.first_downloaded_at,
            )
            .join(Delivery, Delivery.id == Disclosure.delivery_id)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .join(Snapshot, Snapshot.id == Delivery.snapshot_id)
            .where(Disclosure.subject.in_(subject_forms(subject)))
            .order_by(Snapshot.snapshot_date, Subscriber.code, Delivery.dataset, Delivery.seq)
        ).all()
    return [
        {
            "subscriber": code,
            "dataset": dataset,
            "date": day.isoformat(),
            "seq": seq,
            "kind": kind,
            "op": op,
            "fields": list(fields),
            "legal_basis": [g["legal_basis"] for g in grants],
            "path": path,
            "published": _ts(published),
            "downloaded": downloaded is not None,
            "first_downloaded": _ts(downloaded),
        }
        for op, code, day, dataset, seq, kind, fields, grants, path, published, downloaded in rows
    ]


# --- downloads (recorded by the FTPS server's writer thread) ---------------------------------------


def downloads(
    ws: Workspace, *, subscriber: str | None = None, since: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """Every download (one RETR, complete or not) as recorded by the FTPS server, oldest first."""
    from mutapub.mutations.models import Transfer

    query = (
        select(Transfer, Delivery.seq, Delivery.dataset)
        .outerjoin(Delivery, Delivery.id == Transfer.delivery_id)
        .where(Transfer.direction == "download")
        .order_by(Transfer.started_at, Transfer.id)
    )
    if subscriber:
        query = query.where(Transfer.subscriber == subscriber)
    if since is not None:
        query = query.where(Transfer.started_at >= since)
    with ws.sessions() as session:
        rows = session.execute(query).all()
    return [
        {
            "subscriber": t.subscriber,
            "path": t.path,
            "dataset": dataset,
            "delivery_seq": seq,
            "rest_offset": t.rest_offset,
            "bytes": t.bytes,
            "size": t.size,
            "complete": t.complete,
            "remote": t.remote,
            "started": _ts(t.started_at),
            "ended": _ts(t.ended_at),
            "tls_version": t.tls_version,
            "tls_cipher": t.tls_cipher,
        }
        for t, seq, dataset in rows
    ]


def not_downloaded(
    ws: Workspace, *, older_than: dt.timedelta | None = None, now: dt.datetime | None = None
) -> list[tuple[Delivery, str]]:
    """Published deliveries that their subscriber has not downloaded in full, with the subscriber's
    code; with `older_than`, only those published longer ago than that."""
    query = (
        select(Delivery, Subscriber.code)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.status == "published", Delivery.first_downloaded_at.is_(None))
        .order_by(Subscriber.code, Delivery.dataset, Delivery.seq)
    )
    if older_than is not None:
        now = now or dt.datetime.now(dt.UTC)
        query = query.where(Delivery.published_at <= now - older_than)
    with ws.sessions() as session:
        return [(d, code) for d, code in session.execute(query).all()]
