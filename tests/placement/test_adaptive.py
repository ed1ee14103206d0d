"""The hot rank's adaptive half-life: on a phase change the hot tier follows the new hot set."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.placement.replay import Replay, policies_for, settings_for
from benchmarks.placement.traces import DAY, KiB, Trace, _zipf_ranks, zipf_drift
from liquid.tiering.adaptive import AdaptiveHalfLife
from liquid.tiering.ranked import RankedTier

N, SIZE = 2000, 4 * KiB


def _phase(rng: np.random.Generator, objects: np.ndarray, n: int, start: float) -> Trace:
    ranks = np.minimum(rng.zipf(1.3, n) - 1, len(objects) - 1)
    t = start + np.arange(n, dtype=np.float64) * 2.0  # a read every 2 s: a 3-day half-life is ~130k reads
    oid = objects[ranks]
    return Trace("phase", "", t, oid.astype(np.int64), np.full(n, SIZE, dtype=np.int64))


def _new_share_after_change(adaptive: bool) -> list[float]:
    """Share of the hot tier's members from the new hot set, every 1,000 requests after the change."""
    rng = np.random.default_rng(7)
    order = rng.permutation(N)
    old, new = order[: N // 2], order[N // 2 :]
    policies = policies_for(int(N * SIZE * 0.05))
    settings = settings_for(policies, {"planner": {"adaptive": adaptive, "adaptive_sample": 1.0}})
    replay = Replay(policies, settings, cycle=200)
    a = _phase(rng, old, 30_000, 0.0)
    replay.run(a)
    shares = []
    start = float(a.t[-1]) + 2.0
    wanted = set(new.tolist())
    for _ in range(10):
        b = _phase(rng, new, 1000, start)
        start = float(b.t[-1]) + 2.0
        replay.run(b)
        members = set(replay._members())
        shares.append(len(members & wanted) / max(1, len(members)))
    return shares


def test_the_hot_tier_follows_a_new_hot_set_within_a_thousand_requests() -> None:
    adaptive = _new_share_after_change(adaptive=True)
    fixed = _new_share_after_change(adaptive=False)
    # With the tracker's 3-day memory the old phase's counts hold the tier for far longer
    # than 10,000 requests (measured: 6% of members new after 1,000, 29% after 10,000); the
    # adapted rank has turned most of the tier over within 3,000 (measured: 66%, then 72-80%).
    # (Before the cycle's rows carried each object's hit count the simulations saw reads only
    # at admissions, and turned the tier over within the first 1,000.)
    assert fixed[-1] < 0.5, fixed
    assert min(adaptive[2:]) > 0.6, adaptive


def test_scores_span_frequency_to_recency() -> None:
    a = AdaptiveHalfLife(3600.0)
    # With the tracker's half-life the score is the decayed count: 10 reads an hour ago
    # outweigh 1 read now.
    assert a.score(10.0, 0.0, 3600.0) > a.score(1.0, 3600.0, 3600.0)
    # With a half-life of a minute the last read decides (recency).
    assert a.score(10.0, 0.0, 60.0) < a.score(1.0, 3600.0, 60.0)
    # Ranks stay forward-decayed for one half-life: equal counts, later read, higher score by ln 2 per H.
    assert a.score(1.0, 7200.0, 3600.0) - a.score(1.0, 3600.0, 3600.0) == pytest.approx(math.log(2))


def test_a_longer_half_life_than_the_trackers_does_not_inflate_a_young_objects_reads() -> None:
    a = AdaptiveHalfLife(3600.0)
    longer = 3 * 3600.0
    # One read a moment ago is one read under any memory: its score is its recency alone.
    assert a.score(1.0, 100.0, longer, span=1.0) == pytest.approx(100.0 * math.log(2) / longer, abs=1e-3)
    # An object read steadily for the tracker's whole memory (and more) has a count that forgot
    # its older reads: a memory three times as long holds three times as many.
    assert a.score(10.0, 0.0, longer, span=3600.0) == pytest.approx(math.log(30.0))
    # Between the two, the older the reader, the more its count grows: never less than it is.
    grown = [a.score(10.0, 0.0, longer, span=s) for s in (1.0, 900.0, 1800.0, 3600.0)]
    assert grown == sorted(grown) and grown[0] == pytest.approx(math.log(10.0), abs=1e-3)
    # (It used to multiply every count by H / H0: a newcomer's single read ranked as three, and
    # on a year-long Zipf trace whose simulations chose 3 H0 the 1% tier lost 2 points to ARC.)


def test_a_new_half_life_re_ranks_members_and_offers() -> None:
    tier = RankedTier()
    a = AdaptiveHalfLife(3600.0)
    tier.offer(1, 10, a.rank(1, 0.0, 100.0, 0.0))  # read often, long ago
    tier.offer(2, 10, a.rank(2, 0.0, 1.0, 3000.0))  # read once, lately
    tier.settle()
    assert tier.rank(1) > tier.rank(2)  # type: ignore[operator]
    a.current = 0  # the shortest half-life
    a.rerank(tier)
    assert tier.rank(2) > tier.rank(1)  # type: ignore[operator]


def _about(a: AdaptiveHalfLife, seconds: float) -> int:
    """The index of ``a``'s candidate half-life nearest ``seconds``."""
    return min(range(len(a.candidates)), key=lambda i: abs(math.log(a.candidates[i] / seconds)))


def _lrfu(times: list[float], h: float) -> float:
    """LRFU's forward-decayed score of reads at ``times`` under half-life ``h``: ln Σ 2^(t/h)."""
    return math.log(sum(2.0 ** (t / h) for t in times))


def _count(times: list[float], at: float, h0: float = 3 * DAY) -> float:
    """The tracker's decayed count of reads at ``times`` as of ``at``."""
    return sum(2.0 ** (-(at - t) / h0) for t in times if t <= at)


def test_the_score_is_exact_from_the_reads_seen_after_the_first_sighting() -> None:
    a = AdaptiveHalfLife(3 * DAY)
    a.current = _about(a, 360.0)  # a short half-life, about 6 minutes
    h = a.half_life
    # Sightings as the planner makes them: the tracker's count (3-day memory) at the last read.
    # Read at 0, then twice at 86,300, then at 86,400.
    reads = [0.0, 86_300.0, 86_300.0, 86_400.0]
    a.rank(1, 0.0, _count(reads, 0.0), 0.0, 0.0)
    a.rank(1, 0.0, _count(reads, 86_300.0), 86_300.0, 86_300.0)
    exact = a.rank(1, 0.0, _count(reads, 86_400.0), 86_400.0, 86_400.0)
    assert exact == pytest.approx(_lrfu(reads, h), rel=1e-9)
    # A sighting with no read counted since (a read the correlation window folded: the last
    # access moved, the count did not grow) adds nothing.
    assert a.rank(1, 0.0, _count(reads, 86_410.0), 86_410.0, 86_410.0) == pytest.approx(exact, rel=1e-12)


def test_a_burst_on_an_old_object_outranks_a_single_read_under_a_short_half_life() -> None:
    # What drifting popularity looks like: objects known for days become hot again. The
    # tracker's 3-day count cannot tell a burst in the last minutes from reads spread over the
    # day (both are old objects, read about as often), so the rank from it falls back to
    # recency alone under a short half-life; the reads seen since the first sighting can.
    def ranks(exact: bool) -> tuple[float, float]:
        a = AdaptiveHalfLife(3 * DAY)
        a.EXACT = exact
        a.current = _about(a, 360.0)
        burst = [0.0, 86_350.0, 86_350.0, 86_400.0]  # once at 0, then 3 reads at the end
        spread = [0.0, 43_200.0, 86_400.0]  # once at 0, at noon, at the end
        for t in (0.0, 86_350.0):
            a.rank(1, 0.0, _count(burst, t), t, t)
        for t in (0.0, 43_200.0):
            a.rank(2, 0.0, _count(spread, t), t, t)
        return (
            a.rank(1, 0.0, _count(burst, 86_400.0), 86_400.0, 86_400.0),
            a.rank(2, 0.0, _count(spread, 86_400.0), 86_400.0, 86_400.0),
        )

    burst, single = ranks(exact=True)
    assert burst - single > 1.0  # ln 3.6: its other reads 50 s old count almost whole
    burst, single = ranks(exact=False)
    assert burst == pytest.approx(single)  # recency alone: the same last read


def test_a_switch_of_half_life_reseeds_the_exact_scores() -> None:
    tier = RankedTier()
    a = AdaptiveHalfLife(3600.0)
    a.current = 0
    tier.offer(1, 10, a.rank(1, 0.0, 1.0, 0.0, 0.0))
    tier.offer(1, 10, a.rank(1, 0.0, 1.0 + 2.0 ** (-50.0 / 3600.0), 50.0, 50.0))
    tier.settle()
    a.current = len(a.candidates) - 1
    a.rerank(tier)
    # Under the new half-life the score starts again from the tracker's count...
    seed = a.score(1.0 + 2.0 ** (-50.0 / 3600.0), 50.0, span=50.0)
    assert tier.rank(1) == pytest.approx(seed)
    # ...and the reads counted from there add to it under the new half-life.
    count = (1.0 + 2.0 ** (-50.0 / 3600.0)) * 2.0 ** (-50.0 / 3600.0) + 1.0
    after = a.rank(1, 0.0, count, 100.0, 100.0)
    assert after == pytest.approx(math.log(math.exp(seed) + 2.0 ** (100.0 / a.half_life)), rel=1e-9)


def _burst_after_full_tier(window: float) -> list[float]:
    """Each candidate's simulated byte hit ratio when a tier full of objects ranked high meets a
    newcomer ranked far below them, missed once on the read path and read twice more."""
    a = AdaptiveHalfLife(3600.0, sample=1.0)
    a.set_capacity(100.0, window=window)
    hot = RankedTier()
    for oid in range(1, 11):  # read often: they fill every simulated tier
        a.observe(oid, 10, 5, wanted=True, base=50.0, count=100.0, t_last=0.0, at=0.0)
    a.end_pass(hot)
    a.observe(99, 10, 1, wanted=True, base=-1000.0, count=1.0, t_last=60.0, on_read=True, at=60.0)
    a.observe(99, 10, 3, wanted=True, base=-1000.0, count=3.0, t_last=120.0, at=120.0)
    a.end_pass(hot)
    return a.ratios()


def test_the_simulations_admit_through_the_hot_window_as_the_real_tier_does() -> None:
    # With a window (planner.hot_window) the real tier copies every missed read at once, whatever
    # its rank, so the two reads after the miss hit there: the simulations count them too.
    assert all(r > 0 for r in _burst_after_full_tier(0.2))
    # Without one a newcomer ranked below every member stays out, in the simulations as in the tier.
    assert all(r == 0 for r in _burst_after_full_tier(0.0))


def test_the_planner_gives_the_simulations_its_hot_window() -> None:
    policies = policies_for(int(N * SIZE * 0.05))
    planner = {"hot_window": 0.1, "read_clock": True, "read_adaptive": True, "adaptive_sample": 1.0}
    replay = Replay(policies, settings_for(policies, {"planner": planner}), cycle=200)
    rng = np.random.default_rng(3)
    replay.run(_phase(rng, rng.permutation(N), 1000, 0.0))
    minis = replay.engine.planner.read_adaptive._minis
    assert minis and all(m.window_fraction == 0.1 and m.window_limit > 0 for m in minis)
    assert any(m.window for m in minis)  # missed reads got in through it


def test_the_simulations_replay_a_pass_in_the_order_of_its_reads() -> None:
    # A window of one object. Object 1 misses at t=0 and is read twice more by t=10; objects 2
    # and 3 miss at t=100 and t=200. The admission passes saw the misses as they came, the cycle
    # sees object 1's two reads only at its end: the simulations place them at t=10, when object
    # 1 was still in the window (at the cycle's end it had left it for the other two).
    a = AdaptiveHalfLife(3600.0, sample=1.0)
    a.set_capacity(100.0, window=0.1)
    hot = RankedTier()
    for oid in range(10, 20):  # a full ranked part, ranked far above the newcomers
        a.observe(oid, 9, 5, wanted=True, base=50.0, count=100.0, t_last=0.0, at=0.0)
    a.end_pass(hot)
    for oid, at in ((1, 0.0), (2, 100.0), (3, 200.0)):
        a.observe(oid, 10, 1, wanted=True, base=-50.0, count=1.0, t_last=at, on_read=True, at=at)
    a.observe(1, 10, 3, wanted=True, base=-50.0, count=3.0, t_last=10.0, at=10.0)
    for oid, at in ((2, 100.0), (3, 200.0)):
        a.observe(oid, 10, 1, wanted=True, base=-50.0, count=1.0, t_last=at, at=at)
    a.end_pass(hot)
    # Both reads hit (replayed at the cycle's end, the first would miss and get it back in).
    assert a.ratios() == pytest.approx([1.0] * len(a.configs)), a.ratios()


def test_objects_large_against_the_tier_are_all_simulated_at_their_share_of_it() -> None:
    a = AdaptiveHalfLife(3600.0, sample=0.125)
    hot = RankedTier()
    a.set_capacity(64_000.0)  # simulated tiers of 8,000 bytes
    outside = [oid for oid in range(200) if not a.sampled(oid)]
    # Small objects: one in eight. An object a sixty-fourth of the real tier or more: every one,
    # each weighing its share of a simulated tier, as the real one does (not eight times that).
    assert 0.75 < len(outside) / 200 < 0.98
    assert all(a.sampled(oid, 1000) for oid in outside)
    big = outside[0]
    a.observe(big, 1000, 1, wanted=True, base=0.0, count=1.0, t_last=0.0, on_read=True, at=0.0)
    a.end_pass(hot)
    assert all(m.members.get(big) == 125 for m in a._minis)


def _first_choice(warmup: float) -> tuple[int, float, float]:
    """Requests, hot budgets read and the half-life (in tracker half-lives) at the first switch,
    on Zipf traffic whose popular set is re-drawn every 2,000 reads from the first one."""
    trace = zipf_drift(0.8, n_objects=10_000, n_requests=40_000, drift_every=0.05, duration=DAY / 2, seed=5)
    policies = policies_for(int(trace.working_set_bytes() * 0.1))
    replay = Replay(policies, settings_for(policies), cycle=250)
    a = replay.engine.planner.adaptive
    a.WARMUP = warmup
    read = 0
    for start in range(0, len(trace), 250):
        part = slice(start, start + 250)
        replay.run(Trace(trace.name, "", trace.t[part], trace.oid[part], trace.size[part]))
        read += int(trace.size[part].sum())
        if a.half_life != a.base:
            return start + 250, read / a.capacity, a.half_life / a.base
    raise AssertionError("the half-life never moved from the tracker's")


def test_the_first_choice_comes_after_a_quarter_of_the_simulations_budget_read_not_two() -> None:
    # Until its first choice the tier ranks with the tracker's 3-day memory; on the grid's fast
    # drift at 10% Liquid lost 0.7 points of byte hit ratio to LRU in its first 50,000 requests
    # waiting for two of the simulations' budgets of reads; a quarter won 0.5 back (LRU 0.351,
    # Liquid 0.341, now 0.346). Here (measured): the first switch, to a
    # half-life under an hour, after 2,000 requests (2.8 hot budgets read in all); waiting for
    # two budgets, after 4,750 (6.2 budgets).
    assert AdaptiveHalfLife.WARMUP == 0.25
    requests, budgets, factor = _first_choice(AdaptiveHalfLife.WARMUP)
    old_requests, old_budgets, _ = _first_choice(2.0)
    assert factor < 1 / 72, (requests, budgets, factor)
    assert 2 * requests <= old_requests and 1.5 * budgets <= old_budgets, (
        (requests, budgets),
        (old_requests, old_budgets),
    )


def _loop_trace(seed: int = 3) -> Trace:
    """Every other read goes round a loop of 2,000 objects in order (each read again 4,000
    requests later); the rest are Zipf 0.9 over 10,000 others. A read every 2 s."""
    rng = np.random.default_rng(seed)
    n, loop, others = 40_000, 2000, 10_000
    oid = np.empty(n, dtype=np.int64)
    oid[0::2] = _zipf_ranks(rng, others, n // 2, 0.9)
    oid[1::2] = others + np.arange(n // 2) % loop
    return Trace("loop", "", np.arange(n, dtype=np.float64) * 2.0, oid, np.full(n, SIZE, dtype=np.int64))


def _loop_replay(adaptive_hysteresis: bool) -> tuple[float, float, float]:
    """On the loop at 10% of its bytes: the byte hit ratio, the loop's own hit ratio and the
    hysteresis the hot tier keeps at the end."""
    trace = _loop_trace()
    policies = policies_for(int(trace.working_set_bytes() * 0.10))
    settings = settings_for(policies, {"planner": {"adaptive_hysteresis": adaptive_hysteresis}})
    res = Replay(policies, settings, cycle=500).run(trace, keep_outcomes=True)
    return res.bhr, float(np.mean(res.outcomes[1::2])), res.hysteresis


def test_a_loop_larger_than_the_tier_gets_residents_kept_harder_and_a_stable_part_of_it_served() -> None:
    # Round a loop every object has the same count, and the one just read is a read ahead of the
    # members about to be read again: at the operator's hysteresis (1.25) it displaces one of
    # them, the LRU-like churn that serves a loop little. The simulations also try each
    # half-life with residents kept 1.6 times harder (2.0), and choose that here. Measured:
    # the loop's hit ratio 0.18 against 0.14, all reads' 0.326 against 0.309 (seeds 1 and 2:
    # 0.327/0.303, 0.323/0.321); on the held-out loop trace at 10%, 0.280 became 0.294.
    bhr, loop, hysteresis = _loop_replay(adaptive_hysteresis=True)
    alone_bhr, alone_loop, alone_hysteresis = _loop_replay(adaptive_hysteresis=False)
    assert alone_hysteresis == 1.25 and hysteresis == pytest.approx(2.0), (hysteresis, alone_hysteresis)
    assert loop > alone_loop + 0.02, (loop, alone_loop)
    assert bhr > alone_bhr + 0.01, (bhr, alone_bhr)


def test_the_choice_between_hystereses_looks_at_the_neighbouring_half_lives_too() -> None:
    a = AdaptiveHalfLife(3600.0)
    n = len(a.candidates)
    assert [h for _, h in a.configs[::n]] == [1.25, 2.0]
    a.capacity, a._bytes = 100.0, 1000.0  # warmed up
    # Under 1.25 a plateau around the tracker's memory; under 2.0 a higher peak one half-life
    # above a cliff (as on a loop): its neighbours' mean is below the plateau, so 1.25 it is.
    plateau = [0.30] * n
    plateau[a.current - 1 : a.current + 2] = [0.40, 0.41, 0.40]
    cliff = [0.25] * n
    cliff[5:8] = [0.20, 0.43, 0.38]
    a._hits = plateau + cliff
    assert not a._choose(RankedTier())  # the current one (the tracker's, 1.25) is the best
    # A peak whose neighbours served well too wins the stickier hysteresis.
    cliff[5:8] = [0.41, 0.43, 0.42]
    a._hits = plateau + cliff
    assert a._choose(RankedTier()) and (a.current, a.bonus) == (6, 2.0)
