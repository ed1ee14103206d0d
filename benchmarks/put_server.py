"""Where the server's time goes in the warm put's one statement: a diagnostic, not a target.

    python -m benchmarks.put_server [--n 2000]

Starts an embedded PostgreSQL (or uses ``LIQUID_TEST_POSTGRES_URL``), migrates it, and times on
one autocommit psycopg connection, in alternating rounds, without waiting for the commit's fsync
(``synchronous_commit = off`` on this connection only: the server's own work, which the fsync
otherwise hides or inflates as the disk is quiet or busy):

* a raw single-row INSERT of one bytea (the floor ``benchmarks.core_io`` compares with);
* the write statement as ``put`` runs it (:data:`liquid.catalog.fastpath.INSERT_OBJECT`);
* the same statement with one CTE left out at a time (the event, the change feed), and
  the key_heads upsert alone, the event insert alone;
* the statement with every trigger off (``session_replication_role = replica``: after
  migration 0013 none fires on insert, so this should match), and written straight into the
  tenant's objects partition (and the month's events partition) instead of through the parents;
* the floor: the same four rows in one statement into unpartitioned tables with only their keys.

Then ``EXPLAIN (ANALYZE, BUFFERS, WAL)`` of one statement (trigger times included), the indexes
each insert maintains, the triggers on the four tables, and the per-call time of the SQL
functions the statement calls (``track_functions = 'all'``). Writes
``benchmarks/results/put_server.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.core_io import _put_fields
from liquid.catalog import fastpath, partitions
from liquid.catalog.fastpath import INSERT_OBJECT

RESULTS = Path(__file__).parent / "results"
TABLES = ("objects", "events", "key_heads", "tiering_changes")


def _without(sql: str, *ctes: str) -> str:
    """``sql`` (the write statement) with the CTEs named left out."""
    for cte in ctes:
        pattern = re.compile(rf"\), {cte} AS \(\n.*?\n(?=\), |\)\nSELECT)", re.S)
        sql, n = pattern.subn("", sql)
        if n != 1:
            raise SystemExit(f"could not find CTE {cte!r} in the write statement (did it change?)")
    return sql


HEAD_ONLY = """
INSERT INTO key_heads (tenant_id, namespace, key, last_version)
VALUES (%(tenant)s, %(namespace)s, %(key)s, 1)
ON CONFLICT (tenant_id, namespace, key) DO UPDATE SET last_version = key_heads.last_version + 1
RETURNING last_version
"""
#: The least an acknowledged put could write: version head, object row (same columns, its two unique
#: keys), event, change-feed entry; no partitions, no secondary indexes, no foreign keys.
FLOOR_TABLES = """
CREATE TABLE IF NOT EXISTS floor_heads (LIKE key_heads INCLUDING DEFAULTS,
    PRIMARY KEY (tenant_id, namespace, key));
CREATE TABLE IF NOT EXISTS floor_objects (LIKE objects_b01 INCLUDING DEFAULTS, PRIMARY KEY (id),
    UNIQUE (tenant_id, namespace, key, version));
CREATE TABLE IF NOT EXISTS floor_events (LIKE events_default INCLUDING DEFAULTS, PRIMARY KEY (id));
CREATE UNLOGGED TABLE IF NOT EXISTS floor_changes (object_id bigint PRIMARY KEY);
"""
FLOOR = (
    INSERT_OBJECT.replace("INSERT INTO key_heads", "INSERT INTO floor_heads")
    .replace("DO UPDATE SET last_version = key_heads.", "DO UPDATE SET last_version = floor_heads.")
    .replace("INSERT INTO objects (", "INSERT INTO floor_objects (")
    .replace("INSERT INTO events (", "INSERT INTO floor_events (")
    .replace("INSERT INTO tiering_changes", "INSERT INTO floor_changes")
)
RAW = "INSERT INTO bench_raw (data) VALUES (%(inline_data)s) RETURNING id"


def _event_only() -> str:
    """The created event's INSERT alone, from a one-row VALUES standing in for the objects row."""
    sql = INSERT_OBJECT
    start = sql.index("ev AS (") + len("ev AS (")
    end = sql.index("), changed AS (")
    ev = sql[start:end].strip()
    return "WITH obj AS (SELECT CAST(%(oid)s AS bigint) AS id, 1 AS version) " + ev + " RETURNING id"


