"""The one cost model: the CostModel Liquid ships, and the prices a policy set gives a tenant.

Prices live in CostModel documents only. ``cost-model-defaults.yaml`` beside this module is
the shipped default (AWS list prices, with their source and the date they were checked);
an applied policy set may add its own default CostModel (no ``tenant``) and one per tenant.
Every reader — the planner, ``policy plan`` and ``simulate``, budgets, ``/v1/stats`` and the
dashboard — asks :func:`tier_prices`, so one budget means the same bytes everywhere.

Lookup per tier: the tenant's CostModel, else the policy set's default CostModel, else the
shipped default. A model that prices only some tiers falls through for the others.
"""

from __future__ import annotations

import functools
from pathlib import Path

from liquid.policy.models import TIERS, CostModel, PolicySet, TierPrice

#: The shipped default CostModel (package data).
DEFAULT_COST_MODEL = Path(__file__).with_name("cost-model-defaults.yaml")


@functools.cache
def default_cost_model() -> CostModel:
    """The shipped default CostModel, parsed and validated once per process."""
    from liquid.policy.loader import load_policies

    (model,) = load_policies([DEFAULT_COST_MODEL]).cost_models
    return model


def tier_prices(policies: PolicySet | None, tenant: str | None) -> dict[str, TierPrice]:
    """Each tier's prices for ``tenant`` (``None``: the default model's) under ``policies``."""
    models: list[CostModel | None] = (
        [policies.cost_model_for(tenant), policies.cost_model_for(None)] if policies else []
    )
    models.append(default_cost_model())
    out: dict[str, TierPrice] = {}
    for tier in TIERS:
        for model in models:
            price = getattr(model.spec.tiers, tier) if model is not None else None
            if price is not None:
                out[tier] = price
                break
        else:  # pragma: no cover - the shipped model prices every tier (tests/policy/test_costs.py)
            raise LookupError(f"no CostModel prices the {tier} tier")
    return out


def currency(policies: PolicySet | None, tenant: str | None) -> str:
    """The ISO 4217 currency of the model that prices ``tenant``'s storage."""
    model = (policies.cost_model_for(tenant) if policies else None) or default_cost_model()
    return model.spec.currency
