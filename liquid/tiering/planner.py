"""The planner: where every object should live, within budgets, and why.

One cycle:

1. **Facts.** Stream the live catalog (objects + access stats + execution finish times
   + the time a newer version superseded each object) into :class:`ObjectFacts`; the
   decayed score is brought forward to ``now`` and turned into reads/hour.
2. **Policy.** :func:`liquid.policy.evaluate` gives each object its tier, action and
   reason. ``hot`` means "keep a cache copy"; the durable home stays where it is (reads
   come from the copy, so moving the home warm would buy storage and a write for nothing —
   the placement benchmark showed hot spells costing more in moves than in memory).
3. **Budgets.** For every Budget (per tenant first, then global) and every tier from the
   hottest down, when the tier's bytes exceed ``maxBytes`` (or the bytes
   ``maxMonthlyCost`` buys at the tier's price), objects leave it in order of *value
   per byte* — expected reads/month * (request + retrieval price saved + latency
   value saved) / size — lowest first, to the next colder tier. This is the greedy
   answer to the fractional knapsack, optimal up to the last object. Objects already
   resident get their value multiplied by ``hysteresis`` (default 1.25), so two
   near-equal objects do not trade places every cycle; objects inside their
   ``minResidency`` never move. For the hot tier, ``settings.planner.hot_objective``
   decides what a hit is worth: ``bytes`` (default) counts only the transfer it saves,
   so hot copies rank by reads/hour whatever their size; ``time`` adds first-byte
   latency, which favours small objects. Incremental plans (:class:`PlacementState`)
   keep a copy the policy no longer asks for until its room is needed
   (``keep_while_room``), and an archived object that earns a hot copy also moves its
   home back up where the policy's non-hot rules allow.
4. **Result.** A :class:`Plan`: per object only what changes (moves, hot admissions and
   evictions, expirations, holds), plus counts, bytes and monthly cost per tier before
   and after, and every budget's use. Deterministic for a given catalog, policy set and
   clock: ties are broken by object id.

:func:`apply_plan` turns a plan into journal rows (moves, purges) and hot-cache fills;
the mover executes the journal.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Engine, text

from liquid.access import decay, rate_per_hour
from liquid.config import Settings
from liquid.policy.checks import CatalogSummary, TierUsage, budget_warnings
from liquid.policy.evaluate import Decision, ObjectFacts, evaluate, evaluate_policy, select_policy
from liquid.policy.models import TIERS, PolicySet, TieringPolicy, TierPrice, format_duration, format_rate
from liquid.refs import ResultRef
from liquid.units import format_size

GiB = 1024**3
HOURS_PER_MONTH = 730.0
_COLDER = {"hot": "warm", "warm": "cold", "cold": "archive", "archive": None}
_TEMP = {tier: i for i, tier in enumerate(TIERS)}

#: Typical read latency per tier (seconds to the first byte), valued at ``latency_value_per_s`` per read.
DEFAULT_LATENCY = {"hot": 0.0002, "warm": 0.001, "cold": 0.02, "archive": 0.05}
#: Typical read throughput per tier (bytes/s) once the first byte arrives: a read of ``n`` bytes
#: takes ``latency + n / throughput``. Redis over a LAN link, PostgreSQL bytea/TOAST, one S3 GET stream.
DEFAULT_THROUGHPUT = {"hot": 1.0e9, "warm": 2.5e8, "cold": 1.0e8, "archive": 1.0e8}


@dataclass(frozen=True, slots=True)
class Prices:
    """One tier's prices, whichever source they came from (a CostModel or Settings.cost_model)."""

    gb_month: float
    per_read: float
    retrieval_per_gb: float

    @classmethod
    def from_tier_price(cls, p: TierPrice) -> Prices:
        return cls(p.storage_per_gb_month, p.reads_per_1k / 1000, p.retrieval_per_gb)


@dataclass(slots=True)
class Row:
    """One live object as the planner sees it."""

    object_id: int
    version: int
    facts: ObjectFacts
    home_store: str
    stored_size: int
    decision: Decision | None = None
    #: Durable tier the object should end in (never ``hot``) and whether it wants a hot copy.
    target: str = ""
    hot: bool = False
    pinned: bool = False
    rate: float = 0.0

    @property
    def uri(self) -> str:
        f = self.facts
        return ResultRef(f.tenant, f.namespace, f.key, self.version).uri


@dataclass(frozen=True, slots=True)
class Change:
    """One thing the plan does to one object."""

    object_id: int
    uri: str
    size: int
    action: str  # move | expire | hold | hot-admit | hot-evict
    from_tier: str
    to_tier: str | None
    policy: str | None
    rule: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "object_id": self.object_id,
            "uri": self.uri,
            "size": self.size,
            "action": self.action,
            "from": self.from_tier,
            "to": self.to_tier,
            "policy": self.policy,
            "rule": self.rule,
            "reason": self.reason,
        }


@dataclass(slots=True)
class BudgetUse:
    budget: str
    tenant: str | None
    tier: str | None
    limit_bytes: int | None
    limit_cost: float | None
    bytes_before: int = 0
    bytes_after: int = 0
    cost_before: float = 0.0
    cost_after: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.limit_bytes is None or self.bytes_after <= self.limit_bytes) and (
            self.limit_cost is None or self.cost_after <= self.limit_cost + 1e-9
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "tenant": self.tenant,
            "tier": self.tier,
            "limit_bytes": self.limit_bytes,
            "limit_monthly_cost": self.limit_cost,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "monthly_cost_before": round(self.cost_before, 6),
            "monthly_cost_after": round(self.cost_after, 6),
            "ok": self.ok,
        }


