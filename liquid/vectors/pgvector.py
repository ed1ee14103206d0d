"""pgvector in the catalog database: the default vector index.

Embeddings live in the catalog's ``object_vectors`` table (migration 0009), so a purge
removes them in the same transaction that marks their object purged
(:func:`liquid.purge.purge`). pgvector indexes one dimension per HNSW index, so each
(dimension, metric) pair gets a partial expression index, made when a namespace first
uses the pair::

    CREATE INDEX ix_object_vectors_hnsw_cosine_384 ON object_vectors
      USING hnsw ((embedding::vector(384)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)
      WHERE dims = 384 AND metric = 'cosine'

and every query names the same cast and predicate as literals (a bound parameter would
not prove the partial index's predicate under a generic plan). ``tenant_id`` is always a
condition of the query this module builds; :class:`~liquid.vectors.base.VectorFilter`
can only add conditions. Searches run with ``hnsw.iterative_scan = strict_order`` so a
selective filter still finds ``k`` matches when they exist; those settings are session settings
of the pooled connection, set when they change, so a search is one round trip.

**Exact fallback.** HNSW finds neighbours by walking a graph towards the query; when the
query has no neighbourhood in the data (a uniformly random query among uniformly random
high-dimensional vectors: its nearest neighbours are barely closer than anything else), the
walk has nothing to follow and misses most of them whatever ``ef_search`` (recall@10 0.13 at
ef_search 100 on 100k x 384; ``benchmarks/results/vectors.md``). Such an answer betrays
itself: its k-th hit is no closer than chance alone would put the best of ``n`` vectors.
Each searched set keeps a sample of its vectors (:data:`SAMPLE_SIZE`); a sample older than
:data:`SAMPLE_TTL` seconds still serves while a background thread reads a new one, so only a
set's first search pays for reading it (a count and a random sort of the set). A search
standardises its k-th hit's score by the sample's scores against the query (median and MAD)
and, when it stands less than ``sqrt(2 ln n)`` (the expected best of ``n`` Gaussian draws)
plus ``vectors.exact_fallback_margin`` standard deviations out, or the index returned fewer
than ``k`` hits of a larger set, runs the same query as an exact scan
(:attr:`PgVectorQuery.exact_sql`). Sets larger than ``vectors.exact_fallback_max`` never fall
back, which bounds the cost of one query (an exact scan reads every vector of the set).

**A search of every namespace** plans from the tenant's (dimension, metric) pairs as this
process last read them (a dimension it has not seen is read again): spaces are only ever added,
so what a cached plan can miss is a second metric for the query's dimension, which another
process may add at any time. The search's own statement counts the metrics of that dimension
(one index lookup in the same round trip) and a plan they no longer prove, or a search with no
rows to tell, reads the spaces again and fails as a fresh plan would. A round trip less per
search (1,284 → 1,119 µs at 20k vectors; a namespace's search 1,159 → 1,096 in the same runs).

**Searches run on psycopg directly** (the engine's pooled connection, its driver connection),
as :mod:`liquid.catalog.fastpath` does: SQLAlchemy's statement and row handling cost about as
much as the HNSW statement itself. The query vector goes as pgvector's binary ``vector``
(:func:`register_vector_dumper`), not as a text literal of every float to format and parse.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import numpy as np
import orjson
import psycopg
from cachetools import LRUCache
from pgvector import Vector
from pgvector.psycopg.vector import VectorBinaryDumper
from psycopg.rows import namedtuple_row
from psycopg.types import TypeInfo
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Connection, Engine, bindparam, make_url, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.types import UserDefinedType

from liquid.catalog import db
from liquid.catalog.liveness import stale
from liquid.catalog.models import ObjectVector
from liquid.config import CATALOG_STORE, VectorSettings
from liquid.errors import DimensionMismatch, InvalidInput
from liquid.vectors.base import (
    Metric,
    VectorFilter,
    VectorHit,
    VectorRecord,
    VectorSpace,
    check_dims,
    check_direction,
    check_metric,
)

#: metric -> (operator, operator class)
OPS: dict[str, tuple[str, str]] = {
    "cosine": ("<=>", "vector_cosine_ops"),
    "l2": ("<->", "vector_l2_ops"),
    "ip": ("<#>", "vector_ip_ops"),
}
_SPACE_LOCK = 0x6C717663  # advisory lock key: one space/index creation at a time
#: Vectors sampled per searched set for the exact fallback's test, and the age (seconds) past which
#: a search that uses a sample also has a new one read in the background.
SAMPLE_SIZE = 512
SAMPLE_TTL = 300.0
#: Memory the cached samples may take, least recently searched sets out first (a 384-dimensional
#: sample is 0.75 MiB: about 340 sets).
SAMPLE_CACHE_BYTES = 256 * 2**20

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PgVectorQuery:
    """The statements one search may run, and what the exact fallback needs to decide between them."""

    #: The HNSW statement (what every search runs first), in psycopg's ``%(name)s`` style.
    sql: str
    #: The same question by a sequential scan: exact, and what a search falls back to.
    exact_sql: str
    #: :attr:`exact_sql` when it came back short of ``k`` (it tests only the 4k nearest for liveness).
    exact_all_sql: str
    #: How many vectors the searched set holds before metadata filters, counted up to ``:cap``.
    count_sql: str
    #: A uniform sample of those vectors (for the fallback's test).
    sample_sql: str
    params: dict[str, Any] = field(repr=False)
    metric: str
    dims: int
    #: Identifies the searched set: (tenant, namespace or None for all, dims, metric).
    set_key: tuple[str, str | None, int, str]
    #: A search of every namespace: planned from the tenant's (dims, metric) pairs as this process
    #: last read them, its rows carry ``metrics`` (how many metrics the tenant's ``dims``-dimensional
    #: spaces use now) to prove that plan still right (:func:`_unproven`).
    guarded: bool = False


@dataclass(frozen=True, slots=True)
class SetSample:
    """How many vectors a searched set holds, and a uniform sample of them (rows of a float32 matrix)."""

    n: int
    vectors: Any = field(repr=False)  # numpy (m, dims) float32


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BinaryVector(UserDefinedType[Vector]):
    """``vector`` written as a :class:`pgvector.Vector` handed to psycopg as is (binary on the wire).

    The column's own type (pgvector's ``VECTOR``) formats each value as text, ``[0.1,...]``:
    about 0.5 ms of Python per 384-dimensional vector, a sixth of a bulk attach's time.
    """

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "VECTOR"


def _in_thread(fn: Callable[[], None]) -> None:
    threading.Thread(target=fn, name="pgvector-sample", daemon=True).start()


def _score(metric: str, distance: float) -> float:
    """pgvector's distance as a higher-is-closer score (``<#>`` is the negated inner product)."""
    if distance != distance:  # NaN: a zero vector stored before they were refused (check_direction)
        return 0.0  # what Qdrant scores it
    if metric == "cosine":
        return 1.0 - distance
    return -distance


