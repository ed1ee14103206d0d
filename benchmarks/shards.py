"""One planner vs two planner shards (``daemon.shard_planning``) on one catalog, side by side.

    python -m benchmarks.shards [--rows 1000000] [--tenants 64] [--legacy 0.1] [--rounds 2]

Starts one embedded PostgreSQL (in a temporary directory, removed at the end) and generates a
catalog at head (``generate_series`` straight into the server: ``--tenants`` tenants spread over
the 16 buckets, four namespaces, sizes 1 KB to 10 MB, warm and cold homes, an ``access_stats``
row for every fourth object; the first ``--legacy`` share of the rows keeps plain ids, as rows
from before the partitioning do). The policy is the hard case for sharding: every object wants
warm, and one **global** Budget caps warm at 40% of the bytes of the objects that are read, so
every object of every tenant competes for one limit by value per byte.

Both sides are the engine the daemon runs (:class:`~liquid.tiering.engine.TieringEngine` with
the catalog's rows and change feed; the shards with :class:`~liquid.tiering.engine.BucketRows`,
the feed filtered by bucket, and :class:`~liquid.tiering.shares.CapShares` splitting the cap
through the catalog), the buckets split by real :class:`~liquid.tiering.shards.PartitionShards`
leases. Applying is left out on both sides (an applier that records nothing), so the numbers
are planning's: the journal writes are the same work whoever plans.

Measured, in rounds whose order alternates (single first, then the shards first):

1. **rebuild** — the single planner's, and each shard's (its buckets only); the shards' total is
   what the catalog pays, the larger one is how long a restart leaves planning behind;
2. **cycle, nothing changed** — each side's pass with an empty feed (the shards' includes the
   split transaction: publish the histogram, lock, recompute, grant);
3. **cycle, 1% changed** — the same objects read (scores bumped, ids in the change feed) for
   each side; each shard drains only its part;
4. **agreement** — bytes in warm that both the single planner and the union of the shards put
   there, over the single planner's warm bytes; and the most the shards planned into warm
   together at any pass, against the cap.

Writes ``benchmarks/results/shards.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.tiering import object_rows

RESULTS = Path(__file__).parent / "results"
T0 = datetime(2031, 6, 1, tzinfo=UTC)
console = Console(stderr=True)

_TENANT = "'t' || lpad((g % :tenants)::text, 3, '0')"
_ID = f"CASE WHEN g < :legacy_below THEN g ELSE (liquid_tenant_bucket({_TENANT})::bigint << 48) | g END"
SEED_SQL = f"""
INSERT INTO tenants (id, display_name, created_at, disabled)
SELECT 't' || lpad(i::text, 3, '0'), '', now(), false FROM generate_series(0, :tenants - 1) AS i
ON CONFLICT DO NOTHING;
WITH o AS (
{object_rows(_ID, _TENANT)})
INSERT INTO access_stats (object_id, tenant_id, score, hits, last_access_at, updated_at)
SELECT id, tenant_id, 1 + (g % 97)::float, g % 50,
       :now - make_interval(secs => ((g * 31) % 900000)::float8), :now
FROM (SELECT id, tenant_id, id & ((1::bigint << 48) - 1) AS g FROM o) s WHERE g % 4 = 0
ON CONFLICT DO NOTHING;
SELECT setval('objects_id_seq', CAST(:hi AS bigint))
"""

# Reads of a fixed sample (the same for both sides): scores bumped, ids into the change feed.
TOUCH_SQL = """
WITH s AS (
    SELECT id FROM objects WHERE state = 'live' AND (id & ((1::bigint << 48) - 1)) % :every = :phase
), a AS (
    INSERT INTO access_stats (object_id, tenant_id, score, hits, last_access_at, updated_at)
    SELECT o.id, o.tenant_id, 5, 1, :now, :now FROM objects o JOIN s ON o.id = s.id
    ON CONFLICT (object_id) DO UPDATE SET score = access_stats.score * 0.99 + 5, hits = access_stats.hits + 1,
        last_access_at = :now, updated_at = :now
)
INSERT INTO tiering_changes (object_id) SELECT id FROM s ON CONFLICT DO NOTHING
"""
MARK_SQL = """
INSERT INTO tiering_changes (object_id)
SELECT id FROM objects WHERE state = 'live' AND (id & ((1::bigint << 48) - 1)) % :every = :phase
ON CONFLICT DO NOTHING
"""


def policy(cap: int) -> str:
    return f"""
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {{name: everything-warm}}
spec:
  rules:
    - {{tier: warm}}
  minResidency: 0s
