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
