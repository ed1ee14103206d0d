"""How far above LRU any online policy gets on each cell of the placement grid.

``python -m benchmarks.placement.frontier --requests 250000 --out benchmarks/results``

The placement goal asks Liquid to be at or above the best of six online peers in every cell.
Where that best peer is LRU, this measures whether anything online does better, so that a cell
Liquid loses by a hair to LRU can be told from one where it leaves something on the table:

* every online policy libCacheSim ships that runs on sized objects (the issue's six and
  :data:`~benchmarks.placement.peers.MORE_ONLINE`), on the placement benchmark's oracleGeneral file;
* **LRFU** (Lee et al., 2001), the spectrum Liquid's hot rank adapts along, at each half-life of
  :data:`HALF_LIVES` (in requests), and the best of them **in hindsight**: a ceiling for any
  choice of half-life, which no online choice can beat on average.

Liquid's own byte hit ratio for each cell comes from ``placement.json`` in the same directory,
when that run replayed as many requests. Nothing here runs Liquid.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import multiprocessing
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.placement.peers import MORE_ONLINE, ONLINE, oracle_file, run_peer
from benchmarks.placement.traces import KiB, Trace, grid_traces

RESULTS = Path(__file__).resolve().parents[1] / "results"
#: LRFU's half-lives, in requests: from recency (30: LRU's order) to a memory of 100,000 requests.
HALF_LIVES = (30, 100, 300, 1000, 3000, 10_000, 30_000, 100_000)
LN2 = math.log(2)


def lrfu_bhr(trace: Trace, capacity: int, half_life: float) -> float:
    """LRFU's byte hit ratio: every miss admitted, the lowest combined recency-frequency score
    (``log Σ 2^(i/H)`` over the object's reads ``i``, forward-decayed) evicted until it fits.
    Objects larger than the cache are not admitted. Scores persist after eviction (as LRFU's
    history does), so an object read again comes back with its past."""
    score: dict[int, float] = {}
    members: dict[int, int] = {}
    heap: list[tuple[float, int]] = []
    used = hit = total = 0
    step = LN2 / half_life
    for i, (oid, size) in enumerate(zip(trace.oid.tolist(), trace.size.tolist(), strict=True)):
        total += size
        x = i * step
        g = score.get(oid)
        g = (
            x
            if g is None
            else (g + math.log1p(math.exp(x - g)) if g > x else x + math.log1p(math.exp(g - x)))
        )
        score[oid] = g
        if oid in members:
            hit += size
            heapq.heappush(heap, (g, oid))
            continue
        if size > capacity:
            continue
        while used + size > capacity:
            v, victim = heapq.heappop(heap)
            if victim in members and score[victim] == v:  # else a stale entry
                used -= members.pop(victim)
        members[oid] = size
        used += size
        heapq.heappush(heap, (g, oid))
    return hit / total if total else 0.0


def _peer(name: str, path: Path, capacity: int, largest: int, timeout: float = 60.0) -> float | None:
    """One peer's byte hit ratio, run in a child process: some of libCacheSim's policies crash the
    process (LFUDA at a 1% budget of a short trace) or never finish (peers take seconds here);
    those cells get None."""
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def run() -> None:
        send.send(run_peer(name, path, capacity, largest)["bhr"])

    child = ctx.Process(target=run, daemon=True)
    child.start()
    send.close()
    try:
        result = recv.recv() if recv.poll(timeout) else None
    except EOFError:  # it died
        result = None
    if result is None:
        print(f"{path.name} {name}: crashed or ran past {timeout:.0f} s; left out", flush=True)
    child.join(1.0)
    if child.is_alive():
        child.kill()
        child.join()
    return result


def _lrfu_job(job: tuple[Trace, float, int, float]) -> tuple[str, float, float, float]:
    trace, fraction, capacity, half_life = job
    return trace.name, fraction, half_life, lrfu_bhr(trace, capacity, half_life)


def _capacity(trace: Trace, fraction: float) -> int:
    """The peers' capacity in bytes: whole KiB, as libCacheSim runs them."""
    return int(trace.working_set_bytes() * fraction) // KiB * KiB


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.placement.frontier", description=__doc__)
    ap.add_argument("--requests", type=int, default=250_000, help="requests per trace (default 250k)")
    ap.add_argument("--traces", default="", help="comma-separated subset of the grid's trace names")
    ap.add_argument("--budgets", default="0.01,0.05,0.1", help="hot budgets, fractions of working-set bytes")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel LRFU runs")
    ap.add_argument("--out", default="", help="results directory (default: print only)")
    ap.add_argument("--render", action="store_true", help="re-render the markdown from --out's JSON")
    args = ap.parse_args(argv)
    if args.render:
        if not args.out:
            ap.error("--render needs --out: the directory holding placement-frontier.json")
        data = json.loads((Path(args.out) / "placement-frontier.json").read_text())
        (Path(args.out) / "placement-frontier.md").write_text(render(data))
        return
    started = time.perf_counter()
    budgets = [float(b) for b in args.budgets.split(",")]
    grid = grid_traces(args.requests)
    wanted = set(args.traces.split(",")) if args.traces else None
    if wanted is not None and (unknown := wanted - {t.name for t in grid}):
        ap.error(
            f"--traces: unknown {', '.join(sorted(unknown))}; the grid has {', '.join(t.name for t in grid)}"
        )
    traces = [t for t in grid if wanted is None or t.name in wanted]
    out: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "settings": {"requests": args.requests, "budgets": budgets, "half_lives": list(HALF_LIVES)},
        "traces": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for trace in traces:
            path = oracle_file(trace, Path(tmp))
            largest = int(trace.size.max())
            cells = out["traces"].setdefault(trace.name, {})
            for f in budgets:
                cap = int(trace.working_set_bytes() * f)
                cells[str(f)] = {
                    "peers": {n: _peer(n, path, cap, largest) for n in ONLINE + MORE_ONLINE},
                    "lrfu": {},
                }
            print(f"{trace.name}: peers done", flush=True)
    jobs = [(t, f, _capacity(t, f), h) for t in traces for f in budgets for h in HALF_LIVES]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, f, h, bhr in pool.map(_lrfu_job, jobs):
            out["traces"][name][str(f)]["lrfu"][str(h)] = bhr
    liquid = _liquid(
        Path(args.out) if args.out and (Path(args.out) / "placement.json").is_file() else RESULTS,
        args.requests,
    )
    for name, cells in out["traces"].items():
        for f, cell in cells.items():
            cell["liquid"] = liquid.get((name, f))
    out["seconds"] = round(time.perf_counter() - started, 1)
    text = render(out)
    print(text)
    if args.out:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "placement-frontier.json").write_text(json.dumps(out, indent=2, allow_nan=False) + "\n")
        (out_dir / "placement-frontier.md").write_text(text)
        print(f"written to {out_dir}/placement-frontier.{{md,json}}")


