"""Access-tracking overhead and planning time, measured in one run.

    python -m benchmarks.policy_plan [--quick]

1. **Tracking overhead**: hot 1 KiB reads through the core service with the access
   tracker on and off (same service, same object, alternating rounds); and flush
   throughput (records moved from Redis into ``access_stats`` per second).
2. **Plan time**: a catalog seeded with 10k / 100k / 1M synthetic objects (inserted by
   ``generate_series``, with access stats), planned against the shipped example
   policies: catalog streaming + evaluation + budgets, end to end, and evaluation alone
   on the same rows held in memory.

Writes ``benchmarks/results/policy_plan.json`` and ``policy_plan.md``.
Targets (issue 4): tracking adds < 10% to a hot 1 KiB read; plan over 1M objects < 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from liquid.bootstrap import open_runtime
from liquid.config import Settings
from liquid.embedded import EmbeddedPostgres, EmbeddedValkey
from liquid.policy.loader import load_policies
from liquid.tiering.planner import Planner

RESULTS = Path(__file__).parent / "results"
POLICIES = Path(__file__).parent.parent / "policies"
console = Console(stderr=True)

SEED_SQL = """
INSERT INTO tenants (id, display_name, created_at, disabled)
VALUES ('acme', '', now(), false), ('demo', '', now(), false) ON CONFLICT DO NOTHING;
INSERT INTO objects (tenant_id, namespace, key, version, size, stored_size, sha256, content_type, compression,
                     tags, created_at, legal_hold, home_tier, home_store, locator, home_since, state)
SELECT CASE WHEN g % 3 = 0 THEN 'acme' ELSE 'demo' END,
       (ARRAY['results', 'kb', 'audit', 'artifacts'])[1 + g % 4],
       'k/' || g, 1, 1000 + (g * 7919) % 10000000, 1000 + (g * 7919) % 10000000, repeat('0', 64),
       'application/octet-stream', 'none', '{}'::jsonb,
       :now - make_interval(secs => ((g * 104729) % 8000000)::float8), false,
       (ARRAY['warm', 'cold'])[1 + g % 2], 'x', 'l/' || g, :now - interval '3 days', 'live'
FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS g;
INSERT INTO access_stats (object_id, tenant_id, score, hits, last_access_at, updated_at)
SELECT id, tenant_id, (id % 97)::float, id % 50,
       :now - make_interval(secs => ((id * 31) % 900000)::float8), :now
