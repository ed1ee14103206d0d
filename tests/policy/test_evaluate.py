"""Evaluation tables: one row per rule behaviour, with an injected clock (no datetime.now)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from liquid.policy import Decision, ObjectFacts, PolicySet, evaluate, load_policy_text, matches, select_policy

T0 = datetime(2025, 1, 1, tzinfo=UTC)
S, M, H, D = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)

POLICIES = load_policy_text(
    """
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: ladder}
spec:
  selector: {namespaces: [results]}
  rules:
    - {name: fresh, tier: hot, demoteAfter: 4h, promoteAbove: 30/h}
    - {name: recent, tier: warm, demoteAfter: 7d}
    - {name: old, tier: cold}
  minResidency: 15m
  expireAfter: 90d
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: exec}
spec:
  selector: {namespaces: [steps], scopes: [step, execution]}
  rules:
    - {tier: hot, demoteAfter: 10m}
    - {tier: cold}
  expireAfter: 1h
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: seconds}
spec:
  selector: {namespaces: [scratch]}
  rules:
    - {tier: hot, demoteAfter: 90s}
    - {tier: warm}
  expireAfter: 5m
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: aged}
spec:
  selector: {namespaces: [logs]}
  rules:
    - {tier: warm, maxAge: 30d}
    - {tier: cold}
  archiveAfter: 365d
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: rate}
spec:
  selector: {namespaces: [features]}
  rules:
    - {tier: hot, demoteBelow: 1/h}
    - {tier: warm}
  accessHalfLife: 1h
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: dated}
spec:
  selector: {namespaces: [campaign]}
  rules:
    - {tier: warm, demoteAt: 2025-03-01}
    - {tier: cold}
  archiveAt: 2025-06-01
  expireAt: 2025-09-01
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: sticky}
spec:
  selector: {namespaces: [reports]}
  restoreOnAccess: false
  rules:
    - {tier: warm, demoteAfter: 1d}
    - {tier: cold}
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: held}
spec:
  selector: {namespaces: [audit]}
  legalHold: true
  rules:
    - {tier: warm, demoteAfter: 30d}
    - {tier: cold}
  expireAfter: 365d
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: old-versions}
spec:
  priority: 10
  selector: {namespaces: [results], versions: noncurrent}
  expireAfter: 30d
