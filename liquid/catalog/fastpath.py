"""The two catalog statements on every request's path, run on psycopg directly.

SQLAlchemy costs about 250 µs per statement on this class of machine (pool checkout,
reset, compilation cache lookup, row processing) — more than the PostgreSQL round
trip itself. Object lookup by ref and the one-statement write go through a psycopg
pool of autocommit connections with server-side prepared statements instead; the
rest of the catalog keeps using SQLAlchemy.

Behind a transaction-mode pooler (``catalog_pooler: transaction``) the statements are not
prepared: each one may meet a server session that never saw the PREPARE.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, NamedTuple

from psycopg import Connection, Cursor
from psycopg.rows import namedtuple_row
from psycopg_pool import ConnectionPool
from sqlalchemy import make_url

from liquid.catalog import partitions
from liquid.catalog.liveness import live_connection, stale, take_live
from liquid.catalog.partitions import TENANT_IDS
from liquid.events import log as events

# One statement allocates the version under the key_heads row lock, inserts the object (its id
# carries the tenant's bucket: liquid.catalog.partitions),
# appends its event and tells the planner (liquid.catalog.changes): atomic without BEGIN/COMMIT
# round trips. The tenant is looked up, not checked by foreign keys (migration 0013: their triggers
# locked the tenant's row on every put): an unknown tenant makes every CTE empty, so the statement
# writes nothing and returns no row.
_CREATED_EVENT = events.insert_from(
    "obj",
    events.CREATED,
    at="%(now)s",
    tenant_id="%(tenant)s",
    object_id="obj.id",
    namespace="%(namespace)s",
    key="%(key)s",
    version="obj.version",
    actor="%(actor)s",
    tier="%(home_tier)s",
    bytes="%(stored_size)s",
    latency_ms="%(latency_ms)s",
    trace_id="%(trace_id)s",
    correlation_id="%(correlation_id)s",
    execution_id="%(execution_id)s",
    data={
        "size": "CAST(%(size)s AS bigint)",
        "stored_size": "CAST(%(stored_size)s AS bigint)",
        "sha256": "CAST(%(sha256)s AS text)",
        "store": "CAST(%(home_store)s AS text)",
        "locator": "CAST(%(locator)s AS text)",
    },
)
INSERT_OBJECT = f"""
WITH head AS (
    INSERT INTO key_heads (tenant_id, namespace, key, last_version)
    SELECT id, %(namespace)s, %(key)s, 1 FROM tenants WHERE id = %(tenant)s
    ON CONFLICT (tenant_id, namespace, key)
    DO UPDATE SET last_version = key_heads.last_version + 1
    RETURNING last_version
), obj AS (
    INSERT INTO objects (
        id, tenant_id, namespace, key, version, size, stored_size, sha256, content_type, compression,
        tags, classification, trace_id, correlation_id, execution_id, scope, created_at, expires_at,
        legal_hold, home_tier, home_store, locator, inline_data, home_since, state
    )
    SELECT liquid_object_id(%(tenant)s), %(tenant)s, %(namespace)s, %(key)s, head.last_version, %(size)s,
           %(stored_size)s, %(sha256)s,
           %(content_type)s, %(compression)s, CAST(%(tags)s AS jsonb), %(classification)s, %(trace_id)s,
           %(correlation_id)s, %(execution_id)s, %(scope)s, %(now)s, %(expires_at)s, %(legal_hold)s,
           %(home_tier)s, %(home_store)s, %(locator)s, %(inline_data)s, %(now)s, 'live'
    FROM head
    RETURNING id, version
), ev AS (
    {_CREATED_EVENT}
), changed AS (
    INSERT INTO tiering_changes (object_id) SELECT id FROM obj ON CONFLICT DO NOTHING
)
SELECT id, version FROM obj
"""

# The id range prunes the lookup to the tenant's partition (and the legacy one): see
# liquid.catalog.partitions.TENANT_IDS; its three values follow the ref's four.
_WHERE = "WHERE tenant_id = %s AND namespace = %s AND key = %s AND version = %s AND " + TENANT_IDS.format(
    col="id"
)
SELECT_OBJECT = f"SELECT * FROM objects {_WHERE}"
# Many versions in one statement (a batch resolve): the unique index answers each tuple.
_MANY = (
    " FROM objects o JOIN unnest(CAST(%s AS text[]), CAST(%s AS text[]), CAST(%s AS text[]),"
    " CAST(%s AS integer[])) AS r(tenant_id, namespace, key, version)"
    " USING (tenant_id, namespace, key, version)"
)
SELECT_MANY = "SELECT o.*" + _MANY
# Refs of one tenant (a batch resolve's usual case) prune to its partition as a single ref does.
_ONE_TENANT = " WHERE " + TENANT_IDS.format(col="o.id")
# What a read needs, and no more: decoding jsonb and timestamps it does not use costs more than the query.
_READ_COLUMNS = (
    "id, state, deleted_at, expires_at, size, sha256, content_type, compression, home_tier, "
    "home_store, locator, inline_data, classification"
)
SELECT_FOR_READ = f"SELECT {_READ_COLUMNS} FROM objects {_WHERE}"
# A version's id never changes: once known (liquid.versions), the primary key finds it, without
# comparing four columns of text in the ref's unique index (about half the server's time).
SELECT_FOR_READ_BY_ID = f"SELECT {_READ_COLUMNS} FROM objects WHERE id = %s"
SELECT_MANY_FOR_READ = f"SELECT tenant_id, namespace, key, version, {_READ_COLUMNS}" + _MANY
# The newest live version of a key (``GET /v1/objects/{ns}/{key}`` without a version): the ref's
# unique index read backwards, in the tenant's partition and the legacy one only.
SELECT_LATEST = (
    "SELECT version FROM objects WHERE tenant_id = %s AND namespace = %s AND key = %s AND state = 'live'"
    " AND (expires_at IS NULL OR expires_at > %s) AND "
    + TENANT_IDS.format(col="id")
    + " ORDER BY version DESC LIMIT 1"
)
# A known version's value, if it is live and kept in its row: nothing else is decoded. Liveness is
# judged in the select list, not the WHERE clause: a predicate on state there let the planner take
# the (state, home_tier) index over the primary key and filter every live row by id.
SELECT_LIVE_VALUE = "SELECT CASE WHEN state = 'live' THEN inline_data END FROM objects WHERE id = %s"


def conninfo(url: str) -> str:
    """A libpq URI from a SQLAlchemy URL (``postgresql+psycopg://`` → ``postgresql://``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _generic_plans(conn: Connection[Any]) -> None:
    """Make the session keep one generic plan per prepared statement.

    Every statement here is a point lookup on a unique key or the one insert: one plan fits
    every value. On the partitioned ``objects`` table PostgreSQL's own choice goes wrong: it
    prices the generic plan as a scan of every partition (the pruning happens at execution), so
    it re-plans each call (measured: about 3x the lookup's time, 200+ µs against ~80). A
    ``SET`` on the session rather than a startup option: poolers refuse unknown startup options.
    """
    conn.execute("SET plan_cache_mode = force_generic_plan")


#: How long the warm read lane keeps a connection before giving it back to the pool (whose
#: lifetime and health checks then apply to it) and taking another.
LANE_SECONDS = 60.0


class CatalogFastPath:
    """Object lookup and insert on a pool of autocommit psycopg connections.

    The warm read of a small value (:meth:`live_value`) and the write (:meth:`insert`) also have
    a lane: one connection taken from the pool and kept, used by whichever thread finds it free
    (a try-lock); a thread that finds it busy uses the pool as before, so the lane never makes
    anyone wait. A pool checkout
    and return costs about a fifth of that read on this class of machine (8 µs of ~40).

    Every connection is checked for death before use by :func:`~liquid.catalog.liveness.stale` (a
    zero-timeout socket poll, no round trip): after a PostgreSQL restart, or a backend killed by
    the server or a proxy, the dead connection is closed and replaced instead of failing a read or a put.
    """

    def __init__(self, url: str, *, max_size: int = 10, timeout: float = 10.0, prepare: bool = True) -> None:
        self.pool = ConnectionPool(
            conninfo(url),
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True, "prepare_threshold": 1 if prepare else None},
            configure=_generic_plans if prepare else None,
            open=True,
            name="liquid-catalog",
            timeout=timeout,
        )
        # A pool of one has nothing to spare: its only connection must stay free for the rest.
        self._use_lane = max_size > 1
        self._lane_lock = threading.Lock()
        self._lane: Connection[Any] | None = None
        # The lane's cursors (plain rows, named rows), kept with it: a cursor per statement costs
        # what its setup does.
        self._lane_cursors: tuple[Cursor[Any], Cursor[Any]] | None = None
        self._lane_until = 0.0
        self._max_size = max_size

    def __repr__(self) -> str:
        return f"CatalogFastPath({self.pool.get_stats()})"

    def find(self, tenant: str, namespace: str, key: str, version: int, *, full: bool = False) -> Any | None:
        """The objects row of one version (a named tuple; only the read columns unless ``full``), or None.

        The read columns (a reader's first sight of a version) come on the lane like the warm read,
        in binary: a pool checkout and text results were about a third of that lookup.
        """
        params = (tenant, namespace, key, version, *partitions.tenant_ids(tenant))
        if not full:
            return self._one(SELECT_FOR_READ, params, named=True)
        with self._connection() as conn, conn.cursor(row_factory=namedtuple_row) as cur:
            cur.execute(SELECT_OBJECT, params)
            row: NamedTuple | None = cur.fetchone()
            return row

    def latest(self, tenant: str, namespace: str, key: str, now: datetime) -> int | None:
        """The newest version of a key that is live and unexpired at ``now``; None if there is none."""
        row = self._one(SELECT_LATEST, (tenant, namespace, key, now, *partitions.tenant_ids(tenant)))
        return None if row is None else int(row[0])

    def find_by_id(self, object_id: int) -> Any | None:
        """The read columns of one version by its id (as :meth:`find`), or None."""
        return self._one(SELECT_FOR_READ_BY_ID, (object_id,), named=True)

    def live_value(self, object_id: int) -> bytes | None:
        """The bytes kept in the row of version ``object_id`` if it is live; None if it is not live,
        does not exist, or keeps its bytes in a store (the caller then reads the row as usual).

        The whole warm read of a small value: one prepared statement (unprepared behind a
        transaction-mode pooler), its one column fetched in binary (no hex decoding of bytea).
        """
        row = self._one(SELECT_LIVE_VALUE, (object_id,))
        return None if row is None else row[0]

    def find_many(
        self, refs: Sequence[tuple[str, str, str, int]], *, full: bool = True
    ) -> dict[tuple[str, str, str, int], Any]:
        """Objects rows of many versions in one round trip, by (tenant, namespace, key, version).

        Full rows, or with ``full=False`` only the read columns (as :meth:`find`).
        """
        if not refs:
            return {}
        columns: list[Any] = [list(c) for c in zip(*refs, strict=True)]
        sql = SELECT_MANY if full else SELECT_MANY_FOR_READ
        tenants = set(columns[0])
        if len(tenants) == 1:
            sql += _ONE_TENANT
            columns += partitions.tenant_ids(tenants.pop())
        with self._connection() as conn, conn.cursor(row_factory=namedtuple_row) as cur:
            cur.execute(sql, columns)
            rows: list[Any] = cur.fetchall()
            return {(r.tenant_id, r.namespace, r.key, r.version): r for r in rows}

    def insert(self, fields: dict[str, Any]) -> tuple[int, int] | None:
        """Record a new object version; returns its object id and version number.

        None when ``fields["tenant"]`` names no tenant: nothing was written.

        One prepared statement, one round trip, one commit (autocommit): on the lane when it is
        free, like the warm read, since a pool checkout and return is a tenth of a small put.
        """
        row = self._one(INSERT_OBJECT, fields)
        if row is None:
            return None
        return int(row[0]), int(row[1])

    def _one(self, query: str, params: Any, *, named: bool = False) -> Any | None:
        """The first row of one statement (binary results; a named tuple if ``named``), on the lane
        if free, else on the pool."""
        if self._use_lane and self._lane_lock.acquire(blocking=False):
            try:
                conn, cursors = self._lane, self._lane_cursors
                if conn is not None and stale(conn):
                    self._give_back_lane()
                    conn = cursors = None
                if conn is None or cursors is None:
                    conn = self._lane = self._take()
                    cursors = self._lane_cursors = (
                        conn.cursor(binary=True),
                        conn.cursor(binary=True, row_factory=namedtuple_row),
                    )
                    self._lane_until = time.monotonic() + LANE_SECONDS
                try:
                    row = cursors[named].execute(query, params).fetchone()
                except BaseException:
                    self._give_back_lane()  # the pool discards the connection if it broke
                    raise
                if time.monotonic() > self._lane_until:
                    self._give_back_lane()
                return row
            finally:
                self._lane_lock.release()
        # getconn/putconn rather than pool.connection(): the latter's `with conn` block
        # commits, which has nothing to do on an autocommit connection.
        conn = self._take()
        try:
            if named:
                with conn.cursor(binary=True, row_factory=namedtuple_row) as cur:
                    return cur.execute(query, params).fetchone()
            return conn.execute(query, params, binary=True).fetchone()
        finally:
            self.pool.putconn(conn)

    def close(self) -> None:
        with self._lane_lock:
            self._give_back_lane()
        self.pool.close()

    def _take(self) -> Connection[Any]:
        conn: Connection[Any] = take_live(self.pool, self._max_size)
        return conn

    def _connection(self) -> AbstractContextManager[Connection[Any]]:
        return live_connection(self.pool, self._max_size)

    def _give_back_lane(self) -> None:
        """Return the lane's connection to the pool (holding the lane lock); the next read takes another."""
        conn, cursors = self._lane, self._lane_cursors
        self._lane = self._lane_cursors = None
        for cur in cursors or ():
            cur.close()
        if conn is not None:
            if stale(conn):
                conn.close()  # so that the pool discards it rather than keep it as idle
            self.pool.putconn(conn)
