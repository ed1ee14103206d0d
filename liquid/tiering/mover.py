"""The mover: executes journaled moves and purges, crash-safe, several movers per catalog.

One :meth:`Mover.run_once` is poll → claim (lease) → run (bounded threads, store calls
under a watchdog) → finish:

1. **claim** up to ``max_moves_per_cycle`` open journal rows with ``FOR UPDATE SKIP
   LOCKED`` and a lease (:func:`liquid.tiering.journal.claim`); another mover skips them.
   While the cycle runs, a heartbeat thread renews the lease of every row it still holds
   every ``lease / 3`` seconds (:func:`liquid.tiering.journal.renew`, a compare-and-set on
   ``claimed_by``), so a long copy is never claimed twice.
2. **run** the protocol of DESIGN.md, invariant 2 — copy, verify, switch home in one
   catalog transaction, delete the source after the grace period — on one of two paths.
   Every write to a claimed row is a compare-and-set on ``claimed_by``: a mover that
   lost its lease stops instead of racing the new owner. Writes from worker threads also
   compare ``attempts``, so a thread the watchdog gave up on (its attempt was counted as
   failed) can record nothing afterwards, even once this worker holds the row again.

   **Small moves** (stored size ≤ ``small_move_size``) go in batches of ``batch_size``,
   because their cost is round trips, not bytes:

   * one query loads every claimed row's object;
   * on up to ``concurrency`` threads, each row's *stored* bytes (zstd stays zstd) are
     streamed from the source (the ``catalog`` pseudo-store means ``objects.inline_data``)
     to the pre-assigned ``to_locator``, then read back, decompressed if the object is
     zstd, and compared with the catalog's size and SHA-256. No journal step is recorded:
     a crash leaves the row ``planned``, and the retry overwrites its own copy;
   * **one** catalog transaction locks the batch's rows (still ours), switches every
     verified object's home with a compare-and-set on its state and old home, advances
     the rows to ``switched`` (``delete_after = now + grace_period``), appends one
     ``object.moved`` event per object and marks them changed for the planner. A row
     whose object was deleted or changed meanwhile is closed in the same transaction and
     its copy dropped afterwards (never a home);
   * sources whose grace period is over are deleted with one bulk call per store
     (:func:`liquid.stores.base.delete_many`) and the rows closed with one statement.

   The next batch's copies start before this batch switches, so no thread waits on the
   catalog.

   **Large moves** and purges take the per-row path, one journal update per step:

   * ``planned → copied``: stream the stored bytes to ``to_locator``.
   * ``copied → verified``: read the destination back and compare; a mismatch sends the
     row back to ``planned``.
   * ``verified → switched``: the same compare-and-set switch, for one object.
   * ``switched → done`` (once ``delete_after`` passed): delete the source bytes. A reader
     that looked the old home up just before the switch still finds it for the whole
     grace period. (Claimed ``switched`` rows, large or small, finish in bulk as above.)
   * purge rows (tombstoned by :func:`liquid.tiering.journal.enqueue_purge`): delete the hot
     copy and home bytes, mark the object ``purged``, append an ``object.purged`` receipt.

3. **finish**: transient store errors are retried in the step (tenacity, exponential
   backoff); a step that still fails releases the row with ``claimed_until = now +
   backoff·2^attempts`` as a not-before time; after ``max_attempts`` the row is
   ``failed``, its destination bytes are removed (by the worker thread; a failure the
   cycle's own thread notices leaves them to ``liquid gc``: it never calls a store), and
   an ``object.move_failed`` event and an ERROR log report it. The object stays readable
   where it was.

   A store call that makes no progress (no chunk read or written) for ``store_timeout``
   seconds fails its row's attempt the same way: the row leaves the heartbeat, is
   released with backoff, and ``run_once`` returns without waiting for the call, which is
   abandoned on its (daemon) thread; the stores' own socket timeouts end it eventually.
   A copy such a thread still writes lands under the row's ``to_locator``: the retry
   overwrites it, or ``liquid gc`` collects it once the row is closed.

Every step is idempotent, so a mover killed anywhere loses nothing: the next mover (or
this one restarted, via :meth:`Mover.recover`) resumes the row at its recorded step.
Bytes copied by a mover that died before its journal update are overwritten by the
retry; bytes of rows that end ``failed`` are collected by ``liquid gc``.

For fault-injection tests, ``LIQUID_MOVER_CRASH_AT=<point>[:<n>]`` SIGKILLs the process
the ``n``-th time (default 1st) it reaches a point in :data:`CRASH_POINTS`; both paths
reach every point.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import psycopg
import sqlalchemy.exc
from opentelemetry.trace import Span, Status, StatusCode
from sqlalchemy import Connection, Engine, and_, case, select, text
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from liquid.catalog import db
from liquid.catalog.changes import mark_changed
from liquid.catalog.models import Object
from liquid.config import CATALOG_STORE, MoverSettings
from liquid.errors import IntegrityError, StoreError
from liquid.events import log as events
from liquid.hotcache import HotCache
from liquid.purge import purge
from liquid.refs import ResultRef
from liquid.service import LiquidService, _decompress, utcnow
from liquid.stores.base import Store, delete_many
from liquid.tiering.journal import (
    JournalEntry,
    beat,
    claim,
    close,
    held_restores,
    release,
    release_stale,
    renew,
)
from liquid.tiering.spend import SpendGate
from liquid.tracing import TRACE_ID_ATTR, Tracing

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
T = TypeVar("T")
#: Where ``LIQUID_MOVER_CRASH_AT`` can kill the process, in protocol order.
CRASH_POINTS = ("after_journal", "mid_copy", "after_copy", "after_verify", "after_switch", "mid_delete")
CRASH_ENV = "LIQUID_MOVER_CRASH_AT"
#: Steps of a move row before its switch: its copy may still have to be made.
COPY_STEPS = ("planned", "copied", "verified")
#: Object columns the mover reads.
_OBJECT_COLUMNS = (
    Object.id,
    Object.tenant_id,
    Object.namespace,
    Object.key,
    Object.version,
    Object.state,
    Object.size,
    Object.stored_size,
    Object.sha256,
    Object.compression,
    Object.legal_hold,
    Object.home_tier,
    Object.home_store,
    Object.locator,
    Object.deleted_at,
    Object.trace_id,
    Object.correlation_id,
    Object.execution_id,
)
_DISCARDED = "the object was deleted or changed during the move"
#: Switch a batch: objects (compare-and-set on state and old home, rows locked and ours),
#: their journal rows and their ``object.moved`` events, in one statement.
_SWITCH_BATCH = text(
    "WITH moved AS ("
    " UPDATE objects o SET home_tier = j.to_tier, home_store = j.to_store, locator = j.to_locator,"
    " home_since = :now, inline_data = NULL"
    " FROM move_journal j"
    " WHERE j.id = ANY(CAST(:ids AS bigint[])) AND j.claimed_by = :me AND o.id = j.object_id"
    " AND o.state = 'live' AND o.home_store = j.from_store AND o.locator IS NOT DISTINCT FROM j.from_locator"
    " RETURNING o.id AS object_id, o.tenant_id, o.namespace, o.key, o.version, o.size, o.stored_size,"
    " o.trace_id, o.correlation_id, o.execution_id,"
    " j.id AS journal_id, j.from_tier, j.from_store, j.from_locator, j.to_tier, j.to_store, j.to_locator,"
    " j.reason),"
    " switched AS ("
    " UPDATE move_journal j SET step = 'switched', updated_at = :now, claimed_until = :until,"
    " delete_after = :delete_after FROM moved WHERE j.id = moved.journal_id RETURNING j.*),"
    " logged AS ("
    + events.insert_from(
        "moved",
        events.MOVED,
        at=":now",
        actor=":actor",
        order_by="journal_id",
        tenant_id="tenant_id",
        object_id="object_id",
        namespace="namespace",
        key="key",
        version="version",
        tier="to_tier",
        from_tier="from_tier",
        bytes="stored_size",
        trace_id="trace_id",
        correlation_id="correlation_id",
        execution_id="execution_id",
        data={
            "journal_id": "journal_id",
            "from_store": "from_store",
            "from_locator": "from_locator",
            "to_store": "to_store",
            "to_locator": "to_locator",
            "size": "size",
            "reason": "reason",
        },
    )
    + ")"
    " SELECT * FROM switched ORDER BY id"
)


class _LostClaim(Exception):
    """The row is no longer ours (lease expired and someone else took it, or it closed)."""


def _at_source(entry: JournalEntry, obj: Any) -> bool:
    """Whether the move's object is still live at the home the row was queued from."""
    return (
        obj is not None
        and obj.state == "live"
        and (obj.home_store, obj.locator) == (entry.from_store, entry.from_locator)
    )


