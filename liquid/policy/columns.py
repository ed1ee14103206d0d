"""Evaluation over columns: :func:`liquid.policy.evaluate.evaluate` for many objects at once.

A rebuild evaluates every live object; one Python call per object costs microseconds that a
catalog of millions cannot afford. :func:`evaluate_columns` takes the objects' facts as numpy
columns (:class:`FactColumns`) and returns, per object, the policy that selects it, the tier,
the action and when the decision next changes — the same answers as ``evaluate`` (a test
holds the two to equality on generated objects), computed with array operations over each
policy's compiled ladder (``evaluate._Ladder``, shared with ``evaluate``). Reasons are not
computed here: the planner asks ``evaluate`` for the few objects whose decision it reports.

Times are epoch seconds; a missing time is NaN. Tiers are indices into ``TIERS``; actions
are indices into :data:`ACTIONS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from liquid.policy.evaluate import _COMPILED, _MAX_TIMESTAMP, ObjectFacts, _glob_match, _Ladder, _ts
from liquid.policy.models import EXECUTION_SCOPES, TIERS, PolicySet, Selector

ACTIONS = ("keep", "move", "expire", "hold")
KEEP, MOVE, EXPIRE, HOLD = range(4)
_TEMP = {tier: i for i, tier in enumerate(TIERS)}

F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]


@dataclass
class FactColumns:
    """:class:`~liquid.policy.evaluate.ObjectFacts` of many objects, one array per field."""

    tenant: npt.NDArray[np.object_]
    namespace: npt.NDArray[np.object_]
    key: npt.NDArray[np.object_]
    size: Ints
    content_type: npt.NDArray[np.object_]
    #: Each object's tags (a mapping), or None for none.
    tags: npt.NDArray[np.object_]
    classification: npt.NDArray[np.object_]
    created: F64
    #: Index into TIERS.
    home: npt.NDArray[np.int8]
    last_access: F64
    #: Decayed reads per hour as of ``now``.
    score: F64
    home_since: F64
    legal_hold: Bools
    scope: npt.NDArray[np.object_]
    finished: F64
    superseded: F64
    #: Newer noncurrent versions of the same key (``ObjectFacts.newer_noncurrent``).
    newer_noncurrent: Ints
    #: Reads counted so far (``access_stats.hits``; 0 when never read).
    hits: Ints

    def __len__(self) -> int:
        return len(self.size)

    def take(self, index: Any) -> FactColumns:
        """The rows at ``index`` (a mask or indices)."""
        return FactColumns(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def of_facts(cls, facts: Sequence[ObjectFacts]) -> FactColumns:
        """Facts object by object, as columns (for callers that read row by row)."""

        def obj(values: list[Any]) -> npt.NDArray[np.object_]:
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out

        def ts(value: datetime | None) -> float:
            return math.nan if value is None else value.timestamp()

        return cls(
            tenant=obj([f.tenant for f in facts]),
            namespace=obj([f.namespace for f in facts]),
            key=obj([f.key for f in facts]),
            size=np.array([f.size for f in facts], dtype=np.int64),
            content_type=obj([f.content_type for f in facts]),
            tags=obj([dict(f.tags) or None for f in facts]),
            classification=obj([f.classification for f in facts]),
            created=np.array([ts(f.created_at) for f in facts], dtype=np.float64),
            home=np.array([TIERS.index(f.home_tier) for f in facts], dtype=np.int8),
            last_access=np.array([ts(f.last_access_at) for f in facts], dtype=np.float64),
            score=np.array([f.access_score for f in facts], dtype=np.float64),
            home_since=np.array([ts(f.home_since) for f in facts], dtype=np.float64),
            legal_hold=np.array([f.legal_hold for f in facts], dtype=np.bool_),
            scope=obj([f.scope for f in facts]),
            finished=np.array([ts(f.execution_finished_at) for f in facts], dtype=np.float64),
            superseded=np.array([ts(f.superseded_at) for f in facts], dtype=np.float64),
            newer_noncurrent=np.array([f.newer_noncurrent for f in facts], dtype=np.int64),
            hits=np.array([f.hits for f in facts], dtype=np.int64),
        )


@dataclass
class ColumnDecisions:
    """Per object: the selecting policy's index in ``policies.tiering`` (-1: none), tier, action,
    and the next change as an epoch second (``now`` for a move or expiry, inf when none)."""

    policy: npt.NDArray[np.int32]
    tier: npt.NDArray[np.int8]
    action: npt.NDArray[np.int8]
    next_change: F64


def evaluate_columns(policies: PolicySet, facts: FactColumns, now: datetime) -> ColumnDecisions:
    """``evaluate(policies, facts[i], now)`` for every ``i``, ``next_change_at`` included."""
    t = _ts(now, "now")
    n = len(facts)
    out = ColumnDecisions(
        policy=np.full(n, -1, dtype=np.int32),
        tier=facts.home.copy(),
        action=np.full(n, KEEP, dtype=np.int8),
        next_change=np.full(n, math.inf),
    )
    free = np.ones(n, dtype=np.bool_)
    for i, (_, policy, ladder) in enumerate(_COMPILED.get(policies)):
        if not free.any():
            break
        idx = np.nonzero(free)[0]
        hit = idx[_selected(policy.spec.selector, facts.take(idx))]
        if not len(hit):
            continue
        free[hit] = False
        out.policy[hit] = i
        tier, action, next_change = decide_columns(ladder, facts.take(hit), t)
        out.tier[hit], out.action[hit], out.next_change[hit] = tier, action, next_change
    return out


def select_columns(policies: PolicySet, facts: FactColumns) -> npt.NDArray[np.int32]:
    """Index in ``policies.tiering`` of the policy that selects each object, -1 for none."""
    n = len(facts)
    out = np.full(n, -1, dtype=np.int32)
    free = np.ones(n, dtype=np.bool_)
    for i, (_, policy, _) in enumerate(_COMPILED.get(policies)):
        idx = np.nonzero(free)[0]
        if not len(idx):
            break
        hit = idx[_selected(policy.spec.selector, facts.take(idx))]
        free[hit] = False
        out[hit] = i
    return out


def _selected(sel: Selector, f: FactColumns) -> Bools:
    """``matches(sel, f[i])`` for every row (see ``evaluate._selector_test``)."""
    ok = np.ones(len(f), dtype=np.bool_)
    if sel.tenants:
        ok &= np.isin(f.tenant, list(sel.tenants))
    for globs, column in ((sel.namespaces, f.namespace), (sel.content_types, f.content_type)):
        match = _glob_match(tuple(globs))
        if match is not None:
            ok &= _per_value(column, lambda v, m=match: m(v) is not None)
    if sel.key_prefix:
        prefix = sel.key_prefix
        ok &= np.fromiter((k.startswith(prefix) for k in f.key), dtype=np.bool_, count=len(f))
    if sel.tags:
        wanted = tuple(sel.tags.items())
        ok &= np.fromiter(
            (tags is not None and all(k in tags and str(tags[k]) == v for k, v in wanted) for tags in f.tags),
            dtype=np.bool_,
            count=len(f),
        )
    if sel.min_size is not None:
        ok &= f.size >= sel.min_size
    if sel.max_size is not None:
        ok &= f.size <= sel.max_size
    if sel.classifications:
        ok &= _per_value(f.classification, lambda v: v in sel.classifications)
    if sel.scopes:
        ok &= _per_value(f.scope, lambda v: v in sel.scopes)
    if sel.versions == "current":
        ok &= np.isnan(f.superseded)
    elif sel.versions == "noncurrent":
        ok &= ~np.isnan(f.superseded)
    if sel.newer_noncurrent_versions is not None:
        ok &= f.newer_noncurrent >= sel.newer_noncurrent_versions
    return ok


def _per_value(column: npt.NDArray[np.object_], test: Any) -> Bools:
    """``test`` once per distinct value (namespaces, content types: few), mapped back to rows."""
    if not len(column):
        return np.zeros(0, dtype=np.bool_)
    seen: dict[Any, bool] = {}
    return np.fromiter(
        (seen[v] if v in seen else seen.setdefault(v, bool(test(v))) for v in column),
        dtype=np.bool_,
        count=len(column),
    )


@dataclass
class _Objects:
    """Objects under one ladder, as ``evaluate._Times`` and ``_place`` see them (epoch seconds)."""

    home: npt.NDArray[np.int8]
    start: F64  # NaN while the clock has not started
    last_ref: F64
    last_access: F64  # NaN when never read
    home_since: F64
    held: Bools

    def take(self, index: Any) -> _Objects:
        return _Objects(*(getattr(self, f.name)[index] for f in fields(self)))


def decide_columns(
    ladder: _Ladder, f: FactColumns, t: float
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8], F64]:
    """(tier, action, next change) of objects under one policy's ladder, at ``t``."""
    o = _times(ladder, f)
    n = len(f)
    tier, action = _place(ladder, o, np.full(n, t), f.score)
    next_change = np.full(n, math.inf)
    pending = (action == MOVE) | (action == EXPIRE)
    next_change[pending] = t
    open_ = ~pending & ~np.isnan(o.start)
    if open_.any():
        i = np.nonzero(open_)[0]
        next_change[i] = _next_change(ladder, o.take(i), t, f.score[i], tier[i], action[i])
    return tier, action, next_change


