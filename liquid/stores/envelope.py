"""EnvelopeStore: client-side AES-256-GCM encryption in front of any store (cold and archive tiers).

The wrapped store only ever sees ciphertext. Each object is encrypted with its tenant's current
data key (:class:`liquid.keyring.DataKeys`; the tenant is the locator's first segment, as the
service writes them), in frames so that streams and ranges stay bounded::

    header  b"LQE1" | data-key version (u32) | nonce prefix (8 random bytes)        16 bytes
    frame i AES-GCM(key, nonce = prefix | i (u32), 64 KiB of plaintext,
                    aad = header | locator | i (u64) | final flag)                  64 KiB + 16

The last frame carries the final flag, so a truncated object fails to decrypt instead of reading
short; the locator in the AAD makes ciphertext moved to another name fail too. A range read
fetches the header and the frames covering the range. Sizes (``head``, ``list``, ``put``'s
return) are plaintext sizes, computed from the ciphertext size.

Presigned URLs are not offered (they would hand out ciphertext); the API streams instead.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from liquid.errors import IntegrityError
from liquid.keyring import DataKeys
from liquid.stores.base import ObjectStat, Store, check_locator, check_range
from liquid.stores.base import delete_many as _delete_many

MAGIC = b"LQE1"
HEADER = 16
FRAME = 64 * 1024
TAG = 16
CFRAME = FRAME + TAG
#: Optional capabilities passed through to the wrapped store (presign is deliberately not one).
_PASS_THROUGH = frozenset({"incomplete_uploads", "abort_upload"})


def plain_size(stored: int) -> int:
    """Plaintext size of an encrypted object of ``stored`` bytes."""
    body = stored - HEADER
    frames = max(1, -(-body // CFRAME))
    return max(0, body - TAG * frames)


def stored_size(size: int) -> int:
    """Ciphertext size of ``size`` plaintext bytes."""
    return HEADER + size + TAG * max(1, -(-size // FRAME))


def _frames(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Plaintext in FRAME-sized pieces, each with whether it is the last (at least one, maybe empty)."""
    buf = bytearray()
    pending: bytes | None = None
    for chunk in chunks:
        buf += chunk
        while len(buf) >= FRAME:
            if pending is not None:
                yield pending, False
            pending = bytes(buf[:FRAME])
            del buf[:FRAME]
    if buf or pending is None:
        if pending is not None:
            yield pending, False
        yield bytes(buf), True
    else:
        yield pending, True


