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

import numpy as np

from benchmarks.placement.traces import Trace
from liquid.tiering.bounds import Accesses
from liquid.tiering.bounds import offline_bound as offline_bound
from liquid.tiering.replay import Price
from liquid.tiering.simulate import prices_for

GiB = 1024**3
MONTH = 730 * 3600.0
DAY = 86400.0
DURABLE = ("warm", "cold", "archive")

# S3 Intelligent-Tiering list prices (us-east-1).
IT_FREQUENT, IT_INFREQUENT, IT_ARCHIVE_INSTANT = 0.023, 0.0125, 0.004
IT_GET, IT_PUT, IT_MONITOR = 0.0004 / 1000, 0.005 / 1000, 0.0025 / 1000
IT_MIN_MONITORED = 128 * 1024


def load_prices() -> dict[str, Price]:
    """Per-tier prices of the shipped default CostModel, as the daemon prices them."""
    return prices_for(None)


def simple(trace: Trace, tier: str, prices: dict[str, Price]) -> float:
    """Every object stays in ``tier``: recurring cost (see :func:`creates` for the writes)."""
    o, p, end = Accesses.of(trace), prices[tier], float(trace.t[-1])
    gb = o.size / GiB
    storage = (p.gb_month * gb * (end - o.created) / MONTH).sum()
    reads = ((o.count - 1) * (p.per_read + p.retrieval_gb * gb)).sum()
    return float(storage + reads)


def creates(trace: Trace, price_per_write: float) -> float:
    """The one-off cost of writing every object once."""
    return price_per_write * trace.objects()


def intelligent_tiering(trace: Trace) -> float:
    """S3 Intelligent-Tiering's rules, per object, from its accesses."""
    o, end = Accesses.of(trace), float(trace.t[-1])
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


def hot_cost(hot_bytes: int, duration: float, prices: dict[str, Price]) -> float:
    """The hot tier's memory for ``duration`` seconds at its budget."""
    return prices["hot"].gb_month * hot_bytes / GiB * duration / MONTH