def _times(ladder: _Ladder, f: FactColumns) -> _Objects:
    """The objects' times as ``evaluate._Times`` has them."""
    start = f.created.copy()
    if ladder.noncurrent:
        sup = ~np.isnan(f.superseded)
        start[sup] = f.superseded[sup]
    else:
        sup = np.zeros(len(f), dtype=np.bool_)
    in_execution = ~sup & np.isin(f.scope, list(EXECUTION_SCOPES))
    start[in_execution] = f.finished[in_execution]  # NaN until the execution finished
    last_access = f.last_access
    # ``max(last_access or start, start)``: a missing (or zero) last access means the start.
    no_access = np.isnan(last_access) | (last_access == 0)
    last_ref = np.where(no_access, start, np.maximum(np.where(no_access, 0.0, last_access), start))
    home_since = np.where(np.isnan(f.home_since), f.created, f.home_since)
    held = f.legal_hold | ladder.legal_hold
    return _Objects(f.home, start, last_ref, last_access, home_since, held)


def _place(
    ladder: _Ladder, o: _Objects, t: F64, score: F64
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8]]:
    """``evaluate._place`` without reasons: (tier, action) per object, ``t`` per object."""
    home = o.home
    n = len(home)
    tier = home.copy()
    action = np.full(n, KEEP, dtype=np.int8)
    started = ~np.isnan(o.start)
    with np.errstate(invalid="ignore"):
        age = t - o.start
        expiry = np.zeros(n, dtype=np.bool_)
        if ladder.expire_after is not None:
            expiry |= age >= ladder.expire_after
        if ladder.expire_at is not None:
            expiry |= t >= ladder.expire_at
        expiry &= started
        expire = expiry & ~o.held
        action[expire] = EXPIRE
        live = started & ~expire
        lt = _ladder(ladder, home, age, t - o.last_ref, o.last_access, o.home_since, t, score, live)
        tier[live] = lt[live]
        # minResidency: no move before the home tier's residency has passed since the last move.
        residency = np.array([ladder.residency[name] for name in TIERS])[home.astype(np.int64)]
        stay = live & (tier != home) & (t < o.home_since + residency)
        tier[stay] = home[stay]
    action[live & expiry] = HOLD
    action[live & ~expiry & (tier != home)] = MOVE
    return tier, action


