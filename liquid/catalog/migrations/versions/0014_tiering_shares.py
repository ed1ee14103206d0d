"""tiering_shares: each planner shard's demand under a global budget cap, and the share it holds

One row per (cap, holder): the shard's histogram of what it wants in the capped tier (rank bin →
units), what it uses, the share of the limit the last split computed for it and what it was
granted; a row with holder ``''`` per cap is the lock every split takes (see
``liquid.tiering.shares``).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 08:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tiering_shares",
        sa.Column("cap", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("demand", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("used", sa.Float(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("granted", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("cap", "holder"),
    )


def downgrade() -> None:
    op.drop_table("tiering_shares")
