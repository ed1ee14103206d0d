"""objects partitioned by the tenant's hash bucket, carried in the high bits of the id

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 05:40:00

New ids are ``liquid_object_id(tenant) = liquid_tenant_bucket(tenant) << 48 | nextval(seq)``;
``objects`` becomes ``PARTITION BY RANGE (id)`` with one partition per bucket (see
``liquid.catalog.partitions``). The existing table is not copied: it is renamed
``objects_legacy`` and attached as the partition of ids ``[0, 1 << 48)``, where all its rows
already fall (sequence values), so existing ids, refs and foreign keys stay valid. The four
foreign keys to ``objects.id`` are dropped and made again against the partitioned table.

The reference ``(tenant_id, namespace, key, version)`` can no longer be unique on the parent
(PostgreSQL wants the partition key in it): each partition has its own unique constraint.

Downgrade: the legacy table is detached, the rows written since are copied into it (with their
big ids, which a plain bigint keeps), and it becomes ``objects`` again. Upgrading once more puts
those rows back into their buckets' partitions (their ids say which).

The constants are copied here on purpose: a migration must not change when the code does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BUCKETS = 16
SHIFT = 48

_FUNCTIONS = f"""
CREATE FUNCTION liquid_tenant_bucket(tenant text) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT 1 + (('x' || substr(md5(tenant), 1, 8))::bit(32)::bigint % {BUCKETS})::integer $$;
CREATE FUNCTION liquid_object_id(tenant text) RETURNS bigint
    LANGUAGE sql VOLATILE STRICT
    AS $$ SELECT (liquid_tenant_bucket(tenant)::bigint << {SHIFT}) | nextval('objects_id_seq') $$;
CREATE FUNCTION liquid_object_id_required() RETURNS bigint
    LANGUAGE plpgsql
    AS $$ BEGIN
        RAISE EXCEPTION 'objects.id must be given: insert liquid_object_id(tenant_id) as the id'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'objects is partitioned by the tenant''s bucket in the id (migration 0012)';
    END $$;
