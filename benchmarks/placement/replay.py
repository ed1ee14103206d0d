"""Replay a trace through the tiering engine the daemon runs (:mod:`liquid.tiering.replay`).

This module picks the policy and settings for each benchmark trace and runs
:class:`~liquid.tiering.replay.Replay`, the class ``liquid policy simulate`` uses too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from benchmarks.placement.traces import Trace
from liquid.config import Settings
from liquid.policy.loader import load_policy_text
from liquid.policy.models import PolicySet
from liquid.tiering.replay import EPOCH, NAMESPACE, TENANT, Ledger, Price, Replay, ReplayResult
from liquid.tiering.values import PlannerSettings

POLICY = Path(__file__).with_name("policy.yaml")
#: The policy an operator would write for each kind of trace (:attr:`Trace.kind`); others get
#: ``POLICY``. One policy serves every Zipf and scan trace, whatever its density or drift.
POLICY_FOR = {"workflow": Path(__file__).with_name("policy-workflow.yaml")}
#: Settings (as in ``liquid.yaml``) an operator would set for each kind of deployment.
#: Workflow results are read in a burst right after they are written: a 10% admission window
#: serves the burst, and a 10-minute correlated-reference period keeps it from counting as
#: popularity.
SETTINGS_FOR: dict[str, dict[str, Any]] = {
    "workflow": {"access": {"correlation_window": 600}, "planner": {"hot_window": 0.1}},
}


def policies_for(
    hot_bytes: int, text: str | None = None, *, half_life: str | None = None, path: Path = POLICY
) -> PolicySet:
    """The policy in ``path`` (or ``text``) plus a global hot-tier budget of ``hot_bytes``.

    ``half_life`` (e.g. ``30m``) replaces the policy's ``accessHalfLife``, for experiments.
    """
    text = text if text is not None else path.read_text()
    if half_life is not None:
        text = re.sub(r"accessHalfLife: \S+", f"accessHalfLife: {half_life}", text)
    budget = f"""
---
apiVersion: liquid/v1
kind: Budget
metadata: {{name: hot-budget}}
spec:
  tiers:
    hot: {{maxBytes: {int(hot_bytes)}}}
"""
    return load_policy_text(text + budget, filename=str(path))


def settings_for(policies: PolicySet, extra: dict[str, Any] | None = None) -> Settings:
    """Settings whose tracker half-life is the policies' ``accessHalfLife``; objects are born cold.

    Born cold because the cost model makes warm a loss for all but the most read objects
    (see policy.yaml), and those get a hot copy. The hot cache takes objects of any size the
    trace has (``hot.max_object_size``), as the peers do.
    """
    half_life = policies.tiering[0].spec.access_half_life if policies.tiering else 3600.0
    extra = dict(extra or {})
    access = {"half_life": half_life, **extra.pop("access", {})}
    hot = {"max_object_size": 1 << 40, **extra.pop("hot", {})}
    return Settings(access=access, hot=hot, warm_max_object_size=0, **extra)


def settings_of(kind: str, settings: dict[str, Any] | None) -> dict[str, Any]:
    """``settings`` on top of the trace kind's own (``SETTINGS_FOR``), section by section: a
    setting given for every trace (``--settings``) does not drop what a kind's operator set."""
    out: dict[str, Any] = {
        k: dict(v) if isinstance(v, dict) else v for k, v in SETTINGS_FOR.get(kind, {}).items()
    }
    for key, value in (settings or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def replay(
    trace: Trace,
    *,
    hot_bytes: int,
    cycle: int,
    prices: dict[str, Price] | None = None,
    policy_text: str | None = None,
    knobs: PlannerSettings | None = None,
    keep_outcomes: bool = False,
    half_life: str | None = None,
    policy: Path | None = None,
    settings: dict[str, Any] | None = None,
) -> ReplayResult:
    """Replay ``trace`` with a hot budget of ``hot_bytes``, planning every ``cycle`` requests.

    The policy is ``policy_text``, else the file ``policy``, else its kind's in ``POLICY_FOR``.
    """
    path = policy or POLICY_FOR.get(trace.kind, POLICY)
    policies = policies_for(hot_bytes, policy_text, half_life=half_life, path=path)
    extra = settings_of(trace.kind, settings)
    settings_ = settings_for(policies, extra)
    r = Replay(policies, settings_, cycle=cycle, prices=prices, knobs=knobs)
    return r.run(trace, keep_outcomes=keep_outcomes)


__all__ = [
    "EPOCH",
    "NAMESPACE",
    "POLICY",
    "POLICY_FOR",
    "SETTINGS_FOR",
    "TENANT",
    "Ledger",
    "Price",
    "Replay",
    "ReplayResult",
    "policies_for",
    "replay",
    "settings_for",
    "settings_of",
]
