"""Retrieval spend caps: what reads out of cold and archive cost this month, and which restores wait.

A Budget's ``maxMonthlyRetrievalCost`` caps, per calendar month (UTC), the retrieval and
request fees of reading out of the cold and archive tiers: restores (moves out of archive,
or from cold up to warm or hot) and reads served from those tiers. The spend is read from
the event log — ``object.moved`` out of a colder tier and ``object.read`` served by one —
priced by :func:`liquid.policy.costs.tier_prices` (``retrievalPerGB`` per GiB and
``readsPer1k`` per read), each tenant at its own prices.

When a cap is reached the mover leaves that tenant's restores (a global Budget: everyone's)
in the queue, ``planned``, instead of claiming them; they run once the month rolls over or
the cap is raised. Reads themselves are never refused: a cap on reads would break a
running workflow, while a restore can wait. ``liquid policy plan``, ``liquid explain`` and
the daemon metric ``liquid_restores_held`` say what waits and why.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine, text

from liquid.policy.costs import currency, tier_prices
from liquid.policy.models import PolicySet
from liquid.units import format_money

GiB = 1024**3

_SPEND = text(
    "SELECT tenant_id, from_tier AS tier, count(*) AS n, coalesce(sum(bytes), 0)::bigint AS b FROM events"
    " WHERE kind = 'object.moved' AND at >= :start AND at < :end"
    " AND (from_tier = 'archive' OR (from_tier = 'cold' AND tier IN ('warm', 'hot')))"
    " GROUP BY tenant_id, from_tier"
    " UNION ALL"
    " SELECT tenant_id, tier, coalesce(sum(count), 0)::bigint,"
    " coalesce(sum(bytes::numeric * count), 0)::bigint FROM events"
    " WHERE kind = 'object.read' AND at >= :start AND at < :end AND tier IN ('cold', 'archive')"
    " GROUP BY tenant_id, tier"
)


def month_start(now: datetime) -> datetime:
    """The first instant of ``now``'s calendar month, UTC."""
    now = now.astimezone(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def retrieval_spend(engine: Engine, policies: PolicySet | None, now: datetime) -> dict[str, float]:
    """Month-to-date retrieval and request spend per tenant, at each tenant's prices."""
    start = month_start(now)
    prices = functools.cache(lambda tenant: tier_prices(policies, tenant))
    spend: dict[str, float] = {}
    with engine.connect() as conn:
        for r in conn.execute(_SPEND, {"start": start, "end": now}):
            p = prices(r.tenant_id).get(r.tier)
            if p is None:
                continue
            cost = int(r.b) / GiB * p.retrieval_per_gb + int(r.n) * p.reads_per_1k / 1000
            spend[r.tenant_id] = spend.get(r.tenant_id, 0.0) + cost
    return spend


@dataclass(frozen=True)
class SpendGate:
    """Whose restores wait this month, and why (empty: nobody's)."""

    #: Tenants whose restores wait; ``None`` in it means everyone's (a global cap is reached).
    held: frozenset[str | None] = frozenset()
    reasons: Mapping[str | None, str] = field(default_factory=dict)

    @property
    def everyone(self) -> bool:
        return None in self.held

    def holds(self, tenant: str) -> bool:
        return self.everyone or tenant in self.held

    def why(self, tenant: str) -> str | None:
        """The reason ``tenant``'s restores wait, or None."""
        if tenant in self.held:
            return self.reasons[tenant]
        return self.reasons.get(None) if self.everyone else None

    def claim_filter(self) -> tuple[bool, list[str]]:
        """``(hold every restore, tenants whose restores are held)`` for the journal's claim."""
        return self.everyone, sorted(t for t in self.held if t is not None)


def spend_gate(engine: Engine, policies: PolicySet | None, now: datetime) -> SpendGate:
    """Which Budgets' ``maxMonthlyRetrievalCost`` the month's spend has reached."""
    budgets = [
        b for b in (policies.budgets if policies else ()) if b.spec.max_monthly_retrieval_cost is not None
    ]
    if not budgets:
        return SpendGate()
    spend = retrieval_spend(engine, policies, now)
    held: set[str | None] = set()
    reasons: dict[str | None, str] = {}
    for budget in budgets:
        cap = budget.spec.max_monthly_retrieval_cost
        assert cap is not None
        tenant = budget.spec.tenant
        spent = spend.get(tenant, 0.0) if tenant is not None else sum(spend.values())
        if spent >= cap:
            money = currency(policies, tenant)
            held.add(tenant)
            reasons[tenant] = (
                f"retrieval spend cap of Budget {budget.name!r} reached: {format_money(spent, money)} of "
                f"{format_money(cap, money)} this month; restores wait until {_next_month(now):%Y-%m-%d}"
            )
    return SpendGate(frozenset(held), reasons)


def _next_month(now: datetime) -> datetime:
    start = month_start(now)
    return start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)


class AppliedSpendGate:
    """The gate of the applied policies, for the mover: ``gate()`` before each claim.

    The policy set is re-read only when its version changes (:class:`AppliedPolicies`), and the
    event log only when some applied Budget sets ``maxMonthlyRetrievalCost``.
    """

    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        from liquid.tiering.engine import AppliedPolicies

        self.engine = engine
        self.clock = clock
        self._source = AppliedPolicies(engine)

    def __repr__(self) -> str:
        return f"AppliedSpendGate({self.engine.url.database!r})"

    def __call__(self) -> SpendGate:
        current = self._source.current()
        return spend_gate(self.engine, current[0] if current is not None else None, self.clock())
