"""CLI start-up, measured in one run beside the floor of any Typer + rich program.

    python -m benchmarks.cli_startup [--runs N]

Each command runs as a fresh process ``--runs`` times (default 7); the report gives the median
wall time and its ratio to ``python -c 'import typer, rich'`` (the floor: a CLI built on these
two libraries cannot start faster). ``liquid ls`` and ``liquid explain`` run against embedded
servers this benchmark keeps open (as ``make run`` would), so they measure the CLI, not a
PostgreSQL start; ``--help`` and ``policy validate`` need no server.

Writes ``benchmarks/results/cli_startup.json`` and ``cli_startup.md``.
Target (issue 11): ``liquid --help`` ≤ 3x the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
LIQUID = [str(Path(sys.executable).with_name("liquid"))]  # the console script pip installed
console = Console(stderr=True)


def _time(cmd: list[str], runs: int, env: dict[str, str]) -> float:
    """Median wall seconds of ``cmd`` as a new process; fails loudly if the command fails."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, timeout=120)
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    from liquid.bootstrap import open_runtime
    from liquid.config import Settings
    from liquid.policy.store import apply_policies, read_sources

    with tempfile.TemporaryDirectory(prefix="liquid-cli-bench-") as home:
        env = {**os.environ, "LIQUID_HOME": home, "LIQUID_TENANT": "bench"}
        env.pop("LIQUID_CONFIG", None)
        # Hold the embedded servers open, as a running `make run` would.
        rt = open_runtime(Settings(home=Path(home)))
        try:
            rt.service.tenancy.create_tenant("bench")
            apply_policies(
                rt.service.engine,
                read_sources([ROOT / "policies" / "demo.yaml"]),
                actor="bench",
                clock=rt.service.clock,
            )
            ref = rt.service.put("bench", "docs", "hello.txt", b"hello").ref
            commands = {
                "floor: python -c 'import typer, rich'": [sys.executable, "-c", "import typer, rich"],
                "liquid --help": [*LIQUID, "--help"],
                "liquid policy validate policies/": [*LIQUID, "policy", "validate", "policies/"],
                "liquid ls docs": [*LIQUID, "ls", "docs"],
                "liquid get REF": [*LIQUID, "get", str(ref)],
                "liquid explain REF": [*LIQUID, "explain", str(ref)],
            }
            rows: dict[str, float] = {}
            for name, cmd in commands.items():
                rows[name] = _time(cmd, args.runs, env)
                console.print(f"{name:<40} {rows[name] * 1000:8.0f} ms")
        finally:
            rt.close()
    floor = rows.pop("floor: python -c 'import typer, rich'")
    report: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "runs": args.runs,
        "floor_ms": round(floor * 1000, 1),
        "commands": {k: {"ms": round(v * 1000, 1), "ratio": round(v / floor, 2)} for k, v in rows.items()},
        "target": {"liquid --help": 3.0},
        "target_met": rows["liquid --help"] / floor <= 3.0,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli_startup.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# CLI start-up",
        "",
        f"{report['at']}, {report['machine']}; median of {args.runs} fresh processes each.",
        f"Floor (`python -c 'import typer, rich'`): {report['floor_ms']} ms.",
        "",
        "| command | ms | x floor |",
        "|---|---:|---:|",
        *(f"| `{k}` | {v['ms']:.0f} | {v['ratio']:.2f} |" for k, v in report["commands"].items()),
        "",
        f"Target `liquid --help` ≤ 3x the floor: {'met' if report['target_met'] else 'NOT met'}.",
        "`ls`, `get` and `explain` run against servers already running (they connect, not start).",
    ]
    (RESULTS / "cli_startup.md").write_text("\n".join(lines) + "\n")
    console.print(f"wrote {RESULTS / 'cli_startup.md'}")


if __name__ == "__main__":
    main()
