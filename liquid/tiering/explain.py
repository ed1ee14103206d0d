"""``liquid explain``: which policy and rule govern one object, where it is and should be, and why.

The decision is the planner's own (:meth:`Planner.decide`, judged from ``hot`` when the object
has a copy), and the hot section says what the hot tier holds now: whether this object has a
copy in Redis, what it would take, what the tier holds in all, and the caps that bound it,
and how the hot tier ranks now (``adaptive``: the half-life the leader's miniature simulations
chose, what each candidate would have served, and this object's score under it; see
:mod:`liquid.tiering.adaptive`).
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from liquid.hotcache import HotCache, entry_size
from liquid.policy.evaluate import select_policy
from liquid.policy.models import PolicySet
from liquid.redis_keys import HOT_ADAPTIVE
from liquid.tiering.adaptive import LN2, AdaptiveHalfLife
from liquid.tiering.budgets import tier_caps
from liquid.tiering.journal import open_row
from liquid.tiering.planner import Planner
from liquid.tiering.readclock import TRACKER
from liquid.tiering.rows import Row
from liquid.tiering.spend import spend_gate
from liquid.tiering.values import GiB


def explain(
    planner: Planner,
    policies: PolicySet,
    row: Row,
    now: datetime,
    *,
    hot: HotCache | None = None,
    engine: Engine | None = None,
) -> dict[str, Any]:
    """The explanation of one live object at ``now`` (see the module docstring).

    With ``engine``, ``queued`` says what the move queue holds for the object (None: nothing),
    and ``waits`` why a restore has not started (a retrieval spend cap).
    """
    f = row.facts
    has_copy: bool | None = None
    tier_bytes: int | None = None
    saved: dict[str, Any] | None = None
    if hot is not None:
        try:
            has_copy = hot.holds(row.ref)
            tier_bytes = hot.used_bytes()
            raw = hot.client.get(HOT_ADAPTIVE)
            saved = json.loads(raw) if raw else None
        except Exception:
            has_copy = None  # Redis down: unknown
    policy = select_policy(policies, f)
    d, _ = planner.decide(policies, row, now, member=bool(has_copy))
    prices = planner.prices(policies, f.tenant)
    caps = [
        {"name": c.name, "limit": c.limit, "unit": c.unit, "tenant": c.tenant}
        for c in tier_caps(policies, "hot", lambda t: planner.prices(policies, t))
        if c.applies(f.tenant, f.namespace)
    ]
    queued = _queued(engine, policies, row, now) if engine is not None else None
    return {
        "uri": row.uri,
        "policy": policy.name if policy else None,
        "rule": d.rule,
        "access_rate_per_hour": round(f.access_score, 6),
        "hits": f.hits,
        "last_access_at": f.last_access_at.isoformat() if f.last_access_at else None,
        "home_tier": f.home_tier,
        "home_since": (f.home_since or f.created_at).isoformat(),
        "should_be": d.tier,
        # With a hot copy the durable home stays, or comes back up from archive (durable_home).
        "home_should_be": planner.durable_home(policies, f, now) if d.tier == "hot" else d.tier,
        "action": d.action,
        "reason": d.reason,
        "next_change_at": d.next_change_at.isoformat() if d.next_change_at else None,
        "legal_hold": f.legal_hold,
        "evaluated_at": now.isoformat(),
        "hot": {
            "has_copy": has_copy,
            "wanted": d.tier == "hot",
            "copy_bytes": entry_size(f.size, f.content_type),
            "value_per_gb_month": round(
                planner.values.value_density(f.size, f.access_score, "hot", prices) * GiB, 6
            ),
            "tier_bytes": tier_bytes,
            "caps": caps,
            "adaptive": _adaptive(planner, saved, row, now),
        },
        "queued": queued,
    }


def _queued(engine: Engine, policies: PolicySet, row: Row, now: datetime) -> dict[str, Any] | None:
    job = open_row(engine, row.object_id)
    if job is None:
        return None
    waits = None
    if job["restore"] and job["step"] == "planned":
        waits = spend_gate(engine, policies, now).why(row.facts.tenant)
    return {
        "kind": job["kind"],
        "step": job["step"],
        "from": job["from_tier"],
        "to": job["to_tier"],
        "reason": job["reason"],
        "attempts": job["attempts"],
        "queued_at": job["created_at"].isoformat() if isinstance(job["created_at"], datetime) else None,
        "waits": waits,
    }


def _adaptive(planner: Planner, saved: dict[str, Any] | None, row: Row, now: datetime) -> dict[str, Any]:
    """The hot rank's half-life (the leader's choice, else the tracker's) and this object's score."""
    f = row.facts
    a = planner.adaptive
    base = a.base
    if a.enabled and saved is not None and saved.get("tracker_half_life_s") == base:
        half_life = float(saved["half_life_s"])
        source = "chosen by the leader's miniature simulations"
    else:
        half_life = base
        source = (
            "the tracker's (no leader has chosen one yet)" if a.enabled else "the tracker's (adaptive off)"
        )
    t = now.timestamp()
    last = f.last_access_at.timestamp() if f.last_access_at is not None else t
    count = f.access_score * base / (3600.0 * LN2) * 2.0 ** (min(t - last, 64 * base) / base)
    span = min(max(last - f.created_at.timestamp(), 1.0), base)
    frequency = count * max(half_life / base, min(1.0, half_life / span)) > 1.0
    out: dict[str, Any] = {
        "half_life_s": half_life,
        "tracker_half_life_s": base,
        "source": source,
        # Below one read per half-life the last read alone orders it (recency, as LRU would).
        "ranked_by": "frequency and recency" if frequency else "recency (its last read)",
        "score": round(AdaptiveHalfLife(base).score(count, last, half_life, span), 6)
        if f.access_score > 0
        else None,
    }
    if a.enabled:
        out["score_from"] = (
            "the tracker's count and last read; the daemon's own score sums, on top, the reads it"
            " has seen since it first planned the object, each at its time under this half-life"
            " (LRFU's exact score), so a recent burst can rank higher there than here"
        )
    if saved is not None:
        out["candidates_s"] = saved.get("candidates_s")
        out["byte_hit_ratio"] = saved.get("byte_hit_ratio")
        out["switches"] = saved.get("switches")
        if "hysteresis" in saved:  # the members' bonus factor the simulations chose with it
            out["hysteresis"] = saved["hysteresis"]
    if not math.isfinite(half_life):
        out["half_life_s"] = None
    k = planner.knobs
    leader = saved or {}
    if k.adaptive_window:
        window = dict(leader.get("window") or {"window_share": k.hot_window})
        window["source"] = (
            "the leader's hill climbing on the hot byte hit ratio"
            if leader.get("window")
            else "planner.hot_window (no leader has climbed yet)"
        )
        out["window"] = window
    else:
        out["window"] = {"window_share": k.hot_window, "source": "planner.hot_window (adaptive_window off)"}
    if k.read_clock and not a.enabled:
        clock = leader.get("read_clock")
        since = planner.reads.since(clock, last) if clock else None
        clock_half_life, chosen = _read_half_life(planner, clock)
        out["ranked_by"] = "the tracker's count, forward-decayed in hot budgets read"
        if clock_half_life == TRACKER:  # the simulations chose the tracker's wall-clock rank
            out["ranked_by"] = "the tracker's count, forward-decayed in wall-clock time"
            since = None
        out["read_clock"] = {
            "half_life_budgets": clock_half_life,
            "source": chosen,
            "budgets_read_since_last_read": None if since is None else round(since, 3),
            "half_lives_since_last_read": None
            if since is None or isinstance(clock_half_life, str)
            else round(since / clock_half_life, 3),
            "leader": clock,
        }
    return out


def _read_half_life(planner: Planner, clock: dict[str, Any] | None) -> tuple[float | str, str]:
    """The read clock's half-life now (the leader's choice under ``read_adaptive``; ``tracker``
    when it chose the tracker's wall-clock rank) and why."""
    k = planner.knobs
    if not planner.read_adaptive.enabled:
        return k.read_half_life, "planner.read_half_life (read_adaptive off)"
    chosen = (clock or {}).get("adaptive") or {}
    if chosen.get("configured_half_life_budgets") != k.read_half_life:
        return k.read_half_life, "planner.read_half_life (no leader has chosen one yet)"
    h = chosen["half_life_budgets"]
    return (h if h == TRACKER else float(h)), "chosen by the leader's miniature simulations"
