"""The event log's monthly partitions: created ahead of time, dropped once exported and old.

Rows leave the log in one way only: a whole month's partition is dropped when its month
ended more than the retention window ago **and** every row in it is at or below the
watermark of every configured sink (nothing unexported is ever pruned). Dropping a
partition fires no row trigger, so the append-only trigger stays on for everything else.
A row whose month has no partition (a clock far off) lands in ``events_default``, which
is never pruned; :func:`ensure_partitions` then leaves that month alone rather than fail.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

_NAME = re.compile(r"^events_(\d{4})_(\d{2})$")


def _month(d: date | datetime) -> date:
    return date(d.year, d.month, 1)


def _next(m: date) -> date:
    return date(m.year + m.month // 12, m.month % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"events_{month.year:04d}_{month.month:02d}"


def partitions(conn: Connection) -> list[date]:
    """Months that have a partition, oldest first."""
    names = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'"
        )
    ).scalars()
    months = []
    for name in names:
        m = _NAME.match(name)
        if m:
            months.append(date(int(m[1]), int(m[2]), 1))
    return sorted(months)


def ensure_partitions(engine: Engine, now: datetime, *, ahead: int = 2) -> list[str]:
    """Create the partitions of this month and the next ``ahead``; returns those created."""
    made: list[str] = []
    month = _month(now.astimezone(UTC))
    with engine.begin() as conn:
        have = set(partitions(conn))
        for _ in range(ahead + 1):
            if month not in have:
                lo = datetime(month.year, month.month, 1, tzinfo=UTC)
                hi = datetime(_next(month).year, _next(month).month, 1, tzinfo=UTC)
                stray = conn.execute(
                    text("SELECT EXISTS (SELECT 1 FROM events_default WHERE at >= :lo AND at < :hi)"),
                    {"lo": lo, "hi": hi},
                ).scalar()
                if stray:
                    log.warning("events_default holds rows of %s: no partition made for that month", month)
                else:
                    name = partition_name(month)
                    conn.execute(
                        text(
                            f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF events'
                            f" FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
                        )
                    )
                    made.append(name)
            month = _next(month)
    return made


@dataclass
class PruneReport:
    dropped: list[str] = field(default_factory=list)
    rows: int = 0
    #: Partitions old enough but holding events a sink has not exported yet.
    waiting: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"PruneReport(dropped={self.dropped}, rows={self.rows}, waiting={self.waiting})"


def prune(engine: Engine, now: datetime, *, retention: timedelta, sinks: Sequence[str]) -> PruneReport:
    """Drop every monthly partition that ended before ``now - retention`` and all ``sinks`` exported.

    With no sinks configured nothing counts as exported, and nothing is pruned.
    """
    report = PruneReport()
    if not sinks:
        return report
    cutoff = now.astimezone(UTC) - retention
    with engine.begin() as conn:
        marks = conn.execute(
            text("SELECT sink, txid, event_id FROM event_exports WHERE sink = ANY(:sinks)"),
            {"sinks": list(sinks)},
        ).all()
        if len(marks) < len(set(sinks)):
            return report  # a sink that never exported holds everything back
        for month in partitions(conn):
            end = _next(month)
            if datetime(end.year, end.month, 1, tzinfo=UTC) > cutoff:
                continue
            name = partition_name(month)
            behind = any(
                conn.execute(
                    text(f'SELECT EXISTS (SELECT 1 FROM "{name}" WHERE (txid, id) > (:t, :i))'),
                    {"t": m.txid, "i": m.event_id},
                ).scalar()
                for m in marks
            )
            if behind:
                report.waiting.append(name)
                continue
            rows = int(conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one())
            conn.execute(text(f'ALTER TABLE events DETACH PARTITION "{name}"'))
            conn.execute(text(f'DROP TABLE "{name}"'))
            report.dropped.append(name)
            report.rows += rows
            log.info("pruned %s (%d exported events older than %s)", name, rows, cutoff.date())
    return report
