"""The hot tier: keep-while-room, the hot objective, and the durable home of a hot object."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from liquid.config import Settings
from liquid.policy.loader import load_policy_text
from liquid.tiering.explain import explain
from liquid.tiering.planner import Planner
from liquid.tiering.ranked import Cap, RankedTier
from liquid.tiering.rows import ColumnBatch
from liquid.tiering.values import PlannerSettings, ValueModel
from tests.planner.test_planner import NOW, full, row

HOT_POLICY = """
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: docs}
spec:
  rules:
    - {name: hot, tier: hot, promoteAbove: 1/h, demoteBelow: 0.5/h}
    - {name: cold, tier: cold, demoteAfter: 30d}
    - {name: archive, tier: archive}
---
apiVersion: liquid/v1
kind: Budget
metadata: {name: cap}
spec:
  tiers:
    hot: {maxBytes: 1000}
"""


def test_a_released_member_stays_until_room_is_needed_and_goes_first() -> None:
    hot = RankedTier([Cap("cap", 1200)], hysteresis=4.0)  # members rank + ln 4
    hot.offer(1, 400, rank=5.0)
    hot.offer(2, 400, rank=6.0)
    assert hot.settle() == ([2, 1], [])
    hot.release(2)  # the policy no longer wants 2: it keeps its copy while there is room
    hot.offer(3, 200, rank=5.0)
    assert hot.settle() == ([3], [])
    assert set(hot.members) == {1, 2, 3}
    # 4 needs 200 more bytes: released 2 (rank 6, no bonus) goes, though its own rank is the
    # highest; members 1 and 3 rank 5 + ln 4 = 6.39 > 6.2.
    hot.offer(4, 400, rank=6.2)
    assert hot.settle() == ([4], [2])
    assert set(hot.members) == {1, 3, 4}
    # An evicted released member is forgotten, not left waiting: room later does not bring it back.
    assert hot.withdraw(1)
    assert hot.settle() == ([], [])
    assert set(hot.members) == {3, 4}


def test_a_released_member_offered_again_gets_its_bonus_back() -> None:
    hot = RankedTier([Cap("cap", 800)], hysteresis=2.0)
    hot.offer(1, 400, rank=5.0)
    hot.offer(2, 400, rank=5.0)
    hot.settle()
    hot.release(1)
    hot.offer(1, 400, rank=5.0)  # read again: the policy wants it hot once more
    hot.offer(3, 400, rank=5.5)  # outranks neither 5 + ln 2
    assert hot.settle() == ([], [])
    assert set(hot.members) == {1, 2}


@pytest.mark.parametrize(("keep", "evicted"), [(True, False), (False, True)])
def test_keep_while_room_decides_whether_a_cooled_member_is_evicted(keep: bool, evicted: bool) -> None:
    planner = Planner(Settings(planner={"keep_while_room": keep}))
    policies = load_policy_text(HOT_POLICY)
    state, first = planner.rebuild(policies, [ColumnBatch.of_rows([row(1, home="cold", rate=5.0)])], NOW)
    assert [c.action for c in first.changes] == ["hot-admit"]
    # Read rarely since: its rate fell below demoteBelow.
    later = planner.cycle(state, [row(1, home="cold", rate=0.1)], [], NOW + timedelta(hours=1))
    assert ([c.action for c in later.changes] == ["hot-evict"]) is evicted
    assert (1 in state.hot.members) is not evicted


def test_the_bytes_objective_ranks_by_reads_alone_and_time_favours_small_objects() -> None:
    at = NOW.timestamp()
    by_bytes = ValueModel(Settings())
    by_time = ValueModel(Settings(planner={"hot_objective": "time"}))
    prices = by_bytes.prices(load_policy_text(HOT_POLICY), None)
    small, large = 4096, 64 * 2**20
    rank = by_bytes.rank
    assert rank(small, 2.0, at, prices) == pytest.approx(rank(large, 2.0, at, prices))
    assert rank(small, 2.0, at, prices) - rank(small, 1.0, at, prices) == pytest.approx(math.log(2))
    # Time saved per byte: a 4 KiB read saves mostly first-byte latency, so per byte it is worth far more.
    assert by_time.rank(small, 1.0, at, prices) > by_time.rank(large, 1.0, at, prices) + 3


def test_settings_reject_an_unknown_objective() -> None:
    with pytest.raises(ValueError, match="hot_objective"):
        Settings(planner={"hot_objective": "speed"})
    assert PlannerSettings.from_settings(Settings()).hot_objective == "bytes"


def test_an_archived_object_that_turns_hot_also_brings_its_home_back_to_cold() -> None:
    planner = Planner(Settings())
    policies = load_policy_text(HOT_POLICY)

    def rows() -> list:
        # Read since it was archived, and often enough for a copy: the copy serves the reads, and
        # its home returns to cold (restoreOnAccess), so hot misses stop paying retrieval.
        busy = row(
            1, home="archive", rate=5.0, size=100, home_for=timedelta(days=40), idle=timedelta(minutes=1)
        )
        # Archived and still idle: stays archived.
        idle = row(
            2, home="archive", rate=0.0, size=100, home_for=timedelta(days=40), idle=timedelta(days=60)
        )
        return [busy, idle]

    plan = full(planner, HOT_POLICY, rows())
    got = sorted((c.object_id, c.action, c.to_tier) for c in plan.changes)
    assert got == [(1, "hot-admit", "hot"), (1, "move", "cold")]
    busy, idle = rows()
    out = explain(planner, policies, busy, NOW)
    assert (out["should_be"], out["home_should_be"], out["home_tier"]) == ("hot", "cold", "archive")
    assert out["hot"]["wanted"] is True and out["hot"]["has_copy"] is None  # no Redis given: unknown
    assert explain(planner, policies, idle, NOW)["home_should_be"] == "archive"


def test_the_window_takes_every_missed_read_and_ranks_it_only_when_it_leaves() -> None:
    hot = RankedTier([Cap("cap", 1000)], hysteresis=1.0, window=0.2)  # 200 bytes of window, 800 ranked
    assert hot.window_limit == 200
    hot.offer(1, 800, rank=10.0)
    assert hot.settle() == ([1], [])
    # The ranked tier is full of a better object, yet misses get a copy in the window at once.
    assert hot.admit_on_read(2, 100, rank=1.0)
    assert hot.admit_on_read(3, 100, rank=20.0)
    assert set(hot.members) == {1, 2, 3} and hot.window_bytes == 200
    # 4 pushes out 2, the oldest: rank 1 cannot displace 1 (rank 10), so 2 is parked.
    assert hot.admit_on_read(4, 100, rank=0.5)
    assert set(hot.members) == {1, 3, 4}
    # 5 pushes out 3: rank 20 displaces 1 and 3 moves into the ranked tier; the room 1 left
    # takes 2, the best parked offer that fits.
    assert hot.admit_on_read(5, 100, rank=0.1)
    assert set(hot.members) == {2, 3, 4, 5}
    assert list(hot.window) == [4, 5] and hot.bytes == 400
    # A window member the policy no longer wants is dropped when it leaves, not ranked.
    hot.release(4)
    assert hot.admit_on_read(6, 100, rank=0.1)
    assert set(hot.members) == {2, 3, 5, 6}
    # Bigger than the window: straight to the ranked tier by rank, as without a window.
    assert not hot.admit_on_read(7, 750, rank=0.0)  # would have to displace 2 (rank 1) and 3 (rank 20)
    assert hot.admit_on_read(8, 750, rank=30.0)
    assert set(hot.members) == {5, 6, 8} and 8 not in hot.window


def test_a_plan_warns_of_rate_thresholds_the_correlation_window_puts_out_of_reach() -> None:
    policies = load_policy_text(HOT_POLICY)  # promoteAbove 1/h, demoteBelow 0.5/h
    quiet = Planner(Settings(access={"correlation_window": 600}))
    assert quiet.rebuild(policies, [], NOW)[1].warnings == []  # at most 6/h counts: 1/h is reachable
    strict = Planner(Settings(access={"correlation_window": 7200}))
    (warning,) = strict.rebuild(policies, [], NOW)[1].warnings
    assert "promoteAbove 1/h can never be reached" in warning and "docs" in warning and "hot" in warning
