"""Replay reads through the tiering engine the daemon runs: the placement benchmark and ``policy simulate``.

:class:`Replay` wires a :class:`liquid.tiering.engine.TieringEngine` — the class ``liquid
daemon`` runs, with the same :class:`~liquid.tiering.planner.Planner`, ranked tiers, state and
passes — to a sequence of reads instead of a catalog and Redis, and calls the same entry
points the daemon's jobs call, at the reads' time (an injected clock):

* every read is counted by :class:`liquid.access.DecayedCounts` (the tracker's formula,
  :func:`liquid.access.count_read`), and the object goes into the change feed, as the
  daemon's access flush puts it there;
* a read is a **hit** when the object is a member of the engine's hot tier (production
  fills every admitted copy; the replay's applier does so at once); a miss is reported to
  the engine's miss feed, and :meth:`TieringEngine.admit` runs every ``admit_interval``
  seconds of read time (the daemon's ``admit`` job, ``daemon.admit_interval``);
* :meth:`TieringEngine.cycle` plans what changed and came due (the daemon's ``cycle`` job)
  every ``cycle`` requests, or every ``cycle_seconds`` of read time as the daemon does
  (``daemon.plan_interval``); the first one is a rebuild;
* the plans' moves happen at once (a perfect mover), and the cost :class:`Ledger` charges
  them: a hit costs the hot tier's request price and no home read, a miss one home read, and
  each hot fill one more (the daemon's fill reads the home).

Rows are built as :class:`~liquid.tiering.rows.CatalogRows` builds them from the catalog
(the decayed score brought forward to ``now`` as reads/hour). An object's first read
creates it (written warm up to ``warm_max_object_size``, else cold, as the service does)
and counts as a read and a miss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np

from liquid.access import DecayedCounts
from liquid.config import Settings
from liquid.policy.evaluate import ObjectFacts
from liquid.policy.models import PolicySet
from liquid.tiering.apply import ApplyReport
from liquid.tiering.engine import FixedPolicies, TieringEngine
from liquid.tiering.plan import Plan
from liquid.tiering.planner import Planner
from liquid.tiering.rows import ColumnBatch, Row
from liquid.tiering.values import PlannerSettings

GiB = 1024**3
MONTH = 730 * 3600.0
#: Read time 0 of a benchmark trace; any fixed instant works, the planner only sees differences.
EPOCH = datetime(2030, 1, 1, tzinfo=UTC)
TENANT, NAMESPACE = "bench", "data"


class Reads(Protocol):
    """Reads in time order: seconds from ``epoch`` (``t``), object ids, object sizes in bytes."""

    t: np.ndarray
    oid: np.ndarray
    size: np.ndarray


#: What an object is besides its size: (tenant, namespace, key, content type).
Meta = Callable[[int], tuple[str, str, str, str]]


def bench_meta(oid: int) -> tuple[str, str, str, str]:
    return TENANT, NAMESPACE, str(oid), "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Price:
    gb_month: float
    per_read: float
    per_write: float
    retrieval_gb: float
    min_seconds: float


class Ledger:
    """Charges one strategy's durable placement as the replay goes (create, read, move, close)."""

    __slots__ = (
        "_at",
        "creates",
        "early",
        "hit_reads",
        "hot_reads",
        "prices",
        "reads",
        "reads_by_tier",
        "storage",
        "writes",
    )

    def __init__(self, prices: dict[str, Price]) -> None:
        self.prices = prices
        self._at: dict[int, tuple[str, float, int]] = {}  # oid -> (tier, since, size)
        self.storage = self.reads = self.writes = self.early = self.creates = 0.0
        self.hit_reads = self.hot_reads = 0.0
        #: Home reads per tier (misses and fills).
        self.reads_by_tier: dict[str, int] = {}

    def create(self, oid: int, size: int, tier: str, t: float) -> None:
        self._at[oid] = (tier, t, size)
        self.creates += self.prices[tier].per_write

    def read(self, oid: int) -> None:
        tier, _, size = self._at[oid]
        p = self.prices[tier]
        self.reads += p.per_read + p.retrieval_gb * size / GiB
        self.reads_by_tier[tier] = self.reads_by_tier.get(tier, 0) + 1

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


