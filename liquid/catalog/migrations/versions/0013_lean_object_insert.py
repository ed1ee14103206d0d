"""the put's insert without row-locking tenant checks and without an index no query reads

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 08:20:00

Every put ran two foreign-key triggers, ``key_heads_tenant_id_fkey`` and
``objects_tenant_id_fkey``: each a query that takes ``FOR KEY SHARE`` on the tenant's row, which
writes a lock into that row (a WAL record, a dirtied page) and, when two puts of one tenant
overlap, a MultiXact. Measured by ``benchmarks/put_server.py`` (toggled between bursts, beside
the statement after this migration): the schema and statement before it cost 1.14-1.15x the
server's time after it. The write statement (:data:`liquid.catalog.fastpath.INSERT_OBJECT`) now
checks the tenant itself with a plain index lookup in the same statement, so a put for an unknown
tenant still writes nothing and says so. Tenants are never deleted by Liquid (they are disabled),
so no cascade is lost.

``ix_objects_tenant_created`` (tenant_id, created_at) is read by no query (nothing filters or
orders objects by creation time); each insert maintained it.

Downgrade puts both back (the legacy partition's index under its old name first, so that the
parent index adopts it and migration 0012's downgrade finds it).
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE objects DROP CONSTRAINT IF EXISTS objects_tenant_id_fkey")
    op.execute("ALTER TABLE key_heads DROP CONSTRAINT IF EXISTS key_heads_tenant_id_fkey")
    op.execute("DROP INDEX IF EXISTS ix_objects_tenant_created")


def downgrade() -> None:
    op.execute("CREATE INDEX ix_objects_legacy_tenant_created ON objects_legacy (tenant_id, created_at)")
    op.execute("CREATE INDEX ix_objects_tenant_created ON objects (tenant_id, created_at)")
    op.execute(
        "ALTER TABLE key_heads ADD CONSTRAINT key_heads_tenant_id_fkey"
        " FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE"
    )
    op.execute(
        "ALTER TABLE objects ADD CONSTRAINT objects_tenant_id_fkey"
        " FOREIGN KEY (tenant_id) REFERENCES tenants (id)"
    )
