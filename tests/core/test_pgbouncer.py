"""The catalog behind PgBouncer in transaction mode (``catalog_pooler: transaction``), for real.

PgBouncer (``pgbouncer_url``) shares 4 server sessions among every client, so consecutive
transactions of one client run on different sessions whenever others are busy: whatever
relies on session state outside a transaction (prepared statements, SET, session advisory
locks) breaks here as it would in production. The first test shows the fixture catches it.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from daemon.tiering import TieringDaemon
from liquid.bootstrap import Runtime, open_runtime
from liquid.catalog import db
from liquid.catalog.fastpath import CatalogFastPath, conninfo
from liquid.config import Settings
from liquid.errors import ObjectGone
from liquid.events.export import EventExporter, exported_ids
from liquid.events.sinks import ChDBSink, migrate
from liquid.policy.store import apply_policies
from liquid.service import LiquidService
from liquid.vectors import Embedding
from liquid.vectors.search import VectorSearch
from tests.fakes import FakeClock

from .test_daemon import T0, policy

PooledFactory = Callable[..., LiquidService]


@pytest.fixture(autouse=True)
def _migrated(runtime: Runtime) -> None:
    """The session's catalog, migrated directly before anything goes through PgBouncer."""


@pytest.fixture
def pooled(pgbouncer_url: str, redis_url: str, cold_dir: Path) -> Iterator[PooledFactory]:
    """Services whose catalog and warm store go through PgBouncer."""
    made: list[Runtime] = []

    def factory(**overrides: Any) -> LiquidService:
        settings = {
            "catalog_url": pgbouncer_url,
            "catalog_pooler": "transaction",
            # warm: the catalog database, so the chunk store goes through PgBouncer too.
            "stores": {"hot": redis_url, "warm": "catalog", "cold": f"file://{cold_dir}"},
            **overrides,
        }
        rt = open_runtime(Settings(**settings))  # migrating through PgBouncer: a no-op at head
        made.append(rt)
        return rt.service

    yield factory
    for rt in made:
        rt.close()


@pytest.fixture
def tenant_of() -> Callable[[LiquidService], str]:
    def make(svc: LiquidService) -> str:
        name = f"t-{uuid.uuid4().hex[:12]}"
        svc.tenancy.create_tenant(name)
        return name

    return make


def _on_another_session(url: str, run: Callable[[], Any]) -> Any:
    """Run ``run`` while another client holds the server session PgBouncer handed out last.

    PgBouncer reuses the most recently released server session first, so a client that runs
    alone meets its own session again and session state seems to survive; with that session
    busy in someone else's transaction, the next transaction runs on another one.
    """
    with psycopg.connect(conninfo(url)) as other:
        other.execute("SELECT 1")  # opens a transaction (not autocommit) and keeps the session
        try:
            return run()
        finally:
            other.rollback()


@pytest.mark.parametrize("prepare", [True, False], ids=["prepared", "unprepared"])
def test_prepared_statements_break_behind_the_pooler_and_the_pooled_mode_avoids_them(
    pgbouncer_url: str, prepare: bool
) -> None:
    """The control: the fixture really multiplexes sessions, and ``prepare=False`` is what fixes it."""
    fast = CatalogFastPath(pgbouncer_url, max_size=1, prepare=prepare)
    try:
        for _ in range(3):  # prepared on the session these ran on
            assert fast.find("nobody", "ns", "k", 1) is None

        def again() -> Any:
            return fast.find("nobody", "ns", "k", 1)

        if prepare:
            with pytest.raises(psycopg.errors.InvalidSqlStatementName):
                _on_another_session(pgbouncer_url, again)
        else:
            assert _on_another_session(pgbouncer_url, again) is None
    finally:
        fast.close()


def test_the_catalog_engine_prepares_nothing_behind_the_pooler(pgbouncer_url: str) -> None:
    engine = db.make_engine(pgbouncer_url, pool_size=1, pooler="transaction")
    try:
        assert db.pooler(engine) == "transaction"
        for _ in range(8):  # psycopg would prepare after 5
            with engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM tenants WHERE id = 'x'")).scalar_one() == 0

        def again() -> int:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM tenants WHERE id = 'x'")).scalar_one())

        assert _on_another_session(pgbouncer_url, again) == 0
    finally:
        engine.dispose()


def test_put_get_delete_from_many_threads(pooled: PooledFactory, tenant_of: Callable[..., str]) -> None:
    svc = pooled()
    tenant = tenant_of(svc)
    # inline, a warm row, the warm chunk store (PostgresStore through PgBouncer), cold files
    sizes = [100, 20_000, 300_000, 2_000_000]
    values = {f"k{i}-{n}": os.urandom(n) for i in range(6) for n in sizes}

    def roundtrip(key: str) -> tuple[str, str]:
        info = svc.put(tenant, "ns", key, values[key])
        for _ in range(3):
            assert svc.get(tenant, info.ref) == values[key]
        return key, info.ref.uri

    with ThreadPoolExecutor(8) as pool:  # 8 threads on 4 server sessions
        refs = dict(pool.map(roundtrip, values))
    tiers = {svc.head(tenant, uri).home_tier for uri in refs.values()}
    assert tiers == {"warm", "cold"}
    for _key, uri in list(refs.items())[::2]:
        svc.delete(tenant, uri)
        with pytest.raises(ObjectGone):
            svc.get(tenant, uri)
    for key, uri in list(refs.items())[1::2]:
        assert svc.get(tenant, uri) == values[key]