def _liquid(directory: Path, requests: int) -> dict[tuple[str, str], float]:
    """Liquid's byte hit ratio per (trace, budget) from ``placement.json``, if it replayed as many
    requests."""
    path = directory / "placement.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if data.get("settings", {}).get("requests") != requests:
        return {}
    found = {}
    for name, entry in data["traces"].items():
        for f, ratios in entry["hit_ratios"].items():
            if "Liquid@1000" in ratios:
                found[(name, f)] = ratios["Liquid@1000"]["bhr"]
    return found


def render(out: dict[str, Any]) -> str:
    s = out["settings"]
    lines = [
        "# The frontier of online policies on the placement grid",
        "",
        f"`python -m benchmarks.placement.frontier` — {s['requests']:,} requests per trace, the placement "
        f"grid's traces and budgets; {out['seconds']:.0f} s on {out['machine']['cpus']} CPUs. Byte hit "
        "ratios. "
        "**six**: the best of the issue's six online peers (LRU, ARC, S3-FIFO, SIEVE, W-TinyLFU, GDSF); "
        f"**more**: the best of {len(MORE_ONLINE)} more of libCacheSim's online policies "
        f"({', '.join(MORE_ONLINE)}); **LRFU\\***: LRFU at the best of its half-lives in hindsight "
        f"({', '.join(f'{h:,}' for h in s['half_lives'])} requests), a ceiling for any online choice of "
        "half-life; **frontier**: the best of all three. Liquid: the placement benchmark's "
        "(`placement.md`, same requests), whose hot copies also count a 62-byte header each.",
        "",
        "| trace | budget | LRU | six | more | LRFU* (half-life) | frontier - LRU, points | Liquid "
        "| Liquid - six, points |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    at_lru = []
    left_out = []
    for name, cells in out["traces"].items():
        for f, cell in cells.items():
            left_out += [f"{k} on {name} {float(f):.0%}" for k, v in cell["peers"].items() if v is None]
            peers = {k: v for k, v in cell["peers"].items() if v is not None}
            lru = peers["LRU"]
            six = max((v, k) for k, v in peers.items() if k in ONLINE)
            more = max((v, k) for k, v in peers.items() if k not in ONLINE)
            h, best_lrfu = max(((int(h), v) for h, v in cell["lrfu"].items()), key=lambda x: x[1])
            frontier = max(six[0], more[0], best_lrfu)
            liquid = cell.get("liquid")
            gap = "" if liquid is None else f"{(liquid - six[0]) * 100:+.2f}"
            lines.append(
                f"| {name} | {float(f):.0%} | {lru:.4f} | {six[1]} {six[0]:.4f} | {more[1]} {more[0]:.4f} "
                f"| {best_lrfu:.4f} ({h:,}) | {(frontier - lru) * 100:+.2f} "
                f"| {'' if liquid is None else f'{liquid:.4f}'} | {gap} |"
            )
            if six[1] == "LRU" and frontier - lru < 0.001:
                at_lru.append(f"{name} {float(f):.0%}")
    lines += [
        "",
        f"Cells where LRU is the best of the six and nothing online here beats it by 0.1 points: "
        f"{len(at_lru)}" + (f" ({', '.join(at_lru)})." if at_lru else "."),
        "",
    ]
    if left_out:
        lines += [
            f"Left out where they crashed libCacheSim or ran past a minute: {', '.join(left_out)}.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
