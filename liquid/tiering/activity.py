"""What the tiering daemon did lately, as one line for people watching ``liquid up``.

:func:`activity` reads the event log since a moment (moves per from→to with bytes, purges,
writes and reads) and the move queue now; the caller adds what the daemon skipped and why
(from its last apply report), since a skipped move leaves no event. Example::

    12:04:30  last 1m: 3 moves (warm→cold 2 · 1.2 MiB, cold→warm 1 · 40 KiB), 1 purge, 12 writes, 40 reads;
              queue: 2 waiting, 1 in flight; skipped: 1 (no store configured for tier archive)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, text

from liquid.tiering.journal import queue_counts
from liquid.units import format_size

_SQL = text(
    "SELECT kind, from_tier, tier, count(*) AS n, coalesce(sum(bytes), 0)::bigint AS b,"
    " coalesce(sum(count), 0)::bigint AS reads FROM events"
    " WHERE at >= :since AND at < :until"
    " AND kind IN ('object.moved', 'object.purged', 'object.created', 'object.read')"
    " GROUP BY kind, from_tier, tier"
)


@dataclass
class Activity:
    """Counts over ``[since, until)`` and the queue at ``until``."""

    since: datetime
    until: datetime
    moves: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    purges: int = 0
    purged_bytes: int = 0
    writes: int = 0
    reads: int = 0
    waiting: int = 0
    in_flight: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def __repr__(self) -> str:
        return f"Activity({self.line()!r})"

    @property
    def quiet(self) -> bool:
        """Nothing happened and nothing is waiting: not worth a line."""
        return not (
            self.moves
            or self.purges
            or self.writes
            or self.reads
            or self.waiting
            or self.in_flight
            or self.skipped
        )

    def line(self) -> str:
        n_moves = sum(n for n, _ in self.moves.values())
        parts = [f"{n_moves} move{'s' * (n_moves != 1)}"]
        if self.moves:
            parts[0] += (
                " ("
                + ", ".join(
                    f"{f}→{t} {n} · {format_size(b)}" for (f, t), (n, b) in sorted(self.moves.items())
                )
                + ")"
            )
        parts.append(f"{self.purges} purge{'s' * (self.purges != 1)}")
        parts.append(f"{self.writes} writes, {self.reads} reads")
        span = (self.until - self.since).total_seconds()
        head = f"{self.until:%H:%M:%S}  last {f'{span:.0f}s' if span < 60 else f'{span / 60:.0f}m'}: "
        tail = f"; queue: {self.waiting} waiting, {self.in_flight} in flight"
        if self.skipped:
            reasons = ", ".join(f"{n} ({why})" for why, n in self.skipped.most_common(3))
            tail += f"; skipped: {reasons}"
        return head + ", ".join(parts) + tail


def activity(engine: Engine, since: datetime, until: datetime, *, skipped: Iterable[str] = ()) -> Activity:
    """What the event log and the move queue say about ``[since, until)``; ``skipped``: reasons."""
    out = Activity(since, until, skipped=Counter(skipped))
    with engine.connect() as conn:
        for r in conn.execute(_SQL, {"since": since, "until": until}):
            if r.kind == "object.moved":
                out.moves[(r.from_tier, r.tier)] = (int(r.n), int(r.b))
            elif r.kind == "object.purged":
                out.purges += int(r.n)
                out.purged_bytes += int(r.b)
            elif r.kind == "object.created":
                out.writes += int(r.n)
            else:
                out.reads += int(r.reads)
    for key, n in queue_counts(engine).items():
        if key.endswith(":planned"):
            out.waiting += n
        else:
            out.in_flight += n
    return out
