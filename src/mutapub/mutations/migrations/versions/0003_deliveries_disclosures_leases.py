"""Deliveries, disclosures, published snapshots, delivery events and leases.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=False, index=True),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("previous_seq", sa.Integer, nullable=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("snapshot_id", sa.Integer, sa.ForeignKey("snapshots.id"), nullable=False),
        sa.Column("from_snapshot_id", sa.Integer, sa.ForeignKey("snapshots.id"), nullable=True),
        sa.Column("change_set_id", sa.Integer, sa.ForeignKey("change_sets.id"), nullable=True),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("file_name", sa.String(256), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("generated_at", TS, nullable=False),
        sa.Column("reference", sa.String(36), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("compression", sa.String(8), nullable=False),
        sa.Column("csv_delimiter", sa.String(4), nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("policy_at", TS, nullable=False),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("grants", sa.JSON, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=True),
        sa.Column("inserts", sa.BigInteger, nullable=True),
        sa.Column("updates", sa.BigInteger, nullable=True),
        sa.Column("deletes", sa.BigInteger, nullable=True),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("published_at", TS, nullable=True),
        sa.Column("expired_at", TS, nullable=True),
        sa.Column("first_downloaded_at", TS, nullable=True),
        sa.Column("last_downloaded_at", TS, nullable=True),
        sa.UniqueConstraint("subscriber_id", "dataset", "seq", name="uq_deliveries_seq"),
        sa.UniqueConstraint("subscriber_id", "dataset", "snapshot_id", name="uq_deliveries_snapshot"),
    )
    op.create_table(
        "disclosures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id"), nullable=False, index=True),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("op", sa.String(1), nullable=False),
    )
    op.create_index("ix_disclosures_subject", "disclosures", ["subject"])
    op.create_table(
        "published_snapshots",
        sa.Column("snapshot_id", sa.Integer, sa.ForeignKey("snapshots.id"), primary_key=True),
        sa.Column("published_at", TS, nullable=False),
    )
    op.create_table(
        "delivery_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id"), nullable=False, index=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("leases", "delivery_events", "published_snapshots", "disclosures", "deliveries"):
        op.drop_table(table)
