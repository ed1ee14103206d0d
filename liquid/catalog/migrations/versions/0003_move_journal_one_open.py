"""at most one open move-journal row per object

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Two open moves of one object would race each other's switch; the planner's
    # enqueue relies on this index (ON CONFLICT ... DO NOTHING) to stay idempotent.
    op.create_index(
        "uq_move_journal_open",
        "move_journal",
        ["object_id"],
        unique=True,
        postgresql_where="step NOT IN ('done', 'failed')",
    )


def downgrade() -> None:
    op.drop_index(
        "uq_move_journal_open", table_name="move_journal", postgresql_where="step NOT IN ('done', 'failed')"
    )
