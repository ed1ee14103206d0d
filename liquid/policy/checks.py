"""Checks across documents: overlapping selectors, and budgets that can never be met.

:func:`overlaps` and :func:`static_warnings` need only the policies (the loader runs
them). :func:`budget_warnings` also needs a few catalog facts, passed as a small
:class:`CatalogSummary`, so it runs without a database: the planner builds the summary
from the catalog, tests and ``liquid policy validate --facts facts.json`` write it by hand.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from liquid.policy.costs import currency, default_cost_model, tier_prices
from liquid.policy.models import TIERS, Budget, PolicySet, Selector, TieringPolicy, to_size
from liquid.policy.problems import Problem, Severity, format_path
from liquid.units import format_size

GIB = 1024**3
_WILDCARDS = "*?["


@dataclass(frozen=True)
class TierUsage:
    """Bytes in one tier: all live bytes, those under legal hold, and those that cannot leave yet."""

    bytes: int = 0
    #: Under legal hold: may move between tiers, but can never be expired or deleted.
    held_bytes: int = 0
    #: Cannot leave the tier now (minimum residency, or a minimum storage duration not yet served).
    pinned_bytes: int = 0


@dataclass(frozen=True)
class CatalogSummary:
    """Catalog facts for :func:`budget_warnings`: usage per tier, in total and per tenant.

    Example (JSON form, as ``from_dict`` reads it)::

        {"tiers": {"cold": {"bytes": 5368709120, "heldBytes": 1073741824}},
         "tenants": {"acme": {"cold": {"bytes": 2147483648, "heldBytes": 1073741824}}}}
    """

    tiers: Mapping[str, TierUsage] = field(default_factory=dict)
    tenants: Mapping[str, Mapping[str, TierUsage]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CatalogSummary:
        """Read the JSON form; sizes may be byte counts or strings like ``"2GiB"``."""

        def usage(raw: Mapping[str, Any]) -> dict[str, TierUsage]:
            out = {}
            for tier, v in raw.items():
                if tier not in TIERS:
                    raise ValueError(f"unknown tier {tier!r} in catalog facts; allowed: {', '.join(TIERS)}")
                out[tier] = TierUsage(
                    bytes=to_size(v.get("bytes", 0)),
                    held_bytes=to_size(v.get("heldBytes", 0)),
                    pinned_bytes=to_size(v.get("pinnedBytes", 0)),
                )
            return out

        return cls(
            tiers=usage(data.get("tiers", {})),
            tenants={t: usage(v) for t, v in data.get("tenants", {}).items()},
        )


# -- overlapping selectors -----------------------------------------------------------------------


def _literal_prefix(glob: str) -> str:
    cut = min((glob.index(c) for c in _WILDCARDS if c in glob), default=len(glob))
    return glob[:cut]


def _globs_may_overlap(a: str, b: str) -> bool:
    a_literal, b_literal = not any(c in a for c in _WILDCARDS), not any(c in b for c in _WILDCARDS)
    if a_literal and b_literal:
        return a == b
    if a_literal:
        return fnmatch.fnmatchcase(a, b)
    if b_literal:
        return fnmatch.fnmatchcase(b, a)
    pa, pb = _literal_prefix(a), _literal_prefix(b)
    return pa.startswith(pb) or pb.startswith(pa)


def _any_overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return not a or not b or any(_globs_may_overlap(x, y) for x in a for y in b)


def selectors_may_overlap(a: Selector, b: Selector) -> bool:
    """False only when no object can match both selectors (conservative: 'maybe' is True)."""
    if a.tenants and b.tenants and not set(a.tenants) & set(b.tenants):
        return False
    if not _any_overlap(a.namespaces, b.namespaces) or not _any_overlap(a.content_types, b.content_types):
        return False
    if (
        a.key_prefix
        and b.key_prefix
        and not (a.key_prefix.startswith(b.key_prefix) or b.key_prefix.startswith(a.key_prefix))
    ):
        return False
    if any(k in b.tags and b.tags[k] != v for k, v in a.tags.items()):
        return False
    low = max(a.min_size or 0, b.min_size or 0)
    highs = [s for s in (a.max_size, b.max_size) if s is not None]
    if highs and low > min(highs):
        return False
    if a.classifications and b.classifications and not set(a.classifications) & set(b.classifications):
        return False
    if a.scopes and b.scopes and not set(a.scopes) & set(b.scopes):
        return False
    return "any" in (a.versions, b.versions) or a.versions == b.versions


def overlaps(policies: PolicySet) -> list[Problem]:
    """A note for each pair of TieringPolicies that may select the same object, saying which wins.

    Equal priorities are a warning: the tie is broken by name, which is rarely what was meant.
    """
    found: list[Problem] = []
    ordered = policies.tiering  # highest priority first, then by name
    for i, winner in enumerate(ordered):
        for loser in ordered[i + 1 :]:
            if not selectors_may_overlap(winner.spec.selector, loser.spec.selector):
                continue
            file, line, column = policies.locate("TieringPolicy", winner.name)
            where = f"{file}:{line}:{column}"
            lfile, lline, lcol = policies.locate("TieringPolicy", loser.name, ("spec", "selector"))
            severity: Severity
            if winner.spec.priority == loser.spec.priority:
                severity = "warning"
                message = (
                    f"selector may overlap TieringPolicy {winner.name!r} ({where}) at the same priority "
                    f"{winner.spec.priority}; {winner.name!r} wins where both match because its name "
                    "sorts first"
                )
                allowed = "different priorities for overlapping policies"
            else:
                severity = "note"
                message = (
                    f"selector may overlap TieringPolicy {winner.name!r} ({where}); where both match, "
                    f"{winner.name!r} wins (priority {winner.spec.priority} > {loser.spec.priority})"
                )
                allowed = ""
            found.append(Problem(lfile, lline, lcol, "spec.selector", message, allowed, severity))
    return found


# -- budgets that cannot be met ------------------------------------------------------------------


def _applies(policy: TieringPolicy, budget: Budget) -> bool:
    tenants = policy.spec.selector.tenants
    return budget.spec.tenant is None or not tenants or budget.spec.tenant in tenants


def _warning(policies: PolicySet, budget: Budget, path: tuple[str | int, ...], message: str) -> Problem:
    file, line, column = policies.locate("Budget", budget.name, path)
    return Problem(file, line, column, format_path(path), message, "", "warning")


def static_warnings(policies: PolicySet) -> list[Problem]:
    """Budgets that no catalog content could satisfy: a tier cap below a policy's minimum object size."""
    found = []
    for budget in policies.budgets:
        for tier, limit in budget.spec.tiers.items():
            if limit.max_bytes is None:
                continue
            for policy in policies.tiering:
                smallest = policy.spec.selector.min_size
                tiers = {r.tier for r in policy.spec.rules}
                if (
                    smallest is None
                    or tier not in tiers
                    or smallest <= limit.max_bytes
                    or not _applies(policy, budget)
                ):
                    continue
                found.append(
                    _warning(
                        policies,
                        budget,
                        ("spec", "tiers", tier, "maxBytes"),
                        f"{tier} is capped at {format_size(limit.max_bytes)}, below the minimum object size "
                        f"{format_size(smallest)} of TieringPolicy {policy.name!r}, which places objects in "
                        f"{tier}: not one of them can ever fit",
                    )
                )
    return found