---
apiVersion: liquid/v1
kind: Budget
metadata: {{name: warm-global}}
spec:
  tiers:
    warm: {{maxBytes: {cap}}}
"""


class Timed:
    """Times the calls of one method of a production part (the part itself runs unchanged)."""

    def __init__(self, inner: Any, method: str) -> None:
        self.inner, self.method, self.seconds = inner, method, 0.0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t

        return timed


class NoApply:
    """Applies nothing: both sides' numbers are planning's."""

    def apply(self, plan: Any) -> Any:
        from liquid.tiering.apply import ApplyReport

        return ApplyReport()


def seed(admin_url: str, rows: int, tenants: int, legacy: float) -> tuple[str, float]:
    from sqlalchemy import make_url, text

    from liquid.catalog import db

    admin = db.make_engine(admin_url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text('CREATE DATABASE "shards"'))
    admin.dispose()
    url = make_url(admin_url).set(database="shards").render_as_string(hide_password=False)
    engine = db.make_engine(url)
    db.upgrade(engine)
    t = time.perf_counter()
    step = 250_000
    below = 1 + int(rows * legacy)
    for lo in range(1, rows + 1, step):
        hi = min(lo + step - 1, rows)
        with engine.begin() as conn:
            for stmt in SEED_SQL.strip().split(";\n"):
                conn.execute(
                    text(stmt),
                    {"now": T0, "lo": lo, "hi": hi, "tenants": tenants, "legacy_below": below},
                )
        console.print(f"  seeded {hi:,} / {rows:,}")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE objects"))
        conn.execute(text("VACUUM ANALYZE access_stats"))
    engine.dispose()
    return url, time.perf_counter() - t


def warm_bytes(engine: Any) -> dict[int, int]:
    """What a planner's state puts in warm: id → bytes."""
    import numpy as np

    from liquid.tiering.state import NO_TIER, TIER_INDEX

    c = engine.state.columns
    n = c.n
    keep = (c.tier[:n] == TIER_INDEX["warm"]) & (c.tier[:n] != NO_TIER)
    return dict(zip(c.ids[:n][keep].tolist(), c.size[:n][keep].astype(np.int64).tolist(), strict=True))