class PgVectorIndex:
    """HNSW vector search in the catalog database (see the module docstring).

    Args:
        engine: the catalog engine (migrated to 0009 or later).
        settings: HNSW build parameters, the default metric and ``ef_search``.
        name: the name queries use for this index.
        timer: monotonic seconds, for the age of the fallback's samples.
        spawn: runs a sample refresh off the request path (a daemon thread; tests run it inline).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        settings: VectorSettings,
        name: str = CATALOG_STORE,
        inline_threshold: int = 4096,
        clock: Callable[[], datetime] = _utcnow,
        timer: Callable[[], float] = time.monotonic,
        spawn: Callable[[Callable[[], None]], None] = _in_thread,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.name = name
        self.inline_threshold = inline_threshold
        self.clock = clock
        # A space never changes once fixed, so a query need not read it again (bounded, not evicted).
        self._spaces: dict[tuple[str, str], VectorSpace] = {}
        #: Each tenant's (dims, metric) pairs, for searches of every namespace. Spaces are only
        #: ever added, so a stale entry can only lack pairs: a dimension it lacks is read again,
        #: a second metric of a dimension it has shows in the search's own rows (``guarded``).
        self._tenant_spaces: dict[str, tuple[tuple[int, str], ...]] = {}
        self.timer = timer
        self.spawn = spawn
        # set key -> (sample, when it was read); bounded by bytes, least recently used first out.
        self._samples: LRUCache[tuple[str, str | None, int, str], tuple[SetSample, float]] = LRUCache(
            maxsize=SAMPLE_CACHE_BYTES, getsizeof=lambda entry: 64 + int(entry[0].vectors.nbytes)
        )
        self._refreshing: set[tuple[str, str | None, int, str]] = set()
        self._samples_lock = threading.Lock()  # LRUCache is not thread-safe; API threads share it
        # asearch's pool, the loop it belongs to, and each of its connections' ef_search.
        self._apool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._asession: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], int] = (
            weakref.WeakKeyDictionary()
        )
        #: Searches run, and how many of them the exact fallback answered.
        self.searches = 0
        self.exact_fallbacks = 0

    def __repr__(self) -> str:
        return (
            f"PgVectorIndex(name={self.name!r}, db={self.engine.url.render_as_string(hide_password=True)!r},"
            f" searches={self.searches}, exact_fallbacks={self.exact_fallbacks})"
        )

    def close(self) -> None:
        """Nothing to close: the catalog engine belongs to the service."""

    # ------------------------------------------------------------------ spaces

    def space(self, tenant: str, namespace: str) -> VectorSpace | None:
        cached = self._spaces.get((tenant, namespace))
        if cached is not None:
            return cached
        with db.reading(self.engine) as conn:
            row = conn.execute(
                text("SELECT dims, metric FROM vector_spaces WHERE tenant_id = :t AND namespace = :ns"),
                {"t": tenant, "ns": namespace},
            ).first()
        if row is None:
            return None
        return self._remember(tenant, namespace, VectorSpace(row.dims, row.metric))

    def _remember(self, tenant: str, namespace: str, space: VectorSpace) -> VectorSpace:
        if len(self._spaces) >= 100_000:
            self._spaces.clear()
        self._spaces[(tenant, namespace)] = space
        return space

    def _fix_space(
        self, conn: Any, tenant: str, namespace: str, dims: int, metric: Metric | None
    ) -> VectorSpace:
        """The namespace's space, fixing it (and making its HNSW index) on the first write."""
        row = conn.execute(
            text("SELECT dims, metric FROM vector_spaces WHERE tenant_id = :t AND namespace = :ns"),
            {"t": tenant, "ns": namespace},
        ).first()
        if row is None:
            chosen = metric or self.settings.metric
            # Serialised: two first writes of one namespace must agree, and CREATE INDEX IF NOT
            # EXISTS is not safe against a concurrent twin.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SPACE_LOCK})
            conn.execute(
                text(
                    "INSERT INTO vector_spaces (tenant_id, namespace, dims, metric)"
                    " VALUES (:t, :ns, :d, :m) ON CONFLICT DO NOTHING"
                ),
                {"t": tenant, "ns": namespace, "d": dims, "m": chosen},
            )
            row = conn.execute(
                text("SELECT dims, metric FROM vector_spaces WHERE tenant_id = :t AND namespace = :ns"),
                {"t": tenant, "ns": namespace},
            ).one()
            self._ensure_hnsw(conn, int(row.dims), row.metric)
        space = VectorSpace(int(row.dims), row.metric)
        if metric is not None and metric != space.metric:
            raise InvalidInput(
                f"namespace {namespace!r} was fixed with metric {space.metric!r} by its first write;"
                f" got {metric!r}",
                field="metric",
            )
        return space

    def _ensure_hnsw(self, conn: Any, dims: int, metric: str) -> None:
        opclass = OPS[metric][1]
        name = f"ix_object_vectors_hnsw_{metric}_{dims}"
        # Looked up first: CREATE INDEX takes a SHARE lock on the table even when the index exists,
        # which would make every new namespace wait for (and block) all vector writes.
        if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None:
            return
        conn.execute(
            text(
                f"CREATE INDEX IF NOT EXISTS {name} ON object_vectors"
                f" USING hnsw ((embedding::vector({dims})) {opclass})"
                f" WITH (m = {self.settings.hnsw_m}, ef_construction = {self.settings.hnsw_ef_construction})"
                f" WHERE dims = {dims} AND metric = '{metric}'"
            )
        )

    # ------------------------------------------------------------------ writes

    def add(self, tenant: str, records: Sequence[VectorRecord], *, metric: Metric | None = None) -> int:
        if metric is not None:
            check_metric(metric)
        if not records:
            return 0
        with self.engine.begin() as conn:
            spaces: dict[str, VectorSpace] = {}
            rows: list[dict[str, Any]] = []
            for i, r in enumerate(records):
                space = spaces.get(r.namespace)
                if space is None:
                    space = spaces[r.namespace] = self._fix_space(
                        conn, tenant, r.namespace, len(r.vector), metric
                    )
                check_dims(space, len(r.vector), r.namespace, field=f"embeddings[{i}].vector")
                check_direction(r.vector, space.metric, f"embeddings[{i}].vector")
                rows.append(
                    {
                        "tenant_id": tenant,
                        "namespace": r.namespace,
                        "object_id": r.object_id,
                        "chunk_id": r.chunk_id,
                        "span_start": r.span[0] if r.span else None,
                        "span_end": r.span[1] if r.span else None,
                        "dims": space.dims,
                        "metric": space.metric,
                        "tags": dict(r.tags),
                        "content_type": r.content_type,
                        "classification": r.classification,
                        "embedding": Vector(r.vector),
                    }
                )
            _driver(conn)  # psycopg sends the Vector values as binary vectors
            stmt = insert(ObjectVector).values(embedding=bindparam("embedding", type_=BinaryVector()))
            stmt = stmt.on_conflict_do_update(
                constraint="uq_object_vectors_chunk",
                set_={
                    c: stmt.excluded[c]
                    for c in ("span_start", "span_end", "dims", "metric", "tags", "embedding")
                },
            )
            conn.execute(stmt, rows)
        return len(rows)

    def delete_objects(self, tenant: str, object_ids: Sequence[int]) -> int:
        if not object_ids:
            return 0
        with self.engine.begin() as conn:
            result = conn.execute(
                text("DELETE FROM object_vectors WHERE tenant_id = :t AND object_id = ANY(:ids)"),
                {"t": tenant, "ids": list(object_ids)},
            )
        return int(result.rowcount or 0)

    # ------------------------------------------------------------------ search

    def search(
        self,
        tenant: str,
        vector: Sequence[float],
        *,
        k: int,
        where: VectorFilter,
        ef_search: int | None = None,
    ) -> list[VectorHit]:
        q = self.query(tenant, vector, k=k, where=where)
        if q is None:
            return []
        ef = max(int(ef_search or self.settings.ef_search), int(k))
        if db.pooler(self.engine) == "transaction":
            # The next transaction may run on another server session: the settings live and die
            # with this one (SET LOCAL), at the price of BEGIN and COMMIT round trips.
            with self.engine.begin() as conn:
                raw = _driver(conn)
                raw.execute(_hnsw_settings(ef, local=True))
                rows = self._rows(raw, q, k=k)
        else:
            # One round trip: a read-only statement in autocommit, on a connection whose session
            # already has these HNSW settings (they touch nothing but HNSW scans, so they may stay
            # on a pooled connection; each connection remembers what it was given).
            with db.reading(self.engine) as conn:
                raw = _driver(conn)
                wanted = (ef, "strict_order")
                if conn.info.get("liquid_hnsw") != wanted:
                    raw.execute(_hnsw_settings(ef, local=False))
                    conn.info["liquid_hnsw"] = wanted
                rows = self._rows(raw, q, k=k)
        if _unproven(q, rows):
            _metric_of(self._read_tenant_spaces(tenant), q.dims)  # raises as a fresh plan would
        return self._hits(q, rows)

    # ------------------------------------------------------ search on the event loop

    async def astart(self, *, max_size: int = 10, timeout: float = 10.0) -> None:
        """Open this event loop's connection pool for :meth:`asearch` (the API's lifespan calls it).

        Its own psycopg ``AsyncConnectionPool`` of autocommit connections to the catalog database,
        each set up once: binary query vectors, the HNSW session settings (unless behind a
        transaction-mode pooler), jsonb read by orjson.
        """
        if self._apool is not None:
            return
        prepare = db.pooler(self.engine) != "transaction"
        url = self.engine.url.render_as_string(hide_password=False)
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True, "prepare_threshold": 5 if prepare else None},
            configure=self._aconfigure,
            open=False,
            name=f"liquid-vectors-{self.name}",
            timeout=timeout,
        )
        # Not waiting for the first connection: an API may start while the catalog is down (its
        # readiness says so); a search then waits for a connection as long as the pool's timeout.
        await pool.open(wait=False)
        self._apool, self._aloop = pool, asyncio.get_running_loop()

    async def astop(self) -> None:
        """Close the pool :meth:`astart` opened (on the loop that opened it)."""
        pool, self._apool, self._aloop = self._apool, None, None
        if pool is not None:
            await pool.close()

    def on_loop(self) -> bool:
        """Whether :meth:`asearch` can run here: :meth:`astart` opened a pool on the running loop."""
        if self._apool is None:
            return False
        try:
            return asyncio.get_running_loop() is self._aloop
        except RuntimeError:
            return False

    async def _aconfigure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        info = await TypeInfo.fetch(conn, "vector")
        if info is None:
            raise psycopg.ProgrammingError("the vector type is not in this database: CREATE EXTENSION vector")
        conn.adapters.register_dumper(Vector, type("VectorDumper", (VectorBinaryDumper,), {"oid": info.oid}))
        set_json_loads(_json_loads, conn)
        if db.pooler(self.engine) != "transaction":
            await conn.execute(_hnsw_settings(self.settings.ef_search, local=False))
            self._asession[conn] = self.settings.ef_search

    async def asearch(
        self,
        tenant: str,
        vector: Sequence[float],
        *,
        k: int,
        where: VectorFilter,
        ef_search: int | None = None,
    ) -> list[VectorHit]:
        """:meth:`search` on the event loop (after :meth:`astart`): the same statements and answers.

        A search waits on PostgreSQL's socket in the loop itself, so it costs no worker-thread
        hop there and back (two thread wake-ups, each a scheduling delay on a busy machine). Only
        a set's first search, which reads its sample (a sort of the set), runs in a worker thread.
        """
        pool = self._apool
        if pool is None or not self.on_loop():
            raise RuntimeError("PgVectorIndex.asearch needs astart() on the running event loop")
        ef = max(int(ef_search or self.settings.ef_search), int(k))
        conn = await pool.getconn()
        try:
            if stale(conn):  # closed by the server while idle: get a fresh one, no round trip spent
                await conn.close()
                await pool.putconn(conn)
                conn = await pool.getconn()
            q = await self._aquery(conn, tenant, vector, k=k, where=where)
            if q is None:
                return []
            if db.pooler(self.engine) == "transaction":
                async with conn.transaction():
                    await conn.execute(_hnsw_settings(ef, local=True))
                    rows = await self._arows(conn, q, k=k)
            else:
                if self._asession.get(conn) != ef:
                    await conn.execute(_hnsw_settings(ef, local=False))
                    self._asession[conn] = ef
                rows = await self._arows(conn, q, k=k)
            if _unproven(q, rows):
                _metric_of(await self._aread_tenant_spaces(conn, tenant), q.dims)  # as a fresh plan
        finally:
            await pool.putconn(conn)
        return self._hits(q, rows)

    async def _aquery(
        self,
        conn: psycopg.AsyncConnection[Any],
        tenant: str,
        vector: Sequence[float],
        *,
        k: int,
        where: VectorFilter,
    ) -> PgVectorQuery | None:
        """:meth:`query`, reading what the space cache lacks on ``conn``."""
        dims = len(vector)
        if where.namespace is not None:
            space = self._spaces.get((tenant, where.namespace))
            if space is None:
                cur = await conn.execute(
                    "SELECT dims, metric FROM vector_spaces WHERE tenant_id = %s AND namespace = %s",
                    (tenant, where.namespace),
                )
                row = await cur.fetchone()
                if row is None:
                    return None
                space = self._remember(tenant, where.namespace, VectorSpace(int(row[0]), row[1]))
            check_dims(space, dims, where.namespace)
            return self._plan(tenant, vector, k=k, where=where, metric=space.metric)
        found = self._known_spaces(tenant, dims) or await self._aread_tenant_spaces(conn, tenant)
        if not found:
            return None
        return self._plan(tenant, vector, k=k, where=where, metric=_metric_of(found, dims))

    async def _aread_tenant_spaces(
        self, conn: psycopg.AsyncConnection[Any], tenant: str
    ) -> tuple[tuple[int, str], ...]:
        cur = await conn.execute(
            "SELECT DISTINCT dims, metric FROM vector_spaces WHERE tenant_id = %s", (tenant,)
        )
        return self._remember_tenant(tenant, await cur.fetchall())

    async def _arows(self, conn: psycopg.AsyncConnection[Any], q: PgVectorQuery, *, k: int) -> list[Any]:
        """:meth:`_rows` on the event loop.

        With the set's sample cached, the fallback's chance statistics (the sample scored against
        the query: a pass over the sample's 0.75 MiB, ~0.3 ms on a busy machine) are computed while
        the HNSW statement is out at PostgreSQL, not after its answer: they depend on the query and
        the sample only, and the loop would otherwise sit idle on the socket.
        """
        async with conn.cursor(row_factory=namedtuple_row) as cur:

            async def statement(sql: str) -> list[Any]:
                await cur.execute(sql, q.params)
                return await cur.fetchall()

            sample = self._cached_sample(q) if self.settings.exact_fallback_max > 0 else None
            chance: tuple[float, float] | None = None
            if sample is None:
                rows = await statement(q.sql)
            else:
                pending = asyncio.ensure_future(statement(q.sql))
                try:
                    await asyncio.sleep(0)  # the task sends the statement, then waits on the socket
                    chance = self._chance(sample, q, q.params["q"].to_numpy())
                    rows = await pending
                finally:
                    if not pending.done():  # cancelled (a deadline) or failed here: not left running
                        pending.cancel()
                        with contextlib.suppress(BaseException):
                            await pending
            self.searches += 1
            if self.settings.exact_fallback_max > 0:
                if sample is None:  # the set's first search: its count and sample, off the loop
                    sample = await anyio.to_thread.run_sync(self._load_sample, q)
                    chance = self._chance(sample, q, q.params["q"].to_numpy())
                scores = [_score(q.metric, float(r.distance)) for r in rows]
                if not self._verdict(sample, chance, scores, k=k):
                    self.exact_fallbacks += 1
                    rows = await statement(q.exact_sql)
                    if len(rows) < k:
                        rows = await statement(q.exact_all_sql)
        return rows

    # ------------------------------------------------------------ shared by both

    def _hits(self, q: PgVectorQuery, rows: list[Any]) -> list[VectorHit]:
        return [
            VectorHit(
                object_id=r.object_id,
                chunk_id=r.chunk_id,
                span=None if r.span_start is None else (r.span_start, r.span_end),
                score=_score(q.metric, float(r.distance)),
                live_row=r,
            )
            for r in rows
        ]

    def _rows(self, conn: psycopg.Connection[Any], q: PgVectorQuery, *, k: int) -> list[Any]:
        """The HNSW statement's rows, or the exact scan's when they do not stand (:meth:`stands`)."""
        with conn.cursor(row_factory=namedtuple_row) as cur:
            rows: list[Any] = cur.execute(q.sql, q.params).fetchall()
            self.searches += 1
            scores = [_score(q.metric, float(r.distance)) for r in rows]
            if not self.stands(conn, q, q.params["q"].to_numpy(), scores, k=k):
                self.exact_fallbacks += 1
                rows = cur.execute(q.exact_sql, q.params).fetchall()
                if len(rows) < k:
                    rows = cur.execute(q.exact_all_sql, q.params).fetchall()
        return rows

    def stands(
        self,
        conn: psycopg.Connection[Any],
        q: PgVectorQuery,
        vector: Any,
        scores: Sequence[float],
        *,
        k: int,
    ) -> bool:
        """Whether the HNSW answer (its hits' ``scores``, closest first) stands or the exact scan must run.

        ``conn`` (psycopg) reads the searched set's count and sample when they are not cached;
        ``vector`` is the query (a float32 array).
        """
        if self.settings.exact_fallback_max <= 0:
            return True
        sample = self._cached_sample(q)
        if sample is None:
            sample = self._read_sample(conn, q)
        return self._stands(sample, q, vector, scores, k=k)

    def _stands(
        self, sample: SetSample, q: PgVectorQuery, vector: Any, scores: Sequence[float], *, k: int
    ) -> bool:
        """:meth:`stands`, given the set's sample."""
        return self._verdict(sample, self._chance(sample, q, vector), scores, k=k)

    def _chance(self, sample: SetSample, q: PgVectorQuery, vector: Any) -> tuple[float, float] | None:
        """Where chance puts the query's scores in the set: the sample's median score and robust SD.

        None when the test does not need them (no fallback for this set, or a sample too small).
        Independent of the HNSW answer, so :meth:`_arows` computes them while the statement runs.
        """
        limit = self.settings.exact_fallback_max
        if limit <= 0 or sample.n > limit or len(sample.vectors) < 2:
            return None
        chance = _scores(q.metric, sample.vectors, np.asarray(vector, dtype=np.float32))
        # Median and MAD, not mean and standard deviation: the query's own neighbourhood is in the
        # sample too, and a dense one would inflate the spread that stands for chance.
        centre = _median(chance)
        return centre, 1.4826 * _median(np.abs(chance - centre))

    def _verdict(
        self, sample: SetSample, chance: tuple[float, float] | None, scores: Sequence[float], *, k: int
    ) -> bool:
        """:meth:`stands`, given the set's sample and :meth:`_chance`'s statistics of it."""
        limit = self.settings.exact_fallback_max
        if limit <= 0 or sample.n > limit:
            return True
        if len(scores) < k:
            # Fewer than k: a filter or dead objects, or a graph walk that ended early; only an
            # exact scan tells them apart, and the set is small enough for one.
            return sample.n <= len(scores)
        if chance is None:
            return True  # a sample of fewer than two vectors
        centre, sd = chance
        if not sd > 0.0:
            return True  # most vectors equally far: nothing to tell chance from structure by
        z = (min(scores) - centre) / sd
        return z >= math.sqrt(2.0 * math.log(max(sample.n, 2))) + self.settings.exact_fallback_margin

    def _cached_sample(self, q: PgVectorQuery) -> SetSample | None:
        """The set's cached sample (a new one read in the background when it is old); None if never read."""
        with self._samples_lock:
            found = self._samples.get(q.set_key)
            old = found is not None and self.timer() - found[1] >= SAMPLE_TTL
            refresh = old and q.set_key not in self._refreshing
            if refresh:
                self._refreshing.add(q.set_key)
        if found is None:
            return None
        if refresh:
            # Off the request path: reading a sample sorts the whole set (~100 ms at 100k vectors).
            self.spawn(lambda: self._refresh_sample(q))
        return found[0]

    def _refresh_sample(self, q: PgVectorQuery) -> None:
        try:
            self._load_sample(q)
        except Exception as exc:  # the old sample keeps serving; the next search past its age retries
            log.warning("refreshing the exact fallback's sample of %s failed: %r", q.set_key[1:], exc)
        finally:
            with self._samples_lock:
                self._refreshing.discard(q.set_key)

    def _load_sample(self, q: PgVectorQuery) -> SetSample:
        """:meth:`_read_sample` on a connection of the engine's own."""
        with db.reading(self.engine) as conn:
            return self._read_sample(_driver(conn), q)

    def _read_sample(self, conn: psycopg.Connection[Any], q: PgVectorQuery) -> SetSample:
        """Count the set (up to the fallback's cap) and sample it on ``conn``; cached for later searches."""
        cap = self.settings.exact_fallback_max
        # Counted no further than the cap: a set too large to fall back costs no more than that.
        counted = conn.execute(q.count_sql, {**q.params, "cap": cap + 1}).fetchone()
        n = int(counted[0]) if counted is not None else 0
        if n > cap:
            sample = SetSample(n, np.zeros((0, q.dims), dtype=np.float32))
        else:
            rows = conn.execute(q.sample_sql, q.params).fetchall()
            vectors: Any = np.array([r[0] for r in rows], dtype=np.float32).reshape(len(rows), q.dims)
            if q.metric == "cosine":  # normalised once here, not on every search
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                vectors = (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)
            sample = SetSample(n, vectors)
        with self._samples_lock:
            self._samples[q.set_key] = (sample, self.timer())
        return sample

    def query(
        self, tenant: str, vector: Sequence[float], *, k: int, where: VectorFilter
    ) -> PgVectorQuery | None:
        """The statements a search runs and their parameters (None: the tenant has no vectors yet).

        Public so the benchmark can time the very statements the API runs, without the API.
        """
        dims = len(vector)
        if where.namespace is not None:
            space = self.space(tenant, where.namespace)
            if space is None:
                return None
            check_dims(space, dims, where.namespace)
            return self._plan(tenant, vector, k=k, where=where, metric=space.metric)
        found = self._known_spaces(tenant, dims) or self._read_tenant_spaces(tenant)
        if not found:
            return None
        return self._plan(tenant, vector, k=k, where=where, metric=_metric_of(found, dims))

    def _known_spaces(self, tenant: str, dims: int) -> tuple[tuple[int, str], ...] | None:
        """The tenant's cached pairs if they hold the query's dimension; None: read them again."""
        found = self._tenant_spaces.get(tenant)
        return found if found is not None and any(d == dims for d, _ in found) else None

    def _read_tenant_spaces(self, tenant: str) -> tuple[tuple[int, str], ...]:
        with db.reading(self.engine) as conn:
            rows = conn.execute(
                text("SELECT DISTINCT dims, metric FROM vector_spaces WHERE tenant_id = :t"),
                {"t": tenant},
            ).all()
        return self._remember_tenant(tenant, rows)

    def _remember_tenant(self, tenant: str, rows: Sequence[Any]) -> tuple[tuple[int, str], ...]:
        found = tuple(sorted((int(d), str(m)) for d, m in rows))
        if len(self._tenant_spaces) >= 100_000:
            self._tenant_spaces.clear()
        if found:
            self._tenant_spaces[tenant] = found
        return found

    def _plan(
        self, tenant: str, vector: Sequence[float], *, k: int, where: VectorFilter, metric: str
    ) -> PgVectorQuery:
        """The statements for a query of ``metric`` (the searched space's, already looked up)."""
        check_direction(vector, metric, "vector")
        dims = len(vector)
        op = OPS[metric][0]
        conds = [f"dims = {dims}", f"metric = '{metric}'", "tenant_id = %(tenant)s"]
        params: dict[str, Any] = {
            "tenant": tenant,
            # Binary on the wire (register_vector_dumper): 4 bytes a float, nothing to format or parse.
            "q": Vector(vector if isinstance(vector, list) else list(vector)),
            "k": k,
            "inline": self.inline_threshold,
            "now": self.clock(),
        }
        if where.namespace is not None:
            conds.append("namespace = %(namespace)s")
            params["namespace"] = where.namespace
        if where.tags:
            conds.append("tags @> CAST(%(tags)s AS jsonb)")
            params["tags"] = json.dumps(dict(where.tags))
        if where.content_type is not None:
            conds.append("content_type = %(content_type)s")
            params["content_type"] = where.content_type
        if where.classification is not None:
            conds.append("classification = %(classification)s")
            params["classification"] = where.classification
        base = " AND ".join(conds[:4] if where.namespace is not None else conds[:3])
        filters = " AND ".join(conds)
        # A search of every namespace proves the metric it was planned with in its own round trip.
        guard = (
            ""
            if where.namespace is not None
            else f", (SELECT count(DISTINCT metric) FROM vector_spaces WHERE tenant_id = %(tenant)s"
            f" AND dims = {dims}) AS metrics"
        )

        live = (
            "o.tenant_id = %(tenant)s AND o.state = 'live'"
            " AND (o.expires_at IS NULL OR o.expires_at > %(now)s)"
        )

        head = (
            "SELECT v.object_id, v.chunk_id, v.span_start, v.span_end, v.distance, o.namespace, o.key,"
            " o.version, o.size, o.sha256, o.content_type, o.tags, o.classification, o.created_at,"
            f" CASE WHEN o.size < %(inline)s THEN o.inline_data END AS inline_data{guard}"
        )
        nearest = "SELECT object_id, chunk_id, span_start, span_end, {d} AS distance FROM object_vectors x"
        alive = f"EXISTS (SELECT 1 FROM objects o WHERE o.id = {{v}}.object_id AND {live})"
        facts = f" JOIN objects o ON o.id = v.object_id AND {live} ORDER BY v.distance"
        # The k nearest of the live objects, then those objects' facts, in one round trip (the
        # catalog is this database). Liveness counts before the k are taken: an expired object
        # keeps its vectors until the sweep purges it, and dropped after the LIMIT it would take a
        # slot that a live neighbour further down should have.
        hnsw = f"embedding::vector({dims}) {op} CAST(%(q)s AS vector({dims}))"
        exact = f"embedding {op} CAST(%(q)s AS vector)"
        # The index's walk tests each row it yields (with iterative scans on, it walks on past the
        # rows the test drops): a few index probes.
        sql = (
            f"{head} FROM ({nearest.format(d=hnsw)} WHERE {filters} AND {alive.format(v='x')}"
            f" ORDER BY {hnsw} LIMIT %(k)s) v{facts}"
        )
        # A scan tested row by row would probe every row of the set before its sort (+50% at 30k).
        # So the scan keeps its top-N sort of 4k rows and tests those; the rare answer short of k
        # (a set that small, or that many dead rows among the nearest) is asked again by exact_all_sql.
        exact_sql = (
            f"{head} FROM ({nearest.format(d=exact)} WHERE {filters} ORDER BY {exact} LIMIT 4 * %(k)s) v"
            f"{facts} LIMIT %(k)s"
        )
        # Every row sorted (a full sort: +18% at 30k), then tested in order until k are live.
        exact_all_sql = (
            f"{head} FROM (SELECT * FROM ({nearest.format(d=exact)} WHERE {filters} OFFSET 0) s"
            f" WHERE {alive.format(v='s')} ORDER BY s.distance LIMIT %(k)s) v{facts}"
        )

        return PgVectorQuery(
            # The HNSW index's own expression: the planner walks the index.
            sql=sql,
            # Without the typmod cast the expression is not the index's: a scan of the set (by the
            # tenant/namespace b-tree when the set is a small part of the table), then a sort.
            exact_sql=exact_sql,
            exact_all_sql=exact_all_sql,
            count_sql=f"SELECT count(*) FROM (SELECT 1 FROM object_vectors WHERE {base} LIMIT %(cap)s) s",
            # The cast outside the sort: only the sampled rows are converted. The order is a hash
            # of the row's id, not random(): every process (every API replica) then draws the same
            # sample of the same set, and so takes the same fallback decisions and gives the same
            # answers; with random() two processes could answer one query one with the graph's
            # hits, one with the exact scan's.
            sample_sql=(
                f"SELECT embedding::real[] AS v FROM (SELECT embedding FROM object_vectors"
                f" WHERE {base} ORDER BY hashint8extended(id, 0), id LIMIT {SAMPLE_SIZE}) s"
            ),
            params=params,
            metric=metric,
            dims=dims,
            set_key=(tenant, where.namespace, dims, metric),
            guarded=where.namespace is None,
        )