@dataclass
class Plan:
    """What one planning cycle decided."""

    at: datetime
    policy_version: int | None
    objects: int = 0
    changes: list[Change] = field(default_factory=list)
    bytes_before: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIERS, 0))
    bytes_after: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIERS, 0))
    cost_before: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIERS, 0.0))
    cost_after: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIERS, 0.0))
    budgets: list[BudgetUse] = field(default_factory=list)
    #: Budgets the catalog can never meet (held or pinned bytes above a limit), with numbers.
    warnings: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def __repr__(self) -> str:
        return f"Plan(at={self.at.isoformat()}, objects={self.objects}, changes={len(self.changes)})"

    def count(self, action: str) -> tuple[int, int]:
        """(objects, bytes) of one action."""
        hits = [c for c in self.changes if c.action == action]
        return len(hits), sum(c.size for c in hits)

    def moves(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(from, to) → (objects, bytes) of the durable moves."""
        out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for c in self.changes:
            if c.action == "move" and c.to_tier is not None:
                out[(c.from_tier, c.to_tier)][0] += 1
                out[(c.from_tier, c.to_tier)][1] += c.size
        return {
            k: (v[0], v[1]) for k, v in sorted(out.items(), key=lambda kv: (_TEMP[kv[0][0]], _TEMP[kv[0][1]]))
        }

    def to_json(self, *, changes: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "at": self.at.isoformat(),
            "policy_version": self.policy_version,
            "objects": self.objects,
            "moves": [
                {"from": f, "to": t, "objects": n, "bytes": b} for (f, t), (n, b) in self.moves().items()
            ],
            "expirations": dict(zip(("objects", "bytes"), self.count("expire"), strict=True)),
            "legal_holds": dict(zip(("objects", "bytes"), self.count("hold"), strict=True)),
            "hot_admissions": dict(zip(("objects", "bytes"), self.count("hot-admit"), strict=True)),
            "hot_evictions": dict(zip(("objects", "bytes"), self.count("hot-evict"), strict=True)),
            "tiers": {
                t: {
                    "bytes_before": self.bytes_before[t],
                    "bytes_after": self.bytes_after[t],
                    "monthly_cost_before": round(self.cost_before[t], 6),
                    "monthly_cost_after": round(self.cost_after[t], 6),
                }
                for t in TIERS
            },
            "budgets": [b.to_json() for b in self.budgets],
            "warnings": list(self.warnings),
            "duration_s": round(self.duration_s, 3),
        }
        if changes:
            out["changes"] = [c.to_json() for c in self.changes]
        return out

    def render(self) -> str:
        """A terraform-plan-like summary for people."""
        lines = [f"Liquid plan at {self.at.isoformat(timespec='seconds')} over {self.objects} objects"]
        lines.append(f"(policy version {self.policy_version if self.policy_version else 'from files'})")
        lines.append("")
        moves = self.moves()
        if not moves and not self.changes:
            lines.append("No changes. Every object is where its policy wants it.")
        for (f, t), (n, b) in moves.items():
            sign = "+" if _TEMP[t] < _TEMP[f] else "-"
            lines.append(f"  {sign} move {f:>7} → {t:<7} {n:>9} objects  {format_size(b):>10}")
        for action, label in (
            ("hot-admit", "+ cache in hot"),
            ("hot-evict", "- drop from hot"),
            ("expire", "- expire"),
            ("hold", "~ keep (legal hold)"),
        ):
            n, b = self.count(action)
            if n:
                lines.append(f"  {label:<26} {n:>9} objects  {format_size(b):>10}")
        lines.append("")
        lines.append(f"  {'tier':<8} {'bytes now':>12} {'after':>12} {'$/month now':>12} {'after':>12}")
        for t in TIERS:
            lines.append(
                f"  {t:<8} {format_size(self.bytes_before[t]):>12} {format_size(self.bytes_after[t]):>12}"
                f" {self.cost_before[t]:>12.4f} {self.cost_after[t]:>12.4f}"
            )
        if self.budgets:
            lines.append("")
            lines.append("  budgets:")
            for u in self.budgets:
                scope = f"{u.budget}{' (' + u.tenant + ')' if u.tenant else ''} {u.tier or 'all tiers'}"
                limit = " and ".join(
                    x
                    for x in (
                        f"≤ {format_size(u.limit_bytes)}" if u.limit_bytes is not None else "",
                        f"≤ {u.limit_cost:.2f}/month" if u.limit_cost is not None else "",
                    )
                    if x
                )
                state = "ok" if u.ok else "OVER"
                lines.append(
                    f"    {scope:<40} {limit:<28} after: {format_size(u.bytes_after)}, "
                    f"{u.cost_after:.2f}/month  [{state}]"
                )
        if self.warnings:
            lines.append("")
            lines.append("  warnings:")
            lines.extend(f"    {w}" for w in self.warnings)
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class PlannerSettings:
    """Knobs of the value model; defaults are documented in the module docstring."""

    latency: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LATENCY))
    throughput: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THROUGHPUT))
    latency_value_per_s: float = 1e-4
    hysteresis: float = 1.25
    #: A hot copy the policy no longer wants stays while the hot budget has room, first in line
    #: to go (see :meth:`HotTier.release`); memory already paid for keeps serving reads.
    keep_while_room: bool = True
    #: ``bytes``: a hot hit is worth the bytes it keeps off the home (no first-byte latency term,
    #: so the hot tier ranks by reads/hour); ``time``: the read time it saves (see read_saving).
    hot_objective: Literal["bytes", "time"] = "bytes"
    #: Share of the hot budget for the read-path window (see :meth:`HotTier.admit_on_read`).
    hot_window: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> PlannerSettings:
        """The knobs ``settings.planner`` sets; latency and throughput keep their defaults."""
        c = settings.planner
        return cls(
            hysteresis=c.hysteresis,
            keep_while_room=c.keep_while_room,
            hot_objective=c.hot_objective,
            hot_window=c.hot_window,
        )


class Planner:
    """Plans placements for a catalog. Everything it needs comes through the constructor.

    Args:
        engine: the catalog.
        settings: for the tracker half-life and the fallback cost model.
        clock: current UTC time.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        clock: Callable[[], datetime],
        knobs: PlannerSettings | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.knobs = knobs or PlannerSettings.from_settings(settings)
        self._without_hot: dict[int, tuple[TieringPolicy, TieringPolicy]] = {}

    def __repr__(self) -> str:
        return f"Planner(half_life={self.settings.access.half_life}s)"

    # ------------------------------------------------------------------ facts

    def rows(self, *, batch: int = 5000, ref: ResultRef | None = None) -> Iterator[Row]:
        """Every live object (or just ``ref``'s), streamed in id order."""
        where = "o.state = 'live'"
        params: dict[str, Any] = {}
        if ref is not None:
            where += " AND o.tenant_id = :t AND o.namespace = :n AND o.key = :k AND o.version = :v"
            params = {"t": ref.tenant, "n": ref.namespace, "k": ref.key, "v": ref.version}
        sql = text(
            f"""
            SELECT o.id, o.tenant_id, o.namespace, o.key, o.version, o.size, o.stored_size,
                   o.content_type, o.tags, o.classification, o.created_at, o.home_tier, o.home_store,
                   o.home_since, o.legal_hold, o.scope, e.finished_at, a.score, a.hits, a.last_access_at,
                   n.created_at AS superseded_at
            FROM objects o
            LEFT JOIN access_stats a ON a.object_id = o.id
            LEFT JOIN executions e ON e.tenant_id = o.tenant_id AND e.execution_id = o.execution_id
            LEFT JOIN objects n ON n.tenant_id = o.tenant_id AND n.namespace = o.namespace
                               AND n.key = o.key AND n.version = o.version + 1
            WHERE {where}
            ORDER BY o.id
            """
        )
        now = self.clock()
        h = self.settings.access.half_life
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(sql, params)
            for r in result:
                score = 0.0
                if r.score is not None and r.last_access_at is not None:
                    score = decay(float(r.score), (now - r.last_access_at).total_seconds(), h)
                facts = ObjectFacts(
                    tenant=r.tenant_id,
                    namespace=r.namespace,
                    key=r.key,
                    size=int(r.size),
                    created_at=r.created_at,
                    home_tier=r.home_tier,
                    content_type=r.content_type,
                    tags=r.tags or {},
                    classification=r.classification,
                    last_access_at=r.last_access_at,
                    access_score=rate_per_hour(score, h),
                    hits=int(r.hits or 0),
                    home_since=r.home_since,
                    legal_hold=bool(r.legal_hold),
                    scope=r.scope,
                    execution_finished_at=r.finished_at,
                    superseded_at=r.superseded_at,
                )
                yield Row(
                    object_id=int(r.id),
                    version=int(r.version),
                    facts=facts,
                    home_store=r.home_store,
                    stored_size=int(r.stored_size),
                )

    def row(self, ref: ResultRef) -> Row | None:
        """One live object's facts, or None."""
        found = list(self.rows(ref=ref))
        return found[0] if found else None

    # ------------------------------------------------------------------- plan

    def plan(
        self,
        policies: PolicySet,
        *,
        policy_version: int | None = None,
        rows: Iterable[Row] | None = None,
        state: PlacementState | None = None,
    ) -> Plan:
        """Plan one cycle (a dry run: nothing is changed).

        Args:
            policies: the policy set.
            policy_version: recorded in the plan.
            rows: the objects to plan (default: the whole live catalog). With ``state``, only
                the objects whose facts changed since the last cycle (read, written, moved).
            state: plan incrementally (see :class:`PlacementState`): only ``rows`` and the
                objects whose decision was due to change are evaluated.
        """
        if state is not None:
            return self._plan_incremental(policies, state, rows or (), policy_version)
        started = datetime.now(UTC)
        now = self.clock()
        plan = Plan(at=now, policy_version=policy_version)
        kept: list[Row] = []
        for row in rows if rows is not None else self.rows():
            plan.objects += 1
            f = row.facts
            d = evaluate(policies, f, now, with_next_change=False)
            row.decision = d
            row.rate = f.access_score
            home = f.home_tier
            plan.bytes_before[home] += f.size
            if d.action == "expire":
                plan.changes.append(self._change(row, "expire", None))
                continue
            if d.action == "hold":
                plan.changes.append(self._change(row, "hold", home))
            row.hot = d.tier == "hot"
            # A hot copy serves the reads: the durable home stays where it is, unless it is
            # colder than the policy allows an object this active (see durable_home).
            row.target = self.durable_home(policies, f, now) if row.hot else d.tier
            # Hysteresis: an object inside its minResidency stays put, budgets or not.
            row.pinned = self._resident_too_briefly(policies, f, now)
            if d.action == "keep":
                row.target = home
            kept.append(row)
        plan.warnings = [str(p) for p in budget_warnings(policies, _summary(kept))]
        plan.warnings += unreachable_rates(policies, self.settings.access.correlation_window)
        self._enforce_budgets(policies, kept, plan)
        for row in kept:
            f = row.facts
            plan.bytes_after[row.target] += f.size
            if row.hot:
                plan.bytes_after["hot"] += f.size
                plan.changes.append(self._change(row, "hot-admit", "hot"))
            if row.target != f.home_tier:
                plan.changes.append(self._change(row, "move", row.target))
        self._costs(policies, plan, kept)
        plan.changes.sort(key=lambda c: (c.action, c.object_id))
        plan.duration_s = (datetime.now(UTC) - started).total_seconds()
        return plan

    def _plan_incremental(
        self, policies: PolicySet, state: PlacementState, rows: Iterable[Row], policy_version: int | None
    ) -> Plan:
        started = datetime.now(UTC)
        now = self.clock()
        t = now.timestamp()
        plan = Plan(at=now, policy_version=policy_version)
        plan.bytes_before = dict(state.tier_bytes)
        if state.policies is not policies:
            # A new policy set can change any decision: evaluate everything once.
            state.policies = policies
            state.prices.clear()
            if state.hot is None:
                state.hot = HotTier(
                    _hot_limit(policies), hysteresis=self.knobs.hysteresis, window=self.knobs.hot_window
                )
            state.hot.limit = _hot_limit(policies)
            dirty = {oid: state.rows[oid] for oid in state.rows}
        else:
            dirty = {}
        hot = state.hot
        assert hot is not None
        for row in rows:
            dirty[row.object_id] = row
            state.scored_at[row.object_id] = t
        h = self.settings.access.half_life
        while state.due and state.due[0][0] <= t:
            when, oid = heapq.heappop(state.due)
            if state.next_due.get(oid) != when or oid in dirty or oid not in state.rows:
                continue  # superseded by a later schedule, or already being planned
            old = state.rows[oid]
            rate = decay(old.facts.access_score, t - state.scored_at.get(oid, t), h)
            old.facts = replace(old.facts, access_score=rate)
            state.scored_at[oid] = t
            dirty[oid] = old
        state.evaluated += len(dirty)
        moved: list[Row] = []
        for oid in sorted(dirty):
            row = dirty[oid]
            f = row.facts
            # A member is judged as being in hot, so promoteAbove/demoteBelow act as hysteresis
            # around the hot tier; one that leaves hot is judged again from its durable home.
            member = oid in hot.members
            d = evaluate(policies, replace(f, home_tier="hot") if member else f, now)
            if member and d.tier != "hot":
                d = evaluate(policies, f, now)
            next_at = d.next_change_at
            if d.tier == "hot" and not member:
                next_at = evaluate(policies, replace(f, home_tier="hot"), now).next_change_at
            row.decision = d
            row.rate = f.access_score
            previous = state.rows.get(oid)
            if previous is not None:
                state.tier_bytes[previous.facts.home_tier] -= previous.facts.size
            if d.action == "expire":
                plan.changes.append(self._change(row, "expire", None))
                state.forget(oid)
                if hot.withdraw(oid):
                    plan.changes.append(self._change(row, "hot-evict", None))
                continue
            if d.action == "hold":
                plan.changes.append(self._change(row, "hold", f.home_tier))
            wants_hot = d.tier == "hot"
            if wants_hot:
                row.target = self.durable_home(policies, f, now)
            else:
                row.target = f.home_tier if d.action == "keep" else d.tier
            state.rows[oid] = row
            state.tier_bytes[f.home_tier] += f.size
            if next_at is not None:
                when = max(next_at.timestamp(), t + 1e-6)
                state.next_due[oid] = when
                heapq.heappush(state.due, (when, oid))
            else:
                state.next_due.pop(oid, None)
            if wants_hot:
                prices = state.prices.get(f.tenant)
                if prices is None:
                    prices = state.prices[f.tenant] = self.prices(policies, f.tenant)
                hot.offer(oid, f.size, self.hot_priority(row, prices, now, resident=False))
            elif self.knobs.keep_while_room and hot.limit is not None:
                hot.release(oid)
            elif hot.withdraw(oid):
                row.hot = False
                plan.changes.append(self._change(row, "hot-evict", None))
            if row.target != f.home_tier:
                plan.changes.append(self._change(row, "move", row.target))
                moved.append(row)
        admitted, evicted = hot.settle()
        for oid in evicted:
            row = state.rows[oid]
            row.hot = False
            plan.changes.append(self._change(row, "hot-evict", None))
        for oid in admitted:
            row = state.rows[oid]
            row.hot = True
            plan.changes.append(self._change(row, "hot-admit", "hot"))
        for row in dirty.values():
            row.hot = row.object_id in hot.members
        # The state assumes its moves happen; a caller whose mover failed feeds the row back.
        for row in moved:
            f = row.facts
            state.tier_bytes[f.home_tier] -= f.size
            state.tier_bytes[row.target] += f.size
            row.facts = replace(f, home_tier=row.target, home_since=now)
        plan.objects = len(state.rows)
        plan.bytes_after = dict(state.tier_bytes)
        plan.bytes_after["hot"] = hot.bytes
        plan.changes.sort(key=lambda c: (c.action, c.object_id))
        plan.duration_s = (datetime.now(UTC) - started).total_seconds()
        return plan

    def durable_home(self, policies: PolicySet, f: ObjectFacts, now: datetime) -> str:
        """Where an object with a hot copy keeps its home: where it is, or warmer if the policy
        without its hot rules would bring it up (an archived object read again goes back to cold
        by ``restoreOnAccess`` or ``promoteAbove``, so its hot misses stop paying retrieval).
        """
        policy = select_policy(policies, f)
        if policy is None or all(r.tier != "hot" for r in policy.spec.rules):
            return f.home_tier
        durable = self._without_hot.get(id(policy))
        if durable is None or durable[0] is not policy:
            rules = tuple(r for r in policy.spec.rules if r.tier != "hot")
            spec = policy.spec.model_copy(update={"rules": rules})
            durable = (policy, policy.model_copy(update={"spec": spec}))
            self._without_hot[id(policy)] = durable
        d = evaluate_policy(durable[1], f, now, with_next_change=False)
        if d.action == "move" and _TEMP[d.tier] < _TEMP[f.home_tier]:
            return d.tier
        return f.home_tier

    @staticmethod
    def _resident_too_briefly(policies: PolicySet, f: ObjectFacts, now: datetime) -> bool:
        policy = select_policy(policies, f)
        if policy is None:
            return False
        since = f.home_since or f.created_at
        return (now - since).total_seconds() < policy.spec.min_residency

    def _change(self, row: Row, action: str, to: str | None) -> Change:
        d = row.decision
        assert d is not None
        wanted = row.facts.home_tier if d.tier == "hot" else d.tier
        overridden = (action == "move" and to != wanted) or (action == "hot-admit" and not row.hot)
        return Change(
            object_id=row.object_id,
            uri=row.uri,
            size=row.facts.size,
            action=action,
            from_tier=row.facts.home_tier,
            to_tier=to,
            policy=d.policy,
            rule=d.rule,
            reason=budget_reason(row) if overridden else d.reason,
        )

    # ---------------------------------------------------------------- budgets

    def prices(self, policies: PolicySet, tenant: str | None) -> dict[str, Prices]:
        """Prices per tier for a tenant: its CostModel, the default CostModel, else Settings.cost_model."""
        model = policies.cost_model_for(tenant)
        out: dict[str, Prices] = {}
        for tier in TIERS:
            price = getattr(model.spec.tiers, tier) if model is not None else None
            if price is not None:
                out[tier] = Prices.from_tier_price(price)
            else:
                c = self.settings.cost_model[tier]  # type: ignore[index]
                out[tier] = Prices(c.gb_month, c.per_1k_reads / 1000, c.retrieval_per_gb)
        return out

    def read_saving(self, size: int, tier: str, prices: dict[str, Prices]) -> float:
        """Dollars one read of ``size`` bytes saves when served from ``tier`` instead of the next colder.

        Request and retrieval prices, plus the read time saved (first byte and transfer, see
        :data:`DEFAULT_THROUGHPUT`) at ``latency_value_per_s``. The transfer term makes large
        objects worth their bytes: without it value per byte falls as 1/size and a cache fills
        with small objects, good for the object hit ratio but poor for the byte hit ratio.
        With ``hot_objective="bytes"`` (the default) a hot hit saves only transfer time, so
        hot value per byte is proportional to reads/hour whatever the size: the placement
        benchmark measured it 0.01 to 0.03 higher in byte hit ratio than ``time``.
        """
        colder = _COLDER[tier]
        if colder is None:
            return 0.0
        gb = size / GiB
        p, q = prices[tier], prices[colder]
        k = self.knobs
        bytes_only = tier == "hot" and k.hot_objective == "bytes"
        first_byte = 0.0 if bytes_only else k.latency[colder] - k.latency[tier]
        seconds = first_byte + size * (1.0 / k.throughput[colder] - 1.0 / k.throughput[tier])
        return (
            (q.per_read - p.per_read)
            + (q.retrieval_per_gb - p.retrieval_per_gb) * gb
            + (seconds * k.latency_value_per_s)
        )

    def value_density(self, row: Row, tier: str, prices: dict[str, Prices]) -> float:
        """Monthly value per byte of keeping ``row`` in ``tier`` rather than the next colder tier.

        ``reads/month x saving per read`` (:meth:`read_saving`), times ``hysteresis`` for an
        object already there, minus the extra storage; divided by the size.
        """
        colder = _COLDER[tier]
        size = max(row.facts.size, 1)
        if colder is None:
            return math.inf
        gb = size / GiB
        p, q = prices[tier], prices[colder]
        saved = row.rate * HOURS_PER_MONTH * self.read_saving(size, tier, prices)
        resident = row.facts.home_tier == tier or (tier == "hot" and row.hot)
        if resident and saved > 0:
            # Hysteresis scales the savings, not the net value: every object's rate decays at
            # the same speed, so the order of residents and newcomers does not drift with time
            # and the hot tier can be kept incrementally (see HotTier).
            saved *= self.knobs.hysteresis
        storage_extra = (p.gb_month - q.gb_month) * gb if tier != "hot" else p.gb_month * gb
        return (saved - storage_extra) / size

    def hot_priority(self, row: Row, prices: dict[str, Prices], now: datetime, *, resident: bool) -> float:
        """A time-invariant rank for the hot tier: log of the hot savings per byte, forward-decayed.

        Orders objects exactly as :meth:`value_density` does for ``hot`` (the storage price per
        byte is the same for every object of a tenant), but adds ``t / half_life * ln 2``, so a
        rank computed at one cycle still compares correctly with one computed later: untouched
        objects need not be re-ranked.
        """
        rank = self.hot_rank(row.facts.size, row.rate, now.timestamp(), prices)
        return rank + math.log(self.knobs.hysteresis) if resident else rank

    def hot_rank(self, size: int, rate: float, at: float, prices: dict[str, Prices]) -> float:
        """:meth:`hot_priority` from its parts (reads/hour at epoch second ``at``), for the read path."""
        size = max(size, 1)
        saved = rate * self.read_saving(size, "hot", prices)
        if saved <= 0:
            return -math.inf
        return math.log(saved / size) + at / self.settings.access.half_life * math.log(2)

    def _limits(
        self, policies: PolicySet, prices_of: Callable[[str | None], dict[str, Prices]]
    ) -> list[BudgetUse]:
        uses = []
        # Tenant budgets first: they are the tighter, more specific promise.
        for budget in sorted(policies.budgets, key=lambda b: (b.spec.tenant is None, b.name)):
            tenant = budget.spec.tenant
            prices = prices_of(tenant)
            for tier, limit in budget.spec.tiers.items():
                cap_bytes = limit.max_bytes
                if limit.max_monthly_cost is not None and prices[tier].gb_month > 0:
                    by_cost = int(limit.max_monthly_cost / prices[tier].gb_month * GiB)
                    cap_bytes = by_cost if cap_bytes is None else min(cap_bytes, by_cost)
                uses.append(BudgetUse(budget.name, tenant, tier, cap_bytes, limit.max_monthly_cost))
            if budget.spec.max_bytes is not None or budget.spec.max_monthly_cost is not None:
                uses.append(
                    BudgetUse(budget.name, tenant, None, budget.spec.max_bytes, budget.spec.max_monthly_cost)
                )
        return uses

    def _enforce_budgets(self, policies: PolicySet, rows: list[Row], plan: Plan) -> None:
        cache: dict[str | None, dict[str, Prices]] = {}

        def prices_of(tenant: str | None) -> dict[str, Prices]:
            if tenant not in cache:
                cache[tenant] = self.prices(policies, tenant)
            return cache[tenant]

        plan.budgets = self._limits(policies, prices_of)
        for use in plan.budgets:
            tier = use.tier
            if tier is None or use.limit_bytes is None:
                continue
            members = [
                r
                for r in rows
                if (use.tenant is None or r.facts.tenant == use.tenant)
                and (r.hot if tier == "hot" else r.target == tier)
            ]
            total = sum(r.facts.size for r in members)
            if total <= use.limit_bytes:
                continue
            colder = _COLDER[tier]
            if colder is None and tier != "hot":
                continue  # nothing colder than archive: reported as over budget
            movable = [r for r in members if tier == "hot" or not r.pinned]
            movable.sort(key=lambda r: (self.value_density(r, tier, prices_of(r.facts.tenant)), r.object_id))
            for r in movable:
                if total <= use.limit_bytes:
                    break
                total -= r.facts.size
                if tier == "hot":
                    r.hot = False
                else:
                    assert colder is not None
                    r.target = colder
                    r.hot = False

    def _costs(self, policies: PolicySet, plan: Plan, rows: list[Row]) -> None:
        cache: dict[str, dict[str, Prices]] = {}
        for r in rows:
            t = r.facts.tenant
            if t not in cache:
                cache[t] = self.prices(policies, t)
            p = cache[t]
            gb = r.facts.size / GiB
            plan.cost_before[r.facts.home_tier] += p[r.facts.home_tier].gb_month * gb
            plan.cost_after[r.target] += p[r.target].gb_month * gb
            if r.hot:
                plan.cost_after["hot"] += p["hot"].gb_month * gb
        for use in plan.budgets:
            members = [r for r in rows if use.tenant is None or r.facts.tenant == use.tenant]
            for r in members:
                p = cache[r.facts.tenant]
                gb = r.facts.size / GiB
                before_tiers = [r.facts.home_tier]
                after_tiers = [r.target] + (["hot"] if r.hot else [])
                if use.tier is None or use.tier in before_tiers:
                    tier = use.tier or r.facts.home_tier
                    use.bytes_before += r.facts.size
                    use.cost_before += p[tier].gb_month * gb
                if use.tier is None:
                    use.bytes_after += r.facts.size
                    use.cost_after += sum(p[t].gb_month * gb for t in after_tiers)
                elif use.tier in after_tiers:
                    use.bytes_after += r.facts.size
                    use.cost_after += p[use.tier].gb_month * gb


def unreachable_rates(policies: PolicySet, correlation: float) -> list[str]:
    """Rate thresholds a correlated-reference period makes unreachable, as plan warnings.

    With ``access.correlation_window`` of ``w`` seconds at most one read per ``w`` counts, so a
    steady counted rate never exceeds ``3600 / w`` reads/hour.
    """
    if correlation <= 0:
        return []
    most = 3600.0 / correlation
    out = []
    for policy in policies.tiering:
        for i, rule in enumerate(policy.spec.rules):
            for name, value in (("promoteAbove", rule.promote_above), ("demoteBelow", rule.demote_below)):
                if value is not None and value > most:
                    out.append(
                        f"policy {policy.name} {rule.label(i)}: {name} {format_rate(value)} can never be "
                        f"reached: access.correlation_window {format_duration(correlation)} counts at most "
                        f"{format_rate(round(most, 3))}"
                    )
    return out


def _hot_limit(policies: PolicySet) -> int | None:
    """The tightest global hot-tier byte cap (maxBytes, or what maxMonthlyCost buys is not known here)."""
    caps = [
        limit.max_bytes
        for b in policies.budgets
        if b.spec.tenant is None
        for tier, limit in b.spec.tiers.items()
        if tier == "hot" and limit.max_bytes is not None
    ]
    return min(caps) if caps else None


class HotTier:
    """The hot tier's members under one byte budget, kept from cycle to cycle.

    An object that the policy wants hot is *offered* with a rank (:meth:`Planner.hot_priority`:
    log value per byte, forward-decayed so ranks from different cycles compare). :meth:`settle`
    admits the best waiting offers while they fit, and lets an offer displace members only when
    it outranks each of them by the hysteresis margin (members rank ``+ ln(hysteresis)``): the
    same greedy-by-value-per-byte order as a full plan, but a cycle costs ``O(changed · log n)``
    instead of sorting every candidate.

    Args:
        limit: the byte budget; None admits every offer.
        hysteresis: the members' bonus factor (PlannerSettings.hysteresis).
    """

    def __init__(self, limit: int | None, *, hysteresis: float = 1.25, window: float = 0.0) -> None:
        self.limit = limit
        self.bonus = math.log(hysteresis)
        self.window_fraction = window
        self.members: dict[int, int] = {}  # object id -> size (the window's included)
        self.bytes = 0
        self.window: OrderedDict[int, int] = OrderedDict()  # read-path admissions, oldest first
        self.window_bytes = 0
        self._rank: dict[int, float] = {}  # object id -> rank (without the member bonus)
        self._size: dict[int, int] = {}
        self._released: set[int] = set()  # members the policy no longer wants: no bonus
        self._members_heap: list[tuple[float, int]] = []  # lowest-ranked member first
        self._waiting: list[tuple[float, int]] = []  # highest-ranked offer first (negated)

    def __repr__(self) -> str:
        return f"HotTier(limit={self.limit}, members={len(self.members)}, bytes={self.bytes})"

    def offer(self, oid: int, size: int, rank: float) -> None:
        """The policy wants ``oid`` hot with this rank."""
        self._rank[oid] = rank
        self._size[oid] = size
        self._released.discard(oid)
        if oid in self.window:
            return  # ranked again; it meets the main tier when it leaves the window
        if oid in self.members:
            heapq.heappush(self._members_heap, (rank + self.bonus, oid))
        else:
            heapq.heappush(self._waiting, (-rank, oid))

    def admit_on_read(self, oid: int, size: int, rank: float) -> bool:
        """Read-path admission: a missed object gets a copy now if it fits or outranks members.

        The same rule as :meth:`settle`, applied at the read instead of at the next cycle, so
        objects read a few times within minutes (workflow results) are cached while they are
        read. The next plan confirms or withdraws the copy by policy. True if admitted.
        """
        if oid in self.members:
            return True
        room = self.window_limit
        if size > room:
            self.offer(oid, size, rank)
            self.settle()
            return oid in self.members
        # The window: every missed read gets a copy at once, whatever its rank; the oldest
        # leave in order and are offered to the main tier, where rank decides.
        self._rank[oid], self._size[oid] = rank, size
        self._released.discard(oid)
        self.window[oid] = self.members[oid] = size
        self.window_bytes += size
        self.bytes += size
        while self.window_bytes > room:
            old, old_size = self.window.popitem(last=False)
            self.window_bytes -= old_size
            self.bytes -= self.members.pop(old)
            if old in self._released:
                self._forget(old)
            else:
                heapq.heappush(self._waiting, (-self._rank[old], old))
        self.settle()
        return True

    @property
    def window_limit(self) -> int:
        """Bytes of the budget kept for the window (``window`` x ``limit``)."""
        return 0 if self.limit is None else int(self.limit * self.window_fraction)

    def _forget(self, oid: int) -> None:
        self._released.discard(oid)
        self._rank.pop(oid, None)
        self._size.pop(oid, None)

    def release(self, oid: int) -> None:
        """The policy no longer wants ``oid`` hot, but a member keeps its copy until room is needed.

        It loses the member bonus and keeps its last rank, which is forward-decayed and so
        already below every object read since: released members are displaced first, least
        valuable first. A waiting offer is dropped.
        """
        if oid not in self.members:
            self._forget(oid)
            return
        if oid in self.window:
            self._released.add(oid)  # dropped when it leaves the window
        elif oid not in self._released:
            self._released.add(oid)
            heapq.heappush(self._members_heap, (self._rank[oid], oid))

    def withdraw(self, oid: int) -> bool:
        """The policy no longer wants ``oid`` hot; True if it was a member (now evicted)."""
        self._forget(oid)
        size = self.members.pop(oid, None)
        if size is None:
            return False
        self.bytes -= size
        if self.window.pop(oid, None) is not None:
            self.window_bytes -= size
        return True

    def settle(self) -> tuple[list[int], list[int]]:
        """Admit the best offers that fit or outrank members; (admitted, evicted) object ids."""
        admitted: list[int] = []
        evicted: list[int] = []
        while self._waiting:
            neg, oid = self._waiting[0]
            rank = -neg
            if oid in self.members or self._rank.get(oid) != rank:
                heapq.heappop(self._waiting)  # stale: re-ranked, withdrawn or admitted since
                continue
            size = self._size[oid]
            main_limit = None if self.limit is None else self.limit - self.window_limit
            if main_limit is not None and size > main_limit:
                heapq.heappop(self._waiting)
                continue
            need = 0 if main_limit is None else self.bytes - self.window_bytes + size - main_limit
            victims: list[tuple[float, int]] = []
            chosen: set[int] = set()
            freed = 0
            while freed < need and self._members_heap:
                key, m = self._members_heap[0]
                rank_m = self._rank.get(m)
                if rank_m is not None and m not in self._released:
                    rank_m += self.bonus
                stale = m not in self.members or m in self.window or rank_m is None or rank_m != key
                if stale or m in chosen:
                    heapq.heappop(self._members_heap)  # stale or a duplicate entry
                    continue
                if key >= rank:
                    break
                victims.append(heapq.heappop(self._members_heap))
                chosen.add(m)
                freed += self.members[m]
            if freed < need:
                for v in victims:
                    heapq.heappush(self._members_heap, v)
                # Too big to displace enough lower-ranked members: it waits for its next offer,
                # and smaller offers behind it still get their turn (no head-of-line blocking).
                heapq.heappop(self._waiting)
                continue
            heapq.heappop(self._waiting)
            for _, m in victims:
                self.bytes -= self.members.pop(m)
                if m in self._released:  # the policy no longer wants it: it does not wait
                    self._forget(m)
                else:
                    heapq.heappush(self._waiting, (-self._rank[m], m))
                evicted.append(m)
            self.members[oid] = size
            self.bytes += size
            heapq.heappush(self._members_heap, (rank + self.bonus, oid))
            admitted.append(oid)
        # An object evicted and re-admitted in one settle is neither.
        both = set(admitted) & set(evicted)
        return [o for o in admitted if o not in both], [o for o in evicted if o not in both]


@dataclass
class PlacementState:
    """What an incremental planner remembers between cycles (pass it to :meth:`Planner.plan`).

    The last row and decision of every object, when each decision next changes (from
    :func:`evaluate`'s ``next_change_at``), the hot tier's members, and bytes per tier. A cycle
    evaluates only the rows passed in (objects read, written or moved since the last cycle) and
    the objects whose next change has come; scores of the others are decayed forward when they
    come due. The state assumes the moves it plans happen; feed back a row whose move failed.
    Incremental plans enforce the global hot-tier ``maxBytes``; durable-tier and per-tenant
    budgets (and the cost projection) need a full plan (``state=None``).
    """

    rows: dict[int, Row] = field(default_factory=dict)
    policies: PolicySet | None = None
    hot: HotTier | None = None
    due: list[tuple[float, int]] = field(default_factory=list)
    next_due: dict[int, float] = field(default_factory=dict)
    scored_at: dict[int, float] = field(default_factory=dict)
    tier_bytes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIERS, 0))
    prices: dict[str, dict[str, Prices]] = field(default_factory=dict)
    #: Rows evaluated so far, across cycles (what incremental planning saves shows here).
    evaluated: int = 0

    def __repr__(self) -> str:
        return f"PlacementState(objects={len(self.rows)}, hot={self.hot!r}, evaluated={self.evaluated})"

    def forget(self, oid: int) -> None:
        self.rows.pop(oid, None)
        self.next_due.pop(oid, None)
        self.scored_at.pop(oid, None)


