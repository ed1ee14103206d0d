"""The event log read in export order, as Arrow batches, over one persistent ADBC connection.

Why each choice (measured on 1M events, ``benchmarks/event_export.py``; PostgreSQL 18):

* **No sort, ever.** ``events`` is partitioned by month, and each partition has its own
  ``(txid, id)`` index. The planner estimates a row comparison ``(txid, id) > (t, i)`` at
  a handful of rows, so it chose *Append + Sort*: every batch read and sorted (on disk)
  every event past the watermark, only to keep the first ``batch_size`` — quadratic in the
  backlog (0.9 s per 50k-event batch at 500k behind). Each read runs in a transaction of its
  own with ``enable_sort = off`` set for that transaction alone (``set_config(..., true)``),
  which leaves the planner one plan: *Merge Append* of the partitions' index scans, each
  starting at the watermark, stopping after the batch (55 ms for the same batch). Nothing
  else is affected, and a transaction-mode pooler (PgBouncer, which refuses the ``options``
  startup parameter and may hand the next transaction another server session) keeps it too.
* **Plain columns.** ``coalesce()`` per column and ``data::text`` made the server project
  every row (125 ms against 85 ms per 50k rows, server side); NULLs are filled here in
  Arrow instead, and ``jsonb`` arrives as its text.
* **Streamed.** A query without bind parameters goes out as ``COPY (...) TO STDOUT
  (FORMAT binary)``, which ADBC decodes while the server still sends; bound parameters
  make libpq buffer the whole result first (370 ms against 540 ms per 50k rows). The
  parameters are integers, written into the SQL with ``int()``.
* **One connection** for all the batches of a run, opened on first use and closed by
  :meth:`close` (each read's transaction ends with the read: no snapshot is held between
  batches). A kept connection that broke between batches is replaced once, transparently;
  it shows in ``pg_stat_activity`` as ``liquid-event-reader``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from liquid.events.clickhouse import EVENT_COLUMNS

#: Exactly the columns ClickHouse's ``events`` has, in its order, typed as it stores them.
ARROW_SCHEMA = pa.schema(
    [
        ("id", pa.uint64()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("txid", pa.uint64()),
        ("tenant_id", pa.string()),
        ("kind", pa.string()),
        ("object_id", pa.uint64()),
        ("namespace", pa.string()),
        ("key", pa.string()),
        ("version", pa.uint32()),
        ("actor", pa.string()),
        ("tier", pa.string()),
        ("from_tier", pa.string()),
        ("bytes", pa.int64()),
        ("count", pa.int64()),
        ("latency_ms", pa.float64()),
        ("trace_id", pa.string()),
        ("correlation_id", pa.string()),
        ("execution_id", pa.string()),
        ("data", pa.string()),
    ]
)
assert tuple(ARROW_SCHEMA.names) == EVENT_COLUMNS

#: Columns ClickHouse keeps as ``Nullable``; every other NULL becomes the type's empty value.
_NULLABLE = frozenset({"object_id", "version", "latency_ms"})
_SELECT = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events "
#: The reader's name in ``pg_stat_activity``.
APPLICATION_NAME = "liquid-event-reader"
#: The read's own planner setting, undone when its transaction ends.
NO_SORT = "SELECT set_config('enable_sort', 'off', true)"


def reader_url(url: str) -> str:
    """``url`` (a libpq URI) naming the reader's connection for operators."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "application_name"]
    query.append(("application_name", APPLICATION_NAME))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


class PostgresEventReader:
    """Reads ranges of the event log in ``(txid, id)`` order as Arrow tables of :data:`ARROW_SCHEMA`.

    Args:
        url: a libpq URI of the catalog (``postgresql://...``).
    """

    def __init__(self, url: str) -> None:
        self.url = reader_url(url)
        self._conn: Any = None
        self.reads = 0

    def __repr__(self) -> str:
        return f"PostgresEventReader(reads={self.reads}, open={self._conn is not None})"

    def after(self, txid: int, event_id: int, *, horizon: int, limit: int) -> pa.Table:
        """At most ``limit`` events past ``(txid, event_id)`` whose transaction is below ``horizon``."""
        return self._read(self.query_after(txid, event_id, horizon=horizon, limit=limit))

    @staticmethod
    def query_after(txid: int, event_id: int, *, horizon: int, limit: int) -> str:
        """The SQL of :meth:`after` (the values are integers, written in with ``int()``)."""
        return (
            f"{_SELECT}WHERE (txid, id) > ({int(txid)}, {int(event_id)}) AND txid < {int(horizon)}"
            f" ORDER BY txid, id LIMIT {int(limit)}"
        )

    def between(self, start: tuple[int, int], end: tuple[int, int]) -> pa.Table:
        """The events past ``start`` up to and including ``end``."""
        (t0, i0), (t1, i1) = start, end
        return self._read(
            f"{_SELECT}WHERE (txid, id) > ({int(t0)}, {int(i0)}) AND (txid, id) <= ({int(t1)}, {int(i1)})"
            " ORDER BY txid, id"
        )

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connection(self) -> Any:
        if self._conn is None:
            import adbc_driver_postgresql.dbapi as adbc  # imported on first use: the CLI starts faster

            self._conn = adbc.connect(self.url, autocommit=False)
        return self._conn

    def _read(self, sql: str) -> pa.Table:
        kept = self._conn is not None
        try:
            return self._fetch(sql)
        except Exception:
            self.close()
            if not kept:
                raise
        # A kept connection can die between batches (a server restart, an idle timeout):
        # once more on a new one; a second failure is the server's answer.
        try:
            return self._fetch(sql)
        except Exception:
            self.close()
            raise

    def in_transaction(self, sql: str) -> pa.Table:
        """``sql``'s rows, read as every batch is: in a transaction of its own, without sorts."""
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.execute(NO_SORT)
                cur.fetchall()
                cur.execute(sql)
                table: pa.Table = cur.fetch_arrow_table()
        finally:
            conn.rollback()  # a read: ending its transaction ends the setting and the snapshot
        return table

    def _fetch(self, sql: str) -> pa.Table:
        table = self.in_transaction(sql)
        self.reads += 1
        return _conform(table)


def _conform(table: pa.Table) -> pa.Table:
    """The rows as ClickHouse stores them: NULLs filled where it has none, its integer types."""
    columns = []
    for field in ARROW_SCHEMA:
        column = table.column(field.name)
        if isinstance(column.type, pa.ExtensionType):  # jsonb arrives as arrow.json over text
            storage = column.type.storage_type
            column = pa.chunked_array([chunk.storage for chunk in column.chunks], type=storage)
        if field.name not in _NULLABLE and column.null_count:
            column = pc.fill_null(column, "" if pa.types.is_string(field.type) else 0)
        columns.append(column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=ARROW_SCHEMA)
