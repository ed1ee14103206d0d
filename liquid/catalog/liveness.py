"""Whether a pooled PostgreSQL connection is still alive, asked without a round trip.

Shared by the catalog's pools (SQLAlchemy's, through :func:`liquid.catalog.db.make_engine`; the
fast path's psycopg pool) and the PostgreSQL store's: after a server restart, or a backend
killed by the server or a proxy, a dead idle connection is replaced instead of failing the next
request. Kept apart from ``db`` so that stores can use it without importing SQLAlchemy or Alembic.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool


def stale(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle pooled connection is dead: a zero-timeout poll of its socket, no round trip.

    An idle connection has nothing to read. When the server restarts or kills the backend it
    sends a FATAL message and closes the socket, which makes it readable; so does anything
    unexpected, after which the connection is not worth keeping either.
    """
    if conn.closed:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


def take_live(pool: ConnectionPool[Any], attempts: int) -> Any:
    """A connection from an autocommit psycopg pool that is not known to be dead (:func:`stale`).

    Dead ones are closed and given back, so the pool discards them and opens others; after
    ``attempts`` dead ones the next connection is taken as it comes (a new one by then).
    psycopg_pool's own ``check`` would do the same but sleep with backoff after each failed
    check (a second for the first), and its stock ``check_connection`` costs a round trip.
    """
    for _ in range(attempts):
        conn = pool.getconn()
        if not stale(conn):
            return conn
        conn.close()
        pool.putconn(conn)
    return pool.getconn()


@contextmanager
def live_connection(pool: ConnectionPool[Any], attempts: int) -> Iterator[Any]:
    """``pool.connection()`` for autocommit pools, with :func:`take_live`'s check (nothing to commit)."""
    conn = take_live(pool, attempts)
    try:
        yield conn
    finally:
        pool.putconn(conn)
