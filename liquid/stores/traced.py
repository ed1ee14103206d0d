"""A store whose calls are OpenTelemetry spans (``store.put``, ``store.open``, ...): :mod:`liquid.tracing`.

The runtime wraps each durable store in a :class:`TracedStore` only when tracing is on, so
a store call costs nothing extra by default. A streamed read's span lasts until the stream
is exhausted or closed, and carries the bytes read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode

from liquid.stores.base import ObjectStat, Store, delete_many
from liquid.tracing import Tracing


class TracedStore:
    """A :class:`~liquid.stores.base.Store` with a span around every call."""

    def __init__(self, store: Store, tracing: Tracing, *, name: str) -> None:
        self.store = store
        self.tracing = tracing
        self.name = name
        self.url = store.url

    def __repr__(self) -> str:
        return f"TracedStore({self.store!r})"

    def __getattr__(self, name: str) -> Any:
        # Optional capabilities (presign_get, create_schema, ...) and attributes pass through.
        attr = getattr(self.store, name)
        if name != "read_into":
            return attr

        def read_into(locator: str, buffer: memoryview) -> Iterator[int]:
            # A span like open's, lasting the transfer.
            span = self.tracing.start("store.open", self._attrs("read_into", locator))
            try:
                steps = attr(locator, buffer)
            except BaseException as exc:
                _end(span, exc)
                raise
            return _streamed(span, steps)

        return read_into

    def _attrs(self, op: str, locator: str | None = None) -> dict[str, str | int]:
        attrs: dict[str, str | int] = {"liquid.store": self.name, "liquid.store.op": op}
        if locator is not None:
            attrs["liquid.locator"] = locator
        return attrs

    def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
        with self.tracing.span("store.put", self._attrs("put", locator)) as span:
            n = self.store.put(locator, chunks, size_hint=size_hint)
            span.set_attribute("liquid.bytes", n)
            return n

    def open(self, locator: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        span = self.tracing.start("store.open", self._attrs("open", locator))
        try:
            raw = self.store.open(locator, start=start, end=end)
        except BaseException as exc:
            _end(span, exc)
            raise
        return _streamed(span, raw)

    def head(self, locator: str) -> ObjectStat:
        with self.tracing.span("store.head", self._attrs("head", locator)):
            return self.store.head(locator)

    def delete(self, locator: str) -> bool:
        with self.tracing.span("store.delete", self._attrs("delete", locator)):
            return self.store.delete(locator)

    def delete_many(self, locators: Sequence[str]) -> None:
        with self.tracing.span(
            "store.delete_many", {**self._attrs("delete_many"), "liquid.count": len(locators)}
        ):
            delete_many(self.store, locators)

    def list(self, prefix: str = "") -> Iterator[ObjectStat]:
        span = self.tracing.start("store.list", {**self._attrs("list"), "liquid.prefix": prefix})
        try:
            raw = self.store.list(prefix)
        except BaseException as exc:
            _end(span, exc)
            raise
        return _streamed(span, raw)

    def ping(self) -> None:
        with self.tracing.span("store.ping", self._attrs("ping")):
            self.store.ping()

    def close(self) -> None:
        self.store.close()


def _end(span: Span, exc: BaseException | None = None) -> None:
    if exc is not None:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, str(exc)))
    span.end()


def _streamed(span: Span, items: Iterable[Any]) -> Iterator[Any]:
    n = 0
    try:
        for item in items:
            if isinstance(item, bytes | bytearray | memoryview):
                n += len(item)
            elif isinstance(item, int):
                n = item  # read_into's steps: the bytes filled so far
            yield item
    except BaseException as exc:
        span.set_attribute("liquid.bytes", n)
        _end(span, exc if not isinstance(exc, GeneratorExit) else None)
        raise
    span.set_attribute("liquid.bytes", n)
    _end(span)
