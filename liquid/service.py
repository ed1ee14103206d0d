"""The core service: put, open/get, head, delete and list objects, tenant-scoped.

Writes stream: the SHA-256 and size are computed as bytes pass, optional zstd
compression happens on the way to the store, and memory stays bounded by one
chunk (plus, without a size hint, up to ``warm_max_object_size`` to decide where
the object is born). A write is acknowledged only after one catalog transaction
records it; bytes written before a failed transaction are deleted (and any that
survive a crash are unreferenced garbage for ``liquid gc``, never a half-visible
object).

Reads resolve inline → hot → durable home and never return bytes that do not match
the recorded checksum: the hot copy is verified and dropped on mismatch; a whole-object
read from the home holds back its last chunk until the digest is checked and raises
:class:`~liquid.errors.IntegrityError` instead of finishing. :meth:`LiquidService.get`
keeps every byte anyway, so from a store that can (S3) it reads a whole value into one
buffer, hashing each step as the next arrives, and returns it only once verified. Ranged
reads of part of an object cannot be checked against the whole-object digest; they verify
length only.

Small values live in their catalog row (home tier warm, store ``catalog``): those
smaller than ``inline_threshold`` are also returned inside the ref, and warm values up
to ``warm_row_max_size`` are kept there because one statement per write and per read
beats a separate chunk store round trip (PostgreSQL TOASTs them out of line).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import IO, Any, NamedTuple

import redis.asyncio
import zstandard
from sqlalchemy import Boolean, ColumnElement, Engine, Row, Table, and_, literal_column, select, text, update
from sqlalchemy.dialects.postgresql import distinct_on

from liquid.access import AccessTracker
from liquid.catalog import db, partitions
from liquid.catalog.changes import MARK, mark_changed
from liquid.catalog.fastpath import CatalogFastPath
from liquid.catalog.models import Object
from liquid.classification import Classifier
from liquid.config import CATALOG_STORE, DURABLE_TIERS, Settings, Tier
from liquid.errors import (
    Forbidden,
    IntegrityError,
    InvalidInput,
    LiquidError,
    ObjectGone,
    ObjectNotFound,
    TooLarge,
)
from liquid.events import log as events
from liquid.hotcache import HotCache
from liquid.limits import (
    MAX_VERSION,
    SCOPES,
    check_header_text,
    check_instant,
    check_tags,
    check_text,
    expiry_from_ttl,
)
from liquid.purge import purge
from liquid.redaction import PayloadRedaction
from liquid.refs import MAX_KEY_BYTES, RefInfo, ResultRef, check_key, check_new_key, check_slug
from liquid.shm import ShmCache
from liquid.stores.base import CHUNK_SIZE, Store, slice_stream
from liquid.tenancy import Tenancy
from liquid.tracing import Tracing
from liquid.versions import VersionCache, VersionFacts

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: Lifetime scopes of objects, as a workflow engine's results have them.
RefLike = ResultRef | RefInfo | str
Body = bytes | bytearray | memoryview | Iterable[bytes] | IO[bytes]


def _tenant_rows(tenant: str) -> ColumnElement[bool]:
    """The tenant's partition of ``objects`` and the legacy one (:func:`partitions.tenant_rows`)."""
    return literal_column(partitions.tenant_rows(tenant), Boolean)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Catalog facts about one object version."""

    ref: ResultRef
    size: int
    stored_size: int
    sha256: str
    content_type: str
    compression: str
    tags: dict[str, Any]
    classification: str | None
    trace_id: str | None
    correlation_id: str | None
    execution_id: str | None
    scope: str | None
    created_at: datetime
    expires_at: datetime | None
    legal_hold: bool
    home_tier: str
    home_store: str
    state: str

    def to_json(self) -> dict[str, Any]:
        return {
            "uri": self.ref.uri,
            "tenant": self.ref.tenant,
            "namespace": self.ref.namespace,
            "key": self.ref.key,
            "version": self.ref.version,
            "size": self.size,
            "stored_size": self.stored_size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "compression": self.compression,
            "tags": self.tags,
            "classification": self.classification,
            "trace_id": self.trace_id,
            "correlation_id": self.correlation_id,
            "execution_id": self.execution_id,
            "scope": self.scope,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "legal_hold": self.legal_hold,
            "home_tier": self.home_tier,
            "home_store": self.home_store,
            "state": self.state,
        }


@dataclass(slots=True)
class ObjectReader:
    """A stream of verified bytes with what is known about them. Iterate it once."""

    ref: ResultRef
    size: int
    sha256: str
    content_type: str
    #: Where the bytes come from: ``inline``, ``hot``, or the home tier's name.
    source: str
    start: int
    end: int
    #: Views (``memoryview``) for hot and inline bytes, so a large hot value is never copied.
    chunks: Iterator[bytes | memoryview] = field(repr=False)
    #: The version's own expiry, when it has one and the bytes came from its home.
    expires_at: datetime | None = None
    #: The version's classification, when the bytes came from its home (liquid.classification).
    classification: str | None = None

    def __iter__(self) -> Iterator[bytes | memoryview]:
        return self.chunks

    def read(self) -> bytes:
        return b"".join(self.chunks)

    def buffer(self) -> bytes | memoryview:
        """All the bytes in one buffer, without a copy when they are already in one (hot, inline)."""
        parts = list(self.chunks)
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    @property
    def length(self) -> int:
        return self.end - self.start


class Resolution(NamedTuple):
    """One version of a batch resolve: its facts, and its value and catalog facts when asked for.

    A named tuple: a batch makes one per ref, and a frozen dataclass takes twice as long to make.
    """

    facts: VersionFacts
    #: A hot value is a view of the buffer Redis answered with (not copied).
    data: bytes | memoryview | None
    info: ObjectInfo | None = None


Resolved = list[Resolution | LiquidError]

#: The most value bytes a batch resolve reads from Redis on the event loop (:meth:`LiquidService.
#: aresolve_many`); a larger reply is read in a worker thread with the sync client. Measured
#: through the API (both paths in one run, interleaved, load 3-5): the loop wins by the thread
#: hop at 1 to 100 refs of 1 KiB and loses from about 300 (1.4x at 300, 1.04-1.7x at 1,000):
#: redis-py's asyncio client reads a reply about twice as slowly as its sync client.
LOOP_READ_MAX = 128 * 1024


class _Batch:
    """One :meth:`LiquidService.resolve_many` between its round trips (hot read, catalog, homes)."""

    __slots__ = ("data", "facts", "out", "refs", "rows", "unseen", "wanted")

    def __init__(self, refs: Sequence[ResultRef]) -> None:
        self.refs = refs
        #: Per position: the answer once known (an error, or the Resolution at the end).
        self.out: list[Resolution | LiquidError | None] = [None] * len(refs)
        #: Facts of the versions not yet known to be missing or gone, by position.
        self.facts: dict[int, VersionFacts] = {}
        #: Positions whose facts this process does not know (they need the catalog first).
        self.unseen: list[int] = []
        #: Catalog rows of the live versions looked up.
        self.rows: dict[int, Any] = {}
        #: Positions whose value was asked for, in order.
        self.wanted: list[int] = []
        #: Values found so far (a hot value proves its version live).
        self.data: dict[int, bytes | memoryview] = {}

    def choose(self, want: Callable[[int, VersionFacts], bool]) -> None:
        """Ask ``want`` about each version in order (a byte budget is kept in it)."""
        facts = self.facts
        self.wanted = [i for i in sorted(facts) if want(i, facts[i])]

    def hot_query(self) -> tuple[list[ResultRef], list[str]]:
        """The wanted versions and their checksums, for one ``MGET`` of their copies."""
        refs, facts = self.refs, self.facts
        return [refs[i] for i in self.wanted], [facts[i].sha256 for i in self.wanted]

    def proven(self) -> bool:
        """Whether every version left was proven live by its copy (no catalog, no home to read)."""
        return len(self.data) == len(self.facts) and not self.unseen

    def answers(self) -> Resolved:
        """The answers of a :meth:`proven` batch: each version's facts and hot value, or its error."""
        out, data = self.out, self.data
        for i, f in self.facts.items():
            out[i] = Resolution(f, data[i])
        return [o for o in out if o is not None]


