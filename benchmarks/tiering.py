"""What a tiering cycle costs: incremental cycles beside full rebuilds, at 1M and 10M catalog rows.

    python -m benchmarks.tiering [--quick] [--sizes 1000000,10000000] [--settings JSON] [--out DIR]

For each size a catalog is generated straight into an embedded PostgreSQL (``generate_series``:
objects of two tenants in four namespaces, sizes 1 KB to 10 MB, ages up to three months, read
counts in ``access_stats``), planned under the shipped example policies (``policies/``), by the
engine ``liquid daemon`` runs (:func:`liquid.tiering.engine.catalog_engine`), in a process of
its own so its peak memory is its own:

1. **first rebuild** — scan, plan and apply (moves and purges queued in the journal), as at
   start after a policy apply;
2. the queued moves are carried out in one statement (a perfect mover) so the catalog is
   where the plan wants it;
3. **rebuild** — a full plan of the steady catalog (``liquid policy plan``'s dry run);
4. **cycles** — 0.1% and 1% of the objects are read (their ``access_stats`` rows updated and
   their ids put in the change feed, as the access flush does) and the clock moves 30 s,
   then :meth:`TieringEngine.cycle` drains the feed, takes due deadlines, reads those rows,
   plans and applies; three cycles each, the median reported.

Targets (issue 10): a cycle with 0.1% change at 10M rows under 2 s; a rebuild of 1M under
10 s; peak memory reported. Writes ``benchmarks/results/tiering.json`` and ``tiering.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

RESULTS = Path(__file__).parent / "results"
POLICIES = Path(__file__).parent.parent / "policies"
T0 = datetime(2031, 6, 1, tzinfo=UTC)
console = Console(stderr=True)


def object_rows(id_sql: str, tenant_sql: str) -> str:
    """SQL inserting objects ``g`` in ``:lo..:hi``, id and tenant given as SQL of ``g``.

    It ends ``RETURNING id, tenant_id``.

    Sizes, ages, namespaces and homes are spread by ``g`` alone, so every run seeds the same rows.
    """
    return f"""
INSERT INTO objects (id, tenant_id, namespace, key, version, size, stored_size, sha256, content_type,
                     compression, tags, created_at, legal_hold, home_tier, home_store, locator, home_since,
                     state)
SELECT {id_sql}, {tenant_sql},
       (ARRAY['results', 'kb', 'audit', 'artifacts'])[1 + g % 4],
       'k/' || g, 1, 1000 + (g * 7919) % 10000000, 1000 + (g * 7919) % 10000000, repeat('0', 64),
       'application/octet-stream', 'none', '{{}}'::jsonb,
       :now - make_interval(secs => ((g * 104729) % 8000000)::float8), false,
       (ARRAY['warm', 'cold'])[1 + g % 2], (ARRAY['warm', 'cold'])[1 + g % 2], 'l/' || g,
       :now - interval '3 days', 'live'
FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS g
RETURNING id, tenant_id
"""


# Object g of tenant t gets the id liquid_object_id would give it from sequence value g (the
# objects table is partitioned by the tenant's bucket in the id: liquid.catalog.partitions), so a
# sample of g finds its rows by primary key; the sequence is moved past them afterwards.
_TENANT = "CASE WHEN g % 3 = 0 THEN 'acme' ELSE 'demo' END"
_ID = f"((liquid_tenant_bucket({_TENANT})::bigint << 48) | g)"
SEED_SQL = f"""
INSERT INTO tenants (id, display_name, created_at, disabled)
VALUES ('acme', '', now(), false), ('demo', '', now(), false) ON CONFLICT DO NOTHING;
WITH o AS (
{object_rows(_ID, _TENANT)})
INSERT INTO access_stats (object_id, tenant_id, score, hits, last_access_at, updated_at)
SELECT id, tenant_id, (g % 97)::float, g % 50, :now - make_interval(secs => ((g * 31) % 900000)::float8), :now
FROM (SELECT id, tenant_id, id & ((1::bigint << 48) - 1) AS g FROM o) s ON CONFLICT DO NOTHING;
SELECT setval('objects_id_seq', CAST(:hi AS bigint))
"""

# Reads of a random sample, written as the access flush writes them (and into the change feed).
TOUCH_SQL = f"""
WITH r AS (
    SELECT DISTINCT {_ID} AS id
    FROM (SELECT (1 + floor(random() * :size))::bigint AS g FROM generate_series(1, :n)) AS sample
), s AS (
    SELECT o.id FROM objects o JOIN r ON o.id = r.id WHERE o.state = 'live'
), a AS (
    UPDATE access_stats a SET score = a.score * 0.99 + 1, hits = a.hits + 1, last_access_at = :now,
           updated_at = :now
    FROM s WHERE a.object_id = s.id
)
INSERT INTO tiering_changes (object_id) SELECT id FROM s ON CONFLICT DO NOTHING
"""

# The perfect mover: every queued move's object is switched to its destination, every row closed.
SETTLE_SQL = """
UPDATE objects o SET home_tier = j.to_tier, home_store = j.to_store, locator = j.to_locator, home_since = :now
FROM move_journal j WHERE j.object_id = o.id AND j.kind = 'move' AND j.step = 'planned';
UPDATE objects SET state = 'purged', purged_at = :now WHERE state = 'expired';
UPDATE move_journal SET step = 'done' WHERE step NOT IN ('done', 'failed');
DELETE FROM tiering_changes
"""


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(
    url: str, redis_url: str, workdir: Path, size: int, cycles: int, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Everything measured for one catalog size, in this (fresh) process (``extra``: more settings)."""
    from sqlalchemy import text

    from liquid.bootstrap import open_runtime
    from liquid.catalog import changes
    from liquid.config import Settings
    from liquid.policy.loader import load_policies
    from liquid.tiering.engine import FixedPolicies, catalog_engine

    now = [T0]
    settings = Settings(
        catalog_url=url,
        stores={"hot": redis_url, "warm": url, "cold": f"file://{workdir}/cold"},
        shm={"enabled": False},
        **(extra or {}),
    )
    rt = open_runtime(settings, migrate=False, clock=lambda: now[0])
    svc = rt.service
    policies = load_policies([POLICIES])
    engine = catalog_engine(svc, clock=lambda: now[0], policies=FixedPolicies(policies, 1))
    out: dict[str, Any] = {"objects": size}

    t = time.perf_counter()
    first = engine.rebuild()
    assert first is not None
    out["first_rebuild"] = {
        "plan_s": first.duration_s,
        "total_s": time.perf_counter() - t,
        "changes": len(first.changes),
        "moves_queued": engine.last_report.moves_queued if engine.last_report else 0,
        "purges_queued": engine.last_report.purges_queued if engine.last_report else 0,
    }
    console.print(
        f"{size:,}: first rebuild {out['first_rebuild']['total_s']:.1f}s, {len(first.changes):,} changes"
    )
    with svc.engine.begin() as conn:
        for stmt in SETTLE_SQL.strip().split(";\n"):
            conn.execute(text(stmt), {"now": now[0]})
    now[0] += timedelta(seconds=30)
    t = time.perf_counter()
    steady = engine.dry_run(policies, 1)
    out["rebuild"] = {"s": time.perf_counter() - t, "changes": len(steady.changes), "objects": steady.objects}
    console.print(f"{size:,}: rebuild {out['rebuild']['s']:.1f}s ({len(steady.changes):,} changes)")
    # The engine's own state is the first rebuild's; the steady catalog agrees with its assumptions.
    state = engine.state
    assert state is not None
    out["state_bytes"] = state.memory_bytes
    for fraction in (0.001, 0.01):
        n = max(1, int(size * fraction))
        runs = []
        for _ in range(cycles):
            with svc.engine.begin() as conn:
                conn.execute(text(TOUCH_SQL), {"n": n, "size": size, "now": now[0]})
            now[0] += timedelta(seconds=30)
            t = time.perf_counter()
            plan = engine.cycle()
            elapsed = time.perf_counter() - t
            assert plan is not None and plan.kind == "cycle"
            runs.append(
                {
                    "s": elapsed,
                    "plan_s": plan.duration_s,
                    "evaluated": plan.evaluated,
                    "changes": len(plan.changes),
                }
            )
        med = statistics.median(r["s"] for r in runs)
        out[f"cycle_{fraction}"] = {"changed": n, "median_s": med, "runs": runs}
        console.print(
            f"{size:,}: cycle with {fraction:.1%} changed: {med:.3f}s (evaluated {runs[-1]['evaluated']:,})"
        )
    out["feed_left"] = changes.pending(svc.engine)
    out["peak_rss_mib"] = peak_rss_mib()
    rt.close()
    return out


