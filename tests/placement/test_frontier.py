"""The frontier report's LRFU reference and its peer runs (benchmarks.placement.frontier)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.placement.frontier import _peer, lrfu_bhr, render
from benchmarks.placement.peers import MORE_ONLINE, ONLINE, oracle_file, run_peer
from benchmarks.placement.traces import KiB, zipf_drift


def test_lrfu_with_a_half_life_of_one_request_is_lru(tmp_path: Path) -> None:
    # A read one request later outweighs any number of earlier reads: recency's order, so the
    # same hits as libCacheSim's LRU on the same file.
    trace = zipf_drift(0.9, n_objects=3000, n_requests=20_000, drift_every=0.25, seed=3)
    path = oracle_file(trace, tmp_path)
    for share in (0.02, 0.1):
        capacity = int(trace.working_set_bytes() * share) // KiB * KiB
        lru = run_peer("LRU", path, capacity)["bhr"]
        assert lru is not None and lru > 0.05
        assert abs(lrfu_bhr(trace, capacity, 1.0) - lru) < 1e-9


def test_a_long_half_life_beats_lru_where_popularity_stays_put() -> None:
    # One Zipf popularity for the whole trace: frequency is the better guide, and the spectrum's
    # long end serves more than its recency end.
    trace = zipf_drift(0.8, n_objects=5000, n_requests=30_000, drift_every=1.0, seed=4)
    capacity = int(trace.working_set_bytes() * 0.05)
    assert lrfu_bhr(trace, capacity, 30_000) > lrfu_bhr(trace, capacity, 1.0) + 0.02


def test_a_peer_that_runs_is_isolated_and_its_ratio_returned(tmp_path: Path) -> None:
    trace = zipf_drift(0.9, n_objects=500, n_requests=5000, seed=6)
    path = oracle_file(trace, tmp_path)
    capacity = int(trace.working_set_bytes() * 0.1)
    assert _peer("LeCaR", path, capacity, int(trace.size.max())) == run_peer("LeCaR", path, capacity)["bhr"]


def test_the_report_names_the_cells_where_nothing_online_beats_lru() -> None:
    def cell(lru: float, arc: float, lrfu: float) -> dict:
        peers = dict.fromkeys(ONLINE + MORE_ONLINE, 0.1)
        peers.update(LRU=lru, ARC=arc, LFUDA=None)
        return {"peers": peers, "lrfu": {"30": lru, "3000": lrfu}, "liquid": lru - 0.0005}

    out = {
        "machine": {"cpus": 2},
        "settings": {"requests": 1000, "half_lives": [30, 3000]},
        "seconds": 1.0,
        "traces": {"t": {"0.05": cell(0.3, 0.2, 0.3005), "0.1": cell(0.4, 0.2, 0.41)}},
    }
    text = render(out)
    assert "| t | 5% | 0.3000 | LRU 0.3000 |" in text
    assert "| 0.3005 (3,000) | +0.05 | 0.2995 | -0.05 |" in text
    assert "| 0.4100 (3,000) | +1.00 |" in text
    assert "nothing online here beats it by 0.1 points: 1 (t 5%)." in text
