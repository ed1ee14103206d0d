"""Overlap notes and budgets that can never be met, from a hand-written catalog summary."""

from __future__ import annotations

from liquid.policy import CatalogSummary, TierUsage, budget_warnings, load_policy_text
from liquid.policy.checks import selectors_may_overlap
from liquid.policy.models import Selector

GIB = 1024**3

BUDGETS = """\
apiVersion: liquid/v1
kind: Budget
metadata: {name: global}
spec:
  maxBytes: 10GiB
  maxMonthlyCost: 1
  tiers:
    hot: {maxBytes: 1GiB}
    warm: {maxBytes: 2GiB, maxMonthlyCost: 0.1}
    cold: {maxBytes: 2GiB}
    archive: {maxBytes: 2GiB}
---
apiVersion: liquid/v1
kind: Budget
metadata: {name: acme}
spec:
  tenant: acme
  maxBytes: 1GiB
---
apiVersion: liquid/v1
kind: CostModel
metadata: {name: prices}
spec:
  tiers:
    hot: {storagePerGBMonth: 12}
    warm: {storagePerGBMonth: 0.115}
    cold: {storagePerGBMonth: 0.023}
    archive: {storagePerGBMonth: 0.004}
"""


def _sel(**fields: object) -> Selector:
    return Selector.model_validate(fields)


def test_budget_warnings_with_numbers() -> None:
    policies = load_policy_text(BUDGETS, "b.yaml")
    summary = CatalogSummary(
        tiers={
            "warm": TierUsage(bytes=3 * GIB, held_bytes=4 * GIB, pinned_bytes=3 * GIB),
            "archive": TierUsage(bytes=300 * GIB, held_bytes=296 * GIB),
        },
        tenants={"acme": {"cold": TierUsage(bytes=5 * GIB, held_bytes=2 * GIB)}},
    )
    assert [str(w) for w in budget_warnings(policies, summary)] == [
        "b.yaml:5:13: warning: spec.maxBytes: maxBytes 10GiB is below the 300GiB under legal hold, "
        "which can never "
        "be expired or deleted: this budget can never be met",
        "b.yaml:8:5: warning: spec.tiers: warm, cold and archive together are capped at 6GiB, below "
        "the 300GiB "
        "under legal hold: this budget can never be met",
        "b.yaml:9:22: warning: spec.tiers.warm.maxBytes: warm is capped at 2GiB, below the 3GiB that "
        "cannot leave "
        "warm yet (minimum residency or storage duration)",
        "b.yaml:9:44: warning: spec.tiers.warm.maxMonthlyCost: warm may cost 0.10 USD/month, but the "
        "3GiB that "
        "cannot leave it cost 0.35 at 0.115/GB-month (CostModel 'prices')",
        # 300 GiB in archive at $0.004 = $1.20 > $1
        "b.yaml:6:19: warning: spec.maxMonthlyCost: maxMonthlyCost 1.00 USD is below 1.20/month, "
        "what the 300GiB "
        "under legal hold cost even in the cheapest tier (archive at 0.004/GB-month, CostModel "
        "'prices'): this "
        "budget can never be met",
        "b.yaml:18:13: warning: spec.maxBytes: maxBytes 1GiB is below the 2GiB of tenant 'acme' "
        "under legal hold, "
        "which can never be expired or deleted: this budget can never be met",
    ]


def test_no_warnings_when_the_catalog_fits() -> None:
    policies = load_policy_text(BUDGETS, "b.yaml")
    summary = CatalogSummary(tiers={"cold": TierUsage(bytes=GIB, held_bytes=GIB)})
    assert budget_warnings(policies, summary) == []


def test_catalog_summary_from_json_form() -> None:
    summary = CatalogSummary.from_dict(
        {
            "tiers": {"cold": {"bytes": "2GiB", "heldBytes": 1024}},
            "tenants": {"acme": {"hot": {"pinnedBytes": 5}}},
        }
    )
    assert summary.tiers["cold"] == TierUsage(bytes=2 * GIB, held_bytes=1024)
    assert summary.tenants["acme"]["hot"].pinned_bytes == 5


def test_selector_overlap_is_conservative_but_sees_disjoint_cases() -> None:
    assert selectors_may_overlap(_sel(), _sel(tenants=["a"]))
    assert not selectors_may_overlap(_sel(tenants=["a"]), _sel(tenants=["b"]))
    assert not selectors_may_overlap(_sel(namespaces=["kb-*"]), _sel(namespaces=["results-*"]))
    assert selectors_may_overlap(_sel(namespaces=["kb-*"]), _sel(namespaces=["kb-main"]))
    assert not selectors_may_overlap(_sel(namespaces=["kb"]), _sel(namespaces=["kb-*"]))
    assert not selectors_may_overlap(_sel(keyPrefix="a/"), _sel(keyPrefix="b/"))
    assert selectors_may_overlap(_sel(keyPrefix="a/"), _sel(keyPrefix="a/b/"))
    assert not selectors_may_overlap(_sel(tags={"x": "1"}), _sel(tags={"x": "2"}))
    assert not selectors_may_overlap(_sel(maxSize="1MiB"), _sel(minSize="2MiB"))
    assert not selectors_may_overlap(_sel(scopes=["step"]), _sel(scopes=["permanent"]))
    assert not selectors_may_overlap(_sel(versions="current"), _sel(versions="noncurrent"))
    assert not selectors_may_overlap(_sel(contentTypes=["text/*"]), _sel(contentTypes=["image/*"]))
    assert not selectors_may_overlap(_sel(classifications=["pii"]), _sel(classifications=["public"]))
