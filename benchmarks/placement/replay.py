"""Replay a trace through the tiering engine the daemon runs.

:class:`Replay` wires a :class:`liquid.tiering.engine.TieringEngine` — the class ``liquid
daemon`` runs, with the same :class:`~liquid.tiering.planner.Planner`, ranked tiers, state and
passes — to a trace instead of a catalog and Redis, and calls the same entry points the
daemon's jobs call, at the trace's time (an injected clock):

* every read is counted by :class:`liquid.access.DecayedCounts` (the tracker's formula,
  :func:`liquid.access.count_read`), and the object goes into the change feed, as the
  daemon's access flush puts it there;
* a read is a **hit** when the object is a member of the engine's hot tier (production
  fills every admitted copy; the replay's applier does so at once); a miss is reported to
  the engine's miss feed, and :meth:`TieringEngine.admit` runs every ``admit_interval``
  seconds of trace time (the daemon's ``admit`` job, ``daemon.admit_interval``);
* every ``cycle`` requests :meth:`TieringEngine.cycle` plans what changed and came due (the
  daemon's ``cycle`` job); the first one is a rebuild;
* the plans' moves happen at once (a perfect mover), and the cost
  :class:`~benchmarks.placement.cost.Ledger` charges them: a hit costs no home read, a miss
  one, and each hot fill one more (the daemon's fill reads the home).

Rows are built as :class:`~liquid.tiering.rows.CatalogRows` builds them from the catalog
(the decayed score brought forward to ``now`` as reads/hour). An object's first request
creates it (written warm up to ``warm_max_object_size``, else cold, as the service does)
and counts as a read and a miss, as it does for the peers.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.placement.cost import Ledger, Price
from benchmarks.placement.traces import Trace
from liquid.access import DecayedCounts
from liquid.config import Settings
from liquid.policy.evaluate import ObjectFacts
from liquid.policy.loader import load_policy_text
from liquid.policy.models import PolicySet
from liquid.tiering.apply import ApplyReport
from liquid.tiering.engine import FixedPolicies, TieringEngine
from liquid.tiering.plan import Plan
from liquid.tiering.planner import Planner
from liquid.tiering.rows import ColumnBatch, Row
from liquid.tiering.values import PlannerSettings

POLICY = Path(__file__).with_name("policy.yaml")
#: The policy an operator would write for each kind of trace (:attr:`Trace.kind`); others get
#: ``POLICY``. One policy serves every Zipf and scan trace, whatever its density or drift.
POLICY_FOR = {"workflow": Path(__file__).with_name("policy-workflow.yaml")}
#: Settings (as in ``liquid.yaml``) an operator would set for each kind of deployment.
#: Workflow results are read in a burst right after they are written: a 10% admission window
#: serves the burst, and a 10-minute correlated-reference period keeps it from counting as
#: popularity.
SETTINGS_FOR: dict[str, dict[str, Any]] = {
    "workflow": {"access": {"correlation_window": 600}, "planner": {"hot_window": 0.1}},
}
#: Trace time 0; any fixed instant works, the planner only sees differences.
EPOCH = datetime(2030, 1, 1, tzinfo=UTC)
TENANT, NAMESPACE = "bench", "data"


def policies_for(
    hot_bytes: int, text: str | None = None, *, half_life: str | None = None, path: Path = POLICY
) -> PolicySet:
    """The policy in ``path`` (or ``text``) plus a global hot-tier budget of ``hot_bytes``.

    ``half_life`` (e.g. ``30m``) replaces the policy's ``accessHalfLife``, for experiments.
    """
    text = text if text is not None else path.read_text()
    if half_life is not None:
        text = re.sub(r"accessHalfLife: \S+", f"accessHalfLife: {half_life}", text)
    budget = f"""
---
apiVersion: liquid/v1
kind: Budget
metadata: {{name: hot-budget}}
spec:
  tiers:
    hot: {{maxBytes: {int(hot_bytes)}}}