@dataclass
class ReplayResult:
    """Hit counts and what the passes cost."""

    requests: int = 0
    hits: int = 0
    bytes: int = 0
    hit_bytes: int = 0
    cycles: int = 0
    admits: int = 0
    plan_seconds: float = 0.0
    seconds: float = 0.0
    evaluated: int = 0
    moves: int = 0
    hot_admits: int = 0
    hot_evicts: int = 0
    #: The hot rank's half-life at the end (s; in budgets read with read_adaptive) and how often
    #: the simulations changed it.
    half_life: float = 0.0
    switches: int = 0
    #: The hot tier's hysteresis at the end (the simulations choose it with the half-life).
    hysteresis: float = 0.0
    #: The hot window's share at the end (liquid.tiering.window) and hot budgets read (readclock).
    window_share: float = 0.0
    budgets_read: float = 0.0
    ledger: Ledger | None = None
    #: Per request: was it a hot hit (kept only when asked, for tests).
    outcomes: list[bool] = field(default_factory=list)

    @property
    def ohr(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def bhr(self) -> float:
        return self.hit_bytes / self.bytes if self.bytes else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "ohr": self.ohr,
            "bhr": self.bhr,
            "requests": self.requests,
            "cycles": self.cycles,
            "admit_passes": self.admits,
            "plan_seconds": round(self.plan_seconds, 3),
            "seconds": round(self.seconds, 3),
            "rows_evaluated": self.evaluated,
            "moves": self.moves,
            "hot_admits": self.hot_admits,
            "hot_evicts": self.hot_evicts,
            # The tracker's own rank (read_adaptive) is an infinite half-life: named, as JSON has no inf.
            "half_life_s": self.half_life if math.isfinite(self.half_life) else "tracker",
            "half_life_switches": self.switches,
            "hysteresis": self.hysteresis,
            "window_share": round(self.window_share, 4),
            "budgets_read": round(self.budgets_read, 1),
        }


