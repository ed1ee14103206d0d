"""What the planner knows about each live object, read from the catalog.

A :class:`Row` is one live object version as policy evaluation sees it
(:class:`~liquid.policy.evaluate.ObjectFacts`: tenant, namespace, key, size, times, home,
decayed read rate, clock start, superseding) plus where its bytes are. :class:`CatalogRows`
reads them three ways, each on an index:

* :meth:`CatalogRows.scan` — every live object in id order, streamed through a
  server-side cursor (a rebuild);
* :meth:`CatalogRows.rows` — the objects with given ids (the change feed and due
  deadlines: a cycle reads only these);
* :meth:`CatalogRows.row` — one object by ref (``explain``).

The decayed score in ``access_stats`` is brought forward to ``now`` and turned into
reads/hour (:func:`liquid.access.rate_per_hour`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol

from sqlalchemy import Engine

from liquid.policy.evaluate import Decision, ObjectFacts
from liquid.refs import ResultRef, format_uri


@dataclass(slots=True)
class Row:
    """One live object as the planner sees it."""

    object_id: int
    version: int
    facts: ObjectFacts
    home_store: str
    stored_size: int
    sha256: str = ""
    decision: Decision | None = None
    #: Durable tier the object should end in (never ``hot``) and whether it gets a hot copy.
    target: str = ""
    hot: bool = False
    rate: float = 0.0

    @property
    def uri(self) -> str:
        f = self.facts  # the catalog's parts are valid: no need to check them again
        return format_uri(f.tenant, f.namespace, f.key, self.version)

    @property
    def ref(self) -> ResultRef:
        f = self.facts
        return ResultRef(f.tenant, f.namespace, f.key, self.version)


class RowSource(Protocol):
    """Where the engine reads objects from (the catalog in production; a trace in the replay)."""

    def scan(self, now: datetime) -> Iterator[list[Row]]:
        """Every live object, in batches, in id order."""
        ...

    def rows(self, ids: Sequence[int], now: datetime) -> list[Row]:
        """The live objects among ``ids`` (the others are gone)."""
        ...

    def predecessors(self, rows: Sequence[Row], now: datetime) -> list[Row]:
        """The live previous versions of these rows (a new version supersedes its predecessor)."""
        ...


# What planning reads: the columns evaluation and the budgets use, and no more (parsing a
# column costs about a microsecond per row; a rebuild reads every live object).
_LEAN = """
    SELECT o.id, o.tenant_id, o.namespace, o.key, o.version, o.size, o.content_type, {tags} AS tags,
           o.classification, o.created_at, o.home_tier, o.home_since, o.legal_hold, o.scope,
           e.finished_at, a.score, a.last_access_at, n.created_at AS superseded_at{extra}
    FROM objects o
    LEFT JOIN access_stats a ON a.object_id = o.id
    LEFT JOIN executions e ON e.tenant_id = o.tenant_id AND e.execution_id = o.execution_id
    LEFT JOIN objects n ON n.tenant_id = o.tenant_id AND n.namespace = o.namespace
                       AND n.key = o.key AND n.version = o.version + 1
