"""The hot tier: checksummed copies of small objects in Redis/Valkey, and their ledger.

The hot tier is only ever a cache: every entry carries the object's SHA-256, and a
reader checks the bytes against it (or against the copy's keyed mac, which binds them to
it: see below) before trusting them, so a corrupted, truncated or foreign entry is dropped
and the read falls through to the durable home. Losing Redis loses
no data.

**Only the tiering engine fills it.** A read that misses serves the bytes from the home
and leaves it at that (the access tracker tells the daemon, which decides by rank and
budget whether the object earns a copy). Every copy is written by :meth:`HotCache.fill`
and removed by :meth:`HotCache.evict` or :meth:`HotCache.kill`, each one Lua script that
updates the copy and its **ledger** entry together (member → object id and bytes, plus
their sum, in the ledger shard that shares the copy's hash tag: see :mod:`liquid.redis_keys`).
So what Redis holds for Liquid is exactly what the planner admitted, and the ledger (the sum
of its shards) is the number a hot-tier budget is checked against. On a Redis/Valkey Cluster
the shards' 256 hash tags spread the copies over the primaries.
Entries also expire after ``ttl``, a safety net only (a copy whose key expired is
refilled on its next miss; its ledger entry keeps counting it until then).

**Deleted means gone.** A delete, expiry or purge calls :meth:`HotCache.kill`, which
leaves a short-lived tombstone (:func:`~liquid.redis_keys.hot_tomb`) before it deletes the copy;
:meth:`HotCache.fill` refuses to write a tombstoned version, so a fill that read the bytes
just before the delete cannot bring the copy back. (The fill's caller re-checks the catalog
after writing, which covers a fill slower than the tombstone's life.)

Entry layout (one Redis string, one round trip per read)::

    b"LQH2" | mac (16) | sha256 digest's first 16 bytes | uint16 len(content_type) | content_type | data

**Sealed copies.** ``mac`` is BLAKE3 keyed with the deployment's ``hot_copy_key`` (made once
by the catalog's migration 0015, read by every process at start: :func:`liquid.catalog.db.secret`),
over the version's whole SHA-256 digest and everything after the digest's half. A reader checks
the mac against the digest it knows from the catalog (every read takes it: ``expect_sha256``),
not the bytes against a new SHA-256: the same guarantee (a copy of other bytes, another content
type or another version is never served, even one written by whoever can write to Redis but
cannot read the catalog) for a fifth of the CPU (1 MiB: 97 µs against 474 µs here, the largest
single cost of a hot 1 MiB GET). The header is as long as the older layout's, so a copy's size
does not depend on how it is checked. The fill still checks the home's bytes against the
catalog's SHA-256 before it seals them. Copies smaller than
:data:`SEAL_MIN` keep the older layout, ``b"LQH1" | sha256 | uint16 | content_type | data``,
checked by their SHA-256, which is the faster check for them; so does every copy a cache
made without a key (``key=None``) writes, and copies written before an upgrade keep serving.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import struct
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import blake3
import redis
import redis.asyncio
from redis.cluster import RedisCluster
from redis.utils import HIREDIS_AVAILABLE

from liquid.errors import StoreUnavailable
from liquid.redis_keys import (
    HOT_SHARDS,
    LEGACY_HOT_BYTES,
    LEGACY_HOT_LEDGER,
    LEGACY_HOT_OBJECT,
    hot_bytes,
    hot_ledger,
    hot_object,
    hot_shard,
    hot_tomb,
)
from liquid.refs import ResultRef
from liquid.stores.guard import Guard

log = logging.getLogger(__name__)

_MAGIC = b"LQH1"  # checked by its SHA-256
_HEADER = struct.Struct("!4s32sH")
_SEALED = b"LQH2"  # checked by its keyed BLAKE3 mac; the same header size as LQH1
#: Bytes of a sealed copy's mac (128 bits, as AES-GCM's and Poly1305's tags) and of the digest's
#: half beside it: together the 32 bytes the digest takes in the older layout, so a copy's size
#: (what budgets count) does not depend on its layout.
MAC_BYTES = 16
#: Bytes of the key a :class:`HotCache` seals copies with.
KEY_BYTES = 32
#: Copies at least this large are sealed; smaller ones keep the SHA-256 layout, which checks them
#: faster (BLAKE3's speed is in hashing many 1 KiB chunks at once: checking a copy here took
#: 3.1 µs sealed against 1.8 by SHA-256 at 1 KiB, level at 16 KiB, 13.9 against 31.1 at 64 KiB).
SEAL_MIN = 16 * 1024
#: How long a tombstone refuses fills of a version (seconds): longer than any fill takes.
TOMBSTONE_TTL = 600.0

# KEYS: copy, ledger, ledger sum, tombstone. ARGV: member, object id, value, ttl (ms).
_FILL = """
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
local n = string.len(ARGV[3])
local old = redis.call('HGET', KEYS[2], ARGV[1])
local was = 0
if old then was = tonumber(string.match(old, ' (%d+)$')) or 0 end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. n)
redis.call('INCRBY', KEYS[3], n - was)
return 1
"""

# KEYS: copy, ledger, ledger sum[, tombstone]. ARGV: member[, tombstone ttl (ms)].
_EVICT = """
if KEYS[4] then redis.call('SET', KEYS[4], '1', 'PX', ARGV[2]) end
redis.call('DEL', KEYS[1])
local old = redis.call('HGET', KEYS[2], ARGV[1])
if not old then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DECRBY', KEYS[3], tonumber(string.match(old, ' (%d+)$')) or 0)
return 1
"""


class _CPackedCommands:
    """Commands packed by hiredis in C, as redis-py's sync connections pack them.

    Its asyncio connections pack in Python: an ``MGET`` of 100 hot keys took 89 µs to pack there
    against 26 µs through the sync client's packer (about a tenth of a batch resolve's own work).
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        packed: list[bytes] = _PACKER.pack(*args)
        return packed


