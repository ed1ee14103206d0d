"""The hot tier: checksummed copies of small objects in Redis/Valkey.

The hot tier is only ever a cache: every entry carries the object's SHA-256, and a
reader recomputes it before trusting the bytes, so a corrupted, truncated or foreign
entry is dropped and the read falls through to the durable home. Losing Redis loses
no data. Entries expire after ``ttl`` even if nothing evicts them, which bounds how
long a cache copy can outlive a delete whose eviction failed.

Entry layout (one Redis string, one round trip per read)::

    b"LQH1" | sha256 digest (32 bytes) | uint16 len(content_type) | content_type | data
"""

from __future__ import annotations

import hashlib
import logging
import struct
from dataclasses import dataclass

import redis

from liquid.redis_keys import HOT_OBJECT
from liquid.refs import ResultRef

log = logging.getLogger(__name__)

_MAGIC = b"LQH1"
_HEADER = struct.Struct("!4s32sH")


@dataclass(frozen=True, slots=True)
class HotEntry:
    data: bytes
    sha256: str
    content_type: str


def hot_key(ref: ResultRef) -> str:
    """Redis key of one object version (the ref without its scheme)."""
    return HOT_OBJECT + ref.uri.removeprefix("liquid://")


def encode(data: bytes, sha256_hex: str, content_type: str) -> bytes:
    ct = content_type.encode("utf-8")
    return _HEADER.pack(_MAGIC, bytes.fromhex(sha256_hex), len(ct)) + ct + data


def decode(raw: bytes) -> HotEntry | None:
    """The entry if it is well formed and its bytes match its checksum, else None."""
    if len(raw) < _HEADER.size:
        return None
    magic, digest, ct_len = _HEADER.unpack_from(raw)
    if magic != _MAGIC or len(raw) < _HEADER.size + ct_len:
        return None
    start = _HEADER.size + ct_len
    data = raw[start:]
    if hashlib.sha256(data).digest() != digest:
        return None
    return HotEntry(data=data, sha256=digest.hex(), content_type=raw[_HEADER.size : start].decode("utf-8"))


class HotCache:
    """Checksummed object copies in Redis. Redis failures degrade to misses, never to errors."""

    def __init__(self, client: redis.Redis, *, ttl: float, max_object_size: int) -> None:
        self.client = client
        self.ttl = ttl
        self.max_object_size = max_object_size
        self.hits = 0
        self.misses = 0
        self.corrupt = 0
        self.errors = 0

    def __repr__(self) -> str:
        return (
            f"HotCache(hits={self.hits}, misses={self.misses}, corrupt={self.corrupt}, errors={self.errors})"
        )

    def get(self, ref: ResultRef, *, expect_sha256: str | None = None) -> HotEntry | None:
        """A verified entry, or None (absent, corrupt, stale or Redis down)."""
        try:
            raw = self.client.get(hot_key(ref))
        except redis.RedisError as exc:
            self.errors += 1
            log.warning("hot cache unavailable, reading through: %s", exc)
            return None
        return self.accept(ref, raw, expect_sha256=expect_sha256)

    def accept(self, ref: ResultRef, raw: object, *, expect_sha256: str | None = None) -> HotEntry | None:
        """Judge a value fetched for ``ref`` (by :meth:`get` or a caller's pipeline)."""
        if isinstance(raw, Exception):
            self.errors += 1
            log.warning("hot cache read failed, reading through: %s", raw)
            return None
        if raw is None:
            self.misses += 1
            return None
        entry = decode(raw) if isinstance(raw, bytes) else None
        if entry is None or (expect_sha256 is not None and entry.sha256 != expect_sha256):
            # Never serve it; drop it so the next read repopulates from the durable home.
            self.corrupt += 1
            log.warning("hot cache entry for %s failed its checksum; dropped", ref)
            self.delete(ref)
            return None
        self.hits += 1
        return entry

    def put(self, ref: ResultRef, data: bytes, *, sha256: str, content_type: str) -> bool:
        """Cache a verified copy; False when too large or Redis is down."""
        if len(data) > self.max_object_size:
            return False
        try:
            self.client.set(hot_key(ref), encode(data, sha256, content_type), px=max(int(self.ttl * 1000), 1))
        except redis.RedisError as exc:
            self.errors += 1
            log.warning("hot cache write failed for %s: %s", ref, exc)
            return False
        return True

    def delete(self, ref: ResultRef) -> bool:
        try:
            return bool(self.client.delete(hot_key(ref)))
        except redis.RedisError as exc:
            self.errors += 1
            log.warning("hot cache delete failed for %s (entry expires by TTL): %s", ref, exc)
            return False

    def ping(self) -> None:
        self.client.ping()

    def close(self) -> None:
        self.client.close()