def _transient(exc: BaseException) -> bool:
    return isinstance(
        exc,
        StoreError
        | ConnectionError
        | TimeoutError
        | psycopg.OperationalError
        | sqlalchemy.exc.OperationalError,
    )


class TokenBucket:
    """A bytes/s limit shared by threads; ``rate`` 0 means unlimited."""

    def __init__(
        self,
        rate: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        # One second's worth of burst: enough to keep a 1 MiB chunk from stalling at low rates.
        self._capacity = max(rate, 1.0)
        self._tokens = self._capacity
        self._last = monotonic()

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate})"

    def take(self, n: int) -> None:
        """Block until ``n`` bytes may pass."""
        if self.rate <= 0 or n <= 0:
            return
        with self._lock:
            now = self._monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


class _CrashHook:
    """Test-only: SIGKILL this process the n-th time a named point is reached."""

    def __init__(self, spec: str | None) -> None:
        self.point: str | None = None
        self.nth = 1
        self.count = 0
        self._lock = threading.Lock()
        if spec:
            point, _, nth = spec.partition(":")
            if point not in CRASH_POINTS:
                raise ValueError(f"{CRASH_ENV}={spec!r}: point must be one of {', '.join(CRASH_POINTS)}")
            self.point, self.nth = point, int(nth or 1)

    def __call__(self, point: str) -> None:
        if point != self.point:
            return
        with self._lock:
            self.count += 1
            if self.count == self.nth:
                log.warning("crash hook: SIGKILL at %s (hit %d)", point, self.count)
                os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class MoveReport:
    """What one :meth:`Mover.run_once` did.

    ``counts`` is keyed by ``(kind, from_tier, to_tier, result)``; results are ``moved``,
    ``purged``, ``skipped`` (object changed; nothing to do), ``waiting`` (switched, source
    kept until its grace period ends), ``retry`` (failed attempt, will retry), ``failed``
    (gave up; reported), ``abandoned`` (stop requested or lease lost).
    """

    claimed: int = 0
    bytes_moved: int = 0
    seconds: float = 0.0
    counts: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, entry: JournalEntry, result: str, nbytes: int = 0) -> None:
        with self._lock:
            self.counts[(entry.kind, entry.from_tier, entry.to_tier or "-", result)] += 1
            self.bytes_moved += nbytes

    def total(self, result: str) -> int:
        """How many rows ended a step sequence with ``result``."""
        return sum(n for key, n in self.counts.items() if key[3] == result)

    def as_dict(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "bytes_moved": self.bytes_moved,
            "seconds": round(self.seconds, 3),
            "counts": [
                {"kind": k, "from": f, "to": t, "result": r, "n": n}
                for (k, f, t, r), n in sorted(self.counts.items())
            ],
        }

    def __repr__(self) -> str:
        results = Counter[str]()
        for key, n in self.counts.items():
            results[key[3]] += n
        shown = ", ".join(f"{r}={n}" for r, n in sorted(results.items()))
        return f"MoveReport(claimed={self.claimed}, {shown or 'idle'}, bytes={self.bytes_moved})"


class _Task:
    """Store work for some journal rows, run by a :class:`_Runner` thread under the watchdog.

    ``closed``: the rows are closed already (dropping a discarded copy), so giving up on
    the task records nothing.
    """

    def __init__(
        self, entries: Sequence[JournalEntry], fn: Callable[[], Any], *, closed: bool = False
    ) -> None:
        self.entries = list(entries)
        self.fn = fn
        self.closed = closed
        #: ``monotonic()`` of the last progress: start, a store call, a chunk.
        self.touched = 0.0
        self.value: Any = None
        self.error: Exception | None = None
        #: Finished, or given up on (``timed_out``); set under the runner's lock.
        self.settled = False
        self.timed_out = False

    def __repr__(self) -> str:
        ids = ",".join(str(e.id) for e in self.entries)
        return f"_Task(rows={ids}, settled={self.settled}, timed_out={self.timed_out})"


