"""Replay a trace through Liquid's production tracker, policy evaluation and planner.

No bytes move and no server runs, but every decision comes from production code:

* reads are counted by :class:`liquid.access.DecayedCounts`, which folds them with
  :func:`liquid.access.fold`, the formula :class:`~liquid.access.AccessTracker` uses;
* every ``cycle`` requests the daemon's cycle runs: :meth:`liquid.tiering.planner.Planner.plan`
  with a :class:`~liquid.tiering.planner.PlacementState` (incremental planning), under the trace's
  policy (``policy.yaml``; ``policy-workflow.yaml`` for the workflow trace, as an operator
  would write one per workload) plus a hot-tier Budget, with the trace's settings
  (``SETTINGS_FOR``), at the trace's time (an injected clock). It is fed
  the rows of the objects read since the last cycle, built as :meth:`Planner.rows` builds them
  from the catalog (decayed score → reads/hour at ``now``);
* a read that misses may be admitted at once by :meth:`HotTier.admit_on_read` (the same
  value-per-byte rule as the cycle, ranked by :meth:`Planner.hot_rank` at the same epoch
  time the cycle ranks at, so the two compare);
* reads between cycles are served from what the last plan placed: a hit when the object is in
  the planner's hot tier (:class:`~liquid.tiering.planner.HotTier`), else a read of its durable home,
  charged by the cost :class:`~benchmarks.placement.cost.Ledger` (a hot hit costs no home
  read; each hot fill costs one); the plan's moves are applied at once (a perfect mover).

An object's first request creates it (written warm up to ``warm_max_object_size``, else
cold, as the service does) and counts as a read and a miss, as it does for the peers.
"""

from __future__ import annotations

import re
import time
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
from liquid.tiering.planner import PlacementState, Planner, PlannerSettings, Row

