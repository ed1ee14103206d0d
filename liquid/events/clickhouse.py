"""The ClickHouse side of the event log: versioned DDL, and the SQL both transports share.

Tables (database ``liquid`` by default):

* ``events`` — one row per exported event, ``MergeTree`` partitioned by month and ordered
  by ``(tenant_id, at, id)`` for tenant/time queries. It keeps the deduplication window of
  recent insert tokens (``non_replicated_deduplication_window``): the exporter inserts each
  batch with a token naming its event range, and a batch written again after a crash is
  dropped whole (see :mod:`liquid.events.export`).
* ``usage_daily`` — ``SummingMergeTree`` per day, tenant, namespace and tier: objects and
  bytes written, purged, moved in and out, and reads. A materialized view fills it from
  each inserted block of ``events``. A replayed block must not reach it twice: the insert
  sets ``deduplicate_blocks_in_dependent_materialized_views`` and the rollup table keeps its
  own token window, so the rollup counts every event once (the crash test checks it).
  Bytes stored on a day are the running sum of ``bytes_in - bytes_out`` up to it; cost is
  that times the tier's price (the cost model, applied at query time so a price change needs no backfill).

Migrations are numbered; ``schema_migrations`` in the same database records those applied.
"""

from __future__ import annotations

import re

from liquid.events.log import COLUMNS

#: (version, statements). Append only: a released migration is never edited.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE IF NOT EXISTS {db}.events (
                id UInt64,
                at DateTime64(6, 'UTC'),
                txid UInt64,
                tenant_id LowCardinality(String),
                kind LowCardinality(String),
                object_id Nullable(UInt64),
                namespace LowCardinality(String),
                key String,
                version Nullable(UInt32),
                actor String,
                tier LowCardinality(String),
                from_tier LowCardinality(String),
                bytes Int64,
                count Int64,
                latency_ms Nullable(Float64),
                trace_id String,
                correlation_id String,
                execution_id String,
                data String
            ) ENGINE = MergeTree
            PARTITION BY toYYYYMM(at)
            ORDER BY (tenant_id, at, id)
            SETTINGS non_replicated_deduplication_window = 1000
            """,
            """
            CREATE TABLE IF NOT EXISTS {db}.usage_daily (
                day Date,
                tenant_id LowCardinality(String),
                namespace LowCardinality(String),
                tier LowCardinality(String),
                writes Int64,
                bytes_written Int64,
                reads Int64,
                purges Int64,
                bytes_purged Int64,
                moves_in Int64,
                bytes_moved_in Int64,
                moves_out Int64,
                bytes_moved_out Int64,
                bytes_in Int64,
                bytes_out Int64
            ) ENGINE = SummingMergeTree
            PARTITION BY toYYYYMM(day)
            ORDER BY (tenant_id, namespace, tier, day)
            SETTINGS non_replicated_deduplication_window = 1000
            """,
            # A move counts once for its destination (in) and once for its source (out):
            # arrayJoin makes the source row.
            """
            CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_daily_mv TO {db}.usage_daily AS
            SELECT
                day, tenant_id, namespace, side_tier AS tier,
                sum(dir = 'in' AND kind = 'object.created') AS writes,
                sum(if(dir = 'in' AND kind = 'object.created', bytes, 0)) AS bytes_written,
                sum(if(dir = 'in' AND kind = 'object.read', count, 0)) AS reads,
                sum(dir = 'in' AND kind = 'object.purged') AS purges,
                sum(if(dir = 'in' AND kind = 'object.purged', bytes, 0)) AS bytes_purged,
                sum(dir = 'in' AND kind = 'object.moved') AS moves_in,
                sum(if(dir = 'in' AND kind = 'object.moved', bytes, 0)) AS bytes_moved_in,
                sum(dir = 'out') AS moves_out,
                sum(if(dir = 'out', bytes, 0)) AS bytes_moved_out,
                sum(if(dir = 'in' AND kind IN ('object.created', 'object.moved'), bytes, 0)) AS bytes_in,
                sum(if((dir = 'in' AND kind = 'object.purged') OR dir = 'out', bytes, 0)) AS bytes_out
            FROM (
                SELECT toDate(at) AS day, tenant_id, namespace, kind, bytes, count,
                       side.1 AS side_tier, side.2 AS dir
                FROM {db}.events
                ARRAY JOIN if(kind = 'object.moved', [(tier, 'in'), (from_tier, 'out')], [(tier, 'in')])
                    AS side
                WHERE kind IN ('object.created', 'object.read', 'object.purged', 'object.moved')
            )
            GROUP BY day, tenant_id, namespace, side_tier
            """,
        ),
    ),
)

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, applied_at DateTime DEFAULT now())
ENGINE = MergeTree ORDER BY version
"""

#: Columns of ``events`` in insert order (the exporter's Arrow batches have exactly these).
EVENT_COLUMNS: tuple[str, ...] = ("id", COLUMNS[0], "txid", *COLUMNS[1:])

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_database(name: str) -> str:
    if not _DB_NAME.match(name):
        raise ValueError(f"ClickHouse database name must be letters, digits and _, got {name!r}")
    return name


def migration_statements(db: str, applied: set[int]) -> list[tuple[int, list[str]]]:
    """The migrations not applied yet, each as its statements for database ``db``."""
    return [
        (version, [s.format(db=db).strip() for s in statements])
        for version, statements in MIGRATIONS
        if version not in applied
    ]
