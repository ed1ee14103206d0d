"""Run the placement benchmark: hit ratios and cost per trace, written as JSON and markdown."""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.placement import cost as costs
from benchmarks.placement.peers import OFFLINE, ONLINE, oracle_file, run_peer
from benchmarks.placement.replay import POLICY, POLICY_FOR, replay, settings_of
from benchmarks.placement.traces import (
    Trace,
    TraceFormatError,
    grid_traces,
    holdout_traces,
    load_csv,
    load_oracle_general,
    size_unit,
)

RESULTS = Path(__file__).resolve().parents[1] / "results"
GOAL_CYCLE = 1000  # the goals are judged on the daemon cycling every 1k requests


def _traces(args: argparse.Namespace, ap: argparse.ArgumentParser) -> list[Trace]:
    if args.trace_file:
        if args.holdout or args.traces:
            ap.error("--trace-file replays one file: leave out --holdout and --traces")
        if not args.size_unit:
            ap.error(
                "--trace-file needs --size-unit: the unit of the file's sizes (B, KiB, KB, MiB, MB or a "
                "number of bytes); libCacheSim's published oracleGeneral traces are often in KiB"
            )
        try:
            unit = size_unit(args.size_unit)
        except ValueError as exc:
            ap.error(str(exc))
        path = Path(args.trace_file)
        if not path.is_file():
            ap.error(f"--trace-file {path}: no such file")
        try:
            if ".csv" in path.suffixes:
                cols = [int(c) for c in args.csv_cols.split(",")]
                return [
                    load_csv(
                        path,
                        time_col=cols[0],
                        id_col=cols[1],
                        size_col=cols[2],
                        limit=args.requests,
                        unit=unit,
                    )
                ]
            return [load_oracle_general(path, unit=unit, limit=args.requests)]
        except TraceFormatError as exc:
            ap.error(str(exc))
    wanted = set(args.traces.split(",")) if args.traces else None
    grid = holdout_traces(args.requests) if args.holdout else grid_traces(args.requests)
    if wanted is not None and (unknown := wanted - {t.name for t in grid}):
        ap.error(
            f"--traces: unknown {', '.join(sorted(unknown))}; the grid has {', '.join(t.name for t in grid)}"
        )
    return [t for t in grid if wanted is None or t.name in wanted]


