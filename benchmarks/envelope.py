"""Envelope encryption's cost: EnvelopeStore over S3 and files beside the same store unencrypted, one run.

Puts and whole-object gets of 64 KiB and 4 MiB objects, alternating in rounds so machine drift
hits both alike. The data key is cached after the first use, so the catalog is not on the path;
what is measured is AES-256-GCM in 64 KiB frames plus the extra header GET of a range read (not
exercised here: whole reads fetch the object once). Writes ``benchmarks/results/envelope.json``
and ``envelope.md``::

    python -m benchmarks.envelope [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.core_io import start_servers
from benchmarks.resolve import measure, stats
from liquid.catalog import db
from liquid.keyring import DataKeys, MasterKeys
from liquid.stores import open_store, read_bytes, write_bytes
from liquid.stores.base import Store
from liquid.stores.envelope import EnvelopeStore
from liquid.stores.files import FileStore

RESULTS = Path(__file__).parent / "results"
KiB, MiB = 1024, 1024 * 1024
console = Console(stderr=True)
#: Most a put or get may cost over the unencrypted store (object-store latency dominates).
TARGET = 1.15


def _pair(backend: str, label: str, raw: Store, enc: Store, n: int) -> list[dict[str, Any]]:
    """Puts and gets of one size on the plain and the envelope store, alternating in rounds."""
    size = 64 * KiB if label == "64KiB" else 4 * MiB
    data = os.urandom(size)
    write_bytes(raw, "bench/r", data)
    write_bytes(enc, "bench/e", data)
    puts = measure(
        {"raw": lambda: write_bytes(raw, "bench/r", data), "enc": lambda: write_bytes(enc, "bench/e", data)},
        n,
    )
    gets = measure({"raw": lambda: read_bytes(raw, "bench/r"), "enc": lambda: read_bytes(enc, "bench/e")}, n)
    out = []
    for op, times in (("put", puts), ("get", gets)):
        r, e = stats(times["raw"], size), stats(times["enc"], size)
        ratio = e["p50_ms"] / r["p50_ms"]
        target = TARGET if backend == "s3" else None
        out.append({
            "backend": backend, "size": label, "op": op, "n": len(times["raw"]), "raw": r, "envelope": e,
            "p50_ratio": ratio, "target": target, "met": None if target is None else ratio <= target,
        })  # fmt: skip
        console.print(f"{backend} {label} {op}: {ratio:.2f}x")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the operations (smoke run)")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    counts = {"64KiB": max(int(400 * scale), 8), "4MiB": max(int(40 * scale), 4)}
    workdir = Path(tempfile.mkdtemp(prefix="liquid-bench-", dir="/tmp"))
    urls, started = start_servers(workdir)
    rows: list[dict[str, Any]] = []
    try:
        engine = db.make_engine(urls["pg"])
        db.upgrade(engine)
        keys = DataKeys(engine, MasterKeys({"bench": os.urandom(32)}))
        import boto3

        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client(
            "s3",
            endpoint_url=urls["s3"],
            region_name="us-east-1",
            aws_access_key_id=urls["access"],
            aws_secret_access_key=urls["secret"],
        ).create_bucket(Bucket=bucket)
        s3_url = (
            f"s3://{bucket}/p?endpoint={urls['s3']}&region=us-east-1"
            f"&access_key={urls['access']}&secret_key={urls['secret']}"
        )
        backends: dict[str, tuple[Store, Store]] = {
            "s3": (open_store(s3_url), EnvelopeStore(open_store(s3_url), keys)),
            "files": (
                FileStore(workdir / "raw", fsync=False),
                EnvelopeStore(FileStore(workdir / "enc", fsync=False), keys),
            ),
        }
        for backend, (raw, enc) in backends.items():
            for label, n in counts.items():
                rows += _pair(backend, label, raw, enc, n)
        engine.dispose()
    finally:
        for srv in reversed(started):
            srv.stop()
    meta = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "command": "python -m benchmarks.envelope" + (" --quick" if args.quick else ""),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "envelope.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        "# Envelope encryption vs the same store unencrypted, same run",
        "",
        f"{meta['at']} · {meta['machine']} · SeaweedFS S3 (loopback), local files (no fsync)"
        f" · `{meta['command']}`",
        "",
        "| backend | size | op | n | plain p50 ms | envelope p50 ms | ratio | plain MB/s | envelope MB/s"
        " | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = f"≤{r['target']}x" if r["target"] else ""
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(
            f"| {r['backend']} | {r['size']} | {r['op']} | {r['n']} | {r['raw']['p50_ms']:.3f} | "
            f"{r['envelope']['p50_ms']:.3f} | {r['p50_ratio']:.2f}x | {r['raw']['mb_per_s']:.1f} | "
            f"{r['envelope']['mb_per_s']:.1f} | {target} | {met} |"
        )
    lines += [
        "",
        "Files show the cipher's own cost (no network); S3 shows it beside a real store's latency.",
    ]
    (RESULTS / "envelope.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
