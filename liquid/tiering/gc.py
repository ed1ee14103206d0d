"""Reconciliation (``liquid gc``): stored bytes against the catalog, both ways.

For every durable store, the locators it holds are compared with what the catalog
references: the home of every object that is not yet purged, and both ends of every
open journal row (a move in flight owns its source and its destination).

* **Unreferenced bytes** older than the grace period are deleted, each with a
  ``gc.bytes_deleted`` receipt event (store, locator, size, age, rule). Younger ones are
  kept: a write in progress puts its bytes before its catalog row exists.
* **Bytes of tombstoned objects** (deleted or expired, not purged; a purge that failed or
  was never queued) are deleted and the object marked ``purged`` with an
  ``object.purged`` receipt, unless the object is under legal hold.
* **Catalog rows whose bytes are missing** are re-checked with ``head`` and, if still
  missing, logged at ERROR and recorded as an ``object.missing`` event. They are never
  dropped: an operator decides (restore from backup, or delete).

* **Incomplete multipart uploads** (stores that have them, S3): a put that crashed
  mid-upload leaves parts that are billed but never listed. Those started longer ago
  than the grace period are aborted; younger ones may be a put in progress and are kept.

Every candidate is re-checked against the catalog just before it is deleted, so a
move or write that lands between the listing and the decision is never hurt. Memory
grows with the number of locators in one store (the listing is held as a set).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text

from liquid.config import MoverSettings
from liquid.errors import ObjectNotFound
from liquid.events import log as events
from liquid.purge import PURGE_COLUMNS, purge
from liquid.service import LiquidService
from liquid.stores.base import MultipartStore, ObjectStat, Store
from liquid.tiering.mover import Clock

log = logging.getLogger(__name__)

_OPEN = "step NOT IN ('done', 'failed')"
#: The rule named in gc's deletion receipts.
GC_RULE = "gc: no catalog row or open journal row references these bytes"


@dataclass
class GcReport:
    """What one :func:`reconcile` found and did."""

    #: Locators listed per store.
    scanned: dict[str, int] = field(default_factory=dict)
    #: (store, locator, size) of unreferenced bytes deleted.
    deleted: list[tuple[str, str, int]] = field(default_factory=list)
    #: Unreferenced bytes kept because they are younger than the grace period.
    young: int = 0
    #: (store, locator, size) of bytes of tombstoned objects purged.
    purged: list[tuple[str, str, int]] = field(default_factory=list)
    #: (object id, uri, store, locator) of catalog rows whose bytes are missing.
    missing: list[tuple[int, str, str, str]] = field(default_factory=list)
    #: (store, locator, upload id, started) of incomplete multipart uploads aborted.
    uploads_aborted: list[tuple[str, str, str, datetime | None]] = field(default_factory=list)
    #: Incomplete multipart uploads kept because they started within the grace period.
    uploads_young: int = 0
    #: Stores or objects that could not be checked, with the reason.
    errors: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def bytes_freed(self) -> int:
        return sum(n for _, _, n in self.deleted) + sum(n for _, _, n in self.purged)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scanned": self.scanned,
            "deleted": [{"store": s, "locator": loc, "size": n} for s, loc, n in self.deleted],
            "young": self.young,
            "purged": [{"store": s, "locator": loc, "size": n} for s, loc, n in self.purged],
            "missing": [
                {"object_id": i, "uri": u, "store": s, "locator": loc} for i, u, s, loc in self.missing
            ],
            "uploads_aborted": [
                {"store": s, "locator": loc, "upload_id": u, "started": events.iso(t)}
                for s, loc, u, t in self.uploads_aborted
            ],
            "uploads_young": self.uploads_young,
            "errors": self.errors,
            "bytes_freed": self.bytes_freed,
            "dry_run": self.dry_run,
        }

    def __repr__(self) -> str:
        return (
            f"GcReport(scanned={sum(self.scanned.values())}, deleted={len(self.deleted)},"
            f" purged={len(self.purged)}, young={self.young}, missing={len(self.missing)},"
            f" uploads_aborted={len(self.uploads_aborted)},"
            f" errors={len(self.errors)})"
        )


def reconcile(
    engine: Engine,
    *,
    stores: Mapping[str, Store],
    settings: MoverSettings,
    clock: Clock,
    grace: float | timedelta | None = None,
    tenants: Iterable[str] | None = None,
    only: Iterable[str] | None = None,
    dry_run: bool = False,
) -> GcReport:
    """Walk every durable store against the catalog both ways (see the module docstring).

    Args:
        engine: the catalog.
        stores: the durable stores by name.
        settings: mover settings; ``gc_grace`` is the default ``grace``.
        clock: current UTC time (compared with the stores' modification times).
        grace: unreferenced bytes younger than this are kept.
        tenants: only these tenants' locators and rows (default: everything).
        only: only these store names (default: every store in ``stores``).
        dry_run: report what would be done, change nothing (``object.missing`` is still logged).

    Returns:
        A :class:`GcReport`.
    """
    if grace is None:
        grace = settings.gc_grace
    grace_td = grace if isinstance(grace, timedelta) else timedelta(seconds=grace)
    now = clock()
    tenant_list = sorted(set(tenants)) if tenants is not None else None
    names = sorted(stores) if only is None else sorted(only)
    report = GcReport(dry_run=dry_run)
    for name in names:
        store = stores.get(name)
        if store is None:
            report.errors.append(f"store {name!r} is not configured")
            continue
        try:
            _reconcile_store(engine, name, store, now, grace_td, tenant_list, dry_run, report)
        except Exception as exc:
            log.exception("gc of store %s failed", name)
            report.errors.append(f"store {name!r}: {type(exc).__name__}: {exc}")
        if isinstance(store, MultipartStore):
            try:
                _abort_stale_uploads(name, store, now, grace_td, tenant_list, dry_run, report)
            except Exception as exc:
                log.exception("gc of store %s's incomplete uploads failed", name)
                report.errors.append(f"store {name!r} uploads: {type(exc).__name__}: {exc}")
    if report.missing:
        log.error("gc: %d catalog rows have no bytes in their home store", len(report.missing))
    return report


def reconcile_service(
    service: LiquidService,
    *,
    clock: Clock | None = None,
    grace: float | timedelta | None = None,
    tenants: Iterable[str] | None = None,
    only: Iterable[str] | None = None,
    dry_run: bool = False,
) -> GcReport:
    """:func:`reconcile` on a service's catalog, durable stores, mover settings and clock."""
    return reconcile(
        service.engine,
        stores=service.stores,
        settings=service.settings.mover,
        clock=clock or service.clock,
        grace=grace,
        tenants=tenants,
        only=only,
        dry_run=dry_run,
    )


def _reconcile_store(
    engine: Engine,
    name: str,
    store: Store,
    now: datetime,
    grace: timedelta,
    tenants: list[str] | None,
    dry_run: bool,
    report: GcReport,
) -> None:
    # List first, read the catalog second: anything recorded before the listing is then seen.
    prefixes = [f"{t}/" for t in tenants] if tenants is not None else [""]
    listed: dict[str, ObjectStat] = {}
    for prefix in prefixes:
        for stat in store.list(prefix):
            listed[stat.locator] = stat
    report.scanned[name] = len(listed)

    tenant_filter = " AND tenant_id = ANY(:tenants)" if tenants is not None else ""
    params: dict[str, Any] = {"store": name, "tenants": tenants}
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, state, locator FROM objects WHERE home_store = :store AND locator IS NOT NULL"
                f" AND state <> 'purged'{tenant_filter}"
            ),
            params,
        ).all()
        in_flight = set(
            conn.execute(
                text(
                    f"SELECT from_locator FROM move_journal WHERE {_OPEN} AND from_store = :store"
                    f" AND from_locator IS NOT NULL{tenant_filter}"
                    f" UNION SELECT to_locator FROM move_journal WHERE {_OPEN} AND to_store = :store"
                    f" AND to_locator IS NOT NULL{tenant_filter}"
                ),
                params,
            ).scalars()
        )
    by_locator = {row.locator: row for row in rows}

    for locator, stat in listed.items():
        if locator in in_flight:
            continue
        row = by_locator.get(locator)
        if row is not None and row.state == "live":
            continue
        if row is not None:
            _purge_tombstoned(engine, name, store, row.id, locator, stat, now, dry_run, report)
            continue
        if stat.modified is not None and now - stat.modified < grace:
            report.young += 1
            continue
        _delete_orphan(engine, name, store, stat, now, grace, dry_run, report)

    for row in rows:
        if row.state == "live" and row.locator not in listed:
            _check_missing(engine, name, store, row.id, row.locator, now, dry_run, report)


