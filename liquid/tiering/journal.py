"""The move journal: one row per planned move or purge, the only way bytes change home.

A row is the mover's to-do item and its crash record. Its ``step`` says how far the
work got, and every step is idempotent, so a mover that dies anywhere leaves a row a
later mover resumes (see :mod:`liquid.tiering.mover`)::

    move:   planned → copied → verified → switched → done      (or failed)
            planned ─────────────────────→ switched           (small moves, batched)
    purge:                                  switched → done      (or failed)

* ``planned``: written by :func:`enqueue_move` with ``from_*`` taken from the object row
  and a fresh ``to_locator`` (``{tenant}/{namespace}/{uuid}``), so a repeated copy
  overwrites its own earlier attempt and never anything else. That is also why a small
  move may skip recording ``copied`` and ``verified``: after a crash its copy is simply
  made and verified again.
* ``switched``: the object's home points at the destination (one catalog transaction);
  the source is deleted once ``delete_after`` has passed.
* A purge's object is tombstoned by :func:`enqueue_purge` itself, in the transaction
  that writes the row (so the row starts ``switched``); the mover then deletes the bytes
  and leaves the receipt.

At most one row per object is open (not ``done``/``failed``): a partial unique index
(``uq_move_journal_open``) enforces it, so two planners cannot queue clashing moves.
Rows are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease (``claimed_by``,
``claimed_until``): several movers share one journal and never work one row at once. A
working mover renews its leases (:func:`renew`); every write a mover makes to a row it
claimed is a compare-and-set on ``claimed_by``, so a mover that lost a row stops.

The lease is the backstop; a mover also beats (:func:`beat`) into ``mover_heartbeats``
every few seconds while it holds rows. A row whose holder's beat is older than
``stale_after`` is claimable at once, so a crashed mover's rows (up to a whole cycle's)
come back within seconds instead of waiting out the lease. A holder that never beat
(an older mover, a direct :func:`claim`) keeps the plain lease.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text

from liquid.catalog.changes import mark_changed
from liquid.config import CATALOG_STORE
from liquid.errors import Forbidden, InvalidInput
from liquid.events import log as events

#: A move that reads its bytes out of a colder tier into a warmer one: a restore, which a
#: retrieval spend cap can hold (:mod:`liquid.tiering.spend`).
RESTORE_SQL = "(from_tier = 'archive' OR (from_tier = 'cold' AND to_tier IN ('warm', 'hot')))"

#: Steps after which a row is closed.
TERMINAL_STEPS = ("done", "failed")
#: Every step a row can be in, in protocol order.
STEPS = ("planned", "copied", "verified", "switched", "done", "failed")
KINDS = ("move", "purge")

_OPEN = "step NOT IN ('done', 'failed')"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A claimed journal row, as the mover sees it."""

    id: int
    object_id: int
    tenant_id: str
    kind: str
    from_tier: str
    from_store: str
    from_locator: str | None
    to_tier: str | None
    to_store: str | None
    to_locator: str | None
    step: str
    attempts: int
    claimed_by: str | None
    claimed_until: datetime | None
    delete_after: datetime | None
    reason: str | None
    error: str | None

    @classmethod
    def from_row(cls, row: Any) -> JournalEntry:
        return cls(**{name: getattr(row, name) for name in cls.__slots__})

    def __repr__(self) -> str:
        dest = f"{self.to_tier}:{self.to_store}" if self.kind == "move" else "purge"
        return (
            f"JournalEntry(#{self.id} object={self.object_id} {self.from_tier}:{self.from_store}→{dest}"
            f" step={self.step} attempts={self.attempts})"
        )


@contextmanager
def _begin(conn_or_engine: Connection | Engine) -> Iterator[Connection]:
    """The caller's connection (its transaction) as is, or a new transaction on an engine."""
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.begin() as conn:
            yield conn
    else:
        yield conn_or_engine


def new_locator(tenant: str, namespace: str) -> str:
    """A fresh locator for an object's bytes (the layout ``LiquidService.put`` uses)."""
    return f"{tenant}/{namespace}/{uuid.uuid4().hex}"


