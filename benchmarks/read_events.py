"""What read-event aggregation costs a hot read: p50 with and without it, in one run.

    python -m benchmarks.read_events [--reads 40000] [--objects 200] [--rounds 40]

Starts embedded PostgreSQL and Valkey (or uses ``LIQUID_TEST_POSTGRES_URL`` /
``LIQUID_TEST_REDIS_URL``), opens two runtimes on the same servers that differ in one
production setting, ``access.enabled``: on (the default — every read is noted per object
and minute in memory, pushed to Redis every 100 ms by the tracker's thread, and turned into
one ``object.read`` event per object per minute by the flush) and off (reads are not
counted at all). Both read the same cached 1 KiB objects through
:meth:`LiquidService.get` (served from the hot tier), alternating in rounds so drift on the
shared machine hits both alike. In-process reads are the harshest case: over HTTP the same
microseconds are a smaller share of a request.

Reports hot read p50/p99 both ways and their ratio (goal ≤ 1.05; also the median of the
rounds' own ratios, which load drift between rounds moves less), what the tracking costs in
CPU per read — ``note()`` on the read path, and the push thread's CPU per read noted, which
runs in the background and partly during the other side's rounds, so the p50s do not show
all of it — and the load average around the run. Then flushes the counted minute and
reports how many ``object.read`` events the reads became. Writes
``benchmarks/results/read_events.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from liquid.bootstrap import open_runtime
from liquid.config import Settings

RESULTS = Path(__file__).parent / "results"
GOAL = 1.05


def _stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "p50_us": round(statistics.median(xs) * 1e6, 1),
        "p99_us": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1e6, 1),
        "mean_us": round(statistics.fmean(xs) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=40_000, help="hot reads per side")
    parser.add_argument("--objects", type=int, default=200, help="distinct cached objects read")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()

    from benchmarks.core_io import start_catalog_and_cache

    workdir = Path(tempfile.mkdtemp(prefix="liquid-bench-reads-", dir="/tmp"))
    pg, redis_url, started = start_catalog_and_cache(workdir)
    stores = {"hot": redis_url, "warm": pg, "cold": f"file://{workdir / 'cold'}"}
    try:
        on = open_runtime(Settings(catalog_url=pg, stores=stores))
        off = open_runtime(Settings(catalog_url=pg, stores=stores, access={"enabled": False}), migrate=False)
        svc_on, svc_off = on.service, off.service
        assert svc_on.access is not None and svc_off.access is None
        tenant = f"bench-{uuid.uuid4().hex[:6]}"
        svc_on.tenancy.create_tenant(tenant)
        refs = []
        for i in range(args.objects):
            ref = svc_on.put(tenant, "hot", f"obj-{i}", os.urandom(1024) + b"x" * 4096).ref
            found = svc_on.fast.find(ref.tenant, ref.namespace, ref.key, ref.version)
            assert found is not None and svc_on.fill_hot(ref, found.id)
            refs.append(ref)
        for svc in (svc_on, svc_off):  # warm up both (connections, prepared statements)
            for ref in refs:
                assert svc.open(tenant, ref).source == "hot"
                svc.get(tenant, ref)

        times: dict[str, list[float]] = {"with": [], "without": []}
        round_ratios: list[float] = []
        per_round = args.reads // args.rounds
        n = 0
        access = svc_on.access
        access.push()  # the warm-up's reads out of the way of the counters
        noted0, pushed0 = access.noted, access.push_seconds
        load_before = os.getloadavg()[0]
        for _ in range(args.rounds):
            p50s = {}
            for side, svc in (("without", svc_off), ("with", svc_on)):
                out: list[float] = []
                for i in range(per_round):
                    ref = refs[(n + i) % len(refs)]
                    t0 = time.perf_counter()
                    svc.get(tenant, ref)
                    out.append(time.perf_counter() - t0)
                times[side] += out
                p50s[side] = statistics.median(out)
            round_ratios.append(p50s["with"] / p50s["without"])
            n += per_round
        load_after = os.getloadavg()[0]
        # The asynchronous share: CPU the push thread spent per read noted (it runs in the
        # background, partly during the other side's rounds, so the p50s do not show all of it).
        access.push()
        push_us = (access.push_seconds - pushed0) / max(1, access.noted - noted0) * 1e6

        # The synchronous share: what note() itself adds to each read (in push-interval-sized
        # slices, as the queue is drained in production).
        access.push()
        note_s = 0.0
        for lo in range(0, args.reads, 1000):
            t0 = time.perf_counter()
            for i in range(lo, min(lo + 1000, args.reads)):
                access.note(refs[i % len(refs)])
            note_s += time.perf_counter() - t0
            access.push()
        note_us = note_s / args.reads * 1e6

        # The flush turns the counted minutes into object.read events (as of a minute later, so
        # every minute of the run is finished).
        access.push()
        clock = access.clock
        later = clock() + timedelta(minutes=2)
        access.clock = lambda: later
        try:
            access.flush(svc_on.engine)
        finally:
            access.clock = clock
        with svc_on.engine.connect() as conn:
            events, counted = conn.execute(
                text(
                    "SELECT count(*), coalesce(sum(count), 0) FROM events"
                    " WHERE tenant_id = :t AND kind = 'object.read'"
                ),
                {"t": tenant},
            ).one()

        with_, without = _stats(times["with"]), _stats(times["without"])
        ratio = with_["p50_us"] / without["p50_us"]
        result = {
            "reads_per_side": len(times["with"]),
            "objects": args.objects,
            "rounds": args.rounds,
            "hot_read_with_aggregation": with_,
            "hot_read_without_aggregation": without,
            "p50_ratio": round(ratio, 3),
            "median_round_p50_ratio": round(statistics.median(round_ratios), 3),
            "goal_ratio": GOAL,
            "meets_goal": ratio <= GOAL,
            "note_us_per_read": round(note_us, 2),
            "note_share_of_p50": round(note_us / without["p50_us"], 4),
            "push_cpu_us_per_read": round(push_us, 2),
            "cost_share_of_p50": round((note_us + push_us) / without["p50_us"], 4),
            "load_average_before": round(load_before, 2),
            "load_average_after": round(load_after, 2),
            "reads_counted": int(counted),
            "read_events": int(events),
            "cpus": os.cpu_count(),
        }
        on.close()
        off.close()
    finally:
        for srv in reversed(started):
            srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)  # the servers' data: ~40 MB a run
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "read_events.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "read_events.md").write_text(_render(result))
    print(json.dumps(result, indent=2))


def _render(r: dict[str, Any]) -> str:
    w, wo = r["hot_read_with_aggregation"], r["hot_read_without_aggregation"]
    return (
        "# Read-event aggregation on the hot read path\n\n"
        f"`python -m benchmarks.read_events`: {r['reads_per_side']} in-process hot reads of 1 KiB"
        f" (+4 KiB) objects per side over {r['objects']} objects, alternating in {r['rounds']} rounds,"
        f" {r['cpus']} shared cores, load average {r['load_average_before']} before and"
        f" {r['load_average_after']} after.\n\n"
        "| access.enabled | p50 µs | p99 µs | mean µs |\n|---|---:|---:|---:|\n"
        f"| true (aggregated read events) | {w['p50_us']} | {w['p99_us']} | {w['mean_us']} |\n"
        f"| false (no read accounting) | {wo['p50_us']} | {wo['p99_us']} | {wo['mean_us']} |\n\n"
        f"p50 ratio **{r['p50_ratio']}** (goal ≤ {r['goal_ratio']}:"
        f" {'met' if r['meets_goal'] else 'missed'}); the median of the rounds' own p50 ratios is"
        f" {r['median_round_p50_ratio']}. The flush turned {r['reads_counted']} counted reads"
        f" into {r['read_events']} `object.read` events.\n\n"
        f"What the tracking costs per read in CPU: `AccessTracker.note` on the read path"
        f" {r['note_us_per_read']} µs, and the push thread (one Lua call per 100 ms for every object"
        f" read: decayed score, hourly and per-minute counts) {r['push_cpu_us_per_read']} µs in the"
        f" background; together {r['cost_share_of_p50']:.1%} of the p50 without tracking."
        " `access.enabled: false` also turns off the tiering's read scores, so the ratio is an upper"
        " bound on what the read events alone cost.\n"
    )


if __name__ == "__main__":
    main()