def timed(fn: Callable[[int], object], n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="statements per step (default 2000)")
    args = parser.parse_args()

    import psycopg

    from liquid.catalog import db

    workdir = Path(tempfile.mkdtemp(prefix="liquid-putdiag-", dir="/tmp"))
    started: list[Any] = []
    try:
        pg = os.environ.get("LIQUID_TEST_POSTGRES_URL")
        if not pg:
            from liquid import embedded

            srv = embedded.EmbeddedPostgres(workdir / "pg")
            pg = srv.start()
            started.append(srv)
        engine = db.make_engine(pg)
        db.upgrade(engine)
        engine.dispose()
        dsn = fastpath.conninfo(pg)
        tenant = f"diag-{uuid.uuid4().hex[:6]}"
        payload = os.urandom(1024)
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=1) as conn:
            conn.execute(
                "INSERT INTO tenants (id, display_name, disabled) VALUES (%s, %s, false)", (tenant, tenant)
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, data bytea NOT NULL)"
            )
            conn.execute("SET synchronous_commit = off")
            conn.execute("SET plan_cache_mode = force_generic_plan")
            report = run(conn, tenant, payload, args.n)
    finally:
        for s in reversed(started):
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    load = os.getloadavg()
    report["meta"] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "n": args.n,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "put_server.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = render(report)
    (RESULTS / "put_server.md").write_text(text)
    print(text)


