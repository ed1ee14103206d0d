"""RedisStore: the hot tier's byte store on Redis or Valkey.

URL: ``redis://host:port/db?prefix=liquid:hot:&ttl=3600&chunk_size=1MiB&timeout=30``
(``rediss://`` and ``unix://`` work too; other query options go to redis-py).
``timeout`` (seconds, default 30, 0 for none) bounds every socket read and write.

Layout: one Redis hash per object, so one key holds the whole version and a single
``RENAME`` publishes it atomically::

    <prefix>o:{<locator>}         -> hash  size, cs (chunk size), gen (version id), mtime, "0", "1", ...
    <prefix>t:{<locator>}:<uuid>  -> the same hash while it is being written (expires if the writer dies)

The braces are a hash tag: both keys of one object hash to the same slot, so the ``RENAME`` works
on a Redis/Valkey Cluster too (``?cluster=true``, see :mod:`liquid.redis_client`), and objects
spread over the cluster's primaries by locator. ``redis+sentinel://`` URLs work as well.

Chunks are hash fields of ``chunk_size`` bytes, which keeps every value far below
Redis' 512 MB string limit and lets a range read fetch only the chunks it needs. A
reader pins ``gen`` at open and re-checks it with every chunk, so an object replaced
mid-read raises :class:`~liquid.errors.StoreError` instead of mixing versions.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import cast
from urllib.parse import urlencode, urlunsplit

import redis

from liquid.errors import InvalidInput, ObjectNotFound, StoreError
from liquid.redis_client import connect_redis, is_cluster_url
from liquid.stores._common import Options, public_url
from liquid.stores.base import CHUNK_SIZE, ObjectStat, check_locator, check_range, rechunk

#: Default key prefix; every key this store writes starts with it.
DEFAULT_PREFIX = "liquid:hot:"
#: Default ``timeout`` option, in seconds.
DEFAULT_TIMEOUT = 30
#: A temp hash left by a crashed writer disappears after this many seconds.
TEMP_TTL_SECONDS = 3600
_GLOB_SPECIALS = "\\*?[]"
# KEYS: temp hash, final key. ARGV: size, mtime, ttl seconds (0: persistent).
_PUBLISH = """
redis.call('HSET', KEYS[1], 'size', ARGV[1], 'mtime', ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) else redis.call('PERSIST', KEYS[1]) end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
"""


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in _GLOB_SPECIALS else c for c in text)


class RedisStore:
    """Objects as chunked hashes in Redis/Valkey; a cache, so ``ttl`` may expire them."""

    client: redis.Redis

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        ttl: int | None = None,
        chunk_size: int | None = None,
    ) -> None:
        """Args:
        url: ``redis://host:port/db?prefix=...&ttl=...&chunk_size=...&timeout=...``.
        prefix, ttl, chunk_size: override the URL's options.
        """
        opts = Options(url, _scheme(url))
        self.prefix = prefix if prefix is not None else (opts.text("prefix") or DEFAULT_PREFIX)
        url_ttl = opts.number("ttl", None)
        self.ttl = ttl if ttl is not None else url_ttl
        self.chunk_size = chunk_size or opts.size("chunk_size", CHUNK_SIZE)
        if self.chunk_size <= 0:
            raise InvalidInput(f"redis store chunk_size must be positive, got {self.chunk_size}", field="url")
        if self.ttl is not None and self.ttl <= 0:
            raise InvalidInput(f"redis store ttl must be positive seconds, got {self.ttl}", field="url")
        timeout = opts.number("timeout", DEFAULT_TIMEOUT) or 0
        rest = opts.rest()
        if timeout:  # redis-py waits forever on a silent server by default
            rest.setdefault("socket_timeout", str(timeout))
            rest.setdefault("socket_connect_timeout", str(min(timeout, 10)))
        p = opts.parts
        client_url = urlunsplit((p.scheme, p.netloc, p.path, urlencode(rest), ""))
        host = p.hostname or ""
        netloc = f"{host}:{p.port}" if p.port else host
        self.url = public_url(
            urlunsplit((p.scheme, netloc, p.path, "", "")),
            {
                "prefix": self.prefix,
                "ttl": str(self.ttl or ""),
                "cluster": "true" if is_cluster_url(url) else "",
            },
        )
        self.cluster = is_cluster_url(url)
        self.client = connect_redis(client_url)  # the cluster option rides along in ``rest``
        self._publish = self.client.register_script(_PUBLISH)

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r})"

    def _key(self, locator: str) -> str:
        return f"{self.prefix}o:{{{check_locator(locator)}}}"

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn redis-py failures into StoreError naming this store."""
        try:
            yield
        except redis.RedisError as exc:
            raise StoreError(f"redis store {self.url}: {what} failed: {exc}") from exc

    def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
        """Write chunks into a temp hash, then publish it with one MULTI/RENAME."""
        key = self._key(locator)
        tmp = f"{self.prefix}t:{{{locator}}}:{uuid.uuid4().hex}"  # the object's slot: RENAME stays in it
        written = 0
        with self._errors(f"put {locator!r}"):
            try:
                pipe = self.client.pipeline(transaction=False)
                pipe.hset(tmp, mapping={"gen": uuid.uuid4().hex, "cs": self.chunk_size})
                pipe.expire(tmp, TEMP_TTL_SECONDS)
                pipe.execute()
                for seq, chunk in enumerate(rechunk(chunks, self.chunk_size)):
                    self.client.hset(tmp, str(seq), chunk)
                    written += len(chunk)
                # One script publishes it (atomic on a single server and, both keys sharing a hash
                # tag, on a cluster, where redis-py refuses RENAME inside a pipeline).
                self._publish(keys=[tmp, key], args=[written, repr(time.time()), math.ceil(self.ttl or 0)])
            except BaseException:
                with suppress(redis.RedisError):  # else it expires on its own
                    self.client.unlink(tmp)
                raise
        return written

    def open(self, locator: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Read the version metadata now (missing → ObjectNotFound), then fetch needed chunks."""
        check_range(start, end)
        key = self._key(locator)
        with self._errors(f"open {locator!r}"):
            size_b, cs_b, gen = cast(list[bytes | None], self.client.hmget(key, ["size", "cs", "gen"]))
        if size_b is None or cs_b is None or gen is None:
            raise ObjectNotFound(f"no object {locator!r} in {self.url}")
        size, cs = int(size_b), int(cs_b)
        stop = size if end is None else min(end, size)
        if start >= stop:
            return iter(())
        return self._stream(locator, key, gen, cs, start, stop)

    def _stream(self, locator: str, key: str, gen: bytes, cs: int, start: int, stop: int) -> Iterator[bytes]:
        for seq in range(start // cs, (stop - 1) // cs + 1):
            with self._errors(f"read {locator!r}"):
                now_gen, data = cast(list[bytes | None], self.client.hmget(key, ["gen", str(seq)]))
            if now_gen != gen or data is None:
                raise StoreError(
                    f"redis store {self.url}: object {locator!r} was replaced or expired while being read"
                )
            base = seq * cs
            lo, hi = max(start - base, 0), min(stop - base, len(data))
            yield data if (lo, hi) == (0, len(data)) else data[lo:hi]

    def head(self, locator: str) -> ObjectStat:
        """Size and write time from the hash's metadata fields."""
        key = self._key(locator)
        with self._errors(f"head {locator!r}"):
            size_b, mtime_b = cast(list[bytes | None], self.client.hmget(key, ["size", "mtime"]))
        if size_b is None:
            raise ObjectNotFound(f"no object {locator!r} in {self.url}")
        return ObjectStat(locator, int(size_b), _when(mtime_b))

    def delete(self, locator: str) -> bool:
        """UNLINK frees the memory in the background, so big objects do not block Redis."""
        key = self._key(locator)
        with self._errors(f"delete {locator!r}"):
            return bool(self.client.unlink(key))

    def list(self, prefix: str = "") -> Iterator[ObjectStat]:
        """SCAN the key space for the prefix, sort the names, then fetch stats in batches."""
        base = f"{self.prefix}o:{{"
        with self._errors(f"list {prefix!r}"):
            # A set, because SCAN may return a key more than once (on a cluster it scans every primary).
            names = sorted(
                {
                    k.decode("utf-8")[len(base) : -1]
                    for k in self.client.scan_iter(match=_glob_escape(base + prefix) + "*", count=1000)
                }
            )
        return self._stats(base, names)

    def _stats(self, base: str, names: Sequence[str]) -> Iterator[ObjectStat]:
        for i in range(0, len(names), 500):
            batch = names[i : i + 500]
            with self._errors("list"):
                pipe = self.client.pipeline(transaction=False)
                for name in batch:
                    pipe.hmget(base + name + "}", ["size", "mtime"])
                rows = pipe.execute()
            for name, (size_b, mtime_b) in zip(batch, rows, strict=True):
                if size_b is not None:  # deleted or expired since the scan
                    yield ObjectStat(name, int(size_b), _when(mtime_b))

    def ping(self) -> None:
        """PING the server."""
        with self._errors("ping"):
            self.client.ping()

    def close(self) -> None:
        """Disconnect the pool."""
        self.client.close()


def _scheme(url: str) -> str:
    """The scheme name used in this store's error messages."""
    return url.split(":", 1)[0] or "redis"


def _when(raw: bytes | None) -> datetime | None:
    return datetime.fromtimestamp(float(raw), UTC) if raw else None
