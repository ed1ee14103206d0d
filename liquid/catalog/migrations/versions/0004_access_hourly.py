"""reads per hour per namespace, flushed from Redis

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 18:06:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_hourly",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reads", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "namespace", "hour"),
    )


def downgrade() -> None:
    op.drop_table("access_hourly")
