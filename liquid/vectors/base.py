"""The vector index seam: one :class:`VectorIndex` protocol, the value objects it speaks, shared checks.

A backend stores embeddings of object versions (:class:`VectorRecord`) and answers
nearest-neighbour queries with :class:`VectorHit` s. Every method takes the tenant as its
first argument and the backend makes it part of the key or filter itself (a table column
it always constrains, a collection name and a payload condition), so no
:class:`VectorFilter` a caller builds can reach another tenant's vectors.

Scores are "higher is closer" whatever the metric: cosine similarity for ``cosine``, the
inner product for ``ip``, and the negated Euclidean distance for ``l2``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Literal, Protocol, get_args

from liquid.errors import DimensionMismatch, InvalidInput

Metric = Literal["cosine", "l2", "ip"]
METRICS: tuple[Metric, ...] = get_args(Metric)
#: The longest chunk id an embedding may carry.
MAX_CHUNK_ID = 256


@dataclass(frozen=True, slots=True)
class Embedding:
    """What a caller attaches: a vector, optionally of one chunk (an id and a span) of the object."""

    vector: Sequence[float]
    #: '' stands for the whole object; attaching the same chunk id again replaces its vector.
    chunk_id: str = ""
    span: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"Embedding(dims={len(self.vector)}, chunk_id={self.chunk_id!r}, span={self.span})"


@dataclass(frozen=True, slots=True)
class VectorRecord:
    """An embedding with the facts of its object version that filters need (a version is immutable)."""

    object_id: int
    namespace: str
    key: str
    version: int
    vector: list[float] = field(repr=False)
    chunk_id: str = ""
    span: tuple[int, int] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/octet-stream"
    classification: str | None = None


@dataclass(frozen=True, slots=True)
class VectorFilter:
    """Metadata a hit must match; every field that is set must hold (tags: each pair)."""

    namespace: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None
    classification: str | None = None


@dataclass(frozen=True, slots=True)
class VectorHit:
    """One nearest neighbour: which object version (by catalog id) and chunk, and how close."""

    object_id: int
    chunk_id: str
    span: tuple[int, int] | None
    score: float
    #: The object's catalog row, when the index checked in the catalog itself that it is live
    #: (pgvector joins ``objects`` in its query): ``namespace, key, version, size, sha256,
    #: content_type, tags, classification, created_at, inline_data``. None: the caller checks.
    live_row: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class VectorSpace:
    """A namespace's embedding space: fixed by the namespace's first write."""

    dims: int
    metric: Metric


class VectorIndex(Protocol):
    """Embeddings of object versions, tenant by tenant, searchable by nearest neighbour."""

    #: The configured name (``catalog`` for pgvector in the catalog database).
    name: str

    def add(self, tenant: str, records: Sequence[VectorRecord], *, metric: Metric | None = None) -> int:
        """Store (or replace, by object and chunk id) embeddings; returns how many.

        The first write to a namespace fixes its dimension and metric (``metric`` or the
        index's default).

        Raises:
            DimensionMismatch: a vector's length differs from its namespace's dimension.
            InvalidInput: ``metric`` differs from the one the namespace was fixed with.
        """
        ...

    def search(
        self,
        tenant: str,
        vector: Sequence[float],
        *,
        k: int,
        where: VectorFilter,
        ef_search: int | None = None,
    ) -> list[VectorHit]:
        """The ``k`` nearest embeddings of ``tenant`` that match ``where``, closest first.

        Raises:
            DimensionMismatch: the query's length fits no space it could search.
        """
        ...

    def delete_objects(self, tenant: str, object_ids: Sequence[int]) -> int:
        """Remove every embedding of these object versions; returns how many went (when known)."""
        ...

    def space(self, tenant: str, namespace: str) -> VectorSpace | None:
        """The namespace's fixed dimension and metric, or None before its first write."""
        ...

    def close(self) -> None: ...


_FLOATS = {float}
#: The largest float32: vectors are stored as float32 (pgvector, Qdrant), where a larger finite
#: float becomes an infinity.
FLOAT32_MAX = 3.4028234663852886e38


def _in_range(values: Sequence[float]) -> bool:
    """Every value finite and representable as float32 (in C: no Python loop)."""
    return all(map(math.isfinite, values)) and (not values or max(map(abs, values)) <= FLOAT32_MAX)


def check_direction(vector: Sequence[float], metric: str, where: str) -> None:
    """Refuse an all-zero vector where ``metric`` is cosine: it has no direction, so no score.

    pgvector would score it NaN (and sort it last), Qdrant 0.0; neither is an answer.

    >>> check_direction([0.0, 0.0], "l2", "vector")
    >>> check_direction([0.0, 0.0], "cosine", "vector")
    Traceback (most recent call last):
    ...
    liquid.errors.InvalidInput: vector is all zeros: under the cosine metric it has no direction to compare
    """
    if metric == "cosine" and not any(vector):
        raise InvalidInput(
            f"{where} is all zeros: under the cosine metric it has no direction to compare", field=where
        )


def check_vector(vector: object, where: str, *, max_dims: int) -> list[float]:
    """A finite, non-empty list of floats no longer than ``max_dims``, or InvalidInput naming ``where``.

    >>> check_vector([1, 0.5], "vector", max_dims=4)
    [1.0, 0.5]
    """
    if isinstance(vector, str | bytes) or not isinstance(vector, Sequence):
        raise InvalidInput(f"{where} must be a list of numbers, got {type(vector).__name__}", field=where)
    if not 1 <= len(vector) <= max_dims:
        raise InvalidInput(f"{where} must have 1 to {max_dims} numbers, got {len(vector)}", field=where)
    # JSON floats (an API body), the commonest case: one pass for the types, one for finiteness, in C.
    if type(vector) is list and set(map(type, vector)) == _FLOATS and _in_range(vector):
        return vector
    # Then floats and ints, also checked in C: map() over builtins, no Python loop.
    if not any(map(isinstance, vector, repeat(bool))) and all(map(isinstance, vector, repeat(int | float))):
        try:
            out = list(map(float, vector))
        except OverflowError:  # an int too large for a float
            out = []
        if out and _in_range(out):
            return out
    for i, x in enumerate(vector):  # find and name the culprit
        try:
            value = float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.nan
        except OverflowError:
            value = math.nan
        if not math.isfinite(value):
            raise InvalidInput(f"{where}[{i}] must be a finite number, got {str(x)[:40]!r}", field=where)
        if abs(value) > FLOAT32_MAX:
            raise InvalidInput(
                f"{where}[{i}] is {str(x)[:40]}, beyond float32's range (±3.4e38) that vectors are stored in",
                field=where,
            )
    raise AssertionError("unreachable: the fast path refused a vector the slow path accepts")


def check_embedding(e: Embedding, where: str, *, max_dims: int) -> list[float]:
    """Check an embedding's vector, chunk id and span; returns the vector as floats."""
    vector = check_vector(e.vector, f"{where}.vector", max_dims=max_dims)
    cid = e.chunk_id
    if not isinstance(cid, str) or len(cid) > MAX_CHUNK_ID or any(ord(c) < 0x20 for c in cid):
        raise InvalidInput(
            f"{where}.chunk_id must be at most {MAX_CHUNK_ID} printable characters, got {cid!r}",
            field=f"{where}.chunk_id",
        )
    if e.span is not None:
        lo, hi = e.span
        if not (isinstance(lo, int) and isinstance(hi, int)) or not 0 <= lo <= hi < 2**62:
            raise InvalidInput(
                f"{where}.span must be [start, end] with 0 <= start <= end, got {list(e.span)}",
                field=f"{where}.span",
            )
    return vector


def check_dims(space: VectorSpace, got: int, namespace: str, *, field: str = "vector") -> None:
    """DimensionMismatch unless ``got`` is the namespace's dimension."""
    if got != space.dims:
        raise DimensionMismatch(
            f"{field} has {got} dimensions but namespace {namespace!r} holds {space.dims}-dimensional"
            f" {space.metric} embeddings (fixed by its first write); embed with the same model",
            field=field,
        )


def check_metric(metric: object, where: str = "metric") -> Metric:
    if metric not in METRICS:
        raise InvalidInput(f"{where} must be one of {', '.join(METRICS)}, got {metric!r}", field=where)
    return metric