def _liquid_job(
    job: tuple[Trace, float, int, int, str | None, dict[str, Any] | None],
) -> tuple[str, float, int, dict[str, Any], dict[str, float]]:
    trace, fraction, hot_bytes, cycle, policy, settings = job
    prices = costs.load_prices()
    res = replay(
        trace,
        hot_bytes=hot_bytes,
        cycle=cycle,
        prices=prices,
        policy=Path(policy) if policy else None,
        settings=settings,
    )
    assert res.ledger is not None
    return trace.name, fraction, cycle, res.to_json(), res.ledger.breakdown()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.placement", description=__doc__)
    ap.add_argument("--requests", type=int, default=1_000_000, help="requests per trace (default 1M)")
    ap.add_argument("--traces", default="", help="comma-separated subset of the grid's trace names")
    ap.add_argument(
        "--holdout",
        action="store_true",
        help="the held-out traces instead of the grid (written as placement-holdout.{md,json})",
    )
    ap.add_argument("--budgets", default="0.01,0.05,0.1", help="hot budgets, fractions of working-set bytes")
    ap.add_argument("--cycles", default="1000", help="requests between planning cycles (comma-separated)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel Liquid replays")
    ap.add_argument(
        "--trace-file",
        default="",
        help="replay a libCacheSim oracleGeneral (.bin, .bin.zst) or CSV (.csv) trace",
    )
    ap.add_argument(
        "--size-unit", default="", help="unit of the trace file's sizes: B, KiB, KB, MiB, MB or bytes"
    )
    ap.add_argument("--csv-cols", default="0,1,2", help="CSV time,id,size columns (0-based)")
    ap.add_argument(
        "--policy",
        default="",
        help=f"Liquid's policy file (default: {POLICY.name}; the workflow trace's own)",
    )
    ap.add_argument(
        "--settings",
        default="",
        help="Liquid settings as JSON, added to each trace kind's own, "
        'e.g. \'{"planner": {"read_clock": true}}\'',
    )
    ap.add_argument(
        "--out",
        default="",
        help=f"results directory (default: {RESULTS} for the full grid; other runs print only unless given)",
    )
    args = ap.parse_args(argv)
    started = time.perf_counter()
    budgets = [float(b) for b in args.budgets.split(",")]
    cycles = [int(c) for c in args.cycles.split(",")]
    prices = costs.load_prices()
    policy = args.policy or None
    if policy is not None and not Path(policy).is_file():
        ap.error(f"--policy {policy}: no such file")
    try:
        settings = json.loads(args.settings) if args.settings else None
    except json.JSONDecodeError as exc:
        ap.error(f"--settings is not JSON: {exc}")
    full = not (args.trace_file or args.traces or policy or settings) and args.requests == 1_000_000
    stem = "placement-holdout" if args.holdout else "placement"
    out_dir = Path(args.out) if args.out else (RESULTS if full else None)
    traces = _traces(args, ap)
    out: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "settings": {
            "requests": args.requests,
            "budgets": budgets,
            "cycles": cycles,
            "holdout": args.holdout,
        },
        "traces": {},
    }
    jobs = []
    with tempfile.TemporaryDirectory() as tmp:
        for trace in traces:
            ws = trace.working_set_bytes()
            entry: dict[str, Any] = {
                "description": trace.description,
                "requests": len(trace),
                "objects": trace.objects(),
                "working_set_bytes": ws,
                "duration_days": round(trace.duration() / 86400, 2),
                "policy": Path(policy).name if policy else POLICY_FOR.get(trace.kind, POLICY).name,
                "settings": settings_of(trace.kind, settings),
                "hit_ratios": {},
            }
            path = oracle_file(trace, Path(tmp))
            largest = int(trace.size.max())
            for fraction in budgets:
                peers = {name: run_peer(name, path, int(ws * fraction), largest) for name in ONLINE + OFFLINE}
                entry["hit_ratios"][str(fraction)] = peers
                print(f"{trace.name} {fraction:.0%}: peers done", flush=True)
            months = trace.duration() / costs.MONTH
            entry["cost_per_month"] = {
                "all-warm": costs.simple(trace, "warm", prices) / months,
                "all-cold": costs.simple(trace, "cold", prices) / months,
                "intelligent-tiering": costs.intelligent_tiering(trace) / months,
                "offline-bound": costs.offline_bound(trace, prices) / months,
            }
            entry["creates"] = {
                "cold": costs.creates(trace, prices["cold"].per_write),
                "intelligent-tiering": costs.creates(trace, costs.IT_PUT),
            }
            entry["hot_memory_per_month"] = {
                str(f): costs.hot_cost(int(ws * f), costs.MONTH, prices) for f in budgets
            }
            out["traces"][trace.name] = entry
            jobs += [(trace, f, int(ws * f), c, policy, settings) for f in budgets for c in cycles]
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for name, fraction, cycle, res, ledger in pool.map(_liquid_job, jobs):
                entry = out["traces"][name]
                entry["hit_ratios"][str(fraction)][f"Liquid@{cycle}"] = res
                months = entry["duration_days"] * 86400 / costs.MONTH
                entry.setdefault("liquid_cost", {})[f"{fraction}@{cycle}"] = {
                    k: v / months for k, v in ledger.items()
                }
                print(
                    f"{name} {fraction:.0%} cycle {cycle}: OHR {res['ohr']:.3f} BHR {res['bhr']:.3f} "
                    f"({res['seconds']:.0f}s)",
                    flush=True,
                )
    for entry in out["traces"].values():
        _judge(entry, budgets, cycles)
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(render(out))
    if out_dir is None:
        print(f"(not written: pass --out DIR to keep this run; {RESULTS} holds the full grid's results)")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(out, indent=2, allow_nan=False) + "\n")
    (out_dir / f"{stem}.md").write_text(render(out))
    print(f"written to {out_dir}/{stem}.{{md,json}}")