class _CPackedConnection(_CPackedCommands, redis.asyncio.Connection):
    pass


class _CPackedUnixConnection(_CPackedCommands, redis.asyncio.UnixDomainSocketConnection):
    pass


#: The asyncio connection classes that pack in C, when hiredis is installed (it is a dependency).
_C_PACKED: dict[type[Any], type[Any]] = {}
try:  # redis-py's own C packer (recent releases); without it, its asyncio client packs in Python
    from redis.connection import HiredisRespSerializer
except ImportError:  # pragma: no cover - older redis-py
    HiredisRespSerializer = None  # type: ignore[assignment,misc]
if HIREDIS_AVAILABLE and HiredisRespSerializer is not None:
    _PACKER = HiredisRespSerializer()  # type: ignore[no-untyped-call,unused-ignore]  # untyped in redis 8.2
    _C_PACKED = {
        redis.asyncio.Connection: _CPackedConnection,
        redis.asyncio.UnixDomainSocketConnection: _CPackedUnixConnection,
    }


@dataclass(frozen=True, slots=True)
class HotEntry:
    #: The value: a view into the one buffer Redis answered with (no copy, even at megabytes).
    data: bytes | memoryview
    sha256: str
    content_type: str


def member(ref: ResultRef) -> str:
    """The ref without its scheme: the ledger's and tombstone's name for a version."""
    return ref.uri.removeprefix("liquid://")


def hot_key(ref: ResultRef) -> str:
    """Redis key of one object version's copy."""
    return _hot_key_of(ref.uri)


@functools.lru_cache(maxsize=65536)
def _hot_key_of(uri: str) -> str:
    # A CRC-32 and two formats per ref (~1.5 µs, a hundred times per batch resolve), for a name
    # that never changes: remembered, like the ref texts' parses (liquid.versions).
    return hot_object(uri.removeprefix("liquid://"))


def _keys(m: str) -> list[str]:
    """A version's copy and its ledger shard (entries, sum): one hash tag, so one slot."""
    shard = hot_shard(m)
    return [hot_object(m), hot_ledger(shard), hot_bytes(shard)]


def entry_size(size: int, content_type: str) -> int:
    """Bytes a copy of an object of ``size`` bytes occupies in Redis (what the ledger counts)."""
    return _HEADER.size + len(content_type.encode("utf-8")) + size


