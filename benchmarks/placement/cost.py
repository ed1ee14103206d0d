"""What a trace costs under each placement strategy, with the shipped cost model.

Every strategy pays, per object, from its first request (its write) to the end of the trace:
storage per GiB-month in each durable tier it sits in, the write price of every tier it is
written to (creation and each move), each later read at the request and retrieval price of
the tier it is read from, and an early-deletion charge when it leaves a tier before that
tier's minimum storage duration.

**The fair ledger** (what the report's columns charge):

* *monthly* figures are recurring costs over the trace's length, scaled to a 730-hour month:
  storage, reads, moves' writes and early deletion. The one write that creates each object
  is the same for every strategy and does not recur, so it is reported apart (``creates``),
  not divided by a short trace's months where it would dominate.
* every read is paid in every durable column: Liquid's ``durable`` figure charges the reads
  its hot tier served at the price of the tier the object lived in then (``hit_reads``), as
  Intelligent-Tiering and the offline bound pay for theirs;
* Liquid's ``total`` is what an operator pays: its durable placement with hot hits not
  touching the home, plus the hot tier's memory at its budget (``hot_memory``) and each hit at
  the hot tier's request price. The durable columns never include a hot tier.

Strategies:

* ``all-warm`` / ``all-cold`` — every object stays where it was written.
* ``intelligent-tiering`` — S3 Intelligent-Tiering's rules: frequent ($0.023), infrequent
  ($0.0125) after 30 days without access, archive-instant ($0.004) after 90, back to frequent
  on access; GET $0.0004/1k, PUT $0.005/1k, no retrieval fee; monitoring $0.0025 per 1,000
  objects a month for objects of 128 KiB and up (smaller ones stay frequent, unmonitored).
  AWS list prices, us-east-1, 2025.
* ``offline-bound`` — per object, the cheapest sequence of durable tiers knowing every future
  access (a dynamic program over its accesses; tiers change only at accesses). The early-
  deletion charge is counted only for the last archive stay before leaving archive, so the
  bound stays a lower bound for placements that change tier at accesses.
* ``liquid`` — the placement the replay's plans produced (:class:`Ledger`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.placement.traces import Trace
from liquid.policy.loader import load_policies

GiB = 1024**3
MONTH = 730 * 3600.0
DAY = 86400.0
DURABLE = ("warm", "cold", "archive")
COST_MODEL = Path(__file__).resolve().parents[2] / "policies" / "cost-model-defaults.yaml"

# S3 Intelligent-Tiering list prices (us-east-1).
IT_FREQUENT, IT_INFREQUENT, IT_ARCHIVE_INSTANT = 0.023, 0.0125, 0.004
IT_GET, IT_PUT, IT_MONITOR = 0.0004 / 1000, 0.005 / 1000, 0.0025 / 1000
IT_MIN_MONITORED = 128 * 1024


@dataclass(frozen=True, slots=True)
class Price:
    gb_month: float
    per_read: float
    per_write: float
    retrieval_gb: float
    min_seconds: float


def load_prices(path: Path = COST_MODEL) -> dict[str, Price]:
    """Per-tier prices from the shipped default CostModel."""
    model = load_policies([path]).cost_models[0]
    out = {}
    for tier, p in model.spec.tiers.items():
        out[tier] = Price(
            p.storage_per_gb_month,
            p.reads_per_1k / 1000,
            p.writes_per_1k / 1000,
            p.retrieval_per_gb,
            p.min_storage_duration,
        )
    return out


class Ledger:
    """Charges one strategy's durable placement as the replay goes (create, read, move, close)."""

    __slots__ = ("_at", "creates", "early", "hit_reads", "hot_reads", "prices", "reads", "storage", "writes")

    def __init__(self, prices: dict[str, Price]) -> None:
        self.prices = prices
        self._at: dict[int, tuple[str, float, int]] = {}  # oid -> (tier, since, size)
        self.storage = self.reads = self.writes = self.early = self.creates = 0.0
        self.hit_reads = self.hot_reads = 0.0

    def create(self, oid: int, size: int, tier: str, t: float) -> None:
        self._at[oid] = (tier, t, size)
        self.creates += self.prices[tier].per_write

    def read(self, oid: int) -> None:
        tier, _, size = self._at[oid]
        p = self.prices[tier]
        self.reads += p.per_read + p.retrieval_gb * size / GiB

    def hit(self, oid: int) -> None:
        """A read the hot tier served: its hot request price, and what the home would have charged."""
        tier, _, size = self._at[oid]
        p = self.prices[tier]
        self.hit_reads += p.per_read + p.retrieval_gb * size / GiB
        self.hot_reads += self.prices["hot"].per_read

    def move(self, oid: int, to: str, t: float) -> None:
        tier, since, size = self._at[oid]
        if tier == to:
            return
        p = self.prices[tier]
        stayed = t - since
        gb = size / GiB
        self.storage += p.gb_month * gb * stayed / MONTH
        if stayed < p.min_seconds:
            self.early += p.gb_month * gb * (p.min_seconds - stayed) / MONTH
        self.writes += self.prices[to].per_write
        self._at[oid] = (to, t, size)

    def close(self, t_end: float) -> float:
        """Charge storage up to ``t_end``; the total."""
        for tier, since, size in self._at.values():
            self.storage += self.prices[tier].gb_month * size / GiB * max(t_end - since, 0.0) / MONTH
        self._at.clear()
        return self.total

    @property
    def total(self) -> float:
        """Recurring durable cost, the hot tier's hits not touching the home (no creates, no hot memory)."""
        return self.storage + self.reads + self.writes + self.early

    def breakdown(self) -> dict[str, float]:
        return {
            "storage": self.storage,
            "reads": self.reads,
            "writes": self.writes,
            "early": self.early,
            "hit_reads": self.hit_reads,
            "hot_reads": self.hot_reads,
            "creates": self.creates,
        }


