"""What the planner knows about each live object, read from the catalog.

A :class:`Row` is one live object version as policy evaluation sees it
(:class:`~liquid.policy.evaluate.ObjectFacts`: tenant, namespace, key, size, times, home,
decayed read rate, clock start, superseding) plus where its bytes are. :class:`CatalogRows`
reads them three ways, each on an index:

* :meth:`CatalogRows.scan_columns` — every live object, as column batches (a rebuild,
  which evaluates them in bulk: :mod:`liquid.policy.columns`);
* :meth:`CatalogRows.rows` — the objects with given ids (the change feed and due
  deadlines: a cycle reads only these);
* :meth:`CatalogRows.row` — one object by ref (``explain``).

The decayed score in ``access_stats`` is brought forward to ``now`` and turned into
reads/hour (:func:`liquid.access.rate_per_hour`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine

from liquid.catalog import partitions
from liquid.catalog.fastpath import conninfo
from liquid.errors import MissingDependency
from liquid.policy.columns import FactColumns
from liquid.policy.evaluate import Decision, ObjectFacts
from liquid.policy.models import TIERS, PolicySet
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _when(seconds: float) -> datetime | None:
    """A column's epoch seconds back as the datetime the catalog holds (None for NaN)."""
    if seconds != seconds:  # NaN
        return None
    return _EPOCH + timedelta(microseconds=round(seconds * 1e6))


@dataclass
class ColumnBatch:
    """Many live objects as columns: what a rebuild evaluates in bulk (see liquid.policy.columns)."""

    ids: npt.NDArray[np.int64]
    version: npt.NDArray[np.int64]
    facts: FactColumns

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, index: Sequence[int] | npt.NDArray[np.intp]) -> list[Row]:
        """The objects at ``index`` as rows (for the few a rebuild plans one by one)."""
        f = self.facts
        out = []
        for i in index:
            facts = ObjectFacts.of(
                f.tenant[i], f.namespace[i], f.key[i], int(f.size[i]), _when(f.created[i]),
                TIERS[f.home[i]], f.content_type[i], f.tags[i] or _NO_TAGS, f.classification[i],
                _when(f.last_access[i]), float(f.score[i]), int(f.hits[i]), _when(f.home_since[i]),
                bool(f.legal_hold[i]), f.scope[i], _when(f.finished[i]), _when(f.superseded[i]),
                int(f.newer_noncurrent[i]),
            )  # fmt: skip
            tier = TIERS[f.home[i]]
            out.append(Row(int(self.ids[i]), int(self.version[i]), facts, tier, int(f.size[i])))
        return out

    @classmethod
    def concat(cls, batches: Sequence[ColumnBatch]) -> ColumnBatch:
        """One batch of several (an empty one for none)."""
        if not batches:
            return cls.of_rows([])
        if len(batches) == 1:
            return batches[0]
        joined = {
            name: np.concatenate([getattr(b.facts, name) for b in batches])
            for name in (x.name for x in dataclasses.fields(FactColumns))
        }
        return cls(
            ids=np.concatenate([b.ids for b in batches]),
            version=np.concatenate([b.version for b in batches]),
            facts=FactColumns(**joined),
        )

    @classmethod
    def of_rows(cls, rows: Sequence[Row]) -> ColumnBatch:
        """Rows as columns (for sources that read row by row)."""
        return cls(
            ids=np.array([r.object_id for r in rows], dtype=np.int64),
            version=np.array([r.version for r in rows], dtype=np.int64),
            facts=FactColumns.of_facts([r.facts for r in rows]),
        )


class RowSource(Protocol):
    """Where the engine reads objects from (the catalog in production; a trace in the replay)."""

    def scan_columns(self, now: datetime, policies: PolicySet | None = None) -> Iterator[ColumnBatch]:
        """Every live object, in batches of columns (a rebuild); ``policies`` may spare unused columns."""
        ...

    def columns(self, ids: Sequence[int], now: datetime, policies: PolicySet | None = None) -> ColumnBatch:
        """The live objects among ``ids`` as columns (the others are gone): a cycle's objects."""
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
           e.finished_at, a.score, a.last_access_at, n.created_at AS superseded_at,
           {newer} AS newer_noncurrent, a.hits{extra}
    FROM objects o
    LEFT JOIN access_stats a ON a.object_id = o.id
    LEFT JOIN executions e ON e.tenant_id = o.tenant_id AND e.execution_id = o.execution_id
{superseded}"""
_SUPERSEDED_JOIN = """    LEFT JOIN objects n ON n.tenant_id = o.tenant_id AND n.namespace = o.namespace
                       AND n.key = o.key AND n.version = o.version + 1
