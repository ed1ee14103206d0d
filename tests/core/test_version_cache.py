"""What a ref names, remembered: hot reads skip the catalog, yet never serve a gone or wrong copy."""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from liquid.errors import IntegrityError, InvalidRef, LiquidError, ObjectGone, ObjectNotFound
from liquid.hotcache import encode, hot_key
from liquid.refs import ResultRef
from liquid.service import LiquidService, Resolution
from liquid.versions import VersionCache
from tests.fakes import FakeClock

from .conftest import ServiceFactory


def hot_object(svc: LiquidService, tenant: str, key: str, data: bytes, **kw: Any) -> ResultRef:
    ref = svc.put(tenant, "vc", key, data, **kw).ref
    row = svc.fast.find(ref.tenant, ref.namespace, ref.key, ref.version)
    assert row is not None and svc.fill_hot(ref, row.id)
    return ref


def values(svc: LiquidService, tenant: str, refs: list[ResultRef]) -> list[bytes | type[LiquidError]]:
    out: list[bytes | type[LiquidError]] = []
    for r in svc.resolve_many(tenant, refs, want=lambda i, f: True):
        if isinstance(r, Resolution):
            assert r.data is not None
            out.append(r.data)
        else:
            out.append(type(r))
    return out


class CatalogCalls:
    """Counts the fast path's lookups (the catalog statements on the read path)."""

    def __init__(self, svc: LiquidService, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0
        for name in ("find", "find_many"):
            real = getattr(svc.fast, name)

            def counted(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
                self.n += 1
                return _real(*args, **kwargs)

            monkeypatch.setattr(svc.fast, name, counted)


def test_a_known_hot_version_is_read_without_the_catalog_until_it_is_deleted(
    service: LiquidService, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = os.urandom(900), os.urandom(700)
    ra, rb = hot_object(service, tenant, "a", a), hot_object(service, tenant, "b", b)
    assert service.known(ra) is not None  # its writer remembered it
    monkeypatch.setattr(service, "versions", VersionCache())  # as another process sees them
    calls = CatalogCalls(service, monkeypatch)
    assert values(service, tenant, [ra, rb]) == [a, b]
    assert calls.n == 1  # first sight: one statement for both
    assert values(service, tenant, [ra, rb, ra]) == [a, b, a]
    assert service.get(tenant, ra) == a and service.open(tenant, rb).source == "hot"
    assert calls.n == 1  # known and hot: Redis alone
    service.delete(tenant, ra)
    # The delete killed the copy: liveness comes from the copy or the catalog, never the cache.
    assert values(service, tenant, [ra, rb]) == [ObjectGone, b]
    with pytest.raises(ObjectGone):
        service.get(tenant, ra)


def test_a_copy_that_is_not_its_versions_bytes_is_never_served(service: LiquidService, tenant: str) -> None:
    hot = service.hot
    assert hot is not None
    for learned in (False, True):
        right = os.urandom(500)
        ref = hot_object(service, tenant, f"stale-{learned}", right)
        if learned:
            assert service.get(tenant, ref) == right  # the process knows the version's checksum
        wrong = b"other bytes, with a digest of their own"
        # A well-formed copy that checks out against itself but names other bytes.
        hot.client.set(hot_key(ref), encode(wrong, hashlib.sha256(wrong).hexdigest(), "text/plain"))
        reader = service.open(tenant, ref)
        assert reader.read() == right and reader.source == "warm"
        assert hot.client.get(hot_key(ref)) is None  # dropped
        assert service.fill_hot(ref, service.fast.find(tenant, "vc", ref.key, ref.version).id)
        hot.client.set(hot_key(ref), encode(wrong, hashlib.sha256(wrong).hexdigest(), "text/plain"))
        assert values(service, tenant, [ref]) == [right]


def test_a_version_past_its_own_expiry_is_gone_though_its_copy_lingers(
    service: LiquidService, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(300)
    ref = hot_object(service, tenant, "ttl", data, ttl=300)
    assert values(service, tenant, [ref]) == [data] and service.get(tenant, ref) == data
    assert service.known(ref) is not None
    # Redis still holds the copy (its TTL follows Redis's clock); ours says the version expired.
    later = service.clock() + timedelta(seconds=301)
    monkeypatch.setattr(service, "clock", lambda: later)
    assert service.known(ref) is None
    assert values(service, tenant, [ref]) == [ObjectGone]
    with pytest.raises(ObjectGone):
        service.get(tenant, ref)


def test_known_versions_without_a_copy_are_read_from_their_home(
    service: LiquidService, tenant: str, other_tenant: str
) -> None:
    hot = service.hot
    assert hot is not None
    data = os.urandom(800)
    ref = hot_object(service, tenant, "evicted", data)
    assert values(service, tenant, [ref]) == [data]
    hot.evict([ref])
    theirs = ResultRef(other_tenant, "vc", "evicted", 1)
    missing = ResultRef(tenant, "vc", "never", 1)
    assert values(service, tenant, [ref, theirs, missing, ref]) == [
        data,
        ObjectNotFound,
        ObjectNotFound,
        data,
    ]


def test_the_cache_is_bounded_and_parses_as_refs_do() -> None:
    cache = VersionCache(max_versions=2, max_texts=2)
    refs = [ResultRef("t", "n", f"k{i}", 1) for i in range(3)]
    row = type(
        "Row",
        (),
        {
            "id": 7,
            "size": 1,
            "sha256": "0" * 64,
            "content_type": "x/y",
            "expires_at": None,
            "classification": None,
        },
    )
    for r in refs:
        cache.learn(r, row)
    assert len(cache) == 2 and cache.get(refs[0]) is None and cache.get(refs[2]) is not None
    assert cache.parse("liquid://t/n/a%2Fb@3") == ResultRef("t", "n", "a/b", 3)
    assert cache.parse("liquid://t/n/a%2Fb@3") is cache.parse("liquid://t/n/a%2Fb@3")
    for bad in ("liquid://t/n/k@0", "nope", 42):
        with pytest.raises(InvalidRef):
            cache.parse(bad)


def test_a_known_version_read_from_its_home_is_found_by_id_and_still_checked_for_life(
    service: LiquidService, tenant: str, other_tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(2000)
    ref = service.put(tenant, "vc", "warm", data).ref
    by_name = CatalogCalls(service, monkeypatch)  # counts find/find_many: the by-name lookups
    assert service.get(tenant, ref) == data and by_name.n == 0
    with pytest.raises(ObjectNotFound):  # the facts are this tenant's: others still get a 404
        service.get(other_tenant, ResultRef(other_tenant, "vc", "warm", ref.version))
    service.delete(tenant, ref)
    with pytest.raises(ObjectGone):
        service.get(tenant, ref)


def test_a_known_warm_value_is_one_narrow_statement_that_still_judges_life_and_checksum(
    service: LiquidService, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3000)
    soon = service.clock() + timedelta(hours=1)
    ref = service.put(tenant, "vc", "row", data, classification="internal", expires_at=soon).ref
    oid = service.fast.find(ref.tenant, ref.namespace, ref.key, ref.version).id  # type: ignore[union-attr]
    rows = CatalogCalls(service, monkeypatch)
    monkeypatch.setattr(service.fast, "find_by_id", lambda *a: pytest.fail("the full row was read"))
    noted = service.access.noted  # type: ignore[union-attr]
    assert service.get(tenant, ref) == data
    assert service.get(tenant, ref, start=10, end=20) == data[10:20]
    reader = service.open(tenant, ref)
    assert (reader.source, reader.classification, reader.expires_at) == ("warm", "internal", soon)
    assert reader.read() == data and rows.n == 0
    assert service.access.noted == noted + 3  # type: ignore[union-attr]
    monkeypatch.undo()

    def catalog(sql: str) -> None:
        with service.engine.begin() as conn:
            conn.execute(text(sql), {"id": oid})

    # Bytes that no longer match the version's checksum are refused, not returned.
    catalog("UPDATE objects SET inline_data = 'tampered'::bytea WHERE id = :id")
    with pytest.raises(IntegrityError):
        service.get(tenant, ref)
    # Gone in the catalog while its bytes are still in the row: the statement itself says so.
    catalog(f"UPDATE objects SET inline_data = '\\x{data.hex()}'::bytea, state = 'expired' WHERE id = :id")
    with pytest.raises(ObjectGone):
        service.get(tenant, ref)
    catalog("UPDATE objects SET state = 'live' WHERE id = :id")
    assert service.get(tenant, ref) == data
    # Past its own expiry before any daemon ran: gone for readers at once.
    monkeypatch.setattr(service, "clock", FakeClock(soon))
    with pytest.raises(ObjectGone):
        service.get(tenant, ref)
    with pytest.raises(ObjectGone):
        service.open(tenant, ref)


def test_the_warm_read_lane_survives_a_lost_connection_and_busy_threads(
    service: LiquidService, tenant: str
) -> None:
    data = [os.urandom(1000 + i) for i in range(4)]
    refs = [service.put(tenant, "vc", f"lane{i}", d).ref for i, d in enumerate(data)]
    assert service.get(tenant, refs[0]) == data[0]
    fast = service.fast
    lane = fast._lane
    assert lane is not None  # a connection kept for the next warm read
    # The pool's idle connections too: three taken at once, so that three exist.
    held = [fast.pool.getconn() for _ in range(3)]
    pids = [c.info.backend_pid for c in (lane, *held)]
    for c in held:
        fast.pool.putconn(c)
    with service.engine.begin() as conn:  # the server drops them all, as a restart or a proxy would
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:p AS int[])) pid"), {"p": pids})
    deadline = time.monotonic() + 10
    alive = text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:p)")
    with service.engine.connect() as conn:  # gone on the server's side (their sockets now say so)
        # One transaction per look: pg_stat_activity is a snapshot taken once per transaction.
        while conn.execute(alive, {"p": pids}).scalar():
            conn.rollback()
            assert time.monotonic() < deadline, "the terminated backends did not exit"
            time.sleep(0.02)
    # No read fails for it: a dead connection is seen before use and replaced.
    assert service.get(tenant, refs[1]) == data[1]
    assert fast._lane is not lane
    for i in range(4):  # the pool's path (catalog rows) meets the dead idle connections
        assert fast.find(tenant, "vc", f"lane{i}", 1) is not None
    assert service.get(tenant, refs[2]) == data[2]
    with ThreadPoolExecutor(8) as pool:  # most threads find the lane busy and use the pool
        got = list(pool.map(lambda i: service.get(tenant, refs[i % 4]), range(400)))
    assert got == [data[i % 4] for i in range(400)]


def test_a_put_on_the_lane_is_one_statement_that_fails_whole_and_numbers_versions_apart(
    service: LiquidService, tenant: str
) -> None:
    first = service.put(tenant, "vc", "lane-put", b"one").ref
    assert service.get(tenant, first) == b"one"  # the lane now holds a connection
    lane = service.fast._lane
    assert lane is not None
    # A put that fails in flight (here: cancelled while it waits for the key's row lock, which
    # another transaction holds) keeps nothing of itself: no row, no event.
    lane.execute("SET statement_timeout = 300")
    try:
        with service.engine.begin() as conn:
            conn.execute(
                text("SELECT 1 FROM key_heads WHERE tenant_id = :t AND key = 'lane-put' FOR UPDATE"),
                {"t": tenant},
            )
            with pytest.raises(psycopg.errors.QueryCanceled):
                service.put(tenant, "vc", "lane-put", b"lost")  # not acknowledged, and nothing of it kept
    finally:
        lane.execute("RESET statement_timeout")
    with service.engine.connect() as conn:
        kept = conn.execute(
            text("SELECT count(*) FROM objects WHERE tenant_id = :t AND key = 'lane-put'"), {"t": tenant}
        ).scalar_one()
        logged = conn.execute(
            text("SELECT count(*) FROM events WHERE tenant_id = :t AND key = 'lane-put'"), {"t": tenant}
        ).scalar_one()
    assert (kept, logged) == (1, 1)
    # Writers on many threads share the lane and the pool; each still gets its own version.
    bodies = [b"x" * i for i in range(200)]
    with ThreadPoolExecutor(8) as pool:
        infos = list(pool.map(lambda b: service.put(tenant, "vc", "lane-put", b), bodies))
    assert sorted(i.ref.version for i in infos) == list(range(2, 202))
    assert [service.get(tenant, i.ref) for i in infos] == bodies


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, lambda b: iter([b[:3], b[3:]])])
def test_a_small_value_is_stored_alike_whatever_buffer_it_came_in(
    service: LiquidService, tenant: str, kind: Any
) -> None:
    data = os.urandom(700)
    info = service.put(tenant, "vc", "kinds", kind(data))
    assert (info.size, info.sha256, info.inline) == (700, hashlib.sha256(data).hexdigest(), data)
    assert service.head(tenant, info.ref).home_store == "catalog"
    assert service.get(tenant, info.ref) == data


