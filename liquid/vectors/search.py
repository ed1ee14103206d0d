"""Vector search put to work: attach embeddings to object versions, search them, sweep purged ones.

:class:`VectorSearch` sits above the catalog and the indexes. It turns refs into
:class:`~liquid.vectors.base.VectorRecord` s (copying the version's tags, content type
and classification for filters) and turns :class:`~liquid.vectors.base.VectorHit` s back
into scored ResultRefs, checking each against the catalog: a hit whose object is not
live for this tenant (deleted, expired, purged) is never returned, whatever an index
still holds.

Purges remove vectors on the one purge path (:func:`liquid.purge.purge`): pgvector rows in
the purge's transaction, and for an external index a posting stamped ``purged_at`` that
:meth:`VectorSearch.sweep` turns into deletes there.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, text

from liquid.access import AccessTracker
from liquid.catalog import db, partitions
from liquid.config import CATALOG_STORE, Settings
from liquid.errors import InvalidInput, LiquidError, ObjectGone, ObjectNotFound
from liquid.refs import RefInfo, ResultRef, check_slug, format_uri
from liquid.vectors import open_index
from liquid.vectors.base import (
    Embedding,
    Metric,
    VectorFilter,
    VectorHit,
    VectorIndex,
    VectorRecord,
    check_embedding,
    check_metric,
    check_vector,
)
from liquid.vectors.pgvector import PgVectorIndex

log = logging.getLogger(__name__)
#: The most hits a search asks an external index for while dead postings (expired or deleted
#: objects not yet swept) push live ones out of the top k (see :meth:`VectorSearch.search`).
OVERFETCH_MAX = 10_000
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One search hit: the ref (with its value inline when small), how close, and the object's metadata."""

    ref: RefInfo
    score: float
    chunk_id: str
    span: tuple[int, int] | None
    tags: dict[str, Any]
    classification: str | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        ref, info = self.ref.ref, self.ref
        out = result_json(
            ref.uri,
            ref.namespace,
            ref.key,
            ref.version,
            size=info.size,
            sha256=info.sha256,
            content_type=info.content_type,
            inline=info.inline,
            score=self.score,
            chunk_id=self.chunk_id,
            span=self.span,
            tags=self.tags,
            classification=self.classification,
            created_at=self.created_at,
        )
        if info.ipc is not None or info.extra:
            out["ref"] = info.to_json()
        return out


def result_json(
    uri: str,
    namespace: str,
    key: str,
    version: int,
    *,
    size: int,
    sha256: str,
    content_type: str,
    inline: bytes | None,
    score: float,
    chunk_id: str,
    span: tuple[int, int] | None,
    tags: dict[str, Any],
    classification: str | None,
    created_at: datetime,
) -> dict[str, Any]:
    """One search result's JSON form, the one layout both :meth:`SearchResult.to_json` and
    :meth:`VectorSearch.asearch_json` (straight from catalog rows) write."""
    ref: dict[str, Any] = {"uri": uri, "size": size, "sha256": sha256, "content_type": content_type}
    if inline is not None:
        ref["inline"] = base64.b64encode(inline).decode("ascii")
    return {
        "ref": ref,
        "score": score,
        "chunk_id": chunk_id or None,
        "span": list(span) if span else None,
        "namespace": namespace,
        "key": key,
        "version": version,
        "content_type": content_type,
        "size": size,
        "tags": tags,
        "classification": classification,
        "created_at": created_at.isoformat(),
    }