"""
_LEAN = _LEAN.replace("{superseded}", _SUPERSEDED_JOIN)
# S3's NewerNoncurrentVersions count: live versions of the key newer than this one that are
# themselves superseded (noncurrent by the same join as superseded_at). Only a noncurrent version
# asks (n.id is NULL for the current one), on the (tenant, namespace, key, version) index, in the
# tenant's partition and the legacy one only (partitions.same_tenant_rows).
_NEWER_NONCURRENT = f"""CASE WHEN n.id IS NULL THEN 0::bigint ELSE (
             SELECT count(*) FROM objects m
             JOIN objects mn ON mn.tenant_id = m.tenant_id AND mn.namespace = m.namespace
                            AND mn.key = m.key AND mn.version = m.version + 1
                            AND {partitions.same_tenant_rows("mn.id", "o")}
             WHERE m.tenant_id = o.tenant_id AND m.namespace = o.namespace AND m.key = o.key
               AND m.version > o.version AND m.state = 'live'
               AND {partitions.same_tenant_rows("m.id", "o")}) END"""
#: ``explain`` shows a few more.
_FULL = _LEAN.replace("{extra}", ", o.home_store, o.stored_size, o.sha256")
_COLUMNS = _LEAN.replace("{extra}", "")
_SCAN_COLUMNS = (
    _COLUMNS.replace("{tags} AS tags", "{tags}::text AS tags").replace(
        "o.home_tier,", "o.home_tier::text AS home_tier,"
    )
    + " WHERE o.state = 'live'"
)
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

    def _tags_sql(self) -> str:
        # Most objects have no tags: send NULL for those rather than '{}' to decode per row.
        return "CASE WHEN o.tags = '{}'::jsonb THEN NULL ELSE o.tags END" if self.tags else "NULL::jsonb"

    def _sql(self, template: str) -> str:
        return template.replace("{tags}", self._tags_sql()).replace("{newer}", _NEWER_NONCURRENT)

    def scan_columns(
        self, now: datetime, policies: PolicySet | None = None, *, bucket: int | None = None
    ) -> Iterator[ColumnBatch]:
        """Every live object (of one tenant bucket, with ``bucket``) as column batches, read with ADBC.

        ``bucket`` (1 … ``partitions.BUCKETS``) limits the scan to that bucket's tenants: their
        partition and their rows in the legacy one (:func:`liquid.catalog.partitions.bucket_rows`).

        The driver decodes rows into Arrow columns in C, about ten times faster than Python
        row objects; memory stays one batch. No ``ORDER BY``: a rebuild needs no order, and
        sorting millions of rows costs the server more than the rest of the query. When
        ``policies`` select nothing by tags or by version, those columns are not read (finding
        each object's newer version is a join of the catalog with itself).
        """
        sql = self._lean(_SCAN_COLUMNS, policies)
        if bucket is not None:
            sql += " AND " + partitions.bucket_rows(bucket)
        adbc = _adbc()
        url = conninfo(self.engine.url.render_as_string(hide_password=False))
        with adbc.connect(url) as conn, conn.cursor() as cur:
            cur.execute(sql)
            for batch in cur.fetch_record_batch():
                if batch.num_rows:
                    yield self._columns(batch, now)

    def columns(self, ids: Sequence[int], now: datetime, policies: PolicySet | None = None) -> ColumnBatch:
        if len(ids) < 2000:  # a connection of the driver's own costs more than a few rows
            return ColumnBatch.of_rows(self.rows(ids, now))
        adbc = _adbc()
        url = conninfo(self.engine.url.render_as_string(hide_password=False))
        # The ids are integers: inlined as an array literal (the driver binds no arrays).
        literal = "{" + ",".join(str(int(i)) for i in ids) + "}"
        sql = self._lean(_SCAN_COLUMNS, policies) + f" AND o.id = ANY('{literal}'::bigint[])"
        batches = []
        with adbc.connect(url) as conn, conn.cursor() as cur:
            cur.execute(sql)
            for batch in cur.fetch_record_batch():
                if batch.num_rows:
                    batches.append(self._columns(batch, now))
        return ColumnBatch.concat(batches)

    def _lean(self, template: str, policies: PolicySet | None) -> str:
        """The query without the columns no policy reads (tags; the newer version's time)."""
        sql = self._sql(template)
        if policies is not None:
            selectors = [p.spec.selector for p in policies.tiering]
            if not any(sel.tags for sel in selectors):
                sql = sql.replace(self._tags_sql(), "NULL::jsonb")
            if all(sel.newer_noncurrent_versions is None for sel in selectors):
                sql = sql.replace(_NEWER_NONCURRENT, "0::bigint")
            if all(sel.versions == "any" for sel in selectors):
                sql = sql.replace("n.created_at AS superseded_at", "NULL::timestamptz AS superseded_at")
                sql = sql.replace(_SUPERSEDED_JOIN, "")
        return sql

    def _columns(self, batch: Any, now: datetime) -> ColumnBatch:
        def seconds(name: str) -> npt.NDArray[np.float64]:
            col = batch.column(name).cast("int64")  # microseconds since the epoch
            return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64) / 1e6

        def nullable_seconds(name: str) -> npt.NDArray[np.float64]:
            col = batch.column(name)
            values = seconds(name)
            if col.null_count:
                values[np.asarray(col.is_null().to_numpy(zero_copy_only=False))] = math.nan
            return values

        def strings(name: str) -> npt.NDArray[np.object_]:
            return np.asarray(batch.column(name).to_numpy(zero_copy_only=False), dtype=object)

        tags = strings("tags")
        parsed = np.empty(len(tags), dtype=object)
        for i, raw in enumerate(tags):
            if raw is not None:  # NULL for the many objects without tags
                parsed[i] = json.loads(raw)
        last = nullable_seconds("last_access_at")
        score = batch.column("score").to_numpy(zero_copy_only=False)
        score = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=0.0)
        h = self.half_life
        # decay() and rate_per_hour() over the column: the score brought forward to now.
        with np.errstate(invalid="ignore"):
            age = np.maximum(now.timestamp() - last, 0.0)
            rate = np.where(np.isnan(last), 0.0, score * 0.5 ** (age / h) * (math.log(2) / h * 3600.0))
        home = np.array([TIERS.index(t) for t in strings("home_tier")], dtype=np.int8)
        return ColumnBatch(
            ids=np.asarray(batch.column("id").to_numpy(), dtype=np.int64),
            version=np.asarray(batch.column("version").to_numpy(), dtype=np.int64),
            facts=FactColumns(
                tenant=strings("tenant_id"),
                namespace=strings("namespace"),
                key=strings("key"),
                size=np.asarray(batch.column("size").to_numpy(), dtype=np.int64),
                content_type=strings("content_type"),
                tags=parsed,
                classification=strings("classification"),
                created=seconds("created_at"),
                home=home,
                last_access=last,
                score=rate,
                home_since=nullable_seconds("home_since"),
                legal_hold=np.asarray(
                    batch.column("legal_hold").to_numpy(zero_copy_only=False), dtype=np.bool_
                ),
                scope=strings("scope"),
                finished=nullable_seconds("finished_at"),
                superseded=nullable_seconds("superseded_at"),
                newer_noncurrent=np.asarray(
                    batch.column("newer_noncurrent").to_numpy(zero_copy_only=False), dtype=np.int64
                ),
                hits=np.nan_to_num(
                    np.asarray(batch.column("hits").to_numpy(zero_copy_only=False), dtype=np.float64)
                ).astype(np.int64),
            ),
        )

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
             finished, score, last, superseded, newer, hits) = r[:20]  # fmt: skip
            rate = 0.0
            if score is not None and last is not None:
                # decay() and rate_per_hour() inline: this runs once per object per rebuild.
                rate = score * 0.5 ** (max(now_ts - last.timestamp(), 0.0) / h) * factor
            facts = ObjectFacts.of(
                tenant, ns, key, size, created, tier, ct, tags or _NO_TAGS, cls, last, rate,
                int(hits or 0), since, held, scope, finished, superseded, int(newer or 0),
            )  # fmt: skip
            if full:
                store, stored, sha = r[20], int(r[21]), r[22]
            else:
                store, stored, sha = tier, size, ""
            out.append(Row(oid, version, facts, store, stored, sha))
        return out


_NO_TAGS: Mapping[str, str] = MappingProxyType({})


def _adbc() -> Any:
    try:
        import adbc_driver_postgresql.dbapi as adbc
    except ImportError as exc:  # a core dependency; say what to install if it is missing
        raise MissingDependency(
            "adbc-driver-postgresql is not installed: pip install adbc-driver-postgresql"
        ) from exc
    return adbc
