"""Mover throughput, warm↔cold, side by side with a raw copy of the same bytes between the same stores.

    python -m benchmarks.mover [--quick]

Starts embedded PostgreSQL, Valkey and SeaweedFS S3 on loopback (or uses
``LIQUID_TEST_POSTGRES_URL`` / ``LIQUID_TEST_REDIS_URL`` / ``LIQUID_TEST_S3_ENDPOINT``).
warm = the PostgreSQL chunk store (:class:`~liquid.stores.postgres.PostgresStore`),
cold = SeaweedFS S3 (:class:`~liquid.stores.s3.S3Store`).

For each object size, N objects are written warm, then in alternating rounds:

* **raw**: :func:`liquid.stores.base.copy` of each object's stored bytes to a fresh
  locator in the other store (read + write, nothing else) — the practical limit;
* **mover**: the daemon's mover (:meth:`liquid.tiering.mover.Mover.from_service`, the service's
  mover settings but for ``concurrency`` and a zero grace period) and
  :meth:`~liquid.tiering.mover.Mover.run_until_idle` over N queued moves, i.e. the whole
  protocol: copy, read-back verification (SHA-256), the catalog switch transaction with its
  events, and the source delete. 64 KiB objects take the batched path (``small_move_size``),
  16 MiB ones the per-row path.

Both run with 1 thread and with 4 (mover ``concurrency``, raw through a thread pool),
warm→cold then cold→warm. Writes ``benchmarks/results/mover.json`` and ``mover.md``;
ratio = mover MB/s / raw MB/s at the same thread count (target ≥ 0.7x for both sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import text

from benchmarks.core_io import start_servers
from liquid.bootstrap import open_runtime
from liquid.config import Settings
from liquid.stores.base import copy
from liquid.tiering.journal import enqueue_move
from liquid.tiering.mover import Mover

RESULTS = Path(__file__).parent / "results"
KiB, MiB = 1024, 1024 * 1024
SIZES = {"64KiB": 64 * KiB, "16MiB": 16 * MiB}
TARGET = {"64KiB": 0.7, "16MiB": 0.7}
console = Console(stderr=True)


def _homes(service: Any, ids: list[int]) -> list[tuple[str, str]]:
    with service.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, home_store, locator FROM objects WHERE id = ANY(:ids) ORDER BY id"), {"ids": ids}
        ).all()
    return [(r.home_store, r.locator) for r in rows]


def raw_round(service: Any, ids: list[int], dst_name: str, threads: int) -> tuple[float, int]:
    """Copy every object's stored bytes to the other store; return (seconds, bytes). Copies are removed."""
    homes = _homes(service, ids)
    dst = service.stores[dst_name]
    targets = [f"raw/{uuid.uuid4().hex}" for _ in homes]

    def one(i: int) -> int:
        src_name, loc = homes[i]
        n, _ = copy(service.stores[src_name], dst, loc, dst_locator=targets[i])
        return n

    t0 = time.perf_counter()
    if threads == 1:
        total = sum(one(i) for i in range(len(homes)))
    else:
        with ThreadPoolExecutor(threads) as pool:
            total = sum(pool.map(one, range(len(homes))))
    seconds = time.perf_counter() - t0
    for loc in targets:
        dst.delete(loc)
    return seconds, total