def run(conn: Any, tenant: str, payload: bytes, n: int) -> dict[str, Any]:
    count = iter(range(10**9))

    def fields() -> dict[str, Any]:
        f = _put_fields(tenant, f"diag/{next(count)}", payload)
        f["oid"] = next(count)
        return f

    def ex(sql: str) -> Callable[[int], object]:
        return lambda i: conn.execute(sql, fields()).fetchone()

    stmt = INSERT_OBJECT  # what CatalogFastPath.insert runs
    objects_direct = stmt.replace(
        "INSERT INTO objects (",
        f"INSERT INTO {partitions.partition_name(partitions.tenant_bucket(tenant))} (",
    )
    month = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'events'::regclass AND pg_get_expr(c.relpartbound, c.oid) LIKE %s",
        (f"%{datetime.now(UTC):%Y-%m}-01%",),
    ).fetchone()[0]

    def triggers_off(i: int) -> object:
        return conn.execute(stmt, fields()).fetchone()

    steps: dict[str, tuple[Callable[[int], object], str | None]] = {
        "raw INSERT of one bytea row": (ex(RAW), None),
        "the write statement as put runs it (head, obj, ev, changed)": (ex(stmt), None),
        "without the event (head, obj, changed)": (ex(_without(stmt, "ev")), None),
        "without the change feed (head, obj, ev)": (ex(_without(stmt, "changed")), None),
        "head and obj only": (ex(_without(stmt, "ev", "changed")), None),
        "key_heads upsert alone": (ex(HEAD_ONLY), None),
        "created event INSERT alone": (ex(_event_only()), None),
        "the statement, every trigger off (replica role)": (triggers_off, "replica"),
        "the statement into the tenant's objects partition directly": (ex(objects_direct), None),
        "the same, events into the month's partition directly too": (
            ex(objects_direct.replace("INSERT INTO events (", f"INSERT INTO {month} (")),
            None,
        ),
    }
    conn.execute(FLOOR_TABLES)
    steps["floor: the four rows in one statement, unpartitioned, keys only"] = (ex(FLOOR), None)
    table = measure(conn, steps, n)

    # What-ifs, each toggled by DDL between bursts of 50 and timed against the statement as it is
    # in the same bursts: the schema before migration 0013 (the two tenant foreign keys, the
    # (tenant_id, created_at) index, and the head's VALUES that relied on the foreign key), and
    # the statement without the (state, home_tier) index (kept: the planner's scan of live rows
    # reads it once purged rows outnumber them).
    before = stmt.replace(
        "SELECT id, %(namespace)s, %(key)s, 1 FROM tenants WHERE id = %(tenant)s",
        "VALUES (%(tenant)s, %(namespace)s, %(key)s, 1)",
    )
    assert before != stmt
    whatifs = {
        "schema and statement before migration 0013 (tenant foreign keys, created index)": (
            before,
            [
                "ALTER TABLE key_heads ADD CONSTRAINT key_heads_tenant_id_fkey FOREIGN KEY (tenant_id)"
                " REFERENCES tenants (id) ON DELETE CASCADE NOT VALID",
                "ALTER TABLE objects ADD CONSTRAINT objects_tenant_id_fkey FOREIGN KEY (tenant_id)"
                " REFERENCES tenants (id) NOT VALID",
                "CREATE INDEX ix_objects_tenant_created ON objects (tenant_id, created_at)",
            ],
            [
                "ALTER TABLE objects DROP CONSTRAINT objects_tenant_id_fkey",
                "ALTER TABLE key_heads DROP CONSTRAINT key_heads_tenant_id_fkey",
                "DROP INDEX ix_objects_tenant_created",
            ],
        ),
        "without ix_objects_state_tier": (
            stmt,
            ["DROP INDEX ix_objects_state_tier"],
            ["CREATE INDEX ix_objects_state_tier ON objects (state, home_tier)"],
        ),
    }
    whatif = []
    for name, (sql, apply, undo) in whatifs.items():
        now_t: list[float] = []
        then_t: list[float] = []
        for _ in range(n // 50):
            now_t += timed(ex(stmt), 50)
            for ddl in apply:
                conn.execute(ddl)
            then_t += timed(ex(sql), 50)
            for ddl in undo:
                conn.execute(ddl)
        a, b = statistics.median(now_t) * 1e3, statistics.median(then_t) * 1e3
        whatif.append({"step": name, "n": len(then_t), "now_p50_ms": a, "whatif_p50_ms": b, "ratio": b / a})

    # Fsync included (what put waits for): the raw INSERT, the statement, what deferring the event
    # (and the change feed) would leave, the floor.
    conn.execute("SET synchronous_commit = on")
    synced = measure(
        conn,
        {
            "raw INSERT of one bytea row, fsync waited": (ex(RAW), None),
            "the write statement, fsync waited": (ex(stmt), None),
            "without the event (head, obj, changed), fsync waited": (ex(_without(stmt, "ev")), None),
            "head and obj only (event and change feed deferred), fsync waited": (
                ex(_without(stmt, "ev", "changed")),
                None,
            ),
            "floor (four rows, keys only), fsync waited": (ex(FLOOR), None),
        },
        n,
    )
    conn.execute("SET synchronous_commit = off")

    # EXPLAIN of one statement (substituted literals: EXPLAIN cannot take bind parameters here).
    explain = []
    for _ in range(3):  # the last of three: caches warm
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, WAL, VERBOSE, SUMMARY) " + stmt, fields()).fetchall()
        explain = [r[0] for r in rows]

    indexes = {
        t: [
            r[0]
            for r in conn.execute(
                "SELECT indexrelid::regclass::text || ': ' || pg_get_indexdef(indexrelid) FROM pg_index"
                " WHERE indrelid = %s::regclass ORDER BY 1",
                (t,),
            ).fetchall()
        ]
        for t in TABLES
    }
    triggers = [
        f"{r[0]}: {r[1]} ({'internal' if r[2] else 'user'})"
        for r in conn.execute(
            "SELECT tgrelid::regclass::text, tgname, tgisinternal FROM pg_trigger"
            " WHERE tgrelid = ANY(CAST(%s AS regclass[])) AND tgparentid = 0 ORDER BY 1, 2",
            ([*TABLES, "tenants"],),
        ).fetchall()
    ]

    # Per-call time of each function the statement calls (not inlined ones: those never show).
    conn.execute("SET track_functions = 'all'")
    conn.execute("SELECT pg_stat_reset()")
    for _ in range(500):
        conn.execute(stmt, fields()).fetchone()
    conn.execute("SELECT pg_stat_force_next_flush()")
    functions = [
        {"function": r[0], "calls": r[1], "self_ms_per_call": r[2] / max(r[1], 1)}
        for r in conn.execute(
            "SELECT funcname, calls, self_time FROM pg_stat_user_functions ORDER BY self_time DESC"
        ).fetchall()
    ]
    conn.execute("SET track_functions = 'none'")
    return {
        "steps": table,
        "synced": synced,
        "whatif": whatif,
        "explain": explain,
        "indexes": indexes,
        "triggers": triggers,
        "functions": functions,
    }


