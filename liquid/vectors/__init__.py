"""Vector search over stored objects: one :class:`VectorIndex` protocol, backends opened by URL.

``open_index(url)`` picks the backend from the URL and imports it only then, so
``qdrant-client`` is needed only when a Qdrant index is configured.
:class:`~liquid.vectors.search.VectorSearch` puts an index to work for the API: attach
embeddings to object versions, search, and sweep the vectors of purged objects out of
external indexes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from typing import cast

from sqlalchemy import Engine

from liquid.config import CATALOG_STORE, VectorSettings
from liquid.errors import ConfigError, InvalidInput
from liquid.vectors.base import (
    METRICS,
    Embedding,
    Metric,
    VectorFilter,
    VectorHit,
    VectorIndex,
    VectorRecord,
    VectorSpace,
)

__all__ = [
    "METRICS",
    "Embedding",
    "Metric",
    "VectorFilter",
    "VectorHit",
    "VectorIndex",
    "VectorRecord",
    "VectorSpace",
    "open_index",
]

#: scheme -> (module, class); modules are imported on first use.
SCHEMES: dict[str, tuple[str, str]] = {
    "pgvector": ("liquid.vectors.pgvector", "PgVectorIndex"),
    "qdrant": ("liquid.vectors.qdrant", "QdrantIndex"),
    "qdrant+memory": ("liquid.vectors.qdrant", "QdrantIndex"),
    "qdrant+local": ("liquid.vectors.qdrant", "QdrantIndex"),
}


def open_index(
    url: str,
    *,
    settings: VectorSettings,
    catalog: Engine | None = None,
    name: str | None = None,
    inline_threshold: int = 4096,
    clock: Callable[[], datetime] | None = None,
) -> VectorIndex:
    """Open the vector index a URL names.

    Schemes and classes:

    - ``catalog`` (or ``pgvector://catalog``) → :class:`~liquid.vectors.pgvector.PgVectorIndex`
      in the catalog database (``catalog`` is the engine to use)
    - ``qdrant`` → :class:`~liquid.vectors.qdrant.QdrantIndex` on a server:
      ``qdrant://host:6333?api_key=...&https=true&timeout=10&prefix=liquid``
    - ``qdrant+memory`` → the same in ``qdrant-client``'s local mode, in memory: ``qdrant+memory://``
    - ``qdrant+local`` → local mode on disk: ``qdrant+local:///var/lib/liquid/qdrant``

    Raises:
        InvalidInput: unknown scheme or a malformed option.
        ConfigError: pgvector without a catalog engine.
        MissingDependency: ``qdrant-client`` is not installed (the message has the pip command).
    """
    scheme = "pgvector" if url in (CATALOG_STORE, "pgvector://catalog") else url.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        known = ", ".join(["catalog", *(f"{s}://" for s in SCHEMES if s != "pgvector")])
        shown = url.split("?", 1)[0]
        if "@" in shown:  # do not echo credentials from a URL we cannot parse
            shown = shown.split("://", 1)[0] + "://…@" + shown.rsplit("@", 1)[1]
        raise InvalidInput(f"unknown vector index URL {shown!r}; known: {known}", field="url")
    module_name, class_name = SCHEMES[scheme]
    cls = getattr(importlib.import_module(module_name), class_name)
    if scheme == "pgvector":
        if catalog is None:
            raise ConfigError(
                "the pgvector index lives in the catalog database; pass its engine", field="vectors"
            )
        return cast(
            VectorIndex,
            cls(
                catalog,
                settings=settings,
                name=name or CATALOG_STORE,
                inline_threshold=inline_threshold,
                **({"clock": clock} if clock is not None else {}),
            ),
        )
    return cast(VectorIndex, cls(url, settings=settings, name=name or scheme))