"""
#: ``explain`` shows a few more.
_FULL = _LEAN.replace("{extra}", ", o.home_store, o.stored_size, o.sha256, a.hits")
_COLUMNS = _LEAN.replace("{extra}", "")
_SCAN = _COLUMNS + " WHERE o.state = 'live' ORDER BY o.id"
_BY_IDS = _COLUMNS + " WHERE o.id = ANY(%(ids)s) AND o.state = 'live' ORDER BY o.id"
_BY_REF = (
    _FULL + " WHERE o.tenant_id = %(t)s AND o.namespace = %(n)s AND o.key = %(k)s AND o.version = %(v)s"
    " AND o.state = 'live'"
)
_PREDECESSORS = (
    _COLUMNS + " JOIN unnest(%(t)s::text[], %(n)s::text[], %(k)s::text[], %(v)s::int[]) AS p(t, n, k, v)"
    " ON o.tenant_id = p.t AND o.namespace = p.n AND o.key = p.k AND o.version = p.v"
    " WHERE o.state = 'live' ORDER BY o.id"
)


class CatalogRows:
    """Rows from the catalog (see the module docstring).

    Args:
        engine: the catalog.
        half_life: the tracker's half-life (``access.half_life``), to decay scores to ``now``.
        batch: rows per batch of a scan, and ids per query of :meth:`rows`.
        tags: read each object's tags (skip them when no selector uses tags: decoding
            JSON is the costliest column).
    """

    def __init__(self, engine: Engine, *, half_life: float, batch: int = 10_000, tags: bool = True) -> None:
        self.engine = engine
        self.half_life = half_life
        self.batch = batch
        self.tags = tags

    def __repr__(self) -> str:
        return f"CatalogRows(batch={self.batch}, tags={self.tags})"

    def _sql(self, template: str) -> str:
        # Most objects have no tags: send NULL for those rather than '{}' to decode per row.
        tags = "CASE WHEN o.tags = '{}'::jsonb THEN NULL ELSE o.tags END" if self.tags else "NULL::jsonb"
        return template.replace("{tags}", tags)

    def scan(self, now: datetime) -> Iterator[list[Row]]:
        conn = self.engine.raw_connection()
        try:
            pg: Any = conn.driver_connection
            # A server-side cursor: the catalog streams in batches, memory stays one batch.
            with pg.transaction(), pg.cursor(name="liquid_scan", binary=True) as cur:
                cur.itersize = self.batch
                cur.execute(self._sql(_SCAN))
                while True:
                    got = cur.fetchmany(self.batch)
                    if not got:
                        return
                    yield self._convert(got, now)
        finally:
            conn.close()

    def rows(self, ids: Sequence[int], now: datetime) -> list[Row]:
        out: list[Row] = []
        for i in range(0, len(ids), self.batch):
            out += self._query(_BY_IDS, {"ids": list(ids[i : i + self.batch])}, now)
        return out

    def row(self, ref: ResultRef, now: datetime) -> Row | None:
        """One live object's row, or None."""
        params = {"t": ref.tenant, "n": ref.namespace, "k": ref.key, "v": ref.version}
        found = self._query(_BY_REF, params, now, full=True)
        return found[0] if found else None

    def predecessors(self, rows: Sequence[Row], now: datetime) -> list[Row]:
        newer = [r for r in rows if r.version > 1]
        if not newer:
            return []
        params = {
            "t": [r.facts.tenant for r in newer],
            "n": [r.facts.namespace for r in newer],
            "k": [r.facts.key for r in newer],
            "v": [r.version - 1 for r in newer],
        }
        return self._query(_PREDECESSORS, params, now)

    def _query(
        self, template: str, params: dict[str, Any], now: datetime, *, full: bool = False
    ) -> list[Row]:
        conn = self.engine.raw_connection()
        try:
            pg: Any = conn.driver_connection
            with pg.cursor(binary=True) as cur:
                cur.execute(self._sql(template), params)
                got = cur.fetchall()
            conn.commit()
        finally:
            conn.close()
        return self._convert(got, now, full=full)

    def _convert(self, got: Sequence[Any], now: datetime, *, full: bool = False) -> list[Row]:
        # Positional columns (see _LEAN): a tuple index is cheaper than a named attribute.
        factor = math.log(2) / self.half_life * 3600.0
        now_ts = now.timestamp()
        h = self.half_life
        out = []
        for r in got:
            (oid, tenant, ns, key, version, size, ct, tags, cls, created, tier, since, held, scope,
             finished, score, last, superseded) = r[:18]  # fmt: skip
            rate = 0.0
            if score is not None and last is not None:
                # decay() and rate_per_hour() inline: this runs once per object per rebuild.
                rate = score * 0.5 ** (max(now_ts - last.timestamp(), 0.0) / h) * factor
            facts = ObjectFacts(
                tenant=tenant,
                namespace=ns,
                key=key,
                size=size,
                created_at=created,
                home_tier=tier,
                content_type=ct,
                tags=tags or _NO_TAGS,
                classification=cls,
                last_access_at=last,
                access_score=rate,
                hits=int(r[21] or 0) if full else 0,
                home_since=since,
                legal_hold=held,
                scope=scope,
                execution_finished_at=finished,
                superseded_at=superseded,
            )
            if full:
                store, stored, sha = r[18], int(r[19]), r[20]
            else:
                store, stored, sha = tier, size, ""
            out.append(Row(oid, version, facts, store, stored, sha))
        return out


_NO_TAGS: Mapping[str, str] = MappingProxyType({})