@dataclass(frozen=True)
class _Objects:
    """Per object: size, creation time, and its reads (after the write) as one sorted array."""

    size: np.ndarray
    created: np.ndarray
    start: np.ndarray  # offset of the object's requests in ``times``
    count: np.ndarray  # requests, the write included
    times: np.ndarray

    @classmethod
    def of(cls, trace: Trace) -> _Objects:
        order = np.lexsort((trace.t, trace.oid))
        oid, times = trace.oid[order], trace.t[order]
        first = np.flatnonzero(np.r_[True, oid[1:] != oid[:-1]])
        count = np.diff(np.r_[first, len(oid)])
        return cls(trace.size[order][first].astype(np.float64), times[first], first, count, times)


def simple(trace: Trace, tier: str, prices: dict[str, Price]) -> float:
    """Every object stays in ``tier``: recurring cost (see :func:`creates` for the writes)."""
    o, p, end = _Objects.of(trace), prices[tier], float(trace.t[-1])
    gb = o.size / GiB
    storage = (p.gb_month * gb * (end - o.created) / MONTH).sum()
    reads = ((o.count - 1) * (p.per_read + p.retrieval_gb * gb)).sum()
    return float(storage + reads)


def creates(trace: Trace, price_per_write: float) -> float:
    """The one-off cost of writing every object once."""
    return price_per_write * trace.objects()


def intelligent_tiering(trace: Trace) -> float:
    """S3 Intelligent-Tiering's rules, per object, from its accesses."""
    o, end = _Objects.of(trace), float(trace.t[-1])
    idx = np.arange(len(o.times))
    obj = np.repeat(np.arange(len(o.size)), o.count)
    last = (o.start + o.count - 1)[obj] == idx
    gap = np.where(last, end - o.times, np.r_[o.times[1:], 0.0] - o.times)
    gap = np.maximum(gap, 0.0)
    gb = o.size[obj] / GiB
    monitored = o.size[obj] >= IT_MIN_MONITORED
    freq = np.where(monitored, np.minimum(gap, 30 * DAY), gap)
    infrequent = np.where(monitored, np.clip(gap - 30 * DAY, 0, 60 * DAY), 0.0)
    archive = np.where(monitored, np.maximum(gap - 90 * DAY, 0.0), 0.0)
    storage = (gb * (IT_FREQUENT * freq + IT_INFREQUENT * infrequent + IT_ARCHIVE_INSTANT * archive)).sum()
    monitoring = IT_MONITOR * (o.size >= IT_MIN_MONITORED) * (end - o.created) / MONTH
    reads = IT_GET * float((o.count - 1).sum())
    return float(storage / MONTH + monitoring.sum() + reads)


def offline_bound(trace: Trace, prices: dict[str, Price]) -> float:
    """Per object, the cheapest durable tier for every gap between accesses, knowing them all."""
    o, end = _Objects.of(trace), float(trace.t[-1])
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


def hot_cost(hot_bytes: int, duration: float, prices: dict[str, Price]) -> float:
    """The hot tier's memory for ``duration`` seconds at its budget."""
    return prices["hot"].gb_month * hot_bytes / GiB * duration / MONTH