FROM objects WHERE id BETWEEN CAST(:lo AS bigint) AND CAST(:hi AS bigint) ON CONFLICT DO NOTHING;
"""


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


def tracking_overhead(rt: Any, n: int) -> dict[str, Any]:
    svc = rt.service
    tenant = f"b{uuid.uuid4().hex[:6]}"
    svc.tenancy.create_tenant(tenant)
    ref = svc.put(tenant, "bench", "hot", os.urandom(1024)).ref
    svc.get(tenant, ref)
    assert svc.open(tenant, ref).source == "hot"
    tracker = svc.access
    on: list[float] = []
    off: list[float] = []
    for _ in range(10):
        for mode, out in (("off", off), ("on", on)):
            svc.access = tracker if mode == "on" else None
            for _ in range(n // 10):
                t0 = time.perf_counter()
                svc.get(tenant, ref)
                out.append(time.perf_counter() - t0)
    svc.access = tracker
    # Flush throughput: distinct objects, each read a few times.
    refs = [svc.put(tenant, "flush", f"o{i}", b"x").ref for i in range(2000)]
    tracker.flush(svc.engine)
    for r in refs * 3:
        tracker.record(r)
    t0 = time.perf_counter()
    report = tracker.flush(svc.engine)
    flush_s = time.perf_counter() - t0
    return {
        "hot_1kib_get_p50_us_without_tracking": p50(off) * 1e6,
        "hot_1kib_get_p50_us_with_tracking": p50(on) * 1e6,
        "overhead_ratio": p50(on) / p50(off),
        "target_ratio": 1.10,
        "target_met": p50(on) / p50(off) <= 1.10,
        "flush_objects": report.objects,
        "flush_records": report.hits,
        "flush_objects_per_s": report.objects / flush_s,
        "n": len(on),
    }


def plan_times(pg_url: str, sizes: list[int]) -> list[dict[str, Any]]:
    from sqlalchemy import text

    from liquid.catalog import db

    engine = db.make_engine(pg_url)
    db.upgrade(engine)
    now = datetime(2031, 6, 1, tzinfo=UTC)
    settings = Settings(catalog_url=pg_url)
    planner = Planner(engine, settings, clock=lambda: now)
    policies = load_policies([POLICIES])
    out = []
    seeded = 0
    for n in sizes:
        t0 = time.perf_counter()
        with engine.begin() as conn:
            for stmt in SEED_SQL.strip().split(";\n"):
                conn.execute(text(stmt), {"now": now, "lo": seeded + 1, "hi": n})
            conn.execute(text("ANALYZE objects; ANALYZE access_stats"))
        seed_s = time.perf_counter() - t0
        seeded = n
        t0 = time.perf_counter()
        rows = list(planner.rows())
        scan_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        plan = planner.plan(policies, rows=rows)
        eval_s = time.perf_counter() - t0
        del rows
        t0 = time.perf_counter()
        full = planner.plan(policies)
        total_s = time.perf_counter() - t0
        assert full.objects == n and len(full.changes) == len(plan.changes)
        console.print(f"plan {n}: {total_s:.1f}s end to end ({len(full.changes)} changes)")
        out.append(
            {
                "objects": n,
                "seed_s": seed_s,
                "catalog_scan_s": scan_s,
                "evaluate_and_budget_s": eval_s,
                "plan_end_to_end_s": total_s,
                "us_per_object": total_s / n * 1e6,
                "changes": len(full.changes),
                "target_s": 60.0 if n >= 1_000_000 else None,
                "target_met": (total_s < 60.0) if n >= 1_000_000 else None,
            }
        )
    engine.dispose()
    return out


def render(meta: dict[str, Any], tracking: dict[str, Any], plans: list[dict[str, Any]]) -> str:
    t = tracking
    lines = [
        "# Access tracking and planning",
        "",
        f"{meta['when']} · {meta['machine']}",
        "",
        "## Tracking overhead (hot 1 KiB get through the core service, same run)",
        "",
        "| without tracking p50 µs | with tracking p50 µs | ratio | target | met |",
        "|---|---|---|---|---|",
        f"| {t['hot_1kib_get_p50_us_without_tracking']:.1f} | {t['hot_1kib_get_p50_us_with_tracking']:.1f} | "
        f"{t['overhead_ratio']:.3f}x | ≤1.10x | {'yes' if t['target_met'] else '**no**'} |",
        "",
        f"Flush: {t['flush_objects']} objects ({t['flush_records']} reads) at "
        f"{t['flush_objects_per_s']:.0f} objects/s.",
        "",
        "## Plan time (shipped example policies, synthetic catalog)",
        "",
        "| objects | catalog scan s | evaluate+budgets s | end to end s | µs/object | changes | target "
        "| met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in plans:
        target = "<60 s" if p["target_s"] else ""
        met = "" if p["target_met"] is None else ("yes" if p["target_met"] else "**no**")
        lines.append(
            f"| {p['objects']:,} | {p['catalog_scan_s']:.2f} | {p['evaluate_and_budget_s']:.2f} | "
            f"{p['plan_end_to_end_s']:.2f} | {p['us_per_object']:.1f} | {p['changes']:,} | {target} | {met} |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k objects only, fewer reads")
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    work = Path(tempfile.mkdtemp(prefix="liquid-bench-plan-", dir="/tmp"))
    pg = EmbeddedPostgres(work / "pg")
    valkey = EmbeddedValkey(work / "valkey")
    pg_url, redis_url = pg.start(), valkey.start()
    try:
        rt = open_runtime(
            Settings(
                catalog_url=pg_url, stores={"hot": redis_url, "warm": pg_url, "cold": f"file://{work}/cold"}
            )
        )
        tracking = tracking_overhead(rt, 2000 if args.quick else 10000)
        rt.close()
        # Planning gets a database of its own so the seeded rows are the whole catalog.
        from sqlalchemy import make_url, text

        from liquid.catalog import db

        admin = db.make_engine(pg_url)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("CREATE DATABASE plan_bench"))
        admin.dispose()
        plans = plan_times(
            make_url(pg_url).set(database="plan_bench").render_as_string(hide_password=False), sizes
        )
    finally:
        valkey.stop()
        pg.stop()
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "quick": args.quick,
    }
    RESULTS.mkdir(exist_ok=True)
    doc = {"meta": meta, "tracking": tracking, "plans": plans}
    (RESULTS / "policy_plan.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / "policy_plan.md").write_text(render(meta, tracking, plans))
    console.print(render(meta, tracking, plans))


if __name__ == "__main__":
    main()