def enqueue_move(
    conn_or_engine: Connection | Engine,
    object_id: int,
    to_tier: str,
    to_store: str,
    *,
    reason: str | None,
) -> int | None:
    """Queue a move of one live object's home to ``to_store`` (tier ``to_tier``).

    Runs in the caller's transaction when given a Connection. ``from_*`` are read from
    the object row in the same statement, so the mover's switch can tell whether the
    object changed meanwhile.

    Returns:
        The journal id, or None when nothing was queued: the object is not live, is
        already in ``to_store``, or already has an open journal row.

    Raises:
        InvalidInput: ``to_store`` is the catalog pseudo-store (moves go to real stores).
    """
    if to_store == CATALOG_STORE:
        raise InvalidInput(
            f"moves go to a real store, not the {CATALOG_STORE!r} pseudo-store", field="to_store"
        )
    if not to_tier or not to_store:
        raise InvalidInput("to_tier and to_store must be non-empty", field="to_store")
    with _begin(conn_or_engine) as conn:
        journal_id = conn.execute(
            text(
                "INSERT INTO move_journal (object_id, tenant_id, kind, from_tier, from_store, from_locator,"
                " to_tier, to_store, to_locator, step, attempts, reason, created_at, updated_at)"
                " SELECT o.id, o.tenant_id, 'move', o.home_tier, o.home_store, o.locator,"
                " :to_tier, :to_store, o.tenant_id || '/' || o.namespace || '/' || :suffix,"
                " 'planned', 0, :reason, now(), now()"
                " FROM objects o WHERE o.id = :oid AND o.state = 'live' AND o.home_store <> :to_store"
                f" ON CONFLICT (object_id) WHERE {_OPEN} DO NOTHING RETURNING id"
            ),
            {
                "oid": object_id,
                "to_tier": to_tier,
                "to_store": to_store,
                "suffix": uuid.uuid4().hex,
                "reason": reason,
            },
        ).scalar()
    return int(journal_id) if journal_id is not None else None


def enqueue_purge(
    conn_or_engine: Connection | Engine,
    object_id: int,
    *,
    reason: str | None,
    now: datetime | None = None,
    actor: str | None = None,
) -> int | None:
    """Tombstone one object (retention has decided) and queue the purge of its bytes.

    The object stops being served at once: a live object becomes ``expired`` (with an
    ``object.expired`` event naming ``reason``); a deleted or expired one keeps its state.
    The mover then deletes its home bytes and hot copy, marks it ``purged`` and leaves an
    ``object.purged`` receipt (what, where, when, which rule).

    Args:
        reason: the rule that decided, e.g. ``"retention: policy docs rule ttl-30d"``.
        now: the tombstone time (the caller's clock); the database's ``now()`` if None.

    Returns:
        The journal id, or None when nothing was queued: no such object, already purged,
        or another journal row is open for it (the tombstone still happens; the retention
        job retries the purge in a later cycle, and ``liquid gc`` is the backstop).

    Raises:
        Forbidden: the object is under legal hold (nothing changes).
    """
    with _begin(conn_or_engine) as conn:
        row = conn.execute(
            text("SELECT id, state, legal_hold FROM objects WHERE id = :oid FOR UPDATE"), {"oid": object_id}
        ).first()
        if row is None or row.state == "purged":
            return None
        if row.legal_hold:
            raise Forbidden(f"object {object_id} is under legal hold and cannot be purged", field="object_id")
        params = {"oid": object_id, "reason": reason, "now": now, "actor": actor}
        if row.state == "live":
            conn.execute(
                text(
                    "UPDATE objects SET state = 'expired', deleted_at = coalesce(:now, now()),"
                    " inline_data = NULL WHERE id = :oid"
                ),
                params,
            )
            conn.execute(
                text(
                    events.insert_from(
                        "objects",
                        events.EXPIRED,
                        at="coalesce(:now, now())",
                        actor=":actor",
                        data={"reason": "CAST(:reason AS text)"},
                        **events.OBJECT_EXPRS,
                    )
                    + " WHERE id = :oid"
                ),
                params,
            )
        mark_changed(conn, [object_id])
        journal_id = conn.execute(
            text(
                "INSERT INTO move_journal (object_id, tenant_id, kind, from_tier, from_store, from_locator,"
                " step, attempts, reason, created_at, updated_at)"
                " SELECT o.id, o.tenant_id, 'purge', o.home_tier, o.home_store, o.locator,"
                " 'switched', 0, :reason, coalesce(:now, now()), coalesce(:now, now())"
                " FROM objects o WHERE o.id = :oid"
                f" ON CONFLICT (object_id) WHERE {_OPEN} DO NOTHING RETURNING id"
            ),
            params,
        ).scalar()
    return int(journal_id) if journal_id is not None else None


#: A holder counts as gone when its beat is older than this (or its lease ran out).
_HOLDER_GONE = (
    "(claimed_until < :now OR EXISTS (SELECT 1 FROM mover_heartbeats h"
    " WHERE h.worker_id = move_journal.claimed_by AND h.beat_at < :stale_before))"
)


