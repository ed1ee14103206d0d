"""``liquid policy simulate``: what a policy set would have done with the operator's own recorded reads.

The event log keeps one ``object.read`` event per object per minute (with the count). This
module reads those of a window (:func:`read_history`), spreads each minute's reads evenly
over it, and replays them through the daemon's own engine (:class:`~liquid.tiering.replay.Replay`:
the same :class:`~liquid.tiering.planner.Planner`, hot-tier ranking and admission, its cycle
every ``daemon.plan_interval`` and its admission pass every ``daemon.admit_interval`` of
read time), once under the proposed policy set and once under the applied one, and reports
side by side: hot hit ratios (objects and bytes), hot admissions, moves, archive
retrievals and the monthly cost on the replay's ledger (durable storage, reads, moves,
early deletions, plus the hot tier's memory at its budget); with Belady's MIN at the same
hot budget and the offline cost bound (:mod:`liquid.tiering.bounds`) as the ceiling.

What it assumes, and says in its report: objects start at their first read in the window,
in the tier a new object is written to (objects read before the window keep no history);
objects purged since are not replayed; moves happen at once (a perfect mover); reads within
one minute are spread evenly over it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, text

from liquid.config import Settings
from liquid.policy.costs import tier_prices
from liquid.policy.models import PolicySet
from liquid.tiering.bounds import belady_bytes, offline_bound
from liquid.tiering.budgets import tier_caps
from liquid.tiering.replay import MONTH, Price, Replay, ReplayResult
from liquid.tiering.values import GiB, ValueModel

_READS = text(
    "SELECT e.object_id, e.at, e.count, o.size, o.tenant_id, o.namespace, o.key, o.content_type "
    "FROM events e JOIN objects o ON o.id = e.object_id "
    "WHERE e.kind = 'object.read' AND e.at >= :since AND e.at < :until "
    "AND (CAST(:tenant AS text) IS NULL OR e.tenant_id = :tenant) "
    "ORDER BY e.at, e.object_id"
)


@dataclass
class History:
    """Recorded reads as a replayable sequence: seconds from ``since``, object ids, sizes."""

    since: datetime
    until: datetime
    t: np.ndarray
    oid: np.ndarray
    size: np.ndarray
    meta: dict[int, tuple[str, str, str, str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.oid)

    @property
    def objects(self) -> int:
        return len(self.meta)

    def meta_of(self, oid: int) -> tuple[str, str, str, str]:
        return self.meta[oid]


def read_history(engine: Engine, since: datetime, until: datetime, *, tenant: str | None = None) -> History:
    """The ``object.read`` events of ``[since, until)`` (one tenant's, or everyone's)."""
    times: list[float] = []
    oids: list[int] = []
    sizes: list[int] = []
    meta: dict[int, tuple[str, str, str, str]] = {}
    with engine.connect() as conn:
        rows = conn.execute(_READS, {"since": since, "until": until, "tenant": tenant})
        for oid, at, count, size, t_id, ns, key, ctype in rows:
            n = max(int(count or 1), 1)
            minute = (at - since).total_seconds()
            # The reads of one minute, evenly over it (the log keeps only their count).
            times.extend(minute + (k + 0.5) * 60.0 / n for k in range(n))
            oids.extend([int(oid)] * n)
            sizes.extend([int(size)] * n)
            meta[int(oid)] = (t_id, ns, key, ctype)
    t = np.asarray(times, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    return History(
        since,
        until,
        t[order],
        np.asarray(oids, dtype=np.int64)[order],
        np.asarray(sizes, dtype=np.int64)[order],
        meta,
    )


def prices_for(policies: PolicySet | None, tenant: str | None = None) -> dict[str, Price]:
    """Per-tier prices for the replay's ledger (:func:`liquid.policy.costs.tier_prices`)."""
    return {
        tier: Price(
            p.storage_per_gb_month,
            p.reads_per_1k / 1000,
            p.writes_per_1k / 1000,
            p.retrieval_per_gb,
            p.min_storage_duration,
        )
        for tier, p in tier_prices(policies, tenant).items()
    }


def hot_budget(policies: PolicySet, settings: Settings) -> int | None:
    """The tightest global hot byte cap of the policy set (None when the hot tier has none)."""
    values = ValueModel(settings)
    caps = tier_caps(policies, "hot", lambda t: values.prices(policies, t))
    limits = [c.limit for c in caps if c.tenant is None and c.is_bytes]
    return int(min(limits)) if limits else None


