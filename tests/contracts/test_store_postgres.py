"""PostgresStore passes the store contract; plus schema handling and chunk layout."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from liquid.errors import InvalidInput, StoreError
from liquid.stores import open_store, read_bytes, write_bytes
from liquid.stores.postgres import SCHEMA_SQL, PostgresStore

from .store_contract import StoreContract, StoreFactory


def _with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


@pytest.fixture
def store_factory(pg_url: str) -> Iterator[StoreFactory]:
    made: list[PostgresStore] = []

    def make() -> PostgresStore:
        store = PostgresStore(_with_schema(pg_url, f"t_{uuid.uuid4().hex[:12]}"))
        store.create_schema()
        made.append(store)
        return store

    yield make
    for store in made:
        store.drop_schema()
        store.close()


class TestPostgresStore(StoreContract):
    pass


def test_schema_sql_is_idempotent_and_chunks_are_rows(pg_url: str) -> None:
    store = PostgresStore(_with_schema(pg_url, f"t_{uuid.uuid4().hex[:12]}"), chunk_size=1000)
    try:
        store.create_schema()
        store.create_schema()
        write_bytes(store, "k", bytes(range(256)) * 10)  # 2560 bytes -> 3 chunks
        conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo) as conn:
            conn.execute(f"SET search_path TO {store.schema}")
            conn.execute(SCHEMA_SQL)
            rows = conn.execute("SELECT seq, length(data) FROM liquid_blob_chunks ORDER BY seq").fetchall()
            assert rows == [(0, 1000), (1, 1000), (2, 560)]
            assert conn.execute("SELECT size, chunk_size FROM liquid_blobs").fetchall() == [(2560, 1000)]
        assert read_bytes(store, "k", start=999, end=1001) == bytes([999 % 256, 1000 % 256])
    finally:
        store.drop_schema()
        store.close()


def test_open_store_accepts_sqlalchemy_urls(pg_url: str) -> None:
    store = open_store(pg_url)
    assert isinstance(store, PostgresStore)
    assert store.url.startswith("postgresql://")
    store.ping()
    store.close()


def test_bad_schema_name_is_refused(pg_url: str) -> None:
    with pytest.raises(InvalidInput, match="schema"):
        PostgresStore(_with_schema(pg_url, "x;drop"))


def test_unreachable_server_is_store_error() -> None:
    store = PostgresStore("postgresql://u:topsecret@127.0.0.1:1/db?connect_timeout=1")
    assert "topsecret" not in store.url
    with pytest.raises(StoreError, match=re.escape("postgresql://u@127.0.0.1:1/db")) as err:
        store.ping()
    assert "topsecret" not in str(err.value)


def test_a_call_that_finds_no_free_connection_fails_after_the_acquire_timeout(pg_url: str) -> None:
    """The hand-rolled pool queued forever; psycopg_pool gives up after ``acquire_timeout``."""
    import threading
    import time

    schema = f"t_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(_with_schema(pg_url, schema) + "&pool_size=1&acquire_timeout=1&chunk_size=1KiB")
    try:
        store.create_schema()
        write_bytes(store, "big", b"b" * 20_000)
        held = store.open("big")  # a streaming read keeps its connection until it is finished
        first = next(held)
        outcome: list[BaseException | None] = []

        def second() -> None:
            try:
                store.head("big")
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        started = time.monotonic()
        t = threading.Thread(target=second, daemon=True)
        t.start()
        t.join(10)
        assert not t.is_alive(), "a call waited for a pooled connection for more than 10 s"
        assert 0.9 < time.monotonic() - started < 5
        assert isinstance(outcome[0], StoreError) and "no connection free within 1s" in str(outcome[0])
        assert len(first) + len(b"".join(held)) == 20_000  # the held read finishes
        assert store.head("big").size == 20_000  # and its connection is back in the pool
    finally:
        store.drop_schema()
        store.close()


def test_connections_the_server_dropped_are_replaced_before_use(pg_url: str) -> None:
    """After a restart or a proxy's kill, no call fails on a dead pooled connection, nor waits for it."""
    import time

    schema = f"t_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(_with_schema(pg_url, schema) + "&pool_size=3")
    try:
        store.create_schema()
        write_bytes(store, "k", b"value")
        held = [store._pool.getconn() for _ in range(3)]  # every connection of the pool exists
        pids = [c.info.backend_pid for c in held]
        for c in held:
            store._pool.putconn(c)
        with psycopg.connect(
            pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        ) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid", (pids,))
            deadline = time.monotonic() + 10
            while admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
            ).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, "the terminated backends did not exit"
                time.sleep(0.02)
        started = time.monotonic()
        for _ in range(3):
            assert read_bytes(store, "k") == b"value"
        # Not psycopg_pool's check hook, which sleeps 1 s, then 2 s, ... after each dead connection.
        assert time.monotonic() - started < 2.5
    finally:
        store.drop_schema()
        store.close()