def _judge(entry: dict[str, Any], budgets: list[float], cycles: list[int]) -> None:
    """Liquid's cost (the first budget-cycle run; durable placement does not depend on the hot budget)
    and the goals, judged at every budget."""
    cycle = GOAL_CYCLE if GOAL_CYCLE in cycles else cycles[0]
    key = f"{budgets[0]}@{cycle}"
    c = entry["liquid_cost"][key]
    # Durable placement with every read paid at its home tier, as the other durable columns pay.
    liquid_cost = c["storage"] + c["reads"] + c["writes"] + c["early"] + c["hit_reads"]
    entry["cost_per_month"]["liquid"] = liquid_cost
    entry["liquid_total_per_month"] = {
        str(f): sum(
            entry["liquid_cost"][f"{f}@{cycle}"][k]
            for k in ("storage", "reads", "writes", "early", "hot_reads")
        )
        + entry["hot_memory_per_month"][str(f)]
        for f in budgets
    }
    goals = []
    for f in budgets:
        hr = entry["hit_ratios"][str(f)]
        best_name = max(ONLINE, key=lambda n: hr[n]["bhr"])
        liquid = hr[f"Liquid@{cycle}"]["bhr"]
        goals.append(
            {
                "budget": f,
                "liquid_bhr": liquid,
                "best_online": best_name,
                "best_online_bhr": hr[best_name]["bhr"],
                "belady_bhr": hr["Belady"]["bhr"],
                "beats_online": liquid >= hr[best_name]["bhr"],
                "vs_belady": liquid / hr["Belady"]["bhr"] if hr["Belady"]["bhr"] else None,
                # Copies written to the hot tier, each a read of the home: LRU writes one per miss.
                "liquid_fills": hr[f"Liquid@{cycle}"]["hot_admits"],
                "lru_fills": round(entry["requests"] * (1.0 - hr["LRU"]["ohr"])),
            }
        )
    c = entry["cost_per_month"]
    entry["goals"] = {
        "bhr": goals,
        "cost_vs_bound": liquid_cost / c["offline-bound"],
        "cost_below_intelligent_tiering": liquid_cost < c["intelligent-tiering"],
    }


#: A shortfall under this (in byte hit ratio) is called near in the goals' summary: a tenth of a point.
NEAR = 0.001


def _points(delta: float) -> str:
    """A difference of byte hit ratios in percentage points, signed (negative for a shortfall)."""
    return f"{delta * 100:+.2f}"


