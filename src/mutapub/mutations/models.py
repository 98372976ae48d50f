"""Typed SQLAlchemy models of the tracking database; Alembic migrations in `migrations/` create them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    """The current time in UTC (timezone-aware)."""
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base of every mutapub table."""


class Snapshot(Base):
    """One complete, validated extract of a dataset at a date, stored as Parquet; immutable."""

    __tablename__ = "snapshots"
    __table_args__ = (UniqueConstraint("dataset", "snapshot_date", name="uq_snapshots_dataset_date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    snapshot_date: Mapped[dt.date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(1024))
    schema_version: Mapped[int] = mapped_column(Integer)
    extract_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ChangeSet(Base):
    """The inserts, updates and deletes between two snapshots of a dataset, stored as Parquet."""

    __tablename__ = "change_sets"
    __table_args__ = (UniqueConstraint("from_snapshot_id", "to_snapshot_id", name="uq_change_sets_pair"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    from_snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"))
    to_snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"))
    inserts: Mapped[int] = mapped_column(BigInteger)
    updates: Mapped[int] = mapped_column(BigInteger)
    deletes: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    schema_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def counts(self) -> dict[str, int]:
        """Rows per operation, as `{"I": n, "U": n, "D": n}`."""
        return {"I": self.inserts, "U": self.updates, "D": self.deletes}


class Subscriber(Base):
    """An agency with an FTPS account and delivery preferences; its code is its FTPS user name."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(256))
    email: Mapped[str | None] = mapped_column(String(256), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    format: Mapped[str] = mapped_column(String(8), default="csv")
    compression: Mapped[str] = mapped_column(String(8), default="gzip")
    csv_delimiter: Mapped[str] = mapped_column(String(4), default=";")
    file_name_template: Mapped[str] = mapped_column(String(256))
    # Only a salted scrypt hash, never the password; None until `subscriber passwd` sets one.
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    password_expires: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    cert_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    allow_ip: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Grant(Base):
    """One authorisation of a subscriber on a dataset; revoked grants stay, for the auditor."""

    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"), index=True)
    dataset: Mapped[str] = mapped_column(String(64))
    # The dataset's schema version when granted: a change set of another version is not packaged under it.
    schema_version: Mapped[int] = mapped_column(Integer)
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    where: Mapped[list[str]] = mapped_column(JSON, default=list)
    followed_only: Mapped[bool] = mapped_column(Boolean, default=False)
    valid_from: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    valid_to: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    legal_basis: Mapped[str] = mapped_column(String(256))
    purpose: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class FollowedKey(Base):
    """A subject a subscriber follows in a dataset; removal sets `removed_at`, a re-add is a new row."""

    __tablename__ = "followed_keys"
    __table_args__ = (Index("ix_followed_keys_lookup", "subscriber_id", "dataset", "subject_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"))
    dataset: Mapped[str] = mapped_column(String(64))
    subject_key: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    removed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditEntry(Base):
    """One change to subscribers, credentials, grants or followed keys: who, when, what, before/after."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    command: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(256))
    before: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class Delivery(Base):
    """One file published for one subscriber: planned first (name, time and reference fixed), then
    written, moved into the outbox and marked published; sequence numbers per subscriber × dataset."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "dataset", "seq", name="uq_deliveries_seq"),
        UniqueConstraint("subscriber_id", "dataset", "snapshot_id", name="uq_deliveries_snapshot"),
        # the FTPS server finds the delivery behind every transfer by subscriber and path
        Index("ix_deliveries_subscriber_path", "subscriber_id", "path"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"), index=True)
    dataset: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    previous_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(8))  # "initial" or "delta"
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"))
    from_snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("snapshots.id"), nullable=True)
    change_set_id: Mapped[int | None] = mapped_column(ForeignKey("change_sets.id"), nullable=True)
    # "planned" → "published" → "expired" (file purged by retention; the row stays for the auditor)
    status: Mapped[str] = mapped_column(String(16), index=True)
    file_name: Mapped[str] = mapped_column(String(256))
    path: Mapped[str] = mapped_column(String(512))  # relative to the publish root
    generated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    reference: Mapped[str] = mapped_column(String(36))
    format: Mapped[str] = mapped_column(String(8))
    compression: Mapped[str] = mapped_column(String(8))
    csv_delimiter: Mapped[str] = mapped_column(String(4))
    schema_version: Mapped[int] = mapped_column(Integer)
    # What the policy was when planned, so a resend regenerates the same bytes.
    policy_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    grants: Mapped[list[dict]] = mapped_column(JSON, default=list)
    rows: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    inserts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updates: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    deletes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    expired_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    first_downloaded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_downloaded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @property
    def counts(self) -> dict[str, int]:
        """Rows per operation, as `{"I": n, "U": n, "D": n}`."""
        return {"I": self.inserts or 0, "U": self.updates or 0, "D": self.deletes or 0}


class Disclosure(Base):
    """A subject that a delivery carried data about, with the operation: the auditor's index."""

    __tablename__ = "disclosures"
    __table_args__ = (Index("ix_disclosures_subject", "subject"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"), index=True)
    subject: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(1))


class PublishedSnapshot(Base):
    """A snapshot whose deliveries were all planned and published."""

    __tablename__ = "published_snapshots"

    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), primary_key=True)
    published_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DeliveryEvent(Base):
    """Something that happened to a delivery after it was published: a resend, a purge."""

    __tablename__ = "delivery_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    detail: Mapped[str] = mapped_column(Text, default="")


class Lease(Base):
    """A cross-process lock: held by `holder` until `expires_at`, renewed while working."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(256))
    acquired_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Transfer(Base):
    """One file transfer on the FTPS server (a RETR or a STOR), complete or not, as it happened."""

    __tablename__ = "transfers"
    __table_args__ = (Index("ix_transfers_delivery", "delivery_id", "subscriber_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # The server's id of the record, so that replaying its journal after a crash writes nothing twice.
    record_id: Mapped[str] = mapped_column(String(32), unique=True)
    session: Mapped[str] = mapped_column(String(32))
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id"), nullable=True)
    subscriber: Mapped[str] = mapped_column(String(64), index=True)
    direction: Mapped[str] = mapped_column(String(8))  # "download" or "upload"
    path: Mapped[str] = mapped_column(String(1024))  # as the subscriber sees it, e.g. /outbox/persons/…
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"), nullable=True)
    remote: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    ended_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    rest_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    tls_version: Mapped[str | None] = mapped_column(String(16), nullable=True)
    tls_cipher: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Login(Base):
    """One login attempt on the FTPS server, accepted or refused, with the reason of a refusal."""

    __tablename__ = "logins"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(32), unique=True)
    session: Mapped[str] = mapped_column(String(32))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    username: Mapped[str] = mapped_column(String(64), index=True)  # as typed, cut to 64 characters
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id"), nullable=True)
    remote: Mapped[str] = mapped_column(String(64))
    ok: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(128), default="")
    tls_version: Mapped[str | None] = mapped_column(String(16), nullable=True)
    tls_cipher: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Run(Base):
    """One attempt of the nightly job for a dataset (or source) and business date; `jobs.runs` writes it.

    A date is done once one attempt is `done`; failed attempts stay as the record of why, and the
    next attempt of the same date gets the next `attempt` number.
    """

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("dataset", "run_date", "attempt", name="uq_runs_attempt"),
        Index("ix_runs_dataset_date", "dataset", "run_date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(64))
    run_date: Mapped[dt.date] = mapped_column(Date)
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)  # running | done | failed
    trigger: Mapped[str] = mapped_column(String(16))  # cli | schedule | catch-up
    holder: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    steps: Mapped[list] = mapped_column(JSON, default=list)
    counts: Mapped[dict] = mapped_column(JSON, default=dict)
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    failed_step: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
