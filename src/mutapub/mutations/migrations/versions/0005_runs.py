"""Runs of the nightly job, and the APScheduler job store table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("run_date", sa.Date, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
        sa.Column("deliveries", sa.Integer, nullable=False),
        sa.Column("failed_step", sa.String(32), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.UniqueConstraint("dataset", "run_date", "attempt", name="uq_runs_attempt"),
    )
    op.create_index("ix_runs_dataset_date", "runs", ["dataset", "run_date"])
    # APScheduler's SQLAlchemyJobStore table, exactly as that store defines it; created here so that
    # the schema has one owner (the store's own create-if-missing then finds it).
    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.Unicode(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25), index=True),
        sa.Column("job_state", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("apscheduler_jobs")
    op.drop_index("ix_runs_dataset_date", table_name="runs")
    op.drop_table("runs")