def _abort_stale_uploads(
    name: str,
    store: MultipartStore,
    now: datetime,
    grace: timedelta,
    tenants: list[str] | None,
    dry_run: bool,
    report: GcReport,
) -> None:
    # No catalog check: a completed upload is an object (listed above), never an upload, so an
    # upload open past the grace period belongs to a put that is not coming back.
    prefixes = [f"{t}/" for t in tenants] if tenants is not None else [""]
    for prefix in prefixes:
        for upload in list(store.incomplete_uploads(prefix)):
            if upload.started is None or now - upload.started < grace:
                report.uploads_young += 1
                continue
            if not dry_run:
                store.abort_upload(upload)
            report.uploads_aborted.append((name, upload.locator, upload.upload_id, upload.started))
            log.info(
                "gc: aborted incomplete multipart upload %s:%s (started %s)",
                name,
                upload.locator,
                upload.started,
            )


def _referenced(conn: Connection, store: str, locator: str) -> bool:
    """Whether a non-purged object or an open journal row references ``store:locator`` right now."""
    return bool(
        conn.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM objects WHERE home_store = :s AND locator = :l"
                " AND state <> 'purged')"
                f" OR EXISTS (SELECT 1 FROM move_journal WHERE {_OPEN}"
                " AND from_store = :s AND from_locator = :l)"
                f" OR EXISTS (SELECT 1 FROM move_journal WHERE {_OPEN}"
                " AND to_store = :s AND to_locator = :l)"
            ),
            {"s": store, "l": locator},
        ).scalar()
    )


