"""The event log: a registry of event kinds with typed payloads, and the one way to append.

Every state change and (aggregated) access in Liquid is one row of the append-only
``events`` table, written in the same transaction as the change it records. This module
owns that table: no other module names it in an INSERT (``tests/events/test_log.py``
checks), so every writer goes through one of three doors:

* :func:`append` / :func:`append_many` — one or many :class:`NewEvent` values, validated
  against their kind's payload, in the caller's transaction (SQLAlchemy Core);
* :func:`insert_from` — the ``INSERT INTO events ... SELECT`` for set-based writers that
  log inside one statement (the object insert on the request path, batched moves,
  expirations, read aggregates); its payload is a ``jsonb_build_object`` whose keys are
  checked against the kind's payload at import time of the caller.

The envelope (columns) is the same for every kind: ``at``, ``tenant_id``, ``kind``,
``object_id``/``namespace``/``key``/``version`` (the ref), ``actor``, ``tier`` (the tier the
event concerns: written to, moved to, purged from), ``from_tier`` (a move's source),
``bytes`` (stored bytes concerned), ``count`` (reads in a ``object.read`` aggregate),
``latency_ms``, ``trace_id``/``correlation_id``/``execution_id``. What only one kind
carries lives in ``data``, whose keys are exactly the kind's :class:`Payload` fields.

Rows are ordered for export by ``(txid, id)``: ``txid`` is the writing transaction's
``pg_current_xact_id()``, so an exporter that reads only below the oldest running
transaction never skips a row that commits later (see :mod:`liquid.events.export`). The
table is partitioned by month on ``at`` (:func:`ensure_partitions`); whole partitions
are dropped once exported and older than the retention window (:func:`prune`), which is
the only way rows ever leave it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import Connection, Table, insert

from liquid.catalog.models import Event

log = logging.getLogger(__name__)

EVENTS: Table = Event.__table__  # type: ignore[assignment]

Scope = Literal["object", "tenant", "system"]


@dataclass(frozen=True, slots=True)
class Payload:
    """The ``data`` keys of one kind: each name with the JSON type its value has (or null)."""

    fields: Mapping[str, type | tuple[type, ...]]

    def check(self, kind: str, data: Mapping[str, Any]) -> None:
        missing = sorted(set(self.fields) - set(data))
        extra = sorted(set(data) - set(self.fields))
        if missing or extra:
            raise ValueError(
                f"event {kind!r}: payload keys must be {sorted(self.fields)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unexpected {extra}" if extra else "")
            )
        for name, types in self.fields.items():
            value = data[name]
            if value is not None and not isinstance(value, types):
                raise ValueError(f"event {kind!r}: {name} must be {types}, got {value!r}")


@dataclass(frozen=True, slots=True)
class EventKind:
    """One registered kind: its name, what it is about, its payload, and a line for the docs."""

    name: str
    scope: Scope
    payload: Payload
    doc: str

    def __repr__(self) -> str:
        return f"EventKind({self.name!r})"

    def __str__(self) -> str:
        return self.name


#: Every kind, by name. Register new kinds here, next to the writer's docs.
KINDS: dict[str, EventKind] = {}

_S, _I = str, int
_OPT_S: tuple[type, ...] = (str,)


def _kind(name: str, scope: Scope, doc: str, /, **fields: type | tuple[type, ...]) -> EventKind:
    if name in KINDS:
        raise ValueError(f"event kind {name!r} registered twice")
    kind = EventKind(name, scope, Payload(fields), doc)
    KINDS[name] = kind
    return kind


# ------------------------------------------------------------------ objects
CREATED: Final = _kind(
    "object.created",
    "object",
    "a new version was stored (tier = its home tier, bytes = stored size; locator is null inline)",
    size=_I,
    stored_size=_I,
    sha256=_S,
    store=_S,
    locator=_OPT_S,
)
READ: Final = _kind(
    "object.read",
    "object",
    "reads of one version within one minute (at = the minute, count = reads), from the access flush",
)
DELETED: Final = _kind("object.deleted", "object", "a version was deleted by its tenant (tombstone)")
EXPIRED: Final = _kind(
    "object.expired", "object", "retention tombstoned a version (reason names the rule)", reason=_S
)
MOVED: Final = _kind(
    "object.moved",
    "object",
    "a version's durable home switched tier (from_tier → tier); a restore is a move to a warmer tier",
    journal_id=_I,
    from_store=_S,
    from_locator=_OPT_S,
    to_store=_S,
    to_locator=_OPT_S,
    size=_I,
    reason=_OPT_S,
)
PURGED: Final = _kind(
    "object.purged",
    "object",
    "a version's bytes were deleted: the deletion receipt (what, where, when, why, checksum)",
    store=_S,
    locator=_OPT_S,
    sha256=_S,
    size=_I,
    reason=_S,
    rule=_OPT_S,
    tombstoned_at=_OPT_S,
    journal_id=_I,
)
#: What a journal row that gave up carries, for moves and purges alike.
_GAVE_UP: dict[str, type | tuple[type, ...]] = {
    "journal_id": _I,
    "step": _S,
    "attempts": _I,
    "error": _S,
    "from_store": _S,
    "to_store": _OPT_S,
    "reason": _OPT_S,
}
MOVE_FAILED: Final = _kind(
    "object.move_failed",
    "object",
    "a journaled move gave up after its attempts (the object stays where it was)",
    **_GAVE_UP,
)
PURGE_FAILED: Final = _kind(
    "object.purge_failed",
    "object",
    "a journaled purge gave up after its attempts (gc retries it)",
    **_GAVE_UP,
)
MISSING: Final = _kind(
    "object.missing",
    "object",
    "gc found no bytes at a live version's home (the catalog row is kept)",
    store=_S,
    locator=_S,
    sha256=_S,
)
# ------------------------------------------------------------------ tenants and the system
EXECUTION_FINISHED: Final = _kind(
    "execution.finished", "tenant", "a workflow execution finished (its scoped objects' clocks start)"
)
TENANT_CREATED: Final = _kind("tenant.created", "tenant", "a tenant was created")
APIKEY_CREATED: Final = _kind(
    "apikey.created",
    "tenant",
    "an API key was created (tenant NULL: operator key)",
    prefix=_S,
    role=_S,
    name=_S,
)
APIKEY_REVOKED: Final = _kind("apikey.revoked", "tenant", "an API key was revoked", prefix=_S)
AUTH_FAILED: Final = _kind(
    "auth.failed",
    "system",
    "a request presented a missing, unknown or revoked key (prefix only, never the secret)",
    prefix=_OPT_S,
    method=_S,
    path=_S,
)
REQUEST_FAILED: Final = _kind(
    "request.failed",
    "system",
    "a request ended in a server error (5xx); the message, never the body",
    method=_S,
    path=_S,
    status=_I,
    error=_S,
)
POLICY_APPLIED: Final = _kind(
    "policy.applied", "system", "a policy set was applied as a new version", version=_I, files=list
)
GC_BYTES_DELETED: Final = _kind(
    "gc.bytes_deleted",
    "system",
    "gc deleted bytes no catalog row or journal row referenced (past the grace period)",
    store=_S,
    locator=_S,
    modified=_OPT_S,
    grace_seconds=float,
    rule=_S,
)


def kind_of(name: str | EventKind) -> EventKind:
    """The registered kind of that name; ValueError naming the known kinds otherwise."""
    if isinstance(name, EventKind):
        return name
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown event kind {name!r}; known: {', '.join(sorted(KINDS))}") from None


def kinds_matching(patterns: Iterable[str]) -> list[str]:
    """Kind names for filters such as ``move``, ``purge``, ``object.read`` or ``apikey.*``."""
    out: list[str] = []
    for raw in patterns:
        p = raw.strip()
        if not p:
            continue
        if p in KINDS:
            matched = [p]
        elif p.endswith(".*"):
            matched = [k for k in KINDS if k.startswith(p[:-1])]
        else:  # a short name: "move" → object.moved, object.move_failed
            matched = [k for k in KINDS if k.split(".", 1)[-1].startswith(p)]
        if not matched:
            raise ValueError(f"no event kind matches {p!r}; known: {', '.join(sorted(KINDS))}")
        out += [m for m in matched if m not in out]
    return out


# ------------------------------------------------------------------ appending

#: The envelope columns every event has, in the order :func:`insert_from` writes them.
COLUMNS: tuple[str, ...] = (
    "at",
    "tenant_id",
    "kind",
    "object_id",
    "namespace",
    "key",
    "version",
    "actor",
    "tier",
    "from_tier",
    "bytes",
    "count",
    "latency_ms",
    "trace_id",
    "correlation_id",
    "execution_id",
    "data",
)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event to append. ``kind`` is a registered kind; ``data`` its payload, exactly."""

    kind: EventKind
    at: datetime
    tenant_id: str | None = None
    object_id: int | None = None
    namespace: str | None = None
    key: str | None = None
    version: int | None = None
    actor: str | None = None
    tier: str | None = None
    from_tier: str | None = None
    bytes: int | None = None
    count: int | None = None
    latency_ms: float | None = None
    trace_id: str | None = None
    correlation_id: str | None = None
    execution_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def about(cls, kind: EventKind, obj: Any, *, at: datetime, **kw: Any) -> NewEvent:
        """An event about an object row (anything with the ``objects`` columns as attributes)."""
        return cls(
            kind,
            at,
            tenant_id=obj.tenant_id,
            object_id=obj.id,
            namespace=obj.namespace,
            key=obj.key,
            version=obj.version,
            trace_id=getattr(obj, "trace_id", None),
            correlation_id=getattr(obj, "correlation_id", None),
            execution_id=getattr(obj, "execution_id", None),
            **kw,
        )

    def row(self) -> dict[str, Any]:
        if self.at.tzinfo is None:
            raise ValueError(f"event {self.kind.name!r}: at must be timezone-aware, got {self.at!r}")
        self.kind.payload.check(self.kind.name, self.data)
        if self.kind.scope == "object" and self.object_id is None:
            raise ValueError(f"event {self.kind.name!r} is about an object: object_id is required")
        values = {name: getattr(self, name) for name in COLUMNS}
        values["kind"] = self.kind.name
        values["data"] = dict(self.data)
        return values


