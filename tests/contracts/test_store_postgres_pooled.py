"""PostgresStore behind PgBouncer in transaction mode (``?pooler=transaction``) passes the store contract.

Each store gets a database of its own (``schema=`` is a session setting, refused in this mode).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import make_url

from liquid.catalog.fastpath import conninfo
from liquid.errors import InvalidInput, StoreError
from liquid.stores.postgres import PostgresStore

from .store_contract import StoreContract, StoreFactory


@pytest.fixture
def store_factory(pg_url: str, pgbouncer_url: str) -> Iterator[StoreFactory]:
    made: list[tuple[PostgresStore, str]] = []

    def make() -> PostgresStore:
        name = f"pooled_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(conninfo(pg_url), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        url = make_url(pgbouncer_url).set(database=name).render_as_string(hide_password=False)
        store = PostgresStore(f"{url}?pooler=transaction&timeout=30")
        store.create_schema()
        made.append((store, name))
        return store

    yield make
    for store, name in made:
        store.close()
        with psycopg.connect(conninfo(pg_url), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class TestPooledPostgresStore(StoreContract):
    pass


def test_a_schema_is_refused_behind_a_transaction_pooler(pgbouncer_url: str) -> None:
    with pytest.raises(InvalidInput, match=r"schema=s1 needs a session setting \(search_path\)"):
        PostgresStore(f"{pgbouncer_url}?pooler=transaction&schema=s1")


def test_an_unknown_pooler_is_refused(pg_url: str) -> None:
    with pytest.raises(InvalidInput, match="pooler must be none or transaction, got 'sometimes'"):
        PostgresStore(f"{pg_url}&pooler=sometimes")


def test_a_direct_mode_url_through_pgbouncer_says_what_to_add(pgbouncer_url: str) -> None:
    """PgBouncer refuses the statement_timeout startup option: the error says so, not 'all in use'."""
    store = PostgresStore(f"{pgbouncer_url}?acquire_timeout=1")
    try:
        with pytest.raises(
            StoreError, match=r"unsupported startup parameter: options.*add pooler=transaction"
        ):
            store.create_schema()
    finally:
        store.close()
