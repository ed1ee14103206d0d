"""The value split of a global cap between planner shards (liquid.tiering.shares.split), as arithmetic.

The catalog side (the locked transaction, grants never above the limit minus the others' hold)
is exercised with real daemons in tests/core/test_shard_planning.py.
"""

from __future__ import annotations

import math
import random

import pytest

from liquid.tiering.ranked import PINNED, Cap, RankedTier
from liquid.tiering.shares import BINS_PER_LOG, Demand, split


def greedy(limit: float, items: list[tuple[float, float, str]]) -> dict[str, float]:
    """One planner's answer: units taken best rank first while they fit (fractional at the edge)."""
    out: dict[str, float] = {}
    room = limit
    for _rank, units, who in sorted(items, key=lambda x: -x[0]):
        take = min(units, room)
        out[who] = out.get(who, 0.0) + take
        room -= take
    return out


@pytest.mark.parametrize("seed", range(20))
def test_the_split_is_the_global_greedy_answer_and_never_above_the_limit(seed: int) -> None:
    rng = random.Random(seed)
    # Ranks on bin boundaries so that a bin holds one rank: the split must then be exact.
    items = [
        (rng.randrange(-40, 40) / BINS_PER_LOG, float(rng.randint(1, 100)), rng.choice("abc"))
        for _ in range(300)
    ]
    total = sum(u for _, u, _ in items)
    limit = rng.uniform(0.05, 1.2) * total
    demands = {
        h: Demand.of([r for r, _, w in items if w == h], [u for _, u, w in items if w == h], limit)
        for h in "abc"
    }
    shares = split(limit, demands)
    assert sum(shares.values()) <= limit * (1 + 1e-12)
    want = greedy(limit, items)
    if limit < total:
        # Within the threshold bin the split is proportional, greedy takes in rank order: they
        # differ only by how that one bin is shared.
        for h in "abc":
            assert shares[h] >= sum(u for r, u, w in items if w == h and r > _tau(limit, items)) - 1e-6
        assert sum(shares.values()) == pytest.approx(limit)
    else:
        spare = (limit - total) / 3
        for h in "abc":
            assert shares[h] == pytest.approx(want.get(h, 0.0) + spare)


def _tau(limit: float, items: list[tuple[float, float, str]]) -> float:
    room = limit
    for rank, units, _ in sorted(items, key=lambda x: -x[0]):
        room -= units
        if room < 0:
            return rank
    return -math.inf


def test_a_shard_with_only_low_value_gets_nothing_once_the_other_fills_the_limit() -> None:
    hot = Demand.of([10.0] * 10, [10.0] * 10, 50.0)
    cold = Demand.of([1.0] * 10, [10.0] * 10, 50.0)
    assert split(50.0, {"hot": hot, "cold": cold}) == {"hot": 50.0, "cold": 0.0}
    # Half the hot demand: the cold shard gets the rest.
    assert split(50.0, {"hot": Demand.of([10.0] * 2, [10.0] * 2, 50.0), "cold": cold}) == {
        "hot": 20.0,
        "cold": 30.0,
    }


def test_pinned_units_come_first_and_worthless_ones_last() -> None:
    a = Demand.of([PINNED, -math.inf], [30.0, 30.0], 100.0)
    b = Demand.of([5.0], [50.0], 100.0)
    assert split(100.0, {"a": a, "b": b}) == {"a": 50.0, "b": 50.0}


def test_a_demand_is_compact_below_its_own_threshold_and_round_trips() -> None:
    ranks = [i / 10 for i in range(1000)]
    d = Demand.of(ranks, [1.0] * 1000, 40.0)
    assert sum(d.bins.values()) == 40.0 and len(d.bins) == 16 and d.below == 960.0  # 2.5 units a bin
    assert d.total == pytest.approx(1000.0)
    assert Demand.from_json(d.to_json()) == d


def test_a_ranked_tier_reports_members_and_offers_under_a_global_cap() -> None:
    cap = Cap("g", 100.0)
    tier = RankedTier([cap, Cap("t", 10.0, tenant="x")])
    tier.offer(1, 60, 3.0, tenant="x")
    tier.offer(2, 60, 2.0, tenant="y")
    tier.settle()
    ranks, units = tier.demand(cap)
    assert sorted(zip(ranks, units, strict=True)) == [(2.0, 60.0), (3.0, 60.0)]
    tier.set_limit(cap, 50.0)
    assert tier.trim() and cap.used <= 50.0
