"""Event history for operators: filtered, paginated pages of the log, and a tail that follows it.

``GET /v1/events`` and ``liquid events tail`` both read through here. A page is ordered by
event id (newest first by default) and carries an opaque cursor to the next one. Ids are
the order events were *appended*, not the order their transactions committed, so a page
walk can miss an event whose transaction committed after the walk passed its id — fine for
browsing. :func:`follow` is exact: like the exporter (:mod:`liquid.events.export`) it reads
only below the snapshot horizon, the transactions that have all ended, one window of
transaction ids at a time, so a followed tail never skips an event. One long-running
transaction elsewhere holds the tail back until it ends.

Example::

    q = EventQuery(tenant="acme", kinds=kinds_matching(["move", "purge"]), limit=50)
    page = read_page(engine, q)          # the 50 newest moves and purges of tenant acme
    page = read_page(engine, q, cursor=page.next_cursor)   # the 50 before those
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, text

from liquid.catalog import db
from liquid.errors import InvalidInput, InvalidRef
from liquid.events.log import iso
from liquid.refs import ResultRef

Order = Literal["asc", "desc"]

#: The most events one page returns.
MAX_LIMIT = 1000

_COLUMNS = (
    "id, at, txid, tenant_id, kind, object_id, namespace, key, version, actor, tier, from_tier, bytes,"
    " count, latency_ms, trace_id, correlation_id, execution_id, data"
)
_HORIZON = text("SELECT (pg_snapshot_xmin(pg_current_snapshot()))::text::bigint")


@dataclass(frozen=True, slots=True)
class RefFilter:
    """Events about one key (every version) or one version of it."""

    tenant: str
    namespace: str
    key: str
    version: int | None = None

    @classmethod
    def parse(cls, value: str) -> RefFilter:
        """A ref with or without its ``@version``.

        Example: ``liquid://acme/docs/a.txt@3`` (that version), ``liquid://acme/docs/a.txt`` (all).
        """
        try:
            ref = ResultRef.parse(value)
            return cls(ref.tenant, ref.namespace, ref.key, ref.version)
        except InvalidRef:
            if not isinstance(value, str) or "@" in value.rsplit("/", 1)[-1]:
                raise
        ref = ResultRef.parse(value + "@1")
        return cls(ref.tenant, ref.namespace, ref.key, None)

    def __str__(self) -> str:
        base = ResultRef(self.tenant, self.namespace, self.key, self.version or 1).uri
        return base if self.version is not None else base.rpartition("@")[0]


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Which events: a tenant (None: every tenant and the system's), kinds, a ref, a time range.

    ``start`` is inclusive, ``end`` exclusive; both timezone-aware.
    """

    tenant: str | None = None
    kinds: Sequence[str] = ()
    ref: RefFilter | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int = 100
    order: Order = "desc"

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be 1..{MAX_LIMIT}, got {self.limit}", field="limit")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise InvalidInput(f"{name} must carry a UTC offset, got {value.isoformat()}", field=name)
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise InvalidInput(
                f"the time range is empty: to ({self.end.isoformat()}) is not after from"
                f" ({self.start.isoformat()})",
                field="to",
            )
        if self.ref is not None and self.tenant is not None and self.ref.tenant != self.tenant:
            raise InvalidInput(
                f"ref {self.ref} is not in tenant {self.tenant!r}", field="ref"
            )  # callers check access first; this guards the query itself

    def where(self) -> tuple[list[str], dict[str, Any]]:
        clauses: list[str] = []
        params: dict[str, Any] = {}
        tenant = self.ref.tenant if self.ref is not None else self.tenant
        if tenant is not None:
            clauses.append("tenant_id = :tenant")
            params["tenant"] = tenant
        if self.kinds:
            clauses.append("kind = ANY(CAST(:kinds AS text[]))")
            params["kinds"] = list(self.kinds)
        if self.ref is not None:
            clauses.append("namespace = :namespace AND key = :key")
            params |= {"namespace": self.ref.namespace, "key": self.ref.key}
            if self.ref.version is not None:
                clauses.append("version = :version")
                params["version"] = self.ref.version
        if self.start is not None:
            clauses.append("at >= :start")
            params["start"] = self.start
        if self.end is not None:
            clauses.append("at < :end")
            params["end"] = self.end
        return clauses, params


