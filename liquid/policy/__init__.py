"""Operator policies: the YAML format, its loader and validation, evaluation, and S3 import.

The pieces other layers use::

    from liquid.policy import load_policies, evaluate, ObjectFacts

    policies = load_policies(["policies/"])          # PolicyValidationError lists every problem
    decision = evaluate(policies, facts, now=clock())
    # Decision(tier, action, policy, rule, reason, next_change_at)
"""

from __future__ import annotations

from liquid.policy.checks import CatalogSummary, TierUsage, budget_warnings
from liquid.policy.evaluate import Decision, ObjectFacts, evaluate, evaluate_policy, matches, select_policy
from liquid.policy.loader import load_policies, load_policy_text
from liquid.policy.models import (
    TIERS,
    Budget,
    CostModel,
    PolicySet,
    TieringPolicy,
)
from liquid.policy.problems import PolicyValidationError, Problem
from liquid.policy.s3import import S3Import, S3ImportLoss, import_s3_lifecycle, lifecycle_yaml
from liquid.policy.s3lifecycle import S3LifecycleError
from liquid.policy.schema import generate_schema

__all__ = [
    "TIERS",
    "Budget",
    "CatalogSummary",
    "CostModel",
    "Decision",
    "ObjectFacts",
    "PolicySet",
    "PolicyValidationError",
    "Problem",
    "S3Import",
    "S3ImportLoss",
    "S3LifecycleError",
    "TierUsage",
    "TieringPolicy",
    "budget_warnings",
    "evaluate",
    "evaluate_policy",
    "generate_schema",
    "import_s3_lifecycle",
    "lifecycle_yaml",
    "load_policies",
    "load_policy_text",
    "matches",
    "select_policy",
]
