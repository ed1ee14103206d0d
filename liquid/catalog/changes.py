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

from sqlalchemy import Connection, Engine, TextClause, text

from liquid.catalog import partitions

TABLE = "tiering_changes"

#: SQL to add the ids of a CTE or subquery (``SELECT id ...``) to the feed: ``MARK.format(select)``.
MARK = "INSERT INTO tiering_changes (object_id) {} ON CONFLICT DO NOTHING"

_MARK_IDS = text(
    "INSERT INTO tiering_changes (object_id) SELECT unnest(CAST(:ids AS bigint[])) ON CONFLICT DO NOTHING"
)
# ``= ANY(ARRAY(...))`` rather than ``IN (...)``: see _DRAIN_BUCKETS below for the plan that ``IN`` got.
_DRAIN = text(
    "DELETE FROM tiering_changes WHERE object_id = ANY(ARRAY("
    "SELECT object_id FROM tiering_changes LIMIT :n FOR UPDATE SKIP LOCKED)) RETURNING object_id"
)


def mark_changed(conn: Connection, object_ids: Iterable[int]) -> None:
    """Add object ids to the feed, in the caller's transaction."""
    ids = sorted({int(i) for i in object_ids})
    if ids:
        conn.execute(_MARK_IDS, {"ids": ids})


# A planner shard's part: ids whose high bits name one of its buckets (no lookup needed)...
# ``= ANY(ARRAY(subquery))`` runs the subquery once and deletes by the primary key: written with
# ``IN``, the drain took 7 s for 5,000 ids in one round of benchmarks/shards.py (a plan whose cost
# grew with feed rows times ids, likely a nested loop picked after the feed's statistics changed).
_DRAIN_BUCKETS = text(
    f"""
DELETE FROM tiering_changes WHERE object_id = ANY(ARRAY(
    SELECT object_id FROM tiering_changes
    WHERE object_id >= {partitions.LEGACY_END}
      AND (object_id >> {partitions.SHIFT})::int = ANY(CAST(:buckets AS int[]))
    LIMIT :n FOR UPDATE SKIP LOCKED))
RETURNING object_id
"""
)
# ...and legacy ids (below 1 << 48, from before the partitioning), whose bucket is their row's
# tenant's: looked up by primary key in a statement of its own (a correlated lookup inside the
# drain let PostgreSQL pick a plan that scanned objects_legacy once per feed row).
_LEGACY_FEED = text(
    "SELECT object_id FROM tiering_changes"
    f" WHERE object_id > :after AND object_id < {partitions.LEGACY_END} ORDER BY object_id LIMIT :n"
)
_LEGACY_BUCKETS = text(
    "SELECT id, liquid_tenant_bucket(tenant_id) FROM objects"
    f" WHERE id = ANY(CAST(:ids AS bigint[])) AND id < {partitions.LEGACY_END}"
)
_TAKE = text(
    "DELETE FROM tiering_changes WHERE object_id = ANY(ARRAY(SELECT object_id FROM tiering_changes"
    " WHERE object_id = ANY(CAST(:ids AS bigint[])) FOR UPDATE SKIP LOCKED)) RETURNING object_id"
)


def drain(engine: Engine, *, batch: int = 10_000, buckets: Iterable[int] | None = None) -> list[int]:
    """Take every id out of the feed, ``batch`` per statement; returns them sorted.

    ``buckets``: only the ids of these tenant buckets' objects (a planner shard's,
    :mod:`liquid.tiering.shards`); the others stay for their owners. A legacy id whose row is
    gone (none is, but by a migration's downgrade) goes to bucket 1's owner.
    """
    if buckets is None:
        return _drain(engine, _DRAIN, {"n": batch}, batch)
    mine = sorted({int(b) for b in buckets})
    if not mine:
        return []
    out = _drain(engine, _DRAIN_BUCKETS, {"n": batch, "buckets": mine}, batch)
    after = -1
    while True:
        with engine.begin() as conn:
            legacy = [int(i) for i in conn.execute(_LEGACY_FEED, {"n": batch, "after": after}).scalars()]
            if not legacy:
                break
            found = {int(i): int(b) for i, b in conn.execute(_LEGACY_BUCKETS, {"ids": legacy})}
            ours = [i for i in legacy if found.get(i, 1) in mine]
            if ours:
                out.extend(int(i) for i in conn.execute(_TAKE, {"ids": ours}).scalars())
        if len(legacy) < batch:
            break
        after = legacy[-1]
    return sorted(out)


def _drain(engine: Engine, sql: TextClause, args: dict[str, object], batch: int) -> list[int]:
    out: list[int] = []
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