"""
    return load_policy_text(text + budget, filename=str(path))


def settings_for(policies: PolicySet, extra: dict[str, Any] | None = None) -> Settings:
    """Settings whose tracker half-life is the policies' ``accessHalfLife``; objects are born cold.

    Born cold because the cost model makes warm a loss for all but the most read objects
    (see policy.yaml), and those get a hot copy. The hot cache takes objects of any size the
    trace has (``hot.max_object_size``), as the peers do.
    """
    half_life = policies.tiering[0].spec.access_half_life if policies.tiering else 3600.0
    extra = dict(extra or {})
    access = {"half_life": half_life, **extra.pop("access", {})}
    hot = {"max_object_size": 1 << 40, **extra.pop("hot", {})}
    return Settings(access=access, hot=hot, warm_max_object_size=0, **extra)


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
        }


class _World:
    """The trace's objects as the engine's row source, change feed, miss feed and applier."""

    def __init__(self, settings: Settings, ledger: Ledger | None, result: ReplayResult) -> None:
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

    # RowSource
    def scan_columns(self, now: datetime, policies: object = None) -> Iterator[ColumnBatch]:
        ids = sorted(self.born)
        for i in range(0, len(ids), 10_000):
            yield ColumnBatch.of_rows(self.rows(ids[i : i + 10_000], now))

    def columns(self, ids: Sequence[int], now: datetime, policies: object = None) -> ColumnBatch:
        return ColumnBatch.of_rows(self.rows(ids, now))

    def rows(self, ids: Sequence[int], now: datetime) -> list[Row]:
        t = (now - EPOCH).total_seconds()
        return [self._row(oid, t) for oid in ids if oid in self.born]

    def predecessors(self, rows: Sequence[Row], now: datetime) -> list[Row]:
        return []  # every object of a trace has one version

    def _row(self, oid: int, t: float) -> Row:
        """The row CatalogRows would read for this object at ``t``."""
        created, size = self.born[oid]
        stats = self.counts.get(oid)
        last, hits = (None, 0) if stats is None else (EPOCH + timedelta(seconds=stats[1]), stats[2])
        since = self.home_since.get(oid)
        facts = ObjectFacts(
            tenant=TENANT,
            namespace=NAMESPACE,
            key=str(oid),
            size=size,
            created_at=EPOCH + timedelta(seconds=created),
            home_tier=self.home[oid],
            last_access_at=last,
            access_score=self.counts.rate(oid, t),
            hits=hits,
            home_since=EPOCH + timedelta(seconds=since) if since is not None else None,
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
    """Drives one trace through the tiering engine; see the module docstring.

    Args:
        policies: the policy set (with the hot budget).
        settings: Liquid settings (access half-life, where new objects are born, planner knobs).
        cycle: requests between planning cycles.
        prices: per-tier prices for the cost ledger (None: no cost accounting).
        knobs: planner knobs (default: from ``settings.planner``).
    """

    def __init__(
        self,
        policies: PolicySet,
        settings: Settings,
        *,
        cycle: int,
        prices: dict[str, Price] | None = None,
        knobs: PlannerSettings | None = None,
    ) -> None:
        self.policies = policies
        self.settings = settings
        self.cycle = cycle
        self.admit_interval = settings.daemon.admit_interval
        self.now = EPOCH
        self.result = ReplayResult(ledger=Ledger(prices) if prices is not None else None)
        self.world = _World(settings, self.result.ledger, self.result)
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

    def run(self, trace: Trace, *, keep_outcomes: bool = False) -> ReplayResult:
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
            if (i + 1) % cycle == 0:
                self._pass(engine.cycle, t)
                members = self._members()
        res.requests = len(oids)
        res.hits, res.hit_bytes, res.bytes = hits, hit_bytes, total_bytes
        if engine.state is not None:
            res.evaluated = engine.state.evaluated
        if ledger is not None and times:
            ledger.close(times[-1])
        res.seconds = time.perf_counter() - started
        return res

    def _members(self) -> dict[int, int]:
        state = self.engine.state
        return state.hot.members if state is not None else {}

    def _pass(self, run: Any, t: float) -> None:
        started = time.perf_counter()
        self.now = EPOCH + timedelta(seconds=t)
        self.world.t = t
        plan = run()
        if plan is not None:
            if plan.kind == "admit":
                self.result.admits += 1
            else:
                self.result.cycles += 1
        self.result.plan_seconds += time.perf_counter() - started


def replay(
    trace: Trace,
    *,
    hot_bytes: int,
    cycle: int,
    prices: dict[str, Price] | None = None,
    policy_text: str | None = None,
    knobs: PlannerSettings | None = None,
    keep_outcomes: bool = False,
    half_life: str | None = None,
    policy: Path | None = None,
    settings: dict[str, Any] | None = None,
) -> ReplayResult:
    """Replay ``trace`` with a hot budget of ``hot_bytes``, planning every ``cycle`` requests.

    The policy is ``policy_text``, else the file ``policy``, else its kind's in ``POLICY_FOR``.
    """
    path = policy or POLICY_FOR.get(trace.kind, POLICY)
    policies = policies_for(hot_bytes, policy_text, half_life=half_life, path=path)
    extra = settings if settings is not None else SETTINGS_FOR.get(trace.kind)
    settings_ = settings_for(policies, extra)
    r = Replay(policies, settings_, cycle=cycle, prices=prices, knobs=knobs)
    return r.run(trace, keep_outcomes=keep_outcomes)
