"""The objects table partitioned by the tenant's bucket in the id (migration 0012)."""

from __future__ import annotations

import re

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from liquid.catalog import db, partitions
from liquid.service import LiquidService

_OLD_ROW = (
    "INSERT INTO objects (tenant_id, namespace, key, version, size, stored_size, sha256, content_type,"
    " compression, tags, home_tier, home_store, inline_data, home_since, state, created_at, legal_hold)"
    " SELECT t, 'ns', 'k' || i, 1, 1, 1, repeat('0', 64), 'text/plain', 'none', '{}'::jsonb, 'warm',"
    " 'catalog', '\\x00'::bytea, now(), 'live', now(), false"
    " FROM unnest(CAST(:tenants AS text[])) AS t, generate_series(1, :n) AS i RETURNING id"
)
_NEW_ROW = _OLD_ROW.replace("INSERT INTO objects (", "INSERT INTO objects (id, ").replace(
    "SELECT t, 'ns'", "SELECT liquid_object_id(t), t, 'ns'"
)


def _seed_0011(engine: Engine, tenants: list[str], n: int) -> list[int]:
    """A catalog at revision 0011 with objects and rows in every table that points at them."""
    db.upgrade(engine, "0011")
    with engine.begin() as conn:
        for t in tenants:
            conn.execute(
                text("INSERT INTO tenants (id, display_name, disabled) VALUES (:t, '', false)"), {"t": t}
            )
        conn.execute(
            text(
                "INSERT INTO key_heads (tenant_id, namespace, key, last_version)"
                " SELECT t, 'ns', 'k' || i, 1"
                " FROM unnest(CAST(:tenants AS text[])) AS t, generate_series(1, :n) i"
            ),
            {"tenants": tenants, "n": n},
        )
        ids = [int(r[0]) for r in conn.execute(text(_OLD_ROW), {"tenants": tenants, "n": n})]
        conn.execute(
            text(
                "INSERT INTO access_stats (object_id, tenant_id, score, hits)"
                " SELECT id, tenant_id, 1.0, 3 FROM objects"
            )
        )
        conn.execute(
            text(
                "INSERT INTO move_journal (object_id, tenant_id, kind, from_tier, from_store, step, attempts)"
                " SELECT id, tenant_id, 'move', 'warm', 'catalog', 'done', 0 FROM objects"
            )
        )
        conn.execute(
            text(
                "INSERT INTO vector_postings (index_name, object_id, tenant_id)"
                " SELECT 'q', id, tenant_id FROM objects"
            )
        )
    return ids


def _where(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return {int(i): str(p) for i, p in conn.execute(text("SELECT id, tableoid::regclass FROM objects"))}


def test_bucket_is_the_same_in_sql_and_python(fresh_engine: Engine) -> None:
    db.upgrade(fresh_engine)
    names = ["acme", "demo", "", "t-" + "x" * 60, "ünïcode", *(f"t{i}" for i in range(200))]
    with fresh_engine.connect() as conn:
        got = conn.execute(
            text("SELECT t, liquid_tenant_bucket(t) FROM unnest(CAST(:n AS text[])) AS t"), {"n": names}
        ).all()
    assert {t: b for t, b in got} == {t: partitions.tenant_bucket(t) for t in names}
    # 200 tenants spread over every bucket: the hash is not stuck on a few.
    assert {partitions.tenant_bucket(t) for t in names} == set(range(1, partitions.BUCKETS + 1))


def test_upgrade_keeps_existing_rows_in_the_legacy_partition(fresh_engine: Engine) -> None:
    tenants = ["acme", "demo", "zeta"]
    old = _seed_0011(fresh_engine, tenants, 20)
    db.upgrade(fresh_engine)
    where = _where(fresh_engine)
    assert {where[i] for i in old} == {partitions.LEGACY}
    with fresh_engine.begin() as conn:
        # Rows pointing at the old ids are all there, and still tied to them.
        for table in ("access_stats", "move_journal", "vector_postings"):
            assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() == len(old)
        new = [int(r[0]) for r in conn.execute(text(_NEW_ROW), {"tenants": tenants, "n": 5})]
    where = _where(fresh_engine)
    for i in new:
        assert where[i] == partitions.partition_name(partitions.object_id_bucket(i))
    with fresh_engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, tenant_id FROM objects WHERE id = ANY(:ids)"), {"ids": new}
        ).all()
    for i, t in rows:
        assert partitions.object_id_bucket(i) == partitions.tenant_bucket(t)
        assert where[i] == partitions.partition_name(partitions.tenant_bucket(t))
    # The sequence carried on: no new id repeats an old one, even ignoring the bucket bits.
    assert not {i & ((1 << partitions.SHIFT) - 1) for i in new} & set(old)
    # Deleting an object still cascades through the foreign keys re-made on the partitioned table.
    with fresh_engine.begin() as conn:
        conn.execute(text("DELETE FROM objects WHERE id = :i"), {"i": old[0]})
        assert (
            conn.execute(
                text("SELECT count(*) FROM access_stats WHERE object_id = :i"), {"i": old[0]}
            ).scalar()
            == 0
        )
        with pytest.raises(IntegrityError, match="foreign key"), conn.begin_nested():
            conn.execute(
                text(
                    "INSERT INTO access_stats (object_id, tenant_id, score, hits) VALUES (:i, 'acme', 0, 0)"
                ),
                {"i": (5 << partitions.SHIFT) | 999_999},
            )


