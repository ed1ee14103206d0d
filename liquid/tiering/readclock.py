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

Which ``H`` serves best still depends on the traffic: a short one follows a popular set that
drifts, a long one keeps a stable one through the noise of one-off reads (2 budgets lost 1.5
points of byte hit ratio to the wall-clock rank on the scan trace's steady Zipf part, 4 budgets
lost as much where popularity drifts fast; benchmarks/results/placement-readclock.md). With
``planner.read_adaptive`` :class:`ReadHalfLife` chooses it online, among ``read_half_life``
times ``2^j`` for ``j`` in ``-3..3`` (1/4 to 16 budgets from the default 2) or the tracker's own
wall-clock rank, by the miniature
simulations of :mod:`liquid.tiering.adaptive`: a hashed sample of objects ranked under every
candidate, each in a tier the sample's share of the budget that admits as the real one does
(its admission window, ``planner.hot_window``, included), the real tier ranking with the one
whose (decayed) byte hit ratio is best. The simulations read the same clock as the real tier:
only the half-life differs between them.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from typing import Any

from liquid.tiering.adaptive import LN2, AdaptiveHalfLife

#: Candidate read-clock half-lives as multiples of ``read_half_life``: 1/8 to 8, every doubling
#: (each candidate is a simulation run every cycle), and ∞: no decay on the read clock, the
#: tracker's own wall-clock rank instead (see ReadHalfLife).
READ_FACTORS: tuple[float, ...] = (*(float(2.0**j) for j in range(-3, 4)), math.inf)


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


class ReadHalfLife(AdaptiveHalfLife):
    """Chooses the read clock's half-life (in budgets read) by miniature simulations.

    The score of an object is ``log(count) + V(last read) · ln 2 / H`` with ``V`` the read
    clock's reading (the caller passes it as ``t_last``); the count does not depend on ``H``.
    The last candidate, ``H = ∞``, is the tracker's wall-clock rank, ``log(count) + T(last
    read) · ln 2 / H0`` (``T`` in epoch seconds, passed as ``span``; ``H0`` the tracker's
    half-life): where the read clock serves no better (a trace whose popular set is steady and
    whose bursts the tracker's correlation period already folds), the simulations keep it.
    See the module docstring; the machinery is :class:`AdaptiveHalfLife`'s.

    Args:
        base: the configured half-life (``planner.read_half_life``), where it starts.
        tracker: the tracker's half-life ``H0`` in seconds (the ``∞`` candidate's).
        sample, window, margin, hysteresis, enabled: as :class:`AdaptiveHalfLife`'s.
    """

    EXACT = False
    #: Its first choice waits for two budgets, as it was tuned: with the wall-clock rank's quarter
    #: its grid's mean fell from 0.5372 to 0.5369 and scan at 5% lost 0.3 points (it starts at
    #: ``read_half_life``, already a short memory, not at the tracker's).
    WARMUP = 2.0

    def __init__(
        self,
        base: float,
        *,
        tracker: float = 3 * 86400.0,
        sample: float = 0.125,
        window: float = 20.0,
        margin: float = 0.01,
        hysteresis: float = 1.25,
        enabled: bool = True,
    ) -> None:
        self.tracker = tracker
        super().__init__(
            base,
            factors=READ_FACTORS,
            sticky=(1.0,),  # tuned with the operator's hysteresis alone
            sample=sample,
            window=window,
            margin=margin,
            hysteresis=hysteresis,
            enabled=enabled,
        )

    def __repr__(self) -> str:
        return (
            f"ReadHalfLife(half_life={self.half_life:.2f} budgets, sampled={len(self._seen)}, "
            f"switches={self.switches}, {'on' if self.enabled else 'off'})"
        )

    def score(
        self, count: float, t_last: float, half_life: float | None = None, span: float | None = None
    ) -> float:
        """The forward-decayed log score of an object read ``count`` (decayed) times, last when
        the read clock read ``t_last`` budgets and the wall clock ``span`` epoch seconds (used
        only by the ``∞`` candidate, the tracker's rank)."""
        h = half_life if half_life is not None else self.half_life
        if math.isinf(h):
            return math.log(max(count, 1e-12)) + (span or 0.0) * LN2 / self.tracker
        return math.log(max(count, 1e-12)) + t_last * LN2 / h

    def rank(self, oid: int, base: float, count: float, t_last: float, span: float | None = None) -> float:
        """As :meth:`AdaptiveHalfLife.rank`; ``span`` is the last read's epoch second here."""
        return super().rank(oid, base, count, t_last, 0.0 if span is None else span)

    def restore(self, half_life: float, hysteresis: float | None = None) -> None:
        """Resume with a half-life chosen before a restart (``∞``: the tracker's rank); the
        hysteresis is always the operator's here."""
        if math.isinf(half_life):
            self.current = len(self.candidates) - 1
        else:
            finite = [k for k, h in enumerate(self.candidates) if math.isfinite(h)]
            self.current = min(finite, key=lambda k: abs(math.log(self.candidates[k] / half_life)))

    def to_json(self) -> dict[str, Any]:
        """What ``explain`` and the daemon's metrics show (half-lives in budgets read)."""
        # JSON has no infinity: the tracker's rank is named instead.
        return {
            "half_life_budgets": _budgets(self.half_life),
            "configured_half_life_budgets": self.base,
            "candidates_budgets": [_budgets(h) for h in self.candidates],
            "byte_hit_ratio": [round(r, 4) for r in self.ratios()],
            "sampled_objects": len(self._seen),
            "switches": self.switches,
            "enabled": self.enabled,
        }


def _budgets(h: float) -> float | str:
    return h if math.isfinite(h) else TRACKER


#: How the ``∞`` candidate (the tracker's wall-clock rank) is named in saved state and ``explain``.
TRACKER = "tracker"
