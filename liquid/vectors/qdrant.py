"""Qdrant as a vector index: a server by URL, or ``qdrant-client``'s local mode (in memory or on disk).

URLs (see :func:`liquid.vectors.open_index`)::

    qdrant://qdrant.internal:6333?api_key=secret&https=true&timeout=10&prefix=liquid
    qdrant+memory://                       # local mode in memory (tests)
    qdrant+local:///var/lib/liquid/qdrant  # local mode on disk (slow: ~25 s per 20k upserts)

Tenant isolation is structural: one collection per tenant and namespace, named
``<prefix>+<tenant>+<namespace>`` (``+`` cannot occur in a slug, so no namespace a caller
chooses names another tenant's collection), and every query to a server and every delete also
carries a ``tenant`` payload condition this module adds itself (in local mode, where this
process alone writes the collections, a query leaves it out: see :meth:`QdrantIndex.search`).
A collection's vector size is the namespace's dimension, fixed by its first write; its
distance is the metric.

Local mode searches exactly (it has no HNSW graph), so ``ef_search`` changes nothing
there; a server uses it as ``hnsw_ef``. Local mode is not thread-safe, so calls to it are
serialised.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from liquid.config import VectorSettings
from liquid.errors import DimensionMismatch, InvalidInput, MissingDependency
from liquid.vectors.base import (
    Metric,
    VectorFilter,
    VectorHit,
    VectorRecord,
    VectorSpace,
    check_dims,
    check_direction,
    check_metric,
)

try:
    from qdrant_client import QdrantClient, models
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependency(
        "qdrant-client is not installed: pip install 'liquid-data[qdrant]'", field="vectors"
    ) from None

_POINTS = uuid.UUID("5b1e0a4e-6c1f-4d0b-9d3e-7a51c0f3a9e1")
_DISTANCE = {"cosine": models.Distance.COSINE, "l2": models.Distance.EUCLID, "ip": models.Distance.DOT}
_METRIC = {v: k for k, v in _DISTANCE.items()}


def tag_term(key: str, value: str) -> str:
    """A tag as one payload string, ``key=value`` with ``%`` and ``=`` in the key percent-escaped.

    Unambiguous: the first ``=`` ends the key, so ``{"a=b": "c"}`` and ``{"a": "b=c"}`` differ. A key
    without either character (nearly all) is written as before the escaping.

    >>> tag_term("a=b", "c"), tag_term("a", "b=c"), tag_term("team", "red")
    ('a%3Db=c', 'a=b=c', 'team=red')
    """
    return key.replace("%", "%25").replace("=", "%3D") + "=" + value


def _point_id(object_id: int, chunk_id: str) -> str:
    return str(uuid.uuid5(_POINTS, f"{object_id}/{chunk_id}"))


class QdrantIndex:
    """A vector index in Qdrant (see the module docstring).

    Args:
        url: ``qdrant://host:port?...``, ``qdrant+memory://`` or ``qdrant+local:///path``.
        settings: HNSW build parameters, the default metric and ``ef_search``.
        name: the name queries use for this index.
        client: an already open client (tests; the URL then only names it).
    """

    def __init__(
        self, url: str, *, settings: VectorSettings, name: str = "qdrant", client: QdrantClient | None = None
    ) -> None:
        self.settings = settings
        self.name = name
        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query))
        self.prefix = options.pop("prefix", "liquid")
        if not self.prefix or "+" in self.prefix:
            raise InvalidInput(f"prefix must be non-empty without '+', got {self.prefix!r}", field="url")
        local = parts.scheme in ("qdrant+memory", "qdrant+local")
        if client is None:
            if parts.scheme == "qdrant+memory":
                client = QdrantClient(":memory:")
            elif parts.scheme == "qdrant+local":
                if not parts.path:
                    raise InvalidInput("qdrant+local:// needs a directory: qdrant+local:///path", field="url")
                client = QdrantClient(path=parts.path)
            elif parts.scheme == "qdrant":
                try:
                    timeout = int(float(options.pop("timeout", "10")))
                except ValueError:
                    raise InvalidInput(
                        "the timeout option of a qdrant:// URL must be a number", field="url"
                    ) from None
                https = options.pop("https", "false").lower() in ("1", "true", "yes")
                client = QdrantClient(
                    host=parts.hostname or "127.0.0.1",
                    port=parts.port or 6333,
                    https=https,
                    api_key=options.pop("api_key", None),
                    timeout=timeout,
                )
            else:
                raise InvalidInput(f"not a Qdrant URL: {parts.scheme}://", field="url")
        self.client = client
        self.url = (
            f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
        )
        # Local mode is plain Python over shared dicts: one caller at a time.
        self._lock: threading.Lock | None = threading.Lock() if local else None

    def __repr__(self) -> str:
        return f"QdrantIndex(name={self.name!r}, url={self.url!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        self.client.close()

    @contextmanager
    def _serial(self) -> Iterator[None]:
        with self._lock if self._lock is not None else nullcontext():
            yield

    def _collection(self, tenant: str, namespace: str) -> str:
        return f"{self.prefix}+{tenant}+{namespace}"

    def _tenant_collections(self, tenant: str) -> list[tuple[str, str]]:
        head = f"{self.prefix}+{tenant}+"
        names = [c.name for c in self.client.get_collections().collections]
        return [(n, n[len(head) :]) for n in names if n.startswith(head) and "+" not in n[len(head) :]]

    def _space_of(self, collection: str) -> VectorSpace:
        params = self.client.get_collection(collection).config.params.vectors
        assert isinstance(params, models.VectorParams)
        return VectorSpace(int(params.size), check_metric(_METRIC[params.distance]))

    def space(self, tenant: str, namespace: str) -> VectorSpace | None:
        name = self._collection(tenant, namespace)
        with self._serial():
            if not self.client.collection_exists(name):
                return None
            return self._space_of(name)

    # ------------------------------------------------------------------ writes

    def _planned_space(
        self, tenant: str, namespace: str, dims: int, metric: Metric | None
    ) -> tuple[VectorSpace, bool]:
        """The namespace's space, or the one its first write would fix; and whether it exists yet."""
        name = self._collection(tenant, namespace)
        if not self.client.collection_exists(name):
            return VectorSpace(dims, metric or self.settings.metric), False
        space = self._space_of(name)
        if metric is not None and metric != space.metric:
            raise InvalidInput(
                f"namespace {namespace!r} was fixed with metric {space.metric!r} by its first write;"
                f" got {metric!r}",
                field="metric",
            )
        return space, True

    def add(self, tenant: str, records: Sequence[VectorRecord], *, metric: Metric | None = None) -> int:
        if metric is not None:
            check_metric(metric)
        with self._serial():
            spaces: dict[str, tuple[VectorSpace, bool]] = {}
            # All checked before anything is written (a new namespace's collection included): a
            # refused batch leaves no points and fixes no dimension.
            for i, r in enumerate(records):
                planned = spaces.get(r.namespace)
                if planned is None:
                    planned = spaces[r.namespace] = self._planned_space(
                        tenant, r.namespace, len(r.vector), metric
                    )
                space = planned[0]
                check_dims(space, len(r.vector), r.namespace, field=f"embeddings[{i}].vector")
                check_direction(r.vector, space.metric, f"embeddings[{i}].vector")
            for namespace, (space, exists) in spaces.items():
                if not exists:
                    self.client.create_collection(
                        self._collection(tenant, namespace),
                        vectors_config=models.VectorParams(size=space.dims, distance=_DISTANCE[space.metric]),
                        hnsw_config=models.HnswConfigDiff(
                            m=self.settings.hnsw_m, ef_construct=self.settings.hnsw_ef_construction
                        ),
                    )
            by_ns: dict[str, list[models.PointStruct]] = {}
            for r in records:
                by_ns.setdefault(r.namespace, []).append(
                    models.PointStruct(
                        id=_point_id(r.object_id, r.chunk_id),
                        vector=r.vector,
                        payload={
                            "tenant": tenant,
                            "namespace": r.namespace,
                            "object_id": r.object_id,
                            "key": r.key,
                            "version": r.version,
                            "chunk_id": r.chunk_id,
                            "span": list(r.span) if r.span else None,
                            "tags": [tag_term(k, v) for k, v in sorted(r.tags.items())],
                            "content_type": r.content_type,
                            "classification": r.classification,
                        },
                    )
                )
            for namespace, points in by_ns.items():
                self.client.upsert(self._collection(tenant, namespace), points=points, wait=True)
        return len(records)

    def delete_objects(self, tenant: str, object_ids: Sequence[int]) -> int:
        if not object_ids:
            return 0
        selector = models.FilterSelector(
            filter=models.Filter(
                must=[
                    models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant)),
                    models.FieldCondition(key="object_id", match=models.MatchAny(any=list(object_ids))),
                ]
            )
        )
        with self._serial():
            for collection, _ in self._tenant_collections(tenant):
                self.client.delete(collection, points_selector=selector, wait=True)
        return -1  # Qdrant does not say how many points a filter deleted

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
        must: list[Any] = []
        if self._lock is None:
            # A server may hold collections other writers share: the tenant condition stays. In local
            # mode (this process alone writes its collections) the collection name already pins the
            # tenant, and local mode evaluates every condition in Python on every point (about 40 us
            # each: 4 s a query at 100k), where a search without conditions is one numpy product.
            must.append(models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant)))
        for tag_key, tag_value in sorted(where.tags.items()):
            must.append(
                models.FieldCondition(key="tags", match=models.MatchValue(value=tag_term(tag_key, tag_value)))
            )
        if where.content_type is not None:
            must.append(
                models.FieldCondition(key="content_type", match=models.MatchValue(value=where.content_type))
            )
        if where.classification is not None:
            must.append(
                models.FieldCondition(
                    key="classification", match=models.MatchValue(value=where.classification)
                )
            )
        ef = max(ef_search or self.settings.ef_search, k)
        hits: list[VectorHit] = []
        with self._serial():
            if where.namespace is not None:
                name = self._collection(tenant, where.namespace)
                if not self.client.collection_exists(name):
                    return []
                check_dims(self._space_of(name), len(vector), where.namespace)
                targets = [(name, self._space_of(name))]
            else:
                spaces = [(n, self._space_of(n)) for n, _ in self._tenant_collections(tenant)]
                if not spaces:
                    return []
                targets = [(n, s) for n, s in spaces if s.dims == len(vector)]
                if not targets:
                    have = ", ".join(sorted({str(s.dims) for _, s in spaces}))
                    raise DimensionMismatch(
                        f"vector has {len(vector)} dimensions but this tenant's embeddings have {have};"
                        " embed with the same model",
                        field="vector",
                    )
                if len({s.metric for _, s in targets}) > 1:
                    raise InvalidInput(
                        f"{len(vector)}-dimensional embeddings of this tenant use several metrics;"
                        " name a namespace",
                        field="namespace",
                    )
            for name, space in targets:
                check_direction(vector, space.metric, "vector")
                result = self.client.query_points(
                    name,
                    query=list(vector),
                    query_filter=models.Filter(must=must) if must else None,
                    # Local mode searches exactly and warns about search parameters.
                    search_params=None if self._lock is not None else models.SearchParams(hnsw_ef=ef),
                    limit=k,
                    with_payload=["object_id", "chunk_id", "span"],
                )
                for p in result.points:
                    payload = p.payload or {}
                    span = payload.get("span")
                    hits.append(
                        VectorHit(
                            object_id=int(payload["object_id"]),
                            chunk_id=str(payload.get("chunk_id") or ""),
                            span=(int(span[0]), int(span[1])) if span else None,
                            score=-p.score if space.metric == "l2" else p.score,
                        )
                    )
        hits.sort(key=lambda h: -h.score)
        return hits[:k]
