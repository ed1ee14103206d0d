"""What no online placement can beat, on the same reads: Belady for the hot tier, an offline bound for cost.

* :func:`belady_bytes` — the byte hit ratio of a cache of ``capacity`` bytes that, knowing
  every future read, evicts the objects read furthest in the future (Belady's MIN, as
  libCacheSim's ``Belady`` runs it on variable sizes: every miss is admitted, then the
  furthest are evicted until it fits).
* :func:`offline_bound` — per object, the cheapest sequence of durable tiers knowing every
  future access (a dynamic program over its accesses; tiers change only at accesses). The
  early-deletion charge is counted only for the last archive stay before leaving archive, so
  the bound stays a lower bound for placements that change tier at accesses. The write that
  creates an object is one-off and left out (the bound may start in any tier).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from liquid.tiering.replay import MONTH, GiB, Price, Reads

DURABLE = ("warm", "cold", "archive")


def next_access(oid: np.ndarray) -> np.ndarray:
    """For each request, the index of the next request to the same object, or -1."""
    order = np.argsort(oid, kind="stable")
    nxt = np.full(len(oid), -1, dtype=np.int64)
    same = oid[order[1:]] == oid[order[:-1]]
    nxt[order[:-1][same]] = order[1:][same]
    return nxt


def belady_bytes(reads: Reads, capacity: int) -> tuple[float, float]:
    """(object hit ratio, byte hit ratio) of Belady's MIN with ``capacity`` bytes."""
    n = len(reads.oid)
    if n == 0:
        return 0.0, 0.0
    nxt = next_access(reads.oid).tolist()
    oids, sizes = reads.oid.tolist(), reads.size.tolist()
    never = n + 1
    cached: dict[int, tuple[int, int]] = {}  # oid -> (its next access, its size)
    heap: list[tuple[int, int]] = []  # (-next access, oid): furthest first, lazily deleted
    used = hits = hit_bytes = total = 0
    for i in range(n):
        o, s = oids[i], sizes[i]
        total += s
        nx = nxt[i] if nxt[i] >= 0 else never
        if o in cached:
            hits += 1
            hit_bytes += s
            cached[o] = (nx, cached[o][1])
        elif s <= capacity:
            used += s
            cached[o] = (nx, s)
        else:
            continue
        heapq.heappush(heap, (-nx, o))
        while used > capacity:
            neg, victim = heapq.heappop(heap)
            entry = cached.get(victim)
            if entry is None or entry[0] != -neg:
                continue  # stale: read again since, or gone
            del cached[victim]
            used -= entry[1]
    return hits / n, hit_bytes / total if total else 0.0


@dataclass(frozen=True)
class Accesses:
    """Per object: size, creation time, and its reads (after the write) as one sorted array."""

    size: np.ndarray
    created: np.ndarray
    start: np.ndarray  # offset of the object's requests in ``times``
    count: np.ndarray  # requests, the write included
    times: np.ndarray

    @classmethod
    def of(cls, trace: Reads) -> Accesses:
        order = np.lexsort((trace.t, trace.oid))
        oid, times = trace.oid[order], trace.t[order]
        first = np.flatnonzero(np.r_[True, oid[1:] != oid[:-1]])
        count = np.diff(np.r_[first, len(oid)])
        return cls(trace.size[order][first].astype(np.float64), times[first], first, count, times)


def offline_bound(trace: Reads, prices: dict[str, Price]) -> float:
    """Per object, the cheapest durable tier for every gap between accesses, knowing them all."""
    o, end = Accesses.of(trace), float(trace.t[-1])
    tiers = [prices[t] for t in DURABLE]
    gbm = np.array([p.gb_month for p in tiers]) / MONTH
    write = np.array([p.per_write for p in tiers])
    rd = np.array([p.per_read for p in tiers])
    ret = np.array([p.retrieval_gb for p in tiers])
    min_s = np.array([p.min_seconds for p in tiers])
    gb = o.size / GiB
    n = len(o.size)
    best = np.zeros((n, 3))
    for j in range(int(o.count.max())):
        act = np.flatnonzero(o.count > j)
        g_gb = gb[act][:, None]
        at = o.times[o.start[act] + j]
        has_next = (o.count[act] > j + 1)[:, None]
        nxt = o.times[np.minimum(o.start[act] + j + 1, len(o.times) - 1)]
        gap = np.where(has_next[:, 0], nxt - at, end - at)[:, None]
        stay = gbm * g_gb * gap + has_next * (rd + ret * g_gb)
        if j == 0:
            # Creation is one-off and reported apart; the bound may still start in any tier.
            best[act] = stay
            continue
        prev_gap = at - o.times[o.start[act] + j - 1]
        prev = best[act]  # cost through the previous gap, by the tier it was in
        # Leaving tier x for y: write y, plus x's early-deletion charge for a stay shorter than its minimum.
        early = gbm * g_gb * np.maximum(min_s - prev_gap[:, None], 0.0)
        leave = (prev + early)[:, :, None] + write[None, None, :]
        leave[:, np.arange(3), np.arange(3)] = prev
        best[act] = leave.min(axis=1) + stay
    return float(best.min(axis=1).sum())


__all__ = ["DURABLE", "Accesses", "belady_bytes", "next_access", "offline_bound"]