def budget_reason(row: Row) -> str:
    """Why a budget overrode the policy's tier for this object."""
    d = row.decision
    want = "hot" if d is not None and d.tier == "hot" else (d.tier if d else "?")
    return f"over budget: policy wants {want}, value per byte too low to stay (moved to {row.target})"


def explain(
    planner: Planner, policies: PolicySet, row: Row, *, now: datetime | None = None
) -> dict[str, Any]:
    """Which policy and rule govern one object, its score, where it is and should be, and what comes next."""
    when = now or planner.clock()
    f = row.facts
    policy = select_policy(policies, f)
    d = evaluate(policies, f, when)
    return {
        "uri": row.uri,
        "policy": policy.name if policy else None,
        "rule": d.rule,
        "access_rate_per_hour": round(f.access_score, 6),
        "hits": f.hits,
        "last_access_at": f.last_access_at.isoformat() if f.last_access_at else None,
        "home_tier": f.home_tier,
        "home_since": (f.home_since or f.created_at).isoformat(),
        "should_be": d.tier,
        # With a hot copy the durable home stays, or comes back up from archive (durable_home).
        "home_should_be": planner.durable_home(policies, f, when) if d.tier == "hot" else d.tier,
        "action": d.action,
        "reason": d.reason,
        "next_change_at": d.next_change_at.isoformat() if d.next_change_at else None,
        "legal_hold": f.legal_hold,
        "evaluated_at": when.isoformat(),
    }


