"""The objects table partitioned by tenant bucket vs the plain table, side by side at 10M rows.

    python -m benchmarks.partitions [--rows 10000000] [--tenants 64] [--legacy 0.1] [--ops 3000]

Starts one embedded PostgreSQL (in a temporary directory, removed at the end) with two catalogs:

* ``plain``: migrated to 0011, the layout before partitioning (one ``objects`` table);
* ``partitioned``: migrated to head (``objects`` by range of id, one partition per tenant
  bucket: :mod:`liquid.catalog.partitions`).

Both get the same rows (``--tenants`` tenants, four namespaces, sizes 1 KB to 10 MB, warm and
cold homes, an ``access_stats`` row for every fourth object) loaded with ``COPY`` in alternating
chunks, so drift on the shared machine hits both alike. In the partitioned catalog the first
``--legacy`` share of the rows keeps plain sequence ids, as rows written before migration 0012
do (they live in ``objects_legacy``); the rest carry their tenant's bucket. Then, on each
catalog, what production runs:

1. **bulk load** — rows/s of the ``COPY`` into ``objects`` with its indexes in place;
2. **insert** — :meth:`CatalogFastPath.insert` (the one statement ``LiquidService.put`` runs:
   version, row, event, change feed), one at a time, in rounds alternating between catalogs;
3. **point lookup** — :meth:`CatalogFastPath.find_by_id` (a read of a known version) and
   :meth:`CatalogFastPath.find` (by ref), random existing objects, alternating rounds;
4. **planner scan** — :meth:`CatalogRows.scan_columns` (the rows a planner rebuild reads,
   through ADBC, under the shipped example policies): the whole catalog on both, and on the
   partitioned one each tenant bucket alone (``bucket=``: its partition and its tenants' legacy
   rows), the unit a daemon shard plans (:mod:`liquid.tiering.shards`).

Ratios are partitioned / plain. Writes ``benchmarks/results/partitions.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

RESULTS = Path(__file__).parent / "results"
POLICIES = Path(__file__).parent.parent / "policies"
T0 = datetime(2031, 6, 1, tzinfo=UTC)
CHUNK = 250_000
console = Console(stderr=True)

_OBJECT_COLUMNS = (
    "id, tenant_id, namespace, key, version, size, stored_size, sha256, content_type, compression, tags,"
    " created_at, legal_hold, home_tier, home_store, locator, home_since, state"
)
_NAMESPACES = ("results", "kb", "audit", "artifacts")
_ZERO_SHA = "0" * 64


def tenant_name(g: int, tenants: int) -> str:
    return f"t{g % tenants:03d}"


def object_rows(lo: int, hi: int, tenants: int, ids: Callable[[str, int], int]) -> tuple[str, str]:
    """COPY text of objects ``lo … hi - 1`` and of their access_stats rows (every fourth)."""
    objects, stats = io.StringIO(), io.StringIO()
    t0 = T0.timestamp()
    for g in range(lo, hi):
        tenant = tenant_name(g, tenants)
        oid = ids(tenant, g)
        size = 1000 + (g * 7919) % 10_000_000
        created = datetime.fromtimestamp(t0 - (g * 104729) % 8_000_000, UTC).isoformat()
        tier = "warm" if g % 2 else "cold"
        objects.write(
            f"{oid}\t{tenant}\t{_NAMESPACES[g % 4]}\tk/{g}\t1\t{size}\t{size}\t{_ZERO_SHA}\t"
            f"application/octet-stream\tnone\t{{}}\t{created}\tf\t{tier}\t{tier}\tl/{g}\t"
            f"{(T0 - timedelta(days=3)).isoformat()}\tlive\n"
        )
        if g % 4 == 0:
            seen = datetime.fromtimestamp(t0 - (g * 31) % 900_000, UTC).isoformat()
            stats.write(f"{oid}\t{tenant}\t{g % 97}\t{g % 50}\t{seen}\t{T0.isoformat()}\n")
    return objects.getvalue(), stats.getvalue()


class Catalog:
    """One catalog database of the benchmark, with its own fast path and rows reader."""

    def __init__(self, name: str, admin_url: str, revision: str, *, legacy_below: int = 0) -> None:
        from sqlalchemy import make_url, text

        from liquid.catalog import db

        admin = db.make_engine(admin_url)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self.name = name
        self.url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        self.engine = db.make_engine(self.url)
        db.upgrade(self.engine, revision)
        self.partitioned = revision == "head"
        self.legacy_below = legacy_below
        self.copy_s = 0.0

    def oid(self, tenant: str, g: int) -> int:
        """The id of object ``g``: a plain sequence value, or (partitioned, not legacy) with its bucket."""
        from liquid.catalog import partitions

        return partitions.object_id(tenant, g) if self.partitioned and g >= self.legacy_below else g

    def copy(self, objects: str, stats: str) -> None:
        import psycopg

        from liquid.catalog.fastpath import conninfo

        with psycopg.connect(conninfo(self.url)) as conn, conn.cursor() as cur:
            t = time.perf_counter()
            with cur.copy(f"COPY objects ({_OBJECT_COLUMNS}) FROM STDIN") as cp:
                cp.write(objects)
            self.copy_s += time.perf_counter() - t
            with cur.copy(
                "COPY access_stats (object_id, tenant_id, score, hits, last_access_at, updated_at) FROM STDIN"
            ) as cp:
                cp.write(stats)

    def finish_seed(self, rows: int, tenants: int) -> None:
        from sqlalchemy import text

        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # Later writes take sequence values past the seeded ones, as they would after real writes.
            conn.execute(text("SELECT setval('objects_id_seq', :n)"), {"n": rows})
            conn.execute(text("VACUUM ANALYZE objects"))
            conn.execute(text("VACUUM ANALYZE access_stats"))

    def size_mib(self) -> float:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            total = conn.execute(
                text(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                    " WHERE c.relname = 'objects' OR c.oid IN"
                    " (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'objects'::regclass)"
                )
            ).scalar()
        return round(int(total or 0) / 2**20, 1)


def seed(catalogs: list[Catalog], rows: int, tenants: int) -> dict[str, Any]:
    from sqlalchemy import text

    for cat in catalogs:
        with cat.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO tenants (id, display_name, disabled)"
                    " SELECT unnest(CAST(:t AS text[])), '', false"
                ),
                {"t": [f"t{i:03d}" for i in range(tenants)]},
            )
    started = time.perf_counter()
    for lo in range(1, rows + 1, CHUNK):
        hi = min(lo + CHUNK, rows + 1)
        for cat in catalogs if (lo // CHUNK) % 2 == 0 else catalogs[::-1]:
            cat.copy(*object_rows(lo, hi, tenants, cat.oid))
        if (hi - 1) % 1_000_000 == 0 or hi == rows + 1:
            console.print(f"  seeded {hi - 1:,} / {rows:,}")
    for cat in catalogs:
        cat.finish_seed(rows, tenants)
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "copy_rows_per_s": {c.name: round(rows / c.copy_s) for c in catalogs},
        "objects_mib": {c.name: c.size_mib() for c in catalogs},
    }


def _p(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def timed_rounds(
    ops: dict[str, Callable[[int], object]], n: int, rounds: int = 10
) -> dict[str, dict[str, float]]:
    """``n`` calls of each op, in rounds alternating between them; p50/p99 in µs."""
    samples: dict[str, list[float]] = {k: [] for k in ops}
    per = max(1, n // rounds)
    i = 0
    for r in range(rounds):
        order = list(ops) if r % 2 == 0 else list(ops)[::-1]
        for name in order:
            op = ops[name]
            for j in range(per):
                t = time.perf_counter()
                op(i + j)
                samples[name].append((time.perf_counter() - t) * 1e6)
        i += per
    return {
        k: {"p50_us": round(_p(v, 0.5), 1), "p99_us": round(_p(v, 0.99), 1), "n": len(v)}
        for k, v in samples.items()
    }


def point_ops(catalogs: list[Catalog], rows: int, tenants: int, n: int) -> dict[str, Any]:
    from liquid.catalog.fastpath import INSERT_OBJECT, CatalogFastPath

    # The plain catalog (0011) runs the statement as it was before partitioning: no id given.
    plain_insert = INSERT_OBJECT.replace("id, tenant_id, namespace,", "tenant_id, namespace,", 1)
    plain_insert = plain_insert.replace(
        "SELECT liquid_object_id(%(tenant)s), %(tenant)s,", "SELECT %(tenant)s,", 1
    )
    assert "liquid_object_id" not in plain_insert
    rng = random.Random(7)
    picks = [rng.randrange(1, rows + 1) for _ in range(n)]
    fast = {c.name: CatalogFastPath(c.url, max_size=2) for c in catalogs}
    cats = {c.name: c for c in catalogs}
    part = {c.name: c.partitioned for c in catalogs}

    def by_id(name: str) -> Callable[[int], object]:
        def op(i: int) -> object:
            g = picks[i % n]
            oid = cats[name].oid(tenant_name(g, tenants), g)
            row = fast[name].find_by_id(oid)
            assert row is not None, (name, oid)
            return row

        return op

    def by_ref(name: str) -> Callable[[int], object]:
        def op(i: int) -> object:
            g = picks[i % n]
            row = fast[name].find(tenant_name(g, tenants), _NAMESPACES[g % 4], f"k/{g}", 1)
            assert row is not None, (name, g)
            return row

        return op

    def insert(name: str) -> Callable[[int], object]:
        def op(i: int) -> object:
            fields = {
                "tenant": tenant_name(i, tenants),
                "namespace": "results",
                "key": f"new/{i}",
                "size": 1024,
                "stored_size": 1024,
                "sha256": _ZERO_SHA,
                "content_type": "application/octet-stream",
                "compression": "none",
                "tags": "{}",
                "classification": None,
                "trace_id": None,
                "correlation_id": None,
                "execution_id": None,
                "scope": None,
                "now": T0,
                "expires_at": None,
                "legal_hold": False,
                "home_tier": "warm",
                "home_store": "warm",
                "locator": f"new/{i}",
                "inline_data": None,
                "actor": "bench",
                "latency_ms": 0.0,
            }
            if part[name]:
                return fast[name].insert(fields)
            with fast[name].pool.connection() as conn:
                return conn.execute(plain_insert, fields).fetchone()

        return op

    try:
        for f in fast.values():  # connect and prepare before timing
            for i in range(20):
                f.find(tenant_name(i, tenants), "results", "warm-up", 1)
        out = {
            "find_by_id": timed_rounds({c.name: by_id(c.name) for c in catalogs}, n),
            "find_by_ref": timed_rounds({c.name: by_ref(c.name) for c in catalogs}, n),
            "insert": timed_rounds({c.name: insert(c.name) for c in catalogs}, n),
        }
    finally:
        for f in fast.values():
            f.pool.close()
    return out


def scans(catalogs: list[Catalog]) -> dict[str, Any]:
    from liquid.catalog import partitions
    from liquid.policy.loader import load_policies
    from liquid.tiering.rows import CatalogRows

    policies = load_policies([POLICIES])
    out: dict[str, Any] = {"full": {}, "buckets": []}

    def scan(cat: Catalog, bucket: int | None) -> tuple[float, int]:
        rows = CatalogRows(cat.engine, half_life=3600.0)
        t = time.perf_counter()
        n = sum(len(b) for b in rows.scan_columns(T0, policies, bucket=bucket))
        return time.perf_counter() - t, n

    for cat in catalogs:
        s, n = scan(cat, None)
        out["full"][cat.name] = {"s": round(s, 2), "rows": n}
        console.print(f"  full scan {cat.name}: {s:.1f}s, {n:,} rows")
    parted = next(c for c in catalogs if c.partitioned)
    for bucket in range(1, partitions.BUCKETS + 1):
        s, n = scan(parted, bucket)
        out["buckets"].append({"partition": partitions.partition_name(bucket), "s": round(s, 3), "rows": n})
    return out


def render(doc: dict[str, Any]) -> str:
    m, seed_, ops, sc = doc["meta"], doc["seed"], doc["ops"], doc["scan"]
    plain, parted = "plain", "partitioned"
    lines = [
        "# objects partitioned by tenant bucket vs the plain table",
        "",
        f"{m['rows']:,} object rows of {m['tenants']} tenants in each catalog; {m['machine']};"
        f" load average {m['load_before']} before, {m['load_after']} after; {m['seconds']:.0f} s in all."
        " Command: `python -m benchmarks.partitions`. Ratios are partitioned / plain, measured side by side.",
        "",
        "| what | plain | partitioned | ratio |",
        "|---|---|---|---|",
    ]
    cp = seed_["copy_rows_per_s"]
    lines.append(
        f"| bulk load (COPY, indexes in place), rows/s | {cp[plain]:,} | {cp[parted]:,} |"
        f" {cp[parted] / cp[plain]:.2f}x |"
    )
    mib = seed_["objects_mib"]
    lines.append(
        f"| objects table + indexes, MiB | {mib[plain]:,} | {mib[parted]:,} |"
        f" {mib[parted] / mib[plain]:.2f}x |"
    )
    names = {
        "insert": "insert (fast path, one statement), p50 µs",
        "find_by_id": "point lookup by id, p50 µs",
        "find_by_ref": "point lookup by ref, p50 µs",
    }
    for key, label in names.items():
        a, b = ops[key][plain], ops[key][parted]
        lines.append(f"| {label} | {a['p50_us']} | {b['p50_us']} | {b['p50_us'] / a['p50_us']:.2f}x |")
        lines.append(f"| … p99 µs | {a['p99_us']} | {b['p99_us']} | {b['p99_us'] / a['p99_us']:.2f}x |")
    ins = ops["insert"]
    lines.append(
        f"| insert rate, one writer, ops/s (1e6 / p50) | {1e6 / ins[plain]['p50_us']:,.0f} |"
        f" {1e6 / ins[parted]['p50_us']:,.0f} | |"
    )
    f = sc["full"]
    lines.append(
        f"| planner scan of the whole catalog, s | {f[plain]['s']} | {f[parted]['s']} |"
        f" {f[parted]['s'] / f[plain]['s']:.2f}x |"
    )
    parts = [p for p in sc["buckets"] if p["rows"]]
    total = sum(p["s"] for p in sc["buckets"])
    lines += [
        "",
        "Per-bucket planner scan on the partitioned catalog (`CatalogRows.scan_columns(bucket=…)`: the"
        f" bucket's partition and its tenants' rows in `objects_legacy`, {m['legacy']:.0%} of all rows):"
        f" {len(parts)} buckets hold rows; their scans add up to {total:.1f} s"
        f" ({total / f[parted]['s']:.2f}x the whole-catalog scan).",
        "",
        "| partition | rows | s | µs per row |",
        "|---|---|---|---|",
    ]
    for p in sc["buckets"]:
        per = f"{p['s'] / p['rows'] * 1e6:.2f}" if p["rows"] else "-"
        lines.append(f"| {p['partition']} | {p['rows']:,} | {p['s']} | {per} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.partitions", description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--tenants", type=int, default=64)
    ap.add_argument("--legacy", type=float, default=0.1, help="share of rows from before the partitioning")
    ap.add_argument("--ops", type=int, default=3000, help="calls per op and catalog")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    from liquid.embedded import EmbeddedPostgres

    workdir = Path(tempfile.mkdtemp(prefix="liquid-bench-partitions-", dir="/tmp"))
    pg = EmbeddedPostgres(workdir / "pg")
    started = time.perf_counter()
    load_before = round(os.getloadavg()[0], 2)
    try:
        admin = pg.start()
        legacy_below = 1 + int(args.rows * args.legacy)
        catalogs = [
            Catalog("plain", admin, "0011"),
            Catalog("partitioned", admin, "head", legacy_below=legacy_below),
        ]
        seeded = seed(catalogs, args.rows, args.tenants)
        console.print(f"seeded: {seeded}")
        ops = point_ops(catalogs, args.rows, args.tenants, args.ops)
        console.print(f"ops: {ops}")
        scanned = scans(catalogs)
        for cat in catalogs:
            cat.engine.dispose()
    finally:
        pg.stop()
        # Two 10M-row catalogs are gigabytes on a shared disk.
        shutil.rmtree(workdir, ignore_errors=True)
    doc = {
        "meta": {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "rows": args.rows,
            "tenants": args.tenants,
            "legacy": args.legacy,
            "seconds": round(time.perf_counter() - started, 1),
            "load_before": load_before,
            "load_after": round(os.getloadavg()[0], 2),
        },
        "seed": seeded,
        "ops": ops,
        "scan": scanned,
    }
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "partitions.json").write_text(json.dumps(doc, indent=2) + "\n")
    (dest / "partitions.md").write_text(render(doc))
    console.print(render(doc))


if __name__ == "__main__":
    main()
