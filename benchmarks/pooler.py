"""The catalog behind PgBouncer in transaction mode: what the pooled mode costs a request, side by side.

    python -m benchmarks.pooler [--ops N]

Starts embedded PostgreSQL and PgBouncer (Debian's ``pgbouncer``, transaction mode) on loopback
and opens three Liquid services on the same catalog, each the way production wires it
(:func:`liquid.bootstrap.open_runtime`):

* ``direct``: ``catalog_url`` the server itself, ``catalog_pooler: none`` (prepared statements);
* ``direct-unprepared``: the server itself with ``catalog_pooler: transaction`` (what dropping
  prepared statements alone costs);
* ``pgbouncer``: ``catalog_url`` PgBouncer, ``catalog_pooler: transaction``.

Each runs ``put`` of a 1 KiB value (one catalog INSERT statement: the fast path) and ``get`` of
it (one catalog lookup: the fast path), in rounds that alternate between the services so drift
on the machine hits all alike. Writes ``benchmarks/results/pooler.json`` and ``pooler.md``; the
ratio columns are p50 / the direct service's p50.
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
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from liquid.bootstrap import Runtime, open_runtime
from liquid.config import Settings
from liquid.embedded import EmbeddedPgBouncer, EmbeddedPostgres
from liquid.refs import ResultRef

RESULTS = Path(__file__).parent / "results"
MODES = ("direct", "direct-unprepared", "pgbouncer")


def _runtime(catalog: str, pooler: str, cold: Path) -> Runtime:
    settings = Settings(
        catalog_url=catalog,
        catalog_pooler=pooler,  # type: ignore[arg-type]
        stores={"warm": "catalog", "cold": cold.as_uri()},
        tiers={"hot": None},  # type: ignore[arg-type]
        access={"enabled": False},  # type: ignore[arg-type]
    )
    return open_runtime(settings, migrate=False)


def _p(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000


def run(ops: int, rounds: int) -> dict[str, Any]:
    if EmbeddedPgBouncer.binary() is None:
        raise SystemExit("pgbouncer is not installed: apt-get install pgbouncer (or make pgbouncer as root)")
    base = Path(tempfile.mkdtemp(prefix="liquid-bench-pooler-"))
    pg = EmbeddedPostgres(base / "pg")
    bouncer = None
    runtimes: dict[str, Runtime] = {}
    try:
        url = pg.start()
        bouncer = EmbeddedPgBouncer(url, base / "pgbouncer", pool_mode="transaction", pool_size=4)
        via = bouncer.start()
        from liquid.catalog import db

        engine = db.make_engine(url, pool_size=1)
        db.upgrade(engine)
        engine.dispose()
        (base / "cold").mkdir()
        runtimes = {
            "direct": _runtime(url, "none", base / "cold"),
            "direct-unprepared": _runtime(url, "transaction", base / "cold"),
            "pgbouncer": _runtime(via, "transaction", base / "cold"),
        }
        tenant = f"bench-{uuid.uuid4().hex[:8]}"
        runtimes["direct"].service.tenancy.create_tenant(tenant)
        value = os.urandom(1024)
        times: dict[tuple[str, str], list[float]] = {(m, op): [] for m in MODES for op in ("put", "get")}
        per_round = max(1, ops // rounds)
        for r in range(rounds + 1):  # round 0 warms every service up and is not counted
            for mode in MODES:
                svc = runtimes[mode].service
                refs: list[ResultRef] = []
                for i in range(per_round):
                    t0 = time.perf_counter()
                    refs.append(svc.put(tenant, mode, f"r{r}-{i}", value).ref)
                    t1 = time.perf_counter()
                    if r:
                        times[(mode, "put")].append(t1 - t0)
                for ref in refs:
                    t0 = time.perf_counter()
                    got = svc.get(tenant, ref)
                    t1 = time.perf_counter()
                    assert got == value
                    if r:
                        times[(mode, "get")].append(t1 - t0)
        rows = []
        for op in ("put", "get"):
            base_p50 = statistics.median(times[("direct", op)])
            for mode in MODES:
                xs = times[(mode, op)]
                rows.append(
                    {
                        "op": op,
                        "mode": mode,
                        "n": len(xs),
                        "p50_ms": round(statistics.median(xs) * 1000, 3),
                        "p99_ms": round(_p(xs, 0.99), 3),
                        "ratio_p50": round(statistics.median(xs) / base_p50, 2),
                    }
                )
        return {
            "benchmark": "pooler",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()},
            "pgbouncer": "transaction mode, 4 server connections",
            "ops": ops,
            "rounds": rounds,
            "rows": rows,
        }
    finally:
        for rt in runtimes.values():
            rt.close()
        if bouncer is not None:
            bouncer.stop()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def markdown(result: dict[str, Any]) -> str:
    load = ", ".join(f"{x:.2f}" for x in result["machine"]["load"])
    lines = [
        "# Catalog behind PgBouncer (transaction mode) vs direct",
        "",
        f"`python -m benchmarks.pooler --ops {result['ops']}` at {result['when']}; "
        f"{result['machine']['cpus']} shared CPUs, load average at the end {load}. "
        "1 KiB values through LiquidService (`put`: the fast path's one INSERT statement; "
        "`get`: its one lookup). Rounds alternate between the three services.",
        "",
        "| op | catalog | n | p50 ms | p99 ms | p50 / direct |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['op']} | {r['mode']} | {r['n']} | {r['p50_ms']} | {r['p99_ms']} | {r['ratio_p50']}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=3000, help="operations per op and mode")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    result = run(args.ops, args.rounds)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pooler.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "pooler.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
