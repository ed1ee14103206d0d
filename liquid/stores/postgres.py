"""PostgresStore: the warm tier's bytes as chunked ``bytea`` rows in PostgreSQL.

URL: ``postgresql://user:pw@host:port/db?schema=liquid&chunk_size=1MiB&pool_size=4&timeout=60&acquire_timeout=10&pooler=none``
(``postgresql+psycopg://`` is accepted, so the catalog's SQLAlchemy URL works as is;
other query options, e.g. ``host=/socket/dir`` or ``sslmode``, go to libpq).
``timeout`` (seconds, default 60, 0 for none) bounds every statement on the server
(``statement_timeout``) and unacknowledged TCP sends (``tcp_user_timeout``), so a call
never waits forever on a stuck server or a lock. Connections come from a
``psycopg_pool`` pool of ``pool_size``; a call that finds none free within
``acquire_timeout`` seconds (default 10) fails with a StoreError instead of queueing
forever, and each connection is checked before use, so one left broken by a server
restart is replaced, not handed out.

``pooler=transaction``: the URL points at PgBouncer (or another pooler) in transaction mode,
where consecutive transactions may run on different server sessions. Statements are then not
prepared, ``timeout`` is set per transaction (``SET LOCAL``) instead of as a startup option
(PgBouncer refuses those), so single-statement reads are bounded by ``tcp_user_timeout`` and
the pooler's ``query_timeout`` only; ``schema`` is refused (it is a session setting).

Each object is one ``liquid_blobs`` row plus ``ceil(size / chunk_size)`` rows of
``liquid_blob_chunks``, so neither a write nor a read ever holds more than a chunk
of a large object in memory, and a range read selects only the chunks it needs.

Atomicity: a put runs in one transaction that first upserts the blob row (taking its
row lock, which serialises concurrent writers of one locator), then replaces the
chunks; readers use a REPEATABLE READ snapshot, so they see the old version or the
new one, never a mix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import quote, urlencode, urlunsplit

import psycopg
from psycopg import IsolationLevel, sql
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from liquid.catalog.liveness import live_connection
from liquid.errors import InvalidInput, ObjectNotFound, StoreError
from liquid.stores._common import Options, public_url
from liquid.stores.base import CHUNK_SIZE, ObjectStat, check_locator, check_range, rechunk

#: Idempotent DDL for the two tables; the catalog's Alembic migration executes it too.
SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS liquid_blobs (
    locator    text PRIMARY KEY,
    size       bigint NOT NULL,
    chunk_size int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS liquid_blob_chunks (
    locator text NOT NULL,
    seq     int NOT NULL,
    data    bytea NOT NULL,
    PRIMARY KEY (locator, seq)
);
-- Chunks are mostly compressed or binary data: skip TOAST compression, which only costs CPU.
ALTER TABLE liquid_blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
"""

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_LIST_BATCH = 1000
#: Default ``timeout`` option, in seconds.
DEFAULT_TIMEOUT = 60
#: Default ``acquire_timeout`` option: longest wait for a free pooled connection, in seconds.
DEFAULT_ACQUIRE_TIMEOUT = 10


