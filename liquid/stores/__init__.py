"""Byte stores for every tier, opened by URL.

``open_store(url)`` picks the backend from the URL scheme and imports it only then,
so an optional SDK is needed only when its scheme is used.
"""

from __future__ import annotations

import importlib
from typing import cast

from liquid.errors import InvalidInput
from liquid.stores.base import (
    BulkDeleteStore,
    ObjectStat,
    Store,
    check_locator,
    copy,
    delete_many,
    delete_prefix,
    read_bytes,
    write_bytes,
)

__all__ = [
    "BulkDeleteStore",
    "ObjectStat",
    "Store",
    "check_locator",
    "copy",
    "delete_many",
    "delete_prefix",
    "open_store",
    "read_bytes",
    "write_bytes",
]

#: scheme -> (module, class); modules are imported on first use.
SCHEMES: dict[str, tuple[str, str]] = {
    "redis": ("liquid.stores.redis", "RedisStore"),
    "rediss": ("liquid.stores.redis", "RedisStore"),
    "unix": ("liquid.stores.redis", "RedisStore"),
    "redis+sentinel": ("liquid.stores.redis", "RedisStore"),
    "postgresql": ("liquid.stores.postgres", "PostgresStore"),
    "postgresql+psycopg": ("liquid.stores.postgres", "PostgresStore"),
    "postgres": ("liquid.stores.postgres", "PostgresStore"),
    "file": ("liquid.stores.files", "FileStore"),
    "s3": ("liquid.stores.s3", "S3Store"),
    "minio": ("liquid.stores.minio", "MinioStore"),
    "gs": ("liquid.stores.gcs", "GCSStore"),
    "gcs": ("liquid.stores.gcs", "GCSStore"),
}


def open_store(url: str) -> Store:
    """Open the store a URL names.

    Schemes and classes (each class's module docstring lists all its options):

    - ``redis``, ``rediss``, ``unix``, ``redis+sentinel`` → :class:`~liquid.stores.redis.RedisStore`:
      ``redis://127.0.0.1:6379/0?prefix=liquid:hot:&ttl=3600&chunk_size=1MiB&timeout=30``
      (``&cluster=true`` for a Redis/Valkey Cluster; ``redis+sentinel://s1:26379,s2:26379/mymaster/0``)
    - ``postgresql``, ``postgresql+psycopg``, ``postgres`` → :class:`~liquid.stores.postgres.PostgresStore`:
      ``postgresql://user:pw@host:5432/db?schema=liquid&chunk_size=1MiB&pool_size=4&timeout=60``
    - ``file`` → :class:`~liquid.stores.files.FileStore`: ``file:///var/lib/liquid/cold``
    - ``s3`` → :class:`~liquid.stores.s3.S3Store`:
      ``s3://bucket/prefix?endpoint=http://127.0.0.1:8333&region=us-east-1&sse=AES256``
      ``&storage_class=STANDARD_IA&multipart_threshold=8MiB&part_size=8MiB``
    - ``minio`` → :class:`~liquid.stores.minio.MinioStore`:
      ``minio://bucket/prefix?endpoint=127.0.0.1:9000&secure=false&region=us-east-1``
    - ``gs``, ``gcs`` → :class:`~liquid.stores.gcs.GCSStore`:
      ``gs://bucket/prefix?project=p&endpoint=http://127.0.0.1:9023``

    Every network backend takes ``timeout`` (seconds): no single request waits longer
    (S3, MinIO: 30; GCS, PostgreSQL: 60; Redis: 30). The mover also abandons a store call
    that makes no progress for ``mover.store_timeout``.

    Secrets in the URL (passwords, ``access_key``/``secret_key``) never reach the store's
    ``url`` attribute.

    Raises:
        InvalidInput: unknown scheme or a malformed option.
        MissingDependency: the scheme's SDK is not installed (the message has the pip command).

    >>> open_store("file:///tmp/liquid-doctest").url
    'file:///tmp/liquid-doctest'
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        shown = url.split("?", 1)[0]
        if "@" in shown:  # do not echo credentials from a URL we cannot parse
            shown = shown.split("://", 1)[0] + "://…@" + shown.rsplit("@", 1)[1]
        raise InvalidInput(f"unknown store URL scheme in {shown!r}; known schemes: {known}", field="url")
    module_name, class_name = SCHEMES[scheme]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cast(Store, cls(url))
