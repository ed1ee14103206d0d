"""The one purge path: a tombstoned version's bytes are deleted and its receipt logged, one way.

A user's delete (:meth:`LiquidService.delete`), retention through the mover
(:meth:`Mover._purge`) and gc's backstop (:func:`liquid.tiering.gc.reconcile`) all call
:func:`purge`. It deletes the bytes at the version's home (if they are in a store, not in
the catalog row), then — in the caller's transaction — marks the row ``purged``, removes its vectors
(:mod:`liquid.vectors`), appends
one ``object.purged`` receipt of one shape, and tells the planner. So a deletion receipt
(what, where, when, why, checksum) exists in the log for every purged version
(:func:`receipt` reads it back).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, text

from liquid.catalog.changes import mark_changed
from liquid.config import CATALOG_STORE
from liquid.events import log as events


class Deleter(Protocol):
    """What a purge needs of a store (a :class:`~liquid.stores.base.Store` has it)."""

    def delete(self, locator: str) -> Any: ...


#: The columns :func:`purge` needs from an ``objects`` row.
PURGE_COLUMNS = (
    "id, tenant_id, namespace, key, version, state, legal_hold, home_tier, home_store, locator,"
    " stored_size, sha256, deleted_at, trace_id, correlation_id, execution_id"
)


def purge(
    conn: Connection,
    obj: Any,
    *,
    store: Deleter | Callable[[str], Deleter | None] | None,
    now: datetime,
    reason: str,
    actor: str | None,
    rule: str | None = None,
    journal_id: int | None = None,
) -> bool:
    """Delete a tombstoned version's home bytes and record its purge, in ``conn``'s transaction.

    Args:
        obj: the ``objects`` row (at least :data:`PURGE_COLUMNS`), read under the caller's lock.
        store: the home store, or a lookup by store name (None: the bytes are in the catalog row).
        reason: why: ``deleted`` (by its tenant), ``retention`` (expired by a rule) or ``gc``.
        rule: the rule that decided, if one did.
        journal_id: the move-journal row that carried the purge, if any.

    Returns:
        False when there was nothing to purge (live, already purged, or under legal hold).

    Raises:
        whatever the store raised deleting the bytes; nothing is recorded then.
    """
    if obj.state not in ("deleted", "expired") or obj.legal_hold:
        return False
    if obj.home_store != CATALOG_STORE and obj.locator is not None:
        target = store if store is None or hasattr(store, "delete") else store(obj.home_store)
        if target is None:
            raise KeyError(f"store {obj.home_store!r} is not open; cannot purge {obj.locator}")
        target.delete(obj.locator)
    updated = conn.execute(
        text(
            "UPDATE objects SET state = 'purged', purged_at = :now, inline_data = NULL"
            " WHERE id = :id AND state IN ('deleted', 'expired') RETURNING id"
        ),
        {"now": now, "id": obj.id},
    ).first()
    if updated is None:
        return False
    # Its vectors go with its bytes: pgvector's rows in this transaction, an external index's
    # through its posting (liquid.vectors.sweep deletes those; searches skip purged hits meanwhile).
    conn.execute(text("DELETE FROM object_vectors WHERE object_id = :id"), {"id": obj.id})
    conn.execute(
        text("UPDATE vector_postings SET purged_at = :now WHERE object_id = :id AND purged_at IS NULL"),
        {"now": now, "id": obj.id},
    )
    events.append(
        conn,
        events.NewEvent.about(
            events.PURGED,
            obj,
            at=now,
            actor=actor,
            tier=obj.home_tier,
            bytes=obj.stored_size,
            data={
                "store": obj.home_store,
                "locator": obj.locator,
                "sha256": obj.sha256,
                "size": obj.stored_size,
                "reason": reason,
                "rule": rule,
                "tombstoned_at": events.iso(obj.deleted_at),
                "journal_id": journal_id,
            },
        ),
    )
    mark_changed(conn, [obj.id])
    return True


def receipt(conn: Connection, object_id: int) -> dict[str, Any] | None:
    """The deletion receipt of a purged version, from the log alone (None if it was never purged).

    What (ref, size, sha256), where (tier, store, locator), when (tombstoned, purged), why
    (reason, rule), by whom (actor) and the journal row, if one carried it.
    """
    row = conn.execute(
        text(
            "SELECT p.at, p.tenant_id, p.namespace, p.key, p.version, p.actor, p.tier, p.data,"
            " (SELECT d.kind FROM events d WHERE d.object_id = p.object_id"
            "   AND d.kind IN ('object.deleted', 'object.expired') ORDER BY d.id LIMIT 1) AS tombstone"
            " FROM events p WHERE p.object_id = :id AND p.kind = 'object.purged' ORDER BY p.id LIMIT 1"
        ),
        {"id": object_id},
    ).first()
    if row is None:
        return None
    data = dict(row.data)
    return {
        "ref": f"liquid://{row.tenant_id}/{row.namespace}/{row.key}@{row.version}",
        "object_id": object_id,
        "sha256": data["sha256"],
        "size": data["size"],
        "tier": row.tier,
        "store": data["store"],
        "locator": data["locator"],
        "tombstone": row.tombstone,
        "tombstoned_at": data["tombstoned_at"],
        "purged_at": events.iso(row.at),
        "reason": data["reason"],
        "rule": data["rule"],
        "actor": row.actor,
        "journal_id": data["journal_id"],
    }
