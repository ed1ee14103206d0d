"""vectors: pgvector embeddings of object versions, namespace spaces, and external-index postings

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 01:00:00

HNSW indexes are not made here: each is a partial expression index for one
(dimension, metric) pair, created by :class:`liquid.vectors.pgvector.PgVectorIndex` when a
namespace first uses that pair.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "vector_spaces",
        sa.Column(
            "tenant_id", sa.String(63), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("dims", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "namespace"),
    )
    op.create_table(
        "object_vectors",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column(
            "object_id", sa.BigInteger(), sa.ForeignKey("objects.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("chunk_id", sa.Text(), server_default="", nullable=False),
        sa.Column("span_start", sa.BigInteger(), nullable=True),
        sa.Column("span_end", sa.BigInteger(), nullable=True),
        sa.Column("dims", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(8), nullable=False),
        sa.Column("tags", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("classification", sa.Text(), nullable=True),
        sa.Column("embedding", VECTOR(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("object_id", "chunk_id", name="uq_object_vectors_chunk"),
    )
    op.create_index("ix_object_vectors_tenant_ns", "object_vectors", ["tenant_id", "namespace"])
    op.create_table(
        "vector_postings",
        sa.Column("index_name", sa.Text(), nullable=False),
        sa.Column(
            "object_id", sa.BigInteger(), sa.ForeignKey("objects.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("index_name", "object_id"),
    )
    op.create_index(
        "ix_vector_postings_purged",
        "vector_postings",
        ["purged_at"],
        postgresql_where=sa.text("purged_at IS NOT NULL"),
    )
    op.create_index("ix_vector_postings_object", "vector_postings", ["object_id"])


def downgrade() -> None:
    op.drop_table("vector_postings")
    op.drop_table("object_vectors")
    op.drop_table("vector_spaces")
    # The extension stays: other databases objects may use it, and dropping it needs ownership.
