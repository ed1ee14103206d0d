"""The placement replay drives the production planner and counts hits right (hand-computed trace)."""

from __future__ import annotations

import numpy as np
import pytest

import liquid.access
import liquid.tiering.planner
from benchmarks.placement import replay as replay_module
from benchmarks.placement.replay import replay
from benchmarks.placement.traces import KiB, Trace, next_access

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
    return replay(
        trace(), hot_bytes=hot_bytes, cycle=5, policy_text=POLICY, admit_on_read=False, keep_outcomes=True
    )


def test_unbounded_hot_tier_hits_everything_read_before_the_last_cycle() -> None:
    res = run(10**9)
    # Cycle 1 caches A, B, C; D (first read at 9) after cycle 2. Misses: 0-4 and 9.
    assert [i for i, hit in enumerate(res.outcomes) if not hit] == [0, 1, 2, 3, 4, 9]
    assert (res.requests, res.hits, res.cycles) == (20, 14, 4)
    assert (res.bytes, res.hit_bytes) == (58 * KiB, 40 * KiB)
    assert res.ohr == pytest.approx(0.7) and res.bhr == pytest.approx(40 / 58)


def test_a_5_kib_budget_keeps_the_best_value_per_byte() -> None:
    # By reads/hour (the hot tier ranks by reads alone): A and B (2 reads each) fit in 5 KiB;
    # C (1 read) does not, and never outranks B; D (8 KiB) is larger than the budget.
    res = run(5 * KiB)
    assert [i for i, hit in enumerate(res.outcomes) if hit] == [5, 6, 8, 11, 12, 14, 15, 18, 19]
    assert (res.hits, res.hit_bytes) == (9, 12 * KiB)


def test_the_replay_runs_the_production_tracker_and_planner(monkeypatch: pytest.MonkeyPatch) -> None:
    assert replay_module.Planner is liquid.tiering.planner.Planner
    assert replay_module.PlacementState is liquid.tiering.planner.PlacementState
    assert replay_module.DecayedCounts is liquid.access.DecayedCounts
    calls = {"plan": 0, "fold": 0, "settle": 0}
    plan, fold, settle = (
        liquid.tiering.planner.Planner.plan,
        liquid.access.fold,
        liquid.tiering.planner.HotTier.settle,
    )

    def counted(name, real):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(liquid.tiering.planner.Planner, "plan", counted("plan", plan))
    monkeypatch.setattr(liquid.tiering.planner.HotTier, "settle", counted("settle", settle))
    monkeypatch.setattr(liquid.access, "fold", counted("fold", fold))
    res = run(10**9)
    assert calls["plan"] == 1 + res.cycles  # one empty plan creates the state, then every 5 requests
    assert calls["settle"] >= res.cycles
    assert calls["fold"] == 20 - len(SIZES)  # every read after an object's first folds into its score


def test_next_access_for_belady() -> None:
    assert next_access(np.array([1, 2, 1, 1, 3])).tolist() == [2, -1, 3, -1, -1]


def test_an_offer_too_big_to_displace_members_does_not_block_smaller_ones() -> None:
    hot = liquid.tiering.planner.HotTier(10, hysteresis=1.0)
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
    res = replay(tr, hot_bytes=1 * KiB, cycle=4, policy_text=POLICY, keep_outcomes=True)
    assert res.outcomes == [False, True, True, True, False, True, True]