def measure(
    conn: Any, steps: dict[str, tuple[Callable[[int], object], str | None]], n: int, burst: int = 10
) -> list[dict[str, Any]]:
    """Each step ``n`` times, interleaved in bursts of ``burst`` (so drift on a shared machine hits
    every step alike: blocks of hundreds let one step's block meet a checkpoint or a neighbour's job)."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(n // burst):
        for name, (fn, role) in steps.items():
            if role:
                conn.execute(f"SET session_replication_role = {role}")
            times[name] += timed(fn, burst)
            if role:
                conn.execute("SET session_replication_role = origin")
    base = statistics.median(next(iter(times.values())))
    return [
        {
            "step": name,
            "n": len(xs),
            "p50_ms": statistics.median(xs) * 1e3,
            "ratio": statistics.median(xs) / base,
        }
        for name, xs in times.items()
    ]


def render(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [
        "# Warm put: the server's work in Liquid's one write statement (diagnostic)",
        "",
        f"{meta['when']} · {meta['machine']} · load average at the end {meta['load_average']} · "
        "embedded PostgreSQL 18, unix socket, one autocommit connection, prepared generic plans, "
        "`synchronous_commit = off` (the fsync aside: never what Liquid runs)",
        "",
        "`python -m benchmarks.put_server` · ratio to the raw single-row INSERT in the same rounds",
        "",
        "| step | n | p50 ms | ratio |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s['step']} | {s['n']} | {s['p50_ms']:.3f} | {s['ratio']:.2f}x |" for s in report["steps"]]
    lines += [
        "",
        "## What-ifs: toggled by DDL between bursts of 50, beside the statement as it is in the same bursts",
        "",
        "| what-if | n | statement now p50 ms | what-if p50 ms | what-if / now |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {s['step']} | {s['n']} | {s['now_p50_ms']:.3f} | {s['whatif_p50_ms']:.3f} | {s['ratio']:.2f}x |"
        for s in report["whatif"]
    ]
    lines += [
        "",
        "## With the commit's fsync waited for (as put does)",
        "",
        "| step | n | p50 ms | ratio |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s['step']} | {s['n']} | {s['p50_ms']:.3f} | {s['ratio']:.2f}x |" for s in report["synced"]]
    lines += ["", "## Indexes each insert maintains", ""]
    for table, idx in report["indexes"].items():
        lines.append(f"- `{table}` ({len(idx)}):")
        lines += [f"  - `{i}`" for i in idx]
    lines += ["", "## Triggers on these tables (and tenants)", ""]
    lines += [f"- `{t}`" for t in report["triggers"]]
    lines += ["", "## Functions called, per call (track_functions = 'all', 500 statements)", ""]
    if report["functions"]:
        lines += ["| function | calls | self ms per call |", "|---|---|---|"]
        lines += [
            f"| {f['function']} | {f['calls']} | {f['self_ms_per_call']:.4f} |" for f in report["functions"]
        ]
    else:
        lines.append("none tracked (SQL functions inlined into the statement do not count as calls)")
    lines += ["", "## EXPLAIN (ANALYZE, BUFFERS, WAL) of one statement", "", "```"]
    lines += report["explain"]
    lines += ["```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
