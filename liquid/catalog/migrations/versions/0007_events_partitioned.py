"""the event log partitioned by month, with an export order and the envelope as columns

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 23:00:00

The old table is copied into a new one partitioned by ``at`` (months), with ``txid`` (the
writing transaction: the exporter's order), the envelope columns every kind shares
(tier, from_tier, bytes, count, latency, trace/correlation/execution ids), and the
``event_exports`` watermark table. Old rows keep their ids; their envelope columns are
filled from their payloads where the old kinds carried them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TXID = "(pg_current_xact_id())::text::bigint"
_APPEND_ONLY = """
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION liquid_events_append_only();
"""

_COPY = """
INSERT INTO events (id, at, txid, tenant_id, kind, object_id, namespace, key, version, actor,
                    tier, from_tier, bytes, data)
SELECT id, at, 0, tenant_id, kind, object_id, namespace, key, version, actor,
       CASE kind WHEN 'object.created' THEN data->>'tier'
                 WHEN 'object.moved' THEN data->>'to_tier'
                 WHEN 'object.purged' THEN data->>'tier' END,
       CASE kind WHEN 'object.moved' THEN data->>'from_tier' END,
       CASE kind WHEN 'object.created' THEN (data->>'size')::bigint
                 WHEN 'object.moved' THEN (data->>'stored_size')::bigint
                 WHEN 'object.purged' THEN (data->>'size')::bigint END,
       data
FROM events_unpartitioned ORDER BY id
"""


def upgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS events_append_only ON events")
    op.execute("ALTER TABLE events RENAME TO events_unpartitioned")
    # The id sequence outlives the old table: new ids continue where the old ones stopped.
    op.execute("ALTER SEQUENCE events_id_seq OWNED BY NONE")
    op.execute("ALTER INDEX ix_events_tenant RENAME TO ix_events_unpartitioned_tenant")
    op.execute("ALTER INDEX ix_events_object RENAME TO ix_events_unpartitioned_object")
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), server_default=sa.text("nextval('events_id_seq')"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        # The writing transaction, as a number (xid8 has no SQLAlchemy type): the export order.
        sa.Column("txid", sa.BigInteger(), server_default=sa.text(_TXID), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.BigInteger(), nullable=True),
        sa.Column("namespace", sa.String(length=63), nullable=True),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("tier", sa.String(length=16), nullable=True),
        sa.Column("from_tier", sa.String(length=16), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("count", sa.BigInteger(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("trace_id", sa.Text(), nullable=True),
        sa.Column("correlation_id", sa.Text(), nullable=True),
        sa.Column("execution_id", sa.Text(), nullable=True),
        sa.Column("data", sa.dialects.postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", "at"),
        postgresql_partition_by="RANGE (at)",
    )
    op.execute("ALTER SEQUENCE events_id_seq OWNED BY events.id")
    # Rows with no monthly partition (a clock far off) land here rather than fail the write.
    op.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")
    op.execute(
        """
        DO $$
        DECLARE m date;
        BEGIN
            FOR m IN
                SELECT DISTINCT date_trunc('month', at AT TIME ZONE 'UTC')::date FROM events_unpartitioned
                UNION
                SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i))::date
                FROM generate_series(0, 2) AS i
            LOOP
                EXECUTE format(
                    'CREATE TABLE IF NOT EXISTS %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                    'events_' || to_char(m, 'YYYY_MM'),
                    (m::timestamp AT TIME ZONE 'UTC'),
                    ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
            END LOOP;
        END $$;
        """
    )
    op.execute(_COPY)
    op.drop_table("events_unpartitioned")
    op.create_index("ix_events_tenant", "events", ["tenant_id", "id"], unique=False)
    op.create_index("ix_events_object", "events", ["object_id"], unique=False)
    op.create_index("ix_events_export", "events", ["txid", "id"], unique=False)
    op.create_index("ix_events_kind_at", "events", ["kind", "at"], unique=False)
    op.execute(_APPEND_ONLY)
    op.create_table(
        "event_exports",
        sa.Column("sink", sa.Text(), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("pending_txid", sa.BigInteger(), nullable=True),
        sa.Column("pending_event_id", sa.BigInteger(), nullable=True),
        sa.Column("exported", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("sink"),
    )


def downgrade() -> None:
    op.drop_table("event_exports")
    op.execute("DROP TRIGGER IF EXISTS events_append_only ON events")
    op.execute("ALTER TABLE events RENAME TO events_partitioned")
    op.execute("ALTER SEQUENCE events_id_seq OWNED BY NONE")
    for name in ("tenant", "object", "export", "kind_at"):
        op.execute(f"ALTER INDEX ix_events_{name} RENAME TO ix_events_partitioned_{name}")
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), server_default=sa.text("nextval('events_id_seq')"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.BigInteger(), nullable=True),
        sa.Column("namespace", sa.String(length=63), nullable=True),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("data", sa.dialects.postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("ALTER SEQUENCE events_id_seq OWNED BY events.id")
    op.execute(
        "INSERT INTO events (id, at, tenant_id, kind, object_id, namespace, key, version, actor, data)"
        " SELECT id, at, tenant_id, kind, object_id, namespace, key, version, actor, data"
        " FROM events_partitioned ORDER BY id"
    )
    op.execute("DROP TABLE events_partitioned CASCADE")
    op.create_index("ix_events_object", "events", ["object_id"], unique=False)
    op.create_index("ix_events_tenant", "events", ["tenant_id", "id"], unique=False)
    op.execute(_APPEND_ONLY)
