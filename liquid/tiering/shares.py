"""Global budget caps shared between planner shards by value: each shard's share of each limit.

When daemons split the tenant buckets (:mod:`liquid.tiering.shards`), a per-tenant or
per-namespace cap lives whole in the one shard that plans its tenant, but a **global** cap (a
Budget without ``tenant``, on the hot tier or a durable one) spans every shard. Each shard then
plans under a *grant*, a part of the limit, and the grants are chosen so that

* **the sum never exceeds the limit**, whatever order the shards run in: a shard's grant is at
  most ``limit - sum of the others' hold``, where a shard's *hold* is what it occupies once the
  pass of its last split settled — its grant (the settle trims down to it; members that may not
  move excepted), or for a deferred rebuild the part of its share its residents occupy (a
  reservation: its plan holds nothing meanwhile). It holds that until its next split. Budget
  moves between shards by one giving back (its hold drops at its next split) and the other then
  growing into the room; never overshooting.
* **the split follows value, not 1/N**: each shard publishes a compact histogram of what it
  wants in the capped tier — units (bytes, or cost for a cost cap) per rank bin, members and
  waiting or parked offers alike — and the split is the greedy-knapsack answer computed over
  all of them: walking the bins from the highest rank down, every shard gets its units above the
  common threshold rank τ where the total reaches the limit, and the bin at τ is shared in
  proportion. Ranks compare across shards because they are forward-decayed with a landmark
  every process shares (epoch 0: :meth:`ValueModel.rank`); the hot tier's ranks compare when the
  shards' adaptive half-lives agree (each learns its own; they start from the same value).
  A shard with less demand than the limit leaves the rest, split evenly, as spare room.

A split runs in one transaction under the cap's lock row (``holder = ''``, ``FOR UPDATE``): it
records the shard's demand and use, recomputes every live shard's *share* (written to every
row, so all agree), and sets this shard's grant ``min(share, limit - the others' hold)``. Each shard
splits each budgeted tier once per planning pass, once the pass's offers are in and before the
tier settles (the :class:`~liquid.tiering.planner.Planner`'s ``shares`` hook), so a pass settles
under a grant that reflects every shard's latest demand, its own included. A row lasts ``ttl``
(the bucket lease plus two plan intervals, so it outlives a live shard's gap between passes); a
dead shard's hold is freed then.

A rebuild whose grant in a durable tier is below both its share and what its own residents
already occupy would evict residents only to have them return once the others give back, so it
is deferred (:class:`ShareDeferred`): its demand is published, the others shrink to their shares
on their next pass, and the next cycle rebuilds again. Conversely, while some daemon alive has
not published yet (it just started), a shard grows no further than its part of the buckets'
share of the limit, so the first daemon to plan does not fill the whole budget only to hand it
back a cycle later.

A bin is ``1 / BINS_PER_LOG`` of a natural-log unit of value per byte (about 28% apart); a
shard sends its bins down to where its own demand reaches the limit (the global τ can be no
lower: the others only add demand), and the rest as one total.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, text

from liquid.errors import LiquidError
from liquid.tiering.ranked import PINNED, Cap, RankedTier
from liquid.tiering.state import PlacementState

log = logging.getLogger(__name__)

#: Histogram bins per natural-log unit of rank.
BINS_PER_LOG = 4
#: A rebuild is deferred only when its grant falls short of its share (and its residents) by more
#: than this part of the limit; a smaller shortfall is trimmed and comes back a pass later.
DEFER_SLACK = 0.02

_LOCK_ROW = text(
    "INSERT INTO tiering_shares (cap, holder, demand, used, share, granted, expires_at)"
    " VALUES (:cap, '', CAST('{}' AS jsonb), 0, 0, :limit, 'infinity') ON CONFLICT DO NOTHING"
)
_LOCK = text("SELECT granted FROM tiering_shares WHERE cap = :cap AND holder = '' FOR UPDATE")
_EXPIRE = text("DELETE FROM tiering_shares WHERE cap = :cap AND holder <> '' AND expires_at < now()")
_PUBLISH = text(
    """
INSERT INTO tiering_shares AS s (cap, holder, demand, used, share, granted, expires_at, updated_at)
VALUES (:cap, :holder, CAST(:demand AS jsonb), :used, 0, 0, now() + make_interval(secs => :ttl), now())
ON CONFLICT (cap, holder) DO UPDATE SET
    demand = excluded.demand, used = excluded.used, expires_at = excluded.expires_at, updated_at = now()