""",
    "table.yaml",
)


def facts(namespace: str = "results", **changes: Any) -> ObjectFacts:
    base = ObjectFacts(tenant="acme", namespace=namespace, key="k", size=1024, created_at=T0, home_tier="hot")
    return replace(base, **changes)


# (id, facts, now, tier, action, policy, rule, reason fragment, next change or None)
TABLE: list[tuple[str, ObjectFacts, datetime, str, str, str | None, str | None, str, datetime | None]] = [
    # the ladder: idle time walks an object down, one or several steps at once
    (
        "fresh stays hot",
        facts(),
        T0 + H,
        "hot",
        "keep",
        "ladder",
        "fresh",
        "fresh keeps it in hot",
        T0 + 4 * H,
    ),
    (
        "idle 5h → warm",
        facts(),
        T0 + 5 * H,
        "warm",
        "move",
        "ladder",
        "fresh",
        "idle 5h ≥ demoteAfter 4h",
        T0 + 5 * H,
    ),
    (
        "idle 8d → cold",
        facts(),
        T0 + 8 * D,
        "cold",
        "move",
        "ladder",
        "recent",
        "idle 8d ≥ demoteAfter 7d",
        T0 + 8 * D,
    ),
    (
        "reads restart the idle clock",
        facts(home_tier="warm", home_since=T0 + 5 * H, last_access_at=T0 + 6 * D),
        T0 + 8 * D,
        "warm",
        "keep",
        "ladder",
        "recent",
        "recent keeps it in warm",
        T0 + 13 * D,
    ),
    # hysteresis
    (
        "minResidency blocks a move",
        facts(home_tier="warm", home_since=T0 + 8 * D - 5 * M),
        T0 + 8 * D,
        "warm",
        "keep",
        "ladder",
        "minResidency",
        "minResidency 15m keeps it in warm until 2025-01-09T00:10:00Z",
        T0 + 8 * D + 10 * M,
    ),
    # promotion
    (
        "restoreOnAccess brings a read cold object to warm",
        facts(home_tier="cold", home_since=T0 + 8 * D, last_access_at=T0 + 9 * D - 10 * M, access_score=2.0),
        T0 + 9 * D,
        "warm",
        "move",
        "ladder",
        "recent",
        "read at 2025-01-09T23:50:00Z while in cold (restoreOnAccess)",
        T0 + 9 * D,
    ),
    (
        "promoteAbove brings a busy object to hot",
        facts(home_tier="cold", home_since=T0 + 8 * D, last_access_at=T0 + 9 * D - M, access_score=40.0),
        T0 + 9 * D,
        "hot",
        "move",
        "ladder",
        "fresh",
        "access rate 40/h ≥ promoteAbove 30/h",
        T0 + 9 * D,
    ),
    (
        "no read since the move: stays cold",
        facts(home_tier="cold", home_since=T0 + 8 * D, last_access_at=T0 + 7 * D),
        T0 + 9 * D,
        "cold",
        "keep",
        "ladder",
        "old",
        "stays in cold: not read since it moved to cold",
        T0 + 90 * D,
    ),
    (
        "restoreOnAccess off: a read does not promote",
        facts("reports", home_tier="cold", home_since=T0 + 2 * D, last_access_at=T0 + 3 * D - M),
        T0 + 3 * D,
        "cold",
        "keep",
        "sticky",
        "rules[1]",
        "stays in cold: restoreOnAccess is off",
        None,
    ),
    # expiry and legal hold
    (
        "expireAfter",
        facts(home_tier="cold"),
        T0 + 91 * D,
        "cold",
        "expire",
        "ladder",
        "expireAfter",
        "91d since created ≥ expireAfter 90d",
        T0 + 91 * D,
    ),
    (
        "object legal hold blocks expiry",
        facts(home_tier="cold", legal_hold=True),
        T0 + 91 * D,
        "cold",
        "hold",
        "ladder",
        "legalHold",
        "the object's legal hold blocks expiry",
        None,
    ),
    (
        "held object still moves to its tier",
        facts(home_tier="warm", legal_hold=True, home_since=T0 + D),
        T0 + 91 * D,
        "cold",
        "hold",
        "ladder",
        "legalHold",
        "demoted by recent (warm)",
        None,
    ),
    (
        "policy legalHold",
        facts("audit", home_tier="cold"),
        T0 + 400 * D,
        "cold",
        "hold",
        "held",
        "legalHold",
        "the policy's legalHold blocks expiry (400d since created ≥ expireAfter 365d)",
        None,
    ),
    # execution scope: the clock starts when the execution finishes
    (
        "running execution: nothing moves",
        facts("steps", scope="execution", created_at=T0 - 2 * D),
        T0,
        "hot",
        "keep",
        "exec",
        None,
        "clock starts when the execution finishes",
        None,
    ),
    (
        "finished 5m ago: hot until 10m idle",
        facts("steps", scope="step", created_at=T0 - 2 * D, execution_finished_at=T0 - 5 * M),
        T0,
        "hot",
        "keep",
        "exec",
        "rules[0]",
        "rules[0] keeps it in hot",
        T0 + 5 * M,
    ),
    (
        "finished 2h ago: expired",
        facts("steps", scope="execution", created_at=T0 - 2 * D, execution_finished_at=T0 - 2 * H),
        T0,
        "hot",
        "expire",
        "exec",
        "expireAfter",
        "2h since the execution finished ≥ expireAfter 1h",
        T0,
    ),
    # seconds, not days
    (
        "90s idle → warm",
        facts("scratch"),
        T0 + 100 * S,
        "warm",
        "move",
        "seconds",
        "rules[0]",
        "idle 1.7m ≥ demoteAfter 90s",
        T0 + 100 * S,
    ),
    (
        "5m → expired",
        facts("scratch", home_tier="warm"),
        T0 + 5 * M,
        "warm",
        "expire",
        "seconds",
        "expireAfter",
        "5m since created ≥ expireAfter 5m",
        T0 + 5 * M,
    ),
    # age limits are never undone by reads
    (
        "maxAge → cold",
        facts("logs", home_tier="warm"),
        T0 + 31 * D,
        "cold",
        "move",
        "aged",
        "rules[0]",
        "age 31d ≥ maxAge 30d",
        T0 + 31 * D,
    ),
    (
        "read after maxAge: stays cold",
        facts(
            "logs", home_tier="cold", home_since=T0 + 30 * D, last_access_at=T0 + 31 * D, access_score=100.0
        ),
        T0 + 31 * D + H,
        "cold",
        "keep",
        "aged",
        "rules[1]",
        "rules[1] keeps it in cold",
        T0 + 365 * D,
    ),
    (
        "archiveAfter",
        facts("logs", home_tier="cold"),
        T0 + 400 * D,
        "archive",
        "move",
        "aged",
        "archiveAfter",
        "≥ archiveAfter 365d",
        T0 + 400 * D,
    ),
    # decayed access rate, with the time it will decay below the threshold
    (
        "busy: hot until the rate decays",
        facts("features", last_access_at=T0, access_score=4.0),
        T0 + M,
        "hot",
        "keep",
        "rate",
        "rules[0]",
        "rules[0] keeps it in hot",
        T0 + M + 2 * H,
    ),
    (
        "quiet: warm",
        facts("features", access_score=0.5),
        T0 + M,
        "warm",
        "move",
        "rate",
        "rules[0]",
        "access rate 0.5/h < demoteBelow 1/h",
        T0 + M,
    ),
    # dates
    (
        "before demoteAt",
        facts("campaign", home_tier="warm"),
        T0 + D,
        "warm",
        "keep",
        "dated",
        "rules[0]",
        "rules[0] keeps it in warm",
        datetime(2025, 3, 1, tzinfo=UTC),
    ),
    (
        "after demoteAt",
        facts("campaign", home_tier="warm"),
        datetime(2025, 3, 2, tzinfo=UTC),
        "cold",
        "move",
        "dated",
        "rules[0]",
        "demoteAt 2025-03-01T00:00:00Z has passed",
        datetime(2025, 3, 2, tzinfo=UTC),
    ),
    (
        "after archiveAt",
        facts("campaign", home_tier="cold"),
        datetime(2025, 7, 1, tzinfo=UTC),
        "archive",
        "move",
        "dated",
        "archiveAt",
        "archiveAt 2025-06-01T00:00:00Z has passed",
        datetime(2025, 7, 1, tzinfo=UTC),
    ),
    (
        "after expireAt",
        facts("campaign", home_tier="archive"),
        datetime(2025, 9, 2, tzinfo=UTC),
        "archive",
        "expire",
        "dated",
        "expireAt",
        "expireAt 2025-09-01T00:00:00Z has passed",
        datetime(2025, 9, 2, tzinfo=UTC),
    ),
    # versions: noncurrent versions follow their own clock
    (
        "noncurrent version expires 30d after it was superseded",
        facts(home_tier="cold", created_at=T0 - 100 * D, superseded_at=T0 - 31 * D),
        T0,
        "cold",
        "expire",
        "old-versions",
        "expireAfter",
        "31d since a newer version was written ≥ expireAfter 30d",
        T0,
    ),
    # no policy
    (
        "unselected",
        facts("elsewhere", home_tier="warm"),
        T0,
        "warm",
        "keep",
        None,
        None,
        "no TieringPolicy selects this object",
        None,
    ),
]


@pytest.mark.parametrize(
    ("obj", "now", "tier", "action", "policy", "rule", "reason", "next_change"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_evaluation_table(
    obj: ObjectFacts,
    now: datetime,
    tier: str,
    action: str,
    policy: str | None,
    rule: str | None,
    reason: str,
    next_change: datetime | None,
) -> None:
    decision = evaluate(POLICIES, obj, now)
    assert (decision.tier, decision.action, decision.policy, decision.rule) == (tier, action, policy, rule), (
        decision
    )
    assert reason in decision.reason, decision.reason
    assert decision.next_change_at == next_change, decision


def test_next_change_is_when_the_decision_really_changes() -> None:
    """Re-evaluating just after next_change_at gives a different decision (no reads in between)."""
    for _, obj, now, *_ in TABLE:
        decision = evaluate(POLICIES, obj, now)
        if decision.action != "keep" or decision.next_change_at is None:
            continue
        later = decision.next_change_at + timedelta(seconds=1)
        hours = (later - now).total_seconds() / 3600
        decayed = replace(obj, access_score=obj.access_score * 0.5**hours)
        after = evaluate(POLICIES, decayed, later)
        assert (after.tier, after.action) != (decision.tier, decision.action), (decision, after)


def test_priority_decides_between_overlapping_policies() -> None:
    text = """
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: broad}
spec: {priority: 1, rules: [{tier: warm}]}
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: narrow}
spec: {priority: 5, selector: {keyPrefix: "tmp/"}, expireAfter: 1h}
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: also-broad}
spec: {priority: 1, rules: [{tier: cold}]}
"""
    policies = load_policy_text(text, "p.yaml")
    assert [p.name for p in policies.tiering] == ["narrow", "also-broad", "broad"]
    assert evaluate(policies, facts(key="tmp/x"), T0 + 2 * H).policy == "narrow"
    # equal priority: the name decides, and validation warned about it
    assert evaluate(policies, facts(key="keep/x"), T0).policy == "also-broad"
    assert any("same priority 1" in w.message for w in policies.warnings)


def test_selector_conditions() -> None:
    policies = load_policy_text(
        """
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: picky}
spec:
  selector:
    tenants: [acme]
    namespaces: ["kb-*"]
    keyPrefix: docs/
    tags: {embedded: "true"}
    minSize: 1KiB
    maxSize: 1MiB
    contentTypes: ["text/*"]
    classifications: [internal]