def test_downgrade_keeps_every_row_and_upgrades_again(fresh_engine: Engine) -> None:
    tenants = ["acme", "demo"]
    old = _seed_0011(fresh_engine, tenants, 10)
    db.upgrade(fresh_engine)
    with fresh_engine.begin() as conn:
        new = [
            int(r[0])
            for r in conn.execute(
                text(_NEW_ROW.replace("'k' || i", "'n' || i")), {"tenants": tenants, "n": 4}
            )
        ]
        conn.execute(
            text(
                "INSERT INTO access_stats (object_id, tenant_id, score, hits)"
                " SELECT unnest(CAST(:ids AS bigint[])), 'acme', 0, 0"
            ),
            {"ids": new},
        )
    command.downgrade(db.alembic_config(fresh_engine), "0011")
    with fresh_engine.begin() as conn:
        kind = conn.execute(text("SELECT relkind FROM pg_class WHERE relname = 'objects'")).scalar()
        assert kind == "r"
        ids = {int(r[0]) for r in conn.execute(text("SELECT id FROM objects"))}
        assert ids == set(old) | set(new)
        assert conn.execute(text("SELECT count(*) FROM access_stats")).scalar() == len(old) + len(new)
        # The plain table takes ids from its sequence again.
        extra = conn.execute(
            text(_OLD_ROW.replace("'k' || i", "'x' || i")), {"tenants": ["acme"], "n": 1}
        ).scalar()
        assert extra is not None and extra not in ids
        with pytest.raises(IntegrityError, match="uq_objects_ref"), conn.begin_nested():
            conn.execute(text(_OLD_ROW), {"tenants": ["acme"], "n": 1})
    db.upgrade(fresh_engine)
    where = _where(fresh_engine)
    # Each row is back where its id says: numbered by the sequence → legacy, with a bucket → its bucket.
    assert len(where) == len(old) + len(new) + 1
    for i, part in where.items():
        assert part == partitions.partition_name(partitions.object_id_bucket(i))
    assert partitions.LEGACY not in {where[i] for i in new}


def test_insert_without_an_id_and_a_duplicate_ref_are_refused(fresh_engine: Engine) -> None:
    db.upgrade(fresh_engine)
    with fresh_engine.begin() as conn:
        conn.execute(text("INSERT INTO tenants (id, display_name, disabled) VALUES ('acme', '', false)"))
        with pytest.raises(IntegrityError, match="liquid_object_id"), conn.begin_nested():
            conn.execute(text(_OLD_ROW), {"tenants": ["acme"], "n": 1})
        conn.execute(text(_NEW_ROW), {"tenants": ["acme"], "n": 1})
        with pytest.raises(IntegrityError, match="_ref_key"), conn.begin_nested():
            conn.execute(text(_NEW_ROW), {"tenants": ["acme"], "n": 1})
        assert conn.execute(text("SELECT count(*) FROM objects")).scalar() == 1


def test_every_partition_has_a_unique_ref(fresh_engine: Engine) -> None:
    db.upgrade(fresh_engine)
    with fresh_engine.connect() as conn:
        got = conn.execute(
            text(
                "SELECT c.relname, pg_get_constraintdef(k.oid) FROM pg_inherits i"
                " JOIN pg_class c ON c.oid = i.inhrelid"
                " JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'u'"
                " WHERE i.inhparent = 'objects'::regclass"
            )
        ).all()
    assert sorted(name for name, _ in got) == sorted(partitions.partition_names())
    assert {d for _, d in got} == {"UNIQUE (tenant_id, namespace, key, version)"}


