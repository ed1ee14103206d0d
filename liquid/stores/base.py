"""The one seam every byte store implements, and the operations built once on top of it.

A store maps *locators* (relative, ``/``-separated names chosen by Liquid, never by
users) to immutable byte strings. Backends provide five primitives — ``put``,
``open``, ``head``, ``delete``, ``list`` — plus ``ping`` and ``close``; copy, whole
reads, bulk and prefix deletion are written once here. A backend that can delete many
locators in one request also offers ``delete_many`` (:class:`BulkDeleteStore`), which
:func:`delete_many` uses when present.

Contract every backend keeps (``tests/contracts/store_contract.py`` proves it):

* ``put`` is atomic: a reader sees the old bytes or the new ones, never a prefix.
  It consumes the chunk iterable once, holds at most a bounded amount of it in
  memory (a chunk or a multipart part), and returns the number of bytes written.
* ``open`` raises :class:`~liquid.errors.ObjectNotFound` *before* returning when the
  locator is absent, then yields the bytes in ``[start, end)`` (``end=None`` means to
  the end). Ranges past the end are clamped; ``start >= size`` yields nothing.
* ``head`` returns an :class:`ObjectStat` or raises ``ObjectNotFound``.
* ``delete`` is idempotent and returns whether something was deleted.
* ``list`` yields stats for locators starting with ``prefix`` in ascending order.
* Locators are checked by :func:`check_locator`; a hostile one raises
  :class:`~liquid.errors.InvalidInput` and touches nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from liquid.errors import InvalidInput

#: Default chunk size for streaming reads and writes.
CHUNK_SIZE = 1024 * 1024
#: Longest locator accepted (bytes of UTF-8), matching S3's key limit.
MAX_LOCATOR_BYTES = 1024


@dataclass(frozen=True, slots=True)
class ObjectStat:
    """What a store knows about one stored byte string."""

    locator: str
    size: int
    modified: datetime | None = None


@runtime_checkable
class Store(Protocol):
    """A byte store. See the module docstring for the contract."""

    #: Scheme-qualified description without secrets, e.g. ``s3://bucket/prefix``.
    url: str

    def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
        """Store the concatenated chunks under ``locator`` atomically; return the byte count."""
        ...

    def open(self, locator: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes ``[start, end)``; raises ObjectNotFound eagerly."""
        ...

    def head(self, locator: str) -> ObjectStat:
        """Size and modification time; raises ObjectNotFound."""
        ...

    def delete(self, locator: str) -> bool:
        """Remove the locator if present; True when something was removed."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectStat]:
        """Stats of every locator starting with ``prefix``, in ascending locator order."""
        ...

    def ping(self) -> None:
        """Raise StoreError when the backend is unreachable."""
        ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...


@runtime_checkable
class BulkDeleteStore(Protocol):
    """The optional capability of deleting many locators in one request (S3, PostgreSQL)."""

    def delete_many(self, locators: Sequence[str]) -> None:
        """Remove every locator that is present; absent ones are not an error."""
        ...


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """A multipart upload that was started and never completed nor aborted (a crash mid-put)."""

    locator: str
    upload_id: str
    started: datetime | None = None


@runtime_checkable
class MultipartStore(Protocol):
    """The optional capability of listing and aborting incomplete multipart uploads (S3).

    Their parts are billed but invisible to ``list``: only ``liquid gc`` finds them.
    """

    def incomplete_uploads(self, prefix: str = "") -> Iterator[PendingUpload]:
        """Uploads under ``prefix`` still open, in no particular order."""
        ...

    def abort_upload(self, upload: PendingUpload) -> None:
        """Abort one upload and free its parts; an upload already gone is not an error."""
        ...


@runtime_checkable
class BufferReadStore(Protocol):
    """The optional capability of reading a whole object straight into the caller's buffer (S3).

    For whole reads kept in memory (:meth:`LiquidService.get <liquid.service.LiquidService.get>`):
    the bytes go from the socket into one buffer, with no chunk objects and no join, and the
    caller hashes each step while the next one arrives. Wrappers that change the bytes
    (:class:`~liquid.stores.envelope.EnvelopeStore`) must not pass it through.
    """

    def read_into(self, locator: str, buffer: memoryview) -> Iterator[int]:
        """Request the object now, then fill ``buffer`` (exactly its size) from the start.

        Yields how many bytes of ``buffer`` are filled after each step (about
        :data:`CHUNK_SIZE`), the last time ``len(buffer)``.

        Raises:
            ObjectNotFound: no such object (before returning).
            IntegrityError: the object is not ``len(buffer)`` bytes (before returning).
            StoreError: the transfer failed or ended early (while iterating).
        """
        ...


def check_locator(locator: str) -> str:
    """Return ``locator`` if it is a safe relative name, else raise InvalidInput saying why.

    Rejected: empty, longer than 1024 UTF-8 bytes, control characters (NUL included),
    backslashes, a leading ``/``, and empty, ``.`` or ``..`` segments.

    >>> check_locator("t/acme/0f3a")
    't/acme/0f3a'
    >>> check_locator("../etc/passwd")
    Traceback (most recent call last):
    ...
    liquid.errors.InvalidInput: locator '../etc/passwd' has a '..' segment
    """
    if not isinstance(locator, str) or not locator:
        raise InvalidInput(f"locator must be a non-empty string, got {locator!r}", field="locator")
    if len(locator.encode("utf-8", "surrogatepass")) > MAX_LOCATOR_BYTES:
        raise InvalidInput(
            f"locator is {len(locator.encode('utf-8', 'surrogatepass'))} bytes; at most {MAX_LOCATOR_BYTES}",
            field="locator",
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in locator):
        raise InvalidInput(f"locator {locator!r} contains a control character", field="locator")
    if "\\" in locator:
        raise InvalidInput(f"locator {locator!r} contains a backslash", field="locator")
    if locator.startswith("/"):
        raise InvalidInput(f"locator {locator!r} must be relative (no leading '/')", field="locator")
    for segment in locator.split("/"):
        if segment in ("", ".", ".."):
            what = f"a {segment!r}" if segment else "an empty"
            raise InvalidInput(f"locator {locator!r} has {what} segment", field="locator")
    return locator


def check_range(start: int, end: int | None) -> None:
    """Raise InvalidInput for a negative start or an end before the start."""
    if start < 0:
        raise InvalidInput(f"range start must be >= 0, got {start}", field="range")
    if end is not None and end < start:
        raise InvalidInput(f"range end {end} is before start {start}", field="range")


def rechunk(chunks: Iterable[bytes], size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Regroup arbitrary chunks into pieces of exactly ``size`` bytes (the last may be shorter)."""
    buf = bytearray()
    for chunk in chunks:
        if not chunk:
            continue
        if not buf and len(chunk) == size:
            yield bytes(chunk)
            continue
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def slice_stream(chunks: Iterable[bytes], start: int, end: int | None) -> Iterator[bytes]:
    """Yield the ``[start, end)`` window of a stream that begins at offset 0."""
    pos = 0
    for chunk in chunks:
        n = len(chunk)
        lo, hi = pos, pos + n
        pos = hi
        if hi <= start:
            continue
        if end is not None and lo >= end:
            break
        a = max(start - lo, 0)
        b = n if end is None else min(end - lo, n)
        if a < b:
            yield chunk[a:b] if (a, b) != (0, n) else chunk
        if end is not None and hi >= end:
            break


