"""The exporter: the event log into ClickHouse, in batches past a watermark, exactly once.

**Order and the watermark.** Events are read in ``(txid, id)`` order, and only those whose
transaction is older than every transaction still running (``txid <
pg_snapshot_xmin(pg_current_snapshot())``). Ids alone would not do: a transaction that
took id 7 may commit after one that took id 9, and a watermark moved past 9 would skip 7
forever. Every transaction below the horizon has ended, so the set of events below it is
final, and any later event sorts after it. ``event_exports`` keeps each sink's watermark
(the last ``(txid, id)`` it holds). The cost: one long transaction holds the export back
(the lag metric shows it), never loses an event.

**Exactly once, as ClickHouse sees it.** Choice: insert deduplication tokens (not
``ReplacingMergeTree`` with ``FINAL`` queries), because the daily rollups are materialized
views fed by each inserted block — a duplicate row that a later merge would collapse is
still counted twice by the view, while a block dropped by its token is dropped in the
view's table too (``deduplicate_blocks_in_dependent_materialized_views``). Protocol, per batch:

1. choose the batch (at most ``batch_size`` events past the watermark, below the horizon)
   and record its end in ``event_exports.pending_*`` — committed before the insert;
2. insert it with the token ``<sink>:<start>-<end>``;
3. move the watermark to the end and clear ``pending`` in one transaction.

A crash between 2 and 3 leaves ``pending`` set: the next run re-reads exactly that range
(the set is final, so the same rows), inserts it with the same token, and ClickHouse drops
it as a duplicate (``non_replicated_deduplication_window`` keeps the last 1000 tokens; only
this one batch is ever replayed). ``tests/events/test_export.py`` kills the exporter there
and counts event ids.

**Reading** (:mod:`liquid.events.reader`): each batch is an ordered index range of the
partitions, never a sort of the backlog, streamed over one connection per run. Batch N+1
is read on a second thread while batch N is inserted; its horizon is read when its read
starts, so what it holds is final all the same. Only reads run there: the three steps
above run in the calling thread, one batch at a time, and steps 1 and 3 are
compare-and-set on the watermark, so a second exporter on the same sink stops the first
(:class:`ExportConflict`) instead of interleaving with it.

**Backpressure.** An insert that fails is retried with exponential backoff
(``retries``); when the sink stays down the run stops with :class:`SinkUnavailable`, the
watermark stays, the events stay in PostgreSQL (retention never prunes what a sink has
not exported), and the next run resumes. The daemon reports the lag as
``liquid_event_export_lag_events`` and ``..._seconds``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
from sqlalchemy import Engine, text
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from liquid.catalog.fastpath import conninfo
from liquid.errors import Conflict
from liquid.events.reader import PostgresEventReader
from liquid.events.sinks import EventSink, SinkUnavailable

log = logging.getLogger(__name__)


class ExportConflict(Conflict):
    """The sink's watermark moved under a run: a second exporter writes to the same sink."""


_HORIZON = "SELECT (pg_snapshot_xmin(pg_current_snapshot()))::text::bigint"


@dataclass
class ExportReport:
    batches: int = 0
    events: int = 0
    #: Batches written again after an interrupted run (ClickHouse dropped them as duplicates).
    replayed: int = 0
    seconds: float = 0.0
    watermark: tuple[int, int] = (0, 0)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "events": self.events,
            "replayed": self.replayed,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.rate),
            "watermark": list(self.watermark),
            "errors": self.errors,
        }

    def __repr__(self) -> str:
        return f"ExportReport(events={self.events}, batches={self.batches}, replayed={self.replayed})"


@dataclass(frozen=True)
class Lag:
    """How far a sink is behind the log: events not exported, and the age of the oldest of them."""

    events: int
    seconds: float


