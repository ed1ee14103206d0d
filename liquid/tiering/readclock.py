"""Time counted in reads: the hot tier's own clock, so the same reads rank the same at any density.

The tracker decays read counts in wall-clock time (``accessHalfLife``), which is what the
policy's rules (``promoteAbove``, ages, residency) are written in. But how fast the hot tier
turns over depends on how densely it is read: a 3-day half-life is a few hundred reads on a
quiet deployment and millions on a busy one, so a wall-clock half-life ranks the same request
sequence differently when it is packed into 3 days or spread over 30.

:class:`ReadClock` measures time as **hot budgets of bytes re-read**: it advances by the bytes
of the reads the planner is told about (the new hits each cycle's rows carry, the counts the
daemon flushes), divided by the hot tier's byte budget, but only of **re-reads**: a read counts
as far as its object still stands on this clock (its reads, halved every half-life, capped at
one), and an object's first read counts once it is read again while that read still stands.
So a scan of objects read once (or read long ago) does not age the objects read before it by
many half-lives while the scanned ones look fresh; a new hot set, read again soon, moves the
clock as any other. Its checkpoints (wall-clock time →
reads so far, one per cycle) turn an object's last read time into a position on this clock,
interpolated within a cycle (reads are taken as evenly spread between two cycles) and
extrapolated at the last cycle's pace after it. The hot rank is then (``Planner._hot_rank``)::

    log(saving per byte) + log(count at the last read) + V(last read) · ln 2 / H

with ``H`` (``planner.read_half_life``) in budgets read: an object loses half its standing
each time the tier could have been filled ``H`` times over by what was read since, whatever
the wall-clock time that took. Ranks stay forward-decayed (comparable across cycles without
re-ranking), and the clock lives only in the daemon's planner (a rebuild starts it again).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from typing import Any


class ReadClock:
    """A clock that advances by bytes read, in hot budgets; see the module docstring.

    Args:
        half_life: the hot rank's half-life, in budgets read.
        tracked: objects whose read count is remembered (the least recently seen are forgotten).
        keep: checkpoints kept (older reads extrapolate at the oldest kept pace).
    """

    def __init__(self, *, half_life: float = 1.0, tracked: int = 1 << 20, keep: int = 4096) -> None:
        if half_life <= 0:
            raise ValueError(f"planner.read_half_life must be positive, got {half_life}")
        self.half_life = half_life
        self.tracked = tracked
        self.keep = keep
        #: Budgets read so far.
        self.now = 0.0
        self._t: list[float] = []  # checkpoints: epoch seconds, ascending
        self._v: list[float] = []  # budgets read by then
        # object id -> (reads counted so far, reading at its last read, its standing then, the
        # share of its last read not yet counted on the clock)
        self._seen: OrderedDict[int, tuple[int, float, float, float]] = OrderedDict()

    def __repr__(self) -> str:
        return (
            f"ReadClock(now={self.now:.2f} budgets, half_life={self.half_life}, checkpoints={len(self._t)})"
        )

    def reset(self, t: float) -> None:
        """Start again at ``t`` (a rebuild: counts start over)."""
        self.now = 0.0
        self._t, self._v = [t], [0.0]
        self._seen.clear()

    def new_reads(self, oid: int, hits: int, created: float) -> int:
        """Reads of ``oid`` not counted yet, given the ``hits`` counted so far by the tracker."""
        return self.read(oid, hits, created)[0]

    def read(self, oid: int, hits: int, created: float) -> tuple[int, float]:
        """The new reads of ``oid`` (given the ``hits`` the tracker has counted so far), and how
        many reads' bytes advance the clock.

        An object this clock has not seen counts all its hits when it was created since the
        last checkpoint, else one (its earlier reads came before the clock's memory). Only
        re-reads advance the clock: a read counts as far as the object was still standing
        (its reads, halved every half-life on this clock, capped at one), and a first read
        counts later, when the object is read again while that read still stands. A scan of
        objects read once, or read long ago, thus leaves the clock where it was, while a new
        hot set, read again soon, moves it as before.
        """
        seen = self._seen.pop(oid, None)
        if seen is None:
            new = hits if not self._t or created >= self._t[-1] else min(hits, 1)
            standing, owed = 0.0, 0.0
        else:
            new = hits - seen[0]
            standing = seen[2] * 2.0 ** (-(self.now - seen[1]) / self.half_life)
            owed = seen[3]
        new = max(new, 0)
        if not new:
            self._seen[oid] = seen if seen is not None else (hits, self.now, 0.0, 0.0)
            return 0, 0.0
        first = min(standing, 1.0)
        # What is owed by the last read is paid as far as that read still stands.
        again = owed * first + first + (new - 1)
        owed = 0.0 if new > 1 else 1.0 - first
        if new > 1:
            again += 1.0 - first  # re-read within the cycle: its first read counts now
        self._seen[oid] = (hits, self.now, standing + new, owed)
        if len(self._seen) > self.tracked:
            self._seen.popitem(last=False)
        return new, again

    def forget(self, oid: int) -> None:
        self._seen.pop(oid, None)

    def advance(self, t: float, budgets: float) -> None:
        """``budgets`` hot budgets of bytes were read up to epoch second ``t``."""
        self.now += budgets
        if self._t and t <= self._t[-1]:
            self._v[-1] = self.now
            return
        self._t.append(t)
        self._v.append(self.now)
        if len(self._t) > self.keep:
            del self._t[0], self._v[0]

    def at(self, t: float) -> float:
        """The clock's reading at epoch second ``t``."""
        ts, vs = self._t, self._v
        if not ts:
            return 0.0
        i = bisect.bisect_right(ts, t)
        if i == 0:  # before the oldest checkpoint: at the oldest pace
            return vs[0] - (ts[0] - t) * self._pace(0)
        if i == len(ts):  # after the last: at the last pace
            return vs[-1] + (t - ts[-1]) * self._pace(len(ts) - 2)
        t0, t1, v0, v1 = ts[i - 1], ts[i], vs[i - 1], vs[i]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def _pace(self, i: int) -> float:
        """Budgets per second between checkpoints ``i`` and ``i + 1`` (0 when there is one)."""
        if i < 0 or i + 1 >= len(self._t):
            return 0.0
        dt = self._t[i + 1] - self._t[i]
        return (self._v[i + 1] - self._v[i]) / dt if dt > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """What ``explain`` shows: the reading at the last cycle, its time and pace, the half-life."""
        last = len(self._t) - 1
        return {
            "budgets_read": round(self.now, 3),
            "at": self._t[last] if last >= 0 else None,
            "pace_budgets_per_s": self._pace(last - 1),
            "half_life_budgets": self.half_life,
        }

    def since(self, saved: dict[str, Any], t: float) -> float | None:
        """Budgets read between epoch second ``t`` and the reading in ``saved`` (a :meth:`to_json`
        of the leader's clock), at its last pace before it; None without a reading."""
        at = saved.get("at")
        if at is None:
            return None
        return max(0.0, (float(at) - t) * float(saved.get("pace_budgets_per_s") or 0.0))