def _mac(key: bytes, digest: bytes, rest: bytes | memoryview) -> bytes:
    """The sealed layout's mac: keyed BLAKE3 over the whole SHA-256 digest and what follows the header's
    digest half (content type's length, content type, data)."""
    h = blake3.blake3(digest, key=key)
    h.update(rest)
    return h.digest(MAC_BYTES)


def encode(data: bytes, sha256_hex: str, content_type: str, *, key: bytes | None = None) -> bytes:
    """A copy of ``data``: sealed with ``key`` (``LQH2``) from :data:`SEAL_MIN` bytes up, else
    checked by its SHA-256 (``LQH1``).

    ``sha256_hex`` must be ``data``'s own (the fill checked it): a sealed copy is never hashed again.
    """
    ct = content_type.encode("utf-8")
    digest = bytes.fromhex(sha256_hex)
    if key is None or len(data) < SEAL_MIN:
        return _HEADER.pack(_MAGIC, digest, len(ct)) + ct + data
    rest = len(ct).to_bytes(2, "big") + ct + data
    return _SEALED + _mac(key, digest, rest) + digest[:MAC_BYTES] + rest


def decode(raw: bytes, expect_sha256: str, key: bytes | None = None) -> HotEntry | None:
    """The entry if it is a copy of the version whose SHA-256 is ``expect_sha256``: well formed,
    its digest that one, and its bytes matching its mac (sealed, checked with ``key``) or the
    digest (SHA-256 layout); else None. A sealed copy without ``key`` is None: nothing here
    could check it.
    """
    digest = bytes.fromhex(expect_sha256)
    if len(raw) < _HEADER.size:
        return None
    magic, mid, ct_len = _HEADER.unpack_from(raw)
    start = _HEADER.size + ct_len
    if len(raw) < start:
        return None
    view = memoryview(raw)
    if magic == _SEALED:
        if (
            key is None
            or mid[MAC_BYTES:] != digest[:MAC_BYTES]
            or not hmac.compare_digest(_mac(key, digest, view[_HEADER.size - 2 :]), mid[:MAC_BYTES])
        ):
            return None
    elif magic != _MAGIC or mid != digest or hashlib.sha256(view[start:]).digest() != digest:
        return None
    return HotEntry(
        data=view[start:], sha256=expect_sha256, content_type=raw[_HEADER.size : start].decode("utf-8")
    )


