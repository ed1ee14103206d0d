"""the tiering change feed: ids of objects whose placement facts changed

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # UNLOGGED: no WAL on the write path; see liquid.catalog.changes for why losing it is safe.
    op.create_table(
        "tiering_changes",
        sa.Column("object_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("object_id"),
        prefixes=["UNLOGGED"],
    )


def downgrade() -> None:
    op.drop_table("tiering_changes")
