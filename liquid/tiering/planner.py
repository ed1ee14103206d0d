"""The planner: where every object should live, within budgets, and why — kept incrementally.

One pass (:meth:`Planner.rebuild` over every live object, :meth:`Planner.cycle` over the
objects that changed or came due, :meth:`Planner.admit` over objects just read from their
home) does, per object:

1. **Policy.** :func:`liquid.policy.evaluate.evaluate` gives its tier, action and reason
   (a current hot copy is judged as being in ``hot``, so ``promoteAbove``/``demoteBelow``
   act as hysteresis around the hot tier), and when that decision next changes by the clock
   alone; the object comes due then (:class:`~liquid.tiering.state.Columns`).
2. **Hot copy.** ``hot`` means "keep a cache copy": the object is offered to the hot
   tier's :class:`~liquid.tiering.ranked.RankedTier` with its rank; its durable home stays
   where it is (or comes back up from archive where the policy's other rules allow:
   :meth:`Planner.durable_home`). A copy the policy no longer wants stays while there is
   room (``planner.keep_while_room``), first to go.
3. **Durable home.** The policy's tier, unless a Budget caps it: then the object competes
   in that tier's ranked set, and one that does not fit goes to the next colder tier
   (where it may compete again). Objects already in a tier keep it with the hysteresis
   bonus; objects inside their ``minResidency`` never move.
4. **Budgets.** Every cap holds after the pass: sets are trimmed and settled hottest tier
   first, displacing the lowest value per byte (see :mod:`liquid.tiering.values`).

Objects are evaluated in bulk (:func:`liquid.policy.columns.evaluate_columns` over column
batches); those that stay put, want no hot copy and are unknown to the ranked tiers need
nothing more, and the rest go one by one through :meth:`Planner._place`, which also gives
each change its reason. The result is a :class:`~liquid.tiering.plan.Plan` of what changes,
with bytes and cost per tier before and after from the state's running sums. Ties are broken
by object id. A full plan is a rebuild into a fresh state; ``liquid policy plan`` is a rebuild
that applies nothing. The state assumes the moves it plans happen (the mover's switch, or its failure,
puts the object back in the change feed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from liquid.classification import Classifier
from liquid.config import Settings
from liquid.hotcache import entry_size
from liquid.policy.checks import CatalogSummary, TierUsage, budget_warnings
from liquid.policy.columns import KEEP, evaluate_columns
from liquid.policy.costs import currency
from liquid.policy.evaluate import Decision, ObjectFacts, evaluate, evaluate_policy, select_policy
from liquid.policy.models import TIERS, PolicySet, TieringPolicy
from liquid.refs import format_uri
from liquid.tiering.adaptive import STICKY, AdaptiveHalfLife
from liquid.tiering.budgets import budget_uses, capped_tiers, tier_caps, tier_costs, unreachable_rates
from liquid.tiering.plan import Change, Plan
from liquid.tiering.ranked import PINNED, RankedTier
from liquid.tiering.readclock import ReadClock, ReadHalfLife
from liquid.tiering.rows import ColumnBatch, Row
from liquid.tiering.state import TIER_INDEX, PlacementState
from liquid.tiering.values import COLDER, TEMP, PlannerSettings, Prices, ValueModel
from liquid.tiering.window import WindowClimber

LN2 = math.log(2)


class CapSplit(Protocol):
    """Sets a tier's global caps' limits to this planner's share of them (a planner shard:
    liquid.tiering.shares); called once the pass's offers are in, before the tier settles."""

    def __call__(self, state: PlacementState, *, tier: str, rebuild: bool) -> None: ...


@dataclass(slots=True)
class _Arrival:
    """An object competing for a capped durable tier in this pass."""

    oid: int
    size: int
    rank: float
    tenant: str
    label: str
    #: Where the object is (its durable home, as the state assumes it).
    home: str
    decision: Decision | None = None
    #: The durable tier its policy wants ("" when not evaluated in this pass).
    want: str = ""
    #: Its namespace (namespace Budgets cap a tier per tenant and namespace).
    namespace: str = ""


@dataclass
class _Pass:
    """What one pass has gathered so far."""

    plan: Plan
    now: datetime
    t: float
    #: Keep the rows (to give changes their policy reasons); a rebuild does not, to bound memory.
    keep_rows: bool = True
    #: Column updates, by object id: (tier, size, tenant index, held, due).
    updates: dict[int, tuple[int, int, int, bool, float]] = field(default_factory=dict)
    #: Objects that left the catalog (gone) or expire now.
    dropped: list[int] = field(default_factory=list)
    rows: dict[int, Row] = field(default_factory=dict)
    #: Capped durable tier → objects arriving there this pass.
    arrivals: dict[str, list[_Arrival]] = field(default_factory=dict)
    #: Objects not in this pass's rows that a budget moves: (id, tier index).
    relocated: list[tuple[int, int]] = field(default_factory=list)
    #: Column updates of a rebuild's bulk objects: (ids, tier, size, tenant, held, due) arrays.
    bulk: list[tuple[Any, ...]] = field(default_factory=list)
    #: Bytes per (tenant, namespace) and tier of the namespaces a Budget caps, at the pass's start.
    namespaces_before: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)


#: How often an object whose classification blocks the move its policy wants is judged again.
BLOCKED_RECHECK = 3600.0


