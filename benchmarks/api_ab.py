"""The API's everyday routes at two commits, in one run: each request sent to both, alternated.

    python -m benchmarks.api_ab --before REV [--after REV] [--n 1000] [--out FILE.md]

Checks ``--before`` (and ``--after``, default: this working tree) out into temporary git
worktrees, starts one embedded PostgreSQL and Valkey, migrates them once, and serves ``liquid
api`` from each tree in its own uvicorn process on loopback. Then, ``--n`` times, it sends each
route to both servers through the standard library's ``http.client`` (one keep-alive connection
each), the order of the two flipped every round so neither always goes first: a 1 KiB ``PUT``,
``GET`` and ``HEAD`` of a key's latest version, ``GET`` of the ref (the lean read route; a
warm value), a 20 KiB ``PUT`` and ``GET`` of its ref (warm, not inline), a 5-item listing, the
5 latest events and ``/healthz``. Prints the p50 table (and writes it to ``--out``).

A before/after record for changes to the request path (``benchmarks/results/request_path.md``):
the same servers, machine and moment for both sides, so a busy machine moves both alike. It does
not compare with a raw backend: ``benchmarks.resolve`` and ``benchmarks.core_io`` do that.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from rich.console import Console
from rich.progress import Progress

ROOT = Path(__file__).resolve().parent.parent
ROUTES = (
    "PUT 1 KiB",
    "GET latest",
    "HEAD latest",
    "GET ref (lean route, warm value)",
    "PUT 20 KiB",
    "GET ref 20 KiB (lean route, warm, not inline)",
    "list 5",
    "events 5",
    "GET /healthz",
)
WARMUP = 50
console = Console(stderr=True)


@contextmanager
def worktree(rev: str | None, workdir: Path) -> Iterator[Path]:
    """A checkout of ``rev`` (None: this tree as it is), removed afterwards."""
    if rev is None:
        yield ROOT
        return
    path = workdir / f"tree-{uuid.uuid4().hex[:6]}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(path), rev], check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)


def serve(tree: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``liquid api`` from ``tree``'s sources on a free loopback port."""
    from benchmarks.resolve import wait_up
    from liquid.embedded import free_port

    port = free_port()
    command = [sys.executable, "-m", "liquid.cli", "api", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--log-level", "warning"],
        cwd=tree,
        env={**os.environ, **env, "PYTHONPATH": str(tree)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return proc, wait_up(proc, f"http://127.0.0.1:{port}", "/healthz", log)


def send(conn: http.client.HTTPConnection, route: str, tenant: str, key: str, auth: dict[str, str]) -> float:
    """One request of ``route`` about ``key``; its seconds, the answer read whole."""
    data = b"x" * 1024
    started = time.perf_counter()
    if route == "PUT 1 KiB":
        conn.request("PUT", f"/v1/objects/ab/{key}", body=data, headers=auth)
    elif route == "GET latest":
        conn.request("GET", f"/v1/objects/ab/{key}", headers=auth)
    elif route == "HEAD latest":
        conn.request("HEAD", f"/v1/objects/ab/{key}", headers=auth)
    elif route == "PUT 20 KiB":
        conn.request("PUT", f"/v1/objects/ab/{key}-20k", body=os.urandom(20 * 1024), headers=auth)
    elif route.startswith("GET ref 20 KiB"):
        conn.request("GET", "/v1/refs/" + quote(f"liquid://{tenant}/ab/{key}-20k@1", safe=""), headers=auth)
    elif route.startswith("GET ref"):
        conn.request("GET", "/v1/refs/" + quote(f"liquid://{tenant}/ab/{key}@1", safe=""), headers=auth)
    elif route == "list 5":
        conn.request("GET", "/v1/objects/ab?limit=5", headers=auth)
    elif route == "events 5":
        conn.request("GET", "/v1/events?limit=5", headers=auth)
    else:
        conn.request("GET", "/healthz")
    response = conn.getresponse()
    response.read()
    took = time.perf_counter() - started
    if response.status >= 300:
        raise RuntimeError(f"{route} {key}: HTTP {response.status}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision of the first side")
    parser.add_argument("--after", default=None, help="git revision of the second side (default: this tree)")
    parser.add_argument("--n", type=int, default=1000, help="rounds (the first 50 warm up, not counted)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()

    from benchmarks.core_io import start_catalog_and_cache
    from liquid.bootstrap import open_runtime
    from liquid.config import Settings

    workdir = Path(tempfile.mkdtemp(prefix="liquid-bench-ab-"))
    pg, redis_url, started = start_catalog_and_cache(workdir)
    stores = {"hot": redis_url, "warm": pg, "cold": f"file://{workdir / 'cold'}"}
    rt = open_runtime(Settings(catalog_url=pg, stores=stores))  # migrates the catalog once
    tenant = f"ab-{uuid.uuid4().hex[:6]}"
    rt.service.tenancy.create_tenant(tenant)
    auth = {"Authorization": f"Bearer {rt.service.tenancy.create_api_key(tenant)}"}
    env = {"LIQUID_CATALOG_URL": pg, "LIQUID_STORES": json.dumps(stores), "LIQUID_SHM__ENABLED": "false"}
    names = ("before", "after")
    procs: list[subprocess.Popen[bytes]] = []
    times: dict[tuple[str, str], list[float]] = {(n, r): [] for n in names for r in ROUTES}
    try:
        with worktree(args.before, workdir) as before, worktree(args.after, workdir) as after:
            conns = {}
            for name, tree in zip(names, (before, after), strict=True):
                proc, base = serve(tree, env, workdir / f"{name}.log")
                procs.append(proc)
                conns[name] = http.client.HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]))
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("requests", total=args.n)
                for i in range(args.n):
                    for route in ROUTES:
                        for name in names if i % 2 else reversed(names):
                            took = send(conns[name], route, tenant, f"{name}-{i}", auth)
                            if i >= WARMUP:
                                times[(name, route)].append(took)
                    progress.advance(task)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
        rt.close()
        for srv in reversed(started):
            srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    load = os.getloadavg()
    lines = [
        f"`python -m benchmarks.api_ab --before {args.before}"
        + (f" --after {args.after}" if args.after else "")
        + f" --n {args.n}` · load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "",
        f"| request (http.client, p50 ms, {args.n - WARMUP} each) | before | after | after / before |",
        "|---|---|---|---|",
    ]
    for route in ROUTES:
        b = statistics.median(times[("before", route)]) * 1e3
        a = statistics.median(times[("after", route)]) * 1e3
        lines.append(f"| {route} | {b:.3f} | {a:.3f} | {a / b:.2f}x |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out is not None:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
