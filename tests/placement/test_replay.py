"""The placement replay drives the tiering engine and counts hits right (hand-computed traces)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.placement import replay as replay_module
from benchmarks.placement.replay import replay
from benchmarks.placement.traces import KiB, Trace, next_access
from liquid.hotcache import entry_size
from liquid.tiering.ranked import Cap, RankedTier

# Every object read at all is a hot candidate; only the hot budget decides.
POLICY = """
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: all-hot}
spec:
  rules:
    - {name: hot, tier: hot, promoteAbove: 0.001/h, demoteBelow: 0.0005/h}
    - {name: cold, tier: cold}
  accessHalfLife: 3d
"""

SIZES = {"A": 1 * KiB, "B": 2 * KiB, "C": 4 * KiB, "D": 8 * KiB}
#             cycle 1  cycle 2  cycle 3  cycle 4
TRACE = list("ABACB" + "AACBD" + "DABCA" + "BDCAA")


def trace() -> Trace:
    ids = np.array([ord(k) - ord("A") for k in TRACE], dtype=np.int64)
    sizes = np.array([SIZES[k] for k in TRACE], dtype=np.int64)
    return Trace("hand", "20 requests", np.arange(20, dtype=np.float64) + 1000.0, ids, sizes)


def run(hot_bytes: int) -> replay_module.ReplayResult:
    return replay(trace(), hot_bytes=hot_bytes, cycle=5, policy_text=POLICY, keep_outcomes=True)


def test_unbounded_hot_tier_hits_everything_but_first_reads() -> None:
    res = run(10**9)
    # A miss is admitted by the next admission pass (1 s later: the next request), so each
    # object misses once, on its first read: A at 0, B at 1, C at 3, D at 9.
    assert [i for i, hit in enumerate(res.outcomes) if not hit] == [0, 1, 3, 9]
    assert (res.requests, res.hits) == (20, 16)
    assert (res.bytes, res.hit_bytes) == (58 * KiB, 43 * KiB)
    assert res.ohr == pytest.approx(0.8) and res.bhr == pytest.approx(43 / 58)


def test_a_5_kib_budget_keeps_the_best_value_per_byte() -> None:
    # Copies count their bytes in Redis (62 bytes of header each). A and B are admitted into
    # free room after their first reads. C (4 KiB) never fits beside them: to get in it would
    # have to displace both, and A is read more often than C throughout; D (8 KiB) is larger
    # than the budget.
    res = run(5 * KiB)
    assert [i for i, hit in enumerate(res.outcomes) if hit] == [2, 4, 5, 6, 8, 11, 12, 14, 15, 18, 19]
    assert (res.hits, res.hit_bytes) == (11, 15 * KiB)


def test_next_access_for_belady() -> None:
    assert next_access(np.array([1, 2, 1, 1, 3])).tolist() == [2, -1, 3, -1, -1]


def test_an_offer_too_big_to_displace_members_does_not_block_smaller_ones() -> None:
    hot = RankedTier([Cap("cap", 10)], hysteresis=1.0)
    hot.offer(1, 6, rank=10.0)
    assert hot.settle() == ([1], [])
    hot.offer(2, 10, rank=5.0)  # would have to evict member 1, which outranks it
    hot.offer(3, 4, rank=1.0)  # fits in the room left
    assert hot.settle() == ([3], [])
    assert hot.members == {1: 6, 3: 4}


def test_a_read_path_admission_competes_with_cycle_ranks_on_one_clock() -> None:
    # One object fits. A is read 4 times and ranked by the cycle; 30 days (10 half-lives) later
    # B's single read outranks A's decayed four, so the miss admits B at once and B's next two
    # reads hit. (Ranks from the read path and from the cycle must share one time base.)
    day = 86400.0
    ids = np.array([0, 0, 0, 0, 1, 1, 1], dtype=np.int64)
    t = np.array([0, 1, 2, 3, 30 * day, 30 * day + 1, 30 * day + 2]) + 1000.0
    tr = Trace("two", "7 requests", t, ids, np.full(7, 1 * KiB, dtype=np.int64))
    one = entry_size(KiB, "application/octet-stream")  # one copy, header included
    res = replay(tr, hot_bytes=one, cycle=4, policy_text=POLICY, keep_outcomes=True)
    assert res.outcomes == [False, True, True, True, False, True, True]