""",
        "picky.yaml",
    )
    selector = policies.tiering[0].spec.selector
    good = facts(
        "kb-main",
        key="docs/a.md",
        size=2048,
        tags={"embedded": "true"},
        content_type="text/markdown",
        classification="internal",
    )
    assert matches(selector, good)
    assert select_policy(policies, good) is policies.tiering[0]
    changes: tuple[dict[str, Any], ...] = (
        {"tenant": "other"},
        {"namespace": "kb"},
        {"key": "img/a.png"},
        {"tags": {"embedded": "false"}},
        {"tags": {}},
        {"size": 100},
        {"size": 2 * 1024 * 1024},
        {"content_type": "application/json"},
        {"classification": None},
    )
    for change in changes:
        assert not matches(selector, replace(good, **change)), change


def test_clock_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(POLICIES, facts(), datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="created_at must be timezone-aware"):
        evaluate(POLICIES, facts(created_at=datetime(2025, 1, 1)), T0)


def test_unknown_home_tier_is_refused() -> None:
    with pytest.raises(ValueError, match="home_tier must be one of hot, warm, cold, archive, got 'tepid'"):
        evaluate(POLICIES, facts(home_tier="tepid"), T0)


def test_evaluation_is_pure_and_can_skip_next_change() -> None:
    obj, now = facts(), T0 + H
    assert evaluate(POLICIES, obj, now) == evaluate(POLICIES, obj, now)
    quick = evaluate(POLICIES, obj, now, with_next_change=False)
    assert quick.next_change_at is None and quick.tier == "hot"


def test_decision_is_a_readable_value() -> None:
    decision = evaluate(POLICIES, facts(), T0 + 5 * H)
    assert isinstance(decision, Decision)
    assert "tier='warm'" in repr(decision) and "action='move'" in repr(decision)


def test_empty_policy_set_keeps_everything() -> None:
    assert evaluate(PolicySet(), facts(), T0).action == "keep"


def test_fast_construction_equals_the_dataclass_constructor() -> None:
    import dataclasses

    from liquid.policy.evaluate import ObjectFacts

    now = datetime(2030, 1, 1, tzinfo=UTC)
    full = ObjectFacts(
        tenant="t", namespace="n", key="k", size=5, created_at=now, home_tier="cold", content_type="x/y",
        tags={"a": "1"}, classification="pii", last_access_at=now, access_score=2.5, hits=3, home_since=now,
        legal_hold=True, scope="step", execution_finished_at=now, superseded_at=now, newer_noncurrent=2,
    )  # fmt: skip
    values = [getattr(full, f.name) for f in dataclasses.fields(ObjectFacts)]
    assert ObjectFacts.of(*values) == full
    assert full.with_home("hot") == dataclasses.replace(full, home_tier="hot")
    assert full.home_tier == "cold"  # unchanged
    with pytest.raises(TypeError, match="takes 18 values"):
        ObjectFacts.of(*values[:-1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        ObjectFacts.of(*values).size = 6  # type: ignore[misc]
