"""One cost model: the shipped CostModel prices everything no applied CostModel prices."""

from __future__ import annotations

import pytest

from liquid.config import load_settings
from liquid.errors import ConfigError
from liquid.policy.costs import currency, default_cost_model, tier_prices
from liquid.policy.loader import load_policy_sources
from liquid.policy.models import TIERS

ACME = """\
apiVersion: liquid/v1
kind: CostModel
metadata: {name: acme-prices}
spec:
  tenant: acme
  currency: EUR
  tiers:
    warm: {storagePerGBMonth: 0.5}
"""
DEFAULT = """\
apiVersion: liquid/v1
kind: CostModel
metadata: {name: contract}
spec:
  tiers:
    cold: {storagePerGBMonth: 0.01}
"""


def test_the_shipped_model_prices_every_tier_and_says_where_from() -> None:
    model = default_cost_model()
    assert {t for t, _ in model.spec.tiers.items()} == set(TIERS)
    assert model.spec.source and "2025" in model.spec.source
    assert tier_prices(None, None)["hot"].storage_per_gb_month == 12.23  # the one hot price


def test_a_tenant_model_then_the_applied_default_then_the_shipped_one() -> None:
    policies = load_policy_sources({"a.yaml": ACME, "d.yaml": DEFAULT})
    acme = tier_prices(policies, "acme")
    other = tier_prices(policies, "other")
    shipped = tier_prices(None, None)
    assert acme["warm"].storage_per_gb_month == 0.5  # its own
    assert acme["cold"].storage_per_gb_month == 0.01  # the applied default fills what it omits
    assert acme["hot"] == shipped["hot"]  # then the shipped model
    assert other["warm"] == shipped["warm"] and other["cold"].storage_per_gb_month == 0.01
    assert currency(policies, "acme") == "EUR" and currency(policies, "other") == "USD"


def test_cost_model_in_settings_is_refused_with_where_prices_live_now() -> None:
    with pytest.raises(ConfigError, match="CostModel policy document"):
        load_settings(cost_model={"hot": {"gb_month": 1.0}})