class Planner:
    """Plans placements into a :class:`PlacementState`. Everything it needs comes through the constructor.

    Args:
        settings: the tracker half-life, the fallback cost model, the hot cache's limits.
        knobs: the value model's knobs (default: ``settings.planner``).
    """

    def __init__(self, settings: Settings, *, knobs: PlannerSettings | None = None) -> None:
        self.settings = settings
        self.values = ValueModel(settings, knobs)
        self.knobs = self.values.knobs
        self.hot_enabled = settings.hot.enabled and settings.tiers.hot is not None
        self.hot_max = settings.hot.max_object_size
        #: Tiers each classification may live in (liquid.classification).
        self.classifier = Classifier(settings)
        k = self.knobs
        #: The hot rank's half-life, chosen by miniature simulations (liquid.tiering.adaptive).
        self.adaptive = AdaptiveHalfLife(
            settings.access.half_life,
            sample=k.adaptive_sample,
            hysteresis=k.hysteresis,
            sticky=STICKY if k.adaptive_hysteresis else (1.0,),
            enabled=k.adaptive,
        )
        #: The hot window's share, tuned by hill climbing (liquid.tiering.window).
        self.window = WindowClimber(k.hot_window, enabled=k.adaptive_window, period=k.window_period)
        #: Time in hot budgets read: the hot rank's recency with ``read_clock`` (liquid.tiering.readclock).
        self.reads = ReadClock(half_life=k.read_half_life)
        #: The read clock's half-life, chosen by miniature simulations (``read_adaptive``).
        self.read_adaptive = ReadHalfLife(
            k.read_half_life,
            tracker=settings.access.half_life,
            sample=k.adaptive_sample,
            hysteresis=k.hysteresis,
            enabled=k.read_clock and k.read_adaptive and not k.adaptive,
        )
        self.counting = k.read_clock or k.adaptive_window
        #: False while a dry run plans: it ranks like the daemon but teaches the simulations nothing.
        self.learning = True
        #: A planner shard's split of the global caps, run in each rebuild and cycle as each
        #: budgeted tier settles (None: this planner plans the whole catalog, every cap whole).
        self.shares: CapSplit | None = None
        # Caches that belong to one policy set (dropped when it changes: bounded memory).
        self._policies: PolicySet | None = None
        self._by_name: dict[str, TieringPolicy] = {}
        self._prices: dict[str | None, dict[str, Prices]] = {}
        self._durable: dict[str, TieringPolicy] = {}
        self._may_be_hot: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"Planner({self.values!r}, hot={'on' if self.hot_enabled else 'off'})"

    # ------------------------------------------------------------------ passes

    def rebuild(
        self,
        policies: PolicySet,
        batches: Iterable[ColumnBatch],
        now: datetime,
        *,
        policy_version: int | None = None,
        hot_residents: Mapping[int, tuple[str, int]] | None = None,
    ) -> tuple[PlacementState, Plan]:
        """Plan every live object into a fresh state.

        Args:
            policies: the policy set.
            batches: every live object, in batches (a catalog scan).
            now: the planning time.
            policy_version: recorded in the plan and the state.
            hot_residents: copies in Redis now (object id → (ref without ``liquid://``, bytes), from
                the ledger): members from the start, with the hysteresis bonus; those the plan
                does not keep are evicted.
        """
        started = time.perf_counter()
        state = PlacementState(policies=policies, policy_version=policy_version)
        self._use(policies)
        self._configure(state)
        if self.learning:
            self.window.reset()
            self.reads.reset(now.timestamp())
        before: dict[str, dict[str, int]] = {}
        for oid, (member, size) in sorted((hot_residents or {}).items()):
            tenant, _, rest = member.partition("/")
            state.hot.adopt(
                oid, size, tenant=tenant, namespace=rest.partition("/")[0], label="liquid://" + member
            )
            by = before.setdefault(tenant, {})
            by["hot"] = by.get("hot", 0) + size
        state.hot.drain()
        plan = Plan(at=now, policy_version=policy_version, kind="rebuild")
        p = _Pass(plan, now, now.timestamp(), keep_rows=False)
        summary = _Summary()
        totals = _Totals()
        for batch in batches:
            self._place_columns(state, p, batch, totals=totals, summary=summary)
        self._commit_columns(state, p)  # once, in id order (a scan's batches come in any order)
        for tenant, tiers in totals.by_tenant(state.tenants).items():
            by = before.setdefault(tenant, {})
            for tier, n in tiers.items():
                by[tier] = by.get(tier, 0) + n
        # Copies of objects that are gone (not in the scan) are evicted; the others were judged
        # with the rest (kept, released while there is room, or withdrawn by policy).
        residents = np.fromiter(hot_residents or {}, dtype=np.int64, count=len(hot_residents or {}))
        for oid in residents[state.columns.find(residents) < 0]:
            state.hot.withdraw(int(oid))
        state.warnings = [str(w) for w in budget_warnings(policies, summary.catalog())]
        state.warnings += unreachable_rates(policies, self.settings.access.correlation_window)
        self._adapt(state)
        self._settle(state, p)
        self._finish(state, p, before, started)
        return state, plan

    def cycle(
        self, state: PlacementState, batch: ColumnBatch | Sequence[Row], gone: Sequence[int], now: datetime
    ) -> Plan:
        """Plan the objects that changed (``batch``, fresh from the catalog) and forget ``gone`` ones.

        The caller passes the objects from the change feed and those whose deadline came
        (:meth:`Columns.take_due`), read again at ``now``.
        """
        started = time.perf_counter()
        assert state.policies is not None, "rebuild the state first"
        self._use(state.policies)
        p = _Pass(Plan(at=now, policy_version=state.policy_version, kind="cycle"), now, now.timestamp())
        before = self._totals(state)
        p.namespaces_before = self._namespace_totals(state)
        for oid in gone:
            self._forget(state, p, oid)
        if not isinstance(batch, ColumnBatch):
            batch = ColumnBatch.of_rows(batch)
        self._count_reads(state, batch, p.t)
        if len(batch):
            self._place_columns(state, p, batch)
        self._commit_columns(state, p)
        self._adapt(state)
        self._climb(state)
        self._settle(state, p)
        self._finish(state, p, before, started)
        return p.plan

    def admit(self, state: PlacementState, rows: Sequence[Row], now: datetime) -> Plan:
        """Hot copies for objects just read from their home (``rows``): the read-path admission.

        A miss is admitted if it fits or outranks members (or into the window, see
        :meth:`RankedTier.admit_on_read`); the next cycle confirms or withdraws it by policy.
        Only objects whose policy has a hot rule are considered. A member whose copy had
        vanished (its key expired, Redis restarted) is filled again (``hot-refill``).
        """
        started = time.perf_counter()
        assert state.policies is not None, "rebuild the state first"
        policies = state.policies
        self._use(policies)
        t = now.timestamp()
        p = _Pass(Plan(at=now, policy_version=state.policy_version, kind="admit"), now, t)
        before = {"": {"hot": state.hot.bytes}}
        hot = state.hot
        if self.hot_enabled:
            for row in rows:
                f = row.facts
                self.window.missed(f.size)
                if (
                    f.size > self.hot_max
                    or not self._policy_may_be_hot(policies, f)
                    or not self.classifier.allows(f.classification, "hot")
                ):
                    continue
                p.rows[row.object_id] = row
                if row.object_id in hot.members:
                    p.plan.changes.append(self._change(row, "hot-refill", "hot", "its copy was missing"))
                    continue
                size = entry_size(f.size, f.content_type)
                rank = self._hot_rank(row.object_id, size, f, t, wanted=True, on_read=True)
                hot.admit_on_read(
                    row.object_id, size, rank, tenant=f.tenant, namespace=f.namespace, label=row.uri
                )
        p.plan.evaluated = len(p.rows)
        self._hot_changes(state, p)
        # A member displaced by this pass's admissions is evicted, not refilled.
        p.plan.changes = [c for c in p.plan.changes if c.action != "hot-refill" or c.object_id in hot.members]
        self._finish(state, p, before, started)
        return p.plan

    # ---------------------------------------------------------------- one row

    def decide(self, policies: PolicySet, row: Row, now: datetime, *, member: bool) -> tuple[Decision, float]:
        """The object's decision (judged in ``hot`` when it has a copy) and when it next changes (epoch s)."""
        f = row.facts
        d = evaluate(policies, f.with_home("hot") if member else f, now)
        if member and d.tier != "hot":
            d = evaluate(policies, f, now)
        next_at = d.next_change_at
        if d.tier == "hot" and not member:
            # Once it has a copy it is judged from hot: that is when it would lose it.
            next_at = evaluate(policies, f.with_home("hot"), now).next_change_at
        return d, (next_at.timestamp() if next_at is not None else math.inf)

    def _place(
        self,
        state: PlacementState,
        p: _Pass,
        rows: Sequence[Row],
        *,
        before: dict[str, dict[str, int]] | None,
        summary: _Summary | None,
    ) -> None:
        """Evaluate rows: expirations, holds, hot offers, moves to uncapped tiers, arrivals at capped ones."""
        policies = state.policies
        assert policies is not None
        now, t = p.now, p.t
        hot = state.hot
        cols = state.columns
        ids = np.fromiter((r.object_id for r in rows), dtype=np.int64, count=len(rows))
        prev = cols.find(ids)
        # Take the rows' previous bytes out of the running sums; they go back where they land.
        slots = prev[prev >= 0]
        if len(slots):
            state.account(cols.tenant[slots], cols.tier[slots], cols.size[slots], -1)
            held = slots[cols.held[slots]]
            state.account_held(cols.tenant[held], cols.tier[held], cols.size[held], -1)
        p.plan.evaluated += len(rows)
        state.evaluated += len(rows)
        capped = state.capped
        budgeted = bool(policies.budgets)
        for i in np.argsort(ids, kind="stable"):
            row = rows[int(i)]
            oid = row.object_id
            f = row.facts
            if p.keep_rows:
                p.rows[oid] = row
            home = f.home_tier
            tenant = state.tenant_id(f.tenant)
            if before is not None:  # a rebuild: "before" is where objects are now
                by = before.setdefault(f.tenant, {})
                by[home] = by.get(home, 0) + f.size
            d, due = self.decide(policies, row, now, member=oid in hot.members)
            row.decision = d
            row.rate = f.access_score
            if d.action == "expire":
                p.plan.changes.append(self._change(row, "expire", None))
                p.dropped.append(oid)
                hot.withdraw(oid)
                self.adaptive.forget(oid)
                self.read_adaptive.forget(oid)
                if capped:
                    self._leave_capped(state, oid)
                continue
            if d.action == "hold":
                p.plan.changes.append(self._change(row, "hold", home))
            policy = self._by_name.get(d.policy) if d.policy is not None else None
            if d.tier == "hot":
                want = self._durable_home(policy, f, now)
            else:
                want = home if d.action == "keep" else d.tier
            if want != home and not self.classifier.allows(f.classification, want):
                # A rule of its classification forbids the tier the policy asks for: it stays.
                p.plan.changes.append(
                    self._change(
                        row, "hold", home, f"classification {f.classification!r} may not live in {want}"
                    )
                )
                want = home
                due = max(due, t + BLOCKED_RECHECK)  # not every cycle: the rule will not change by then
            row.target = want
            # minResidency matters only to budgets: skip it where there are none.
            pinned = self._pinned_until(policy, f) if budgeted else -math.inf
            if summary is not None and budgeted:
                on_hold = f.size if f.legal_hold else 0
                summary.add(f.tenant, home, f.size, on_hold, f.size if pinned > t else 0)
            tier = home
            if want in capped:
                # A capped tier decides at settle, ranked against everyone else who wants it.
                self._leave_capped(state, oid, keep=want)
                if want != home:
                    # Waiting for room there is not a deadline: plan it again when it changes,
                    # or when it would leave that tier anyway (not every cycle until it fits).
                    there = evaluate(policies, f.with_home(want), now).next_change_at
                    due = there.timestamp() if there is not None else math.inf
                if want == home and pinned > t:
                    rank = PINNED
                    due = min(due, pinned)  # it may be displaced once its residency ends
                else:
                    rank = self.values.rank(f.size, f.access_score, t, self._prices_of(f.tenant), want)
                p.arrivals.setdefault(want, []).append(
                    _Arrival(oid, f.size, rank, f.tenant, row.uri, home, d, want, namespace=f.namespace)
                )
            else:
                if capped:
                    self._leave_capped(state, oid)
                if want != home:
                    p.plan.changes.append(self._change(row, "move", want))
                    # Planned from the catalog again when the mover's switch (or failure) puts
                    # it in the change feed, not every cycle until then.
                    tier, due = want, math.inf
            p.updates[oid] = (TIER_INDEX[tier], f.size, tenant, f.legal_hold, due)
            # Hot copy.
            if (
                d.tier == "hot"
                and self.hot_enabled
                and f.size <= self.hot_max
                and self.classifier.allows(f.classification, "hot")
            ):
                size = entry_size(f.size, f.content_type)
                rank = self._hot_rank(oid, size, f, t, wanted=True)
                hot.offer(oid, size, rank, tenant=f.tenant, namespace=f.namespace, label=row.uri)
            else:
                if self.learning and self.hot_enabled:
                    at = f.last_access_at.timestamp() if f.last_access_at is not None else t
                    self.adaptive.observe(oid, f.size, f.hits, wanted=False, at=at)
                    self.read_adaptive.observe(oid, f.size, f.hits, wanted=False, at=at)
                if hot.knows(oid):
                    if self.knobs.keep_while_room and hot.caps:
                        hot.release(oid)
                    else:
                        hot.withdraw(oid)

    def _place_columns(
        self,
        state: PlacementState,
        p: _Pass,
        batch: ColumnBatch,
        *,
        totals: _Totals | None = None,
        summary: _Summary | None = None,
    ) -> None:
        """Objects in bulk, and the few with something to do one by one (a rebuild's or a cycle's).

        :func:`~liquid.policy.columns.evaluate_columns` decides every object at once. An
        object that stays where it is, wants no hot copy, is unknown to the hot and capped
        tiers and lives in a tier no Budget caps needs nothing more than its columns; one in a
        capped tier also becomes an arrival there. Everything else (moves, expirations, holds,
        hot copies, objects a ranked tier knows) goes through :meth:`_place`, which reports each
        change with its reason: the same decisions, as a test holds the two evaluations equal.
        """
        policies = state.policies
        assert policies is not None
        f = batch.facts
        n = len(batch)
        t = p.t
        dec = evaluate_columns(policies, f, p.now)
        cache: dict[str, int] = {}
        tenant = np.fromiter(
            (cache[x] if x in cache else cache.setdefault(x, state.tenant_id(x)) for x in f.tenant),
            dtype=np.int32,
            count=n,
        )
        home = f.home.astype(np.int64)
        cols = state.columns
        prev = cols.find(batch.ids)
        old = prev[prev >= 0]
        if len(old):  # known objects: their bytes leave the sums; they come back where they land
            state.account(cols.tenant[old], cols.tier[old], cols.size[old], -1)
            held_old = old[cols.held[old]]
            state.account_held(cols.tenant[held_old], cols.tier[held_old], cols.size[held_old], -1)
        if totals is not None:
            totals.add(tenant, home, f.size)
        if policies.budgets:  # minResidency matters to budgets only
            residency = np.array([x.spec.min_residency for x in policies.tiering] + [-math.inf])
            since = np.where(np.isnan(f.home_since), f.created, f.home_since)
            pinned_until = since + residency[dec.policy]  # policy -1: the -inf at the end
            if summary is not None:
                summary.add_columns(state.tenants, tenant, home, f.size, f.legal_hold, pinned_until > t)
        else:
            pinned_until = np.full(n, -math.inf)
        known_ids: set[int] = set()
        for r in (state.hot, *state.capped.values()):
            known_ids |= r.known()
        known = np.isin(batch.ids, np.fromiter(known_ids, dtype=np.int64, count=len(known_ids)))
        plain = (dec.action == KEEP) & (dec.tier != TIER_INDEX["hot"]) & ~known
        capped = np.isin(home, [TIER_INDEX[x] for x in state.capped])
        simple = plain & ~capped
        arriving = np.nonzero(plain & capped)[0]
        p.plan.evaluated += int(simple.sum()) + len(arriving)
        state.evaluated += int(simple.sum()) + len(arriving)
        due = dec.next_change.copy()
        for tier_name in state.capped:
            here = arriving[home[arriving] == TIER_INDEX[tier_name]]
            for name in np.unique(f.tenant[here]) if len(here) else ():
                mine = here[f.tenant[here] == name]
                ranks = self.values.rank_columns(
                    f.size[mine], f.score[mine], t, self._prices_of(name), tier_name
                )
                pinned = pinned_until[mine] > t
                ranks[pinned] = PINNED
                due[mine[pinned]] = np.minimum(due[mine[pinned]], pinned_until[mine[pinned]])
                for i, rank in zip(mine, ranks, strict=True):
                    label = format_uri(name, f.namespace[i], f.key[i], int(batch.version[i]))
                    oid = int(batch.ids[i])
                    p.arrivals.setdefault(tier_name, []).append(
                        _Arrival(
                            oid,
                            int(f.size[i]),
                            float(rank),
                            name,
                            label,
                            tier_name,
                            None,
                            tier_name,
                            namespace=str(f.namespace[i]),
                        )
                    )
        bulk = plain  # their columns, in bulk (written once, in id order, after the scan)
        p.bulk.append(
            (batch.ids[bulk], f.home[bulk], f.size[bulk], tenant[bulk], f.legal_hold[bulk], due[bulk])
        )
        rest = np.nonzero(~plain)[0]
        if len(rest):
            rows = batch.rows(rest)
            # _place takes known rows' bytes out of the sums itself: put them back first.
            slots = prev[rest][prev[rest] >= 0]
            state.account(cols.tenant[slots], cols.tier[slots], cols.size[slots], +1)
            held_back = slots[cols.held[slots]]
            state.account_held(cols.tenant[held_back], cols.tier[held_back], cols.size[held_back], +1)
            self._place(state, p, rows, before=None, summary=None)

    def _forget(self, state: PlacementState, p: _Pass, oid: int) -> None:
        """An object that is no longer live: out of every tier and sum."""
        cols = state.columns
        slot = int(cols.find(np.array([oid], dtype=np.int64))[0])
        if slot >= 0:
            tenant, tier, size = int(cols.tenant[slot]), int(cols.tier[slot]), int(cols.size[slot])
            state.account([tenant], [tier], [size], -1)
            if cols.held[slot]:
                state.account_held([tenant], [tier], [size], -1)
            p.dropped.append(oid)
        state.hot.withdraw(oid)
        self.adaptive.forget(oid)
        self.read_adaptive.forget(oid)
        self.reads.forget(oid)
        self._leave_capped(state, oid)

    def _leave_capped(self, state: PlacementState, oid: int, *, keep: str | None = None) -> None:
        for tier, ranked in state.capped.items():
            if tier != keep:
                ranked.withdraw(oid)

    # ------------------------------------------------------------------ settle

    def _settle(self, state: PlacementState, p: _Pass) -> None:
        """Capped durable tiers hottest first (whoever does not fit tries the next colder), then hot."""
        queue: dict[str, list[_Arrival]] = {tier: list(a) for tier, a in p.arrivals.items()}
        p.arrivals = {}
        final: dict[int, tuple[str, _Arrival]] = {}
        for tier, ranked in state.capped.items():
            here = queue.get(tier, [])
            ids = {a.oid for a in here}
            for a in here:
                if a.home == tier:
                    ranked.seat(a.oid, a.size, a.rank, tenant=a.tenant, namespace=a.namespace, label=a.label)
                else:
                    ranked.offer(a.oid, a.size, a.rank, tenant=a.tenant, namespace=a.namespace, label=a.label)
            self._split(state, p, tier)
            ranked.trim()
            ranked.settle()
            joined, left = ranked.drain(withdrawn=False)
            for oid in joined:  # it now fits here: out of any colder tier it waited in
                for colder_tier, other in state.capped.items():
                    if TEMP[colder_tier] > TEMP[tier]:
                        other.withdraw(oid)
            out = [a for a in here if a.oid not in ranked.members]
            # A member that leaves was placed here; one that joins from waiting was placed colder.
            out += [self._victim(ranked, oid, home=tier) for oid in left if oid not in ids]
            for a in here:
                if a.oid in ranked.members:
                    final[a.oid] = (tier, a)
            for oid in joined:
                if oid not in ids:  # waited here and fits now (room was freed)
                    final[oid] = (tier, self._victim(ranked, oid, home=self._home(state, p, oid)))
            colder = COLDER[tier]
            for a in out:
                if colder is None:
                    final[a.oid] = (tier, a)  # nothing colder: over budget, and reported
                elif colder in state.capped:
                    queue.setdefault(colder, []).append(self._convert(a, tier, colder))
                else:
                    final[a.oid] = (colder, a)
        for _, (tier, a) in sorted(final.items()):
            self._move(state, p, a, tier)
        self._relocate(state, p)
        self._hot_changes(state, p)

    def _split(self, state: PlacementState, p: _Pass, tier: str) -> None:
        """A planner shard: this tier's global caps become its grants, once its offers are in."""
        if self.shares is not None and self.learning:
            self.shares(state, tier=tier, rebuild=p.plan.kind == "rebuild")

    def _victim(self, ranked: RankedTier, oid: int, *, home: str) -> _Arrival:
        """An object a capped tier displaced (or re-admitted) that is not among this pass's rows."""
        rank = ranked.rank(oid)
        return _Arrival(
            oid,
            ranked.size(oid),
            rank if rank is not None else -math.inf,
            ranked.tenant(oid),
            ranked.label(oid),
            home,
            namespace=ranked.namespace(oid),
        )

    def _convert(self, a: _Arrival, warmer: str, colder: str) -> _Arrival:
        """The same object ranked for the next colder tier (its reads/hour cancel out)."""
        prices = self._prices_of(a.tenant)
        x = self.values.read_saving(a.size, warmer, prices)
        y = self.values.read_saving(a.size, colder, prices)
        ok = x > 0 and y > 0 and a.rank not in (-math.inf, PINNED)
        rank = a.rank + math.log(y / x) if ok else -math.inf
        return _Arrival(
            a.oid, a.size, rank, a.tenant, a.label, a.home, a.decision, a.want, namespace=a.namespace
        )

    def _home(self, state: PlacementState, p: _Pass, oid: int) -> str:
        upd = p.updates.get(oid)
        if upd is not None:
            return TIERS[upd[0]]
        slot = int(state.columns.find(np.array([oid], dtype=np.int64))[0])
        return TIERS[int(state.columns.tier[slot])] if slot >= 0 else "?"

    def _move(self, state: PlacementState, p: _Pass, a: _Arrival, target: str) -> None:
        """Record a durable move of a capped tier's object if it lands elsewhere (assumed to happen)."""
        if target == a.home or a.home == "?":
            return
        oid = a.oid
        upd = p.updates.get(oid)
        if upd is not None:
            p.updates[oid] = (TIER_INDEX[target], upd[1], upd[2], upd[3], math.inf)  # see _place
        else:
            p.relocated.append((oid, TIER_INDEX[target]))  # in the columns already: moved in bulk
        d = a.decision
        policy, rule = (d.policy, d.rule) if d is not None else (None, None)
        if d is not None and target == a.want:
            reason = d.reason
        elif a.want:
            reason = f"over budget: policy wants {a.want}, value per byte too low to stay (moved to {target})"
        elif TEMP[target] > TEMP[a.home]:
            reason = f"over budget: displaced by objects of higher value per byte (moved to {target})"
        else:
            reason = f"room in {target} again: back to the tier its policy wants"
        p.plan.changes.append(Change(oid, a.label, a.size, "move", a.home, target, policy, rule, reason))

    def _relocate(self, state: PlacementState, p: _Pass) -> None:
        """Move objects that are in the columns (not in this pass's rows) to their new tiers, in bulk."""
        if not p.relocated:
            return
        cols = state.columns
        ids = np.array([oid for oid, _ in p.relocated], dtype=np.int64)
        to = np.array([t for _, t in p.relocated], dtype=np.int8)
        p.relocated = []
        slots = cols.find(ids)
        ok = slots >= 0
        slots, to = slots[ok], to[ok]
        tenant, size, held = cols.tenant[slots], cols.size[slots], cols.held[slots]
        state.account(tenant, cols.tier[slots], size, -1)
        state.account(tenant, to, size, +1)
        state.account_held(tenant[held], cols.tier[slots][held], size[held], -1)
        state.account_held(tenant[held], to[held], size[held], +1)
        cols.tier[slots] = to
        cols.due[slots] = math.inf  # see _place: planned again once the mover switches it

    def _hot_changes(self, state: PlacementState, p: _Pass) -> None:
        hot = state.hot
        if p.plan.kind != "admit":  # admission passes stay within the last cycle's grant
            self._split(state, p, "hot")
        hot.trim()
        hot.settle()
        joined, left = hot.drain()
        joined.sort(key=lambda o: -(hot.rank(o) or -math.inf))
        changes = [(o, "hot-evict") for o in left] + [(o, "hot-admit") for o in joined]
        named = {o for o, _ in changes if (r := p.rows.get(o)) is not None and r.decision is not None}
        homes = self._homes(state, p, [o for o, _ in changes if o not in named])
        admitting = "read from its home: ranked into the hot tier" if p.plan.kind == "admit" else None
        for oid, action in changes:
            row = p.rows.get(oid)
            to = "hot" if action == "hot-admit" else None
            if row is not None and row.decision is not None:
                row.hot = action == "hot-admit"
                if action == "hot-admit":
                    reason = admitting or row.decision.reason
                elif row.decision.tier != "hot":
                    reason = "the policy no longer wants a copy"
                else:
                    reason = "displaced by objects of higher value per byte"
                p.plan.changes.append(self._change(row, action, to, reason))
            else:
                reason = (
                    "displaced by objects of higher value per byte"
                    if action == "hot-evict"
                    else admitting or "ranked into the hot tier"
                )
                p.plan.changes.append(
                    Change(oid, hot.label(oid), hot.size(oid), action, homes[oid], to, None, None, reason)
                )

    def _homes(self, state: PlacementState, p: _Pass, oids: Sequence[int]) -> dict[int, str]:
        """Where each object is (this pass's updates, else the columns; ``?`` when unknown)."""
        out = {oid: TIERS[p.updates[oid][0]] for oid in oids if oid in p.updates}
        rest = [oid for oid in oids if oid not in out]
        if rest:
            cols = state.columns
            slots = cols.find(np.array(rest, dtype=np.int64))
            for oid, slot in zip(rest, slots, strict=True):
                out[oid] = TIERS[int(cols.tier[slot])] if slot >= 0 else "?"
        return out

    def _commit_columns(self, state: PlacementState, p: _Pass) -> None:
        """Write the pass's column updates and drops, and put their bytes back in the sums."""
        cols = state.columns
        if p.dropped:
            cols.drop(np.array(sorted(set(p.dropped)), dtype=np.int64))
            for oid in p.dropped:
                p.updates.pop(oid, None)
            p.dropped = []
        parts = list(p.bulk)
        p.bulk = []
        if p.updates:
            vals = list(p.updates.values())
            parts.append(
                (
                    np.fromiter(p.updates, dtype=np.int64, count=len(p.updates)),
                    np.array([v[0] for v in vals], dtype=np.int8),
                    np.array([v[1] for v in vals], dtype=np.int64),
                    np.array([v[2] for v in vals], dtype=np.int32),
                    np.array([v[3] for v in vals], dtype=np.bool_),
                    np.array([v[4] for v in vals], dtype=np.float64),
                )
            )
            p.updates = {}
        if not parts:
            return
        ids, tier, size, tenant, held, due = (np.concatenate(col) for col in zip(*parts, strict=True))
        order = np.argsort(ids, kind="stable")  # the columns want ids in order; scans come in any
        ids, tier, size, tenant, held, due = (a[order] for a in (ids, tier, size, tenant, held, due))
        cols.put(ids, tier, size, tenant, held, due)
        state.account(tenant, tier, size, +1)
        state.account_held(tenant[held], tier[held], size[held], +1)

    def _finish(
        self, state: PlacementState, p: _Pass, before: Mapping[str, Mapping[str, int]], started: float
    ) -> None:
        self._commit_columns(state, p)
        plan = p.plan
        policies = state.policies
        assert policies is not None
        plan.objects = len(state.columns)
        if plan.kind == "admit":
            # Up to one a second: only the hot tier changed, so only its bytes are reported.
            plan.bytes_before = {
                **dict.fromkeys(TIERS, 0),
                "hot": sum(x.get("hot", 0) for x in before.values()),
            }
            plan.bytes_after = {**dict.fromkeys(TIERS, 0), "hot": state.hot.bytes}
        else:
            after = self._totals(state)
            plan.bytes_before = _by_tier(before)
            plan.bytes_after = _by_tier(after)
            plan.currency = currency(policies, None)
            plan.cost_before = tier_costs(before, self._prices_of)
            plan.cost_after = tier_costs(after, self._prices_of)
            plan.budgets = budget_uses(
                policies,
                self._prices_of,
                before,
                after,
                namespaces=(p.namespaces_before, self._namespace_totals(state)),
            )
            plan.warnings = list(state.warnings)
        # By action; within one, as emitted (hot admissions best rank first, so a bounded number
        # of fills goes to the most valuable copies, not to the oldest objects).
        plan.changes.sort(key=lambda c: c.action)
        plan.duration_s = time.perf_counter() - started
        state.cycles += 1

    def _namespace_totals(self, state: PlacementState) -> dict[tuple[str, str], dict[str, int]]:
        """Bytes per (tenant, namespace) and tier, for the namespaces a Budget caps.

        A namespace Budget caps tiers only (validated), and every tier a Budget caps is a
        :class:`RankedTier` whose members are its residents, so their counts are complete.
        """
        out: dict[tuple[str, str], dict[str, int]] = {}
        for tier, ranked in (("hot", state.hot), *state.capped.items()):
            for key, n in ranked.namespace_bytes.items():
                out.setdefault(key, {})[tier] = n
        return out

    def _totals(self, state: PlacementState) -> dict[str, dict[str, int]]:
        """Bytes per tenant and tier now (hot: the members' bytes)."""
        out: dict[str, dict[str, int]] = {}
        for i, name in enumerate(state.tenants):
            out[name] = {tier: int(state.bytes[i, TIER_INDEX[tier]]) for tier in TIERS if tier != "hot"}
        for name, n in state.hot.tenant_bytes.items():
            if n:
                out.setdefault(name, {})["hot"] = n
        return out

    def undo_moves(self, state: PlacementState, oids: Sequence[int], plan: Plan) -> None:
        """Moves the applier could not queue (no store for the tier): the objects stay where they are.

        They are not planned again until something about them changes (no retry every cycle).
        """
        skipped = set(oids)
        cols = state.columns
        for c in plan.changes:
            if c.action != "move" or c.object_id not in skipped:
                continue
            slot = int(cols.find(np.array([c.object_id], dtype=np.int64))[0])
            if slot < 0:
                continue
            tenant, size = int(cols.tenant[slot]), int(cols.size[slot])
            state.account([tenant], [TIER_INDEX[c.to_tier or c.from_tier]], [size], -1)
            state.account([tenant], [TIER_INDEX[c.from_tier]], [size], +1)
            if cols.held[slot]:
                state.account_held([tenant], [TIER_INDEX[c.to_tier or c.from_tier]], [size], -1)
                state.account_held([tenant], [TIER_INDEX[c.from_tier]], [size], +1)
            cols.tier[slot] = TIER_INDEX[c.from_tier]
        plan.bytes_after = _by_tier(self._totals(state))

    # ------------------------------------------------------------ policy bits

    def _hot_rank(
        self, oid: int, size: int, f: ObjectFacts, t: float, *, wanted: bool, on_read: bool = False
    ) -> float:
        """The hot rank of an object at epoch ``t``: what a read saves per byte, plus its adaptive
        score (liquid.tiering.adaptive); the simulations see the object too when it is sampled
        (``on_read``: a miss the admission pass is about to admit, not a cycle's offer)."""
        rate = f.access_score
        if self.knobs.read_clock and not self.adaptive.enabled:
            return self._read_clock_rank(oid, size, f, t, wanted=wanted, on_read=on_read)
        if not self.adaptive.enabled:
            return self.values.rank(f.size, rate, t, self._prices_of(f.tenant), "hot")
        base = (
            self.values.saving_per_byte(f.size, "hot", self._prices_of(f.tenant)) if rate > 0 else -math.inf
        )
        last = f.last_access_at.timestamp() if f.last_access_at is not None else t
        h0 = self.adaptive.base
        # The decayed read count at the last read: the rate is brought forward to now.
        count = rate * h0 / (3600.0 * LN2) * 2.0 ** (min(t - last, 64 * h0) / h0)
        span = last - f.created_at.timestamp()  # how long it had been read for
        if self.learning:
            self.adaptive.observe(
                oid,
                size,
                f.hits,
                wanted=wanted,
                base=base,
                count=count,
                t_last=last,
                span=span,
                on_read=on_read,
                at=last,
            )
        return self.adaptive.rank(oid, base, count, last, span)

    def _read_clock_rank(
        self, oid: int, size: int, f: ObjectFacts, t: float, *, wanted: bool, on_read: bool = False
    ) -> float:
        """The hot rank with recency on the read clock (liquid.tiering.readclock): what a read saves
        per byte, times the tracker's count at the last read, forward-decayed in budgets read
        (with the half-life the simulations chose under ``read_adaptive``)."""
        rate = f.access_score
        base = (
            self.values.saving_per_byte(f.size, "hot", self._prices_of(f.tenant)) if rate > 0 else -math.inf
        )
        h0 = self.settings.access.half_life
        last = f.last_access_at.timestamp() if f.last_access_at is not None else t
        # The decayed read count at the last read: the rate brought back from now.
        count = rate * h0 / (3600.0 * LN2) * 2.0 ** (min(t - last, 64 * h0) / h0)
        v = self.reads.at(last)
        ra = self.read_adaptive
        if ra.enabled:
            if self.learning:
                ra.observe(
                    oid,
                    size,
                    f.hits,
                    wanted=wanted,
                    base=base,
                    count=count,
                    t_last=v,
                    span=last,
                    on_read=on_read,
                    at=last,
                )
            return ra.rank(oid, base, count, v, last)
        if rate <= 0:
            return -math.inf
        return base + math.log(max(count, 1e-12)) + v * LN2 / self.reads.half_life

    def _adapt(self, state: PlacementState) -> None:
        """Feed the sampled reads since the last cycle to the simulations; a new half-life re-ranks
        the hot tier. Once a cycle: admission passes only add to the batch (they run every second)."""
        adaptive = self.adaptive if self.adaptive.enabled else self.read_adaptive
        if not self.learning or not adaptive.enabled:
            return
        hot = state.hot
        byte_caps = [c.limit for c in hot.caps if c.is_bytes]
        if hot.limit is not None:
            capacity = float(hot.limit)
        elif byte_caps:
            capacity = float(sum(byte_caps))
        else:
            capacity = sum(c.limit / c.default_factor for c in hot.caps if c.default_factor > 0)
        # The simulated tiers admit as this one does: its window too (the hill climber's share).
        adaptive.set_capacity(capacity, window=hot.window_fraction, window_lru=hot.window_lru)
        adaptive.end_pass(hot)

    def _count_reads(self, state: PlacementState, batch: ColumnBatch, t: float) -> None:
        """Advance the read clock by the re-reads among the new reads the cycle's rows carry
        (their hits since the clock last saw them; ReadClock.read), and count all the new
        reads' bytes for the window's hill climbing."""
        limit = state.hot.limit
        if not self.learning or not self.counting or not limit:
            return
        read = self.reads.read
        nbytes = 0
        again = 0.0
        f = batch.facts
        for oid, hits, size, created in zip(
            batch.ids.tolist(), f.hits.tolist(), f.size.tolist(), f.created.tolist(), strict=True
        ):
            n, w = read(oid, hits, created)
            nbytes += n * size
            again += w * size
        self.reads.advance(t, again / limit)
        self.window.read(nbytes)

    def _climb(self, state: PlacementState) -> None:
        """At the end of a sample period, move the hot window's share (liquid.tiering.window);
        the evictions it causes are planned by _hot_changes."""
        if not self.learning or state.hot.limit is None:
            return
        if self.window.end_cycle(float(state.hot.limit)):
            state.hot.set_window(self.window.share)

    def _use(self, policies: PolicySet) -> None:
        if policies is not self._policies:
            self._policies = policies
            self._by_name = {p.name: p for p in policies.tiering}
            self._prices = {}
            self._durable = {}
            self._may_be_hot = {}

    def _configure(self, state: PlacementState) -> None:
        """Caps for the hot tier and every capped durable tier, from the state's policies."""
        policies = state.policies
        assert policies is not None
        k = self.knobs
        state.hot = RankedTier(
            tier_caps(policies, "hot", self._prices_of),
            # The simulations' choice (liquid.tiering.adaptive), at least the operator's (and the
            # operator's alone when they are off: they never switch then).
            hysteresis=self.adaptive.bonus,
            window=self.window.share if k.adaptive_window else k.hot_window,
            window_lru=k.adaptive_window,
            readmit=False,
        )
        state.capped = {
            tier: RankedTier(tier_caps(policies, tier, self._prices_of), hysteresis=k.hysteresis)
            for tier in capped_tiers(policies)
        }

    def _prices_of(self, tenant: str | None) -> dict[str, Prices]:
        prices = self._prices.get(tenant)
        if prices is None:
            assert self._policies is not None
            prices = self._prices[tenant] = self.values.prices(self._policies, tenant)
        return prices

    def prices(self, policies: PolicySet, tenant: str | None) -> dict[str, Prices]:
        """Prices per tier for a tenant (:func:`liquid.policy.costs.tier_prices`)."""
        self._use(policies)
        return self._prices_of(tenant)

    def _policy_may_be_hot(self, policies: PolicySet, f: ObjectFacts) -> bool:
        policy = select_policy(policies, f)
        if policy is None:
            return False
        known = self._may_be_hot.get(policy.name)
        if known is None:
            known = self._may_be_hot[policy.name] = any(r.tier == "hot" for r in policy.spec.rules)
        return known

    def durable_home(self, policies: PolicySet, f: ObjectFacts, now: datetime) -> str:
        """Where an object with a hot copy keeps its home: where it is, or warmer if the policy
        without its hot rules would bring it up (an archived object read again goes back to cold
        by ``restoreOnAccess`` or ``promoteAbove``, so its hot misses stop paying retrieval).
        """
        self._use(policies)
        return self._durable_home(select_policy(policies, f), f, now)

    def _durable_home(self, policy: TieringPolicy | None, f: ObjectFacts, now: datetime) -> str:
        if policy is None or all(r.tier != "hot" for r in policy.spec.rules):
            return f.home_tier
        durable = self._durable.get(policy.name)
        if durable is None:
            rules = tuple(r for r in policy.spec.rules if r.tier != "hot")
            spec = policy.spec.model_copy(update={"rules": rules})
            durable = self._durable[policy.name] = policy.model_copy(update={"spec": spec})
        d = evaluate_policy(durable, f, now, with_next_change=False)
        if d.action == "move" and TEMP[d.tier] < TEMP[f.home_tier]:
            return d.tier
        return f.home_tier

    @staticmethod
    def _pinned_until(policy: TieringPolicy | None, f: ObjectFacts) -> float:
        """Epoch second until which the object may not leave its home (``minResidency``)."""
        if policy is None:
            return -math.inf
        since = f.home_since or f.created_at
        return since.timestamp() + policy.spec.min_residency

    def _change(self, row: Row, action: str, to: str | None, reason: str | None = None) -> Change:
        d = row.decision
        f = row.facts
        return Change(
            object_id=row.object_id,
            uri=row.uri,
            size=f.size,
            action=action,
            from_tier=f.home_tier,
            to_tier=to,
            policy=d.policy if d is not None else None,
            rule=d.rule if d is not None else None,
            reason=reason or (d.reason if d is not None else ""),
        )


