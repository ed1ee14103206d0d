"""Bounded calls to a backend: a bulkhead and a circuit breaker around each store and the hot cache.

A store that hangs (a stopped S3 server, a saturated link) must cost its own requests a few
seconds at most and nobody else anything. :class:`Guard` gives each backend:

* a **bulkhead**: at most ``concurrency`` calls in flight at once; a further call waits up
  to ``queue_wait`` seconds for a slot, then fails with :class:`~liquid.errors.StoreUnavailable`.
  The API's worker threads are shared, so without it forty hung cold reads would hold every
  thread and a hot read would queue behind them; with it a hung store holds at most its
  ``concurrency`` threads and the rest keep serving the other tiers.
* a **circuit breaker** (`pybreaker <https://pypi.org/project/pybreaker/>`_): after
  ``failures`` consecutive backend failures the circuit opens and calls fail at once with
  :class:`~liquid.errors.StoreUnavailable` (503, ``Retry-After``) for ``reset`` seconds; then
  one trial call decides whether it closes again. Only availability failures count
  (:class:`~liquid.errors.StoreError`, timeouts and connection errors): a missing object, bad
  input or a checksum mismatch says nothing about the backend's health.

The store calls themselves are bounded by each backend's own timeouts (S3: connect and read
timeouts; PostgreSQL: ``connect_timeout`` and ``statement_timeout``; Redis: socket timeouts).
:class:`GuardedStore` wraps a :class:`~liquid.stores.base.Store`, guarding every call and
every chunk of a streamed read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import pybreaker

from liquid.errors import LiquidError, StoreError, StoreUnavailable
from liquid.stores.base import ObjectStat, Store, delete_many

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the backend is unavailable (as opposed to the request being wrong)."""
    if isinstance(exc, StoreError):
        return True
    if isinstance(exc, LiquidError):
        return False  # not found, gone, invalid, integrity: the backend answered
    return isinstance(exc, OSError | TimeoutError | ConnectionError)


