"""Typed SQLAlchemy models of the tracking database; Alembic migrations in `migrations/` create them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Date, DateTime, ForeignKey, Integer, String, UniqueConstraint
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
