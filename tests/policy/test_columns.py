"""evaluate_columns gives evaluate's answers: on every pinned object, one at a time and in batches."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import pytest

from liquid.policy import ObjectFacts, PolicySet, evaluate, select_policy
from liquid.policy.columns import ACTIONS, FactColumns, evaluate_columns, select_columns
from liquid.policy.models import TIERS
from tests.policy.test_evaluate_pinned import _cases, _decode_facts, policy_sets


def columns(facts: Sequence[ObjectFacts]) -> FactColumns:
    return FactColumns.of_facts(facts)


def check(policies: PolicySet, facts: list[ObjectFacts], now: datetime) -> int:
    """Compare every object; return how many were compared (those evaluate does not refuse)."""
    good = []
    for f in facts:
        times = (f.created_at, f.last_access_at, f.home_since, f.execution_finished_at, f.superseded_at)
        if f.home_tier not in TIERS or any(x is not None and x.tzinfo is None for x in times):
            continue  # invalid inputs (naive times, unknown tiers) have no column form
        try:
            evaluate(policies, f, now)
        except ValueError:
            continue
        good.append(f)
    if not good:
        return 0
    got = evaluate_columns(policies, columns(good), now)
    chosen = select_columns(policies, columns(good))
    names = [p.name for p in policies.tiering]
    for i, f in enumerate(good):
        d = evaluate(policies, f, now)
        policy = select_policy(policies, f)
        assert (names[got.policy[i]] if got.policy[i] >= 0 else None) == (policy.name if policy else None), f
        assert chosen[i] == got.policy[i]
        assert (TIERS[got.tier[i]], ACTIONS[got.action[i]]) == (d.tier, d.action), (f, now, d)
        expected = d.next_change_at.timestamp() if d.next_change_at is not None else math.inf
        assert got.next_change[i] == pytest.approx(expected, abs=1e-5), (f, now, d)
    return len(good)


@pytest.mark.parametrize("name", list(policy_sets()))
def test_each_pinned_object_alone(name: str) -> None:
    policies = policy_sets()[name]
    compared = 0
    for case in (c for c in _cases() if c["set"] == name):
        compared += check(policies, [_decode_facts(case["facts"])], datetime.fromisoformat(case["now"]))
    assert compared > 100


@pytest.mark.parametrize("name", list(policy_sets()))
def test_every_pinned_object_of_a_set_in_one_batch_at_several_times(name: str) -> None:
    policies = policy_sets()[name]
    cases = [c for c in _cases() if c["set"] == name]
    facts = [_decode_facts(c["facts"]) for c in cases]
    for case in cases[::30]:  # each object at other objects' evaluation times too
        assert check(policies, facts, datetime.fromisoformat(case["now"])) > 100


def test_newer_noncurrent_versions_selects_the_same_objects_in_both_evaluators() -> None:
    from datetime import UTC, timedelta

    from liquid.policy import import_s3_lifecycle, load_policy_text

    now = datetime(2026, 1, 1, tzinfo=UTC)
    day = timedelta(days=1)
    config = {
        "Rules": [
            {"ID": "keep-3", "Status": "Enabled", "Filter": {"Prefix": "a/"},
             "NoncurrentVersionExpiration": {"NoncurrentDays": 10, "NewerNoncurrentVersions": 3},
             "NoncurrentVersionTransitions": [
                 {"NoncurrentDays": 5, "StorageClass": "GLACIER", "NewerNoncurrentVersions": 1}]},
            {
                "ID": "all",
                "Status": "Enabled",
                "Filter": {},
                "NoncurrentVersionExpiration": {"NoncurrentDays": 40},
            },
        ]
    }  # fmt: skip
    policies = load_policy_text(import_s3_lifecycle(config, namespace="n").yaml(), "imported.yaml")
    facts = [
        ObjectFacts(
            tenant="t",
            namespace="n",
            key=key,
            size=2**20,
            created_at=now - 100 * day,
            home_tier=tier,
            superseded_at=None if newer < 0 else now - age * day,
            newer_noncurrent=max(newer, 0),
        )
        for key in ("a/x", "b/x")
        for tier in ("warm", "archive")
        for newer in (-1, 0, 1, 2, 3, 7)
        for age in (1, 6, 11, 41)
    ]
    assert check(policies, facts, now) == len(facts)
    decided = {
        (f.key, f.home_tier, f.newer_noncurrent, f.superseded_at): evaluate(policies, f, now) for f in facts
    }
    # The newest noncurrent version (0 newer) is neither moved nor expired by keep-3; from one
    # newer it goes to archive after 5 days; from three newer it expires after 10.
    assert decided[("a/x", "warm", 0, now - 6 * day)].action == "keep"
    assert decided[("a/x", "warm", 1, now - 6 * day)].action == "move"
    assert decided[("a/x", "warm", 2, now - 11 * day)].action == "move"
    assert decided[("a/x", "warm", 3, now - 11 * day)].action == "expire"
    assert decided[("a/x", "warm", 0, now - 41 * day)].action == "expire"  # the "all" rule