@dataclass(frozen=True, slots=True)
class Page:
    """One page of events and the cursor to the next (None: this was the last)."""

    events: list[dict[str, Any]]
    next_cursor: str | None
    order: Order = "desc"

    def as_dict(self) -> dict[str, Any]:
        return {"order": self.order, "events": self.events, "next_cursor": self.next_cursor}


def _cursor(order: Order, event_id: int) -> str:
    return f"{order}.{event_id}"


def parse_cursor(cursor: str, order: Order) -> int:
    """The event id a cursor points past; InvalidInput if it is malformed or for the other order."""
    got, _, number = cursor.partition(".")
    if got not in ("asc", "desc") or not number.isdigit() or len(number) > 19:
        raise InvalidInput(f"cursor {cursor[:40]!r} is not one this API returned", field="cursor")
    if got != order:
        raise InvalidInput(
            f"cursor {cursor!r} pages order={got}; ask with order={got} or drop the cursor", field="cursor"
        )
    return int(number)


def event_json(row: Any) -> dict[str, Any]:
    """One event as the API and the CLI show it (the ref in URI form for object events)."""
    ref = (
        ResultRef(row.tenant_id, row.namespace, row.key, row.version).uri
        if row.namespace is not None and row.key is not None and row.version is not None
        else None
    )
    return {
        "id": row.id,
        "at": iso(row.at),
        "kind": row.kind,
        "tenant": row.tenant_id,
        "ref": ref,
        "object_id": row.object_id,
        "actor": row.actor,
        "tier": row.tier,
        "from_tier": row.from_tier,
        "bytes": row.bytes,
        "count": row.count,
        "latency_ms": row.latency_ms,
        "trace_id": row.trace_id,
        "correlation_id": row.correlation_id,
        "execution_id": row.execution_id,
        "data": row.data,
    }


def read_page(engine: Engine, query: EventQuery, *, cursor: str | None = None) -> Page:
    """At most ``query.limit`` events in id order, starting past ``cursor`` if given."""
    clauses, params = query.where()
    if cursor is not None:
        clauses.append("id < :cursor" if query.order == "desc" else "id > :cursor")
        params["cursor"] = parse_cursor(cursor, query.order)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = text(f"SELECT {_COLUMNS} FROM events {where} ORDER BY id {query.order.upper()} LIMIT :limit")
    with db.reading(engine) as conn:
        rows = conn.execute(sql, {**params, "limit": query.limit + 1}).all()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    nxt = _cursor(query.order, rows[-1].id) if more and rows else None
    return Page([event_json(r) for r in rows], nxt, query.order)


def horizon(engine: Engine) -> int:
    """The oldest transaction id still running: every event below it is final."""
    with db.reading(engine) as conn:
        return int(conn.execute(_HORIZON).scalar_one())


def follow(
    engine: Engine,
    query: EventQuery,
    *,
    since: int,
    poll: float = 1.0,
    stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], object] = time.sleep,
) -> Iterator[dict[str, Any]]:
    """Events whose transaction ended after the horizon ``since``, in commit-safe order, forever.

    Each poll reads the transactions between the previous horizon and the current one (all
    ended), ordered by ``(txid, id)``: nothing is skipped and nothing repeats. Stops when
    ``stop()`` says so.
    """
    clauses, params = query.where()
    clauses += ["txid >= :lo", "txid < :hi"]
    sql = text(f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(clauses)} ORDER BY txid, id")
    lo = since
    while not stop():
        hi = horizon(engine)
        if hi > lo:
            with db.reading(engine) as conn:
                rows = conn.execute(sql, {**params, "lo": lo, "hi": hi}).all()
            for row in rows:
                yield event_json(row)
            lo = hi
        if stop():
            return
        sleep(poll)


def tail(engine: Engine, query: EventQuery) -> tuple[list[dict[str, Any]], int]:
    """The ``query.limit`` latest final events, oldest first, and the horizon to follow from."""
    since = horizon(engine)
    clauses, params = query.where()
    clauses.append("txid < :hi")
    sql = text(f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT :limit")
    with db.reading(engine) as conn:
        rows = conn.execute(sql, {**params, "hi": since, "limit": query.limit}).all()
    return [event_json(r) for r in reversed(rows)], since