class HotCache:
    """Checksummed object copies in Redis. Redis failures degrade to misses, never to errors.

    ``key``: the deployment's ``hot_copy_key`` (:data:`KEY_BYTES` bytes), which every process
    that fills or reads the same Redis must share; without one, copies are written in the
    SHA-256-checked layout and sealed ones are refused (see the module docstring).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl: float,
        max_object_size: int,
        breaker_failures: int = 3,
        breaker_reset: float = 5.0,
        key: bytes | None = None,
    ) -> None:
        if key is not None and len(key) != KEY_BYTES:
            raise ValueError(f"a hot-copy key is {KEY_BYTES} bytes, got {len(key)}")
        self.key = key
        self.client = client
        self.ttl = ttl
        self.max_object_size = max_object_size
        #: Reads fail fast (a miss) while Redis keeps failing, instead of a timeout on every read.
        self.guard = Guard(
            "hot",
            what="the hot cache",
            concurrency=256,
            queue_wait=0.0,
            failures=breaker_failures,
            reset=breaker_reset,
            outage=lambda exc: isinstance(exc, redis.RedisError),
        )
        # Versions whose kill did not reach Redis: never served from a copy until a kill does.
        self._unkilled: set[ResultRef] = set()
        self._unkilled_lock = threading.Lock()
        self._fill = client.register_script(_FILL)
        self._evict = client.register_script(_EVICT)
        #: The bound of one :meth:`aget` command (set by :meth:`async_client`; None: unbounded).
        self._aget_timeout: float | None = None
        self.hits = 0
        self.misses = 0
        self.corrupt = 0
        self.errors = 0

    def __repr__(self) -> str:
        return (
            f"HotCache(hits={self.hits}, misses={self.misses}, corrupt={self.corrupt}, errors={self.errors})"
        )

    # ------------------------------------------------------------------ reads

    def get(self, ref: ResultRef, *, expect_sha256: str) -> HotEntry | None:
        """A copy of the version whose SHA-256 is ``expect_sha256`` (the catalog's), checked; or None
        (absent, corrupt, of other bytes, or Redis down or failing)."""
        if self._unkilled and (ref in self._unkilled or not self._retry_kills()):
            return None
        try:
            raw = self.guard.call(self.client.get, hot_key(ref))
        except (redis.RedisError, StoreUnavailable) as exc:
            self.errors += 1
            log.warning("hot cache unavailable, reading through: %s", exc)
            return None
        return self.accept(ref, raw, expect_sha256=expect_sha256)

    @property
    def kills_pending(self) -> bool:
        """Kills that did not reach Redis yet: only :meth:`get` (which retries them) may serve copies."""
        return bool(self._unkilled)

    def async_client(self) -> redis.asyncio.Redis | None:
        """An asyncio client to the same server (for :meth:`aget`), or None when it cannot be derived.

        The caller owns it (it belongs to the event loop that first uses it) and closes it.

        Its commands carry no socket timeout of their own: :meth:`aget` bounds each one whole
        (retries included) by the sync client's socket timeout, with one ``asyncio.timeout``.
        redis-py's asyncio client bounds a write with ``asyncio.wait_for``, a task per command
        on Python 3.11: about a sixth of a hot 1 KiB GET on the event loop.
        """
        pool = self.client.connection_pool
        kw = pool.connection_kwargs
        self._aget_timeout = kw.get("socket_timeout")
        common = {
            "db": kw.get("db", 0),
            "username": kw.get("username"),
            "password": kw.get("password"),
            "socket_timeout": None,  # not redis-py's default (5 s): see above
            "socket_connect_timeout": kw.get("socket_connect_timeout"),
        }
        if pool.connection_class is redis.Connection:
            client = redis.asyncio.Redis(
                host=kw.get("host", "localhost"), port=kw.get("port", 6379), **common
            )
        elif pool.connection_class is redis.UnixDomainSocketConnection:
            client = redis.asyncio.Redis(unix_socket_path=kw["path"], **common)
        else:
            return None  # TLS and other transports: readers use get() in a worker thread
        packed = _C_PACKED.get(client.connection_pool.connection_class)
        if packed is not None:  # connections are made on first use: all of them pack in C
            client.connection_pool.connection_class = packed
        return client

    async def aget(
        self, ref: ResultRef, client: redis.asyncio.Redis, *, expect_sha256: str
    ) -> HotEntry | None:
        """:meth:`get` on an asyncio client: no worker thread for a hit.

        Call it only while :attr:`kills_pending` is false. An open circuit is a miss at once; a
        failure counts as one and the read goes through to the home.
        """
        if self.guard.is_open or self._unkilled:
            return None
        key = hot_key(ref)
        try:
            # A stalled Redis costs the read this long, then it goes to the home (TimeoutError is
            # an OSError; redis-py drops a connection whose reply was cut short).
            async with asyncio.timeout(self._aget_timeout):
                raw = await client.get(key)
        except (redis.RedisError, OSError) as exc:
            self.errors += 1
            log.warning("hot cache unavailable, reading through: %r", exc)
            return None
        entry = self.accept(ref, raw, expect_sha256=expect_sha256, drop=False)
        if entry is None and raw is not None:
            try:
                async with asyncio.timeout(self._aget_timeout):
                    await client.delete(key)
            except (redis.RedisError, OSError):
                self.errors += 1
        return entry

    def _retry_kills(self) -> bool:
        """Send the kills that failed earlier; True once none is pending (reads may trust copies)."""
        with self._unkilled_lock:
            pending = list(self._unkilled)
        if not pending or self.guard.is_open:
            return not pending
        if self._remove(pending, tombstone=True, remember=False) >= 0:
            with self._unkilled_lock:
                self._unkilled.difference_update(pending)
        return not self._unkilled

    def accept(
        self, ref: ResultRef, raw: object, *, expect_sha256: str, drop: bool = True
    ) -> HotEntry | None:
        """Judge a value fetched for ``ref`` (by :meth:`get` or a caller's pipeline).

        A corrupt or stale value is deleted from Redis unless ``drop`` is false (the caller does it).
        """
        if isinstance(raw, Exception):
            self.errors += 1
            log.warning("hot cache read failed, reading through: %s", raw)
            return None
        if raw is None:
            self.misses += 1
            return None
        entry = decode(raw, expect_sha256, self.key) if isinstance(raw, bytes) else None
        if entry is None:
            # Never serve it. Its ledger entry stays (still admitted): the next miss refills it.
            self.corrupt += 1
            log.warning("hot cache entry for %s failed its checksum; dropped", ref)
            if not drop:
                return None
            try:
                self.client.delete(hot_key(ref))
            except redis.RedisError:
                self.errors += 1
            return None
        self.hits += 1
        return entry

    def get_many(self, refs: Sequence[ResultRef], *, expect_sha256: Sequence[str]) -> list[HotEntry | None]:
        """:meth:`get` of many versions in one round trip (``MGET``); all misses while kills are pending.

        ``expect_sha256`` (one per ref): a copy of other bytes is dropped, as :meth:`get` drops it.
        """
        if not refs or self._unkilled or self.guard.is_open:
            return [None] * len(refs)
        try:
            with self.guard.slot():
                raws = self._mget([hot_key(r) for r in refs])
        except (redis.RedisError, StoreUnavailable) as exc:
            self.errors += 1
            log.warning("hot cache unavailable, reading through: %s", exc)
            return [None] * len(refs)
        return [
            self.accept(r, raw, expect_sha256=sha)
            for r, raw, sha in zip(refs, raws, expect_sha256, strict=True)
        ]

    def get_values(self, refs: Sequence[ResultRef], expect_sha256: Sequence[str]) -> list[memoryview | None]:
        """The values of many versions in one ``MGET``, each checked against its version's SHA-256.

        :meth:`get_many` for a caller that knows each version's checksum (and so its content type):
        only the bytes come back, a view of the buffer Redis answered with. A copy of other bytes
        is dropped, as :meth:`get` drops it; all misses while kills are pending or Redis is down.
        """
        if not refs or self._unkilled or self.guard.is_open:
            return [None] * len(refs)
        try:
            with self.guard.slot():
                raws = self._mget([hot_key(r) for r in refs])
        except (redis.RedisError, StoreUnavailable) as exc:
            self.errors += 1
            log.warning("hot cache unavailable, reading through: %s", exc)
            return [None] * len(refs)
        values, bad = self._judge(refs, raws, expect_sha256)
        if bad:
            try:
                self.client.delete(*bad)
            except redis.RedisError:
                self.errors += 1
        return values

    async def aget_values(
        self, refs: Sequence[ResultRef], expect_sha256: Sequence[str], client: redis.asyncio.Redis
    ) -> list[memoryview | None]:
        """:meth:`get_values` on an asyncio client (one ``MGET``, no worker thread), bounded as :meth:`aget`.

        Call it only while :attr:`kills_pending` is false (it answers all misses otherwise). An open
        circuit is all misses at once; a failure counts as one, and the reads go to the homes.
        """
        if not refs or self.guard.is_open or self._unkilled:
            return [None] * len(refs)
        try:
            async with asyncio.timeout(self._aget_timeout):
                raws = await client.mget([hot_key(r) for r in refs])
        except (redis.RedisError, OSError) as exc:
            self.errors += 1
            log.warning("hot cache unavailable, reading through: %r", exc)
            return [None] * len(refs)
        values, bad = self._judge(refs, raws, expect_sha256)
        if bad:
            try:
                async with asyncio.timeout(self._aget_timeout):
                    await client.delete(*bad)
            except (redis.RedisError, OSError):
                self.errors += 1
        return values

    def _judge(
        self, refs: Sequence[ResultRef], raws: Sequence[Any], expect_sha256: Sequence[str]
    ) -> tuple[list[memoryview | None], list[str]]:
        """Each raw copy's value if its header and mac (or SHA-256) match the version, and the keys
        of the copies that do not (for the caller to delete).

        :func:`decode` and :meth:`accept` written out for many: a batch of a thousand pays this
        per copy, and the checksum compared as bytes needs no hex string nor entry object.
        """
        values: list[memoryview | None] = []
        bad: list[str] = []
        key = self.key
        sha256 = hashlib.sha256
        header = _HEADER.size
        misses = 0
        for ref, raw, expect in zip(refs, raws, expect_sha256, strict=True):
            if raw is None:
                misses += 1
                values.append(None)
                continue
            digest = bytes.fromhex(expect)
            # magic | digest (LQH1), or mac and the digest's half (LQH2) | uint16 content-type
            # length | content type | data (see the module); a copy shorter than its header holds
            # no content-type length at 36:38, nor a digest to match.
            if isinstance(raw, bytes) and len(raw) >= header:
                start = header + int.from_bytes(raw[36:38], "big")
                if len(raw) >= start:
                    magic = raw[:4]
                    if magic == _MAGIC and raw[4:36] == digest:
                        data = memoryview(raw)[start:]
                        if sha256(data).digest() == digest:
                            values.append(data)
                            continue
                    elif magic == _SEALED and key is not None and raw[20:36] == digest[:MAC_BYTES]:
                        view = memoryview(raw)
                        if hmac.compare_digest(_mac(key, digest, view[header - 2 :]), raw[4:20]):
                            values.append(view[start:])
                            continue
            self.corrupt += 1
            log.warning("hot cache entry for %s failed its checksum; dropped", ref)
            bad.append(hot_key(ref))
            values.append(None)
        self.misses += misses
        self.hits += len(values) - misses - len(bad)
        return values, bad

    def exists(self, refs: Sequence[ResultRef]) -> list[bool] | None:
        """Whether each version has a copy now (one pipeline); None when Redis is down."""
        if not refs:
            return []
        pipe = self.client.pipeline(transaction=False)
        for r in refs:
            pipe.exists(hot_key(r))
        try:
            return [bool(x) for x in pipe.execute()]
        except redis.RedisError as exc:
            self.errors += 1
            log.warning("hot cache unavailable: %s", exc)
            return None

    # ----------------------------------------------------------------- writes

    def fill(
        self,
        ref: ResultRef,
        object_id: int,
        data: bytes,
        *,
        sha256: str,
        content_type: str,
        ttl: float | None = None,
    ) -> bool:
        """Write an admitted copy and its ledger entry; False when too large, tombstoned or Redis is down.

        ``ttl`` (seconds) shortens the copy's life below the cache's own, e.g. to its object's expiry.
        """
        if len(data) > self.max_object_size:
            return False
        m = member(ref)
        life = self.ttl if ttl is None else min(ttl, self.ttl)
        try:
            done = self._fill(
                keys=[*_keys(m), hot_tomb(m)],
                args=[
                    m,
                    object_id,
                    encode(data, sha256, content_type, key=self.key),
                    max(int(life * 1000), 1),
                ],
            )
        except redis.RedisError as exc:
            self.errors += 1
            log.warning("hot cache fill failed for %s: %s", ref, exc)
            return False
        return bool(done)

    def evict(self, refs: Iterable[ResultRef]) -> int:
        """Remove copies the planner no longer wants (and their ledger entries); how many were listed."""
        return max(self._remove(refs, tombstone=False), 0)

    def kill(self, refs: Iterable[ResultRef]) -> int:
        """Remove the copies of deleted, expired or purged versions and refuse fills of them for a while.

        A kill that cannot reach Redis is remembered: this process serves no copy of those
        versions (nor, while any is pending, any copy at all) until a later kill succeeds.
        """
        return max(self._remove(list(refs), tombstone=True), 0)

    def _evict_pipeline(self, refs: Sequence[ResultRef], *, tombstone: bool) -> Any:
        # EVALSHA through execute_command: redis-py's cluster pipeline refuses its evalsha method
        # (each call's keys share their shard's hash tag, so the cluster routes it to one node).
        pipe = self.client.pipeline(transaction=False)
        for r in refs:
            m = member(r)
            keys = _keys(m)
            args: list[str | int] = [m]
            if tombstone:
                keys.append(hot_tomb(m))
                args.append(int(TOMBSTONE_TTL * 1000))
            pipe.execute_command("EVALSHA", self._evict.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
        return pipe

    def _remove(self, refs: Iterable[ResultRef], *, tombstone: bool, remember: bool = True) -> int:
        """How many copies went; -1 when Redis failed."""
        refs = list(refs)
        n = len(refs)
        if not n:
            return 0
        try:
            with self.guard.slot():
                try:
                    return sum(int(x) for x in self._evict_pipeline(refs, tombstone=tombstone).execute())
                except redis.exceptions.NoScriptError:
                    # A restarted (or new) Redis has not seen the script yet: load it, go again.
                    self.client.script_load(_EVICT)
                    return sum(int(x) for x in self._evict_pipeline(refs, tombstone=tombstone).execute())
        except (redis.RedisError, StoreUnavailable) as exc:
            self.errors += 1
            what = "kill" if tombstone else "evict"
            log.warning("hot cache %s of %d copies failed (they expire by TTL): %s", what, n, exc)
            if tombstone and remember:
                with self._unkilled_lock:
                    if len(self._unkilled) < 1_000_000:
                        self._unkilled.update(refs)
            return -1

    # ----------------------------------------------------------------- ledger

    def ledger(self) -> dict[str, tuple[int, int]]:
        """Every admitted copy: member → (object id, bytes), from all shards. Raises redis errors."""
        out: dict[str, tuple[int, int]] = {}
        # One pipeline of HSCANs per round, over the shards whose scan is not finished yet.
        cursors: dict[int, int] = dict.fromkeys(range(HOT_SHARDS), 0)
        while cursors:
            pipe = self.client.pipeline(transaction=False)
            for shard, cursor in cursors.items():
                pipe.hscan(hot_ledger(shard), cursor, count=1000)
            pending: dict[int, int] = {}
            for shard, (cursor, entries) in zip(list(cursors), pipe.execute(), strict=True):
                for m, value in entries.items():
                    oid, _, n = _text(value).partition(" ")
                    out[_text(m)] = (int(oid), int(n))
                if int(cursor):
                    pending[shard] = int(cursor)
            cursors = pending
        return out

    def holds(self, ref: ResultRef) -> bool:
        """Whether the ledger counts a copy of this version. Raises redis errors."""
        m = member(ref)
        return bool(self.client.hexists(hot_ledger(hot_shard(m)), m))

    def used_bytes(self) -> int:
        """The ledger's sum over its shards: bytes of the copies the planner admitted. Raises redis errors."""
        return sum(
            int(raw) for raw in self._mget([hot_bytes(s) for s in range(HOT_SHARDS)]) if raw is not None
        )

    def _mget(self, keys: list[str]) -> list[Any]:
        # Keys of many shards: a cluster answers MGET within one slot only; redis-py splits it there.
        if isinstance(self.client, RedisCluster):
            return list(self.client.mget_nonatomic(keys))
        return list(self.client.mget(keys))

    def drop_legacy(self) -> int:
        """Remove the copies and ledger of the one-tag layout earlier versions wrote; how many copies went.

        Readers never look at those names, so the copies were already misses (the reads went to
        each object's home); this frees their memory at once instead of after ``hot.ttl``, and the
        planner refills what it still wants under the sharded names. Cheap when there is nothing.
        Raises redis errors.
        """
        if not self.client.exists(LEGACY_HOT_LEDGER, LEGACY_HOT_BYTES):
            return 0
        gone = 0
        batch: list[str] = []
        for m, _value in self.client.hscan_iter(LEGACY_HOT_LEDGER, count=1000):
            batch.append(LEGACY_HOT_OBJECT + _text(m))
            if len(batch) >= 1000:
                gone += int(self.client.unlink(*batch))
                batch = []
        if batch:
            gone += int(self.client.unlink(*batch))
        self.client.unlink(LEGACY_HOT_LEDGER, LEGACY_HOT_BYTES)
        log.info("dropped %d hot copies of the one-tag layout; the hot tier refills", gone)
        return gone

    def ping(self) -> None:
        self.client.ping()

    def close(self) -> None:
        self.client.close()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