def _ladder(
    ladder: _Ladder,
    home: npt.NDArray[np.int8],
    age: F64,
    idle: F64,
    last_access: F64,
    home_since: F64,
    t: F64,
    score: F64,
    rows: Bools,
) -> npt.NDArray[np.int8]:
    """``evaluate._ladder``'s tier per object (rows outside ``rows`` are left as home)."""
    out = home.copy()
    todo = rows.copy()
    archive = _TEMP["archive"]
    if ladder.archive_after is not None:
        hit = todo & (age >= ladder.archive_after)
        out[hit], todo = archive, todo & ~hit
    if ladder.archive_at is not None:
        hit = todo & (t >= ladder.archive_at)
        out[hit], todo = archive, todo & ~hit
    tiers = [_TEMP[x] for x in ladder.tiers]
    if not tiers:
        return out
    # Fall while the current rule's thresholds are crossed: d = leading crossed rules.
    d = np.zeros(len(home), dtype=np.int64)
    falling = todo.copy()
    for j in range(len(tiers) - 1):
        max_age, demote_at, demote_after, demote_below = ladder.demotions[j]
        crossed = np.zeros(len(home), dtype=np.bool_)
        if max_age is not None:
            crossed |= age >= max_age
        if demote_at is not None:
            crossed |= t >= demote_at
        if demote_after is not None:
            crossed |= idle >= demote_after
        if demote_below is not None:
            crossed |= score < demote_below
        falling &= crossed
        d += falling
    temps = np.array(ladder.temps, dtype=np.int64)
    target = temps[d]
    home_temp = home.astype(np.int64)  # temperatures are tier indices
    colder = todo & (target > home_temp)
    out[colder] = target[colder]
    warmer = todo & (target < home_temp)
    # Promotion: from rule d down, while the rule's tier is warmer than home, the first rule
    # whose promoteAbove the rate reaches (or, without one, a read since the last move).
    found = np.zeros(len(home), dtype=np.bool_)
    stopped = np.zeros(len(home), dtype=np.bool_)
    read_since = ~np.isnan(last_access) & (np.nan_to_num(last_access, nan=-math.inf) > home_since)
    for j in range(len(tiers)):
        looking = warmer & ~found & ~stopped & (d <= j)
        stopped |= looking & (temps[j] >= home_temp)
        looking &= temps[j] < home_temp
        above = ladder.promote_above[j]
        if above is not None:
            hit = looking & (score >= above)
        elif ladder.restore_on_access:
            hit = looking & read_since
        else:
            hit = np.zeros(len(home), dtype=np.bool_)
        out[hit] = tiers[j]
        found |= hit
    return out