def append(conn: Connection, event: NewEvent) -> None:
    """Append one event in the caller's transaction (it commits or rolls back with the change)."""
    conn.execute(insert(EVENTS), [event.row()])


def append_many(conn: Connection, events: Sequence[NewEvent]) -> None:
    """Append several events in one round trip, in the caller's transaction."""
    if events:
        conn.execute(insert(EVENTS), [e.row() for e in events])


#: :func:`insert_from` columns for a source with the ``objects`` columns (id, tenant_id, ...).
OBJECT_EXPRS: Mapping[str, str] = {
    "tenant_id": "tenant_id",
    "object_id": "id",
    "namespace": "namespace",
    "key": "key",
    "version": "version",
    "tier": "home_tier",
    "bytes": "stored_size",
    "trace_id": "trace_id",
    "correlation_id": "correlation_id",
    "execution_id": "execution_id",
}


def insert_from(
    source: str,
    kind: EventKind,
    *,
    at: str,
    data: Mapping[str, str] | None = None,
    order_by: str | None = None,
    **columns: str,
) -> str:
    """SQL appending one event of ``kind`` per row of ``source`` (a CTE name or a FROM clause).

    Each keyword names an envelope column and gives its SQL expression over ``source``
    (columns not given are NULL); ``data`` gives one SQL expression per payload key and
    must name exactly the kind's payload keys, so set-based writers log the same shape
    as :func:`append`. Example, inside a CTE::

        insert_from("moved", MOVED, at=":now", tenant_id="tenant_id", object_id="object_id", ...,
                    data={"journal_id": "journal_id", ...})
    """
    unknown = sorted(set(columns) - set(COLUMNS))
    if unknown or "kind" in columns or "data" in columns:
        raise ValueError(f"insert_from({kind.name!r}): not envelope columns: {unknown or ['kind/data']}")
    exprs = dict(data or {})
    if set(exprs) != set(kind.payload.fields):
        raise ValueError(
            f"insert_from({kind.name!r}): payload keys must be {sorted(kind.payload.fields)}, "
            f"got {sorted(exprs)}"
        )
    payload = (
        "jsonb_build_object(" + ", ".join(f"'{k}', {v}" for k, v in sorted(exprs.items())) + ")"
        if exprs
        else "'{}'::jsonb"
    )
    values = {"at": at, "kind": f"'{kind.name}'", "data": payload, **columns}
    select = ", ".join(values.get(c, "NULL") for c in COLUMNS)
    order = f" ORDER BY {order_by}" if order_by else ""
    return f"INSERT INTO events ({', '.join(COLUMNS)}) SELECT {select} FROM {source}{order}"


def iso(value: datetime | None) -> str | None:
    """A timestamp as payloads carry it (ISO 8601, UTC)."""
    return value.astimezone(UTC).isoformat() if value is not None else None


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
