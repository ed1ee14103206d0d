"""Budgets: the caps a tier's members must stay under, and what a plan reports against each Budget.

A Budget (``policies/README.md``) limits bytes and/or monthly cost per tier, globally or
for one tenant. :func:`tier_caps` turns the limits on one tier into :class:`Cap`\\ s for
that tier's :class:`~liquid.tiering.ranked.RankedTier` (a cost cap weighs each byte by its
tenant's price). :func:`budget_uses` reports every Budget from running sums — bytes per
tenant and tier before and after a pass — never from a scan of the catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from liquid.policy.models import TIERS, Budget, PolicySet, format_duration, format_rate
from liquid.tiering.plan import BudgetUse
from liquid.tiering.ranked import Cap
from liquid.tiering.values import GiB, Prices

PricesOf = Callable[[str | None], dict[str, Prices]]
#: Bytes per tenant and tier (``hot`` included): the totals a plan reports.
Totals = Mapping[str, Mapping[str, int]]
#: Bytes per (tenant, namespace) and tier, for the namespaces a Budget caps.
NamespaceTotals = Mapping[tuple[str, str], Mapping[str, int]]


def tier_caps(policies: PolicySet, tier: str, prices_of: PricesOf) -> list[Cap]:
    """Every Budget's limit on ``tier`` as caps (tenant budgets first: the tighter promise)."""
    caps: list[Cap] = []
    tenants_with_prices = [m.spec.tenant for m in policies.cost_models if m.spec.tenant is not None]
    for budget in sorted(policies.budgets, key=lambda b: (b.spec.tenant is None, b.name)):
        limit = getattr(budget.spec.tiers, tier)
        if limit is None:
            continue
        tenant, namespace = budget.spec.tenant, budget.spec.namespace
        if limit.max_bytes is not None:
            caps.append(Cap(f"{budget.name}/{tier}/bytes", float(limit.max_bytes), tenant, namespace))
        if limit.max_monthly_cost is not None:
            per_byte = {t: prices_of(t)[tier].gb_month / GiB for t in tenants_with_prices}
            default = prices_of(tenant)[tier].gb_month / GiB
            caps.append(
                Cap(
                    f"{budget.name}/{tier}/cost",
                    float(limit.max_monthly_cost),
                    tenant,
                    namespace,
                    factors={} if tenant is not None else per_byte,
                    default_factor=default,
                    unit="cost",
                )
            )
    return caps


def capped_tiers(policies: PolicySet) -> list[str]:
    """Durable tiers some Budget caps, hottest first."""
    return [t for t in TIERS if t != "hot" and any(getattr(b.spec.tiers, t) for b in policies.budgets)]


def tier_costs(totals: Totals, prices_of: PricesOf) -> dict[str, float]:
    """Monthly storage cost per tier of these totals, each tenant at its own prices."""
    out = dict.fromkeys(TIERS, 0.0)
    for tenant, tiers in totals.items():
        p = prices_of(tenant)
        for tier, n in tiers.items():
            out[tier] += n / GiB * p[tier].gb_month
    return out


def budget_uses(
    policies: PolicySet,
    prices_of: PricesOf,
    before: Totals,
    after: Totals,
    *,
    namespaces: tuple[NamespaceTotals, NamespaceTotals] = ({}, {}),
) -> list[BudgetUse]:
    """Every Budget's limits with bytes and cost before and after (tenant budgets first).

    ``namespaces``: bytes per (tenant, namespace) and tier before and after, for namespace Budgets.
    """
    uses: list[BudgetUse] = []
    for budget in sorted(policies.budgets, key=lambda b: (b.spec.tenant is None, b.name)):
        tenant = budget.spec.tenant
        if budget.spec.namespace is not None and tenant is not None:
            uses.extend(_namespace_uses(budget, prices_of, namespaces))
            continue
        for tier, limit in budget.spec.tiers.items():
            cap_bytes = limit.max_bytes
            p = prices_of(tenant)[tier].gb_month
            if limit.max_monthly_cost is not None and p > 0:
                by_cost = int(limit.max_monthly_cost / p * GiB)
                cap_bytes = by_cost if cap_bytes is None else min(cap_bytes, by_cost)
            use = BudgetUse(budget.name, tenant, tier, cap_bytes, limit.max_monthly_cost)
            use.bytes_before, use.cost_before = _sum(before, tenant, (tier,), prices_of)
            use.bytes_after, use.cost_after = _sum(after, tenant, (tier,), prices_of)
            uses.append(use)
        if budget.spec.max_bytes is not None or budget.spec.max_monthly_cost is not None:
            use = BudgetUse(budget.name, tenant, None, budget.spec.max_bytes, budget.spec.max_monthly_cost)
            # Each object counted once by its durable home; cost includes hot copies.
            durable = tuple(t for t in TIERS if t != "hot")
            use.bytes_before, _ = _sum(before, tenant, durable, prices_of)
            use.bytes_after, _ = _sum(after, tenant, durable, prices_of)
            _, use.cost_before = _sum(before, tenant, TIERS, prices_of)
            _, use.cost_after = _sum(after, tenant, TIERS, prices_of)
            uses.append(use)
    return uses


def _namespace_uses(
    budget: Budget, prices_of: PricesOf, namespaces: tuple[NamespaceTotals, NamespaceTotals]
) -> list[BudgetUse]:
    tenant, namespace = budget.spec.tenant, budget.spec.namespace
    assert tenant is not None and namespace is not None
    uses = []
    for tier, limit in budget.spec.tiers.items():
        p = prices_of(tenant)[tier].gb_month
        cap_bytes = limit.max_bytes
        if limit.max_monthly_cost is not None and p > 0:
            by_cost = int(limit.max_monthly_cost / p * GiB)
            cap_bytes = by_cost if cap_bytes is None else min(cap_bytes, by_cost)
        use = BudgetUse(budget.name, tenant, tier, cap_bytes, limit.max_monthly_cost, namespace=namespace)
        b0 = namespaces[0].get((tenant, namespace), {}).get(tier, 0)
        b1 = namespaces[1].get((tenant, namespace), {}).get(tier, 0)
        use.bytes_before, use.cost_before = b0, b0 / GiB * p
        use.bytes_after, use.cost_after = b1, b1 / GiB * p
        uses.append(use)
    return uses


def _sum(
    totals: Totals, tenant: str | None, tiers: tuple[str, ...], prices_of: PricesOf
) -> tuple[int, float]:
    n = 0
    cost = 0.0
    for t, by_tier in totals.items():
        if tenant is not None and t != tenant:
            continue
        p = prices_of(t)
        for tier in tiers:
            b = by_tier.get(tier, 0)
            n += b
            cost += b / GiB * p[tier].gb_month
    return n, cost


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