class _Totals:
    """Bytes per tenant index and tier index, added in bulk (a rebuild's "before")."""

    def __init__(self) -> None:
        self.bytes = np.zeros((0, len(TIERS)), dtype=np.int64)

    def add(
        self, tenant: npt.NDArray[np.int32], tier: npt.NDArray[np.int64], size: npt.NDArray[np.int64]
    ) -> None:
        if len(tenant) and tenant.max() >= len(self.bytes):
            grown = np.zeros((int(tenant.max()) + 1, len(TIERS)), dtype=np.int64)
            grown[: len(self.bytes)] = self.bytes
            self.bytes = grown
        np.add.at(self.bytes, (tenant, tier), size)

    def by_tenant(self, names: Sequence[str]) -> dict[str, dict[str, int]]:
        return {
            names[i]: {TIERS[j]: int(v) for j, v in enumerate(row) if v}
            for i, row in enumerate(self.bytes)
            if row.any()
        }


class _Summary:
    """Bytes, legal-hold bytes and pinned bytes per tier and tenant, gathered during a rebuild."""

    def __init__(self) -> None:
        self.tiers: dict[str, list[int]] = {}
        self.tenants: dict[str, dict[str, list[int]]] = {}
        self.pinned: dict[str, dict[str, int]] = {}

    def add_columns(
        self,
        names: Sequence[str],
        tenant: npt.NDArray[np.int32],
        tier: npt.NDArray[np.int64],
        size: npt.NDArray[np.int64],
        held: npt.NDArray[np.bool_],
        pinned: npt.NDArray[np.bool_],
    ) -> None:
        shape = (int(tenant.max()) + 1 if len(tenant) else 0, len(TIERS))
        sums = []
        for mask in (np.ones(len(tenant), dtype=np.bool_), held, pinned):
            acc = np.zeros(shape, dtype=np.int64)
            np.add.at(acc, (tenant[mask], tier[mask]), size[mask])
            sums.append(acc)
        for i, j in zip(*np.nonzero(sums[0] | sums[1] | sums[2]), strict=True):
            self.add(names[i], TIERS[j], int(sums[0][i, j]), int(sums[1][i, j]), int(sums[2][i, j]))

    def add(self, tenant: str, tier: str, size: int, held: int, pinned: int) -> None:
        for acc in (
            self.tiers.setdefault(tier, [0, 0, 0]),
            self.tenants.setdefault(tenant, {}).setdefault(tier, [0, 0, 0]),
        ):
            acc[0] += size
            acc[1] += held
            acc[2] += pinned

    def pin(self, tenant: str, tier: str, size: int) -> None:
        by = self.pinned.setdefault(tenant, {})
        by[tier] = by.get(tier, 0) + size

    def catalog(self) -> CatalogSummary:
        def usage(d: Mapping[str, list[int]]) -> dict[str, TierUsage]:
            return {t: TierUsage(bytes=v[0], held_bytes=v[1], pinned_bytes=v[2]) for t, v in d.items()}

        return CatalogSummary(tiers=usage(self.tiers), tenants={t: usage(d) for t, d in self.tenants.items()})


def _by_tier(totals: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    out = dict.fromkeys(TIERS, 0)
    for tiers in totals.values():
        for tier, n in tiers.items():
            out[tier] += n
    return out
