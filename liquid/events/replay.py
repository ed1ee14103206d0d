"""Replay validation: rebuild every object's state and placement from the event log alone, compare.

The event-sourcing promise of the log is that its object events are enough to know, for
every version, whether it is live, deleted, expired or purged, where its bytes are (tier,
store, locator), its sizes and its checksum. :func:`check` rebuilds that from the log and
reports each place the catalog says otherwise — a divergence means a writer changed the
catalog without logging it (or logged what it did not do), or someone edited a row by hand.

What each kind does to the replayed state (every kind not listed changes nothing):

==================  ==========================================================================
``object.created``  live; tier, store, locator, size, stored size, sha256, trace id
``object.moved``    tier, store, locator := the destination (its source must be the current home)
``object.deleted``  deleted (from live)
``object.expired``  expired (from live)
``object.purged``   purged (from deleted/expired; its store, locator and sha256 must match)
==================  ==========================================================================

A field is compared only where the events carry it: rows the 0007 migration copied from the
older log have other payload shapes (no locator on ``object.created``, for one), and such a
field replays as :data:`UNKNOWN` and is left out of the comparison.

Transitions the log itself gets wrong (a move from a home the object was not at, a purge
of a live version, an event before ``object.created``) are reported too.

Both sides are read in one ``REPEATABLE READ`` snapshot: a change and its event commit in
one transaction, so a check that runs while the service writes sees both or neither.
Both are streamed in object id order and merged, so memory stays flat on large catalogs.
Retention prunes exported events a month's partition at a time; objects created before the
oldest event still in the log cannot be rebuilt and are counted as ``unverifiable``, not
reported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Engine, text

from liquid.events import log as events
from liquid.refs import ResultRef

#: The object fields replay rebuilds and compares, in report order.
FIELDS = ("state", "home_tier", "home_store", "locator", "size", "stored_size", "sha256", "trace_id")


class _Unknown:
    """A field the log did not carry (older payload shapes): never compared."""

    def __repr__(self) -> str:
        return "unknown"


UNKNOWN: Final = _Unknown()


def _same(a: Any, b: Any) -> bool:
    return a is UNKNOWN or b is UNKNOWN or a == b


_REPLAYED_KINDS = (
    events.CREATED.name,
    events.MOVED.name,
    events.DELETED.name,
    events.EXPIRED.name,
    events.PURGED.name,
)


@dataclass(slots=True)
class Replayed:
    """One object version as the log tells it, with its placement history."""

    object_id: int
    ref: str
    state: str | None = None
    home_tier: str | None = None
    #: The rest may also be UNKNOWN (not in the events' payloads).
    home_store: Any = None
    locator: Any = None
    size: Any = None
    stored_size: Any = None
    sha256: Any = None
    trace_id: str | None = None
    #: (when, tier, store) of each home it had, oldest first.
    placements: list[tuple[str, str | None, str | None]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Divergence:
    """One field where the log and the catalog disagree (or one the log contradicts itself on)."""

    object_id: int
    ref: str
    field: str
    log: Any
    catalog: Any

    def __str__(self) -> str:
        where = f"{self.ref} (object {self.object_id})"
        return f"{where}: {self.field}: log says {self.log!r}, catalog {self.catalog!r}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "object_id": self.object_id,
            "ref": self.ref,
            "field": self.field,
            "log": self.log,
            "catalog": self.catalog,
        }


@dataclass(slots=True)
class Report:
    """What a check saw: objects compared, their replayed states, and every divergence."""

    objects: int = 0
    events: int = 0
    unverifiable: int = 0
    states: Counter[str] = field(default_factory=Counter)
    moves: int = 0
    divergences: list[Divergence] = field(default_factory=list)
    #: Replayed histories of the objects that diverged (object id → placements).
    histories: dict[int, list[tuple[str, str | None, str | None]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.divergences

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "objects": self.objects,
            "events": self.events,
            "unverifiable": self.unverifiable,
            "states": dict(sorted(self.states.items())),
            "moves": self.moves,
            "divergences": [d.as_dict() for d in self.divergences],
            "histories": {str(k): [list(p) for p in v] for k, v in self.histories.items()},
        }


def _ref(row: Any) -> str:
    return ResultRef(row.tenant_id, row.namespace, row.key, row.version).uri


class _Rebuild:
    """Applies one object's events in order, noting the log's own contradictions."""

    def __init__(self, object_id: int, ref: str) -> None:
        self.obj = Replayed(object_id, ref)
        self.problems: list[Divergence] = []

    def _bad(self, what: str, log: Any, expected: Any) -> None:
        self.problems.append(Divergence(self.obj.object_id, self.obj.ref, what, log, expected))

    def apply(self, ev: Any) -> None:
        o, data, kind = self.obj, ev.data or {}, ev.kind
        at = events.iso(ev.at) or ""
        if kind == events.CREATED.name:
            if o.state is not None:
                self._bad("log: object.created twice", at, o.state)
            o.state, o.home_tier = "live", ev.tier
            o.home_store, o.locator = data.get("store", UNKNOWN), data.get("locator", UNKNOWN)
            o.size, o.stored_size = data.get("size", UNKNOWN), data.get("stored_size", UNKNOWN)
            o.sha256 = data.get("sha256", UNKNOWN)
            o.trace_id = ev.trace_id
            o.placements.append(
                (at, o.home_tier, str(o.home_store) if o.home_store is UNKNOWN else o.home_store)
            )
            return
        if o.state is None:
            self._bad(f"log: {kind} before object.created", at, None)
            return
        if kind == events.MOVED.name:
            source = (ev.from_tier, data.get("from_store", UNKNOWN), data.get("from_locator", UNKNOWN))
            if not all(map(_same, source, (o.home_tier, o.home_store, o.locator))):
                self._bad(
                    "log: object.moved from a home it was not at",
                    ":".join(map(str, source)),
                    f"{o.home_tier}:{o.home_store}:{o.locator}",
                )
            if o.state != "live":
                self._bad("log: object.moved while not live", at, o.state)
            o.home_tier = ev.tier
            o.home_store, o.locator = data.get("to_store", UNKNOWN), data.get("to_locator", UNKNOWN)
            o.placements.append(
                (at, o.home_tier, str(o.home_store) if o.home_store is UNKNOWN else o.home_store)
            )
        elif kind in (events.DELETED.name, events.EXPIRED.name):
            if o.state != "live":
                self._bad(f"log: {kind} while not live", at, o.state)
            o.state = "deleted" if kind == events.DELETED.name else "expired"
        elif kind == events.PURGED.name:
            if o.state not in ("deleted", "expired"):
                self._bad("log: object.purged while not tombstoned", at, o.state)
            seen = (data.get("store", UNKNOWN), data.get("locator", UNKNOWN), data.get("sha256", UNKNOWN))
            home = (o.home_store, o.locator, o.sha256)
            if not all(map(_same, seen, home)):
                self._bad(
                    "log: object.purged elsewhere than its home", list(map(str, seen)), list(map(str, home))
                )
            o.state = "purged"


def _stream(conn: Any, sql: str, params: dict[str, Any]) -> Iterator[Any]:
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(text(sql), params)
    yield from result


def check(engine: Engine, *, tenant: str | None = None, limit: int | None = None) -> Report:
    """Rebuild every object (of ``tenant``, or all) from the log and compare it with the catalog.

    Args:
        tenant: only this tenant's objects.
        limit: stop recording divergences after this many (the counts still cover everything).
    """
    report = Report()
    where_obj = "WHERE tenant_id = :tenant" if tenant is not None else ""
    where_ev = "object_id IS NOT NULL AND kind = ANY(CAST(:kinds AS text[]))" + (
        " AND tenant_id = :tenant" if tenant is not None else ""
    )
    params: dict[str, Any] = {"kinds": list(_REPLAYED_KINDS), "tenant": tenant}
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            oldest: datetime | None = conn.execute(text("SELECT min(at) FROM events")).scalar()
            objs = _stream(
                conn,
                "SELECT id, tenant_id, namespace, key, version, created_at, "
                + ", ".join(FIELDS)
                + f" FROM objects {where_obj} ORDER BY id",
                params,
            )
            evs = _stream(
                conn,
                "SELECT id, at, object_id, tenant_id, namespace, key, version, kind, tier, from_tier,"
                f" trace_id, data FROM events WHERE {where_ev} ORDER BY object_id, id",
                params,
            )
            _merge(report, objs, evs, oldest, limit)
    return report


def _merge(
    report: Report, objs: Iterator[Any], evs: Iterator[Any], oldest: datetime | None, limit: int | None
) -> None:
    def note(d: Divergence, rebuilt: Replayed | None) -> None:
        if limit is None or len(report.divergences) < limit:
            report.divergences.append(d)
            if rebuilt is not None:
                report.histories[d.object_id] = rebuilt.placements

    ev = next(evs, None)
    for obj in objs:
        # Events of objects the catalog does not have (objects rows are never deleted).
        while ev is not None and ev.object_id < obj.id:
            note(Divergence(ev.object_id, _ref(ev), "catalog row", "exists in the log", None), None)
            gone = ev.object_id
            while ev is not None and ev.object_id == gone:
                ev = next(evs, None)
        rebuild = _Rebuild(obj.id, _ref(obj))
        while ev is not None and ev.object_id == obj.id:
            rebuild.apply(ev)
            report.events += 1
            if ev.kind == events.MOVED.name:
                report.moves += 1
            ev = next(evs, None)
        replayed = rebuild.obj
        if replayed.state is None and oldest is not None and obj.created_at < oldest:
            report.unverifiable += 1  # created before the oldest partition retention kept
            continue
        report.objects += 1
        report.states[replayed.state or "absent from the log"] += 1
        for problem in rebuild.problems:
            note(problem, replayed)
        if replayed.state is None:
            note(Divergence(obj.id, replayed.ref, "object.created", None, "exists in the catalog"), replayed)
            continue
        for name in FIELDS:
            got, want = getattr(replayed, name), getattr(obj, name)
            if not _same(got, want):
                note(Divergence(obj.id, replayed.ref, name, got, want), replayed)
    while ev is not None:
        note(Divergence(ev.object_id, _ref(ev), "catalog row", "exists in the log", None), None)
        gone = ev.object_id
        while ev is not None and ev.object_id == gone:
            ev = next(evs, None)
