"""The mover: executes journaled moves and purges, crash-safe, several movers per catalog.

One :meth:`Mover.run_once` is poll → claim (lease) → run (bounded threads) → finish:

1. **claim** up to ``max_moves_per_cycle`` open journal rows with ``FOR UPDATE SKIP
   LOCKED`` and a lease (:func:`liquid.tiering.journal.claim`); another mover skips them.
2. **step** each row through the protocol of DESIGN.md, invariant 2, one journal
   update per step, each a compare-and-set on ``claimed_by`` (a mover that lost its
   lease stops instead of racing the new owner):

   * ``planned → copied``: stream the *stored* bytes (zstd stays zstd) from the source
     (the ``catalog`` pseudo-store means ``objects.inline_data``) to the destination
     under the pre-assigned ``to_locator``; a repeat overwrites its own earlier attempt.
   * ``copied → verified``: read the destination back, decompress if the object is
     zstd, and compare size and SHA-256 with the catalog. A mismatch sends the row back
     to ``planned``.
   * ``verified → switched``: one transaction sets the object's home with a
     compare-and-set on its state and old home; the row gets ``delete_after = now +
     grace_period`` and an ``object.moved`` event. If the object was deleted or changed
     meanwhile, the destination bytes are deleted and the row is done.
   * ``switched → done`` (once ``delete_after`` passed): delete the source bytes. A
     reader that looked the old home up just before the switch still finds it for the
     whole grace period.
   * purge rows (tombstoned by :func:`liquid.tiering.journal.enqueue_purge`): delete the hot copy
     and home bytes, mark the object ``purged``, append an ``object.purged`` receipt.

3. **finish**: transient store errors are retried in the step (tenacity, exponential
   backoff); a step that still fails releases the row with ``claimed_until = now +
   backoff·2^attempts`` as a not-before time; after ``max_attempts`` the row is
   ``failed``, its destination bytes are removed, and an ``object.move_failed`` event
   and an ERROR log report it. The object stays readable where it was.

Every step is idempotent, so a mover killed anywhere loses nothing: the next mover (or
this one restarted, via :meth:`Mover.recover`) resumes the row at its recorded step.
Bytes copied by a mover that died before its journal update are overwritten by the
retry; bytes of rows that end ``failed`` are collected by ``liquid gc``.

For fault-injection tests, ``LIQUID_MOVER_CRASH_AT=<point>[:<n>]`` SIGKILLs the process
the ``n``-th time (default 1st) it reaches a point in :data:`CRASH_POINTS`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
import sqlalchemy.exc
from sqlalchemy import Connection, Engine, text
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from liquid.catalog.changes import mark_changed
from liquid.config import CATALOG_STORE, MoverSettings
from liquid.errors import IntegrityError, StoreError
from liquid.hotcache import HotCache
from liquid.refs import ResultRef
from liquid.service import LiquidService, _decompress
from liquid.stores.base import Store
from liquid.tiering.journal import EVENT_COLUMNS, JournalEntry, claim, release_stale

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: Where ``LIQUID_MOVER_CRASH_AT`` can kill the process, in protocol order.
CRASH_POINTS = ("after_journal", "mid_copy", "after_copy", "after_verify", "after_switch", "mid_delete")
CRASH_ENV = "LIQUID_MOVER_CRASH_AT"


class _LostClaim(Exception):
    """The row is no longer ours (lease expired and someone else took it, or it closed)."""


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


class Mover:
    """Executes journal rows for one worker. See the module docstring for the protocol.

    Args:
        service: the core service (or a :class:`~liquid.bootstrap.Runtime`): its engine,
            stores, hot cache and settings are used.
        worker_id: this mover's claim name; unique per process (default host:pid:random).
        clock: current UTC time; tests inject a fake one. Defaults to the service's clock.
        settings: mover settings; default ``service.settings.mover``.
        stores: override the durable stores by name (tests wrap them to inject faults).
        sleep / monotonic: used by backoff and the bandwidth limit (real time).
    """

    def __init__(
        self,
        service: Any,
        *,
        worker_id: str | None = None,
        clock: Clock | None = None,
        settings: MoverSettings | None = None,
        stores: Mapping[str, Store] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        svc: LiquidService = getattr(service, "service", service)
        self.service = svc
        self.engine: Engine = svc.engine
        self.stores: dict[str, Store] = dict(svc.stores if stores is None else stores)
        self.hot: HotCache | None = svc.hot
        self.clock: Clock = clock or svc.clock
        self.settings = settings or svc.settings.mover
        self.worker_id = worker_id or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._sleep = sleep
        self.bucket = TokenBucket(self.settings.bytes_per_second, monotonic=monotonic, sleep=sleep)
        self._stop = threading.Event()
        self._crash = _CrashHook(os.environ.get(CRASH_ENV))
        #: Totals over this mover's life, for metrics.
        self.totals: Counter[str] = Counter()
        self.cycles = 0

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

    def recover(self) -> int:
        """Free rows this worker id held before a restart and rows whose lease expired.

        Run at start. Returns how many rows were freed (each counts one interrupted attempt).
        """
        freed = release_stale(self.engine, self.worker_id, self.clock())
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
        entries = claim(self.engine, self.worker_id, cap, self.settings.lease, self.clock())
        report.claimed = len(entries)
        if len(entries) == 1 or self.settings.concurrency == 1:
            for entry in entries:
                self._work(entry, report)
        elif entries:
            with ThreadPoolExecutor(
                max_workers=min(self.settings.concurrency, len(entries)), thread_name_prefix="liquid-mover"
            ) as pool:
                for fut in [pool.submit(self._work, entry, report) for entry in entries]:
                    fut.result()
        report.seconds = time.perf_counter() - started
        self.cycles += 1
        for key, n in report.counts.items():
            self.totals[key[3]] += n
        return report

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

    # -------------------------------------------------------------------- steps

    def _work(self, entry: JournalEntry, report: MoveReport) -> None:
        """Step one claimed row until it is closed, waits for its grace period, or fails."""
        self._crash("after_journal")
        moved = 0
        while True:
            if self.stopping:
                self._release(entry)
                report.add(entry, "abandoned")
                return
            if (
                entry.step == "switched"
                and entry.delete_after is not None
                and entry.delete_after > self.clock()
            ):
                self._release(entry)
                report.add(entry, "waiting", moved)
                return
            try:
                entry, result, nbytes = self._retrying(self._step, entry)
            except _LostClaim:
                log.warning("mover %s lost its claim on journal row %d", self.worker_id, entry.id)
                report.add(entry, "abandoned")
                return
            except Exception as exc:
                report.add(entry, self._fail_attempt(entry, exc))
                return
            moved += nbytes
            if result is not None:
                report.add(entry, result, moved)
                return

    def _retrying(
        self, fn: Callable[[JournalEntry], tuple[JournalEntry, str | None, int]], entry: JournalEntry
    ) -> tuple[JournalEntry, str | None, int]:
        retrying = Retrying(
            stop=stop_after_attempt(self.settings.step_retries),
            wait=wait_exponential(multiplier=0.05, max=2.0),
            retry=retry_if_exception(_transient),
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(fn, entry)

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
        cols = (
            "id, tenant_id, namespace, key, version, state, size, stored_size, sha256, compression,"
            " legal_hold, home_tier, home_store, locator, deleted_at"
        )
        if inline:
            cols += ", inline_data"
        return conn.execute(text(f"SELECT {cols} FROM objects WHERE id = :id"), {"id": object_id}).first()

    def _store(self, name: str | None) -> Store:
        store = self.stores.get(name or "")
        if store is None:
            raise StoreError(
                f"store {name!r} is not configured in this mover (have {', '.join(self.stores)})"
            )
        return store

    def _copy(self, entry: JournalEntry) -> tuple[JournalEntry, str | None, int]:
        with self.engine.connect() as conn:
            obj = self._object(conn, entry.object_id, inline=entry.from_store == CATALOG_STORE)
        if (
            obj is None
            or obj.state != "live"
            or (obj.home_store, obj.locator)
            != (
                entry.from_store,
                entry.from_locator,
            )
        ):
            return self._discard(entry, "the object was deleted or changed before the copy")
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
        self._crash("after_copy")
        return self._advance(entry, "planned", "copied"), None, n

    def _metered(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.bucket.take(len(chunk))
            yield chunk
        # The store has every byte but has not committed them yet.
        self._crash("mid_copy")

    def _verify(self, entry: JournalEntry) -> JournalEntry:
        with self.engine.connect() as conn:
            obj = self._object(conn, entry.object_id)
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
            # Copy again next attempt rather than verifying the same bad bytes until giving up.
            self._advance(entry, "copied", "planned")
            raise IntegrityError(
                f"object {obj.id}: copy at {entry.to_store}:{entry.to_locator} does not match the catalog"
                f" (size {size} vs {obj.size}, sha256 {digest.hexdigest()[:16]}… vs {obj.sha256[:16]}…)"
            )
        self._crash("after_verify")
        return self._advance(entry, "copied", "verified")

    def _switch(self, entry: JournalEntry) -> tuple[JournalEntry, str | None, int]:
        now = self.clock()
        with self.engine.begin() as conn:
            obj = conn.execute(
                text(
                    "UPDATE objects SET home_tier = :to_tier, home_store = :to_store, locator = :to_locator,"
                    " home_since = :now, inline_data = NULL"
                    " WHERE id = :oid AND state = 'live' AND home_store = :from_store"
                    " AND locator IS NOT DISTINCT FROM :from_locator"
                    " RETURNING id, tenant_id, namespace, key, version, size, stored_size"
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
                conn.execute(
                    text(
                        EVENT_COLUMNS
                        + " VALUES (:now, :tenant, 'object.moved', :oid, :ns, :key, :version, :actor,"
                        " CAST(:data AS jsonb))"
                    ),
                    {
                        "now": now,
                        "tenant": obj.tenant_id,
                        "oid": obj.id,
                        "ns": obj.namespace,
                        "key": obj.key,
                        "version": obj.version,
                        "actor": f"mover:{self.worker_id}",
                        "data": _json(
                            {
                                "journal_id": entry.id,
                                "from_tier": entry.from_tier,
                                "from_store": entry.from_store,
                                "from_locator": entry.from_locator,
                                "to_tier": entry.to_tier,
                                "to_store": entry.to_store,
                                "to_locator": entry.to_locator,
                                "size": obj.size,
                                "stored_size": obj.stored_size,
                                "reason": entry.reason,
                            }
                        ),
                    },
                )
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
        with self.engine.connect() as conn:
            home = conn.execute(
                text("SELECT 1 FROM objects WHERE id = :id AND home_store = :s AND locator = :l"),
                {"id": entry.object_id, "s": entry.to_store, "l": entry.to_locator},
            ).first()
        if home is None:
            self._store(entry.to_store).delete(entry.to_locator)

    def _purge(self, entry: JournalEntry) -> tuple[JournalEntry, str | None, int]:
        now = self.clock()
        with self.engine.connect() as conn:
            obj = self._object(conn, entry.object_id)
        if obj is None or obj.state == "purged":
            return self._advance(entry, entry.step, "done", error="already purged"), "skipped", 0
        if obj.state == "live":
            raise IntegrityError(f"object {obj.id} is live again; refusing to purge it")
        if obj.legal_hold:
            raise PermissionError(f"object {obj.id} is under legal hold; its purge is blocked")
        ref = ResultRef(obj.tenant_id, obj.namespace, obj.key, obj.version)
        if self.hot is not None:
            self.hot.delete(ref)
        if obj.home_store != CATALOG_STORE and obj.locator is not None:
            self._store(obj.home_store).delete(obj.locator)
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE objects SET state = 'purged', purged_at = :now, inline_data = NULL"
                    " WHERE id = :oid"
                ),
                {"now": now, "oid": obj.id},
            )
            record_purge(
                conn,
                obj,
                now=now,
                reason="retention",
                rule=entry.reason,
                actor=f"mover:{self.worker_id}",
                extra={"journal_id": entry.id},
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
        """Compare-and-set the row's step (ours, still at ``old``) and renew the lease."""
        now = self.clock()
        params = {
            "id": entry.id,
            "me": self.worker_id,
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
            " WHERE id = :id AND claimed_by = :me AND step = :old RETURNING *"
        )
        if conn is not None:
            row = conn.execute(stmt, params).first()
        else:
            with self.engine.begin() as c:
                row = c.execute(stmt, params).first()
        if row is None:
            raise _LostClaim(entry.id)
        return JournalEntry.from_row(row)

    def _release(self, entry: JournalEntry, *, not_before: datetime | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE move_journal SET claimed_by = NULL, claimed_until = :until, updated_at = :now"
                    " WHERE id = :id AND claimed_by = :me"
                ),
                {"id": entry.id, "me": self.worker_id, "until": not_before, "now": self.clock()},
            )

    def _fail_attempt(self, entry: JournalEntry, exc: Exception) -> str:
        """Record a failed attempt; give up (``failed``) after ``max_attempts``. Returns the result."""
        now = self.clock()
        attempts = entry.attempts + 1
        message = f"{type(exc).__name__}: {exc}"[:2000]
        if attempts < self.settings.max_attempts:
            delay = min(self.settings.backoff * 2 ** (attempts - 1), self.settings.backoff_max)
            with self.engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE move_journal SET attempts = :attempts, error = :error, claimed_by = NULL,"
                        " claimed_until = :until, updated_at = :now WHERE id = :id AND claimed_by = :me"
                    ),
                    {
                        "attempts": attempts,
                        "error": message,
                        "until": now + timedelta(seconds=delay),
                        "now": now,
                        "id": entry.id,
                        "me": self.worker_id,
                    },
                )
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
                    " WHERE id = :id AND claimed_by = :me RETURNING id"
                ),
                {"attempts": attempts, "error": message, "now": now, "id": entry.id, "me": self.worker_id},
            ).first()
            if row is not None:
                # The planner assumed the move happened: it looks at the object again.
                mark_changed(conn, [entry.object_id])
                conn.execute(
                    text(
                        EVENT_COLUMNS
                        + " SELECT :now, o.tenant_id, :kind, o.id, o.namespace, o.key, o.version, :actor,"
                        " CAST(:data AS jsonb) FROM objects o WHERE o.id = :oid"
                    ),
                    {
                        "now": now,
                        "kind": f"object.{entry.kind}_failed",
                        "actor": f"mover:{self.worker_id}",
                        "oid": entry.object_id,
                        "data": _json(
                            {
                                "journal_id": entry.id,
                                "step": entry.step,
                                "attempts": attempts,
                                "error": message,
                                "from_tier": entry.from_tier,
                                "from_store": entry.from_store,
                                "to_tier": entry.to_tier,
                                "to_store": entry.to_store,
                                "reason": entry.reason,
                            }
                        ),
                    },
                )
        if row is None:
            return "abandoned"
        if entry.kind == "move" and entry.step in ("planned", "copied", "verified"):
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


def record_purge(
    conn: Connection,
    obj: Any,
    *,
    now: datetime,
    reason: str,
    rule: str | None,
    actor: str | None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Append an ``object.purged`` deletion receipt: what (ref, size, sha256), where, when, which rule."""
    conn.execute(
        text(
            EVENT_COLUMNS + " VALUES (:now, :tenant, 'object.purged', :oid, :ns, :key, :version, :actor,"
            " CAST(:data AS jsonb))"
        ),
        {
            "now": now,
            "tenant": obj.tenant_id,
            "oid": obj.id,
            "ns": obj.namespace,
            "key": obj.key,
            "version": obj.version,
            "actor": actor,
            "data": _json(
                {
                    "tier": obj.home_tier,
                    "store": obj.home_store,
                    "locator": obj.locator,
                    "size": obj.stored_size,
                    "sha256": obj.sha256,
                    "reason": reason,
                    "rule": rule,
                    "tombstoned_at": obj.deleted_at.isoformat() if obj.deleted_at else None,
                    "purged_at": now.isoformat(),
                    **(extra or {}),
                }
            ),
        },
    )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