class _Log(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        old = getattr(old_state, "name", old_state)
        log.warning("circuit of %s: %s -> %s", cb.name, old, new_state.name)


def _raise(exc: BaseException) -> None:
    raise exc


def _succeed() -> None:
    pass


def _count(breaker: pybreaker.CircuitBreaker, fn: Callable[..., None], *args: Any) -> None:
    """Let the breaker see the outcome of a call that already ran (as if it had run it).

    A failure is counted (if it is an outage) and may trip the circuit; the exception is then
    the caller's to raise, not the breaker's: it was raised by the call, not refused by the circuit.
    """
    try:
        breaker.call(fn, *args)
    except pybreaker.CircuitBreakerError:
        pass  # tripped or opened by another thread meanwhile: nothing left to count
    except BaseException:
        pass  # the failure just handed over, now counted


class Guard:
    """A bulkhead and a circuit breaker for one backend (see the module docstring).

    Args:
        name: the backend, for logs and metrics (``store:cold``, ``hot``); never shown to tenants.
        what: how a tenant-visible error names it (``the cold tier``).
        concurrency: calls in flight at once.
        queue_wait: seconds a call waits for a slot before failing.
        failures: consecutive failures that open the circuit.
        reset: seconds the circuit stays open before a trial call.
        outage: which exceptions count as the backend failing (default :func:`is_outage`).
    """

    def __init__(
        self,
        name: str,
        *,
        what: str | None = None,
        concurrency: int = 16,
        queue_wait: float = 1.0,
        failures: int = 5,
        reset: float = 10.0,
        outage: Callable[[BaseException], bool] = is_outage,
    ) -> None:
        self.name = name
        self.what = what or name
        self.concurrency = concurrency
        self.queue_wait = queue_wait
        self.reset = reset
        self._slots = threading.BoundedSemaphore(concurrency)
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=failures,
            reset_timeout=reset,
            exclude=[lambda exc: not outage(exc)],
            listeners=[_Log()],
            name=name,
            throw_new_error_on_trip=False,
        )
        self.rejected = 0

    def __repr__(self) -> str:
        return (
            f"Guard({self.name!r}, state={self.state}, concurrency={self.concurrency},"
            f" rejected={self.rejected})"
        )

    @property
    def state(self) -> str:
        """``closed`` (healthy), ``open`` (failing fast) or ``half-open`` (trying again)."""
        return str(self.breaker.current_state)

    @property
    def is_open(self) -> bool:
        """Failing fast now: open, and its ``reset`` not over (after it a call is let through to try)."""
        if self.state != pybreaker.STATE_OPEN:
            return False
        opened = self.breaker._state_storage.opened_at
        if opened is None:
            return True
        return (datetime.now(UTC) - opened).total_seconds() < self.reset

    def unavailable(self, why: str) -> StoreUnavailable:
        self.rejected += 1
        return StoreUnavailable(
            f"{self.what} is unavailable ({why}); retry in {self.reset:g} s",
            retry_after=self.reset,
            backend=self.name,
        )

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one bulkhead slot (or fail fast) and count the outcome on the breaker."""
        if self.is_open:
            raise self.unavailable("its circuit is open after repeated failures")
        if not self._slots.acquire(timeout=self.queue_wait):
            raise self.unavailable(f"all {self.concurrency} connections are busy")
        try:
            if self.breaker.current_state != pybreaker.STATE_CLOSED:
                # Open past its reset, or half-open: the breaker decides about the trial call.
                with self.breaker.calling():
                    yield
                return
            # Closed, the common case: pybreaker's `calling()` (nested generators, its lock and
            # listeners) cost 10-30 µs per call, a fifth of a hot read; a success with no failures
            # counted changes nothing in it, so only failures, and the success after them, go to it.
            try:
                yield
            except BaseException as exc:
                _count(self.breaker, _raise, exc)
                raise
            if self.breaker.fail_counter:
                _count(self.breaker, _succeed)  # consecutive failures: a success starts over
        except pybreaker.CircuitBreakerError:
            raise self.unavailable("its circuit is open after repeated failures") from None
        finally:
            self._slots.release()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.slot():
            return fn(*args, **kwargs)

    def stream(self, chunks: Iterator[T]) -> Iterator[T]:
        """``chunks`` with every ``next`` guarded (a stalled read is one more failure)."""
        try:
            while True:
                with self.slot():
                    try:
                        chunk = next(chunks)
                    except StopIteration:
                        return
                yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


class GuardedStore:
    """A :class:`~liquid.stores.base.Store` whose every call goes through a :class:`Guard`."""

    def __init__(self, store: Store, guard: Guard) -> None:
        self.store = store
        self.guard = guard
        self.url = store.url

    def __repr__(self) -> str:
        return f"GuardedStore({self.store!r}, {self.guard!r})"

    def __getattr__(self, name: str) -> Any:
        # Optional capabilities (presign_get, create_schema, ...) and attributes pass through, guarded
        # when callable.
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        def guarded(*args: Any, **kwargs: Any) -> Any:
            return self.guard.call(attr, *args, **kwargs)

        return guarded

    def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
        return self.guard.call(self.store.put, locator, chunks, size_hint=size_hint)

    def open(self, locator: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        raw = self.guard.call(self.store.open, locator, start=start, end=end)
        return self.guard.stream(iter(raw))

    def head(self, locator: str) -> ObjectStat:
        return self.guard.call(self.store.head, locator)

    def delete(self, locator: str) -> bool:
        return self.guard.call(self.store.delete, locator)

    def delete_many(self, locators: Sequence[str]) -> None:
        self.guard.call(delete_many, self.store, locators)

    def list(self, prefix: str = "") -> Iterator[ObjectStat]:
        return self.guard.stream(iter(self.guard.call(self.store.list, prefix)))

    def ping(self) -> None:
        self.guard.call(self.store.ping)

    def close(self) -> None:
        self.store.close()