def read_bytes(store: Store, locator: str, *, start: int = 0, end: int | None = None) -> bytes:
    """The whole ``[start, end)`` window in memory; for small objects and tests."""
    return b"".join(store.open(locator, start=start, end=end))


def write_bytes(store: Store, locator: str, data: bytes) -> int:
    """Store one in-memory value."""
    return store.put(locator, [data], size_hint=len(data))


def copy(src: Store, dst: Store, locator: str, *, dst_locator: str | None = None) -> tuple[int, str]:
    """Stream one object from ``src`` to ``dst``; return (bytes, sha256 hex) of what was sent."""
    digest = hashlib.sha256()

    def tee() -> Iterator[bytes]:
        for chunk in src.open(locator):
            digest.update(chunk)
            yield chunk

    size_hint = src.head(locator).size
    n = dst.put(dst_locator or locator, tee(), size_hint=size_hint)
    return n, digest.hexdigest()


def delete_many(store: Store, locators: Iterable[str]) -> None:
    """Delete every locator, idempotently: in bulk where the backend can, else one by one."""
    batch = list(locators)
    if not batch:
        return
    if isinstance(store, BulkDeleteStore):
        store.delete_many(batch)
        return
    for locator in batch:
        store.delete(locator)


def delete_prefix(store: Store, prefix: str) -> int:
    """Delete every locator under ``prefix``; return how many went."""
    return sum(1 for stat in list(store.list(prefix)) if store.delete(stat.locator))


def sha256_of(store: Store, locator: str) -> str:
    """Hex sha256 of the stored bytes, streamed."""
    digest = hashlib.sha256()
    for chunk in store.open(locator):
        digest.update(chunk)
    return digest.hexdigest()
