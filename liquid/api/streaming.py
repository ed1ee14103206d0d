"""Bridges between the async server and the synchronous core, and HTTP range parsing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import anyio.from_thread

from liquid.errors import TooLarge

#: Request body is handed to the core in pieces of about this size (one thread hop each).
COALESCE = 1024 * 1024


class BodyBridge:
    """The request body as a sync iterator for a worker thread, counted against a limit.

    The event loop reads the socket; the worker thread pulls coalesced pieces with
    ``anyio.from_thread.run``, so memory stays bounded by one piece and the loop is
    never blocked. Passing ``limit`` raises :class:`TooLarge` right away: the rest of
    the body is never read (the server then closes the connection).
    """

    def __init__(self, stream: AsyncIterator[bytes], *, limit: int, coalesce: int = COALESCE) -> None:
        self._stream = stream
        self.limit = limit
        self.coalesce = coalesce
        self.received = 0
        self._done = False

    async def _next(self) -> bytes | None:
        if self._done:
            return None
        parts: list[bytes] = []
        n = 0
        while n < self.coalesce:
            try:
                chunk = await self._stream.__anext__()
            except StopAsyncIteration:
                self._done = True
                break
            if not chunk:
                continue
            self.received += len(chunk)
            if self.received > self.limit:
                self._done = True
                raise TooLarge(f"body exceeds the maximum object size of {self.limit} bytes", field="body")
            parts.append(chunk)
            n += len(chunk)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def read_small(self) -> bytes:
        """The whole body, read on the loop: for a body declared no larger than one piece.

        A worker thread pulling it through :meth:`__iter__` would cross to the loop and back
        twice (the piece, then the end); read here first, the upload takes a thread only once
        its bytes are in, however slowly they trickle.
        """
        parts: list[bytes] = []
        while (piece := await self._next()) is not None:
            parts.append(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            piece = anyio.from_thread.run(self._next)
            if piece is None:
                return
            yield piece


_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ByteRange:
    """One range: ``first``-``last`` inclusive (``last`` None = to the end), or the last ``suffix`` bytes."""

    first: int | None
    last: int | None
    suffix: int | None = None

    def resolve(self, size: int) -> tuple[int, int] | None:
        """``[start, end)`` within an object of ``size`` bytes, or None when unsatisfiable."""
        if self.suffix is not None:
            if self.suffix == 0 or size == 0:
                return None
            return max(size - self.suffix, 0), size
        assert self.first is not None
        if self.first >= size:
            return None
        end = size if self.last is None else min(self.last + 1, size)
        return self.first, end


def parse_range(header: str | None) -> ByteRange | None:
    """One ``bytes=`` range, or None to serve the whole object.

    Malformed headers and multi-range requests are ignored (RFC 9110 allows serving
    the whole representation instead).

    >>> parse_range("bytes=0-99")
    ByteRange(first=0, last=99, suffix=None)
    >>> parse_range("bytes=-5")
    ByteRange(first=None, last=None, suffix=5)
    >>> parse_range("bytes=5-1") is None, parse_range("bytes=0-1,4-5") is None
    (True, True)
    """
    if header is None:
        return None
    m = _RANGE.match(header)
    if m is None:
        return None
    a, b = m.group(1), m.group(2)
    if not a and not b:
        return None
    if not a:
        return ByteRange(None, None, suffix=_position(b))
    first = _position(a)
    last = _position(b) if b else None
    if last is not None and last < first:
        return None
    return ByteRange(first, last)


#: Byte positions are clamped here: no object is this large, and Python refuses to convert
#: integers of thousands of digits (a Range header of them used to be a 500).
MAX_POSITION = 10**18


def _position(digits: str) -> int:
    """A byte position from its digits, clamped to :data:`MAX_POSITION`.

    >>> _position("12"), _position("9" * 5000) == MAX_POSITION
    (12, True)
    """
    stripped = digits.lstrip("0") or "0"
    return int(stripped) if len(stripped) <= 18 else MAX_POSITION


def etag_matches(header: str, sha256: str) -> bool:
    """Whether an ``If-None-Match`` header matches the strong ETag ``"<sha256>"`` (weak compare)."""
    if header.strip() == "*":
        return True
    for tag in header.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag.strip('"') == sha256:
            return True
    return False