def _delete_orphan(
    engine: Engine,
    name: str,
    store: Store,
    stat: ObjectStat,
    now: datetime,
    grace: timedelta,
    dry_run: bool,
    report: GcReport,
) -> None:
    with engine.begin() as conn:
        # Serialise with other gc runs on this locator and re-check under the lock.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"gc:{name}:{stat.locator}"})
        if _referenced(conn, name, stat.locator):
            return
        if not dry_run:
            store.delete(stat.locator)
            events.append(
                conn,
                events.NewEvent(
                    events.GC_BYTES_DELETED,
                    now,
                    actor="gc",
                    bytes=stat.size,
                    data={
                        "store": name,
                        "locator": stat.locator,
                        "modified": events.iso(stat.modified),
                        "grace_seconds": grace.total_seconds(),
                        "rule": GC_RULE,
                    },
                ),
            )
    report.deleted.append((name, stat.locator, stat.size))
    log.info("gc: deleted unreferenced %s:%s (%d bytes)", name, stat.locator, stat.size)


def _purge_tombstoned(
    engine: Engine,
    name: str,
    store: Store,
    object_id: int,
    locator: str,
    stat: ObjectStat,
    now: datetime,
    dry_run: bool,
    report: GcReport,
) -> None:
    with engine.begin() as conn:
        obj = conn.execute(
            text(f"SELECT {PURGE_COLUMNS} FROM objects WHERE id = :id FOR UPDATE"),
            {"id": object_id},
        ).first()
        if obj is None or obj.state in ("live", "purged") or obj.legal_hold:
            return
        if (obj.home_store, obj.locator) != (name, locator):
            return
        open_row = conn.execute(
            text(f"SELECT 1 FROM move_journal WHERE object_id = :id AND {_OPEN}"), {"id": object_id}
        ).first()
        if open_row is not None:
            return  # its purge (or a move being discarded) is queued; the mover will finish it
        if not dry_run:
            purge(
                conn,
                obj,
                store=store,
                now=now,
                reason="gc",
                rule=f"gc: {obj.state} object not purged",
                actor="gc",
            )
    report.purged.append((name, locator, stat.size))


def _check_missing(
    engine: Engine,
    name: str,
    store: Store,
    object_id: int,
    locator: str,
    now: datetime,
    dry_run: bool,
    report: GcReport,
) -> None:
    try:
        store.head(locator)
        return  # written after the listing
    except ObjectNotFound:
        pass
    with engine.begin() as conn:
        obj = conn.execute(
            text(
                "SELECT id, tenant_id, namespace, key, version, state, home_tier, home_store, locator, size,"
                " sha256 FROM objects WHERE id = :id"
            ),
            {"id": object_id},
        ).first()
        if obj is None or obj.state != "live" or (obj.home_store, obj.locator) != (name, locator):
            return  # moved or deleted meanwhile
        uri = f"liquid://{obj.tenant_id}/{obj.namespace}/{obj.key}@{obj.version}"
        log.error(
            "gc: %s has no bytes at its home %s:%s (tier %s, %d bytes, sha256 %s); the catalog row is kept",
            uri,
            name,
            locator,
            obj.home_tier,
            obj.size,
            obj.sha256,
        )
        report.missing.append((obj.id, uri, name, locator))
        if dry_run:
            return
        events.append(
            conn,
            events.NewEvent.about(
                events.MISSING,
                obj,
                at=now,
                actor="gc",
                tier=obj.home_tier,
                bytes=obj.size,
                data={"store": name, "locator": locator, "sha256": obj.sha256},
            ),
        )