class EventExporter:
    """Exports the event log into one sink. Everything it uses comes in through the constructor.

    Args:
        engine: the catalog.
        sink: where to write (see :mod:`liquid.events.sinks`).
        batch_size: events per insert.
        retries: insert attempts per batch before the run gives up (backoff doubles from 0.5 s).
        clock: current UTC time (for the lag).
        crash: test hook, called with ``"after_insert"`` between the insert and the watermark.
    """

    def __init__(
        self,
        engine: Engine,
        sink: EventSink,
        *,
        batch_size: int = 50_000,
        retries: int = 5,
        backoff: float = 0.5,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        crash: Callable[[str], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.engine = engine
        self.sink = sink
        self.batch_size = batch_size
        self.retries = retries
        self.backoff = backoff
        self.clock = clock
        self._crash = crash or (lambda _point: None)
        self.reader = PostgresEventReader(conninfo(engine.url.render_as_string(hide_password=False)))
        self.exported = 0

    def __repr__(self) -> str:
        return f"EventExporter(sink={self.sink!r}, batch_size={self.batch_size}, exported={self.exported})"

    # ----------------------------------------------------------------- state

    def watermark(self) -> tuple[int, int, tuple[int, int] | None]:
        """(txid, id) exported so far, and the end of the pending batch if one is in flight."""
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO event_exports (sink, txid, event_id, exported) VALUES (:s, 0, 0, 0)"
                    " ON CONFLICT (sink) DO NOTHING"
                ),
                {"s": self.sink.name},
            )
            row = conn.execute(
                text(
                    "SELECT txid, event_id, pending_txid, pending_event_id FROM event_exports WHERE sink = :s"
                ),
                {"s": self.sink.name},
            ).one()
        pending = (int(row.pending_txid), int(row.pending_event_id)) if row.pending_txid is not None else None
        return int(row.txid), int(row.event_id), pending

    def start_at_head(self) -> tuple[int, int]:
        """Skip everything already in the log: a new sink that needs only what comes next.

        Only for a sink that has exported nothing yet (its watermark is at the start).
        """
        t, i, pending = self.watermark()
        if (t, i) != (0, 0) or pending is not None:
            raise ValueError(f"sink {self.sink.name} has exported already; its watermark is ({t}, {i})")
        with self.engine.begin() as conn:
            head = conn.execute(
                text("SELECT txid, id FROM events ORDER BY txid DESC, id DESC LIMIT 1")
            ).first()
            end = (int(head.txid), int(head.id)) if head is not None else (0, 0)
            conn.execute(
                text("UPDATE event_exports SET txid = :t, event_id = :i WHERE sink = :s"),
                {"t": end[0], "i": end[1], "s": self.sink.name},
            )
        return end

    def lag(self) -> Lag:
        """Events not yet in the sink, and how old the oldest of them is."""
        t, i, _ = self.watermark()
        with self.engine.connect() as conn:
            row = conn.execute(
                text("SELECT count(*) AS n, min(at) AS oldest FROM events WHERE (txid, id) > (:t, :i)"),
                {"t": t, "i": i},
            ).one()
        age = (self.clock() - row.oldest).total_seconds() if row.oldest is not None else 0.0
        return Lag(int(row.n), max(0.0, age))

    # ------------------------------------------------------------------ runs

    def run_once(
        self, *, max_batches: int | None = None, progress: Callable[[int], None] | None = None
    ) -> ExportReport:
        """Export batches until caught up with the horizon (or ``max_batches``).

        ``progress`` is called with the number of events of each batch written.

        Raises:
            SinkUnavailable: the sink refused a batch ``retries`` times (nothing is lost: the
                watermark stays, the next run resumes).
        """
        report = ExportReport()
        started = time.perf_counter()
        # One reader thread: batch N+1 comes out of PostgreSQL while batch N goes into the sink.
        # Only reads run there; every step of the protocol runs here, in order.
        ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liquid-export-read")
        try:
            t, i, pending = self.watermark()
            report.watermark = (t, i)
            if pending is not None:
                batch = ahead.submit(self.reader.between, (t, i), pending).result()
                self._write(report, (t, i), pending, batch, replay=True, progress=progress)
                t, i = pending
            if max_batches is not None and report.batches >= max_batches:
                return report
            following = ahead.submit(self._next_batch, t, i)
            while max_batches is None or report.batches < max_batches:
                batch, end = following.result()
                if end is None:
                    break
                self._set_pending((t, i), end)
                if max_batches is None or report.batches + 1 < max_batches:
                    following = ahead.submit(self._next_batch, *end)
                self._write(report, (t, i), end, batch, replay=False, progress=progress)
                t, i = end
        finally:
            ahead.shutdown(wait=True, cancel_futures=True)
            # One reader connection per run: kept across its batches, never left open between runs.
            self.reader.close()
            report.seconds = time.perf_counter() - started
        return report

    def _write(
        self,
        report: ExportReport,
        start: tuple[int, int],
        end: tuple[int, int],
        batch: pa.Table,
        *,
        replay: bool,
        progress: Callable[[int], None] | None,
    ) -> None:
        """Steps 2 and 3 of the protocol: insert with the range's token, then move the watermark."""
        token = f"{self.sink.name}:{start[0]}.{start[1]}-{end[0]}.{end[1]}"
        self._insert(batch, token)
        self._crash("after_insert")
        self._commit(end, batch.num_rows)
        report.batches += 1
        report.events += batch.num_rows
        report.replayed += int(replay)
        report.watermark = end
        self.exported += batch.num_rows
        if progress is not None:
            progress(batch.num_rows)

    def _next_batch(self, t: int, i: int) -> tuple[pa.Table, tuple[int, int] | None]:
        with self.engine.connect() as conn:
            horizon = int(conn.execute(text(_HORIZON)).scalar_one())
        batch = self.reader.after(t, i, horizon=horizon, limit=self.batch_size)
        if batch.num_rows == 0:
            return batch, None
        last = batch.num_rows - 1
        return batch, (int(batch.column("txid")[last].as_py()), int(batch.column("id")[last].as_py()))

    def _set_pending(self, start: tuple[int, int], end: tuple[int, int]) -> None:
        """Step 1: record the batch's end, if the watermark is still where this run left it."""
        with self.engine.begin() as conn:
            moved = conn.execute(
                text(
                    "UPDATE event_exports SET pending_txid = :t, pending_event_id = :i, updated_at = now()"
                    " WHERE sink = :s AND txid = :t0 AND event_id = :i0 AND pending_txid IS NULL"
                ),
                {"t": end[0], "i": end[1], "s": self.sink.name, "t0": start[0], "i0": start[1]},
            ).rowcount
        if moved != 1:
            raise ExportConflict(
                f"the watermark of {self.sink.name} moved away from {start} during this run: another"
                " exporter writes to the same sink; run one exporter per sink (the daemon's leader)"
            )

    def _commit(self, end: tuple[int, int], n: int) -> None:
        """Step 3: the watermark to the end of the batch, pending cleared, in one transaction."""
        with self.engine.begin() as conn:
            moved = conn.execute(
                text(
                    "UPDATE event_exports SET txid = :t, event_id = :i, pending_txid = NULL,"
                    " pending_event_id = NULL, exported = exported + :n, updated_at = now()"
                    " WHERE sink = :s AND pending_txid = :t AND pending_event_id = :i"
                ),
                {"t": end[0], "i": end[1], "n": n, "s": self.sink.name},
            ).rowcount
        if moved != 1:
            raise ExportConflict(
                f"the pending batch of {self.sink.name} ending at {end} was taken over during this run:"
                " another exporter writes to the same sink; run one exporter per sink (the daemon's leader)"
            )

    def _insert(self, batch: pa.Table, token: str) -> None:
        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(Exception),
                stop=stop_after_attempt(self.retries),
                wait=wait_exponential(multiplier=self.backoff, max=30),
                reraise=True,
            ):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        log.warning(
                            "event export to %s: attempt %d of %d",
                            self.sink.name,
                            attempt.retry_state.attempt_number,
                            self.retries,
                        )
                    self.sink.insert_events(batch, token=token)
        except Exception as exc:
            raise SinkUnavailable(
                f"event export to {self.sink.name} failed {self.retries} times ({exc}); the batch"
                " stays pending and the next run writes it again"
            ) from exc


def exported_ids(sink: EventSink) -> list[int]:
    """Every event id in the sink, sorted (for checks: duplicates show as repeats)."""
    table = sink.query(f"SELECT id FROM {sink.database}.events ORDER BY id")
    return [int(v) for v in table.column(0).to_pylist()] if table.num_columns else []