def _next_change(
    ladder: _Ladder,
    o: _Objects,
    t: float,
    score: F64,
    tier: npt.NDArray[np.int8],
    action: npt.NDArray[np.int8],
) -> F64:
    """``evaluate._next_change``: the earliest future threshold at which (tier, action) differs."""
    n = len(o.home)
    bases = (o.start, o.last_ref, o.home_since)
    candidates: list[F64] = [bases[base] + after for base, after in ladder.thresholds]
    candidates += [np.full(n, when) for when in ladder.instants]
    for below in ladder.rates:
        with np.errstate(divide="ignore", invalid="ignore"):
            when = t + ladder.half_life * np.log2(score / below)
        candidates.append(np.where(score >= below, when, math.inf))
    best = np.full(n, math.inf)
    for when in candidates:
        valid = (t < when) & (when < _MAX_TIMESTAMP)
        if not valid.any():
            continue
        i = np.nonzero(valid)[0]
        probe = when[i] + 1e-3
        if ladder.half_life <= 0:
            decayed = np.zeros(len(i))
        else:
            decayed = score[i] * 0.5 ** ((probe - t) / ladder.half_life)
        later_tier, later_action = _place(ladder, o.take(i), probe, decayed)
        differs = (later_tier != tier[i]) | (later_action != action[i])
        best[i] = np.where(differs, np.minimum(best[i], when[i]), best[i])
    return best
