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


def drain(engine: Engine, *, batch: int = 10_000) -> list[int]:
    """Take every id out of the feed, ``batch`` per statement; returns them sorted."""
    out: list[int] = []
    while True:
        with engine.begin() as conn:
            got = [int(i) for i in conn.execute(_DRAIN, {"n": batch}).scalars()]
        out.extend(got)
        if len(got) < batch:
            return sorted(out)


def pending(engine: Engine) -> int:
    """How many objects wait in the feed (a metric: the planner's backlog)."""
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM tiering_changes")).scalar_one())