def mover_round(service: Any, ids: list[int], dst_name: str, threads: int) -> tuple[float, int]:
    """Queue moves of every object to ``dst_name`` and time the mover until they are all done."""
    for oid in ids:
        assert enqueue_move(service.engine, oid, dst_name, dst_name, reason="benchmark") is not None
    # The daemon's mover with the service's settings, but for the thread count and no grace period.
    settings = service.settings.mover.model_copy(update={"concurrency": threads, "grace_period": 0})
    mover = Mover.from_service(service, worker_id=f"bench-{threads}", settings=settings)
    t0 = time.perf_counter()
    report = mover.run_until_idle()
    seconds = time.perf_counter() - t0
    assert report.total("moved") == len(ids), report
    assert all(store == dst_name for store, _ in _homes(service, ids))
    return seconds, report.bytes_moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer objects (smoke run)")
    args = parser.parse_args()
    counts = {"64KiB": 40 if args.quick else 300, "16MiB": 3 if args.quick else 12}

    import boto3

    workdir = Path(tempfile.mkdtemp(prefix="liquid-bench-", dir="/tmp"))
    urls, started = start_servers(workdir)
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = urls["access"], urls["secret"]
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=urls["s3"], region_name="us-east-1").create_bucket(Bucket=bucket)
    stores = {
        "hot": urls["redis"],
        "warm": urls["pg"],
        "cold": f"s3://{bucket}/liquid?endpoint={urls['s3']}&region=us-east-1",
    }
    # Everything born in the warm chunk store (no catalog-row values), no hot cache.
    rt = open_runtime(
        Settings(
            catalog_url=urls["pg"],
            stores=stores,
            warm_max_object_size=64 * MiB,
            warm_row_max_size=0,
            hot={"enabled": False},
        )
    )
    service = rt.service
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    service.tenancy.create_tenant(tenant)

    results: list[dict[str, Any]] = []
    for size_name, nbytes in SIZES.items():
        n = counts[size_name]
        ids = []
        for i in range(n):
            info = service.put(tenant, "bench", f"{size_name}-{i}", os.urandom(nbytes))
            with service.engine.connect() as conn:
                ids.append(
                    int(
                        conn.execute(
                            text("SELECT id FROM objects WHERE tenant_id = :t AND key = :k AND version = :v"),
                            {"t": tenant, "k": info.ref.key, "v": info.ref.version},
                        ).scalar_one()
                    )
                )
        for threads in (1, 4):
            for direction, dst in (("warm→cold", "cold"), ("cold→warm", "warm")):
                console.print(f"{size_name} {direction} threads={threads} n={n}")
                raw_s, raw_b = raw_round(service, ids, dst, threads)
                mv_s, mv_b = mover_round(service, ids, dst, threads)
                row = {
                    "size": size_name,
                    "direction": direction,
                    "threads": threads,
                    "n": n,
                    "raw": {"seconds": raw_s, "objects_per_s": n / raw_s, "mb_per_s": raw_b / raw_s / 1e6},
                    "mover": {"seconds": mv_s, "objects_per_s": n / mv_s, "mb_per_s": mv_b / mv_s / 1e6},
                }
                row["ratio"] = row["mover"]["mb_per_s"] / row["raw"]["mb_per_s"]
                target = TARGET.get(size_name)
                row["target_ratio"] = target
                row["target_met"] = None if target is None else row["ratio"] >= target
                results.append(row)

    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "servers": "embedded PostgreSQL 18 (unix socket) chunk store, SeaweedFS S3 (loopback)",
        "quick": args.quick,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mover.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    (RESULTS / "mover.md").write_text(render(meta, results))
    console.print(render(meta, results))
    rt.close()
    for srv in reversed(started):
        srv.stop()


def render(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Mover throughput vs raw copy between the same stores, same run",
        "",
        f"{meta['when']} · {meta['machine']} · {meta['servers']}",
        "",
        "Mover = `Mover.run_until_idle` as the daemon runs it: copy + read-back SHA-256 verification"
        " + catalog switch + source delete (grace 0); 64 KiB objects go in batches, 16 MiB ones per row."
        " Raw = `liquid.stores.base.copy` only.",
        "",
        "The mover does one store call per object more than a raw copy: the read-back. Into the S3"
        " store that GET costs about half a PUT (botocore's client time plus the server's), which bounds"
        " small warm→cold moves near 0.7x; into PostgreSQL the read-back is cheap, and the raw copy's"
        " HEAD of an S3 source costs more than the mover's catalog work, so cold→warm passes 1x.",
        "",
        "| size | direction | threads | n | mover obj/s | raw obj/s | mover MB/s | raw MB/s | ratio "
        "| target | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = f"≥{r['target_ratio']:.1f}x" if r["target_ratio"] else ""
        met = "" if r["target_met"] is None else ("yes" if r["target_met"] else "**no**")
        lines.append(
            f"| {r['size']} | {r['direction']} | {r['threads']} | {r['n']} | "
            f"{r['mover']['objects_per_s']:.1f} | "
            f"{r['raw']['objects_per_s']:.1f} | {r['mover']['mb_per_s']:.1f} | {r['raw']['mb_per_s']:.1f} | "
            f"{r['ratio']:.2f}x | {target} | {met} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
