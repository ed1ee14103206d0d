"""The shipped examples in policies/ validate, and policies/schema.json is current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liquid.policy import generate_schema, load_policies
from liquid.policy.costs import DEFAULT_COST_MODEL
from liquid.policy.schema import schema_text

POLICIES = Path(__file__).resolve().parents[2] / "policies"
EXAMPLES = sorted(POLICIES.glob("*.yaml"))


def test_the_examples_the_issue_asks_for_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {
        "workflow-results.yaml",
        "knowledge-base.yaml",
        "audit-payloads.yaml",
        "cost-capped-tenant.yaml",
    } <= names
    assert "cost-model-defaults.yaml" not in names  # one cost model: it ships inside the package
    assert (POLICIES / "README.md").exists()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_on_its_own_without_warnings(path: Path) -> None:
    policies = load_policies([path])
    assert policies.warnings == ()


def test_all_examples_validate_together() -> None:
    policies = load_policies([POLICIES])
    assert {p.name for p in policies.tiering} >= {"workflow-results", "knowledge-base", "audit-payloads"}
    assert [b.name for b in policies.budgets] == ["acme", "demo"]
    default, acme, other = (policies.cost_model_for(t) for t in (None, "acme", "other"))
    assert default is None  # the shipped default prices everyone else (liquid.policy.costs)
    assert acme is not None and acme.name == "acme-prices"
    assert other is None
    assert policies.warnings == ()
    # Overlaps are resolved by priority and said so.
    assert any("'knowledge-base' wins (priority 200 > 50)" in n.message for n in policies.notes)


def test_default_cost_model_states_its_source_and_list_prices() -> None:
    model = load_policies([DEFAULT_COST_MODEL]).cost_models[0]
    assert model.spec.source and "AWS" in model.spec.source and "2025" in model.spec.source
    tiers = dict(model.spec.tiers.items())
    assert tiers["cold"].storage_per_gb_month == 0.023
    assert tiers["archive"].storage_per_gb_month == 0.004
    assert tiers["archive"].retrieval_per_gb == 0.03
    assert tiers["archive"].min_storage_duration == 90 * 86400
    text = DEFAULT_COST_MODEL.read_text()
    assert "0.0125" in text and "30d" in text  # Standard-IA alternative documented


def test_schema_json_is_current() -> None:
    """policies/schema.json is generated; regenerate with `liquid policy schema > policies/schema.json`."""
    checked_in = json.loads((POLICIES / "schema.json").read_text())
    assert checked_in == generate_schema(), "policies/schema.json is stale: run `liquid policy schema`"
    assert (POLICIES / "schema.json").read_text() == schema_text()


def test_schema_describes_every_kind_and_human_units() -> None:
    schema = generate_schema()
    assert set(schema["discriminator"]["mapping"]) == {"TieringPolicy", "Budget", "CostModel"}
    rule = schema["$defs"]["TierRule"]["properties"]
    assert "demoteAfter" in rule and "promoteAbove" in rule
    duration = rule["demoteAfter"]["anyOf"][0]
    assert {"type": "string"}.items() <= next(o for o in duration["anyOf"] if o["type"] == "string").items()
    assert schema["$defs"]["TierRule"]["additionalProperties"] is False
