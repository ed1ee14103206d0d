"""What one planning pass decided: per object only what changes, and the totals against budgets.

A :class:`Plan` lists :class:`Change`\\ s (moves, expirations, holds, hot admissions and
evictions), bytes and monthly cost per tier before and after, and every budget's use
(:class:`BudgetUse`). ``liquid policy plan`` renders it like ``terraform plan``; the daemon
logs it and exports its totals as metrics.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from liquid.policy.models import TIERS
from liquid.tiering.values import TEMP as _TEMP
from liquid.units import format_money, format_size


@dataclass(frozen=True, slots=True)
class Change:
    """One thing the plan does to one object."""

    object_id: int
    uri: str
    size: int
    action: str  # move | expire | hold | hot-admit | hot-evict
    from_tier: str
    to_tier: str | None
    policy: str | None
    rule: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "object_id": self.object_id,
            "uri": self.uri,
            "size": self.size,
            "action": self.action,
            "from": self.from_tier,
            "to": self.to_tier,
            "policy": self.policy,
            "rule": self.rule,
            "reason": self.reason,
        }


@dataclass(slots=True)
class BudgetUse:
    budget: str
    tenant: str | None
    tier: str | None
    limit_bytes: int | None
    limit_cost: float | None
    bytes_before: int = 0
    bytes_after: int = 0
    cost_before: float = 0.0
    cost_after: float = 0.0
    #: A namespace Budget's namespace (its tenant's objects there only).
    namespace: str | None = None

    @property
    def ok(self) -> bool:
        return (self.limit_bytes is None or self.bytes_after <= self.limit_bytes) and (
            self.limit_cost is None or self.cost_after <= self.limit_cost + 1e-9
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "tenant": self.tenant,
            "namespace": self.namespace,
            "tier": self.tier,
            "limit_bytes": self.limit_bytes,
            "limit_monthly_cost": self.limit_cost,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "monthly_cost_before": round(self.cost_before, 6),
            "monthly_cost_after": round(self.cost_after, 6),
            "ok": self.ok,
        }


@dataclass
class Plan:
    """What one planning pass decided.

    ``kind`` is ``rebuild`` (every object evaluated: at start, after a policy apply, and as
    ``liquid policy plan``'s dry run), ``cycle`` (only what changed or came due) or ``admit``
    (hot copies for objects just read from their home).
    """

    at: datetime
    policy_version: int | None
    kind: str = "rebuild"
    objects: int = 0
    #: Objects evaluated in this pass (all of them for a rebuild).
    evaluated: int = 0
    changes: list[Change] = field(default_factory=list)
    bytes_before: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIERS, 0))
    bytes_after: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIERS, 0))
    cost_before: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIERS, 0.0))
    cost_after: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIERS, 0.0))
    budgets: list[BudgetUse] = field(default_factory=list)
    #: What the costs are in (the default CostModel's currency).
    currency: str = "USD"
    #: Journal rows already open when the plan was made, per ``kind:step`` (e.g. ``move:planned``):
    #: work a previous cycle queued that is waiting or in flight, not part of this plan.
    queued: dict[str, int] = field(default_factory=dict)
    #: Budgets the catalog can never meet (held or pinned bytes above a limit), with numbers.
    warnings: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def __repr__(self) -> str:
        return (
            f"Plan({self.kind} at={self.at.isoformat()}, objects={self.objects}, evaluated={self.evaluated},"
            f" changes={len(self.changes)})"
        )

    def count(self, action: str) -> tuple[int, int]:
        """(objects, bytes) of one action."""
        hits = [c for c in self.changes if c.action == action]
        return len(hits), sum(c.size for c in hits)

    def moves(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(from, to) → (objects, bytes) of the durable moves."""
        out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for c in self.changes:
            if c.action == "move" and c.to_tier is not None:
                out[(c.from_tier, c.to_tier)][0] += 1
                out[(c.from_tier, c.to_tier)][1] += c.size
        return {
            k: (v[0], v[1]) for k, v in sorted(out.items(), key=lambda kv: (_TEMP[kv[0][0]], _TEMP[kv[0][1]]))
        }

    def to_json(self, *, changes: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "at": self.at.isoformat(),
            "policy_version": self.policy_version,
            "kind": self.kind,
            "currency": self.currency,
            "queued": dict(sorted(self.queued.items())),
            "objects": self.objects,
            "evaluated": self.evaluated,
            "moves": [
                {"from": f, "to": t, "objects": n, "bytes": b} for (f, t), (n, b) in self.moves().items()
            ],
            "expirations": dict(zip(("objects", "bytes"), self.count("expire"), strict=True)),
            "legal_holds": dict(zip(("objects", "bytes"), self.count("hold"), strict=True)),
            "hot_admissions": dict(zip(("objects", "bytes"), self.count("hot-admit"), strict=True)),
            "hot_evictions": dict(zip(("objects", "bytes"), self.count("hot-evict"), strict=True)),
            "tiers": {
                t: {
                    "bytes_before": self.bytes_before[t],
                    "bytes_after": self.bytes_after[t],
                    "monthly_cost_before": round(self.cost_before[t], 6),
                    "monthly_cost_after": round(self.cost_after[t], 6),
                }
                for t in TIERS
            },
            "budgets": [b.to_json() for b in self.budgets],
            "warnings": list(self.warnings),
            "duration_s": round(self.duration_s, 3),
        }
        if changes:
            out["changes"] = [c.to_json() for c in self.changes]
        return out

    def render(self) -> str:
        """A terraform-plan-like summary for people."""
        lines = [f"Liquid plan at {self.at.isoformat(timespec='seconds')} over {self.objects} objects"]
        lines.append(f"(policy version {self.policy_version if self.policy_version else 'from files'})")
        lines.append("")
        moves = self.moves()
        queued = sum(self.queued.values())
        if not moves and not self.changes:
            lines.append(
                "No changes. Every object is where its policy wants it."
                if not queued
                else f"No new changes; {queued} queued by earlier cycles, waiting or in flight (below)."
            )
        for (f, t), (n, b) in moves.items():
            sign = "+" if _TEMP[t] < _TEMP[f] else "-"
            lines.append(f"  {sign} move {f:>7} → {t:<7} {n:>9} objects  {format_size(b):>10}")
        for action, label in (
            ("hot-admit", "+ cache in hot"),
            ("hot-evict", "- drop from hot"),
            ("expire", "- expire"),
            ("hold", "~ keep (legal hold)"),
        ):
            n, b = self.count(action)
            if n:
                lines.append(f"  {label:<26} {n:>9} objects  {format_size(b):>10}")
        if queued:
            by_kind: dict[str, int] = defaultdict(int)
            for key, n in self.queued.items():
                by_kind[key.split(":")[0]] += n
            waiting = sum(n for key, n in self.queued.items() if key.endswith(":planned"))
            lines.append(
                f"  already queued: {', '.join(f'{n} {k}s' for k, n in sorted(by_kind.items()))}"
                f" ({waiting} waiting, {queued - waiting} in flight; `liquid tier status` for detail)"
            )
        lines.append("")
        money = functools.partial(format_money, currency=self.currency)
        lines.append(f"  {'tier':<8} {'bytes now':>12} {'after':>12} {'per month now':>16} {'after':>16}")
        for t in TIERS:
            lines.append(
                f"  {t:<8} {format_size(self.bytes_before[t]):>12} {format_size(self.bytes_after[t]):>12}"
                f" {money(self.cost_before[t]):>16} {money(self.cost_after[t]):>16}"
            )
        lines.append(
            f"  {'total':<8} {'':>12} {'':>12} {money(sum(self.cost_before.values())):>16}"
            f" {money(sum(self.cost_after.values())):>16}"
        )
        if self.budgets:
            lines.append("")
            lines.append("  budgets:")
            for u in self.budgets:
                who = f"{u.tenant}/{u.namespace}" if u.namespace else u.tenant
                scope = f"{u.budget}{' (' + who + ')' if who else ''} {u.tier or 'all tiers'}"
                limit = " and ".join(
                    x
                    for x in (
                        f"≤ {format_size(u.limit_bytes)}" if u.limit_bytes is not None else "",
                        f"≤ {money(u.limit_cost)}/month" if u.limit_cost is not None else "",
                    )
                    if x
                )
                state = "ok" if u.ok else "OVER"
                lines.append(
                    f"    {scope:<40} {limit:<28} after: {format_size(u.bytes_after)}, "
                    f"{money(u.cost_after)}/month  [{state}]"
                )
        if self.warnings:
            lines.append("")
            lines.append("  warnings:")
            lines.extend(f"    {w}" for w in self.warnings)
        return "\n".join(lines)