def _unproven(q: PgVectorQuery, rows: Sequence[Any]) -> bool:
    """Whether a search of every namespace must read the tenant's spaces again before it answers:
    its rows say the query's dimension now has several metrics (another process added one since
    this one cached the pairs it planned from), or no rows came back to say anything."""
    return q.guarded and (not rows or rows[0].metrics > 1)


def _metric_of(found: Sequence[tuple[int, str]], dims: int) -> str:
    """The metric of a tenant's ``dims``-dimensional spaces (``found``: all its (dims, metric) pairs).

    Raises:
        DimensionMismatch: no space of that dimension.
        InvalidInput: spaces of that dimension with different metrics (the caller names a namespace).
    """
    metrics = sorted({m for d, m in found if d == dims})
    if not metrics:
        have = ", ".join(sorted({str(d) for d, _ in found}))
        raise DimensionMismatch(
            f"vector has {dims} dimensions but this tenant's embeddings have {have};"
            " embed with the same model",
            field="vector",
        )
    if len(metrics) > 1:
        raise InvalidInput(
            f"{dims}-dimensional embeddings of this tenant use several metrics ({', '.join(metrics)});"
            " name a namespace",
            field="namespace",
        )
    return metrics[0]


def _hnsw_settings(ef: int, *, local: bool) -> str:
    """The session (or, ``local``, transaction) settings of an HNSW search: literals, validated ints."""
    scope = "SET LOCAL " if local else "SET "
    return f"{scope}hnsw.ef_search = {int(ef)}; {scope}hnsw.iterative_scan = strict_order"


