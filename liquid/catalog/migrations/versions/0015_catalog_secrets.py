"""catalog_secrets: keys every Liquid process of one deployment shares, made once, here

``hot_copy_key``: the 256-bit BLAKE3 key that seals hot-tier copies (:mod:`liquid.hotcache`).
Its copies' bytes are checked by a keyed BLAKE3 MAC, five times faster than the SHA-256 they
were checked by, and still unforgeable by anyone who can write to Redis but not read the
catalog. Random, from the migrating process's ``os.urandom``.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 15:50:00
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalog_secrets",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.execute(
        sa.text("INSERT INTO catalog_secrets (name, value) VALUES ('hot_copy_key', :key)").bindparams(
            key=os.urandom(32)
        )
    )


def downgrade() -> None:
    op.drop_table("catalog_secrets")