@dataclass
class ApplyReport:
    """What :func:`apply_plan` queued or did."""

    moves_queued: int = 0
    purges_queued: int = 0
    hot_filled: int = 0
    already_queued: int = 0
    #: Changes that could not be applied, with why (e.g. no store configured for a tier).
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "moves_queued": self.moves_queued,
            "purges_queued": self.purges_queued,
            "hot_filled": self.hot_filled,
            "already_queued": self.already_queued,
            "skipped": len(self.skipped),
        }


def apply_plan(plan: Plan, service: Any, *, actor: str = "planner", max_hot_fills: int = 1000) -> ApplyReport:
    """Queue a plan's moves and purges in the journal and fill the hot copies it wants.

    Moves and purges are executed by the mover; hot copies are filled here (a read of the
    home without counting it as an access), at most ``max_hot_fills`` per call.
    """
    from liquid.tiering.journal import enqueue_move, enqueue_purge

    report = ApplyReport()
    settings = service.settings
    hot_wanted: list[Change] = []
    expired: list[str] = []
    with service.engine.begin() as conn:
        for c in plan.changes:
            if c.action == "move" and c.to_tier is not None:
                store = settings.store_for(c.to_tier)
                if store is None:
                    report.skipped.append((c.uri, f"no store is configured for tier {c.to_tier}"))
                    continue
                why = f"{c.policy or 'budget'}/{c.rule or '-'}: {c.reason}"
                if enqueue_move(conn, c.object_id, c.to_tier, store, reason=why) is None:
                    report.already_queued += 1
                else:
                    report.moves_queued += 1
            elif c.action == "expire":
                why = f"expired by {c.policy}/{c.rule or '-'}: {c.reason}"
                expired.append(c.uri)
                if enqueue_purge(conn, c.object_id, reason=why, now=plan.at, actor=actor) is None:
                    report.already_queued += 1
                else:
                    report.purges_queued += 1
            elif c.action == "hot-admit":
                hot_wanted.append(c)
    if service.hot is not None:
        # Tombstoned now: the hot copy must not outlive it (readers get 410, never the old bytes).
        for uri in expired:
            service.hot.delete(ResultRef.parse(uri))
    report.hot_filled = _fill_hot(service, hot_wanted[:max_hot_fills])
    return report