class VectorSearch:
    """Attach, search and sweep over the configured vector indexes (see the module docstring).

    Args:
        settings: ``vectors`` (indexes, limits, HNSW knobs) and ``inline_threshold``.
        engine: the catalog engine.
        indexes: already open indexes by name (tests); the rest open from configuration on first use.
        access: the read tracker: a hit that carries its value inline is that value's read (a hit
            without one is counted when the caller resolves its ref), so a search-then-read is
            one read either way.
        clock: the current UTC time (expiry checks).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        indexes: Mapping[str, VectorIndex] | None = None,
        access: AccessTracker | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.settings = settings
        self.vsettings = settings.vectors
        self.engine = engine
        self.clock = clock
        self.access = access
        self._indexes: dict[str, VectorIndex] = dict(indexes or {})
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VectorSearch(default={self.vsettings.default!r}, open={sorted(self._indexes)})"

    def close(self) -> None:
        for index in self._indexes.values():
            index.close()
        self._indexes.clear()

    def index(self, name: str | None = None) -> VectorIndex:
        """The index called ``name`` (the default one when None), opened on first use.

        Raises:
            InvalidInput: no index of that name is configured.
        """
        name = self.vsettings.default if name is None else name  # "" is no index's name, not the default
        found = self._indexes.get(name)
        if found is not None:
            return found
        if name == CATALOG_STORE:
            url = CATALOG_STORE
        elif name in self.vsettings.indexes:
            url = self.vsettings.indexes[name]
        else:
            known = ", ".join(sorted({CATALOG_STORE, *self.vsettings.indexes}))
            raise InvalidInput(f"no vector index named {name!r} is configured; known: {known}", field="index")
        with self._lock:  # API threads: open each index once
            found = self._indexes.get(name)
            if found is not None:
                return found
            opened = self._indexes[name] = open_index(
                url,
                settings=self.vsettings,
                catalog=self.engine,
                name=name,
                inline_threshold=self.settings.inline_threshold,
                clock=self.clock,
            )
        return opened

    # ------------------------------------------------------------------ writes

    def attach(
        self,
        tenant: str,
        ref: ResultRef,
        embeddings: Sequence[Embedding],
        *,
        index: str | None = None,
        metric: Metric | None = None,
    ) -> int:
        """Attach embeddings to one live object version; returns how many were stored.

        Each embedding replaces an earlier one with the same chunk id. All or none are stored.

        Raises:
            InvalidInput: an empty or too large batch, a bad vector, chunk id or span (named by index).
            DimensionMismatch: a vector's length differs from the namespace's dimension (422).
            ObjectNotFound / ObjectGone: no such live version for this tenant.
        """
        if ref.tenant != tenant:
            raise ObjectNotFound(f"no object {ref.uri}", field="ref")
        if metric is not None:
            metric = check_metric(metric)
        if not 1 <= len(embeddings) <= self.vsettings.max_batch:
            raise InvalidInput(
                f"a write carries 1 to {self.vsettings.max_batch} embeddings, got {len(embeddings)}",
                field="embeddings",
            )
        vectors: list[list[float]] = []
        seen: set[str] = set()
        for i, e in enumerate(embeddings):
            vectors.append(check_embedding(e, f"embeddings[{i}]", max_dims=self.vsettings.max_dimensions))
            if e.chunk_id in seen:
                raise InvalidInput(
                    f"embeddings[{i}].chunk_id {e.chunk_id!r} appears twice in this write",
                    field=f"embeddings[{i}].chunk_id",
                )
            seen.add(e.chunk_id)
        dims = {len(v) for v in vectors}
        if len(dims) > 1:
            raise InvalidInput(
                f"the embeddings of one write must have one length, got {sorted(dims)}", field="embeddings"
            )
        target = self.index(index)
        row = self._live(ref)
        records = [
            VectorRecord(
                object_id=row.id,
                namespace=ref.namespace,
                key=ref.key,
                version=ref.version,
                vector=v,
                chunk_id=e.chunk_id,
                span=e.span,
                tags=dict(row.tags or {}),
                content_type=row.content_type,
                classification=row.classification,
            )
            for e, v in zip(embeddings, vectors, strict=True)
        ]
        if target.name != CATALOG_STORE:
            # Recorded before the vectors go out, so a purge from now on sweeps them too.
            with self.engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO vector_postings (index_name, object_id, tenant_id)"
                        " VALUES (:i, :o, :t) ON CONFLICT DO NOTHING"
                    ),
                    {"i": target.name, "o": row.id, "t": tenant},
                )
        n = target.add(tenant, records, metric=metric)
        try:
            self._live(ref)
        except (ObjectGone, ObjectNotFound):
            # Deleted while the vectors were being written: the purge may have missed them.
            target.delete_objects(tenant, [row.id])
            raise
        return n

    def _live(self, ref: ResultRef) -> Any:
        with db.reading(self.engine) as conn:
            row = conn.execute(
                text(
                    "SELECT id, state, expires_at, deleted_at, tags, content_type, classification"
                    " FROM objects WHERE tenant_id = :t AND namespace = :ns AND key = :k AND version = :v"
                    f" AND {partitions.tenant_rows(ref.tenant)}"
                ),
                {"t": ref.tenant, "ns": ref.namespace, "k": ref.key, "v": ref.version},
            ).first()
        if row is None:
            raise ObjectNotFound(f"no object {ref.uri}", field="ref")
        if row.state != "live" or (row.expires_at is not None and row.expires_at <= self.clock()):
            raise ObjectGone(f"{ref.uri} is {row.state if row.state != 'live' else 'expired'}", field="ref")
        return row

    # ------------------------------------------------------------------ search

    def search(
        self,
        tenant: str,
        vector: Sequence[float],
        *,
        k: int = 10,
        where: VectorFilter | None = None,
        ef_search: int | None = None,
        index: str | None = None,
    ) -> list[SearchResult]:
        """The ``k`` closest live object versions (or chunks) of ``tenant`` matching ``where``.

        Raises:
            InvalidInput: a bad vector, ``k``, ``ef_search``, filter or index name.
            DimensionMismatch: the query's length differs from the namespace's dimension (422).
        """
        where = where or VectorFilter()
        query = self._checked(vector, k=k, where=where, ef_search=ef_search)
        target = self.index(index)
        hits = target.search(tenant, query, k=k, where=where, ef_search=ef_search)
        results = self._resolve(tenant, hits)
        # pgvector tests liveness inside its scan; an index outside the catalog (Qdrant) cannot, and
        # keeps an expired or deleted object's postings until they are purged and swept. When they
        # took slots, ask again for more (4x each time, up to OVERFETCH_MAX) until k live hits come
        # back or the index has no more to give.
        fetch = k
        while len(results) < k and len(hits) >= fetch and fetch < OVERFETCH_MAX:
            fetch = min(fetch * 4, OVERFETCH_MAX)
            hits = target.search(tenant, query, k=fetch, where=where, ef_search=ef_search)
            results = self._resolve(tenant, hits)
        return self._counted(results[:k])

    async def asearch(
        self,
        tenant: str,
        vector: Sequence[float],
        *,
        k: int = 10,
        where: VectorFilter | None = None,
        ef_search: int | None = None,
        index: str | None = None,
    ) -> list[SearchResult]:
        """:meth:`search` on the event loop, when :meth:`on_loop` says the index can (same answers).

        Raises:
            RuntimeError: the index cannot search on this loop (:meth:`on_loop` was False).
            InvalidInput / DimensionMismatch: as :meth:`search`.
        """
        hits = await self._ahits(tenant, vector, k=k, where=where, ef_search=ef_search, index=index)
        return self._finish(tenant, hits)

    async def asearch_json(
        self,
        tenant: str,
        vector: Sequence[float],
        *,
        k: int = 10,
        where: VectorFilter | None = None,
        ef_search: int | None = None,
        index: str | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`asearch`'s results in their JSON form (:meth:`SearchResult.to_json`'s): what the API sends.

        Written straight from the catalog rows the index returns (:func:`result_json`), with no
        ref, ref-info and result objects per hit to make and read back: about a third of the
        per-hit work of a search. The same hits, order, access counting and errors as :meth:`asearch`.
        """
        hits = await self._ahits(tenant, vector, k=k, where=where, ef_search=ef_search, index=index)
        return self._finish_json(tenant, hits)

    def _finish_json(self, tenant: str, hits: list[VectorHit]) -> list[dict[str, Any]]:
        """:meth:`_finish`, then each result's JSON form, without the result objects between."""
        if not all(h.live_row is not None for h in hits):
            return [r.to_json() for r in self._finish(tenant, hits)]
        out: list[dict[str, Any]] = []
        read: list[ResultRef] = []
        for h in hits:
            r = h.live_row
            if r.inline_data is not None:  # the hit carries its value: it is that value's read
                ref = ResultRef.known(tenant, r.namespace, r.key, r.version)  # catalog rows, checked at write
                read.append(ref)
                uri = ref.uri
            else:
                uri = format_uri(tenant, r.namespace, r.key, r.version)
            out.append(
                result_json(
                    uri,
                    r.namespace,
                    r.key,
                    r.version,
                    size=r.size,
                    sha256=r.sha256,
                    content_type=r.content_type,
                    inline=r.inline_data,
                    score=h.score,
                    chunk_id=h.chunk_id,
                    span=h.span,
                    tags=r.tags or {},
                    classification=r.classification,
                    created_at=r.created_at,
                )
            )
        if self.access is not None:  # as _finish: one clock read for the search's inline hits
            self.access.note_search_hits(read)
        return out

    async def _ahits(
        self,
        tenant: str,
        vector: Sequence[float],
        *,
        k: int,
        where: VectorFilter | None,
        ef_search: int | None,
        index: str | None,
    ) -> list[VectorHit]:
        where = where or VectorFilter()
        query = self._checked(vector, k=k, where=where, ef_search=ef_search)
        target = self._indexes.get(self.vsettings.default if index is None else index)
        if not isinstance(target, PgVectorIndex):
            raise RuntimeError(f"vector index {index!r} does not search on the event loop")
        return await target.asearch(tenant, query, k=k, where=where, ef_search=ef_search)

    async def astart(self, *, max_size: int = 10) -> None:
        """Let the catalog's pgvector index search on the running loop (the API's lifespan).

        Indexes elsewhere (Qdrant) keep searching in worker threads.
        """
        target = self.index(CATALOG_STORE)
        if isinstance(target, PgVectorIndex):
            await target.astart(max_size=max_size)

    async def astop(self) -> None:
        for target in list(self._indexes.values()):
            if isinstance(target, PgVectorIndex):
                await target.astop()

    def on_loop(self, index: str | None = None) -> bool:
        """Whether :meth:`asearch` can search index ``index`` (the default when None) on this loop."""
        target = self._indexes.get(self.vsettings.default if index is None else index)
        return isinstance(target, PgVectorIndex) and target.on_loop()

    def _checked(
        self, vector: Sequence[float], *, k: int, where: VectorFilter, ef_search: int | None
    ) -> list[float]:
        """The query as floats, after checking it, ``k``, ``ef_search`` and the filter."""
        query = check_vector(vector, "vector", max_dims=self.vsettings.max_dimensions)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.vsettings.max_k:
            raise InvalidInput(f"k must be an integer from 1 to {self.vsettings.max_k}, got {k!r}", field="k")
        if ef_search is not None and (
            isinstance(ef_search, bool) or not isinstance(ef_search, int) or not 1 <= ef_search <= 1000
        ):
            raise InvalidInput(
                f"ef_search must be an integer from 1 to 1000, got {ef_search!r}", field="ef_search"
            )
        _check_filter(where)
        return query

    def _finish(self, tenant: str, hits: list[VectorHit]) -> list[SearchResult]:
        return self._counted(self._resolve(tenant, hits))

    def _counted(self, results: list[SearchResult]) -> list[SearchResult]:
        if self.access is not None:  # one clock read for the search's inline hits
            self.access.note_search_hits(r.ref.ref for r in results if r.ref.inline is not None)
        return results

    def _resolve(self, tenant: str, hits: list[VectorHit]) -> list[SearchResult]:
        """Hits as results, dropping any whose object is not live for ``tenant`` (in hit order)."""
        if not hits:
            return []
        if all(h.live_row is not None for h in hits):
            # The index checked them in the catalog in its own query (pgvector).
            return [self._result(tenant, h, h.live_row) for h in hits]
        with db.reading(self.engine) as conn:
            rows = conn.execute(
                text(
                    "SELECT id, namespace, key, version, size, sha256, content_type, tags, classification,"
                    " created_at, CASE WHEN size < :inline THEN inline_data END AS inline_data"
                    " FROM objects WHERE tenant_id = :t AND id = ANY(:ids) AND state = 'live'"
                    f" AND {partitions.tenant_rows(tenant)}"
                    " AND (expires_at IS NULL OR expires_at > :now)"
                ),
                {
                    "t": tenant,
                    "ids": sorted({h.object_id for h in hits}),
                    "inline": self.settings.inline_threshold,
                    "now": self.clock(),
                },
            ).all()
        live = {r.id: r for r in rows}
        return [self._result(tenant, h, live[h.object_id]) for h in hits if h.object_id in live]

    @staticmethod
    def _result(tenant: str, h: VectorHit, r: Any) -> SearchResult:
        ref = RefInfo(
            ref=ResultRef.known(tenant, r.namespace, r.key, r.version),  # catalog rows, checked at write
            size=r.size,
            sha256=r.sha256,
            content_type=r.content_type,
            inline=bytes(r.inline_data) if r.inline_data is not None else None,
        )
        return SearchResult(
            ref=ref,
            score=h.score,
            chunk_id=h.chunk_id,
            span=h.span,
            tags=dict(r.tags or {}),
            classification=r.classification,
            created_at=r.created_at,
        )

    # ------------------------------------------------------------------- sweep

    def sweep(self, *, limit: int = 1000) -> int:
        """Delete purged objects' vectors from external indexes (the purge stamped their postings).

        Returns how many postings were swept; an index that fails keeps its postings for the next sweep.
        """
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT index_name, tenant_id, object_id FROM vector_postings"
                    " WHERE purged_at IS NOT NULL ORDER BY purged_at LIMIT :n"
                ),
                {"n": limit},
            ).all()
        groups: dict[tuple[str, str], list[int]] = {}
        for r in rows:
            groups.setdefault((r.index_name, r.tenant_id), []).append(r.object_id)
        swept = 0
        for (name, tenant), ids in groups.items():
            try:
                self.index(name).delete_objects(tenant, ids)
            except (LiquidError, OSError, RuntimeError) as exc:
                log.warning(
                    "vector sweep of %d objects in index %r failed (retried later): %s", len(ids), name, exc
                )
                continue
            with self.engine.begin() as conn:
                conn.execute(
                    text(
                        "DELETE FROM vector_postings WHERE index_name = :i AND object_id = ANY(:ids)"
                        " AND purged_at IS NOT NULL"
                    ),
                    {"i": name, "ids": ids},
                )
            swept += len(ids)
        return swept


def _check_filter(where: VectorFilter) -> None:
    if where.namespace is not None:
        check_slug(where.namespace, "namespace")
    if not isinstance(where.tags, Mapping):
        raise InvalidInput("filters.tags must be an object of string values", field="filters.tags")
    for key, value in where.tags.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key or "\x00" in key + value:
            raise InvalidInput(f"filters.tags {key!r}: keys and values must be strings", field="filters.tags")
    for name in ("content_type", "classification"):
        value = getattr(where, name)
        if value is not None and (
            not isinstance(value, str) or not value or len(value) > 256 or "\x00" in value
        ):
            raise InvalidInput(
                f"filters.{name} must be 1-256 characters, got {value!r}", field=f"filters.{name}"
            )