class PostgresStore:
    """Chunked blobs in two PostgreSQL tables (see :data:`SCHEMA_SQL`)."""

    def __init__(
        self,
        url: str,
        *,
        chunk_size: int | None = None,
        pool_size: int | None = None,
        schema: str | None = None,
    ) -> None:
        """Args:
        url: ``postgresql[+psycopg]://...``; options ``schema``, ``chunk_size``, ``pool_size``,
            ``timeout``.
        chunk_size: bytes per chunk row for new objects (existing ones keep theirs).
        pool_size: most connections held at once.
        schema: put the tables in this schema instead of the search_path's first.
        """
        opts = Options(url, "postgresql")
        scheme = opts.parts.scheme
        if scheme not in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
            raise InvalidInput(
                f"postgres store URL must start with postgresql://, got {scheme}://", field="url"
            )
        self.schema = schema or opts.text("schema")
        if self.schema is not None and not _IDENT.match(self.schema):
            raise InvalidInput(
                f"postgres store schema {self.schema!r} is not a plain identifier", field="url"
            )
        self.chunk_size = chunk_size or opts.size("chunk_size", CHUNK_SIZE)
        if not 0 < self.chunk_size <= 256 * 1024 * 1024:
            raise InvalidInput(
                f"postgres store chunk_size {self.chunk_size} must be in 1..256MiB", field="url"
            )
        size = pool_size or opts.number("pool_size", 4) or 4
        self.timeout = opts.number("timeout", DEFAULT_TIMEOUT) or 0
        acquire = opts.number("acquire_timeout", DEFAULT_ACQUIRE_TIMEOUT)
        if not acquire:
            raise InvalidInput("postgres store acquire_timeout must be at least 1 second", field="url")
        self.acquire_timeout: float = acquire
        self.pooler = opts.text("pooler", "none") or "none"
        if self.pooler not in ("none", "transaction"):
            raise InvalidInput(
                f"postgres store pooler must be none or transaction, got {self.pooler!r}", field="url"
            )
        if self.pooler == "transaction" and self.schema:
            raise InvalidInput(
                f"postgres store schema={self.schema} needs a session setting (search_path), which a"
                " transaction-mode pooler does not keep: connect directly or through a session-mode pool,"
                " or drop schema= and set the role's search_path (ALTER ROLE ... SET search_path)",
                field="url",
            )
        p = opts.parts
        libpq = opts.rest()
        libpq.setdefault("connect_timeout", "10")  # libpq waits forever by default
        if self.timeout:
            ms = str(self.timeout * 1000)
            if self.pooler == "none":
                libpq["options"] = f"{libpq.get('options', '')} -c statement_timeout={ms}".strip()
            # else PgBouncer refuses the options startup parameter; transactions SET LOCAL it (_conn).
            libpq.setdefault("tcp_user_timeout", ms)
        # quote, not quote_plus: libpq does not read "+" as a space in the options value.
        conninfo = urlunsplit(("postgresql", p.netloc, p.path, urlencode(libpq, quote_via=quote), ""))
        self._conninfo = conninfo
        host = p.hostname or ""
        netloc = (f"{p.username}@" if p.username else "") + host + (f":{p.port}" if p.port else "")
        self.url = public_url(
            urlunsplit(("postgresql", netloc, p.path, "", "")), {"schema": self.schema or ""}
        )
        self.pool_size = size
        # Autocommit: a lone statement is one round trip; multi-statement work opens
        # conn.transaction() explicitly (see _conn). min_size=0: no connection before the first call.
        self._pool: ConnectionPool[psycopg.Connection[TupleRow]] = ConnectionPool(
            conninfo,
            min_size=0,
            max_size=size,
            # Behind a transaction pooler a prepared statement may be gone by the next transaction.
            kwargs={"autocommit": True, "prepare_threshold": None if self.pooler == "transaction" else 5},
            configure=self._configure,
            # No check= hook: :meth:`_connection` polls each connection's socket instead (liveness).
            timeout=self.acquire_timeout,
            name=f"liquid-pg-store-{self.schema or 'public'}",
            open=True,
        )

    def _configure(self, conn: psycopg.Connection[TupleRow]) -> None:
        if self.schema:
            conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(self.schema)))

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[TupleRow]]:
        if self._pool.closed:
            raise StoreError(f"postgres store {self.url} is closed")
        try:
            with live_connection(self._pool, self.pool_size) as conn:
                yield conn
        except PoolTimeout as exc:
            reason = self._connect_error() if self._pool.get_stats().get("connections_errors") else None
            if reason is not None:  # not busy: connections fail. Say why, not "all in use".
                raise StoreError(f"postgres store {self.url}: cannot connect: {reason}") from exc
            raise StoreError(
                f"postgres store {self.url}: no connection free within {self.acquire_timeout:g}s"
                f" (all {self.pool_size} in use; raise pool_size or acquire_timeout)"
            ) from exc

    def _connect_error(self) -> str | None:
        """Why a direct connection attempt fails (the pool only logs its failures), or None if it works."""
        try:
            # Briefly: the caller already waited acquire_timeout for the pool.
            psycopg.connect(self._conninfo, autocommit=True, connect_timeout=2).close()
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            if "unsupported startup parameter" in reason:
                reason += " (a transaction-mode pooler such as PgBouncer: add pooler=transaction to the URL)"
            return reason
        return None

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"

    @contextmanager
    def _conn(
        self, what: str, isolation: IsolationLevel | None = None
    ) -> Iterator[psycopg.Connection[TupleRow]]:
        """A pooled connection inside one transaction; psycopg errors become StoreError."""
        try:
            with self._connection() as conn:
                conn.isolation_level = isolation
                with conn.transaction():
                    if self.pooler == "transaction" and self.timeout:
                        conn.execute(f"SET LOCAL statement_timeout = {int(self.timeout * 1000)}")
                    yield conn
        except psycopg.Error as exc:
            raise StoreError(f"postgres store {self.url}: {what} failed: {exc}".rstrip()) from exc

    @contextmanager
    def _single(self, what: str) -> Iterator[psycopg.Connection[TupleRow]]:
        """A pooled connection for one statement (its own snapshot, no BEGIN/COMMIT round trips)."""
        try:
            with self._connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise StoreError(f"postgres store {self.url}: {what} failed: {exc}".rstrip()) from exc

    def create_schema(self) -> None:
        """Create the schema (when one is configured) and both tables, idempotently."""
        with self._conn("create_schema") as conn:
            # Concurrent CREATE ... IF NOT EXISTS can still collide in pg_type; serialise it.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('liquid_blobs_schema'))")
            if self.schema:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            conn.execute(SCHEMA_SQL.encode())

    def drop_schema(self) -> None:
        """Drop the configured schema with everything in it (tests and teardown)."""
        if not self.schema:
            raise InvalidInput("drop_schema needs a store opened with ?schema=NAME", field="url")
        with self._conn("drop_schema") as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))

    def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
        """Replace the object in one transaction, one INSERT per chunk."""
        check_locator(locator)
        written = 0
        with self._conn(f"put {locator!r}") as conn:
            # The upsert locks the blob row first, so a second writer of this locator waits here.
            conn.execute(
                "INSERT INTO liquid_blobs (locator, size, chunk_size, created_at) VALUES (%s, 0, %s, now())"
                " ON CONFLICT (locator) DO UPDATE SET size = 0, chunk_size = EXCLUDED.chunk_size,"
                " created_at = now()",
                (locator, self.chunk_size),
            )
            conn.execute("DELETE FROM liquid_blob_chunks WHERE locator = %s", (locator,))
            with conn.cursor() as cur:
                for seq, chunk in enumerate(rechunk(chunks, self.chunk_size)):
                    cur.execute(
                        "INSERT INTO liquid_blob_chunks (locator, seq, data) VALUES (%s, %s, %b)",
                        (locator, seq, chunk),
                    )
                    written += len(chunk)
            conn.execute("UPDATE liquid_blobs SET size = %s WHERE locator = %s", (written, locator))
        return written

    def open(self, locator: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Look the blob up now (missing → ObjectNotFound), then stream only the needed chunks."""
        check_locator(locator)
        check_range(start, end)
        fast = self._open_small(locator, start, end)
        if fast is not None:
            return fast
        with self._single(f"open {locator!r}") as conn:
            row = conn.execute("SELECT size FROM liquid_blobs WHERE locator = %s", (locator,)).fetchone()
        if row is None:
            raise ObjectNotFound(f"no object {locator!r} in {self.url}")
        stop = int(row[0]) if end is None else min(end, int(row[0]))
        if start >= stop:
            return iter(())
        return self._stream(locator, start, end)

    #: Windows of at most this many chunks are read in one statement.
    SMALL_READ_CHUNKS = 4

    def _open_small(self, locator: str, start: int, end: int | None) -> Iterator[bytes] | None:
        """Read a window of a few chunks in one statement (one snapshot, one round trip).

        Returns None when the window turns out larger (or the blob uses another chunk size),
        and the caller takes the streaming path.
        """
        cs = self.chunk_size
        first = start // cs
        last = first + self.SMALL_READ_CHUNKS - 1
        if end is not None and end > start:
            if (end - 1) // cs > last:
                return None
            last = (end - 1) // cs
        with self._single(f"open {locator!r}") as conn:
            rows = conn.execute(
                "SELECT b.size, b.chunk_size, c.seq, c.data FROM liquid_blobs b"
                " LEFT JOIN liquid_blob_chunks c ON c.locator = b.locator AND c.seq BETWEEN %s AND %s"
                " WHERE b.locator = %s ORDER BY c.seq",
                (first, last, locator),
                binary=True,  # bytea as is: in text form it travels and is decoded as hex, twice the bytes
            ).fetchall()
        if not rows:
            raise ObjectNotFound(f"no object {locator!r} in {self.url}")
        size, blob_cs = int(rows[0][0]), int(rows[0][1])
        stop = size if end is None else min(end, size)
        if start >= stop:
            return iter(())
        if blob_cs != cs or (stop - 1) // cs > last:
            return None
        need = range(first, (stop - 1) // cs + 1)
        got = {int(seq): bytes(data) for _, _, seq, data in rows if seq is not None}
        missing = [seq for seq in need if seq not in got]
        if missing:
            raise StoreError(f"postgres store {self.url}: object {locator!r} misses chunk {missing[0]}")
        pieces = []
        for seq in need:
            data, base = got[seq], seq * cs
            lo, hi = max(start - base, 0), min(stop - base, len(data))
            pieces.append(data if (lo, hi) == (0, len(data)) else data[lo:hi])
        return iter(pieces)

    def _stream(self, locator: str, start: int, end: int | None) -> Iterator[bytes]:
        with self._conn(f"read {locator!r}", IsolationLevel.REPEATABLE_READ) as conn:
            # One snapshot for the blob row and every chunk: never a mix with a concurrent put.
            row = conn.execute(
                "SELECT size, chunk_size FROM liquid_blobs WHERE locator = %s", (locator,)
            ).fetchone()
            if row is None:
                raise StoreError(
                    f"postgres store {self.url}: object {locator!r} was deleted while being opened"
                )
            size, cs = int(row[0]), int(row[1])
            stop = size if end is None else min(end, size)
            if start >= stop:
                return
            first, last = start // cs, (stop - 1) // cs
            with conn.cursor(name="liquid_read", binary=True) as cur:
                cur.itersize = 2  # rows are up to a chunk each: hold few at a time
                cur.execute(
                    "SELECT seq, data FROM liquid_blob_chunks WHERE locator = %s AND seq BETWEEN %s AND %s"
                    " ORDER BY seq",
                    (locator, first, last),
                )
                expected = first
                for seq, data in cur:
                    if seq != expected:
                        raise StoreError(
                            f"postgres store {self.url}: object {locator!r} misses chunk {expected}"
                        )
                    expected += 1
                    base = seq * cs
                    lo, hi = max(start - base, 0), min(stop - base, len(data))
                    yield bytes(data) if (lo, hi) == (0, len(data)) else bytes(data[lo:hi])
                if expected != last + 1:
                    raise StoreError(f"postgres store {self.url}: object {locator!r} misses chunk {expected}")

    def head(self, locator: str) -> ObjectStat:
        """Size and write time from the blob row."""
        check_locator(locator)
        with self._single(f"head {locator!r}") as conn:
            row = conn.execute(
                "SELECT size, created_at FROM liquid_blobs WHERE locator = %s", (locator,)
            ).fetchone()
        if row is None:
            raise ObjectNotFound(f"no object {locator!r} in {self.url}")
        return ObjectStat(locator, int(row[0]), row[1])

    def delete(self, locator: str) -> bool:
        """Delete the blob row and its chunks in one transaction."""
        check_locator(locator)
        with self._conn(f"delete {locator!r}") as conn:
            cur = conn.execute("DELETE FROM liquid_blobs WHERE locator = %s", (locator,))
            conn.execute("DELETE FROM liquid_blob_chunks WHERE locator = %s", (locator,))
            return cur.rowcount > 0

    def delete_many(self, locators: Sequence[str]) -> None:
        """Delete many blobs and their chunks in one transaction (two statements)."""
        batch = [check_locator(locator) for locator in locators]
        if not batch:
            return
        with self._conn(f"delete {len(batch)} objects") as conn:
            conn.execute("DELETE FROM liquid_blobs WHERE locator = ANY(%s)", (batch,))
            conn.execute("DELETE FROM liquid_blob_chunks WHERE locator = ANY(%s)", (batch,))

    def list(self, prefix: str = "") -> Iterator[ObjectStat]:
        """Keyset-paginated scan in code-point order (COLLATE "C"), a batch per query."""
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ObjectStat]:
        after = ""
        while True:
            with self._single(f"list {prefix!r}") as conn:
                rows = conn.execute(
                    "SELECT locator, size, created_at FROM liquid_blobs WHERE starts_with(locator, %s)"
                    ' AND locator COLLATE "C" > %s ORDER BY locator COLLATE "C" LIMIT %s',
                    (prefix, after, _LIST_BATCH),
                ).fetchall()
            for loc, size, created in rows:
                yield ObjectStat(str(loc), int(size), created)
            if len(rows) < _LIST_BATCH:
                return
            after = str(rows[-1][0])

    def ping(self) -> None:
        """Run ``SELECT 1``."""
        with self._single("ping") as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        """Close pooled connections."""
        self._pool.close()