def _json_loads(data: bytes | bytearray | memoryview | str) -> Any:
    """jsonb as orjson reads it (tags of ten hits, several times faster), json's reading as a fallback.

    orjson refuses a few things PostgreSQL's jsonb holds, such as integers past 64 bits.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)


def _scores(metric: str, sample: Any, query: Any) -> Any:
    """Higher-is-closer scores of a sample's rows against ``query``, as :func:`_score` gives pgvector's.

    For ``cosine`` the sample's rows are already unit length (:meth:`PgVectorIndex._sample`).
    """
    if metric == "cosine":
        # np.linalg.norm's own arithmetic for a 1-D array (the same float32 bits) without its
        # argument handling: ~20 µs a search, cache-cold, against ~3.
        norm = float(np.sqrt(query.dot(query)))
        return (sample @ query) / (norm if norm > 0 else 1.0)
    if metric == "ip":
        return sample @ query
    return -np.linalg.norm(sample - query, axis=1)


def _median(values: Any) -> float:
    """The median by one partial sort (``np.median`` without its generality)."""
    n = len(values)
    half = n // 2
    if n % 2:
        return float(np.partition(values, half)[half])
    part = np.partition(values, (half - 1, half))
    return float(part[half - 1] + part[half]) / 2.0


def register_vector_dumper(conn: psycopg.Connection[Any]) -> None:
    """Send :class:`pgvector.Vector` parameters to ``conn`` as binary ``vector`` values.

    Only the dumper: pgvector's ``register_vector`` also installs loaders, which would change what
    SQLAlchemy reads from ``vector`` columns on the same pooled connection.
    """
    info = TypeInfo.fetch(conn, "vector")
    if info is None:
        raise psycopg.ProgrammingError("the vector type is not in this database: CREATE EXTENSION vector")
    conn.adapters.register_dumper(Vector, type("VectorDumper", (VectorBinaryDumper,), {"oid": info.oid}))


def _driver(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy one, able to send query vectors (once per connection)."""
    raw: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    if not conn.info.get("liquid_vector_dumper"):
        register_vector_dumper(raw)
        conn.info["liquid_vector_dumper"] = True
    return raw