def render(out: dict[str, Any]) -> str:
    """The markdown report."""
    s = out["settings"]
    lines = [
        "# Placement quality and cost",
        "",
        f"`python -m benchmarks.placement` — {s['requests']:,} requests per trace, hot budgets "
        f"{', '.join(f'{b:.0%}' for b in s['budgets'])} of working-set bytes, Liquid planning every "
        f"{' and '.join(f'{c:,}' for c in s['cycles'])} requests; {out['seconds']:.0f} s on "
        f"{out['machine']['cpus']} CPUs. Peers from libCacheSim (KiB units). "
        "OHR/BHR = object/byte hit ratio. Liquid is the daemon's `TieringEngine` (liquid.tiering.engine): "
        "its cycle every N requests, its admission pass for reads that missed every "
        "`daemon.admit_interval` of trace time, a hit when the object is a member of its hot tier "
        "(copies count their 62-byte header against the budget), and each hot fill charged one read "
        "of the home. One policy (`policy.yaml`) and no settings for every Zipf and scan trace, "
        "whatever its density or drift; the workflow trace gets the policy and settings a workflow "
        "platform's operator would write. Each run's settings are in the JSON; the hot rank is the "
        "default's, adaptive (`planner.adaptive`), unless they say otherwise (the fixed rank's grid, "
        "`planner.adaptive: false`, is `placement-fixed.md`). The goals table at the end sums up "
        "every cell.",
        "",
    ]
    if s.get("holdout"):
        lines += [
            "**Held-out traces** (`--holdout`): made after the grid's policy, settings and planner "
            "were tuned on it, and not tuned on: other Zipf alphas, 1M requests in 4 hours to 1M in "
            "4 years, 10k and 1M objects, equal sizes, a diurnal day, a loop, sizes tied to "
            "popularity, a news feed (`benchmarks/placement/traces.py`, `holdout_traces`).",
            "",
        ]
    for name, e in out["traces"].items():
        lines += [
            f"## {name}",
            "",
            f"{e['description']}; {e['requests']:,} requests, {e['objects']:,} objects, "
            f"{e['working_set_bytes'] / 2**30:.1f} GiB working set, {e['duration_days']} days. "
            f"Liquid's policy: `benchmarks/placement/{e.get('policy', 'policy.yaml')}`"
            + (f"; settings: `{json.dumps(e['settings'])}`." if e.get("settings") else "."),
            "",
        ]
        budgets = list(e["hit_ratios"])
        head = "| policy | " + " | ".join(f"OHR {float(b):.0%} | BHR {float(b):.0%}" for b in budgets) + " |"
        lines += [head, "|---" * (1 + 2 * len(budgets)) + "|"]
        names = [n for n in e["hit_ratios"][budgets[0]] if n.startswith("Liquid")] + list(ONLINE + OFFLINE)
        for n in names:
            cells = []
            for b in budgets:
                r = e["hit_ratios"][b][n]
                cells += [
                    "n/a" if r["ohr"] is None else f"{r['ohr']:.3f}",
                    "n/a" if r["bhr"] is None else f"{r['bhr']:.3f}",
                ]
            label = f"**{n}**" if n.startswith("Liquid") else n
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if any(e["hit_ratios"][b]["BeladySize"]["ohr"] is None for b in budgets):
            lines += [
                "",
                "n/a: BeladySize is not run where one object is over half the hot budget (libCacheSim's "
                "loops forever when the one object it holds must make way for a larger one).",
            ]
        lines.append("")
    lines += [
        "## Cost ($ per month; shipped cost model)",
        "",
        "Recurring costs over the trace, scaled to a 730-hour month (`benchmarks/placement/cost.py`):",
        "",
        "* **durable columns** (liquid durable, offline bound, Intelligent-Tiering, all-cold, all-warm): "
        "storage, every read at the request and retrieval price of the tier the object is in, moves' "
        "writes, early-deletion charges. No hot tier in any of them: Liquid's reads served from hot "
        "are charged here at its home tier's price, as the others pay for theirs.",
        "* **liquid total at each budget**: what an operator pays: Liquid's durable placement where hot "
        "hits do not read the home (each costs the hot tier's request price), plus the hot tier's "
        "memory at that budget for the whole month.",
        "* **creates**: the one-off write of every object (S3 PUT; Intelligent-Tiering's PUT is the "
        "same price), the same for every strategy and not divided by the trace's months.",
        "",
    ]
    strategies = ["liquid", "offline-bound", "intelligent-tiering", "all-cold", "all-warm"]
    heads = ["liquid durable", "offline bound", "Intelligent-Tiering", "all-cold", "all-warm"]
    lines += [
        "| trace | "
        + " | ".join(heads)
        + " | liquid durable / bound | liquid total at each budget | creates (once) |",
        "|---" * (len(strategies) + 4) + "|",
    ]
    for name, e in out["traces"].items():
        c = e["cost_per_month"]
        total = ", ".join(f"{float(b):.0%}: {v:.2f}" for b, v in e.get("liquid_total_per_month", {}).items())
        lines.append(
            f"| {name} | "
            + " | ".join(f"{c[k]:.3f}" for k in strategies)
            + f" | {e['goals']['cost_vs_bound']:.2f}x | {total} | {e['creates']['cold']:.2f} |"
        )
    lines += [
        "",
        "## Goals",
        "",
        "| trace | budget | Liquid BHR | best online (BHR) | ≥ best online | vs best online, points "
        "| Liquid / Belady BHR | Liquid's hot fills | per LRU fill |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    goals = [g for e in out["traces"].values() for g in e["goals"]["bhr"]]
    for name, e in out["traces"].items():
        for g in e["goals"]["bhr"]:
            fills = "  |  |"
            if "liquid_fills" in g:
                fills = f" {g['liquid_fills']:,} | {g['liquid_fills'] / max(1, g['lru_fills']):.2f}x |"
            lines.append(
                f"| {name} | {g['budget']:.0%} | {g['liquid_bhr']:.3f} | {g['best_online']} "
                f"({g['best_online_bhr']:.3f}) | {'yes' if g['beats_online'] else 'no'} | "
                f"{_points(g['liquid_bhr'] - g['best_online_bhr'])} | {g['vs_belady']:.2f}x |{fills}"
            )
    below = [g["liquid_bhr"] - g["best_online_bhr"] for g in goals if not g["beats_online"]]
    lines += [
        "",
        f"At or above the best online peer in {len(goals) - len(below)} of {len(goals)} cells"
        + (
            f"; below it in {len(below)}, {sum(d > -NEAR for d in below)} of them by less than "
            f"{NEAR * 100:g} points (the most: {_points(min(below))})."
            if below
            else "."
        )
        + (
            " Whether any online policy does better than the best peer in those cells (16 online"
            " policies, and LRFU at its best half-life in hindsight): `placement-frontier.md`"
            " (`python -m benchmarks.placement.frontier`)."
            if below
            else ""
        ),
        "",
        "Hot fills: copies written to the hot tier, each charged a read of the home (the "
        "daemon's fill reads it); LRU writes one on every miss.",
    ]
    lines += [
        "",
        "| trace | Liquid durable cost / offline bound (goal ≤ 1.10) | below Intelligent-Tiering |",
        "|---|---|---|",
    ]
    for name, e in out["traces"].items():
        g = e["goals"]
        below = "yes" if g["cost_below_intelligent_tiering"] else "no"
        lines.append(f"| {name} | {g['cost_vs_bound']:.2f}x | {below} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
