"""Transfers (downloads and uploads) and logins of the FTPS server.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "transfers",
        sa.Column("id", ID, primary_key=True),
        sa.Column("record_id", sa.String(32), nullable=False, unique=True),
        sa.Column("session", sa.String(32), nullable=False),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=True),
        sa.Column("subscriber", sa.String(64), nullable=False, index=True),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id"), nullable=True),
        sa.Column("remote", sa.String(64), nullable=False),
        sa.Column("started_at", TS, nullable=False, index=True),
        sa.Column("ended_at", TS, nullable=False),
        sa.Column("rest_offset", sa.BigInteger, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.Column("tls_version", sa.String(16), nullable=True),
        sa.Column("tls_cipher", sa.String(64), nullable=True),
    )
    op.create_index("ix_transfers_delivery", "transfers", ["delivery_id", "subscriber_id"])
    op.create_table(
        "logins",
        sa.Column("id", ID, primary_key=True),
        sa.Column("record_id", sa.String(32), nullable=False, unique=True),
        sa.Column("session", sa.String(32), nullable=False),
        sa.Column("at", TS, nullable=False, index=True),
        sa.Column("username", sa.String(64), nullable=False, index=True),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=True),
        sa.Column("remote", sa.String(64), nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(128), nullable=False),
        sa.Column("tls_version", sa.String(16), nullable=True),
        sa.Column("tls_cipher", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("logins")
    op.drop_index("ix_transfers_delivery", table_name="transfers")
    op.drop_table("transfers")