def seed(admin_url: str, database: str, size: int) -> tuple[str, float]:
    from sqlalchemy import make_url, text

    from liquid.catalog import db

    admin = db.make_engine(admin_url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{database}"'))
        conn.execute(text("SELECT 1"))
    admin.dispose()
    url = make_url(admin_url).set(database=database).render_as_string(hide_password=False)
    engine = db.make_engine(url)
    db.upgrade(engine)
    t = time.perf_counter()
    step = 1_000_000
    for lo in range(1, size + 1, step):
        with engine.begin() as conn:
            for stmt in SEED_SQL.strip().split(";\n"):
                conn.execute(text(stmt), {"now": T0, "lo": lo, "hi": min(lo + step - 1, size)})
        console.print(f"  seeded {min(lo + step - 1, size):,} / {size:,}")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE objects"))
        conn.execute(text("VACUUM ANALYZE access_stats"))
    engine.dispose()
    return url, time.perf_counter() - t


def render(doc: dict[str, Any]) -> str:
    meta = doc["meta"]
    lines = [
        "# Tiering cycle cost: incremental cycles beside full rebuilds",
        "",
        f"{meta['when']} · {meta['machine']} · embedded PostgreSQL 18 (unix socket), shipped example "
        "policies, synthetic catalog (`python -m benchmarks.tiering`). Each size in a process of its own."
        + (f" Settings: `{json.dumps(meta['settings'])}`." if meta.get("settings") else ""),
        "",
        "| objects | first rebuild + apply s | changes queued | rebuild (steady) s | cycle 0.1% s | "
        "evaluated | cycle 1% s | evaluated | state MiB | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["sizes"]:
        c1, c2 = r["cycle_0.001"], r["cycle_0.01"]
        lines.append(
            f"| {r['objects']:,} | {r['first_rebuild']['total_s']:.1f} | {r['first_rebuild']['changes']:,} | "
            f"{r['rebuild']['s']:.1f} | {c1['median_s']:.3f} | {c1['runs'][-1]['evaluated']:,} | "
            f"{c2['median_s']:.3f} | {c2['runs'][-1]['evaluated']:,} | {r['state_bytes'] / 2**20:.0f} | "
            f"{r['peak_rss_mib']:.0f} |"
        )
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for r in doc["sizes"]:
        if r["objects"] == 1_000_000:
            s = r["rebuild"]["s"]
            lines.append(f"| rebuild of 1M < 10 s | {s:.1f} s | {'yes' if s < 10 else '**no**'} |")
        if r["objects"] == 10_000_000:
            s = r["cycle_0.001"]["median_s"]
            lines.append(
                f"| cycle with 0.1% changed at 10M < 2 s | {s:.2f} s | {'yes' if s < 2 else '**no**'} |"
            )
    lines += [
        "",
        "A cycle reads only the changed objects and those whose deadline came (the `evaluated` column);",
        "a rebuild reads and plans every live object. Peak RSS is the whole benchmark process's.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.tiering", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k objects only (a smoke run)")
    ap.add_argument("--sizes", default="", help="catalog sizes, comma-separated (default 1M,10M)")
    ap.add_argument("--cycles", type=int, default=3, help="cycles per change fraction")
    ap.add_argument("--child", nargs=4, metavar=("URL", "REDIS", "WORKDIR", "SIZE"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--settings",
        default="",
        help='Liquid settings as JSON for the planning process, e.g. \'{"planner": {"adaptive": true}}\''
        " (results are then printed, not written, unless --out is given; so are --sizes and --quick runs)",
    )
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    try:
        extra = json.loads(args.settings) if args.settings else {}
    except json.JSONDecodeError as exc:
        ap.error(f"--settings is not JSON: {exc}")
    if not isinstance(extra, dict):
        ap.error("--settings must be a JSON object")
    if args.child:
        url, redis_url, workdir, size = args.child
        print(json.dumps(child(url, redis_url, Path(workdir), int(size), args.cycles, extra)))
        return
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([100_000] if args.quick else [1_000_000, 10_000_000])
    )
    from liquid.embedded import EmbeddedPostgres, EmbeddedValkey

    workdir = Path(tempfile.mkdtemp(prefix="liquid-bench-tiering-", dir="/tmp"))
    pg, valkey = EmbeddedPostgres(workdir / "pg"), EmbeddedValkey(workdir / "valkey")
    pg_url, redis_url = pg.start(), valkey.start()
    results = []
    started = time.perf_counter()
    try:
        for size in sizes:
            url, seed_s = seed(pg_url, f"tiering_{size}", size)
            console.print(f"{size:,}: seeded in {seed_s:.0f}s")
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.tiering",
                    "--cycles",
                    str(args.cycles),
                    "--settings",
                    args.settings,
                    "--child",
                    url,
                    redis_url,
                    str(workdir),
                    str(size),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            sys.stderr.write(proc.stderr)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["seed_s"] = seed_s
            results.append(row)
    finally:
        valkey.stop()
        pg.stop()
        # The catalogs are gigabytes on a shared disk.
        shutil.rmtree(workdir, ignore_errors=True)
    doc = {
        "meta": {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "seconds": round(time.perf_counter() - started, 1),
            "settings": extra,
        },
        "sizes": results,
    }
    if not args.out and (extra or args.sizes or args.quick):
        # A what-if or a partial run: the shipped results stay the full run's, default settings.
        console.print(render(doc))
        print(json.dumps(doc))
        return
    dest = Path(args.out or RESULTS)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "tiering.json").write_text(json.dumps(doc, indent=2) + "\n")
    (dest / "tiering.md").write_text(render(doc))
    console.print(render(doc))


if __name__ == "__main__":
    main()
