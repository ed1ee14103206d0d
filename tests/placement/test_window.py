"""The hot window's adaptive share (liquid.tiering.window): hill climbing counted in reads."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.placement.replay import Replay, policies_for, settings_for
from benchmarks.placement.traces import KiB, Trace
from liquid.tiering.ranked import Cap, RankedTier
from liquid.tiering.readclock import TRACKER, ReadClock, ReadHalfLife
from liquid.tiering.window import WindowClimber

N, SIZE = 2000, 4 * KiB


def _phase(rng: np.random.Generator, objects: np.ndarray, n: int, start: float, gap: float) -> Trace:
    ranks = np.minimum(rng.zipf(1.3, n) - 1, len(objects) - 1)
    t = start + np.arange(n, dtype=np.float64) * gap
    oid = objects[ranks]
    return Trace("phase", "", t, oid.astype(np.int64), np.full(n, SIZE, dtype=np.int64))


def _after_change(
    adaptive: bool, *, gap: float = 2.0, planner: dict[str, object] | None = None
) -> tuple[list[float], float]:
    """Share of the hot tier's members from the new hot set every 1,000 requests after a change of
    hot set, and the window's share at the end; one read every ``gap`` seconds. ``planner``
    replaces the planner settings (default: the climbing window, or not, on the fixed hot rank:
    the default's adaptive rank follows a new hot set by itself, test_adaptive.py)."""
    rng = np.random.default_rng(7)
    order = rng.permutation(N)
    old, new = order[: N // 2], order[N // 2 :]
    policies = policies_for(int(N * SIZE * 0.05))
    settings = settings_for(
        policies, {"planner": planner or {"adaptive_window": adaptive, "adaptive": False}}
    )
    replay = Replay(policies, settings, cycle=200)
    a = _phase(rng, old, 30_000, 0.0, gap)
    replay.run(a)
    shares = []
    start = float(a.t[-1]) + gap
    wanted = set(new.tolist())
    for _ in range(10):
        b = _phase(rng, new, 1000, start, gap)
        start = float(b.t[-1]) + gap
        replay.run(b)
        members = set(replay._members())
        shares.append(len(members & wanted) / max(1, len(members)))
    return shares, replay.engine.planner.window.share


def test_the_hot_tier_follows_a_new_hot_set_within_a_bounded_number_of_requests() -> None:
    adaptive, share = _after_change(adaptive=True)
    fixed, _ = _after_change(adaptive=False)
    # With the tracker's 3-day memory (a read every 2 s: ~130k reads per half-life) the old
    # phase's counts hold the ranked tier: most members are still old 10,000 requests later
    # (measured: 7% new after 1,000 requests, 29% after 10,000).
    assert fixed[-1] < 0.5, fixed
    # The climber grew the window (measured: to 41% of the budget), and the new hot set holds
    # most of the tier from the first 1,000 requests on (measured: 68-71%).
    assert share > 0.2, share
    assert min(adaptive) > 0.6, (adaptive, share)


def test_the_read_clock_follows_a_new_hot_set_alike_at_any_density() -> None:
    """Recency counted in budgets read: the tier turns over within 3,000 requests, and a trace
    ten times sparser in time turns it over alike (the tracker's 3-day rank: 7% after 1,000)."""
    dense, _ = _after_change(True, gap=2.0, planner={"read_clock": True})
    sparse, _ = _after_change(True, gap=20.0, planner={"read_clock": True})
    # Measured: 53%, 89%, 99%, then 100% new every 1,000 requests; ten times sparser 61%, 93%,
    # 100% (a first read moves the clock once the object is read again).
    assert min(dense[2:]) > 0.95 and min(sparse[2:]) > 0.95, (dense, sparse)
    assert dense[0] > 0.5 and sparse[0] > 0.5, (dense, sparse)
    assert abs(dense[0] - sparse[0]) < 0.15, (dense, sparse)


def _through_a_scan(planner: dict[str, object]) -> tuple[float, float]:
    """Share of the hot tier's members from the hot set right after a one-time scan of 40 hot
    budgets of objects never read before, and after the same hot set is read again for 1,000
    requests. One read every 2 s; the hot set is half the objects, the budget 5% of them."""
    rng = np.random.default_rng(11)
    order = rng.permutation(N)
    hot = order[: N // 2]
    policies = policies_for(int(N * SIZE * 0.05))
    replay = Replay(policies, settings_for(policies, {"planner": planner}), cycle=200)
    a = _phase(rng, hot, 30_000, 0.0, 2.0)
    replay.run(a)
    n_scan = 40 * N // 20  # 40 budgets of 4 KiB objects, each read once
    scanned = np.arange(N, N + n_scan, dtype=np.int64)
    t = float(a.t[-1]) + 2.0 + np.arange(n_scan, dtype=np.float64) * 2.0
    replay.run(Trace("scan", "", t, scanned, np.full(n_scan, SIZE, dtype=np.int64)))
    wanted = set(hot.tolist())
    members = set(replay._members())
    after_scan = len(members & wanted) / max(1, len(members))
    replay.run(_phase(rng, hot, 1000, float(t[-1]) + 2.0, 2.0))
    members = set(replay._members())
    return after_scan, len(members & wanted) / max(1, len(members))


def test_the_read_clock_keeps_the_hot_set_through_a_one_time_scan() -> None:
    """A scan reads 40 budgets of objects once: only re-reads advance the read clock, so the
    hot set does not age by 20 half-lives while the scanned objects look fresh."""
    after_scan, after = _through_a_scan({"read_clock": True})
    # Measured: all members from the hot set, right after the scan and 1,000 requests later;
    # when every read advanced the clock, none right after the scan (the scan had them all).
    assert after_scan > 0.8 and after > 0.9, (after_scan, after)


def test_the_climber_keeps_a_direction_that_helps_and_reverses_one_that_hurts() -> None:
    c = WindowClimber(0.1, step=0.05, decay=0.5, restart=0.2)
    capacity = 100.0

    def period(bhr: float) -> None:
        for _ in range(4):
            c.read(50)  # 200 bytes read: two budgets
        c.missed(round(200 * (1 - bhr)))
        c.end_cycle(capacity)

    period(0.50)  # the baseline
    assert c.share == pytest.approx(0.1)
    period(0.55)  # better: a step up
    assert c.share == pytest.approx(0.15)
    period(0.60)  # better again: on up, a smaller step
    assert c.share == pytest.approx(0.175)
    period(0.58)  # worse: back down
    assert c.share == pytest.approx(0.1625)
    period(0.90)  # a jump: the step restarts at full size
    assert abs(c.step) == pytest.approx(0.05)


def test_reads_are_counted_once_from_the_hit_counts_the_cycle_sees() -> None:
    clock = ReadClock()
    clock.reset(100.0)
    assert clock.new_reads(7, 3, created=150.0) == 3  # new since the last checkpoint: all its reads
    assert clock.new_reads(7, 3, created=150.0) == 0  # nothing new
    assert clock.new_reads(7, 5, created=150.0) == 2  # two more
    assert clock.new_reads(8, 40, created=50.0) == 1  # older than the clock's memory: one


def test_only_re_reads_advance_the_read_clock() -> None:
    clock = ReadClock(half_life=2.0)
    clock.reset(0.0)
    assert clock.read(1, 1, created=-50.0) == (1, 0.0)  # a first read: nothing yet
    assert clock.read(2, 3, created=10.0) == (3, 3.0)  # read thrice in the cycle: all count
    clock.advance(100.0, 1.0)
    # Read again one budget later: the read stands at 2^-0.5, and so does the owed first read.
    n, again = clock.read(1, 2, created=-50.0)
    assert n == 1 and again == pytest.approx(2 * 2**-0.5)
    clock.advance(200.0, 40.0)  # twenty half-lives later the object no longer stands
    n, again = clock.read(1, 3, created=-50.0)
    assert n == 1 and again < 1e-5


def test_the_read_clock_interpolates_between_cycles_and_extrapolates_after() -> None:
    clock = ReadClock(half_life=2.0)
    clock.reset(0.0)
    clock.advance(100.0, 1.0)  # a budget read in the first 100 s
    clock.advance(110.0, 1.0)  # another in the next 10 s (ten times denser)
    assert clock.at(50.0) == pytest.approx(0.5)
    assert clock.at(105.0) == pytest.approx(1.5)
    assert clock.at(120.0) == pytest.approx(3.0)  # after the last cycle: at its pace


def test_a_smaller_window_lets_its_oldest_meet_the_ranked_part() -> None:
    tier = RankedTier([Cap("hot", 100)], window=0.5, window_lru=True)
    for oid in (1, 2, 3, 4, 5):
        tier.admit_on_read(oid, 10, float(oid))
    assert list(tier.window) == [1, 2, 3, 4, 5]
    tier.offer(1, 10, 1.0)  # read again: it goes to the back
    assert list(tier.window) == [2, 3, 4, 5, 1]
    tier.set_window(0.2)
    tier.trim()
    tier.settle()
    assert list(tier.window) == [5, 1]
    assert {2, 3, 4} <= set(tier.members)  # room in the ranked part: they stay as members
    assert tier.bytes <= 100


def test_a_larger_window_evicts_the_ranked_parts_lowest() -> None:
    tier = RankedTier([Cap("hot", 100)], window=0.0)
    for oid in range(10):
        tier.offer(oid, 10, float(oid))
    tier.settle()
    assert len(tier.members) == 10
    tier.set_window(0.3)
    assert tier.trim() == [0, 1, 2]
    tier.admit_on_read(100, 10, -5.0)  # a miss gets a copy at once, whatever its rank
    assert 100 in tier.members and tier.bytes <= 100


def test_the_read_clock_half_life_lengthens_on_steady_traffic_and_shortens_when_it_drifts() -> None:
    """``read_adaptive``: the simulations choose a longer half-life than the configured 2 budgets
    (here the tracker's own rank) while the popular set stays put (its counts are worth
    keeping), leave it within 1,500 requests once the popular set is re-drawn every 500, and
    go below 2 budgets within 8,000 (the last reads are what is worth keeping)."""
    rng = np.random.default_rng(7)
    policies = policies_for(int(N * SIZE * 0.05))
    planner = {"read_clock": True, "read_adaptive": True, "adaptive_sample": 1.0}
    replay = Replay(policies, settings_for(policies, {"planner": planner}), cycle=200)
    chosen = replay.engine.planner.read_adaptive
    assert chosen.enabled and chosen.half_life == 2.0
    objects = rng.permutation(N)
    start = 0.0
    for _ in range(20):
        b = _phase(rng, objects, 1000, start, 2.0)
        start = float(b.t[-1]) + 2.0
        replay.run(b)
    steady = chosen.half_life
    # Measured: the tracker's wall-clock rank (the ∞ candidate) from the second 1,000 requests on.
    assert steady > 2.0, chosen.to_json()
    drifting = []
    for _ in range(16):
        objects = rng.permutation(N)
        b = _phase(rng, objects, 500, start, 2.0)
        start = float(b.t[-1]) + 2.0
        replay.run(b)
        drifting.append(chosen.half_life)
    # Measured: 2 budgets from the third 500 requests on, a quarter of a budget after 7,000.
    assert max(drifting[2:]) < steady and drifting[-1] < 2.0, (drifting, chosen.to_json())
    assert chosen.switches >= 2


def test_the_read_clock_candidates_run_from_recency_to_the_tracker_s_wall_clock_rank() -> None:
    r = ReadHalfLife(2.0, tracker=3600.0)
    # Ten reads, last when the clock read 0, against one read 4 budgets later: with 2-budget
    # half-lives the ten still weigh more (10 against 2^2), with a quarter budget recency decides.
    assert r.score(1.0, 4.0, 2.0) < r.score(10.0, 0.0, 2.0)
    assert r.score(1.0, 4.0, 0.25) > r.score(10.0, 0.0, 0.25)
    # The tracker's rank (∞) counts wall-clock time only: one half-life doubles, budgets don't.
    tracker = math.inf
    assert r.score(10.0, 0.0, tracker, span=0.0) - r.score(10.0, 99.0, tracker, span=0.0) == 0.0
    assert r.score(1.0, 0.0, tracker, span=3600.0) - r.score(1.0, 0.0, tracker, span=0.0) == pytest.approx(
        math.log(2)
    )
    r.restore(math.inf)  # a leader saved "tracker"
    assert r.to_json()["half_life_budgets"] == TRACKER
    r.restore(3.0)  # the nearest finite candidate
    assert r.half_life == 4.0