def run(url: str, rounds: int, every: int) -> dict[str, Any]:
    from sqlalchemy import text

    from liquid.catalog import db, partitions
    from liquid.config import Settings
    from liquid.policy.loader import load_policy_text
    from liquid.tiering.engine import BucketRows, CatalogFeed, FixedPolicies, TieringEngine
    from liquid.tiering.planner import Planner
    from liquid.tiering.rows import CatalogRows
    from liquid.tiering.shards import PartitionShards
    from liquid.tiering.shares import CapShares, ShareDeferred

    catalog = db.make_engine(url)
    with catalog.connect() as conn:
        valued = int(
            conn.execute(
                text("SELECT sum(o.size) FROM objects o JOIN access_stats a ON a.object_id = o.id")
            ).scalar_one()
        )
    cap = int(valued * 0.4)
    policies = load_policy_text(policy(cap))
    settings = Settings(
        catalog_url=url, stores={"warm": url, "cold": "file:///nonexistent"}, tiers={"hot": None}
    )
    now = [T0]
    clock: Callable[[], datetime] = lambda: now[0]  # noqa: E731
    half_life = settings.access.half_life

    def make(buckets: Callable[[], frozenset[int]] | None, holder: str | None) -> TieringEngine:
        planner = Planner(settings)
        rows = CatalogRows(catalog, half_life=half_life)
        if holder is not None:
            planner.shares = CapShares(catalog, holder, ttl=3600.0)
        return TieringEngine(
            planner,
            Timed(rows if buckets is None else BucketRows(rows, buckets), "columns"),
            NoApply(),
            policies=FixedPolicies(policies, 1),
            feed=Timed(CatalogFeed(catalog, buckets=buckets), "changed"),
            clock=clock,
        )

    leases = {h: PartitionShards(catalog, h, ttl=3600.0, prefix="bench:") for h in ("a", "b")}
    for _ in range(2):
        for s in leases.values():
            s.claim()
    held = {h: frozenset(partitions.bucket_of_partition(n) for n in s.held) for h, s in leases.items()}
    for s in leases.values():
        again = s.claim()
        assert again.members == 2 and len(again.held) == 8, again
    single = make(None, None)
    shard = {h: make(lambda h=h: held[h], h) for h in ("a", "b")}  # type: ignore[misc]
    for e in shard.values():
        cs = e.planner.shares
        assert isinstance(cs, CapShares)
        cs.members, cs.fraction = 2, 0.5

    def combined_warm() -> float:
        total = 0.0
        for e in shard.values():
            if e.state is not None and "warm" in e.state.capped:
                total += sum(c.used for c in e.state.capped["warm"].caps if c.tenant is None)
        return total

    out: dict[str, Any] = {
        "cap": cap,
        "valued_bytes": valued,
        "buckets": {h: sorted(b) for h, b in held.items()},
    }
    rebuilds: dict[str, list[float]] = {"single": [], "a": [], "b": []}
    objects: dict[str, int] = {}
    idle: dict[str, list[float]] = {"single": [], "a": [], "b": []}
    changed: dict[str, list[float]] = {"single": [], "a": [], "b": []}
    evaluated: dict[str, int] = {}
    planning: dict[str, list[float]] = {"single": [], "a": [], "b": []}
    parts: dict[str, list[dict[str, float]]] = {"single": [], "a": [], "b": []}
    most = 0.0
    deferred: dict[str, list[float]] = {"a": [], "b": []}
    for r in range(rounds):
        order = ["single", "a", "b"] if r % 2 == 0 else ["b", "a", "single"]
        for name in order:
            e = single if name == "single" else shard[name]
            e.invalidate()
            while True:
                t = time.perf_counter()
                try:
                    plan = e.rebuild()
                except ShareDeferred as exc:
                    # As the daemon does: the other shard's next pass gives back, then rebuild again.
                    deferred[name].append(time.perf_counter() - t)
                    console.print(f"round {r}: {exc}")
                    assert len(deferred[name]) < 10
                    other = shard["b" if name == "a" else "a"]
                    if other.state is not None:
                        other.cycle()
                    continue
                break
            rebuilds[name].append(time.perf_counter() - t)
            assert plan is not None
            objects[name] = plan.objects
            most = max(most, combined_warm())
            console.print(f"round {r}: rebuild {name} {rebuilds[name][-1]:.1f}s, {plan.objects:,} objects")
        # The shards converge on the split (each pass moves its grant toward its share).
        for _ in range(3):
            for name in order:
                e = single if name == "single" else shard[name]
                now[0] += timedelta(seconds=1)
                t = time.perf_counter()
                e.cycle()
                idle[name].append(time.perf_counter() - t)
                most = max(most, combined_warm())
        # 1% read: the shards drain their parts of the feed, then the same ids for the single planner.
        phase = r % every
        now[0] += timedelta(seconds=30)
        with catalog.begin() as conn:
            conn.execute(text(TOUCH_SQL), {"every": every, "phase": phase, "now": now[0]})
        for name in [n for n in order if n != "single"] + ["single"]:
            if name == "single":
                with catalog.begin() as conn:
                    conn.execute(text(MARK_SQL), {"every": every, "phase": phase})
            e = single if name == "single" else shard[name]
            feed, rows = e.feed, e.rows
            assert isinstance(feed, Timed) and isinstance(rows, Timed)
            feed.seconds = rows.seconds = 0.0
            t = time.perf_counter()
            plan = e.cycle()
            changed[name].append(time.perf_counter() - t)
            assert plan is not None
            evaluated[name] = plan.evaluated
            planning[name].append(plan.duration_s)
            parts[name].append({"feed": feed.seconds, "rows": rows.seconds, "planner": plan.duration_s})
            console.print(f"round {r}: 1% cycle {name} {changed[name][-1]:.2f}s: {parts[name][-1]}")
            most = max(most, combined_warm())
        console.print(f"round {r}: cycles idle {idle}, 1% {changed}")
    one = warm_bytes(single)
    both = warm_bytes(shard["a"]) | warm_bytes(shard["b"])
    agree = sum(s for i, s in one.items() if i in both) / max(1, sum(one.values()))
    grants = {h: {k: vars(g) for k, g in e.planner.shares.grants.items()} for h, e in shard.items()}  # type: ignore[union-attr]
    out.update(
        {
            "objects": objects,
            "rebuild_s": rebuilds,
            "cycle_idle_s": idle,
            "cycle_1pct_s": changed,
            "cycle_1pct_evaluated": evaluated,
            "cycle_1pct_planner_s": planning,
            "cycle_1pct_parts_s": parts,
            "warm_bytes": {"single": sum(one.values()), "shards": sum(both.values())},
            "agreement": agree,
            "most_planned_by_shards": most,
            "grants": grants,
            "deferred_rebuilds_s": deferred,
        }
    )
    catalog.dispose()
    return out


