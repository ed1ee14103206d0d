"""The hot window's share adapts: hill climbing on the byte hit ratio, as Caffeine's W-TinyLFU does.

The hot tier (:class:`~liquid.tiering.ranked.RankedTier`) keeps a **window**: a share of its
byte budget where every missed read gets a copy at once and the oldest leave in order to meet
the ranked part, where rank (value per byte, from the tracker's decayed rate) decides. A large
window behaves like LRU (recency: right when popularity drifts fast), a small one like the
ranked part alone (frequency: right when it is steady). Which share serves a workload best
depends on how fast its popular set moves against how densely it is read, which no constant
knows.

:class:`WindowClimber` finds it the way Caffeine does (Einziger et al., "Adaptive Software
Cache Management", Middleware 2018): every **sample period** it compares the hot tier's byte
hit ratio with the previous period's and moves the window's share one step in the direction
that improved it (reverses when it got worse); the step shrinks by ``decay`` each period, so
the share settles, and grows back to its full size when the hit ratio jumps by ``restart`` or
more (the workload changed).

Everything is counted in **reads, not seconds**: a sample period is ``period`` hot tiers'
worth of bytes read (the tier's own turnover), the reads come from the counts the daemon
flushes (each object's ``hits`` as the cycle sees it) and the misses from the miss feed. The
same request sequence packed into 3 days or spread over 30 gives the same periods and the same
steps (:class:`~liquid.tiering.readclock.ReadClock` counts the reads). The policy's rules
(``promoteAbove``, ``minResidency``, budgets) are untouched: the window holds only objects
whose policy has a hot rule, and whoever leaves it is judged by them.

The climber runs in the planner's passes (once per cycle), never on the read path.
"""

from __future__ import annotations

from typing import Any


class WindowClimber:
    """Tunes the hot window's share by hill climbing; see the module docstring.

    Args:
        share: the window's share of the hot budget to start from.
        enabled: False keeps ``share`` and counts nothing.
        period: bytes read per sample period, in multiples of the hot budget.
        step: the first step, and the step after a restart (share of the budget).
        decay: the step's factor after each period without a restart.
        restart: a change of the byte hit ratio between periods that restarts the step.
        low: the least share.
        high: the largest share.
    """

    def __init__(
        self,
        share: float,
        *,
        enabled: bool = True,
        period: float = 2.0,
        step: float = 0.0625,
        decay: float = 0.98,
        restart: float = 0.05,
        low: float = 0.0,
        high: float = 1.0,
    ) -> None:
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"window share bounds must hold 0 <= low <= high <= 1, got {low}, {high}")
        self.enabled = enabled
        self.share = min(max(share, low), high)
        self.period = period
        self.first_step = step
        self.step = step
        self.decay = decay
        self.restart = restart
        self.low, self.high = low, high
        #: Bytes read and bytes missed in the current sample period.
        self.read_bytes = 0.0
        self.miss_bytes = 0.0
        #: The last finished period's byte hit ratio (None before the first).
        self.previous: float | None = None
        self.periods = 0
        #: True when the share changed since the state was last saved (see TieringEngine).
        self.changed = False

    def __repr__(self) -> str:
        prev = "none" if self.previous is None else f"{self.previous:.3f}"
        return (
            f"WindowClimber(share={self.share:.3f}, step={self.step:+.4f}, periods={self.periods}, "
            f"previous_bhr={prev}, {'on' if self.enabled else 'off'})"
        )

    def read(self, nbytes: float) -> None:
        """Bytes read that the cycle was told about (new hits times sizes, see ReadClock)."""
        if self.enabled:
            self.read_bytes += nbytes

    def missed(self, size: int) -> None:
        """A read of ``size`` bytes the hot tier did not serve (the miss feed)."""
        if self.enabled:
            self.miss_bytes += size

    def reset(self) -> None:
        """Start a new sample period and forget the last (after a rebuild: counts start over)."""
        self.read_bytes = self.miss_bytes = 0.0
        self.previous = None

    def end_cycle(self, capacity: float) -> bool:
        """Close the sample period if ``period`` budgets' worth of bytes were read; True if the
        share moved. ``capacity`` is the hot tier's byte budget."""
        if not self.enabled or capacity <= 0 or self.read_bytes < self.period * capacity:
            return False
        ratio = max(0.0, 1.0 - self.miss_bytes / self.read_bytes)
        self.read_bytes = self.miss_bytes = 0.0
        self.periods += 1
        previous, self.previous = self.previous, ratio
        if previous is None:
            return False  # the first period is the baseline
        delta = ratio - previous
        amount = self.step if delta >= 0 else -self.step
        if abs(delta) >= self.restart:
            self.step = self.first_step if amount >= 0 else -self.first_step
        else:
            self.step = self.decay * amount
        share = min(max(self.share + amount, self.low), self.high)
        moved = share != self.share
        self.share = share
        self.changed |= moved
        return moved

    def restore(self, share: float) -> None:
        """Resume with the share a previous leader reached (its step starts over)."""
        self.share = min(max(share, self.low), self.high)

    def to_json(self) -> dict[str, Any]:
        """What ``explain`` shows and the daemon saves beside the hot ledger."""
        return {
            "window_share": round(self.share, 4),
            "step": round(self.step, 5),
            "periods": self.periods,
            "byte_hit_ratio": None if self.previous is None else round(self.previous, 4),
            "period_budgets": self.period,
        }