def _fill_hot(service: Any, changes: list[Change]) -> int:
    """Cache the objects that lack a hot copy; one EXISTS pipeline decides which."""
    hot = service.hot
    if hot is None or not changes:
        return 0
    from liquid.hotcache import hot_key

    refs = [ResultRef.parse(c.uri) for c in changes]
    pipe = hot.client.pipeline(transaction=False)
    for r in refs:
        pipe.exists(hot_key(r))
    try:
        present = pipe.execute()
    except Exception:  # Redis down: the cache fills itself on reads later
        return 0
    filled = 0
    for r, there in zip(refs, present, strict=True):
        if not there and service.prefetch(r):
            filled += 1
    return filled


def _summary(rows: Iterable[Row]) -> CatalogSummary:
    """Bytes, held bytes and pinned bytes per tier (and per tenant) where the objects are now."""
    tiers: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    tenants: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    for r in rows:
        f = r.facts
        for acc in (tiers[f.home_tier], tenants[f.tenant][f.home_tier]):
            acc[0] += f.size
            acc[1] += f.size if f.legal_hold else 0
            acc[2] += f.size if r.pinned else 0

    def usage(d: dict[str, list[int]]) -> dict[str, TierUsage]:
        return {t: TierUsage(bytes=v[0], held_bytes=v[1], pinned_bytes=v[2]) for t, v in d.items()}

    return CatalogSummary(tiers=usage(tiers), tenants={t: usage(d) for t, d in tenants.items()})