class _World:
    """The trace's objects as the engine's row source, change feed, miss feed and applier."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger | None,
        result: ReplayResult,
        *,
        epoch: datetime = EPOCH,
        meta: Meta = bench_meta,
    ) -> None:
        self.counts = DecayedCounts(
            half_life=settings.access.half_life, correlation=settings.access.correlation_window
        )
        self.born: dict[int, tuple[float, int]] = {}  # oid -> (created, size)
        self.home: dict[int, str] = {}
        self.home_since: dict[int, float] = {}
        self.dirty: set[int] = set()
        self.missed: set[int] = set()
        self.ledger = ledger
        self.result = result
        self.t = 0.0
        self.epoch = epoch
        self.meta = meta

    # RowSource
    def scan_columns(self, now: datetime, policies: object = None) -> Iterator[ColumnBatch]:
        ids = sorted(self.born)
        for i in range(0, len(ids), 10_000):
            yield ColumnBatch.of_rows(self.rows(ids[i : i + 10_000], now))

    def columns(self, ids: Sequence[int], now: datetime, policies: object = None) -> ColumnBatch:
        return ColumnBatch.of_rows(self.rows(ids, now))

    def rows(self, ids: Sequence[int], now: datetime) -> list[Row]:
        t = (now - self.epoch).total_seconds()
        return [self._row(oid, t) for oid in ids if oid in self.born]

    def predecessors(self, rows: Sequence[Row], now: datetime) -> list[Row]:
        return []  # every object of a trace has one version

    def _row(self, oid: int, t: float) -> Row:
        """The row CatalogRows would read for this object at ``t``."""
        created, size = self.born[oid]
        stats = self.counts.get(oid)
        epoch = self.epoch
        last, hits = (None, 0) if stats is None else (epoch + timedelta(seconds=stats[1]), stats[2])
        since = self.home_since.get(oid)
        tenant, namespace, key, content_type = self.meta(oid)
        facts = ObjectFacts(
            tenant=tenant,
            namespace=namespace,
            key=key,
            size=size,
            created_at=epoch + timedelta(seconds=created),
            home_tier=self.home[oid],
            content_type=content_type,
            last_access_at=last,
            access_score=self.counts.rate(oid, t),
            hits=hits,
            home_since=epoch + timedelta(seconds=since) if since is not None else None,
        )
        return Row(object_id=oid, version=1, facts=facts, home_store=self.home[oid], stored_size=size)

    # ChangeFeed / MissFeed
    def changed(self) -> list[int]:
        out, self.dirty = sorted(self.dirty), set()
        return out

    def missed_ids(self) -> list[int]:
        out, self.missed = sorted(self.missed), set()
        return out

    # Applier: a perfect mover, and fills that always succeed.
    def apply(self, plan: Plan) -> ApplyReport:
        report = ApplyReport()
        res, ledger = self.result, self.ledger
        for c in plan.changes:
            if c.action == "move" and c.to_tier is not None:
                res.moves += 1
                report.moves_queued += 1
                self.home[c.object_id] = c.to_tier
                self.home_since[c.object_id] = self.t
                # The switch puts it back in the change feed, as the mover's does.
                self.dirty.add(c.object_id)
                if ledger is not None:
                    ledger.move(c.object_id, c.to_tier, self.t)
            elif c.action in ("hot-admit", "hot-refill"):
                res.hot_admits += c.action == "hot-admit"
                report.hot_filled += 1
                if ledger is not None:
                    ledger.read(c.object_id)  # the fill reads the home once
            elif c.action == "hot-evict":
                res.hot_evicts += 1
                report.hot_evicted += 1
        return report


class _Misses:
    def __init__(self, world: _World) -> None:
        self.world = world

    def missed(self) -> list[int]:
        return self.world.missed_ids()


class Replay:
    """Drives one sequence of reads through the tiering engine; see the module docstring.

    Args:
        policies: the policy set (with the hot budget).
        settings: Liquid settings (access half-life, where new objects are born, planner knobs).
        cycle: requests between planning cycles (0: by time only).
        cycle_seconds: read time between planning cycles (None: by requests only).
        prices: per-tier prices for the cost ledger (None: no cost accounting).
        knobs: planner knobs (default: from ``settings.planner``).
        epoch: the instant read time 0 stands for.
        meta: each object's tenant, namespace, key and content type (policies select by them).
    """

    def __init__(
        self,
        policies: PolicySet,
        settings: Settings,
        *,
        cycle: int = 0,
        cycle_seconds: float | None = None,
        prices: dict[str, Price] | None = None,
        knobs: PlannerSettings | None = None,
        epoch: datetime = EPOCH,
        meta: Meta = bench_meta,
    ) -> None:
        if cycle <= 0 and cycle_seconds is None:
            raise ValueError("Replay needs cycle (requests) or cycle_seconds")
        self.policies = policies
        self.settings = settings
        self.cycle = cycle if cycle > 0 else math.inf
        self.cycle_seconds = cycle_seconds if cycle_seconds is not None else math.inf
        self.admit_interval = settings.daemon.admit_interval
        self.epoch = epoch
        self.now = epoch
        self.result = ReplayResult(ledger=Ledger(prices) if prices is not None else None)
        self.world = _World(settings, self.result.ledger, self.result, epoch=epoch, meta=meta)
        self.engine = TieringEngine(
            Planner(settings, knobs=knobs),
            self.world,
            self.world,
            policies=FixedPolicies(policies),
            feed=self.world,
            misses=_Misses(self.world),
            clock=lambda: self.now,
        )

    def __repr__(self) -> str:
        return f"Replay(cycle={self.cycle}, {self.engine!r})"

    def run(self, trace: Reads, *, keep_outcomes: bool = False) -> ReplayResult:
        res = self.result
        started = time.perf_counter()
        world, engine = self.world, self.engine
        ledger = res.ledger
        counts = world.counts
        born, home = world.born, world.home
        warm_max = self.settings.warm_max_object_size
        cycle, interval = self.cycle, self.admit_interval
        times, oids, sizes = trace.t.tolist(), trace.oid.tolist(), trace.size.tolist()
        self._pass(engine.cycle, times[0] if times else 0.0)  # the daemon's first cycle: a rebuild
        members = self._members()
        next_admit = -math.inf
        every = self.cycle_seconds
        next_cycle = (times[0] if times else 0.0) + every
        hits = hit_bytes = total_bytes = 0
        for i, (t, oid, size) in enumerate(zip(times, oids, sizes, strict=True)):
            if world.missed and t >= next_admit:
                self._pass(engine.admit, t)
                members = self._members()
                next_admit = t + interval
            total_bytes += size
            hit = oid in members
            if hit:
                hits += 1
                hit_bytes += size
            if keep_outcomes:
                res.outcomes.append(hit)
            if oid not in born:
                tier = "warm" if size <= warm_max else "cold"
                born[oid], home[oid] = (t, size), tier
                if ledger is not None:
                    ledger.create(oid, size, tier, t)
            elif ledger is not None:
                if hit:
                    ledger.hit(oid)  # served from hot: the home is not read
                else:
                    ledger.read(oid)  # a miss reads the home
            counts.note(oid, t)
            world.dirty.add(oid)
            if not hit:
                world.missed.add(oid)
            if (i + 1) % cycle == 0 or t >= next_cycle:
                self._pass(engine.cycle, t)
                members = self._members()
                if t >= next_cycle:
                    next_cycle = t + every
        res.requests = len(oids)
        res.hits, res.hit_bytes, res.bytes = hits, hit_bytes, total_bytes
        if engine.state is not None:
            res.evaluated = engine.state.evaluated
        if ledger is not None and times:
            ledger.close(times[-1])
        adaptive = engine.planner.adaptive
        if engine.planner.read_adaptive.enabled:
            adaptive = engine.planner.read_adaptive  # its half-life is in budgets read
        res.half_life, res.switches, res.hysteresis = adaptive.half_life, adaptive.switches, adaptive.bonus
        res.window_share, res.budgets_read = engine.planner.window.share, engine.planner.reads.now
        res.seconds = time.perf_counter() - started
        return res

    def _members(self) -> dict[int, int]:
        state = self.engine.state
        return state.hot.members if state is not None else {}

    def _pass(self, run: Any, t: float) -> None:
        started = time.perf_counter()
        self.now = self.epoch + timedelta(seconds=t)
        self.world.t = t
        plan = run()
        if plan is not None:
            if plan.kind == "admit":
                self.result.admits += 1
            else:
                self.result.cycles += 1
        self.result.plan_seconds += time.perf_counter() - started


__all__ = ["EPOCH", "Ledger", "Meta", "Price", "Reads", "Replay", "ReplayResult", "bench_meta"]