POLICY = Path(__file__).with_name("policy.yaml")
#: The policy an operator would write for each standard trace; others get ``POLICY``.
POLICY_FOR = {"workflow": Path(__file__).with_name("policy-workflow.yaml")}
#: Settings (as in ``liquid.yaml``) an operator would set for each standard trace's deployment.
#: Workflow results are read in a burst right after they are written: a 10% admission window
#: serves the burst, and a 10-minute correlated-reference period keeps it from counting as
#: popularity (1% budget: 0.724 BHR, against 0.678 with a 30m half-life and neither).
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
    (see policy.yaml), and those get a hot copy.
    """
    half_life = policies.tiering[0].spec.access_half_life if policies.tiering else 3600.0
    extra = dict(extra or {})
    access = {"half_life": half_life, **extra.pop("access", {})}
    return Settings(access=access, warm_max_object_size=0, **extra)


@dataclass
class ReplayResult:
    """Hit counts and what the cycles cost."""

    requests: int = 0
    hits: int = 0
    bytes: int = 0
    hit_bytes: int = 0
    cycles: int = 0
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
            "plan_seconds": round(self.plan_seconds, 3),
            "seconds": round(self.seconds, 3),
            "rows_evaluated": self.evaluated,
            "moves": self.moves,
            "hot_admits": self.hot_admits,
            "hot_evicts": self.hot_evicts,
        }


class Replay:
    """Drives one trace through the production planner; see the module docstring.

    Args:
        policies: the policy set (with the hot budget).
        settings: Liquid settings (access half-life, where new objects are born).
        cycle: requests between planning cycles.
        prices: per-tier prices for the cost ledger (None: no cost accounting).
        knobs: planner knobs.
    """

    def __init__(
        self,
        policies: PolicySet,
        settings: Settings,
        *,
        cycle: int,
        prices: dict[str, Price] | None = None,
        knobs: PlannerSettings | None = None,
        admit_on_read: bool = True,
    ) -> None:
        self.admit_on_read = admit_on_read
        self.policies = policies
        self.settings = settings
        self.cycle = cycle
        self.now = EPOCH
        self.planner = Planner(None, settings, clock=lambda: self.now, knobs=knobs)  # type: ignore[arg-type]
        self.state = PlacementState()
        self.counts = DecayedCounts(
            half_life=settings.access.half_life, correlation=settings.access.correlation_window
        )
        self.ledger = Ledger(prices) if prices is not None else None
        self._born: dict[int, tuple[float, int, str]] = {}  # oid -> (created, size, birth tier)

    def __repr__(self) -> str:
        return f"Replay(cycle={self.cycle}, {self.state!r})"

    def _row(self, oid: int, t: float) -> Row:
        """The row :meth:`Planner.rows` would stream for this object from the catalog at ``t``."""
        known = self.state.rows.get(oid)
        created, size, born = self._born[oid]
        stats = self.counts.get(oid)
        home, home_since = born, None
        if known is not None:
            home, home_since = known.facts.home_tier, known.facts.home_since
        last, hits = (None, 0) if stats is None else (EPOCH + timedelta(seconds=stats[1]), stats[2])
        facts = ObjectFacts(
            tenant=TENANT,
            namespace=NAMESPACE,
            key=str(oid),
            size=size,
            created_at=EPOCH + timedelta(seconds=created),
            home_tier=home,
            last_access_at=last,
            access_score=self.counts.rate(oid, t),
            hits=hits,
            home_since=home_since,
        )
        return Row(object_id=oid, version=1, facts=facts, home_store=home, stored_size=size)

    def run(self, trace: Trace, *, keep_outcomes: bool = False) -> ReplayResult:
        res = ReplayResult(ledger=self.ledger)
        started = time.perf_counter()
        times = trace.t.tolist()
        oids = trace.oid.tolist()
        sizes = trace.size.tolist()
        warm_max = self.settings.warm_max_object_size
        ledger = self.ledger
        counts = self.counts
        born = self._born
        dirty: set[int] = set()
        cycle = self.cycle
        if self.state.hot is None:  # the first cycle creates it; an empty plan does so now
            self.planner.plan(self.policies, rows=(), state=self.state)
        assert self.state.hot is not None
        hot = self.state.hot.members
        admit = self.state.hot.admit_on_read if self.admit_on_read else None
        rank_of = self.planner.hot_rank
        prices = self.planner.prices(self.policies, TENANT)
        epoch = EPOCH.timestamp()  # ranks are forward-decayed from the Unix epoch, as in the plan
        hits = hit_bytes = total_bytes = 0
        for i, (t, oid, size) in enumerate(zip(times, oids, sizes, strict=True)):
            total_bytes += size
            hit = oid in hot
            if hit:
                hits += 1
                hit_bytes += size
            if keep_outcomes:
                res.outcomes.append(hit)
            if oid not in born:
                tier = "warm" if size <= warm_max else "cold"
                born[oid] = (t, size, tier)
                if ledger is not None:
                    ledger.create(oid, size, tier, t)
            elif ledger is not None and not hit:
                ledger.read(oid)  # a hot hit never touches the home; the copy was paid for when filled
            counts.note(oid, t)
            dirty.add(oid)
            if not hit and admit is not None:
                rank = rank_of(size, counts.rate(oid, t), epoch + t, prices)
                admit(oid, size, rank)  # filled from the read that just missed: no extra home read
            if (i + 1) % cycle == 0:
                self._cycle(t, dirty, res)
                dirty = set()
                assert self.state.hot is not None
                hot = self.state.hot.members
        res.requests = len(oids)
        res.hits, res.hit_bytes, res.bytes = hits, hit_bytes, total_bytes
        res.evaluated = self.state.evaluated
        if ledger is not None and len(times):
            ledger.close(times[-1])
        res.seconds = time.perf_counter() - started
        return res

    def _cycle(self, t: float, dirty: set[int], res: ReplayResult) -> None:
        started = time.perf_counter()
        self.now = EPOCH + timedelta(seconds=t)
        rows = [self._row(oid, t) for oid in dirty]
        plan = self.planner.plan(self.policies, rows=rows, state=self.state)
        for c in plan.changes:
            if c.action == "move" and c.to_tier is not None:
                res.moves += 1
                if self.ledger is not None:
                    self.ledger.move(c.object_id, c.to_tier, t)
            elif c.action == "hot-admit":
                res.hot_admits += 1
                if self.ledger is not None:
                    self.ledger.read(c.object_id)  # the fill reads the home once
            elif c.action == "hot-evict":
                res.hot_evicts += 1
        res.cycles += 1
        res.plan_seconds += time.perf_counter() - started


def replay(
    trace: Trace,
    *,
    hot_bytes: int,
    cycle: int,
    prices: dict[str, Price] | None = None,
    policy_text: str | None = None,
    knobs: PlannerSettings | None = None,
    keep_outcomes: bool = False,
    admit_on_read: bool = True,
    half_life: str | None = None,
    policy: Path | None = None,
    settings: dict[str, Any] | None = None,
) -> ReplayResult:
    """Replay ``trace`` with a hot budget of ``hot_bytes``, planning every ``cycle`` requests.

    The policy is ``policy_text``, else the file ``policy``, else the trace's in ``POLICY_FOR``.
    """
    path = policy or POLICY_FOR.get(trace.name, POLICY)
    policies = policies_for(hot_bytes, policy_text, half_life=half_life, path=path)
    extra = settings if settings is not None else SETTINGS_FOR.get(trace.name)
    settings_ = settings_for(policies, extra)
    r = Replay(policies, settings_, cycle=cycle, prices=prices, knobs=knobs, admit_on_read=admit_on_read)
    return r.run(trace, keep_outcomes=keep_outcomes)
