"""Access-tracking overhead, measured in one run.

    python -m benchmarks.policy_plan [--quick]

**Tracking overhead**: hot 1 KiB reads through the core service with the access tracker on
and off (same service, same object, alternating rounds); and flush throughput (records moved
from Redis into ``access_stats``, and the change feed, per second). Planning time at 1M and
10M objects is ``python -m benchmarks.tiering``.

Writes ``benchmarks/results/policy_plan.json`` and ``policy_plan.md``.
Target (issue 4): tracking adds < 10% to a hot 1 KiB read.
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

RESULTS = Path(__file__).parent / "results"
POLICIES = Path(__file__).parent.parent / "policies"
console = Console(stderr=True)


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


def tracking_overhead(rt: Any, n: int) -> dict[str, Any]:
    svc = rt.service
    tenant = f"b{uuid.uuid4().hex[:6]}"
    svc.tenancy.create_tenant(tenant)
    ref = svc.put(tenant, "bench", "hot", os.urandom(1024)).ref
    assert svc.fill_hot(ref, svc.fast.find(ref.tenant, ref.namespace, ref.key, ref.version).id)
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


def render(meta: dict[str, Any], tracking: dict[str, Any]) -> str:
    t = tracking
    lines = [
        "# Access tracking",
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
    ]
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer reads (a smoke run)")
    args = parser.parse_args()
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
    finally:
        valkey.stop()
        pg.stop()
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "quick": args.quick,
    }
    RESULTS.mkdir(exist_ok=True)
    doc = {"meta": meta, "tracking": tracking}
    (RESULTS / "policy_plan.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / "policy_plan.md").write_text(render(meta, tracking))
    console.print(render(meta, tracking))


if __name__ == "__main__":
    main()