def test_a_daemon_cycle_plans_moves_and_leads_through_the_pooler(
    pooled: PooledFactory, tenant_of: Callable[..., str]
) -> None:
    svc = pooled(mover={"grace_period": 0, "backoff": 0})
    tenant = tenant_of(svc)
    clock = FakeClock(T0)
    svc.clock = clock
    assert svc.access is not None
    svc.access.clock = clock
    apply_policies(svc.engine, {"p.yaml": policy(tenant)}, actor="test", clock=clock)
    idle = svc.put(tenant, "ns", "idle", os.urandom(200_000))
    busy = svc.put(tenant, "ns", "busy", os.urandom(200_000))
    clock.now = T0 + timedelta(minutes=90)
    svc.get(tenant, busy.ref)
    a = TieringDaemon(Runtime(service=svc, urls={}), clock=clock, worker_id=f"a-{tenant}")
    b = TieringDaemon(Runtime(service=svc, urls={}), clock=clock, worker_id=f"b-{tenant}")
    try:
        summary = a.run_once()
        assert summary.not_planned is None, summary.not_planned
        assert summary.applied is not None and summary.applied.moves_queued >= 1
        assert svc.head(tenant, idle.ref).home_tier == "cold"
        assert svc.head(tenant, busy.ref).home_tier == "warm"
        assert svc.get(tenant, idle.ref) == svc.get(tenant, idle.ref)
        # The lease holds across transactions that run on other server sessions.
        assert _on_another_session(svc.settings.catalog_url or "", b.try_lead) is False
        assert b.run_once(move=False).not_planned is not None
        a.resign()
        assert b.try_lead() is True and a.try_lead() is False
    finally:
        a.resign()
        b.resign()


def test_the_exporter_reads_the_log_through_the_pooler(
    pooled: PooledFactory, tenant_of: Callable[..., str], tmp_path: Path
) -> None:
    svc = pooled()
    sink = ChDBSink(tmp_path / "ch")
    try:
        migrate(sink)
        exporter = EventExporter(svc.engine, sink, batch_size=5)
        exporter.start_at_head()
        tenant = tenant_of(svc)
        for i in range(12):
            svc.put(tenant, "ns", f"k{i}", os.urandom(50))
        report = exporter.run_once()
        assert report.events >= 12
        with svc.engine.connect() as conn:
            mine = set(
                conn.execute(text("SELECT id FROM events WHERE tenant_id = :t"), {"t": tenant}).scalars()
            )
        assert len(mine) >= 12 and mine <= set(exported_ids(sink))
    finally:
        sink.close()


def test_vector_search_settings_stay_in_their_transaction(
    pooled: PooledFactory, tenant_of: Callable[..., str]
) -> None:
    svc = pooled()
    tenant = tenant_of(svc)
    refs = [svc.put(tenant, "kb", f"d{i}", f"doc {i}".encode() * 2000).ref for i in range(5)]
    vs = VectorSearch(svc.settings, engine=svc.engine, clock=svc.clock)
    try:
        for i, ref in enumerate(refs):
            vs.attach(tenant, ref, [Embedding([1.0, float(i)])])
        hits = vs.search(tenant, [1.0, 0.0], k=3)
        assert [h.ref.ref for h in hits] == refs[:3]
    finally:
        vs.close()
    # Nothing leaked into the shared server sessions: each is at the server default again.
    # The probe prepares nothing either: psycopg's default would prepare its 5th statement as
    # _pg3_0 on a shared session, which may already hold the control test's _pg3_0.
    url = conninfo(svc.settings.catalog_url or "")
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        for _ in range(6):
            row = conn.execute("SELECT current_setting('hnsw.ef_search', true)").fetchone()
            assert row is not None and row[0] in (None, "", "40")


def test_two_daemons_never_both_lead_from_many_threads(pooled: PooledFactory) -> None:
    """Contention through the pooler: of many contenders trying at once, one holds the lease."""
    svc = pooled()
    name = f"contend-{uuid.uuid4().hex[:6]}"
    daemons = [TieringDaemon(Runtime(service=svc, urls={}), worker_id=f"c{i}-{name}") for i in range(6)]
    for d in daemons:
        d.lease.name = name
    wins: list[str] = []
    lock = threading.Lock()

    def contend(d: TieringDaemon) -> None:
        for _ in range(10):
            if d.try_lead():
                with lock:
                    wins.append(d.worker_id)

    try:
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(contend, daemons))
        assert len(set(wins)) == 1 and len(wins) == 10  # the first winner renews; nobody else gets in
    finally:
        for d in daemons:
            d.resign()