"""
)
_LIVE = text("SELECT holder, demand, used, granted FROM tiering_shares WHERE cap = :cap AND holder <> ''")
_SHARE = text("UPDATE tiering_shares SET share = :share WHERE cap = :cap AND holder = :holder")
_GRANT = text(
    "UPDATE tiering_shares SET granted = :granted, used = :used WHERE cap = :cap AND holder = :holder"
)
_RELEASE = text("DELETE FROM tiering_shares WHERE holder = :holder")
_ROWS = text(
    "SELECT cap, holder, used, share, granted FROM tiering_shares WHERE holder <> '' ORDER BY cap, holder"
)


class ShareDeferred(LiquidError, RuntimeError):
    """A rebuild waits: other shards still hold the budget its residents occupy."""


@dataclass
class Demand:
    """A shard's wants under one cap: units per rank bin, highest first when walked."""

    bins: dict[int, float] = field(default_factory=dict)
    #: Members that may not move (inside their minResidency): above every bin.
    pinned: float = 0.0
    #: Wanted but worth nothing per read (rank ``-inf``): below every bin.
    worthless: float = 0.0
    #: Units left out below the shard's own threshold (never part of a share).
    below: float = 0.0

    @classmethod
    def of(cls, ranks: Sequence[float], units: Sequence[float], limit: float) -> Demand:
        """Bin ``(rank, units)`` pairs; bins below where this demand alone reaches ``limit`` are one total."""
        d = cls()
        for rank, u in zip(ranks, units, strict=True):
            if u <= 0:
                continue
            if rank == PINNED:
                d.pinned += u
            elif rank == -math.inf or math.isnan(rank):
                d.worthless += u
            else:
                b = math.floor(rank * BINS_PER_LOG)
                d.bins[b] = d.bins.get(b, 0.0) + u
        cum = d.pinned
        kept: dict[int, float] = {}
        for b in sorted(d.bins, reverse=True):
            if cum >= limit:
                d.below += d.bins[b]
            else:
                kept[b] = d.bins[b]
                cum += d.bins[b]
        d.bins = kept
        if cum >= limit:
            d.below, d.worthless = d.below + d.worthless, 0.0
        return d

    @property
    def total(self) -> float:
        return self.pinned + sum(self.bins.values()) + self.worthless + self.below

    def to_json(self) -> dict[str, Any]:
        return {
            "bins": sorted(([b, u] for b, u in self.bins.items()), reverse=True),
            "pinned": self.pinned,
            "worthless": self.worthless,
            "below": self.below,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Demand:
        return cls(
            {int(b): float(u) for b, u in raw.get("bins", [])},
            float(raw.get("pinned", 0.0)),
            float(raw.get("worthless", 0.0)),
            float(raw.get("below", 0.0)),
        )

    def levels(self) -> dict[float, float]:
        """Units by level, a level being a bin (``+inf`` pinned, ``-inf`` worthless); ``below`` is none."""
        out: dict[float, float] = {float(b): u for b, u in self.bins.items()}
        if self.pinned:
            out[math.inf] = self.pinned
        if self.worthless:
            out[-math.inf] = self.worthless
        return out


def split(limit: float, demands: Mapping[str, Demand]) -> dict[str, float]:
    """Each shard's share of ``limit``: its units above the common threshold, that bin's in proportion.

    The shares add up to at most ``limit``; when all demand fits, the spare is split evenly.

    >>> a = Demand({8: 60.0, 4: 40.0}); b = Demand({6: 50.0})
    >>> split(130.0, {"a": a, "b": b})  # 60 (a) and 50 (b) fit; the 40 at bin 4 gets the 20 left
    {'a': 80.0, 'b': 50.0}
    """
    shares = dict.fromkeys(demands, 0.0)
    if not demands or limit <= 0:
        return shares
    by_level: dict[float, dict[str, float]] = {}
    for holder, d in demands.items():
        for level, u in d.levels().items():
            by_level.setdefault(level, {})[holder] = u
    room = limit
    for level in sorted(by_level, reverse=True):
        here = by_level[level]
        total = sum(here.values())
        if total <= room:
            for h, u in here.items():
                shares[h] += u
            room -= total
            continue
        for h, u in here.items():
            shares[h] += room * (u / total)
        return _below_limit(shares, limit)
    for h in shares:
        shares[h] += room / len(shares)
    return _below_limit(shares, limit)


def _below_limit(shares: dict[str, float], limit: float) -> dict[str, float]:
    """Rounding must never make the shares add up to more than the limit."""
    total = sum(shares.values())
    if total > limit:
        scale = limit / total
        return {h: s * scale for h, s in shares.items()}
    return shares


@dataclass(frozen=True)
class Grant:
    """One split's answer for this shard under one cap."""

    cap: str
    limit: float
    used: float
    share: float
    granted: float
    shards: int
    #: A rebuild that waits for budget (see :class:`ShareDeferred`).
    deferred: bool = False


def global_caps(state: PlacementState) -> list[tuple[str, RankedTier, Cap]]:
    """(tier, its ranked members, cap) of every global cap the state plans under, in a fixed order."""
    tiers = [("hot", state.hot), *state.capped.items()]
    return [(tier, ranked, cap) for tier, ranked in tiers for cap in ranked.caps if cap.tenant is None]


class CapShares:
    """One planner shard's side of the split (see the module docstring); the planner's ``shares`` hook.

    Args:
        engine: the catalog (migrated to 0014 or later).
        holder: this shard's unique name (the daemon's worker id).
        ttl: how long a published row holds without a new split (longer than between two passes).
        refresh: seconds a histogram is reused for at most (see :meth:`_demand`).
        drift: share of a tier's members and offers that may change before the histogram is made
            again sooner than ``refresh``.
        monotonic: the local clock of ``refresh``.
    """

    def __init__(
        self,
        engine: Engine,
        holder: str,
        *,
        ttl: float,
        refresh: float = 30.0,
        drift: float = 0.01,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"a share must last more than 0 seconds, got {ttl}")
        self.engine = engine
        self.holder = holder
        self.ttl = float(ttl)
        self.refresh = refresh
        self.drift = drift
        self.monotonic = monotonic
        #: Histograms made (the others were reused: see :meth:`_demand`).
        self.histograms = 0
        self._demands: dict[str, tuple[RankedTier, int, float, Demand]] = {}
        self.splits = 0
        #: Daemons alive and this one's part of the buckets (set from each bucket claim): until
        #: every daemon alive has published, a shard grows no further than its part of a limit.
        self.members = 1
        self.fraction = 1.0
        #: The last split's grants, by ``<tier>/<cap name>``.
        self.grants: dict[str, Grant] = {}

    def __repr__(self) -> str:
        grants = ", ".join(f"{k}={g.granted:.0f}/{g.limit:.0f}" for k, g in sorted(self.grants.items()))
        return f"CapShares({self.holder!r}, splits={self.splits}, grants=[{grants}])"

    def __call__(self, state: PlacementState, *, tier: str, rebuild: bool) -> None:
        """Publish this shard's demand under ``tier``'s global caps, split them, plan under the grants.

        Raises:
            ShareDeferred: a rebuild would evict residents of a durable tier that another shard
                is about to give room for (see the module docstring); rebuild again next cycle.
            sqlalchemy.exc.SQLAlchemyError: the catalog could not be asked (the pass fails and
                the next one rebuilds).
        """
        caps = [(t, r, c) for t, r, c in global_caps(state) if t == tier]
        if not caps:
            return
        grants: dict[str, Grant] = {}
        with self.engine.begin() as conn:
            for key, ranked, cap in sorted(
                ((f"{tier}/{cap.name}", ranked, cap) for tier, ranked, cap in caps), key=lambda c: c[0]
            ):
                if cap.policy_limit is None:  # from here on ``limit`` is this shard's grant
                    cap.policy_limit = cap.limit
                durable = rebuild and not key.startswith("hot/")
                grants[key] = self._split(conn, key, cap.policy_limit, ranked, cap, may_defer=durable)
        self.splits += 1
        current = {f"{t}/{c.name}" for t, _, c in global_caps(state)}
        self.grants = {k: g for k, g in self.grants.items() if k in current} | grants
        for key, _tier, ranked, cap in ((f"{t}/{c.name}", t, r, c) for t, r, c in caps):
            ranked.set_limit(cap, grants[key].granted)
        deferred = [g for g in grants.values() if g.deferred]
        if deferred:
            g = deferred[0]
            raise ShareDeferred(
                f"planner shard {self.holder}: budget cap {g.cap} grants {g.granted:.0f} of this shard's"
                f" share {g.share:.0f} while its residents use {g.used:.0f}; the other {g.shards - 1}"
                " shard(s) give the rest back on their next pass, and this shard rebuilds on its next cycle"
            )

    def _split(
        self, conn: Connection, key: str, limit: float, ranked: RankedTier, cap: Cap, *, may_defer: bool
    ) -> Grant:
        demand = self._demand(key, limit, ranked, cap)
        conn.execute(_LOCK_ROW, {"cap": key, "limit": limit})
        conn.execute(_LOCK, {"cap": key})
        conn.execute(_EXPIRE, {"cap": key})
        conn.execute(
            _PUBLISH,
            {
                "cap": key,
                "holder": self.holder,
                "demand": json.dumps(demand.to_json()),
                "used": cap.used,
                "ttl": self.ttl,
            },
        )
        rows = conn.execute(_LIVE, {"cap": key}).all()
        demands = {str(h): Demand.from_json(d) for h, d, _, _ in rows}
        hold = {str(h): max(float(u), float(g)) for h, _, u, g in rows}
        shares = split(limit, demands)
        for h, s in shares.items():
            conn.execute(_SHARE, {"cap": key, "holder": h, "share": s})
        others = sum(v for h, v in hold.items() if h != self.holder)
        granted = max(0.0, min(shares[self.holder], limit - others))
        if len(rows) < self.members:
            # Someone alive has not published yet (a daemon just started): its demand is unknown,
            # so grow no further than this shard's part of the buckets (what it has stays).
            granted = min(granted, max(cap.used, limit * self.fraction))
        # A shortfall under DEFER_SLACK of the limit is trimmed rather than worth a second scan.
        deferred = may_defer and granted < min(shares[self.holder], cap.used) - DEFER_SLACK * limit
        # What this shard holds once the pass settles: its grant (the settle trims down to it;
        # members that may not move stay); deferred, the part of its share its residents occupy
        # (reserved, so that the others shrink to their own shares and leave it the room).
        share = shares[self.holder]
        holds = min(cap.used, share) if deferred else min(cap.used, max(granted, demand.pinned))
        conn.execute(_GRANT, {"cap": key, "holder": self.holder, "granted": granted, "used": holds})
        return Grant(key, limit, cap.used, shares[self.holder], granted, len(rows), deferred)

    def _demand(self, key: str, limit: float, ranked: RankedTier, cap: Cap) -> Demand:
        """This shard's histogram under ``cap``, made again only when it may have moved.

        Making it reads every member and offer of the tier; a cycle should cost what changed. So
        the last one is reused until ``drift`` of the tier's objects were offered, withdrawn or
        re-ranked since, or ``refresh`` seconds passed (a new state, after a rebuild, always
        makes one). The split is then at most that stale; the grant's guarantees do not depend
        on it.
        """
        now = self.monotonic()
        last = self._demands.get(key)
        if last is not None:
            tier, mutations, made, demand = last
            size = max(len(ranked.members), ranked.ranked_count())
            fresh = now - made < self.refresh and ranked.mutations - mutations < max(1.0, self.drift * size)
            if tier is ranked and fresh:
                return demand
        ranks, units = ranked.demand(cap)
        demand = Demand.of(ranks, units, limit)
        self.histograms += 1
        self._demands[key] = (ranked, ranked.mutations, now, demand)
        return demand

    def release(self) -> None:
        """Give every share back at once (a clean stop: the others may grow into it)."""
        with self.engine.begin() as conn:
            conn.execute(_RELEASE, {"holder": self.holder})
        self.grants = {}

    def rows(self) -> list[tuple[str, str, float, float, float]]:
        """Every shard's (cap, holder, used, share, granted) as the catalog has them."""
        with self.engine.connect() as conn:
            return [(str(c), str(h), float(u), float(s), float(g)) for c, h, u, s, g in conn.execute(_ROWS)]


__all__ = [
    "BINS_PER_LOG",
    "DEFER_SLACK",
    "CapShares",
    "Demand",
    "Grant",
    "ShareDeferred",
    "global_caps",
    "split",
]
