"""The planner's rebuild (a full plan) on hand-checked small catalogs, at a fixed time (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from liquid.config import Settings
from liquid.policy.evaluate import ObjectFacts
from liquid.policy.loader import load_policy_text
from liquid.tiering.plan import Plan
from liquid.tiering.planner import Planner
from liquid.tiering.rows import ColumnBatch, Row

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)

POLICY = """
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: default}
spec:
  rules:
    - tier: warm
      demoteAfter: 1h
    - tier: cold
      promoteAbove: 50/h
  minResidency: 10m
  expireAfter: 30d
"""


def budget(limit: str | int, tier: str = "warm") -> str:
    return f"""
---
apiVersion: liquid/v1
kind: Budget
metadata: {{name: cap}}
spec:
  tiers:
    {tier}: {{maxBytes: {limit}}}
"""


def row(
    oid: int,
    *,
    size: int = 100,
    home: str = "warm",
    rate: float = 10.0,
    idle: timedelta = timedelta(minutes=5),
    age: timedelta = timedelta(days=1),
    home_for: timedelta = timedelta(days=1),
    hold: bool = False,
) -> Row:
    facts = ObjectFacts(
        tenant="acme",
        namespace="ns",
        key=f"k{oid}",
        size=size,
        created_at=NOW - age,
        home_tier=home,
        last_access_at=NOW - idle,
        access_score=rate,
        home_since=NOW - home_for,
        legal_hold=hold,
    )
    return Row(object_id=oid, version=1, facts=facts, home_store=home, stored_size=size)


@pytest.fixture
def planner() -> Planner:
    return Planner(Settings())


def full(planner: Planner, text: str, rows: list[Row], now: datetime = NOW) -> Plan:
    """A rebuild: every row planned into a fresh state, as at start or by ``liquid policy plan``."""
    return planner.rebuild(load_policy_text(text), [ColumnBatch.of_rows(rows)], now)[1]


def plan(planner: Planner, text: str, rows: list[Row]) -> dict:
    return full(planner, text, rows).to_json()


def test_policy_alone_moves_idle_objects_cold_and_keeps_active_ones(planner: Planner) -> None:
    out = plan(
        planner, POLICY, [row(1), row(2, idle=timedelta(hours=2)), row(3, home="cold", rate=80, size=40)]
    )
    assert out["moves"] == [
        {"from": "warm", "to": "cold", "objects": 1, "bytes": 100},
        {"from": "cold", "to": "warm", "objects": 1, "bytes": 40},
    ]
    assert out["tiers"]["warm"]["bytes_before"] == 200 and out["tiers"]["warm"]["bytes_after"] == 140
    changes = {c["object_id"]: c for c in out["changes"]}
    assert changes[2]["reason"].startswith("idle") or "demoteAfter" in changes[2]["reason"]


def test_budget_exactly_met_moves_nothing(planner: Planner) -> None:
    out = plan(planner, POLICY + budget("300"), [row(1), row(2), row(3)])
    assert out["moves"] == []
    assert out["budgets"][0]["bytes_after"] == 300 and out["budgets"][0]["ok"] is True


def test_one_byte_over_budget_demotes_the_least_valuable_per_byte(planner: Planner) -> None:
    rows = [row(1, rate=30), row(2, rate=5), row(3, rate=20)]
    out = plan(planner, POLICY + budget("299"), rows)
    assert [(c["object_id"], c["action"], c["to"]) for c in out["changes"]] == [(2, "move", "cold")]
    assert "over budget" in out["changes"][0]["reason"]
    assert out["budgets"][0] == out["budgets"][0] | {"bytes_after": 200, "ok": True}


def test_value_is_per_byte_so_a_big_lukewarm_object_goes_first(planner: Planner) -> None:
    rows = [row(1, rate=10, size=1000), row(2, rate=2, size=10), row(3, rate=3, size=10)]
    out = plan(planner, POLICY + budget("100"), rows)
    assert [c["object_id"] for c in out["changes"]] == [1]


def test_budget_too_small_is_reported_over_when_residency_pins_objects(planner: Planner) -> None:
    rows = [row(1), row(2, home_for=timedelta(minutes=3)), row(3, home_for=timedelta(minutes=3))]
    out = plan(planner, POLICY + budget("50"), rows)
    assert [c["object_id"] for c in out["changes"]] == [1]
    use = out["budgets"][0]
    assert (use["bytes_after"], use["ok"]) == (200, False)


def test_hysteresis_keeps_the_resident_against_a_slightly_better_newcomer(planner: Planner) -> None:
    def moves(resident_rate: float, newcomer_rate: float) -> dict[int, str]:
        rows = [
            row(1, rate=resident_rate),
            row(2, home="cold", rate=newcomer_rate),
        ]  # ≥ 50/h: policy promotes
        out = plan(planner, POLICY + budget("100"), rows)  # one warm slot
        return {c["object_id"]: c["to"] for c in out["changes"] if c["action"] == "move"}

    # 56 x 1.25 = 70 > 60: the resident keeps its slot, nothing thrashes.
    assert moves(56, 60) == {}
    # 40 x 1.25 = 50 < 60: a clearly better newcomer takes it.
    assert moves(40, 60) == {1: "cold", 2: "warm"}


def test_expiry_and_legal_hold(planner: Planner) -> None:
    old = timedelta(days=31)
    out = plan(planner, POLICY, [row(1, age=old), row(2, age=old, hold=True), row(3)])
    actions = {c["object_id"]: c["action"] for c in out["changes"]}
    assert actions == {1: "expire", 2: "hold"}
    assert out["expirations"] == {"objects": 1, "bytes": 100}
    assert out["legal_holds"] == {"objects": 1, "bytes": 100}
    assert out["tiers"]["warm"]["bytes_after"] == 200


def test_plans_are_deterministic(planner: Planner) -> None:
    rows = lambda: [row(i, rate=(i * 7) % 13, size=50 + i) for i in range(1, 40)]  # noqa: E731
    a = plan(planner, POLICY + budget("1000"), rows())
    b = plan(planner, POLICY + budget("1000"), rows())
    a.pop("duration_s"), b.pop("duration_s")
    assert a == b


def test_costs_before_and_after(planner: Planner) -> None:
    gib = 1024**3
    out = plan(planner, POLICY, [row(1, size=gib, idle=timedelta(hours=2))])
    assert out["tiers"]["warm"]["monthly_cost_before"] == pytest.approx(0.115)
    assert out["tiers"]["cold"]["monthly_cost_after"] == pytest.approx(0.023)


def test_render_reads_like_a_plan(planner: Planner) -> None:
    p = full(planner, POLICY + budget("100"), [row(1), row(2, idle=timedelta(hours=3))])
    text = p.render()
    assert "- move    warm → cold" in text
    assert "budgets:" in text and "[ok]" in text


def test_a_budget_held_data_can_never_fit_is_a_warning_with_numbers(planner: Planner) -> None:
    capped = (
        POLICY
        + """
---
apiVersion: liquid/v1
kind: Budget
metadata: {name: tiny}
spec:
  tenant: acme
  maxBytes: 150
"""
    )
    out = plan(planner, capped, [row(1, hold=True), row(2, hold=True), row(3)])
    assert len(out["warnings"]) == 1
    assert "maxBytes 150B is below the 200B of tenant 'acme' under legal hold" in out["warnings"][0]
    assert plan(planner, capped, [row(1, hold=True), row(3)])["warnings"] == []