@dataclass
class Outcome:
    """One policy set's replay of the history."""

    name: str
    result: ReplayResult
    hot_bytes: int | None
    months: float
    prices: dict[str, Price]

    def to_json(self) -> dict[str, Any]:
        r = self.result
        ledger = r.ledger
        assert ledger is not None
        hot_memory = (self.prices["hot"].gb_month * (self.hot_bytes or 0) / GiB) if self.hot_bytes else 0.0
        durable = ledger.total / self.months if self.months else 0.0
        hot_reads = ledger.hot_reads / self.months if self.months else 0.0
        return {
            "policies": self.name,
            "requests": r.requests,
            "hot_object_hit_ratio": round(r.ohr, 4),
            "hot_byte_hit_ratio": round(r.bhr, 4),
            "hot_budget_bytes": self.hot_bytes,
            "hot_admissions": r.hot_admits,
            "hot_evictions": r.hot_evicts,
            "moves": r.moves,
            "archive_retrievals": ledger.reads_by_tier.get("archive", 0),
            "cost_per_month": {
                "durable": round(durable, 6),
                "hot_memory": round(hot_memory, 6),
                "hot_reads": round(hot_reads, 6),
                "total": round(durable + hot_memory + hot_reads, 6),
            },
            "hot_rank_half_life_s": r.half_life,
        }


def replay_history(history: History, policies: PolicySet, settings: Settings, *, name: str) -> Outcome:
    """Replay ``history`` through the daemon's engine under ``policies``."""
    prices = prices_for(policies)
    replay = Replay(
        policies,
        settings,
        cycle_seconds=settings.daemon.plan_interval,
        prices=prices,
        epoch=history.since,
        meta=history.meta_of,
    )
    result = replay.run(history)
    months = (history.until - history.since).total_seconds() / MONTH
    return Outcome(name, result, hot_budget(policies, settings), months, prices)


def simulate(
    engine: Engine,
    settings: Settings,
    proposed: PolicySet,
    applied: PolicySet | None,
    *,
    since: datetime,
    until: datetime,
    tenant: str | None = None,
) -> dict[str, Any]:
    """The proposed and the applied policy sets side by side on the recorded reads, with the ceilings."""
    history = read_history(engine, since, until, tenant=tenant)
    out: dict[str, Any] = {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "tenant": tenant,
        "reads": len(history),
        "objects": history.objects,
        "assumptions": [
            "objects start at their first read in the window, where a new object is written",
            "objects purged since are not replayed",
            "moves happen at once (a perfect mover)",
            "the reads of one minute are spread evenly over it",
        ],
    }
    runs = [("proposed", proposed)] + ([("applied", applied)] if applied is not None else [])
    out["runs"] = {
        label: replay_history(history, policies, settings, name=label).to_json() for label, policies in runs
    }
    budget = hot_budget(proposed, settings)
    ceiling: dict[str, Any] = {"hot_budget_bytes": budget}
    if len(history):
        if budget is not None:
            ohr, bhr = belady_bytes(history, budget)
            ceiling["belady_object_hit_ratio"], ceiling["belady_byte_hit_ratio"] = (
                round(ohr, 4),
                round(bhr, 4),
            )
        months = (until - since).total_seconds() / MONTH
        bound = offline_bound(history, prices_for(proposed))
        ceiling["offline_bound_durable_per_month"] = round(bound / months, 6) if months else None
    out["ceiling"] = ceiling
    return out


def render(report: dict[str, Any]) -> str:
    """The report as a table for people."""
    runs = report["runs"]
    labels = list(runs)
    lines = [
        f"Simulated {report['reads']:,} recorded reads of {report['objects']:,} objects "
        f"from {report['since']} to {report['until']}"
        + (f" (tenant {report['tenant']})" if report["tenant"] else "")
        + " through the daemon's engine.",
        "",
        f"  {'':<28}" + "".join(f"{label:>16}" for label in labels) + f"{'ceiling':>16}",
    ]
    ceiling = report["ceiling"]

    def row(name: str, key: str, fmt: str, ceil: Any = None) -> None:
        cells = "".join(f"{format(runs[label][key], fmt):>16}" for label in labels)
        c = "" if ceil is None else format(ceil, fmt)
        lines.append(f"  {name:<28}{cells}{c:>16}")

    row("hot byte hit ratio", "hot_byte_hit_ratio", ".3f", ceiling.get("belady_byte_hit_ratio"))
    row("hot object hit ratio", "hot_object_hit_ratio", ".3f", ceiling.get("belady_object_hit_ratio"))
    row("hot admissions", "hot_admissions", ",")
    row("moves", "moves", ",")
    row("archive retrievals", "archive_retrievals", ",")
    for part in ("durable", "hot_memory", "total"):
        cells = "".join(f"{runs[label]['cost_per_month'][part]:>16.4f}" for label in labels)
        ceil = ceiling.get("offline_bound_durable_per_month") if part == "durable" else None
        c = "" if ceil is None else f"{ceil:.4f}"
        lines.append(f"  {'$/month ' + part.replace('_', ' '):<28}{cells}{c:>16}")
    lines += ["", "ceiling: Belady's MIN at the proposed hot budget; the offline bound on durable cost."]
    lines += ["assumes: " + "; ".join(report["assumptions"]) + "."]
    return "\n".join(lines)


def window(since: float, now: datetime) -> tuple[datetime, datetime]:
    """``[now - since, now)`` rounded down to whole minutes (read events are per minute)."""
    until = now.replace(second=0, microsecond=0)
    return until - timedelta(seconds=since), until


__all__ = ["History", "Outcome", "read_history", "render", "replay_history", "simulate", "window"]