@dataclass(frozen=True, slots=True)
class Page:
    items: list[ObjectInfo]
    next_cursor: str | None


def _as_chunks(body: Body) -> Iterator[bytes]:
    if isinstance(body, bytes | bytearray | memoryview):
        data = bytes(body)
        for i in range(0, len(data), CHUNK_SIZE):
            yield data[i : i + CHUNK_SIZE]
        return
    if hasattr(body, "read"):
        reader: IO[bytes] = body  # type: ignore[assignment]
        while chunk := reader.read(CHUNK_SIZE):
            yield chunk
        return
    for chunk in body:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise InvalidInput(f"body chunks must be bytes, got {type(chunk).__name__}", field="body")
        if chunk:
            yield bytes(chunk)


def _small_value(body: Body, most: int) -> bytes | None:
    """``body`` as one bytes object when it was given as one buffer of at most ``most`` bytes.

    None for streams and larger buffers, which go through the chunked path.
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        return None
    if (body.nbytes if isinstance(body, memoryview) else len(body)) > most:
        return None
    return bytes(body)  # the same object for bytes; one copy of a mutable buffer the caller owns


def _length_mismatch(size: int, declared: int) -> InvalidInput:
    return InvalidInput(f"body was {size} bytes but its declared length is {declared}", field="body")


#: A body given as one ``bytes`` buffer this large or larger is hashed beside its upload
#: (:meth:`_Meter.take`): below it, starting a thread costs more than the hash it hides.
HASH_ASIDE = 1 << 20


class _Meter:
    """Counts and hashes bytes as they pass; refuses to pass more than ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.digest = hashlib.sha256()
        self._hashing: threading.Thread | None = None

    def feed(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        if self.size > self.limit:
            raise TooLarge(f"object exceeds the maximum size of {self.limit} bytes", field="body")
        self.digest.update(chunk)
        return chunk

    def wrap(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            yield self.feed(chunk)

    def take(self, data: bytes) -> None:
        """Count ``data`` (one whole body) now and hash it in a thread of its own meanwhile.

        hashlib lets go of the GIL while it hashes a large buffer, so the store's upload of the
        same bytes runs beside it: a 4 MiB body's SHA-256 (~2.5 ms) leaves the put's critical path.
        """
        self.size = len(data)
        if self.size > self.limit:
            raise TooLarge(f"object exceeds the maximum size of {self.limit} bytes", field="body")
        self._hashing = threading.Thread(target=self.digest.update, args=(data,), name="liquid-put-sha256")
        self._hashing.start()

    def hexdigest(self) -> str:
        """The SHA-256 of every byte counted (waits for :meth:`take`'s thread)."""
        if self._hashing is not None:
            self._hashing.join()
        return self.digest.hexdigest()


def _compress(chunks: Iterable[bytes], level: int) -> Iterator[bytes]:
    compressor = zstandard.ZstdCompressor(level=level).compressobj()
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


def _decompress(chunks: Iterable[bytes]) -> Iterator[bytes]:
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    try:
        for chunk in chunks:
            out = decompressor.decompress(chunk)
            if out:
                yield out
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"stored bytes are not valid zstd: {exc}") from None


def _verified(chunks: Iterable[bytes], *, sha256: str, size: int, what: str) -> Iterator[bytes]:
    """Yield the chunks, holding the last back until size and digest are checked."""
    digest = hashlib.sha256()
    n = 0
    held: bytes | None = None
    for chunk in chunks:
        if held is not None:
            yield held
        digest.update(chunk)
        n += len(chunk)
        held = chunk
    if n != size or digest.hexdigest() != sha256:
        raise IntegrityError(
            f"{what}: stored bytes do not match the catalog (size {n} vs {size}, "
            f"sha256 {digest.hexdigest()[:16]}… vs {sha256[:16]}…); refusing to return them"
        )
    if held is not None:
        yield held


def _read_whole(
    read_into: Callable[[str, memoryview], Iterator[int]],
    locator: str,
    *,
    sha256: str,
    size: int,
    what: str,
) -> bytes:
    """A whole object read into one buffer, each step hashed while the next arrives; its bytes
    are returned only once size and digest match (a mismatch raises, and the buffer is dropped).

    The buffer is a ``BytesIO``'s own: ``getvalue()`` hands that very bytes object over (CPython
    shares it once no view of it is left), so the value is neither joined nor copied on the way.
    """
    out = io.BytesIO()
    if size:
        out.seek(size - 1)
        out.write(b"\0")  # sized once, to the byte
    digest = hashlib.sha256()
    done = 0
    with out.getbuffer() as view:
        for filled in read_into(locator, view):
            digest.update(view[done:filled])
            done = filled
    if done != size or digest.hexdigest() != sha256:
        raise IntegrityError(
            f"{what}: stored bytes do not match the catalog (size {done} vs {size}, "
            f"sha256 {digest.hexdigest()[:16]}… vs {sha256[:16]}…); refusing to return them"
        )
    return out.getvalue()


#: Whole reads at least this large fetch the next chunk while the current one is hashed.
_PREFETCH_MIN = 2 * CHUNK_SIZE
_DONE = object()


def _prefetched(chunks: Iterator[bytes], depth: int = 2) -> Iterator[bytes]:
    """Read ahead on a thread: socket reads and SHA-256 both release the GIL, so they overlap.

    At most ``depth`` chunks wait in memory. If the consumer stops early it returns at once:
    the reader thread finishes the chunk it is reading (bounded by the store's read timeout),
    then closes the source itself. A generator cannot be closed from another thread while it
    runs, and waiting for it here stalled the consumer and, past the wait, leaked the source.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        """Queue ``item`` unless the consumer has gone; a full queue is waited on, never forever."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for chunk in chunks:
                if not offer(chunk):
                    return
            offer(_DONE)
        except BaseException as exc:  # handed to the consumer, raised in its thread
            offer(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:  # nobody is left to hand it to
                    log.warning("closing an abandoned read failed: %s", exc)

    thread = threading.Thread(target=pump, name="liquid-prefetch", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _counted(chunks: Iterable[bytes], *, expect: int, what: str) -> Iterator[bytes]:
    n = 0
    for chunk in chunks:
        n += len(chunk)
        yield chunk
    if n != expect:
        raise IntegrityError(f"{what}: expected {expect} bytes in the range, the store gave {n}")


OBJECTS: Table = Object.__table__  # type: ignore[assignment]


class LiquidService:
    """Tenant-scoped object storage over a catalog, named stores and a hot cache.

    Args:
        settings: the configuration (thresholds, tiers, compression).
        engine: SQLAlchemy engine on the catalog database (migrated).
        stores: named durable stores; the names are those ``settings.tiers`` uses.
        hot: the Redis cache, or None to run without one.
        access: the read tracker, or None to count nothing.
        shm: this node's shared-memory copies (their owner is the API; the service removes them
            when a version is deleted or expires).
        clock: returns the current UTC time; tests inject a fake one.
        tracing: spans (:mod:`liquid.tracing`); the API and the mover take theirs from here.
        redaction: text payload redaction (default: from ``settings``).
        versions: the facts of versions already read (default: a new cache of its own).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        stores: Mapping[str, Store],
        hot: HotCache | None = None,
        access: AccessTracker | None = None,
        shm: ShmCache | None = None,
        clock: Clock = utcnow,
        tracing: Tracing | None = None,
        redaction: PayloadRedaction | None = None,
        versions: VersionCache | None = None,
    ) -> None:
        self.settings = settings
        #: Immutable facts of versions read before (liquid.versions): hot hits check copies against them.
        self.versions = versions if versions is not None else VersionCache()
        #: Which tiers each classification may live in (liquid.classification).
        self.classifier = Classifier(settings)
        #: Text payloads redacted before storage, when redaction.enabled (liquid.redaction).
        self.redaction = redaction if redaction is not None else PayloadRedaction.from_settings(settings)
        self.engine = engine
        self.tracing = tracing or Tracing.off()
        self.fast = CatalogFastPath(
            engine.url.render_as_string(hide_password=False), prepare=db.pooler(engine) != "transaction"
        )
        self.stores = dict(stores)
        # The largest value put keeps in its catalog row (as put decides); larger ones are never there.
        self._row_max_size = max(
            settings.inline_threshold - 1, min(settings.warm_row_max_size, settings.warm_max_object_size)
        )
        self.hot = hot if settings.hot.enabled else None
        self.access = access
        self.shm = shm
        self.clock = clock
        self.tenancy = Tenancy(engine, clock=clock)
        for tier in DURABLE_TIERS:
            name = settings.store_for(tier)
            if name is not None and name != CATALOG_STORE and name not in self.stores:
                raise InvalidInput(f"tier {tier!r} uses store {name!r}, which was not opened", field="stores")

    def __repr__(self) -> str:
        return f"LiquidService(stores={sorted(self.stores)}, hot={self.hot!r})"

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
        # The tracker first: its last push uses the Redis client the hot cache shares and closes.
        if self.access is not None:
            self.access.close()
        if self.hot is not None:
            self.hot.close()
        self.fast.close()
        self.engine.dispose()
        self.tracing.shutdown()

    # ------------------------------------------------------------------ writes

    def put(
        self,
        tenant: str,
        namespace: str,
        key: str,
        body: Body,
        *,
        content_type: str = "application/octet-stream",
        size_hint: int | None = None,
        tags: Mapping[str, str] | None = None,
        classification: str | None = None,
        trace_id: str | None = None,
        correlation_id: str | None = None,
        execution_id: str | None = None,
        expires_at: datetime | None = None,
        ttl: timedelta | float | None = None,
        legal_hold: bool = False,
        scope: str | None = None,
        actor: str | None = None,
    ) -> RefInfo:
        """Store a new immutable version of ``namespace/key`` and return its ref.

        Raises:
            InvalidInput: a bad tenant, namespace, key or option (nothing is written).
            TooLarge: the body exceeds ``max_object_size`` (nothing is kept).
        """
        check_slug(tenant, "tenant")
        check_slug(namespace, "namespace")
        check_new_key(key)
        check_header_text(content_type, "content_type")
        tag_map = check_tags(tags)
        if scope is not None and scope not in SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}", field="scope")
        if scope in ("step", "execution") and execution_id is None:
            raise InvalidInput(f"scope {scope!r} needs an execution_id to start its clock", field="scope")
        for name, value in (
            ("classification", classification),
            ("trace_id", trace_id),
            ("correlation_id", correlation_id),
            ("execution_id", execution_id),
        ):
            check_text(value, name)
        if size_hint is not None and size_hint > self.settings.max_object_size:
            raise TooLarge(
                f"object of {size_hint} bytes exceeds the maximum size of {self.settings.max_object_size}",
                field="body",
            )
        if ttl is not None and expires_at is not None:  # one would silently win over the other
            raise InvalidInput(
                "give a retention (ttl, X-Liquid-Retention) or an expiry (expires_at, X-Liquid-Expires-At),"
                " not both",
                field="expires_at",
            )
        now = self.clock()
        started = time.perf_counter()
        if ttl is not None:
            seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
            expires_at = expiry_from_ttl(now, seconds)
        elif expires_at is not None:
            expires_at = check_instant(expires_at, "expires_at")
            if expires_at <= now:
                # Stored, it would be expired on arrival: a caller's clock or arithmetic is wrong.
                raise InvalidInput(
                    f"expires_at {expires_at.isoformat()} is not in the future (now {now.isoformat()})",
                    field="expires_at",
                )

        # Refused before a byte is read when no tier here may hold this classification.
        self.classifier.birth_tier(classification, "warm")
        if self.redaction is not None and self.redaction.applies(content_type):
            # The original never reaches a store: what is stored (and hashed) is the redacted text.
            original = _Meter(self.settings.max_object_size)
            body = self.redaction.apply(original.wrap(_as_chunks(body)))
            if size_hint is not None and original.size != size_hint:
                raise _length_mismatch(original.size, size_hint)
            size_hint = len(body)
        meter = _Meter(self.settings.max_object_size)
        inline_limit = self.settings.inline_threshold
        warm_limit = self.settings.warm_max_object_size
        row_limit = min(self.settings.warm_row_max_size, warm_limit)
        whole = _small_value(body, min(max(inline_limit - 1, row_limit), self.settings.max_object_size))
        if whole is not None:
            # A value given in one buffer and small enough for its row: hashed once, not copied
            # through chunks (the probe below would take all of it anyway, as one piece).
            meter.size = len(whole)
            meter.digest.update(whole)
            head: bytes | bytearray = whole
            exhausted = True
            source: Iterator[bytes] = iter(())
        elif isinstance(body, bytes) and len(body) >= HASH_ASIDE:
            # One large buffer: handed to the store as it is (no copies into chunks), and hashed
            # in a thread while the store takes it.
            if size_hint is not None and len(body) != size_hint:
                raise _length_mismatch(len(body), size_hint)
            meter.take(body)
            head = body
            exhausted = True
            source = iter(())
        else:
            source = meter.wrap(_as_chunks(body))
            # Read just enough to know whether the value lives in its catalog row (inline or small
            # warm), and, without a size hint, in which tier it is born.
            probe_limit = max(inline_limit, row_limit + 1)
            if size_hint is None:
                probe_limit = max(probe_limit, warm_limit + 1)
            head = bytearray()
            exhausted = False
            while len(head) < probe_limit:
                try:
                    head += next(source)
                except StopIteration:
                    exhausted = True
                    break

        fields: dict[str, Any] = {
            "tenant": tenant,
            "namespace": namespace,
            "key": key,
            "content_type": content_type,
            "tags": _json(tag_map) if tag_map else "{}",
            "classification": classification,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "execution_id": execution_id,
            "now": now,
            "expires_at": expires_at,
            "legal_hold": legal_hold,
            "scope": scope,
            "actor": actor,
            "started": started,
        }
        warm_ok = self.classifier.allows(classification, "warm")
        if warm_ok and exhausted and (len(head) < inline_limit or len(head) <= row_limit):
            # One statement writes the row and its bytes: no store round trip, one commit.
            data = bytes(head)
            if size_hint is not None and len(data) != size_hint:
                raise _length_mismatch(len(data), size_hint)
            sha = meter.hexdigest()
            fields.update(
                size=len(data),
                stored_size=len(data),
                sha256=sha,
                compression="none",
                home_tier="warm",
                home_store=CATALOG_STORE,
                locator=None,
                inline_data=data,
            )
            ref = self._record(fields, tier="warm", store=CATALOG_STORE)
            inline = data if len(data) < inline_limit else None
            return RefInfo(ref=ref, size=len(data), sha256=sha, content_type=content_type, inline=inline)

        if size_hint is not None:
            tier: Tier = "warm" if size_hint <= warm_limit else "cold"
        else:
            tier = "warm" if exhausted and len(head) <= warm_limit else "cold"
        tier = self.classifier.birth_tier(classification, tier)
        store_name = self.settings.store_for(tier)
        assert store_name is not None
        store = self.stores[store_name]
        codec = self.settings.compression_for(namespace)
        locator = f"{tenant}/{namespace}/{uuid.uuid4().hex}"

        def stream() -> Iterator[bytes]:
            yield bytes(head)
            if not exhausted:
                yield from source

        payload: Iterable[bytes] = stream()
        if codec == "zstd":
            payload = _compress(payload, self.settings.compression_level)
        stored_size = store.put(locator, payload, size_hint=None if codec == "zstd" else size_hint)
        size, sha = meter.size, meter.hexdigest()
        if size_hint is not None and size != size_hint:
            store.delete(locator)
            raise _length_mismatch(size, size_hint)
        fields.update(
            size=size,
            stored_size=stored_size,
            sha256=sha,
            compression=codec,
            home_tier=tier,
            home_store=store_name,
            locator=locator,
            inline_data=None,
        )
        try:
            ref = self._record(fields, tier=tier, store=store_name)
        except BaseException:
            # Not acknowledged: do not leave the bytes behind (gc catches them if this fails too).
            try:
                store.delete(locator)
            except Exception:
                log.warning("could not remove unrecorded bytes %s in %s", locator, store_name)
            raise
        return RefInfo(ref=ref, size=size, sha256=sha, content_type=content_type)

    def _record(self, fields: dict[str, Any], *, tier: str, store: str) -> ResultRef:
        """Insert the version's row (and its event); its facts are remembered for reads that follow."""
        # The object.created event carries the write's latency so far (body read, bytes stored).
        fields["latency_ms"] = round((time.perf_counter() - fields.pop("started")) * 1000.0, 3)
        # The statement looks the tenant up itself (no extra round trip): no row, nothing written.
        recorded = self.fast.insert(fields)
        if recorded is None:
            tenant = fields["tenant"]
            raise InvalidInput(
                f"tenant {tenant!r} does not exist; create it with `liquid tenant create {tenant}`",
                field="tenant",
            )
        object_id, version = recorded
        # Its parts were checked on the way in and the catalog numbered it: nothing to check again.
        ref = ResultRef.known(fields["tenant"], fields["namespace"], fields["key"], version)
        self.versions.remember(
            VersionFacts(
                ref,
                fields["size"],
                fields["sha256"],
                fields["content_type"],
                fields["expires_at"],
                object_id,
                fields["classification"],
            )
        )
        return ref

    def finish_execution(
        self, tenant: str, execution_id: str, *, at: datetime | None = None, actor: str | None = None
    ) -> datetime:
        """Record that an execution finished: the clock starts for its step/execution-scoped objects.

        Idempotent: finishing again keeps the first time. Returns the recorded finish time.
        """
        check_slug(tenant, "tenant")
        check_text(execution_id, "execution_id")
        when = check_instant(at or self.clock(), "at")
        with self.engine.begin() as conn:
            row = conn.execute(
                text(
                    "INSERT INTO executions (tenant_id, execution_id, finished_at, actor)"
                    " VALUES (:t, :e, :at, :actor) ON CONFLICT (tenant_id, execution_id) DO NOTHING"
                    " RETURNING finished_at"
                ),
                {"t": tenant, "e": execution_id, "at": when, "actor": actor},
            ).first()
            if row is None:
                existing = conn.execute(
                    text("SELECT finished_at FROM executions WHERE tenant_id = :t AND execution_id = :e"),
                    {"t": tenant, "e": execution_id},
                ).scalar_one()
                return existing  # type: ignore[no-any-return]
            # Its objects' lifecycle clocks start now: the planner looks at them again.
            conn.execute(
                text(
                    MARK.format(
                        "SELECT id FROM objects WHERE tenant_id = :t AND execution_id = :e AND state = 'live'"
                        f" AND {partitions.tenant_rows(tenant)}"
                    )
                ),
                {"t": tenant, "e": execution_id},
            )
            events.append(
                conn,
                events.NewEvent(
                    events.EXECUTION_FINISHED, when, tenant_id=tenant, actor=actor, execution_id=execution_id
                ),
            )
        return when

    def delete(self, tenant: str, ref: RefLike, *, actor: str | None = None) -> ObjectInfo:
        """Tombstone one version, evict its cache copy and purge its bytes.

        Deleting an already deleted version is a no-op that returns its info.

        Raises:
            ObjectNotFound: no such version for this tenant.
            Forbidden: the object is under legal hold.
        """
        r = self._ref(tenant, ref)
        now = self.clock()
        with self.engine.begin() as conn:
            row = conn.execute(
                select(OBJECTS).where(*self._match(r), _tenant_rows(r.tenant)).with_for_update()
            ).first()
            if row is None:
                raise ObjectNotFound(f"no object {r.uri}", field="ref")
            if row.state != "live":
                return _info(row)
            if row.legal_hold:
                raise Forbidden(f"{r.uri} is under legal hold and cannot be deleted", field="ref")
            conn.execute(
                update(OBJECTS)
                .where(OBJECTS.c.id == row.id)
                .values(state="deleted", deleted_at=now, inline_data=None)
            )
            events.append(
                conn,
                events.NewEvent.about(
                    events.DELETED, row, at=now, actor=actor, tier=row.home_tier, bytes=row.stored_size
                ),
            )
            mark_changed(conn, [row.id])
            info = replace(_info(row), state="deleted")
            if row.home_store == CATALOG_STORE:
                # The bytes were in the row, cleared just now: purged in the same transaction.
                purge(
                    conn, _tombstoned(row, now), store=None, now=self.clock(), reason="deleted", actor=actor
                )
        self.kill_copies([(r, row.sha256)])
        if row.locator is not None and row.home_store != CATALOG_STORE:
            self._purge_bytes(_tombstoned(row, now), actor=actor)
        return info

    def _purge_bytes(self, row: Any, *, actor: str | None) -> bool:
        """Purge a deleted version's home bytes (the one purge path); False if the store failed."""
        try:
            with self.engine.begin() as conn:
                return purge(
                    conn, row, store=self.stores.get, now=self.clock(), reason="deleted", actor=actor
                )
        except Exception as exc:
            log.warning("purge of %s from %s failed (gc will retry): %s", row.locator, row.home_store, exc)
            return False

    # ------------------------------------------------------------------- reads

    def head(self, tenant: str, ref: RefLike) -> ObjectInfo:
        """Catalog facts of one version. Raises ObjectNotFound, or ObjectGone once deleted."""
        r = self._ref(tenant, ref)
        return _info(self._live_row(r, full=True))

    def open(
        self,
        tenant: str,
        ref: RefLike,
        *,
        start: int = 0,
        end: int | None = None,
        track: bool = True,
        cached: bool = True,
    ) -> ObjectReader:
        """Stream the bytes of one version, ``[start, end)``, verified (see the module docstring).

        ``track=False`` reads without counting an access; ``cached=False`` skips the hot copy.

        Raises:
            ObjectNotFound: no such version for this tenant (same answer as another tenant's ref).
            ObjectGone: the version was deleted or expired.
            IntegrityError: the stored bytes do not match the checksum.
        """
        r = self._ref(tenant, ref)
        found = self._read(tenant, r, ref, start, end, track=track, cached=cached)
        if isinstance(found, ObjectReader):
            return found
        data, facts, source = found
        reader = self._reader_from_bytes(r, data, facts.sha256, facts.content_type, source, start, end)
        if source != "hot":
            reader.expires_at = facts.expires_at
            reader.classification = facts.classification
        return reader

    def _read(
        self,
        tenant: str,
        r: ResultRef,
        ref: RefLike,
        start: int,
        end: int | None,
        *,
        track: bool,
        cached: bool,
        in_memory: bool = False,
    ) -> ObjectReader | tuple[bytes | memoryview, VersionFacts, str]:
        """:meth:`open`'s work: a reader, or a known version's whole value, its facts and its source
        (``hot``: its copy; ``warm``: its catalog row).

        The value comes back bare (verified, counted) so that :meth:`get` returns it without a reader.
        ``in_memory``: the caller keeps all the bytes (:meth:`get`), so a whole uncompressed value in
        a store that can (:class:`~liquid.stores.base.BufferReadStore`) is read into one buffer and
        verified before the reader yields it, in one piece.
        """
        inline = self._inline_reader(r, ref, start, end)
        if inline is not None:
            return inline
        counted = self.access is not None and track
        row: Any | None = None
        facts = self.known(r)
        if self.hot is not None and cached:
            if facts is None:
                # First read of this version here: its row gives the checksum a copy must match.
                row = self._live_row(r)
                facts = self.versions.learn(r, row)
            entry = self.hot.get(r, expect_sha256=facts.sha256)
            if entry is not None:
                # Copies exist only of live versions (deletes and expiries kill them; a copy's
                # Redis TTL ends no later than its object's expires_at), so the hit is counted.
                if counted:
                    self.access.note(r)  # type: ignore[union-attr]
                # Its checksum is the version's (checked): the facts describe these bytes.
                return entry.data, facts, "hot"

        if row is None and facts is not None and facts.size <= self._row_max_size:
            # A known version whose value its row probably keeps: one narrow statement by primary
            # key, liveness judged in it; None sends the read the long way (gone, moved, or big).
            data = self._row_value(r, facts, track=track)
            if data is not None:
                return data, facts, "warm"
        if row is None:
            row = self._live_row(r)
            if facts is None:
                # First read of this version here, without a hot tier to learn it above: remembered,
                # the next read takes the one-column statement by primary key instead of this row
                # by name (about 45 µs less, every read, for a process that did not write it).
                facts = self.versions.learn(r, row)
        # Counted only once the version is known to exist: a read of a missing or gone ref must
        # not reach the access flush (whose batch it would share with every other tenant's reads).
        if counted:
            self.access.note(r)  # type: ignore[union-attr]
        if (
            self.hot is not None
            and self.access is not None
            and track
            and row.size <= self.hot.max_object_size
        ):
            # Served from the home: the daemon decides (by rank, within the hot budget) whether it
            # earns a copy. The read path never writes Redis itself, so the budget holds.
            self.access.note_miss(row.id)
        if row.inline_data is not None:
            data = bytes(row.inline_data)
            if hashlib.sha256(data).hexdigest() != row.sha256:
                raise IntegrityError(f"{r.uri}: inline bytes in the catalog do not match their checksum")
            reader = self._reader_from_bytes(r, data, row.sha256, row.content_type, "warm", start, end)
            reader.expires_at = row.expires_at
            reader.classification = row.classification
            return reader

        size = row.size
        lo = min(start, size)
        hi = size if end is None else min(end, size)
        store = self.stores.get(row.home_store)
        if store is None or row.locator is None:
            raise IntegrityError(f"{r.uri}: its home store {row.home_store!r} is not configured here")
        whole = lo == 0 and hi == size
        partial = not whole and row.compression != "zstd"
        what = f"{r.uri} in {row.home_tier} store {row.home_store!r}"
        if in_memory and whole and row.compression == "none":
            whole_reader = self._whole_reader(r, row, store, what)
            if whole_reader is not None:
                return whole_reader
        try:
            raw = store.open(row.locator, start=lo if partial else 0, end=hi if partial else None)
        except ObjectNotFound:
            moved = self._moved_row(r, row)
            if moved is None:
                raise
            if moved.inline_data is not None:
                return self.open(tenant, ref, start=start, end=end, track=False)
            row, store = moved, self.stores[moved.home_store]
            raw = store.open(row.locator, start=lo if partial else 0, end=hi if partial else None)
            what = f"{r.uri} in {row.home_tier} store {row.home_store!r}"
        chunks: Iterator[bytes | memoryview]
        if row.compression == "zstd":
            plain = _decompress(raw)
            chunks = (
                _verified(plain, sha256=row.sha256, size=size, what=what)
                if whole
                else _counted(slice_stream(plain, lo, hi), expect=hi - lo, what=what)
            )
        elif whole:
            if size >= _PREFETCH_MIN:
                raw = _prefetched(raw)
            chunks = _verified(raw, sha256=row.sha256, size=size, what=what)
        else:
            chunks = _counted(raw, expect=hi - lo, what=what)
        return ObjectReader(
            ref=r,
            size=size,
            sha256=row.sha256,
            content_type=row.content_type,
            source=row.home_tier,
            start=lo,
            end=hi,
            chunks=chunks,
            expires_at=row.expires_at,
            classification=row.classification,
        )

    def _whole_reader(self, r: ResultRef, row: Any, store: Store, what: str) -> ObjectReader | None:
        """A whole uncompressed value read into one buffer and verified (:func:`_read_whole`), as a
        reader of one piece; None when the store cannot, or no longer holds it (moved meanwhile:
        the streamed read finds where it went)."""
        read_into = getattr(store, "read_into", None)
        if read_into is None:
            return None
        try:
            data = _read_whole(read_into, row.locator, sha256=row.sha256, size=row.size, what=what)
        except ObjectNotFound:
            return None
        return ObjectReader(
            ref=r,
            size=row.size,
            sha256=row.sha256,
            content_type=row.content_type,
            source=row.home_tier,
            start=0,
            end=row.size,
            chunks=iter((data,)),  # one piece: read() and buffer() return it as it is
            expires_at=row.expires_at,
            classification=row.classification,
        )

    async def aopen_hot(
        self,
        tenant: str,
        ref: RefLike,
        client: redis.asyncio.Redis,
        *,
        start: int = 0,
        end: int | None = None,
    ) -> ObjectReader | None:
        """The inline or hot part of :meth:`open` on an asyncio Redis client; None on a miss.

        For the API's event loop: a hit costs no worker thread and no catalog round trip (copies
        exist only of live versions: deletes and expiries kill them) once this process knows the
        version's checksum (:meth:`known`); a version it does not know is None at once, for
        :meth:`open` to look up. After a miss of a known version, call :meth:`open` with
        ``cached=False`` (it counts the read once it finds the version). Do not call it while
        ``hot.kills_pending``: :meth:`open` then decides whether copies may be trusted.
        """
        r = self._ref(tenant, ref)
        inline = self._inline_reader(r, ref, start, end)
        if inline is not None:
            return inline
        facts = self.known(r)
        if self.hot is None or facts is None:
            return None
        # Checked against the version's checksum, not only the copy's own digest.
        entry = await self.hot.aget(r, client, expect_sha256=facts.sha256)
        if entry is None:
            return None
        if self.access is not None:
            self.access.note(r)
        return self._reader_from_bytes(r, entry.data, entry.sha256, entry.content_type, "hot", start, end)

    def resolve_many(
        self,
        tenant: str,
        refs: Sequence[ResultRef],
        *,
        want: Callable[[int, VersionFacts], bool],
        full: bool = False,
    ) -> Resolved:
        """Facts of many versions, and the bytes of those ``want`` picks, in a few round trips.

        A version whose facts this process knows (:class:`~liquid.versions.VersionCache`) and whose
        hot copy is there costs no catalog statement: the copy proves it live (see
        :mod:`liquid.versions`) and is checked against the version's own SHA-256. The others take
        one catalog statement for all of them, and the wanted ones among them one Redis ``MGET``;
        values kept in their catalog row come with it; only the rest are read from their homes one
        by one. ``full`` adds every version's catalog facts (:class:`ObjectInfo`: a statement for
        all). ``want(position, facts)`` is called in order, once per version not known to be
        missing or gone (a batch's byte budget can be kept in it). Each value returned is counted
        as a read, like :meth:`get`; missing and gone versions are not.

        Returns, per ref and in order, a :class:`Resolution` or the error a single read gets.
        """
        batch = self._batch(tenant, refs, full=full)
        # Versions this process has not seen (or every one, for their full facts): one statement.
        self._rows_of(refs, batch.unseen, batch.rows, batch.out, full)
        for i, row in batch.rows.items():
            batch.facts[i] = self.versions.learn(refs[i], row)
        batch.choose(want)
        if self.hot is not None and batch.wanted:
            self._take_values(batch, self.hot.get_values(*batch.hot_query()))
        return self._finish(tenant, batch, full=full)

    async def aresolve_many(
        self,
        tenant: str,
        refs: Sequence[ResultRef],
        client: redis.asyncio.Redis,
        *,
        want: Callable[[int, VersionFacts], bool],
        offload: Callable[[Callable[[], Resolved]], Awaitable[Resolved]],
    ) -> Resolved:
        """:meth:`resolve_many` (without ``full``) with its hot read on an asyncio client.

        For the API's event loop: a batch of versions this process knows whose copies are all there
        costs one ``MGET`` on ``client`` and no worker thread. What needs the catalog or a home
        runs through ``offload`` (the API's worker-thread hop), exactly as :meth:`resolve_many`
        does it: the whole batch when a version is new to this process (its facts come first, and
        ``want`` is called on them in order), else only the versions no copy proved live. The
        answers, errors, ``want`` calls and counted reads are :meth:`resolve_many`'s.
        """
        batch = self._batch(tenant, refs, full=False)
        if batch.unseen:
            return await offload(lambda: self.resolve_many(tenant, refs, want=want))
        batch.choose(want)
        if self.hot is not None and batch.wanted:
            if sum(batch.facts[i].size for i in batch.wanted) > LOOP_READ_MAX:
                return await offload(lambda: self._read_hot_and_finish(tenant, batch))
            wanted, sha256 = batch.hot_query()
            self._take_values(batch, await self.hot.aget_values(wanted, sha256, client))
        if batch.proven():
            return batch.answers()  # nothing left that does I/O
        return await offload(lambda: self._finish(tenant, batch, full=False))

    def _read_hot_and_finish(self, tenant: str, batch: _Batch) -> Resolved:
        """:meth:`resolve_many` from its hot read on, for a batch whose ``want`` was asked."""
        assert self.hot is not None
        self._take_values(batch, self.hot.get_values(*batch.hot_query()))
        return self._finish(tenant, batch, full=False)

    def _batch(self, tenant: str, refs: Sequence[ResultRef], *, full: bool) -> _Batch:
        """A batch with other tenants' refs answered (as missing) and the facts this process knows."""
        batch = _Batch(refs)
        out, facts = batch.out, batch.facts
        get = self.versions.get
        now = self.clock()
        for i, r in enumerate(refs):
            if r.tenant != tenant:
                out[i] = ObjectNotFound(f"no object {r.uri}", field="ref")
                continue
            known = None if full else get(r)
            if known is not None and (known.expires_at is None or known.expires_at > now):
                facts[i] = known
            else:
                batch.unseen.append(i)
        return batch

    def _take_values(self, batch: _Batch, values: Sequence[memoryview | None]) -> None:
        """The wanted versions' hot values (a copy proves its version live), counted as reads."""
        data = batch.data
        for i, value in zip(batch.wanted, values, strict=True):
            if value is not None:
                data[i] = value
        if self.access is not None and data:
            refs = batch.refs
            self.access.note_many([refs[i] for i in data])

    def _finish(self, tenant: str, batch: _Batch, *, full: bool) -> Resolved:
        """The catalog for versions no copy proved live, home values of the wanted ones, the answers."""
        refs, out, facts, rows, data = batch.refs, batch.out, batch.facts, batch.rows, batch.data
        # Known versions without a copy that proved them live: the catalog says whether they are.
        self._rows_of(refs, [i for i in facts if i not in rows and i not in data], rows, out, False)
        for i in batch.wanted:
            if i in data or out[i] is not None:
                continue
            try:
                data[i] = self._home_value(tenant, refs[i], rows[i])
            except LiquidError as exc:
                out[i] = exc
        for i, f in facts.items():
            if out[i] is None:
                out[i] = Resolution(f, data.get(i), _info(rows[i], ref=refs[i]) if full else None)
        return [o for o in out if o is not None]

    def _rows_of(
        self,
        refs: Sequence[ResultRef],
        positions: list[int],
        rows: dict[int, Any],
        out: list[Resolution | LiquidError | None],
        full: bool,
    ) -> None:
        """Rows of ``refs[positions]`` into ``rows`` (live ones) or ``out`` (errors), in one statement."""
        if not positions:
            return
        keys = [(r.tenant, r.namespace, r.key, r.version) for r in (refs[i] for i in positions)]
        found = self.fast.find_many(keys, full=full)
        for i, k in zip(positions, keys, strict=True):
            try:
                rows[i] = self._check_live(refs[i], found.get(k))
            except LiquidError as exc:
                out[i] = exc

    def _row_value(self, r: ResultRef, facts: VersionFacts, *, track: bool) -> bytes | None:
        """A known version's value from its catalog row, verified and counted; None unless it is live
        and its value is kept there."""
        data = self.fast.live_value(facts.object_id)
        if data is None:
            return None
        if hashlib.sha256(data).hexdigest() != facts.sha256:
            raise IntegrityError(f"{r.uri}: inline bytes in the catalog do not match their checksum")
        if track and self.access is not None:
            self.access.note(r)
            if self.hot is not None and facts.size <= self.hot.max_object_size:
                # Served from the home: the daemon decides whether it earns a hot copy (see open).
                self.access.note_miss(facts.object_id)
        return data

    def _home_value(self, tenant: str, r: ResultRef, row: Any) -> bytes:
        """A live version's whole value from its catalog row or home store (verified, counted)."""
        if row.inline_data is None:
            return self.open(tenant, r, cached=False).read()
        data = bytes(row.inline_data)
        if hashlib.sha256(data).hexdigest() != row.sha256:
            raise IntegrityError(f"{r.uri}: inline bytes in the catalog do not match their checksum")
        if self.access is not None:
            self.access.note(r)
            if self.hot is not None and row.size <= self.hot.max_object_size:
                self.access.note_miss(row.id)
        return data

    def presign_get(self, tenant: str, ref: RefLike, *, expires: int = 300) -> tuple[ObjectInfo, str] | None:
        """A short-lived direct URL to the bytes of one version, when its home store can presign.

        Only uncompressed objects in a store with ``presign_get`` (S3) qualify: the URL
        hands out the stored bytes as they are, so a compressed or inline object gets None.

        Raises:
            ObjectNotFound / ObjectGone: as :meth:`head`.
        """
        r = self._ref(tenant, ref)
        row = self._live_row(r, full=True)
        store = self.stores.get(row.home_store)
        presign = getattr(store, "presign_get", None)
        if presign is None or row.locator is None or row.compression != "none" or row.inline_data is not None:
            return None
        return _info(row), str(presign(row.locator, expires))

    def get(self, tenant: str, ref: RefLike, *, start: int = 0, end: int | None = None) -> bytes:
        """The bytes of one version in memory; see :meth:`open`."""
        r = self._ref(tenant, ref)
        found = self._read(tenant, r, ref, start, end, track=True, cached=True, in_memory=True)
        if isinstance(found, ObjectReader):
            return found.read()
        data = found[0]
        size = len(data)
        # A whole warm value is the very bytes object the catalog row gave (a full slice is no
        # copy); a hot one is a view into Redis's answer, copied once here.
        part = data[min(start, size) : size if end is None else min(end, size)]
        return part if isinstance(part, bytes) else bytes(part)

    def fill_hot(self, ref: ResultRef, object_id: int) -> bool:
        """Write a verified copy of a live object into the hot tier (the tiering engine's fill).

        Reads the home (not counted as an access), writes through :meth:`HotCache.fill` (which
        refuses a tombstoned version), then checks the catalog again: a version deleted while
        the bytes were in flight is killed at once, so a delete is never followed by a hit.
        False when there is no hot cache, the object is too large or gone, or Redis refused.
        """
        if self.hot is None:
            return False
        try:
            reader = self.open(ref.tenant, ref, track=False, cached=False)
            if reader.size > self.hot.max_object_size:
                return False
            if not self.classifier.allows(reader.classification, "hot"):
                return False  # the planner never asks; a stale admission must not either
            data = reader.read()
        except (ObjectNotFound, ObjectGone):
            return False
        ttl = self.hot.ttl
        if reader.expires_at is not None:
            # The copy must not outlive its object: Redis drops it when the version expires.
            ttl = min(ttl, (reader.expires_at - self.clock()).total_seconds())
            if ttl <= 0:
                return False
        if not self.hot.fill(
            ref, object_id, data, sha256=reader.sha256, content_type=reader.content_type, ttl=ttl
        ):
            return False
        if not self.is_live(ref):
            self.hot.kill([ref])
            return False
        return True

    def known(self, ref: ResultRef) -> VersionFacts | None:
        """The version's facts if this process has read them and its own expiry has not passed."""
        facts = self.versions.get(ref)
        if facts is None or facts.expires_at is None:
            return facts  # no clock read for a version that never expires (every read asks)
        return facts if facts.alive_at(self.clock()) else None

    def is_live(self, ref: ResultRef) -> bool:
        """Whether the version exists and is live right now (one indexed lookup)."""
        row = self.fast.find(ref.tenant, ref.namespace, ref.key, ref.version)
        return (
            row is not None
            and row.state == "live"
            and (row.expires_at is None or row.expires_at > self.clock())
        )

    def kill_copies(self, refs: Iterable[tuple[ResultRef, str]]) -> None:
        """Remove every cache copy of versions that were deleted, expired or purged: hot, and same-node shm.

        ``refs`` pairs each version with its SHA-256 (the shm copy's name needs it).
        """
        pairs = list(refs)
        if self.hot is not None:
            self.hot.kill(r for r, _ in pairs)
        if self.shm is not None:
            for r, sha in pairs:
                self.shm.delete(r, sha)

    def latest(self, tenant: str, namespace: str, key: str) -> ResultRef:
        """The newest live version of a key. Raises ObjectNotFound if there is none."""
        check_slug(namespace, "namespace")
        check_key(key)
        version = self.fast.latest(tenant, namespace, key, self.clock())
        if version is None:
            raise ObjectNotFound(f"no live version of {namespace}/{key}", field="key")
        return ResultRef(tenant, namespace, key, version)

    def list(
        self,
        tenant: str,
        namespace: str,
        *,
        prefix: str = "",
        after: str | None = None,
        limit: int = 1000,
        all_versions: bool = False,
    ) -> Page:
        """Live objects of a namespace by key order; the newest version of each key unless ``all_versions``.

        ``after`` is the ``next_cursor`` of the previous page.
        """
        check_slug(namespace, "namespace")
        if not 1 <= limit <= 10_000:
            raise InvalidInput(f"limit must be between 1 and 10000, got {limit}", field="limit")
        if len(prefix) > MAX_KEY_BYTES or any(ord(c) < 0x20 or ord(c) == 0x7F for c in prefix):
            # Keys never hold control characters (PostgreSQL text cannot even hold NUL).
            raise InvalidInput(
                f"prefix {prefix[:100]!r} must be at most {MAX_KEY_BYTES} characters, without control"
                " characters",
                field="prefix",
            )
        conds: list[ColumnElement[bool]] = [
            Object.tenant_id == tenant,
            Object.namespace == namespace,
            Object.state == "live",
            (Object.expires_at.is_(None)) | (Object.expires_at > self.clock()),
            _tenant_rows(tenant),
        ]
        if prefix:
            conds.append(Object.key.startswith(prefix, autoescape=True))
        if after:
            key_after, _, ver = after.rpartition("@")
            if (
                not key_after
                or not ver.isascii()
                or not ver.isdigit()
                or len(ver) > 10
                or int(ver) > MAX_VERSION
                or any(ord(c) < 0x20 or ord(c) == 0x7F for c in key_after)
            ):
                raise InvalidInput(f"cursor {after[:200]!r} is not one this API returned", field="after")
            conds.append((Object.key > key_after) | and_(Object.key == key_after, Object.version < int(ver)))
        query = select(OBJECTS).where(*conds).order_by(Object.key, Object.version.desc())
        if not all_versions:
            query = query.ext(distinct_on(OBJECTS.c.key))
        with db.reading(self.engine) as conn:
            rows = list(conn.execute(query.limit(limit + 1)).all())
        items = [_info(row) for row in rows[:limit]]
        cursor = None
        if len(rows) > limit:
            last = items[-1].ref
            # For newest-only listings the next page starts after every version of the last key.
            cursor = f"{last.key}@{last.version if all_versions else 0}"
        return Page(items=items, next_cursor=cursor)

    # ----------------------------------------------------------------- helpers

    def _ref(self, tenant: str, ref: RefLike) -> ResultRef:
        if isinstance(ref, RefInfo):
            r = ref.ref
        elif isinstance(ref, ResultRef):
            r = ref
        else:
            r = ResultRef.parse(ref)
        if r.tenant != tenant:
            # Indistinguishable from a missing object: no existence leak across tenants.
            raise ObjectNotFound(f"no object {r.uri}", field="ref")
        return r

    @staticmethod
    def _match(r: ResultRef) -> tuple[Any, ...]:
        c = OBJECTS.c
        return (c.tenant_id == r.tenant, c.namespace == r.namespace, c.key == r.key, c.version == r.version)

    def _live_row(self, r: ResultRef, *, full: bool = False) -> Any:
        facts = None if full else self.versions.get(r)
        if facts is not None:
            return self._check_live(r, self.fast.find_by_id(facts.object_id))
        return self._check_live(r, self.fast.find(r.tenant, r.namespace, r.key, r.version, full=full))

    def _check_live(self, r: ResultRef, row: Any | None) -> Any:
        """``row`` if it is a live version; ObjectNotFound / ObjectGone as readers get them."""
        if row is None:
            raise ObjectNotFound(f"no object {r.uri}", field="ref")
        if row.state != "live":
            when = row.deleted_at.isoformat() if row.deleted_at else "earlier"
            raise ObjectGone(
                f"{r.uri} was {row.state} at {when}; its bytes are no longer served", field="ref"
            )
        if row.expires_at is not None and row.expires_at <= self.clock():
            # Past its own expiry: gone for readers now, whenever the daemon gets to purge it.
            raise ObjectGone(
                f"{r.uri} expired at {row.expires_at.isoformat()}; its bytes are no longer served",
                field="ref",
            )
        return row

    def _moved_row(self, r: ResultRef, row: Any) -> Any | None:
        """The object's row again if the mover switched its home since ``row`` was read, else None.

        A reader that looked the old home up just before a switch normally finds the source
        for the whole grace period (see liquid.tiering.mover); this covers one slower than that.
        """
        fresh = self._live_row(r)
        if (fresh.home_store, fresh.locator) == (row.home_store, row.locator):
            return None
        if fresh.inline_data is None and (fresh.locator is None or fresh.home_store not in self.stores):
            return None
        return fresh

    def _inline_reader(self, r: ResultRef, ref: RefLike, start: int, end: int | None) -> ObjectReader | None:
        """Checks the range; serves a ref that carries its value (verified) without any lookup."""
        if start < 0 or (end is not None and end < start):
            raise InvalidInput(f"invalid range start={start} end={end}", field="range")
        if isinstance(ref, RefInfo) and ref.inline is not None:
            data = ref.inline
            if hashlib.sha256(data).hexdigest() == ref.sha256:
                return self._reader_from_bytes(r, data, ref.sha256, ref.content_type, "inline", start, end)
        return None

    @staticmethod
    def _reader_from_bytes(
        r: ResultRef,
        data: bytes | memoryview,
        sha256: str,
        content_type: str,
        source: str,
        start: int,
        end: int | None,
    ) -> ObjectReader:
        lo = min(start, len(data))
        hi = len(data) if end is None else min(end, len(data))
        return ObjectReader(
            ref=r,
            size=len(data),
            sha256=sha256,
            content_type=content_type,
            source=source,
            start=lo,
            end=hi,
            chunks=iter([data[lo:hi]] if hi > lo else []),
        )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _tombstoned(row: Row[Any], at: datetime) -> Any:
    """The row as it is after the tombstone this transaction wrote (for the purge path)."""
    return SimpleNamespace(**{**row._asdict(), "state": "deleted", "deleted_at": at})


def _info(obj: Row[Any], *, ref: ResultRef | None = None) -> ObjectInfo:
    """The facts of a catalog row (``ref``: the row's version, already validated, when known)."""
    return ObjectInfo(
        ref=ref or ResultRef(obj.tenant_id, obj.namespace, obj.key, obj.version),
        size=obj.size,
        stored_size=obj.stored_size,
        sha256=obj.sha256,
        content_type=obj.content_type,
        compression=obj.compression,
        tags=dict(obj.tags or {}),
        classification=obj.classification,
        trace_id=obj.trace_id,
        correlation_id=obj.correlation_id,
        execution_id=obj.execution_id,
        scope=obj.scope,
        created_at=obj.created_at,
        expires_at=obj.expires_at,
        legal_hold=obj.legal_hold,
        home_tier=obj.home_tier,
        home_store=obj.home_store,
        state=obj.state,
    )
