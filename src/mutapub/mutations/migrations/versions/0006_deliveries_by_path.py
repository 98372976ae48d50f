"""An index for the FTPS server's lookup of a transfer's delivery by subscriber and path.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_subscriber_path", "deliveries", ["subscriber_id", "path"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_subscriber_path", table_name="deliveries")