def render(doc: dict[str, Any]) -> str:
    m, r = doc["meta"], doc["result"]
    gib = 2**30

    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    def row(label: str, d: dict[str, list[float]], fmt: str, *, total: bool = False) -> str:
        one, a, b = med(d["single"]), med(d["a"]), med(d["b"])
        ratio = f"slower shard / one: {max(a, b) / one:.2f}x"
        if total:
            ratio += f"; both shards / one: {(a + b) / one:.2f}x"
        return f"| {label} | {one:{fmt}} | {a:{fmt}} | {b:{fmt}} | {ratio} |"

    ev, obj, most = r["cycle_1pct_evaluated"], r["objects"], r["most_planned_by_shards"]
    deferred = r.get("deferred_rebuilds_s", {})
    lines = [
        "# One planner vs two planner shards (daemon.shard_planning)",
        "",
        f"{m['rows']:,} object rows of {m['tenants']} tenants ({m['legacy']:.0%} legacy ids) in one catalog;"
        f" {m['machine']}; load average {m['load_before']} before, {m['load_after']} after;"
        f" {m['seconds']:.0f} s in all (seeding {m['seed_s']:.0f} s)."
        f" Command: `python -m benchmarks.shards --rows {m['rows']}`. Medians of {m['rounds']} rounds whose"
        " order alternates; planning only (nothing applied, on both sides).",
        "",
        f"Policy: every object wants warm; one global Budget caps warm at {r['cap'] / gib:,.1f} GiB (40% of"
        " the bytes of the objects that are read), so every tenant's objects compete for one limit.",
        "",
        "| what | one planner | shard a | shard b | ratio |",
        "|---|---|---|---|---|",
        f"| objects planned | {obj['single']:,} | {obj['a']:,} | {obj['b']:,} | |",
        row("rebuild, s", r["rebuild_s"], ".2f", total=True),
        row("cycle, nothing changed, s", r["cycle_idle_s"], ".3f"),
        row("cycle, 1% read, s", r["cycle_1pct_s"], ".3f", total=True),
        f"| … objects evaluated | {ev['single']:,} | {ev['a']:,} | {ev['b']:,} | |",
        "",
        f"**Placement agreement**: the shards' warm set holds {r['agreement']:.2%} of the bytes the one"
        f" planner puts in warm ({r['warm_bytes']['shards'] / gib:,.2f} GiB vs"
        f" {r['warm_bytes']['single'] / gib:,.2f} GiB). The most the two shards planned into warm together"
        f" after any pass: {most / gib:,.3f} GiB of the {r['cap'] / gib:,.3f} GiB cap"
        f" ({'within' if most <= r['cap'] else 'OVER'} it).",
        "",
        "Rebuilds deferred while the other shard still held the budget its residents occupy (each an"
        " aborted rebuild, s): "
        + "; ".join(f"{h}: {[round(x, 2) for x in v]}" for h, v in sorted(deferred.items())),
        "",
        "Grants at the end (units: bytes):",
        "",
        "| shard | cap | used | share | granted |",
        "|---|---|---|---|---|",
    ]
    for h, gs in sorted(r["grants"].items()):
        for k, g in sorted(gs.items()):
            lines.append(f"| {h} | {k} | {g['used']:,.0f} | {g['share']:,.0f} | {g['granted']:,.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.shards", description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--tenants", type=int, default=64)
    ap.add_argument("--legacy", type=float, default=0.1, help="share of rows from before the partitioning")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    from liquid.embedded import EmbeddedPostgres

    workdir = Path(tempfile.mkdtemp(prefix="liquid-bench-shards-", dir="/tmp"))
    pg = EmbeddedPostgres(workdir / "pg")
    started = time.perf_counter()
    load_before = round(os.getloadavg()[0], 2)
    try:
        admin = pg.start()
        url, seed_s = seed(admin, args.rows, args.tenants, args.legacy)
        console.print(f"seeded in {seed_s:.0f}s")
        result = run(url, args.rounds, every=100)
    finally:
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    doc = {
        "meta": {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "rows": args.rows,
            "tenants": args.tenants,
            "legacy": args.legacy,
            "rounds": args.rounds,
            "seed_s": round(seed_s, 1),
            "seconds": round(time.perf_counter() - started, 1),
            "load_before": load_before,
            "load_after": round(os.getloadavg()[0], 2),
        },
        "result": result,
    }
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "shards.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
    (dest / "shards.md").write_text(render(doc))
    console.print(render(doc))


if __name__ == "__main__":
    main()
