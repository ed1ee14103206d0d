"""pgvector in the catalog database: the default vector index.

Embeddings live in the catalog's ``object_vectors`` table (migration 0009), so a purge
removes them in the same transaction that marks their object purged
(:func:`liquid.purge.purge`). pgvector indexes one dimension per HNSW index, so each
(dimension, metric) pair gets a partial expression index, made when a namespace first
uses the pair::

    CREATE INDEX ix_object_vectors_hnsw_cosine_384 ON object_vectors
      USING hnsw ((embedding::vector(384)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)
      WHERE dims = 384 AND metric = 'cosine'

and every query names the same cast and predicate as literals (a bound parameter would
not prove the partial index's predicate under a generic plan). ``tenant_id`` is always a
condition of the query this module builds; :class:`~liquid.vectors.base.VectorFilter`
can only add conditions. Searches run with ``hnsw.iterative_scan = strict_order`` so a
selective filter still finds ``k`` matches when they exist; those settings are session settings
of the pooled connection, set when they change, so a search is one round trip.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.dialects.postgresql import insert

from liquid.catalog import db
from liquid.catalog.models import ObjectVector
from liquid.config import CATALOG_STORE, VectorSettings
from liquid.errors import DimensionMismatch, InvalidInput
from liquid.vectors.base import (
    Metric,
    VectorFilter,
    VectorHit,
    VectorRecord,
    VectorSpace,
    check_dims,
    check_metric,
)

#: metric -> (operator, operator class)
OPS: dict[str, tuple[str, str]] = {
    "cosine": ("<=>", "vector_cosine_ops"),
    "l2": ("<->", "vector_l2_ops"),
    "ip": ("<#>", "vector_ip_ops"),
}
_SPACE_LOCK = 0x6C717663  # advisory lock key: one space/index creation at a time


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _score(metric: str, distance: float) -> float:
    """pgvector's distance as a higher-is-closer score (``<#>`` is the negated inner product)."""
    if metric == "cosine":
        return 1.0 - distance
    return -distance