def test_a_warm_version_read_once_without_a_hot_tier_is_known_yet_still_checked_for_life(
    service: LiquidService, tenant: str, make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = make_service(hot={"enabled": False})  # a process that did not write them, no hot tier
    soon = service.clock() + timedelta(hours=1)
    data = [os.urandom(900), os.urandom(1100)]
    refs = [service.put(tenant, "vc", f"other{i}", d, expires_at=soon).ref for i, d in enumerate(data)]
    by_name = CatalogCalls(reader, monkeypatch)
    assert reader.known(refs[0]) is None
    assert reader.get(tenant, refs[0]) == data[0] and by_name.n == 1  # first sight: its row, by name
    facts = reader.known(refs[0])
    assert facts is not None and (facts.size, facts.expires_at) == (900, soon)
    assert [reader.get(tenant, refs[0]) for _ in range(3)] == [data[0]] * 3
    assert reader.get(tenant, refs[0], start=5, end=9) == data[0][5:9]
    assert by_name.n == 1  # known: the statement by primary key, not the row by name
    assert reader.get(tenant, refs[1]) == data[1] and by_name.n == 2
    service.delete(tenant, refs[0])  # by the writer: the reader's facts never said it was live
    with pytest.raises(ObjectGone):
        reader.get(tenant, refs[0])
    assert reader.get(tenant, refs[1]) == data[1]
    monkeypatch.setattr(reader, "clock", FakeClock(soon))  # past its own expiry, before any daemon
    with pytest.raises(ObjectGone):
        reader.get(tenant, refs[1])