def beat(engine: Engine, worker_id: str, now: datetime) -> None:
    """Record that ``worker_id`` is alive now (rows it holds are not to be taken over)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO mover_heartbeats (worker_id, beat_at) VALUES (:w, :now)"
                " ON CONFLICT (worker_id) DO UPDATE SET beat_at = EXCLUDED.beat_at"
            ),
            {"w": worker_id, "now": now},
        )


def forget(engine: Engine, worker_id: str) -> None:
    """Drop ``worker_id``'s heartbeat (a mover that stops cleanly holds no rows)."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM mover_heartbeats WHERE worker_id = :w"), {"w": worker_id})


def _stale_before(now: datetime, stale_after: float | None) -> datetime:
    # None: heartbeats are ignored (only leases count); the oldest instant matches nothing.
    return (
        now - timedelta(seconds=stale_after)
        if stale_after is not None
        else datetime.min.replace(tzinfo=now.tzinfo)
    )


def claim(
    engine: Engine,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    now: datetime,
    *,
    stale_after: float | None = None,
    hold_restores: tuple[bool, Sequence[str]] = (False, ()),
) -> list[JournalEntry]:
    """Lease up to ``limit`` open rows to ``worker_id``, oldest first.

    A row is claimable when its lease is free or expired, or its holder's heartbeat is older
    than ``stale_after`` seconds, and, once switched, when its ``delete_after`` has passed.
    Rows locked by another claimer are skipped, not waited for. A row taken over from a gone
    holder counts one (interrupted) attempt. ``hold_restores`` (everyone's, these tenants'):
    restores not started yet stay in the queue (a retrieval spend cap, :mod:`liquid.tiering.spend`).
    """
    if limit <= 0:
        return []
    everyone, tenants = hold_restores
    held = ""
    if everyone or tenants:
        who = "" if everyone else " AND tenant_id = ANY(CAST(:held AS text[]))"
        held = f" AND NOT (kind = 'move' AND step = 'planned' AND {RESTORE_SQL}{who})"
    with engine.begin() as conn:
        rows = conn.execute(
            text(
                "WITH c AS ("
                f" SELECT id FROM move_journal WHERE {_OPEN}"
                f" AND (claimed_until IS NULL OR {_HOLDER_GONE})"
                " AND (step <> 'switched' OR delete_after IS NULL OR delete_after <= :now)"
                f"{held}"
                " ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)"
                " UPDATE move_journal m SET claimed_by = :worker, claimed_until = :until, updated_at = :now,"
                " attempts = m.attempts + CASE WHEN m.claimed_by IS NULL THEN 0 ELSE 1 END"
                " FROM c WHERE m.id = c.id RETURNING m.*"
            ),
            {
                "now": now,
                "stale_before": _stale_before(now, stale_after),
                "limit": limit,
                "worker": worker_id,
                "until": now + timedelta(seconds=lease_seconds),
                "held": list(tenants),
            },
        ).all()
    return sorted((JournalEntry.from_row(r) for r in rows), key=lambda e: e.id)


def held_restores(engine: Engine, hold: tuple[bool, Sequence[str]]) -> dict[str, int]:
    """Restores waiting in the queue because of ``hold`` (see :func:`claim`), per tenant."""
    everyone, tenants = hold
    if not everyone and not tenants:
        return {}
    who = "" if everyone else " AND tenant_id = ANY(CAST(:held AS text[]))"
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT tenant_id, count(*) AS n FROM move_journal WHERE {_OPEN}"
                f" AND kind = 'move' AND step = 'planned' AND {RESTORE_SQL}{who} GROUP BY tenant_id"
            ),
            {"held": list(tenants)},
        ).all()
    return {r.tenant_id: int(r.n) for r in rows}


def renew(
    engine: Engine, worker_id: str, ids: Sequence[int], lease_seconds: float, now: datetime
) -> set[int]:
    """Extend the lease of those open rows of ``ids`` that ``worker_id`` still holds (a heartbeat).

    Rows another worker holds now, released rows and closed rows are left alone. Rows locked by
    a transaction in progress (this worker switching them) are skipped, never waited for: the
    heartbeat cannot deadlock with the mover's own writes. Returns the ids renewed.
    """
    if not ids:
        return set()
    with engine.begin() as conn:
        rows = conn.execute(
            text(
                "UPDATE move_journal SET claimed_until = :until WHERE id IN ("
                " SELECT id FROM move_journal WHERE id = ANY(CAST(:ids AS bigint[])) AND claimed_by = :worker"
                f" AND {_OPEN} FOR UPDATE SKIP LOCKED) RETURNING id"
            ),
            {"ids": list(ids), "worker": worker_id, "until": now + timedelta(seconds=lease_seconds)},
        ).scalars()
        return {int(i) for i in rows}