class _Runner:
    """Runs one cycle's tasks on at most ``size`` threads; gives up on a task that stalls.

    Each thread takes queued tasks until none is left. A task whose store call makes no
    progress for ``timeout`` seconds goes to ``give_up``; its thread is abandoned and its
    slot handed to a new one. That is why this is not a ThreadPoolExecutor, which joins
    its threads on shutdown and at exit: these are daemon threads, and a stalled one never
    takes more work. Queued tasks run while the caller does other work, so the next batch
    copies while this one switches; stalls are noticed in :meth:`wait`.
    """

    def __init__(
        self,
        size: int,
        timeout: float,
        *,
        monotonic: Callable[[], float],
        local: threading.local,
        give_up: Callable[[_Task], None],
    ) -> None:
        self.size = size
        self.timeout = timeout
        self._monotonic = monotonic
        self._local = local
        self._give_up = give_up
        self._tick = min(max(timeout / 4, 0.01), 1.0)
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._queued: deque[_Task] = deque()
        self._running: set[_Task] = set()
        self._threads = 0

    def __repr__(self) -> str:
        return f"_Runner(size={self.size}, running={len(self._running)}, queued={len(self._queued)})"

    def submit(self, tasks: Iterable[_Task], *, first: bool = False) -> list[_Task]:
        """Queue tasks (``first``: ahead of those already queued); they start at once if a thread is free."""
        batch = list(tasks)
        with self._lock:
            if first:
                self._queued.extendleft(reversed(batch))
            else:
                self._queued.extend(batch)
            spawn = self._slots()
        self._spawn(spawn)
        return batch

    def wait(self, tasks: Sequence[_Task]) -> None:
        """Return once each of ``tasks`` finished or was given up; other tasks keep running."""
        while True:
            with self._lock:
                if all(t.settled for t in tasks):
                    return
                self._settled.wait(self._tick)
                now = self._monotonic()
                stalled = [t for t in self._running if now - t.touched > self.timeout]
                for task in stalled:
                    task.settled = task.timed_out = True
                    self._running.discard(task)
                    self._threads -= 1  # that thread is abandoned: its slot goes to a new one
                spawn = self._slots()
            for task in stalled:
                self._give_up(task)
            self._spawn(spawn)

    def run(self, tasks: Iterable[_Task], *, first: bool = False) -> list[_Task]:
        """Submit and wait."""
        batch = self.submit(tasks, first=first)
        self.wait(batch)
        return batch

    def _slots(self) -> int:
        """Threads to start for the queue (call with the lock held)."""
        n = max(0, min(len(self._queued), self.size - self._threads))
        self._threads += n
        return n

    def _spawn(self, n: int) -> None:
        for _ in range(n):
            threading.Thread(target=self._work, name="liquid-mover", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queued:
                    self._threads -= 1
                    return
                task = self._queued.popleft()
                task.touched = self._monotonic()
                self._running.add(task)
            self._local.task = task
            try:
                task.value = task.fn()
            except Exception as exc:
                task.error = exc
            finally:
                self._local.task = None
            with self._lock:
                if task.timed_out:
                    return  # given up on: another thread has this one's slot
                task.settled = True
                self._running.discard(task)
                self._settled.notify_all()


class _Watched:
    """A store whose every call and every chunk marks progress for the mover's watchdog."""

    def __init__(self, inner: Store, touch: Callable[[], None]) -> None:
        self.inner = inner
        self.url = inner.url
        self._touch = touch

    def __repr__(self) -> str:
        return f"_Watched({self.inner!r})"

    def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
        self._touch()
        n = self.inner.put(locator, self._progress(chunks), size_hint=size_hint)
        self._touch()
        return n

    def open(self, locator: str) -> Iterator[bytes]:
        self._touch()
        return self._progress(self.inner.open(locator))

    def delete(self, locator: str) -> bool:
        self._touch()
        return self.inner.delete(locator)

    def delete_many(self, locators: Sequence[str]) -> None:
        self._touch()
        delete_many(self.inner, locators)

    def _progress(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        it = iter(chunks)
        try:
            for chunk in it:
                self._touch()
                yield chunk
        finally:
            closing = getattr(it, "close", None)
            if closing is not None:
                closing()  # an abandoned read releases its connection now, not at garbage collection


class _Heartbeat:
    """Beats for this worker every ``every`` seconds, and renews the lease of every row one cycle
    still holds every ``lease / 3`` seconds.

    A row leaves when it is finished or released, and when its store call is stuck (so
    its lease can run out). Renewal is a compare-and-set on ``claimed_by``: a row another
    worker holds now is never touched. The beat is one row per worker (cheap at any rate);
    when it stops, as when the process dies, other movers take the rows within ``3 * every``.
    """

    def __init__(
        self,
        engine: Engine,
        worker_id: str,
        ids: Iterable[int],
        *,
        lease: float,
        clock: Clock,
        every: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.worker_id = worker_id
        self.lease = lease
        self.clock = clock
        self.every = min(every, lease / 3)
        self.monotonic = monotonic
        self.beats = 0
        self._ids = set(ids)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="liquid-mover-heartbeat", daemon=True)

    def __repr__(self) -> str:
        return f"_Heartbeat({self.worker_id!r}, rows={len(self._ids)}, beats={self.beats})"

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join()

    def drop(self, ids: Iterable[int]) -> None:
        """Stop renewing these rows."""
        with self._lock:
            self._ids.difference_update(ids)

    def _run(self) -> None:
        renewed = self.monotonic()
        while not self._stopped.wait(self.every):
            with self._lock:
                ids = sorted(self._ids)
            if not ids:
                continue
            try:
                beat(self.engine, self.worker_id, self.clock())
                if self.monotonic() - renewed >= self.lease / 3 - 0.01:
                    renew(self.engine, self.worker_id, ids, self.lease, self.clock())
                    renewed = self.monotonic()
            except Exception as exc:
                # The next beat tries again; a lease that runs out only costs a repeated step.
                log.warning("mover %s could not beat or renew %d leases: %s", self.worker_id, len(ids), exc)
            self.beats += 1


@dataclass
class _Cycle:
    """What one ``run_once`` shares between its steps: the report, the heartbeat, the threads."""

    report: MoveReport
    heartbeat: _Heartbeat
    runner: _Runner = field(init=False)
    #: Each row's open ``mover.move``/``mover.purge`` span (tracing on), ended by :meth:`finish`.
    spans: dict[int, Span] = field(default_factory=dict)

    def finish(self, entry: JournalEntry, result: str, nbytes: int = 0) -> None:
        """Count a row's result; this cycle is done with it."""
        self.report.add(entry, result, nbytes)
        self.heartbeat.drop([entry.id])
        span = self.spans.pop(entry.id, None)
        if span is not None:
            span.set_attribute("liquid.result", result)
            span.set_attribute("liquid.bytes", nbytes)
            if result == "failed":
                span.set_status(Status(StatusCode.ERROR, entry.error or "failed"))
            span.end()


class Mover:
    """Executes journal rows for one worker. See the module docstring for the protocol.

    Args:
        engine: the catalog.
        stores: the durable stores by name (tests wrap them to inject faults).
        settings: mover settings (``Settings.mover``).
        clock: current UTC time; tests inject a fake one.
        hot: the hot cache, whose copy a purge removes (None: no hot tier).
        worker_id: this mover's claim name; unique per process (default host:pid:random).
        sleep / monotonic: real time, for backoff, the bandwidth limit and the store-call watchdog.
        tracing: a ``mover.cycle`` span per cycle and one per row worked (:mod:`liquid.tracing`).
        spend_gate: asked before each claim whose restores wait (a retrieval spend cap,
            :mod:`liquid.tiering.spend`); None: no restore ever waits.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        stores: Mapping[str, Store],
        settings: MoverSettings,
        clock: Clock = utcnow,
        hot: HotCache | None = None,
        worker_id: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        tracing: Tracing | None = None,
        spend_gate: Callable[[], SpendGate] | None = None,
    ) -> None:
        self.engine = engine
        self.spend_gate = spend_gate
        #: Restores held by the spend gate at the last claim, per tenant (for metrics and plan).
        self.held: dict[str, int] = {}
        self.tracing = tracing or Tracing.off()
        self.stores: dict[str, Store] = dict(stores)
        self.hot = hot
        self.clock = clock
        self.settings = settings
        self.worker_id = worker_id or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._sleep = sleep
        self._monotonic = monotonic
        self.bucket = TokenBucket(self.settings.bytes_per_second, monotonic=monotonic, sleep=self._idle)
        self._watched = {name: _Watched(store, self._touch) for name, store in self.stores.items()}
        self._local = threading.local()
        self._stop = threading.Event()
        self._crash = _CrashHook(os.environ.get(CRASH_ENV))
        #: Totals over this mover's life, for metrics.
        self.totals: Counter[str] = Counter()
        self.cycles = 0

    @classmethod
    def from_service(
        cls,
        service: LiquidService,
        *,
        worker_id: str | None = None,
        clock: Clock | None = None,
        settings: MoverSettings | None = None,
        stores: Mapping[str, Store] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        spend_gate: Callable[[], SpendGate] | None = None,
    ) -> Mover:
        """A mover on a service's catalog, stores, hot cache, mover settings and clock.

        Any keyword given replaces what the service would supply.
        """
        return cls(
            service.engine,
            stores=service.stores if stores is None else stores,
            settings=settings or service.settings.mover,
            clock=clock or service.clock,
            hot=service.hot,
            worker_id=worker_id,
            sleep=sleep,
            monotonic=monotonic,
            tracing=service.tracing,
            spend_gate=spend_gate,
        )

    def __repr__(self) -> str:
        totals = ", ".join(f"{k}={v}" for k, v in sorted(self.totals.items()))
        return f"Mover({self.worker_id!r}, cycles={self.cycles}, {totals or 'idle'})"

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask ``run_once`` to finish the step in progress, release its rows and return."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def stale_after(self) -> float:
        """Seconds of silence after which another mover's rows are taken over (three beats)."""
        return 3 * self.settings.heartbeat

    def recover(self) -> int:
        """Free rows this worker id held before a restart and rows whose lease expired.

        Run at start. Returns how many rows were freed (each counts one interrupted attempt).
        """
        freed = release_stale(self.engine, self.worker_id, self.clock(), stale_after=self.stale_after)
        if freed:
            log.warning("mover %s recovered %d interrupted journal rows", self.worker_id, freed)
        return freed

    def run_once(self, limit: int | None = None) -> MoveReport:
        """Claim up to ``limit`` (capped by ``max_moves_per_cycle``) rows and work them."""
        started = time.perf_counter()
        report = MoveReport()
        if self.stopping:
            return report
        cap = (
            self.settings.max_moves_per_cycle
            if limit is None
            else min(limit, self.settings.max_moves_per_cycle)
        )
        # Beat before claiming: from the claim on, rows are ours only while the beat is fresh.
        beat(self.engine, self.worker_id, self.clock())
        hold = self.spend_gate().claim_filter() if self.spend_gate is not None else (False, [])
        entries = claim(
            self.engine,
            self.worker_id,
            cap,
            self.settings.lease,
            self.clock(),
            stale_after=self.stale_after,
            hold_restores=hold,
        )
        self.held = held_restores(self.engine, hold)
        report.claimed = len(entries)
        if entries:
            heartbeat = _Heartbeat(
                self.engine,
                self.worker_id,
                (e.id for e in entries),
                lease=self.settings.lease,
                clock=self.clock,
                every=self.settings.heartbeat,
            )
            with heartbeat, self.tracing.span("mover.cycle", {"liquid.worker": self.worker_id}):
                cycle = _Cycle(report, heartbeat, spans=self._spans(entries))
                cycle.runner = _Runner(
                    self.settings.concurrency,
                    self.settings.store_timeout,
                    monotonic=self._monotonic,
                    local=self._local,
                    give_up=partial(self._give_up, cycle=cycle),
                )
                try:
                    self._cycle(entries, cycle)
                finally:
                    for span in cycle.spans.values():  # rows the cycle left unfinished
                        span.end()
        report.seconds = time.perf_counter() - started
        self.cycles += 1
        for key, n in report.counts.items():
            self.totals[key[3]] += n
        return report

    def _spans(self, entries: Sequence[JournalEntry]) -> dict[int, Span]:
        """A span per claimed row, with its object's stored trace id (one query; tracing on only)."""
        if not self.tracing.enabled:
            return {}
        with db.reading(self.engine) as conn:
            traces: dict[int, str | None] = dict(
                conn.execute(
                    text("SELECT id, trace_id FROM objects WHERE id = ANY(CAST(:ids AS bigint[]))"),
                    {"ids": [e.object_id for e in entries]},
                ).all()
            )
        spans: dict[int, Span] = {}
        for e in entries:
            attrs: dict[str, str | int] = {
                "liquid.journal_id": e.id,
                "liquid.object_id": e.object_id,
                "liquid.tenant": e.tenant_id,
                "liquid.from_tier": e.from_tier,
                "liquid.from_store": e.from_store,
            }
            if e.to_tier is not None and e.to_store is not None:
                attrs |= {"liquid.to_tier": e.to_tier, "liquid.to_store": e.to_store}
            if e.reason:
                attrs["liquid.reason"] = e.reason
            trace_id = traces.get(e.object_id)
            if trace_id:
                attrs[TRACE_ID_ATTR] = trace_id
            spans[e.id] = self.tracing.start(f"mover.{e.kind}", attrs)
        return spans

    def run_until_idle(self, *, max_cycles: int = 1000) -> MoveReport:
        """Run cycles until a cycle claims nothing (rows waiting for their grace period stay)."""
        total = MoveReport()
        for _ in range(max_cycles):
            report = self.run_once()
            total.claimed += report.claimed
            total.bytes_moved += report.bytes_moved
            total.seconds += report.seconds
            total.counts.update(report.counts)
            if report.claimed == 0 or self.stopping:
                break
        return total

    # ------------------------------------------------------------------ a cycle

    def _cycle(self, entries: list[JournalEntry], cycle: _Cycle) -> None:
        """Small moves in batches, then due source deletes in bulk, then the per-row work."""
        objects = self._load_objects(entries)
        small: list[JournalEntry] = []
        switched: list[JournalEntry] = []
        single: list[JournalEntry] = []
        for entry in entries:
            if entry.kind == "move" and entry.step == "switched":
                switched.append(entry)
            elif entry.kind == "move" and entry.step in COPY_STEPS and self._small(objects, entry):
                small.append(entry)
            else:
                single.append(entry)
        size = self.settings.batch_size
        batches = [small[i : i + size] for i in range(0, len(small), size)]
        copying = self._start_copies(batches[0], objects, cycle) if batches else []
        for k in range(len(batches)):
            cycle.runner.wait(copying)
            done, copying = copying, []
            rest = batches[k + 1 :]
            if rest and self.stopping:
                self._abandon([e for batch in rest for e in batch], cycle)
            elif rest:
                copying = self._start_copies(rest[0], objects, cycle)  # they copy while this batch switches
            self._settle_batch(done, cycle)
            if not copying:
                break
        if switched:
            self._finish_switched([(e, 0) for e in switched], cycle)
        if single:
            tasks = cycle.runner.run(_Task([e], partial(self._work, e)) for e in single)
            for task in tasks:
                if task.timed_out:
                    continue
                (entry,) = task.entries
                result, nbytes = task.value if task.error is None else (self._failed(entry, task.error), 0)
                cycle.finish(entry, result, nbytes)

    def _small(self, objects: Mapping[int, Any], entry: JournalEntry) -> bool:
        limit = self.settings.small_move_size
        if limit <= 0:
            return False
        obj = objects.get(entry.object_id)
        # A vanished object row is "small": the batch's compare-and-set closes its row cheaply.
        return obj is None or int(obj.stored_size) <= limit

    def _load_objects(self, entries: Sequence[JournalEntry]) -> dict[int, Any]:
        """The objects of the claimed moves not yet switched, in one query (row bytes of small ones)."""
        ids = sorted({e.object_id for e in entries if e.kind == "move" and e.step in COPY_STEPS})
        if not ids or self.settings.small_move_size <= 0:
            return {}
        inline = case(
            (
                and_(
                    Object.home_store == CATALOG_STORE,
                    Object.stored_size <= self.settings.small_move_size,
                ),
                Object.inline_data,
            ),
        ).label("inline_data")
        with db.reading(self.engine) as conn:
            rows = conn.execute(select(*_OBJECT_COLUMNS, inline).where(Object.id.in_(ids))).all()
        return {int(r.id): r for r in rows}

    def _abandon(self, entries: Sequence[JournalEntry], cycle: _Cycle) -> None:
        """Give rows back untouched (stop requested)."""
        release(self.engine, self.worker_id, [e.id for e in entries], now=self.clock())
        for entry in entries:
            cycle.finish(entry, "abandoned")

    # --------------------------------------------------------- small moves

    def _start_copies(
        self, batch: Sequence[JournalEntry], objects: Mapping[int, Any], cycle: _Cycle
    ) -> list[_Task]:
        """Queue a batch's copies and verifications, one task a row."""
        return cycle.runner.submit(
            _Task([e], partial(self._copy_small, e, objects.get(e.object_id))) for e in batch
        )

    def _settle_batch(self, tasks: Sequence[_Task], cycle: _Cycle) -> None:
        """After a batch's copies: switch in one transaction, drop discarded copies, delete sources."""
        verified: list[JournalEntry] = []
        changed: list[JournalEntry] = []
        copied: dict[int, int] = {}
        for task in tasks:
            if task.timed_out:
                continue
            (entry,) = task.entries
            outcome, nbytes = task.value if task.error is None else (self._failed(entry, task.error), 0)
            if outcome == "verified":
                verified.append(entry)
                copied[entry.id] = nbytes
            elif outcome == "changed":
                changed.append(entry)
            else:
                cycle.finish(entry, outcome)
        if not verified and not changed:
            return
        try:
            switched, discarded = self._retrying(self._switch_batch, verified, changed)
        except Exception as exc:
            for entry in verified + changed:
                cycle.finish(entry, self._failed(entry, exc))
            return
        done = {e.id for e in switched} | {e.id for e in discarded}
        for entry in verified + changed:
            if entry.id not in done:
                log.warning("mover %s lost its claim on journal row %d", self.worker_id, entry.id)
                cycle.finish(entry, "abandoned")
        for _ in switched:
            self._crash("after_switch")
        for entry in discarded:
            log.info("journal row %d: %s; destination discarded", entry.id, _DISCARDED)
            cycle.finish(entry, "skipped")
        if discarded:
            drops = cycle.runner.run(
                (_Task([e], partial(self._drop_copy, e), closed=True) for e in discarded), first=True
            )
            for task in drops:
                if task.error is not None:
                    log.warning(
                        "could not remove the copy of discarded move %d (gc will): %s",
                        task.entries[0].id,
                        task.error,
                    )
        self._finish_switched([(e, copied[e.id]) for e in switched], cycle)

    def _copy_small(self, entry: JournalEntry, obj: Any) -> tuple[str, int]:
        """On a worker thread: copy and verify one small move.

        Returns ``("verified", bytes)``, ``("changed", 0)`` when the object left the source
        (nothing copied), or the failed attempt's result.
        """
        self._crash("after_journal")
        if not _at_source(entry, obj):
            return "changed", 0
        try:
            return "verified", self._retrying(self._copy_verified, entry, obj)
        except Exception as exc:
            return self._fail_attempt(entry, exc), 0

    def _copy_verified(self, entry: JournalEntry, obj: Any) -> int:
        n = self._put_copy(entry, obj)
        self._crash("after_copy")
        self._check_copy(entry, obj)
        self._crash("after_verify")
        return n

    def _switch_batch(
        self, verified: Sequence[JournalEntry], changed: Sequence[JournalEntry]
    ) -> tuple[list[JournalEntry], list[JournalEntry]]:
        """One transaction: switch the verified rows' objects, close the rows whose object moved on.

        Returns (switched rows, discarded rows); rows that are no longer ours are in neither.
        """
        now = self.clock()
        with self.engine.begin() as conn:
            # Lock our rows first: the switch then cannot race a mover that took one over.
            held = set(
                conn.execute(
                    text(
                        "SELECT id FROM move_journal WHERE id = ANY(CAST(:ids AS bigint[]))"
                        " AND claimed_by = :me AND step = ANY(CAST(:steps AS text[])) FOR UPDATE"
                    ),
                    {
                        "ids": [e.id for e in (*verified, *changed)],
                        "me": self.worker_id,
                        "steps": list(COPY_STEPS),
                    },
                ).scalars()
            )
            moving = [e.id for e in verified if e.id in held]
            rows = (
                conn.execute(
                    _SWITCH_BATCH,
                    {
                        "ids": moving,
                        "me": self.worker_id,
                        "now": now,
                        "until": now + timedelta(seconds=self.settings.lease),
                        "delete_after": now + timedelta(seconds=self.settings.grace_period),
                        "actor": f"mover:{self.worker_id}",
                    },
                ).all()
                if moving
                else []
            )
            switched = [JournalEntry.from_row(r) for r in rows]
            mark_changed(conn, [e.object_id for e in switched])
            gone = held - {e.id for e in switched}
            close(conn, self.worker_id, sorted(gone), steps=COPY_STEPS, now=now, error=_DISCARDED)
        discarded = [e for e in (*verified, *changed) if e.id in gone]
        return switched, discarded

    def _finish_switched(self, items: Sequence[tuple[JournalEntry, int]], cycle: _Cycle) -> None:
        """Release the rows still in their grace period; delete the others' sources in bulk and close them."""
        now = self.clock()
        due: list[tuple[JournalEntry, int]] = []
        waiting: list[tuple[JournalEntry, int]] = []
        for entry, nbytes in items:
            grace = entry.delete_after is not None and entry.delete_after > now
            (waiting if grace else due).append((entry, nbytes))
        if waiting:
            release(self.engine, self.worker_id, [e.id for e, _ in waiting], now=now)
            for entry, nbytes in waiting:
                cycle.finish(entry, "waiting", nbytes)
        by_store: dict[str, list[JournalEntry]] = {}
        # A catalog-row source lost its bytes in the switch transaction: nothing to delete.
        finished = [e for e, _ in due if e.from_store == CATALOG_STORE or e.from_locator is None]
        for entry, _ in due:
            if entry.from_store != CATALOG_STORE and entry.from_locator is not None:
                by_store.setdefault(entry.from_store, []).append(entry)
        tasks = cycle.runner.run(
            (_Task(group, partial(self._delete_sources, name, group)) for name, group in by_store.items()),
            first=True,
        )
        for task in tasks:
            if task.timed_out:
                continue
            if task.error is None:
                finished.extend(task.entries)
            else:
                for entry in task.entries:
                    cycle.finish(entry, self._failed(entry, task.error))
        closed = close(self.engine, self.worker_id, [e.id for e in finished], steps=("switched",), now=now)
        copied = {e.id: n for e, n in due}
        for entry in finished:
            cycle.finish(entry, "moved" if entry.id in closed else "abandoned", copied[entry.id])

    def _delete_sources(self, store: str, entries: Sequence[JournalEntry]) -> None:
        locators = [e.from_locator for e in entries if e.from_locator is not None]
        self._retrying(self._store(store).delete_many, locators)
        for _ in entries:
            self._crash("mid_delete")

    # ---------------------------------------------------------- the watchdog

    def _give_up(self, task: _Task, *, cycle: _Cycle) -> None:
        """The runner abandoned a stalled task: its rows fail their attempt."""
        timeout = self.settings.store_timeout
        rows = ", ".join(str(e.id) for e in task.entries)
        log.warning(
            "mover %s: a store call for journal rows %s made no progress for %.0fs; giving up on it",
            self.worker_id,
            rows,
            timeout,
        )
        if task.closed:
            return
        error = TimeoutError(f"a store call made no progress for {timeout:g}s (store_timeout); abandoned")
        for entry in task.entries:
            cycle.finish(entry, self._failed(entry, error))

    def _failed(self, entry: JournalEntry, exc: Exception) -> str:
        """A failed attempt noticed by the cycle's own thread, which makes no store calls (they
        could hang it): a copy left by a row given up on is collected by ``liquid gc``."""
        return self._fail_attempt(entry, exc, drop_copy=False)

    def _touch(self, ahead: float = 0.0) -> None:
        """Mark progress of the task this thread works on (no-op outside tasks).

        ``ahead``: a pause about to start, which the watchdog must not count as no progress.
        """
        task: _Task | None = getattr(self._local, "task", None)
        if task is not None:
            task.touched = self._monotonic() + ahead

    def _idle(self, seconds: float) -> None:
        """Sleep (retry backoff, the bandwidth limit): a pause, not a stuck store call."""
        self._touch(ahead=seconds)
        self._sleep(seconds)
        self._touch()

    # -------------------------------------------------------------------- steps

    def _work(self, entry: JournalEntry) -> tuple[str, int]:
        """Step one claimed row until it is closed, waits for its grace period, or fails.

        Returns the result and the bytes copied.
        """
        self._crash("after_journal")
        moved = 0
        while True:
            self._touch()
            if self.stopping:
                self._release(entry)
                return "abandoned", 0
            if (
                entry.step == "switched"
                and entry.delete_after is not None
                and entry.delete_after > self.clock()
            ):
                self._release(entry)
                return "waiting", moved
            try:
                entry, result, nbytes = self._retrying(self._step, entry)
            except _LostClaim:
                log.warning("mover %s lost its claim on journal row %d", self.worker_id, entry.id)
                return "abandoned", 0
            except Exception as exc:
                return self._fail_attempt(entry, exc), 0
            moved += nbytes
            if result is not None:
                return result, moved

    def _retrying(self, fn: Callable[..., T], *args: Any) -> T:
        retrying = Retrying(
            stop=stop_after_attempt(self.settings.step_retries),
            wait=wait_exponential(multiplier=0.05, max=2.0),
            retry=retry_if_exception(_transient),
            sleep=self._idle,
            reraise=True,
        )
        return retrying(fn, *args)

    def _step(self, entry: JournalEntry) -> tuple[JournalEntry, str | None, int]:
        """Do the next step; return the updated row, a final result (or None) and bytes copied."""
        if entry.kind == "purge":
            return self._purge(entry)
        if entry.step == "planned":
            return self._copy(entry)
        if entry.step == "copied":
            return self._verify(entry), None, 0
        if entry.step == "verified":
            return self._switch(entry)
        if entry.step == "switched":
            return self._delete_source(entry)
        raise ValueError(f"journal row {entry.id} has unknown step {entry.step!r}")

    def _object(self, conn: Connection, object_id: int, *, inline: bool = False) -> Any:
        cols = (*_OBJECT_COLUMNS, Object.inline_data) if inline else _OBJECT_COLUMNS
        return conn.execute(select(*cols).where(Object.id == object_id)).first()

    def _store(self, name: str | None) -> _Watched:
        store = self._watched.get(name or "")
        if store is None:
            raise StoreError(
                f"store {name!r} is not configured in this mover (have {', '.join(self.stores)})"
            )
        return store

    def _copy(self, entry: JournalEntry) -> tuple[JournalEntry, str | None, int]:
        with db.reading(self.engine) as conn:
            obj = self._object(conn, entry.object_id, inline=entry.from_store == CATALOG_STORE)
        if not _at_source(entry, obj):
            return self._discard(entry, "the object was deleted or changed before the copy")
        n = self._put_copy(entry, obj)
        self._crash("after_copy")
        return self._advance(entry, "planned", "copied"), None, n

    def _put_copy(self, entry: JournalEntry, obj: Any) -> int:
        """Stream the object's stored bytes to the move's ``to_locator``; return the bytes written."""
        dst = self._store(entry.to_store)
        assert entry.to_locator is not None
        source: Iterable[bytes]
        if entry.from_store == CATALOG_STORE:
            if obj.inline_data is None:
                raise IntegrityError(f"object {obj.id} lives in the catalog but its row holds no bytes")
            source = [bytes(obj.inline_data)]
        else:
            assert entry.from_locator is not None
            source = self._store(entry.from_store).open(entry.from_locator)
        n = dst.put(entry.to_locator, self._metered(source), size_hint=obj.stored_size)
        if n != obj.stored_size:
            raise IntegrityError(
                f"copy of object {obj.id} to {entry.to_store}:{entry.to_locator} wrote {n} bytes,"
                f" the catalog says {obj.stored_size}"
            )
        return n

    def _metered(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.bucket.take(len(chunk))
            yield chunk
        # The store has every byte but has not committed them yet.
        self._crash("mid_copy")

    def _verify(self, entry: JournalEntry) -> JournalEntry:
        with db.reading(self.engine) as conn:
            obj = self._object(conn, entry.object_id)
        try:
            self._check_copy(entry, obj)
        except IntegrityError:
            # Copy again next attempt rather than verifying the same bad bytes until giving up.
            self._advance(entry, "copied", "planned")
            raise
        self._crash("after_verify")
        return self._advance(entry, "copied", "verified")

    def _check_copy(self, entry: JournalEntry, obj: Any) -> None:
        """Read the destination back; IntegrityError unless size and SHA-256 match the catalog."""
        assert entry.to_locator is not None
        raw = self._store(entry.to_store).open(entry.to_locator)
        plain = _decompress(raw) if obj.compression == "zstd" else raw
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in plain:
                digest.update(chunk)
                size += len(chunk)
        except IntegrityError:
            size = -1
        if size != obj.size or digest.hexdigest() != obj.sha256:
            raise IntegrityError(
                f"object {obj.id}: copy at {entry.to_store}:{entry.to_locator} does not match the catalog"
                f" (size {size} vs {obj.size}, sha256 {digest.hexdigest()[:16]}… vs {obj.sha256[:16]}…)"
            )

    def _switch(self, entry: JournalEntry) -> tuple[JournalEntry, str | None, int]:
        now = self.clock()
        with self.engine.begin() as conn:
            obj = conn.execute(
                text(
                    "UPDATE objects SET home_tier = :to_tier, home_store = :to_store, locator = :to_locator,"
                    " home_since = :now, inline_data = NULL"
                    " WHERE id = :oid AND state = 'live' AND home_store = :from_store"
                    " AND locator IS NOT DISTINCT FROM :from_locator"
                    " RETURNING id, tenant_id, namespace, key, version, size, stored_size, trace_id,"
                    " correlation_id, execution_id"
                ),
                {
                    "to_tier": entry.to_tier,
                    "to_store": entry.to_store,
                    "to_locator": entry.to_locator,
                    "now": now,
                    "oid": entry.object_id,
                    "from_store": entry.from_store,
                    "from_locator": entry.from_locator,
                },
            ).first()
            if obj is not None:
                mark_changed(conn, [entry.object_id])
                updated = self._advance(
                    entry,
                    "verified",
                    "switched",
                    conn=conn,
                    delete_after=now + timedelta(seconds=self.settings.grace_period),
                )
                events.append(conn, _moved_event(entry, obj, now=now, actor=f"mover:{self.worker_id}"))
        if obj is None:
            return self._discard(entry, "the object was deleted or changed during the move")
        self._crash("after_switch")
        return updated, None, 0

    def _delete_source(self, entry: JournalEntry) -> tuple[JournalEntry, str | None, int]:
        # A catalog-row source lost its bytes in the switch transaction: nothing to delete.
        if entry.from_store != CATALOG_STORE and entry.from_locator is not None:
            self._store(entry.from_store).delete(entry.from_locator)
        self._crash("mid_delete")
        return self._advance(entry, "switched", "done"), "moved", 0

    def _discard(self, entry: JournalEntry, why: str) -> tuple[JournalEntry, str | None, int]:
        """Close a move whose object went away or moved: drop our copy, keep everything else."""
        # Close the row first: only its owner may delete the copy (a mover whose lease ran out
        # must not delete bytes the new owner has switched the object to).
        closed = self._advance(entry, entry.step, "done", error=why)
        self._drop_copy(entry)
        log.info("journal row %d: %s; destination discarded", entry.id, why)
        return closed, "skipped", 0

    def _drop_copy(self, entry: JournalEntry) -> None:
        """Delete the move's destination bytes unless the object lives there (never delete a home)."""
        if entry.to_locator is None:
            return
        with db.reading(self.engine) as conn:
            home = conn.execute(
                text("SELECT 1 FROM objects WHERE id = :id AND home_store = :s AND locator = :l"),
                {"id": entry.object_id, "s": entry.to_store, "l": entry.to_locator},
            ).first()
        if home is None:
            self._store(entry.to_store).delete(entry.to_locator)

    def _purge(self, entry: JournalEntry) -> tuple[JournalEntry, str | None, int]:
        now = self.clock()
        with db.reading(self.engine) as conn:
            obj = self._object(conn, entry.object_id)
        if obj is None or obj.state == "purged":
            return self._advance(entry, entry.step, "done", error="already purged"), "skipped", 0
        if obj.state == "live":
            raise IntegrityError(f"object {obj.id} is live again; refusing to purge it")
        if obj.legal_hold:
            raise PermissionError(f"object {obj.id} is under legal hold; its purge is blocked")
        ref = ResultRef(obj.tenant_id, obj.namespace, obj.key, obj.version)
        if self.hot is not None:
            self.hot.kill([ref])
        with self.engine.begin() as conn:
            purge(
                conn,
                obj,
                store=self._store,
                now=now,
                reason="retention",
                rule=entry.reason,
                actor=f"mover:{self.worker_id}",
                journal_id=entry.id,
            )
            updated = self._advance(entry, entry.step, "done", conn=conn)
        return updated, "purged", 0

    # ---------------------------------------------------------------- journal

    def _advance(
        self,
        entry: JournalEntry,
        old: str,
        new: str,
        *,
        conn: Connection | None = None,
        delete_after: datetime | None = None,
        error: str | None = None,
    ) -> JournalEntry:
        """Compare-and-set the row's step (ours, this attempt's, still at ``old``) and renew the lease.

        The ``attempts`` check fences a thread the watchdog gave up on: the failed attempt
        counted, so whatever the abandoned thread tries to record afterwards is refused.
        """
        now = self.clock()
        params = {
            "id": entry.id,
            "me": self.worker_id,
            "attempts": entry.attempts,
            "old": old,
            "new": new,
            "now": now,
            "until": now + timedelta(seconds=self.settings.lease),
            "delete_after": delete_after,
            "error": error,
            "closing": new in ("done", "failed"),
        }
        stmt = text(
            "UPDATE move_journal SET step = :new, updated_at = :now,"
            " claimed_until = CASE WHEN :closing THEN NULL ELSE CAST(:until AS timestamptz) END,"
            " claimed_by = CASE WHEN :closing THEN NULL ELSE claimed_by END,"
            " delete_after = coalesce(CAST(:delete_after AS timestamptz), delete_after),"
            " error = coalesce(CAST(:error AS text), error)"
            " WHERE id = :id AND claimed_by = :me AND attempts = :attempts AND step = :old RETURNING *"
        )
        if conn is not None:
            row = conn.execute(stmt, params).first()
        else:
            with self.engine.begin() as c:
                row = c.execute(stmt, params).first()
        if row is None:
            raise _LostClaim(entry.id)
        return JournalEntry.from_row(row)

    def _release(self, entry: JournalEntry) -> None:
        release(self.engine, self.worker_id, [entry.id], now=self.clock())

    def _fail_attempt(self, entry: JournalEntry, exc: Exception, *, drop_copy: bool = True) -> str:
        """Record a failed attempt; give up (``failed``) after ``max_attempts``. Returns the result.

        ``drop_copy``: when giving up on a move that never switched, delete its destination
        bytes now (else ``liquid gc`` collects them).
        """
        now = self.clock()
        attempts = entry.attempts + 1
        message = f"{type(exc).__name__}: {exc}"[:2000]
        if attempts < self.settings.max_attempts:
            delay = min(self.settings.backoff * 2 ** (attempts - 1), self.settings.backoff_max)
            with self.engine.begin() as conn:
                kept = conn.execute(
                    text(
                        "UPDATE move_journal SET attempts = :attempts, error = :error, claimed_by = NULL,"
                        " claimed_until = :until, updated_at = :now"
                        " WHERE id = :id AND claimed_by = :me AND attempts = :seen"
                    ),
                    {
                        "attempts": attempts,
                        "seen": entry.attempts,
                        "error": message,
                        "until": now + timedelta(seconds=delay),
                        "now": now,
                        "id": entry.id,
                        "me": self.worker_id,
                    },
                ).rowcount
            if not kept:
                return "abandoned"
            log.warning(
                "journal row %d (%s) attempt %d failed, retrying in %.0fs: %s",
                entry.id,
                entry.kind,
                attempts,
                delay,
                message,
            )
            return "retry"
        # Give up: close the row (if still ours), then drop the copy of a move that never switched.
        with self.engine.begin() as conn:
            row = conn.execute(
                text(
                    "UPDATE move_journal SET step = 'failed', attempts = :attempts, error = :error,"
                    " claimed_by = NULL, claimed_until = NULL, updated_at = :now"
                    " WHERE id = :id AND claimed_by = :me AND attempts = :seen RETURNING id"
                ),
                {
                    "attempts": attempts,
                    "seen": entry.attempts,
                    "error": message,
                    "now": now,
                    "id": entry.id,
                    "me": self.worker_id,
                },
            ).first()
            if row is not None:
                # The planner assumed the move happened: it looks at the object again.
                mark_changed(conn, [entry.object_id])
                failed = events.MOVE_FAILED if entry.kind == "move" else events.PURGE_FAILED
                conn.execute(
                    text(
                        events.insert_from(
                            "objects",
                            failed,
                            at=":now",
                            actor=":actor",
                            from_tier=":from_tier",
                            data={
                                "journal_id": "CAST(:journal_id AS bigint)",
                                "step": "CAST(:step AS text)",
                                "attempts": "CAST(:attempts AS int)",
                                "error": "CAST(:error AS text)",
                                "from_store": "CAST(:from_store AS text)",
                                "to_store": "CAST(:to_store AS text)",
                                "reason": "CAST(:reason AS text)",
                            },
                            **{**events.OBJECT_EXPRS, "tier": "CAST(:to_tier AS text)"},
                        )
                        + " WHERE id = :oid"
                    ),
                    {
                        "now": now,
                        "actor": f"mover:{self.worker_id}",
                        "oid": entry.object_id,
                        "journal_id": entry.id,
                        "step": entry.step,
                        "attempts": attempts,
                        "error": message,
                        "from_tier": entry.from_tier,
                        "from_store": entry.from_store,
                        "to_tier": entry.to_tier,
                        "to_store": entry.to_store,
                        "reason": entry.reason,
                    },
                )
        if row is None:
            return "abandoned"
        if drop_copy and entry.kind == "move" and entry.step in COPY_STEPS:
            try:
                self._drop_copy(entry)
            except Exception as cleanup:
                log.warning("could not remove the copy of failed move %d (gc will): %s", entry.id, cleanup)
        log.error(
            "journal row %d (%s of object %d, %s:%s → %s:%s) failed after %d attempts at step %s: %s",
            entry.id,
            entry.kind,
            entry.object_id,
            entry.from_tier,
            entry.from_store,
            entry.to_tier,
            entry.to_store,
            attempts,
            entry.step,
            message,
        )
        return "failed"


def _moved_event(entry: JournalEntry, obj: Any, *, now: datetime, actor: str) -> events.NewEvent:
    return events.NewEvent.about(
        events.MOVED,
        obj,
        at=now,
        actor=actor,
        tier=entry.to_tier,
        from_tier=entry.from_tier,
        bytes=obj.stored_size,
        data={
            "journal_id": entry.id,
            "from_store": entry.from_store,
            "from_locator": entry.from_locator,
            "to_store": entry.to_store,
            "to_locator": entry.to_locator,
            "size": obj.size,
            "reason": entry.reason,
        },
    )