def test_service_writes_land_in_the_tenant_partition_and_id_lookups_prune(
    service: LiquidService, tenant: str, other_tenant: str
) -> None:
    refs = {
        t: [service.put(t, "ns", f"k{i}", b"x" * (i * 3000)) for i in range(3)]
        for t in (tenant, other_tenant)
    }
    with service.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, tenant_id, tableoid::regclass::text FROM objects WHERE tenant_id IN (:a, :b)"),
            {"a": tenant, "b": other_tenant},
        ).all()
        assert len(rows) == 6
        for oid, t, part in rows:
            assert part == partitions.partition_name(partitions.tenant_bucket(t))
            assert partitions.object_id_bucket(oid) == partitions.tenant_bucket(t)
        plan = "\n".join(
            r[0] for r in conn.execute(text("EXPLAIN SELECT * FROM objects WHERE id = :i"), {"i": rows[0][0]})
        )
    assert plan.count(" on objects_") == 1, plan  # one partition scanned, by its primary key
    assert partitions.partition_name(partitions.tenant_bucket(rows[0][1])) in plan
    for t, made in refs.items():
        for i, ref in enumerate(made):
            assert service.get(t, ref.uri) == b"x" * (i * 3000)


@pytest.mark.parametrize("statement", ["SELECT_FOR_READ", "SELECT_LATEST"])
def test_fast_path_lookups_by_ref_prune_to_the_tenant_partition(
    service: LiquidService, tenant: str, statement: str
) -> None:
    """The statements the read path runs, executed as it runs them (prepared, generic plan)."""
    import psycopg

    from liquid.catalog import fastpath

    ref = service.put(tenant, "ns", "k", b"v" * 5000)
    with service.fast.pool.connection() as conn:
        assert conn.execute("SHOW plan_cache_mode").fetchone() == ("force_generic_plan",)
    head = (tenant, "ns", "k", 1) if statement == "SELECT_FOR_READ" else (tenant, "ns", "k", service.clock())
    params = (*head, *partitions.tenant_ids(tenant))
    with psycopg.connect(fastpath.conninfo(service.settings.catalog_url), autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        sql = getattr(fastpath, statement).replace("%s", "$%d") % tuple(range(1, len(params) + 1))
        conn.execute(f"PREPARE by_ref AS {sql}")
        args = ", ".join(psycopg.sql.quote(p) for p in params)
        plan = [
            r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE by_ref({args})")
        ]
    scanned = [line for line in plan if " on objects_" in line and "never executed" not in line]
    # The tenant's partition and the legacy one, never the other fifteen.
    assert len(scanned) <= 2, plan
    assert any(partitions.partition_name(partitions.tenant_bucket(tenant)) in line for line in scanned), plan
    assert service.fast.find(tenant, "ns", "k", 1) is not None
    many = service.fast.find_many([(tenant, "ns", "k", 1), (tenant, "ns", "nope", 1)])
    assert list(many) == [(tenant, "ns", "k", 1)]
    assert service.get(tenant, ref.uri) == b"v" * 5000
    assert service.latest(tenant, "ns", "k") == ref.ref
    service.put(tenant, "ns", "k", b"w", ttl=3600)
    assert service.latest(tenant, "ns", "k").version == 2


def test_tenant_scoped_catalog_queries_prune_to_the_tenant_partition(
    service: LiquidService, tenant: str
) -> None:
    """Every statement ``list``, ``delete`` and ``finish_execution`` run on ``objects``, as they run it,
    plans to the tenant's partition and the legacy one (planning all seventeen cost more than the
    query: ``latest`` took 1.7 ms before it pruned)."""
    from sqlalchemy import event

    refs = [service.put(tenant, "ns", f"k{i}", b"x", execution_id="run-1") for i in range(3)]
    seen: list[tuple[str, object]] = []

    def capture(conn: object, cursor: object, statement: str, parameters: object, *args: object) -> None:
        if re.search(r"\bFROM objects\b", statement):
            seen.append((statement, parameters))

    event.listen(service.engine, "before_cursor_execute", capture)
    try:
        page = service.list(tenant, "ns", limit=2)
        service.delete(tenant, refs[0].ref)
        service.finish_execution(tenant, "run-1")
    finally:
        event.remove(service.engine, "before_cursor_execute", capture)
    assert [i.ref.key for i in page.items] == ["k0", "k1"] and page.next_cursor is not None
    assert service.latest(tenant, "ns", "k1") == refs[1].ref
    assert len(seen) >= 3, seen
    mine = partitions.partition_name(partitions.tenant_bucket(tenant))
    with service.engine.connect() as conn:
        for statement, parameters in seen:
            plan = [r[0] for r in conn.exec_driver_sql("EXPLAIN (COSTS OFF) " + statement, parameters)]
            scanned = [line for line in plan if " on objects_" in line]
            assert 1 <= len(scanned) <= 2 and any(mine in line for line in scanned), (statement, plan)


def test_bucket_scans_cover_every_live_row_once_legacy_rows_with_their_tenant(fresh_engine: Engine) -> None:
    """What a planner shard reads: its bucket's tenants, whatever partition their rows are in."""
    from datetime import UTC, datetime

    from liquid.tiering.rows import CatalogRows

    tenants = [f"t{i}" for i in range(12)]
    _seed_0011(fresh_engine, tenants, 3)
    db.upgrade(fresh_engine)
    with fresh_engine.begin() as conn:
        conn.execute(text(_NEW_ROW.replace("'k' || i", "'n' || i")), {"tenants": tenants, "n": 2})
        live = {int(i): str(t) for i, t in conn.execute(text("SELECT id, tenant_id FROM objects"))}
    rows = CatalogRows(fresh_engine, half_life=3600.0)
    now = datetime.now(UTC)
    seen: dict[int, int] = {}
    for bucket in range(1, partitions.BUCKETS + 1):
        for batch in rows.scan_columns(now, bucket=bucket):
            for oid in batch.ids.tolist():
                assert oid not in seen
                seen[oid] = bucket
    assert set(seen) == set(live)
    for oid, bucket in seen.items():
        assert partitions.tenant_bucket(live[oid]) == bucket
    assert any(partitions.object_id_bucket(oid) == 0 for oid in seen)  # legacy rows were read too
    with pytest.raises(ValueError, match="outside 1"):
        next(rows.scan_columns(now, bucket=0))


def test_newer_noncurrent_counts_prune_to_the_tenant_partition_legacy_versions_included(
    fresh_engine: Engine,
) -> None:
    """The planner's count of a version's newer noncurrent versions (S3's NewerNoncurrentVersions)
    sees every version of the key, legacy and new, and each of its runs reads the tenant's
    partition and the legacy one only."""
    from datetime import UTC, datetime

    from liquid.tiering import rows as rows_module
    from liquid.tiering.rows import CatalogRows

    tenants = [f"t{i}" for i in range(6)]
    _seed_0011(fresh_engine, tenants, 2)  # k1 and k2 at version 1, in the legacy partition
    db.upgrade(fresh_engine)
    with fresh_engine.begin() as conn:
        conn.execute(
            text(
                _NEW_ROW.replace("'k' || i, 1,", "'k1', i,").replace(
                    "generate_series(1, :n)", "generate_series(2, 4)"
                )
            ),
            {"tenants": tenants},
        )
        versions = {
            int(i): (str(t), str(k), int(v))
            for i, t, k, v in conn.execute(text("SELECT id, tenant_id, key, version FROM objects"))
        }
    now = datetime.now(UTC)
    got = CatalogRows(fresh_engine, half_life=3600.0).rows(sorted(versions), now)
    # k1: version 1 (legacy) has 2 and 3 above it, each superseded; 2 has 3; 3 and 4 have none.
    expected = {("k1", 1): 2, ("k1", 2): 1, ("k1", 3): 0, ("k1", 4): 0, ("k2", 1): 0}
    assert len(got) == len(versions)
    for row in got:
        _, key, version = versions[row.object_id]
        assert row.facts.newer_noncurrent == expected[(key, version)], (key, version)
    legacy_k1 = next(i for i, (t, k, v) in versions.items() if (t, k, v) == ("t3", "k1", 1))
    new_k1 = next(i for i, (t, k, v) in versions.items() if (t, k, v) == ("t3", "k1", 2))
    mine = partitions.partition_name(partitions.tenant_bucket("t3"))
    sql = CatalogRows(fresh_engine, half_life=3600.0)._sql(rows_module._BY_IDS)
    with fresh_engine.connect() as conn:
        for oid in (legacy_k1, new_k1):
            plan = [
                r[0]
                for r in conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + sql.replace("%(ids)s", "%(ids)s::bigint[]"),
                    {"ids": [oid]},
                )
            ]
            subplan = plan[next(i for i, line in enumerate(plan) if "SubPlan" in line) :]
            scanned = {
                m.group(1)
                for line in subplan
                if "never executed" not in line
                for m in [re.search(r" on (objects_\w+)", line)]
                if m
            }
            assert scanned and scanned <= {mine, partitions.LEGACY}, (oid, plan)