class PgVectorIndex:
    """HNSW vector search in the catalog database (see the module docstring).

    Args:
        engine: the catalog engine (migrated to 0009 or later).
        settings: HNSW build parameters, the default metric and ``ef_search``.
        name: the name queries use for this index.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        settings: VectorSettings,
        name: str = CATALOG_STORE,
        inline_threshold: int = 4096,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.name = name
        self.inline_threshold = inline_threshold
        self.clock = clock
        # A space never changes once fixed, so a query need not read it again (bounded, not evicted).
        self._spaces: dict[tuple[str, str], VectorSpace] = {}

    def __repr__(self) -> str:
        return (
            f"PgVectorIndex(name={self.name!r}, db={self.engine.url.render_as_string(hide_password=True)!r})"
        )

    def close(self) -> None:
        """Nothing to close: the catalog engine belongs to the service."""

    # ------------------------------------------------------------------ spaces

    def space(self, tenant: str, namespace: str) -> VectorSpace | None:
        cached = self._spaces.get((tenant, namespace))
        if cached is not None:
            return cached
        with self.engine.connect() as conn:
            row = conn.execute(
                text("SELECT dims, metric FROM vector_spaces WHERE tenant_id = :t AND namespace = :ns"),
                {"t": tenant, "ns": namespace},
            ).first()
        if row is None:
            return None
        if len(self._spaces) >= 100_000:
            self._spaces.clear()
        space = self._spaces[(tenant, namespace)] = VectorSpace(row.dims, row.metric)
        return space

    def _fix_space(
        self, conn: Any, tenant: str, namespace: str, dims: int, metric: Metric | None
    ) -> VectorSpace:
        """The namespace's space, fixing it (and making its HNSW index) on the first write."""
        row = conn.execute(
            text("SELECT dims, metric FROM vector_spaces WHERE tenant_id = :t AND namespace = :ns"),
            {"t": tenant, "ns": namespace},
        ).first()
        if row is None:
            chosen = metric or self.settings.metric
            # Serialised: two first writes of one namespace must agree, and CREATE INDEX IF NOT
            # EXISTS is not safe against a concurrent twin.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SPACE_LOCK})
            conn.execute(
                text(
                    "INSERT INTO vector_spaces (tenant_id, namespace, dims, metric)"
                    " VALUES (:t, :ns, :d, :m) ON CONFLICT DO NOTHING"
                ),
                {"t": tenant, "ns": namespace, "d": dims, "m": chosen},
            )
            row = conn.execute(
                text("SELECT dims, metric FROM vector_spaces WHERE tenant_id = :t AND namespace = :ns"),
                {"t": tenant, "ns": namespace},
            ).one()
            self._ensure_hnsw(conn, int(row.dims), row.metric)
        space = VectorSpace(int(row.dims), row.metric)
        if metric is not None and metric != space.metric:
            raise InvalidInput(
                f"namespace {namespace!r} was fixed with metric {space.metric!r} by its first write;"
                f" got {metric!r}",
                field="metric",
            )
        return space

    def _ensure_hnsw(self, conn: Any, dims: int, metric: str) -> None:
        opclass = OPS[metric][1]
        name = f"ix_object_vectors_hnsw_{metric}_{dims}"
        # Looked up first: CREATE INDEX takes a SHARE lock on the table even when the index exists,
        # which would make every new namespace wait for (and block) all vector writes.
        if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None:
            return
        conn.execute(
            text(
                f"CREATE INDEX IF NOT EXISTS {name} ON object_vectors"
                f" USING hnsw ((embedding::vector({dims})) {opclass})"
                f" WITH (m = {self.settings.hnsw_m}, ef_construction = {self.settings.hnsw_ef_construction})"
                f" WHERE dims = {dims} AND metric = '{metric}'"
            )
        )

    # ------------------------------------------------------------------ writes

    def add(self, tenant: str, records: Sequence[VectorRecord], *, metric: Metric | None = None) -> int:
        if metric is not None:
            check_metric(metric)
        if not records:
            return 0
        with self.engine.begin() as conn:
            spaces: dict[str, VectorSpace] = {}
            rows: list[dict[str, Any]] = []
            for i, r in enumerate(records):
                space = spaces.get(r.namespace)
                if space is None:
                    space = spaces[r.namespace] = self._fix_space(
                        conn, tenant, r.namespace, len(r.vector), metric
                    )
                check_dims(space, len(r.vector), r.namespace, field=f"embeddings[{i}].vector")
                rows.append(
                    {
                        "tenant_id": tenant,
                        "namespace": r.namespace,
                        "object_id": r.object_id,
                        "chunk_id": r.chunk_id,
                        "span_start": r.span[0] if r.span else None,
                        "span_end": r.span[1] if r.span else None,
                        "dims": space.dims,
                        "metric": space.metric,
                        "tags": dict(r.tags),
                        "content_type": r.content_type,
                        "classification": r.classification,
                        "embedding": r.vector,
                    }
                )
            stmt = insert(ObjectVector)
            stmt = stmt.on_conflict_do_update(
                constraint="uq_object_vectors_chunk",
                set_={
                    c: stmt.excluded[c]
                    for c in ("span_start", "span_end", "dims", "metric", "tags", "embedding")
                },
            )
            conn.execute(stmt, rows)
        return len(rows)

    def delete_objects(self, tenant: str, object_ids: Sequence[int]) -> int:
        if not object_ids:
            return 0
        with self.engine.begin() as conn:
            result = conn.execute(
                text("DELETE FROM object_vectors WHERE tenant_id = :t AND object_id = ANY(:ids)"),
                {"t": tenant, "ids": list(object_ids)},
            )
        return int(result.rowcount or 0)

    # ------------------------------------------------------------------ search

    def search(
        self,
        tenant: str,
        vector: Sequence[float],
        *,
        k: int,
        where: VectorFilter,
        ef_search: int | None = None,
    ) -> list[VectorHit]:
        sql, params, metric = self.query(tenant, vector, k=k, where=where)
        if metric is None:
            return []
        ef = max(int(ef_search or self.settings.ef_search), int(k))
        # Literals, validated ints: SET does not take parameters.
        hnsw = f"hnsw.ef_search = {ef}; SET {{local}}hnsw.iterative_scan = strict_order"
        if db.pooler(self.engine) == "transaction":
            # The next transaction may run on another server session: the settings live and die
            # with this one (SET LOCAL), at the price of BEGIN and COMMIT round trips.
            with self.engine.begin() as conn:
                conn.exec_driver_sql("SET LOCAL " + hnsw.format(local="LOCAL "))
                rows = conn.execute(text(sql), params).all()
        else:
            # One round trip: a read-only statement in autocommit, on a connection whose session
            # already has these HNSW settings (they touch nothing but HNSW scans, so they may stay
            # on a pooled connection; each connection remembers what it was given).
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                wanted = (ef, "strict_order")
                if conn.info.get("liquid_hnsw") != wanted:
                    conn.exec_driver_sql("SET " + hnsw.format(local=""))
                    conn.info["liquid_hnsw"] = wanted
                rows = conn.execute(text(sql), params).all()
        return [
            VectorHit(
                object_id=r.object_id,
                chunk_id=r.chunk_id,
                span=None if r.span_start is None else (r.span_start, r.span_end),
                score=_score(metric, float(r.distance)),
                live_row=r,
            )
            for r in rows
        ]

    def query(
        self, tenant: str, vector: Sequence[float], *, k: int, where: VectorFilter
    ) -> tuple[str, dict[str, Any], str | None]:
        """The SQL a search runs, its parameters and its metric (None: the tenant has no vectors yet).

        Public so the benchmark can time the very statement the API runs, without the API.
        """
        dims = len(vector)
        if where.namespace is not None:
            space = self.space(tenant, where.namespace)
            if space is None:
                return "", {}, None
            check_dims(space, dims, where.namespace)
            metric: str = space.metric
        else:
            with self.engine.connect() as conn:
                found = conn.execute(
                    text("SELECT DISTINCT dims, metric FROM vector_spaces WHERE tenant_id = :t"),
                    {"t": tenant},
                ).all()
            if not found:
                return "", {}, None
            metrics = sorted({m for d, m in found if d == dims})
            if not metrics:
                have = ", ".join(sorted({str(d) for d, _ in found}))
                raise DimensionMismatch(
                    f"vector has {dims} dimensions but this tenant's embeddings have {have};"
                    " embed with the same model",
                    field="vector",
                )
            if len(metrics) > 1:
                raise InvalidInput(
                    f"{dims}-dimensional embeddings of this tenant use several metrics"
                    f" ({', '.join(metrics)}); name a namespace",
                    field="namespace",
                )
            metric = metrics[0]
        op = OPS[metric][0]
        conds = [f"dims = {dims}", f"metric = '{metric}'", "tenant_id = :tenant"]
        params: dict[str, Any] = {
            "tenant": tenant,
            "q": _literal(vector),
            "k": k,
            "inline": self.inline_threshold,
            "now": self.clock(),
        }
        if where.namespace is not None:
            conds.append("namespace = :namespace")
            params["namespace"] = where.namespace
        if where.tags:
            conds.append("tags @> CAST(:tags AS jsonb)")
            params["tags"] = json.dumps(dict(where.tags))
        if where.content_type is not None:
            conds.append("content_type = :content_type")
            params["content_type"] = where.content_type
        if where.classification is not None:
            conds.append("classification = :classification")
            params["classification"] = where.classification
        distance = f"embedding::vector({dims}) {op} CAST(:q AS vector({dims}))"
        # The k nearest, then their objects (live, this tenant's) in the same round trip: the
        # catalog is this database, so the liveness check and the refs' facts cost one join.
        sql = (
            f"SELECT v.object_id, v.chunk_id, v.span_start, v.span_end, v.distance, o.namespace, o.key,"
            f" o.version, o.size, o.sha256, o.content_type, o.tags, o.classification, o.created_at,"
            f" CASE WHEN o.size < :inline THEN o.inline_data END AS inline_data"
            f" FROM (SELECT object_id, chunk_id, span_start, span_end, {distance} AS distance"
            f" FROM object_vectors WHERE {' AND '.join(conds)} ORDER BY {distance} LIMIT :k) v"
            f" JOIN objects o ON o.id = v.object_id AND o.tenant_id = :tenant AND o.state = 'live'"
            f" AND (o.expires_at IS NULL OR o.expires_at > :now)"
            f" ORDER BY v.distance"
        )
        return sql, params, metric


def _literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(map(repr, map(float, vector))) + "]"