"""
_DROP_FUNCTIONS = """
DROP FUNCTION IF EXISTS liquid_object_id(text);
DROP FUNCTION IF EXISTS liquid_tenant_bucket(text);
DROP FUNCTION IF EXISTS liquid_object_id_required();
"""

#: The parent's indexes (each partition gets its own; the legacy table's are attached).
_INDEXES = {
    "ix_objects_tenant_trace": "(tenant_id, trace_id) WHERE trace_id IS NOT NULL",
    "ix_objects_tenant_correlation": "(tenant_id, correlation_id) WHERE correlation_id IS NOT NULL",
    "ix_objects_tenant_execution": "(tenant_id, execution_id) WHERE execution_id IS NOT NULL",
    "ix_objects_tenant_created": "(tenant_id, created_at)",
    "ix_objects_state_tier": "(state, home_tier)",
    "ix_objects_expires": "(expires_at) WHERE expires_at IS NOT NULL",
}


_TENANT_FK = (
    "ALTER TABLE objects ADD CONSTRAINT objects_tenant_id_fkey"
    " FOREIGN KEY (tenant_id) REFERENCES tenants (id)"
)


def _referencing(table: str) -> list[tuple[str, str, str]]:
    """(table, constraint, definition) of every foreign key to ``table``."""
    rows = op.get_bind().execute(
        sa.text(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE contype = 'f' AND confrelid = CAST(:t AS regclass) AND conparentid = 0"
            " ORDER BY 1, 2"
        ),
        {"t": table},
    )
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]


def _drop_foreign_keys(keys: list[tuple[str, str, str]]) -> None:
    for table, name, _ in keys:
        op.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')


def _add_foreign_keys(keys: list[tuple[str, str, str]], old: str, new: str) -> None:
    for table, name, definition in keys:
        definition = definition.replace(f"REFERENCES {old}(", f"REFERENCES {new}(")
        op.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')


def upgrade() -> None:
    op.execute(_FUNCTIONS)
    keys = _referencing("objects")
    _drop_foreign_keys(keys)
    op.execute("ALTER TABLE objects RENAME TO objects_legacy")
    op.execute("ALTER TABLE objects_legacy RENAME CONSTRAINT objects_pkey TO objects_legacy_pkey")
    op.execute("ALTER TABLE objects_legacy RENAME CONSTRAINT uq_objects_ref TO objects_legacy_ref_key")
    op.execute("ALTER TABLE objects_legacy DROP CONSTRAINT objects_tenant_id_fkey")
    for name in _INDEXES:
        op.execute(f"ALTER INDEX {name} RENAME TO {name.replace('ix_objects_', 'ix_objects_legacy_')}")
    op.execute("ALTER TABLE objects_legacy ALTER COLUMN id DROP DEFAULT")

    op.execute("CREATE TABLE objects (LIKE objects_legacy INCLUDING DEFAULTS) PARTITION BY RANGE (id)")
    op.execute("ALTER TABLE objects ALTER COLUMN id SET DEFAULT liquid_object_id_required()")
    op.execute("ALTER SEQUENCE objects_id_seq OWNED BY objects.id")
    op.execute("ALTER TABLE objects ADD CONSTRAINT objects_pkey PRIMARY KEY (id)")
    op.execute(_TENANT_FK)
    for name, columns in _INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON objects {columns}")
    for bucket in range(1, BUCKETS + 1):
        part = f"objects_b{bucket:02d}"
        op.execute(
            f"CREATE TABLE {part} PARTITION OF objects"
            f" FOR VALUES FROM ({bucket << SHIFT}) TO ({(bucket + 1) << SHIFT})"
        )
        op.execute(
            f"ALTER TABLE {part} ADD CONSTRAINT {part}_ref_key UNIQUE (tenant_id, namespace, key, version)"
        )
    # Rows the sequence numbered are below the first bucket's range. Rows with a bucket in their id
    # (written under this layout, then downgraded) go back to their bucket's partition.
    op.execute(f"INSERT INTO objects SELECT * FROM objects_legacy WHERE id >= {1 << SHIFT}")
    op.execute(f"DELETE FROM objects_legacy WHERE id >= {1 << SHIFT}")
    op.execute(f"ALTER TABLE objects ATTACH PARTITION objects_legacy FOR VALUES FROM (0) TO ({1 << SHIFT})")
    # A planner shard reads its bucket's tenants' legacy rows too (liquid.catalog.partitions.bucket_rows).
    op.execute("CREATE INDEX ix_objects_legacy_bucket ON objects_legacy (liquid_tenant_bucket(tenant_id))")
    _add_foreign_keys(keys, "objects_legacy", "objects")


def downgrade() -> None:
    keys = _referencing("objects")
    _drop_foreign_keys(keys)
    op.execute("ALTER TABLE objects DETACH PARTITION objects_legacy")
    op.execute("DROP INDEX ix_objects_legacy_bucket")
    op.execute("INSERT INTO objects_legacy SELECT * FROM objects")
    op.execute("ALTER SEQUENCE objects_id_seq OWNED BY NONE")
    op.execute("DROP TABLE objects")
    op.execute("ALTER TABLE objects_legacy RENAME TO objects")
    op.execute("ALTER SEQUENCE objects_id_seq OWNED BY objects.id")
    op.execute("ALTER TABLE objects ALTER COLUMN id SET DEFAULT nextval('objects_id_seq')")
    op.execute("ALTER TABLE objects RENAME CONSTRAINT objects_legacy_pkey TO objects_pkey")
    op.execute("ALTER TABLE objects RENAME CONSTRAINT objects_legacy_ref_key TO uq_objects_ref")
    op.execute("ALTER TABLE objects DROP CONSTRAINT IF EXISTS objects_tenant_id_fkey")
    op.execute(_TENANT_FK)
    for name in _INDEXES:
        op.execute(f"ALTER INDEX {name.replace('ix_objects_', 'ix_objects_legacy_')} RENAME TO {name}")
    _add_foreign_keys(keys, "objects", "objects")
    op.execute(_DROP_FUNCTIONS)