def _cost(nbytes: int, price_per_gb_month: float) -> float:
    return nbytes / GIB * price_per_gb_month


def budget_warnings(policies: PolicySet, summary: CatalogSummary) -> list[Problem]:
    """Warnings, with numbers, for budgets the current catalog can never satisfy.

    Checked per Budget (global budgets against ``summary.tiers``, tenant budgets against
    that tenant's usage): total ``maxBytes`` below the bytes under legal hold (which can
    never be expired); all durable tiers capped below the held bytes; a tier's
    ``maxBytes`` below the bytes that cannot leave it yet; ``maxMonthlyCost`` below what
    the held bytes cost even in the cheapest priced durable tier; a tier's
    ``maxMonthlyCost`` below what its pinned bytes cost.
    """
    found: list[Problem] = []
    for budget in policies.budgets:
        spec = budget.spec
        who = f" of tenant {spec.tenant!r}" if spec.tenant else ""
        usage = summary.tenants.get(spec.tenant, {}) if spec.tenant else summary.tiers
        held = sum(u.held_bytes for u in usage.values())
        if spec.max_bytes is not None and held > spec.max_bytes:
            found.append(
                _warning(
                    policies,
                    budget,
                    ("spec", "maxBytes"),
                    f"maxBytes {format_size(spec.max_bytes)} is below the {format_size(held)}{who} "
                    "under legal "
                    f"hold, which can never be expired or deleted: this budget can never be met",
                )
            )
        durable = {t: lim.max_bytes for t, lim in spec.tiers.items() if t != "hot"}
        if len(durable) == 3 and all(v is not None for v in durable.values()):
            capacity = sum(v for v in durable.values() if v is not None)
            if held > capacity:
                found.append(
                    _warning(
                        policies,
                        budget,
                        ("spec", "tiers"),
                        f"warm, cold and archive together are capped at {format_size(capacity)}, below the "
                        f"{format_size(held)}{who} under legal hold: this budget can never be met",
                    )
                )
        # Priced as the planner prices: the tenant's CostModel, the default one, the shipped one.
        model = policies.cost_model_for(spec.tenant) or default_cost_model()
        prices = tier_prices(policies, spec.tenant)
        money = currency(policies, spec.tenant)
        for tier, limit in spec.tiers.items():
            pinned = usage.get(tier, _NONE).pinned_bytes
            if limit.max_bytes is not None and pinned > limit.max_bytes:
                found.append(
                    _warning(
                        policies,
                        budget,
                        ("spec", "tiers", tier, "maxBytes"),
                        f"{tier} is capped at {format_size(limit.max_bytes)}, below the "
                        f"{format_size(pinned)}{who} "
                        f"that cannot leave {tier} yet (minimum residency or storage duration)",
                    )
                )
            if limit.max_monthly_cost is not None:
                cost = _cost(pinned, prices[tier].storage_per_gb_month)
                if cost > limit.max_monthly_cost:
                    found.append(
                        _warning(
                            policies,
                            budget,
                            ("spec", "tiers", tier, "maxMonthlyCost"),
                            f"{tier} may cost {limit.max_monthly_cost:.2f} {money}/month, "
                            "but the "
                            f"{format_size(pinned)}{who} that cannot leave it cost {cost:.2f} at "
                            f"{prices[tier].storage_per_gb_month:g}/GB-month (CostModel {model.name!r})",
                        )
                    )
        durable_prices = {t: p for t, p in prices.items() if t != "hot"}
        if spec.max_monthly_cost is not None and held:
            tier, price = min(durable_prices.items(), key=lambda item: item[1].storage_per_gb_month)
            cost = _cost(held, price.storage_per_gb_month)
            if cost > spec.max_monthly_cost:
                found.append(
                    _warning(
                        policies,
                        budget,
                        ("spec", "maxMonthlyCost"),
                        f"maxMonthlyCost {spec.max_monthly_cost:.2f} {money} is below "
                        f"{cost:.2f}/month, what the {format_size(held)}{who} under legal hold cost even in "
                        f"the cheapest tier ({tier} at {price.storage_per_gb_month:g}/GB-month, CostModel "
                        f"{model.name!r}): this budget can never be met",
                    )
                )
    return found


_NONE = TierUsage()