class EnvelopeStore:
    """``inner`` with every object encrypted under its tenant's data key."""

    encrypted = True

    def __init__(self, inner: Store, keys: DataKeys) -> None:
        self.inner = inner
        self.keys = keys
        self.url = inner.url

    def __repr__(self) -> str:
        return f"EnvelopeStore({self.inner!r})"

    def __getattr__(self, name: str) -> Any:
        if name in _PASS_THROUGH:
            return getattr(self.inner, name)
        raise AttributeError(name)

    @staticmethod
    def _tenant(locator: str) -> str:
        return check_locator(locator).split("/", 1)[0]

    @staticmethod
    def _aad(header: bytes, locator: str, index: int, final: bool) -> bytes:
        return header + locator.encode() + struct.pack(">QB", index, final)

    def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
        version, key = self.keys.active(self._tenant(locator))
        aead = AESGCM(key)
        prefix = os.urandom(8)
        header = MAGIC + struct.pack(">I", version) + prefix
        written = 0

        def ciphertext() -> Iterator[bytes]:
            nonlocal written
            yield header
            for index, (plain, final) in enumerate(_frames(chunks)):
                written += len(plain)
                nonce = prefix + struct.pack(">I", index)
                yield aead.encrypt(nonce, plain, self._aad(header, locator, index, final))

        hint = None if size_hint is None else stored_size(size_hint)
        self.inner.put(locator, ciphertext(), size_hint=hint)
        return written

    def _header(self, locator: str, raw: bytes) -> tuple[bytes, AESGCM]:
        if len(raw) < HEADER or raw[:4] != MAGIC:
            raise IntegrityError(
                f"object {locator!r} in {self.url} is not envelope-encrypted (no LQE1 header): written "
                "before encryption was turned on, or by something other than Liquid",
                field="encryption",
            )
        (version,) = struct.unpack(">I", raw[4:8])
        return raw[:HEADER], AESGCM(self.keys.get(self._tenant(locator), version))

    def _decrypt(
        self,
        locator: str,
        header: bytes,
        aead: AESGCM,
        index: int,
        frame: bytes,
        *,
        last: bool,
        must_final: bool,
    ) -> bytes:
        nonce = header[8:16] + struct.pack(">I", index)
        # A short frame is always the final one; a full one at the end of a range may or may not be.
        flags = (
            [True] if len(frame) < CFRAME else ([True] if must_final else [False, True]) if last else [False]
        )
        for final in flags:
            try:
                return aead.decrypt(nonce, frame, self._aad(header, locator, index, final))
            except InvalidTag:
                continue
        raise IntegrityError(
            f"object {locator!r} in {self.url}: frame {index} does not decrypt (tampered, truncated or "
            "moved from another name)",
            field="encryption",
        )

    def open(self, locator: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Decrypted bytes ``[start, end)``; a missing object raises ObjectNotFound before iterating."""
        check_range(start, end)
        if end is not None and end == start:
            self.head(locator)
            return iter(())
        first = start // FRAME
        if start == 0 and end is None:
            raw = self.inner.open(locator)
            return self._stream_all(locator, raw)
        header, aead = self._header(locator, b"".join(self.inner.open(locator, start=0, end=HEADER)))
        lo = HEADER + first * CFRAME
        hi = None if end is None else HEADER + ((end - 1) // FRAME + 1) * CFRAME
        raw = self.inner.open(locator, start=lo, end=hi)
        return self._stream(locator, header, aead, raw, first, start - first * FRAME, end, end is None)

    def _stream_all(self, locator: str, raw: Iterator[bytes]) -> Iterator[bytes]:
        buf = bytearray()
        try:
            for chunk in raw:
                buf += chunk
                if len(buf) >= HEADER:
                    break
            header, aead = self._header(locator, bytes(buf))
        except BaseException:
            _close(raw)  # its connection or file goes back now, not when the traceback is freed
            raise
        del buf[:HEADER]

        def rest() -> Iterator[bytes]:
            if buf:
                yield bytes(buf)
            yield from raw

        return self._stream(locator, header, aead, rest(), 0, 0, None, True, inner=raw)

    def _stream(
        self,
        locator: str,
        header: bytes,
        aead: AESGCM,
        raw: Iterable[bytes],
        index: int,
        skip: int,
        end: int | None,
        to_end: bool,
        *,
        inner: Iterable[bytes] | None = None,
    ) -> Iterator[bytes]:
        """Frames of ``raw`` decrypted; ``raw`` (and the ``inner`` stream it wraps) closed however
        this ends: a range's end, a frame that does not decrypt, a reader that stopped early."""
        try:
            remaining = None if end is None else end - (index * FRAME + skip)
            buf = bytearray()
            frame: bytes | None = None

            def emit(plain: bytes) -> bytes:
                nonlocal skip, remaining
                plain = plain[skip:]
                skip = 0
                if remaining is not None:
                    plain = plain[:remaining]
                    remaining -= len(plain)
                return plain

            for chunk in raw:
                buf += chunk
                pos = 0
                while len(buf) - pos > CFRAME:  # more follows: the frame in hand is not the last
                    frame = bytes(buf[pos : pos + CFRAME])
                    pos += CFRAME
                    yield emit(
                        self._decrypt(locator, header, aead, index, frame, last=False, must_final=False)
                    )
                    index += 1
                    if remaining == 0:
                        return
                del buf[:pos]  # one move per chunk, not one copy of the rest per frame
            if buf:
                yield emit(
                    self._decrypt(locator, header, aead, index, bytes(buf), last=True, must_final=to_end)
                )
            elif to_end and index == 0 and frame is None and skip == 0:
                # A stream with no frame at all: truncated to its header.
                raise IntegrityError(f"object {locator!r} in {self.url} is truncated", field="encryption")
        finally:
            _close(raw)
            if inner is not None:
                _close(inner)

    def head(self, locator: str) -> ObjectStat:
        stat = self.inner.head(locator)
        return ObjectStat(stat.locator, plain_size(stat.size), stat.modified)

    def delete(self, locator: str) -> bool:
        return self.inner.delete(locator)

    def delete_many(self, locators: Sequence[str]) -> None:
        _delete_many(self.inner, locators)

    def list(self, prefix: str = "") -> Iterator[ObjectStat]:
        for stat in self.inner.list(prefix):
            yield ObjectStat(stat.locator, plain_size(stat.size), stat.modified)

    def ping(self) -> None:
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()


def _close(raw: Iterable[bytes]) -> None:
    """Close an inner store's stream (a generator holding a connection or a file), if it can be."""
    close = getattr(raw, "close", None)
    if close is not None:
        close()