def release(
    conn_or_engine: Connection | Engine,
    worker_id: str,
    ids: Sequence[int],
    *,
    now: datetime,
    not_before: datetime | None = None,
) -> set[int]:
    """Give back those of ``ids`` that ``worker_id`` holds; claimable again from ``not_before``.

    Returns the ids released.
    """
    if not ids:
        return set()
    with _begin(conn_or_engine) as conn:
        rows = conn.execute(
            text(
                "UPDATE move_journal SET claimed_by = NULL, claimed_until = :until, updated_at = :now"
                " WHERE id = ANY(CAST(:ids AS bigint[])) AND claimed_by = :worker RETURNING id"
            ),
            {"ids": list(ids), "worker": worker_id, "until": not_before, "now": now},
        ).scalars()
        return {int(i) for i in rows}


def close(
    conn_or_engine: Connection | Engine,
    worker_id: str,
    ids: Sequence[int],
    *,
    steps: Sequence[str],
    now: datetime,
    error: str | None = None,
) -> set[int]:
    """Mark ``done`` those of ``ids`` that ``worker_id`` holds and that are at one of ``steps``.

    ``error`` (if given) says why a row closed without its move. Returns the ids closed.
    """
    if not ids:
        return set()
    with _begin(conn_or_engine) as conn:
        rows = conn.execute(
            text(
                "UPDATE move_journal SET step = 'done', claimed_by = NULL, claimed_until = NULL,"
                " updated_at = :now, error = coalesce(CAST(:error AS text), error)"
                " WHERE id = ANY(CAST(:ids AS bigint[])) AND claimed_by = :worker"
                " AND step = ANY(CAST(:steps AS text[])) RETURNING id"
            ),
            {"ids": list(ids), "worker": worker_id, "steps": list(steps), "now": now, "error": error},
        ).scalars()
        return {int(i) for i in rows}


def release_stale(engine: Engine, worker_id: str, now: datetime, *, stale_after: float | None = None) -> int:
    """Free rows held by ``worker_id`` (a restart: it holds nothing), by an expired lease, or by
    a holder whose heartbeat is older than ``stale_after`` seconds.

    Each freed row counts one interrupted attempt. Heartbeats of holders gone a day are dropped.
    Returns how many rows were freed.
    """
    params = {"now": now, "worker": worker_id, "stale_before": _stale_before(now, stale_after)}
    with engine.begin() as conn:
        result = conn.execute(
            text(
                "UPDATE move_journal SET claimed_by = NULL, claimed_until = NULL, updated_at = :now,"
                " attempts = attempts + 1,"
                " error = 'interrupted: claim of ' || claimed_by || ' was abandoned'"
                f" WHERE {_OPEN} AND claimed_by IS NOT NULL"
                f" AND (claimed_by = :worker OR {_HOLDER_GONE})"
            ),
            params,
        )
        conn.execute(
            text("DELETE FROM mover_heartbeats WHERE beat_at < :now - interval '1 day'"), {"now": now}
        )
    return int(result.rowcount)


def queue_depth(engine: Engine) -> int:
    """How many journal rows are open (not done or failed)."""
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM move_journal WHERE {_OPEN}")).scalar_one())


def queue_counts(engine: Engine) -> dict[str, int]:
    """Open rows per ``kind:step`` (e.g. ``move:planned``), for metrics and ``liquid tier status``."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT kind, step, count(*) AS n FROM move_journal WHERE {_OPEN} GROUP BY kind, step")
        ).all()
    return {f"{r.kind}:{r.step}": int(r.n) for r in rows}


def recent_failures(engine: Engine, *, since: datetime, limit: int = 20) -> list[dict[str, object]]:
    """Rows that gave up since ``since``, newest first: what, from where to where, and why."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT j.id, j.kind, j.from_tier, j.to_tier, j.attempts, j.error, j.updated_at,"
                " o.tenant_id, o.namespace, o.key, o.version FROM move_journal j"
                " LEFT JOIN objects o ON o.id = j.object_id"
                " WHERE j.step = 'failed' AND j.updated_at >= :since ORDER BY j.updated_at DESC LIMIT :limit"
            ),
            {"since": since, "limit": limit},
        ).all()
    return [dict(r._mapping) for r in rows]


def open_row(engine: Engine, object_id: int) -> dict[str, object] | None:
    """The object's open journal row (at most one exists), as ``explain`` shows it, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT id, kind, step, from_tier, to_tier, reason, attempts, created_at,"
                f" ({RESTORE_SQL}) AS restore FROM move_journal WHERE object_id = :o AND {_OPEN} LIMIT 1"
            ),
            {"o": object_id},
        ).first()
    return dict(row._mapping) if row is not None else None
