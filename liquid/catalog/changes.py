"""The tiering change feed: ids of objects whose placement facts changed since the planner last looked.

Every writer that changes what the planner knows about an object — a new version, a
flushed read, a move, a delete, an expiry, a purge, a finished execution — adds the
object's id to ``tiering_changes`` in its own transaction, through this module. The
leader daemon drains the set each cycle (:func:`drain`) and re-reads only those objects,
so a cycle costs what changed, not the size of the catalog.

The table is a set (one row per object, however often it changed) and ``UNLOGGED``:
writing it costs no WAL on the request path. A PostgreSQL crash empties it, but it also
changes the server's start time, which the leader sees when it renews its lease
(:mod:`liquid.tiering.leader`) and answers with a rebuild from a full scan, as does a
daemon that becomes leader; so nothing is missed.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, Engine, text

from liquid.catalog import partitions

TABLE = "tiering_changes"

#: SQL to add the ids of a CTE or subquery (``SELECT id ...``) to the feed: ``MARK.format(select)``.
MARK = "INSERT INTO tiering_changes (object_id) {} ON CONFLICT DO NOTHING"

_MARK_IDS = text(
    "INSERT INTO tiering_changes (object_id) SELECT unnest(CAST(:ids AS bigint[])) ON CONFLICT DO NOTHING"
)
_DRAIN = text(
    "DELETE FROM tiering_changes WHERE object_id IN"
    " (SELECT object_id FROM tiering_changes LIMIT :n FOR UPDATE SKIP LOCKED) RETURNING object_id"
)


def mark_changed(conn: Connection, object_ids: Iterable[int]) -> None:
    """Add object ids to the feed, in the caller's transaction."""
    ids = sorted({int(i) for i in object_ids})
    if ids:
        conn.execute(_MARK_IDS, {"ids": ids})


# A planner shard's part: ids whose high bits name one of its buckets, and legacy ids (below
# 1 << 48, from before the partitioning) whose row's tenant hashes to one of them. A legacy id
# without a row (none is ever deleted but by a migration's downgrade) goes to bucket 1's owner.
_DRAIN_BUCKETS = text(
    f"""
DELETE FROM tiering_changes WHERE object_id IN (
    SELECT c.object_id FROM tiering_changes c
    WHERE (c.object_id >= {partitions.LEGACY_END}
           AND (c.object_id >> {partitions.SHIFT})::int = ANY(CAST(:buckets AS int[])))
       OR (c.object_id < {partitions.LEGACY_END} AND coalesce(
              (SELECT liquid_tenant_bucket(o.tenant_id) FROM objects o
               WHERE o.id = c.object_id AND o.id < {partitions.LEGACY_END}), 1)
           = ANY(CAST(:buckets AS int[])))
    LIMIT :n FOR UPDATE SKIP LOCKED)
RETURNING object_id
"""
)


def drain(engine: Engine, *, batch: int = 10_000, buckets: Iterable[int] | None = None) -> list[int]:
    """Take every id out of the feed, ``batch`` per statement; returns them sorted.

    ``buckets``: only the ids of these tenant buckets' objects (a planner shard's,
    :mod:`liquid.tiering.shards`); the others stay for their owners.
    """
    out: list[int] = []
    args: dict[str, object] = {"n": batch}
    sql = _DRAIN
    if buckets is not None:
        args["buckets"] = sorted(int(b) for b in buckets)
        if not args["buckets"]:
            return out
        sql = _DRAIN_BUCKETS
    while True:
        with engine.begin() as conn:
            got = [int(i) for i in conn.execute(sql, args).scalars()]
        out.extend(got)
        if len(got) < batch:
            return sorted(out)


def pending(engine: Engine) -> int:
    """How many objects wait in the feed (a metric: the planner's backlog)."""
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM tiering_changes")).scalar_one())
