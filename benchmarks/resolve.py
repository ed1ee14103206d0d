"""Resolve latency through the HTTP API and the in-process client, beside the framework floor and raw clients.

    python -m benchmarks.resolve [--quick] [--no-table]

In one run:

* **hot GET beside the floor** at 1 KiB, 64 KiB and 1 MiB: ``GET /v1/refs/{ref}`` to ``liquid
  api`` in its own process beside a bare Starlette endpoint doing the same Redis read
  (:mod:`benchmarks.floor`, also its own uvicorn process), the in-process client beside the core
  service, and redis-py ``GET``;
* **batch resolve** of 1, 10, 100 and 1,000 hot 1 KiB refs beside one Redis ``MGET`` and a
  pipeline of as many ``GET``s, and beside one single-ref ``GET``;
* every tier at 1 KiB and 1 MiB, as below.

Starts embedded PostgreSQL, Valkey and SeaweedFS S3 on loopback (or uses the
``LIQUID_TEST_*`` servers, as ``benchmarks.core_io`` does), serves the API with uvicorn
on a loopback port, and in one run measures for hot / warm / cold objects of 1 KiB and
1 MiB the time to resolve a ref to its bytes:

* ``http``: :class:`liquid.client.Client` → HTTP → uvicorn → FastAPI → core → tier
* ``in-process``: ``Client.embedded`` (direct calls on the service, see ``liquid.client.inprocess``)
* ``raw``: redis-py ``GET`` (hot), psycopg ``SELECT`` of a bytea (warm), boto3 ``get_object`` (cold)

and reading a 100 MB Arrow table three ways: through the ref's shared-memory hint
(``Client.get_table``), through the durable path (the same call on a ref without a hint:
HTTP from the cold store), and with ``pyarrow`` memory-mapping a local IPC file (the
practical limit). Writes ``benchmarks/results/resolve.json`` and ``resolve.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pyarrow as pa
from rich.console import Console

from benchmarks.core_io import start_servers
from benchmarks.request_profile import amedian_us, median_us
from liquid.api.server import ApiServer
from liquid.bootstrap import open_runtime
from liquid.client import Client
from liquid.config import Settings

RESULTS = Path(__file__).parent / "results"
KiB, MiB = 1024, 1024 * 1024
SIZES = {"1KiB": KiB, "1MiB": MiB}
FLOOR_SIZES = {"1KiB": KiB, "64KiB": 64 * KiB, "1MiB": MiB}
FLOOR_COUNTS = {"1KiB": 2000, "64KiB": 1000, "1MiB": 300}
BATCHES = (1, 10, 100, 1000)
BATCH_COUNTS = {1: 1000, 10: 600, 100: 300, 1000: 60}
console = Console(stderr=True)
SELECT_RAW = "SELECT data FROM bench_raw WHERE id = %s"


def stats(xs: list[float], nbytes: int) -> dict[str, float]:
    xs = sorted(xs)
    total = sum(xs)
    return {
        "p50_ms": statistics.median(xs) * 1e3,
        "p99_ms": xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1e3,
        "ops_per_s": len(xs) / total,
        "mb_per_s": len(xs) * nbytes / total / 1e6,
    }


def measure(fns: dict[str, Callable[[], object]], n: int, rounds: int = 4) -> dict[str, list[float]]:
    """Time each function ``n`` times, alternating in rounds so machine drift hits all alike."""
    out: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up: connections, caches, first-import costs
        for _ in range(3):
            fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(max(n // rounds, 1)):
                t0 = time.perf_counter()
                fn()
                out[name].append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the operations (smoke run)")
    parser.add_argument("--no-table", action="store_true", help="skip the 100 MB Arrow table")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    counts = {"1KiB": max(int(2000 * scale), 40), "1MiB": max(int(300 * scale), 20)}

    import boto3
    import psycopg
    import redis

    workdir = Path(tempfile.mkdtemp(prefix="liquid-bench-", dir="/tmp"))
    urls, started = start_servers(workdir)
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = urls["access"], urls["secret"]
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=urls["s3"], region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    stores = {"hot": urls["redis"], "warm": urls["pg"], "cold": f"s3://{bucket}/liquid?endpoint={urls['s3']}"}
    shm_dir = (
        workdir / "shm"
        if not Path("/dev/shm").is_dir()
        else Path("/dev/shm") / f"liquid-bench-{uuid.uuid4().hex[:6]}"
    )

    def runtime(**overrides: Any) -> Any:
        return open_runtime(
            Settings(
                catalog_url=urls["pg"],
                stores=stores,
                node_id="bench-node",
                shm={"dir": shm_dir, "max_bytes": 1024 * MiB},
                **overrides,
            )
        )

    rts = {
        "hot": runtime(warm_max_object_size=64 * MiB, hot={"max_object_size": 8 * MiB}),
        "warm": runtime(warm_max_object_size=64 * MiB, hot={"enabled": False}),
        "cold": runtime(inline_threshold=0, warm_max_object_size=0, hot={"enabled": False}),
    }
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    rts["warm"].service.tenancy.create_tenant(tenant)
    key = rts["warm"].service.tenancy.create_api_key(tenant)
    servers = {tier: ApiServer(rt.service) for tier, rt in rts.items()}
    base = {tier: srv.start() for tier, srv in servers.items()}
    http = {tier: Client(base[tier], api_key=key, node_id="bench-node", shm_dirs=[shm_dir]) for tier in rts}
    inproc = {tier: Client.embedded(rt.service, tenant, shm_dirs=[shm_dir]) for tier, rt in rts.items()}

    # The API and the framework floor each in a process of their own, served alike by uvicorn, as
    # runtime services meet them: no GIL shared with the client.
    proc, proc_base = spawn_api(
        workdir,
        {
            "LIQUID_CATALOG_URL": urls["pg"],
            "LIQUID_STORES": json.dumps(stores),
            "LIQUID_WARM_MAX_OBJECT_SIZE": str(64 * MiB),
            "LIQUID_HOT__MAX_OBJECT_SIZE": str(8 * MiB),
            "LIQUID_NODE_ID": "bench-node",
            "LIQUID_SHM__ENABLED": "false",
        },
    )
    floor_proc, floor_base = spawn_floor(workdir, urls["redis"])
    http_proc = Client(proc_base, api_key=key, node_id="other-node")
    raw_http = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60)

    rclient = redis.Redis.from_url(urls["redis"])
    pconn = psycopg.connect(urls["pg"].replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    pconn.execute("CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, data bytea NOT NULL)")

    hot_svc = rts["hot"].service

    def hot_ref(namespace: str, name: str, payload: bytes) -> Any:
        ref = hot_svc.put(tenant, namespace, name, payload).ref
        row = hot_svc.fast.find(ref.tenant, ref.namespace, ref.key, ref.version)
        # The daemon's fill: reads never write the hot tier themselves.
        assert row is not None and hot_svc.fill_hot(ref, row.id)
        assert hot_svc.open(tenant, ref).source == "hot"
        return ref

    # ---- hot GET beside the framework floor, the raw client and the core
    floor_rows: list[dict[str, Any]] = []
    for size_name, nbytes in FLOOR_SIZES.items():
        n = max(int(FLOOR_COUNTS[size_name] * scale), 30)
        console.print(f"hot GET {size_name}: {n} per path")
        payload = os.urandom(nbytes)
        ref = hot_ref("floor", f"obj-{size_name}", payload)
        rclient.set(f"floor:{size_name}", payload)
        liquid_url = proc_base + "/v1/refs/" + quote(ref.uri, safe="")
        floor_url = f"{floor_base}/floor/{size_name}"
        assert raw_http.get(liquid_url).content == payload == raw_http.get(floor_url).content
        assert http_proc.get(ref) == payload and inproc["hot"].get(ref) == payload
        paths: dict[str, Callable[[], object]] = {
            "liquid_http": lambda u=liquid_url: raw_http.get(u).content,
            "floor_http": lambda u=floor_url: raw_http.get(u).content,
            "client_http": lambda r=ref: http_proc.get(r),
            "in_process": lambda r=ref: inproc["hot"].get(r),
            "core": lambda r=ref: hot_svc.get(tenant, r),
            "redis": lambda k=f"floor:{size_name}": rclient.get(k),
        }
        times = measure(paths, n)
        row = {"size": size_name, "n": len(times["core"])}
        for path, xs in times.items():
            row[path] = stats(xs, nbytes)
        row["http_vs_floor"] = row["liquid_http"]["p50_ms"] / row["floor_http"]["p50_ms"]
        row["inproc_vs_core"] = row["in_process"]["p50_ms"] / row["core"]["p50_ms"]
        row["http_vs_redis"] = row["liquid_http"]["p50_ms"] / row["redis"]["p50_ms"]
        floor_rows.append(row)

    # ---- batch resolve of N hot 1 KiB refs beside one Redis MGET / pipeline of N keys
    batch_rows: list[dict[str, Any]] = []
    payload = os.urandom(KiB)
    most = max(BATCHES)
    refs = [hot_ref("batch", f"obj-{i}", payload) for i in range(most)]
    keys = [f"batch:{i}" for i in range(most)]
    rclient.mset(dict.fromkeys(keys, payload))
    single_url = proc_base + "/v1/refs/" + quote(refs[0].uri, safe="")
    for count in BATCHES:
        n = max(int(BATCH_COUNTS[count] * scale), 10)
        console.print(f"batch resolve of {count}: {n} per path")
        body = {"refs": [r.uri for r in refs[:count]], "inline": True}
        answer_bytes = raw_http.post(proc_base + "/v1/refs:resolve", json=body).content
        answer = json.loads(answer_bytes)
        assert all(r["ok"] and r["ref"].get("inline") for r in answer["results"]), answer["results"][0]
        # The floor answers the very same bytes (one Redis GET of them), the request read alike.
        rclient.set(f"floor:answer-{count}", answer_bytes)
        floor_answer = f"{floor_base}/floor/answer/answer-{count}"
        assert raw_http.post(floor_answer, json=body).content == answer_bytes
        some = keys[:count]

        def pipelined(ks: list[str] = some) -> object:
            pipe = rclient.pipeline(transaction=False)
            for k in ks:
                pipe.get(k)
            return pipe.execute()

        paths = {
            "liquid_batch": lambda b=body: raw_http.post(proc_base + "/v1/refs:resolve", json=b).content,
            "liquid_single_get": lambda: raw_http.get(single_url).content,
            "floor_post": lambda b=body, u=floor_answer: raw_http.post(u, json=b).content,
            "redis_mget": lambda ks=some: rclient.mget(ks),
            "redis_pipeline": pipelined,
        }
        times = measure(paths, n)
        row = {"refs": count, "n": len(times["liquid_batch"]), "answer_bytes": len(answer_bytes)}
        for path, xs in times.items():
            row[path] = stats(xs, KiB * count)
        row["batch_vs_single_get"] = row["liquid_batch"]["p50_ms"] / row["liquid_single_get"]["p50_ms"]
        row["batch_vs_floor"] = row["liquid_batch"]["p50_ms"] / row["floor_post"]["p50_ms"]
        row["batch_vs_mget"] = row["liquid_batch"]["p50_ms"] / row["redis_mget"]["p50_ms"]
        batch_rows.append(row)
    one = next(r for r in batch_rows if r["refs"] == 1)["liquid_batch"]["p50_ms"]
    for row in batch_rows:
        row["batch_vs_batch_of_1"] = row["liquid_batch"]["p50_ms"] / one
    console.print("batch resolve, stage by stage")
    breakdown = {
        count: batch_breakdown(hot_svc, tenant, refs[:count], max(int(n * scale), 10))
        for count, n in ((100, 300), (1000, 40))
    }

    # ---- every tier at 1 KiB and 1 MiB through the client (HTTP and in-process) beside its raw client
    rows: list[dict[str, Any]] = []
    for size_name, nbytes in SIZES.items():
        payload = os.urandom(nbytes)
        n = counts[size_name]
        for tier in ("hot", "warm", "cold"):
            console.print(f"{tier} {size_name}: {n} resolves per path")
            ref = http[tier].put(tier, f"obj-{size_name}", payload).ref
            assert http[tier].get(ref) == payload and inproc[tier].get(ref) == payload
            svc = rts[tier].service
            if tier == "hot":  # the daemon's fill: reads never write the hot tier themselves
                assert svc.fill_hot(ref, svc.fast.find(ref.tenant, ref.namespace, ref.key, ref.version).id)
            source = svc.open(tenant, ref).source
            assert source == tier, f"{tier} object served from {source}"
            if tier == "hot":
                rclient.set(f"raw:{size_name}", payload)
                raw: Callable[[], object] = lambda k=f"raw:{size_name}": rclient.get(k)  # noqa: E731
            elif tier == "warm":
                row_id = pconn.execute(
                    "INSERT INTO bench_raw (data) VALUES (%s) RETURNING id", (payload,)
                ).fetchone()
                assert row_id is not None
                raw = lambda i=row_id[0]: pconn.execute(SELECT_RAW, (i,)).fetchone()  # noqa: E731
            else:
                s3.put_object(Bucket=bucket, Key=f"raw/{size_name}", Body=payload)
                raw = lambda k=f"raw/{size_name}": s3.get_object(Bucket=bucket, Key=k)["Body"].read()  # noqa: E731
            tier_paths: dict[str, Callable[[], object]] = {
                "http": lambda c=http[tier], r=ref: c.get(r),
                "in-process": lambda c=inproc[tier], r=ref: c.get(r),
                "raw": raw,
            }
            times = measure(tier_paths, n)
            row = {"tier": tier, "size": size_name, "n": len(times["raw"])}
            for path, xs in times.items():
                row[path] = stats(xs, nbytes)
            row["http_ratio_p50"] = row["http"]["p50_ms"] / row["raw"]["p50_ms"]
            row["inproc_ratio_p50"] = row["in-process"]["p50_ms"] / row["raw"]["p50_ms"]
            rows.append(row)

    table_result = None if args.no_table else bench_table(http["cold"], workdir, scale)

    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "servers": "embedded PostgreSQL 18 (unix socket), Valkey 9 and SeaweedFS S3 (loopback); "
        "uvicorn on loopback (httptools + uvloop when installed)",
        "quick": args.quick,
    }
    load = os.getloadavg()
    meta["load_average"] = f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    targets = check_targets(floor_rows, batch_rows)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "resolve.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "targets": targets,
                "hot_get": floor_rows,
                "batch": batch_rows,
                "batch_breakdown_us": breakdown,
                "resolve": rows,
                "arrow_100mb": table_result,
            },
            indent=2,
        )
        + "\n"
    )
    md = render(meta, targets, floor_rows, batch_rows, breakdown, rows, table_result)
    (RESULTS / "resolve.md").write_text(md)
    print(md)

    for c in (*http.values(), *inproc.values(), http_proc):
        c.close()
    raw_http.close()
    for p in (proc, floor_proc):
        p.terminate()
        p.wait(timeout=30)
    for srv in servers.values():
        srv.stop()
    for rt in rts.values():
        rt.close()
    rclient.close()
    pconn.close()
    for srv in reversed(started):
        srv.stop()
    for p in shm_dir.glob("*"):
        p.unlink()
    shm_dir.rmdir()
    shutil.rmtree(workdir, ignore_errors=True)  # the servers' data: the disk is shared


def check_targets(floor_rows: list[dict[str, Any]], batch_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each with its measured ratio and whether it is met."""
    out: list[dict[str, Any]] = []
    for r in floor_rows:
        out.append(
            {
                "target": f"HTTP hot GET {r['size']} p50 ≤ 1.5x the framework floor",
                "ratio": r["http_vs_floor"],
                "limit": 1.5,
            }
        )
    for r in floor_rows:
        out.append(
            {
                "target": f"in-process client hot GET {r['size']} p50 ≤ 1.2x the core service",
                "ratio": r["inproc_vs_core"],
                "limit": 1.2,
            }
        )
    for r in batch_rows:
        if r["refs"] == 100:
            out.append(
                {
                    "target": "batch resolve of 100 hot 1 KiB refs p50 ≤ 3x one single-ref GET",
                    "ratio": r["batch_vs_single_get"],
                    "limit": 3.0,
                }
            )
    for t in out:
        t["met"] = t["ratio"] <= t["limit"]
    return out


def spawn_floor(workdir: Path, redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """The bare Starlette endpoint (:mod:`benchmarks.floor`) under uvicorn, as ``liquid api`` runs."""
    from liquid.embedded import free_port

    port = free_port()
    log = (workdir / "floor.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.floor:app_from_env",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env={**os.environ, "LIQUID_FLOOR_REDIS_URL": redis_url},
        cwd=Path(__file__).parent.parent,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, wait_up(proc, f"http://127.0.0.1:{port}", "/floor/-", workdir / "floor.log", ok=(404,))


def wait_up(
    proc: subprocess.Popen[bytes], base: str, path: str, log: Path, ok: tuple[int, ...] = (200,)
) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}{path}", timeout=1).status_code in ok:
                return base
        except httpx.HTTPError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"{base} did not start; see {log}")


def spawn_api(workdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """``liquid api`` in a subprocess on a free loopback port; returns it and its base URL."""
    from liquid.embedded import free_port

    port = free_port()
    log = (workdir / "api.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "liquid.cli",
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, wait_up(proc, f"http://127.0.0.1:{port}", "/healthz", workdir / "api.log")


def bench_table(client: Client, workdir: Path, scale: float) -> dict[str, Any]:
    """A 100 MB Arrow table: shm hint vs durable path vs memory-mapping a local IPC file."""
    rows = 100 * 1000 * 1000 // 16
    table = pa.table({"id": pa.array(range(rows), pa.int64()), "value": pa.array(range(rows), pa.float64())})
    ref = client.put_table("tables", "big", table)
    assert ref.ipc is not None, "no shared-memory hint on the ref"
    durable_ref = dataclasses.replace(ref, ipc=None)
    local = workdir / "local.arrow"
    with pa.OSFile(str(local), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)

    def mmap_read() -> pa.Table:
        return pa.ipc.open_file(pa.memory_map(str(local))).read_all()

    t0 = time.perf_counter()
    first = client.get_table(ref)  # verifies the SHA-256 of the mapped file once
    first_ms = (time.perf_counter() - t0) * 1e3
    assert first.equals(table) and client.stats.shm == 1
    n_fast = max(int(200 * scale), 20)
    n_slow = max(int(10 * scale), 3)
    fast = measure({"shm": lambda: client.get_table(ref), "mmap": mmap_read}, n_fast)
    slow = measure({"durable": lambda: client.get_table(durable_ref)}, n_slow, rounds=1)
    assert client.get_table(durable_ref).equals(table)
    nbytes = ref.size
    out = {
        "bytes": nbytes,
        "shm": stats(fast["shm"], nbytes),
        "mmap": stats(fast["mmap"], nbytes),
        "durable": stats(slow["durable"], nbytes),
        "shm_first_read_ms": first_ms,
    }
    out["shm_vs_mmap_p50"] = out["shm"]["p50_ms"] / out["mmap"]["p50_ms"]
    out["durable_vs_shm_p50"] = out["durable"]["p50_ms"] / out["shm"]["p50_ms"]
    out["targets"] = {
        "shm within 1.5x of mmap": out["shm_vs_mmap_p50"] <= 1.5,
        "shm at least 10x faster than durable": out["durable_vs_shm_p50"] >= 10,
    }
    return out


def batch_breakdown(svc: Any, tenant: str, refs: list[Any], n: int) -> dict[str, float]:
    """Where the time of a batch resolve of ``refs`` (known hot versions) goes: each stage of the
    API's on-loop path timed on its own in this process (median µs), beside the whole of it.

    The stages are the calls :func:`liquid.api.routes.aresolve_batch` makes, on the app's own
    asyncio Redis client inside its lifespan (as ``liquid api`` serves), and the thread path's.
    """
    import asyncio
    import base64

    import anyio.to_thread
    import orjson

    from liquid.api import create_app
    from liquid.api.models import ResolveRequest
    from liquid.api.routes import InlineBudget, _BatchAnswer, aresolve_batch, resolve_batch
    from liquid.hotcache import hot_key

    app = create_app(svc)
    ctx = app.state.liquid
    api = ctx.settings.api
    uris = [r.uri for r in refs]
    body = {"refs": uris, "inline": True}
    raw_body = json.dumps(body).encode()
    keys = [hot_key(r) for r in refs]
    sha = [svc.known(r).sha256 for r in refs]
    hot = svc.hot
    assert hot is not None and svc.access is not None and all(s is not None for s in sha)

    def budget() -> InlineBudget:
        return InlineBudget(api.batch_inline_total)

    def med(fn: Callable[[], object]) -> float:
        return median_us(fn, n)

    async def amed(fn: Callable[[], Any]) -> float:
        return await amedian_us(fn, n)

    raws = hot.client.mget(keys)
    values, _ = hot._judge(refs, raws, sha)
    answer = resolve_batch(ctx, tenant, uris, api.batch_inline_max, budget())
    s: dict[str, float] = {}
    s["client: request JSON (stdlib json, as httpx encodes it)"] = med(lambda: json.dumps(body).encode())
    s["body validation (ResolveRequest from the JSON bytes)"] = med(
        lambda: ResolveRequest.model_validate_json(raw_body)
    )
    s["ref texts parsed (remembered)"] = med(lambda: [svc.versions.parse(u) for u in uris])
    s["known facts of each version"] = med(lambda: svc._batch(tenant, refs, full=False))
    s["Redis MGET, sync client"] = med(lambda: hot.client.mget(keys))
    s["copies judged: header + SHA-256 each"] = med(lambda: hot._judge(refs, raws, sha))
    s["SHA-256 alone"] = med(lambda: [hashlib.sha256(v).digest() for v in values])
    s["reads counted (access note_many)"] = med(lambda: svc.access.note_many(refs))
    s["base64 of the values alone"] = med(lambda: [base64.b64encode(v) for v in values])
    found = svc.resolve_many(tenant, refs, want=lambda i, f: True)
    s["results shaped (ref JSON, base64 values; the texts parsed again)"] = med(
        lambda: _BatchAnswer(ctx, uris, api.batch_inline_max, budget()).shape(found)
    )
    s["answer JSON (orjson)"] = med(lambda: orjson.dumps({"results": answer}))
    s["thread path: resolve_batch in this thread"] = med(
        lambda: resolve_batch(ctx, tenant, uris, api.batch_inline_max, budget())
    )

    async def on_loop() -> None:
        async with app.router.lifespan_context(app):
            client = ctx.hot_async
            assert client is not None
            s["Redis MGET, asyncio client (the loop's)"] = await amed(lambda: client.mget(keys))
            s["one worker-thread hop"] = await amed(lambda: anyio.to_thread.run_sync(lambda: None))
            s["on-loop path: aresolve_batch (what the API runs)"] = await amed(
                lambda: aresolve_batch(ctx, tenant, uris, api.batch_inline_max, budget(), client)
            )

    asyncio.run(on_loop())
    answer_bytes = orjson.dumps({"results": answer})
    s["client: answer JSON parsed (orjson; the benchmark does not)"] = med(lambda: orjson.loads(answer_bytes))
    return s


def render_breakdown(breakdown: dict[int, dict[str, float]]) -> list[str]:
    counts = sorted(breakdown)
    lines = [
        "",
        "### Where the time of a batch resolve goes",
        "",
        "Each stage timed on its own in the benchmark process (median µs; known hot 1 KiB versions; "
        "`batch_breakdown`). The API answers up to 128 KiB of hot values on the event loop "
        "(asyncio `MGET`, no worker thread) and larger replies in a worker thread with the sync client "
        "(`liquid.service.LOOP_READ_MAX`), so 1,000 refs take the thread path. What is left between "
        "the sum and the HTTP batch above is the framework and the transport (the floor column).",
        "",
        "| stage | "
        + " | ".join(f"{c} refs" for c in counts)
        + " | "
        + " | ".join(f"µs/ref at {c}" for c in counts)
        + " |",
        "|---|" + "---|" * (2 * len(counts)),
    ]
    for stage in breakdown[counts[0]]:
        us = [breakdown[c][stage] for c in counts]
        lines.append(
            f"| {stage} | "
            + " | ".join(f"{u:.0f}" for u in us)
            + " | "
            + " | ".join(f"{u / c:.2f}" for u, c in zip(us, counts, strict=True))
            + " |"
        )
    return lines


def render(
    meta: dict[str, Any],
    targets: list[dict[str, Any]],
    floor_rows: list[dict[str, Any]],
    batch_rows: list[dict[str, Any]],
    breakdown: dict[int, dict[str, float]],
    rows: list[dict[str, Any]],
    t: dict[str, Any] | None,
) -> str:
    lines = [
        "# Resolve: HTTP API and in-process client vs the framework floor and raw clients, same run",
        "",
        f"{meta['when']} · {meta['machine']} · {meta['servers']} · load average at the end "
        f"{meta.get('load_average', '?')}",
        "",
        "## Targets",
        "",
        "| target | ratio | met |",
        "|---|---|---|",
    ]
    for tg in targets:
        lines.append(f"| {tg['target']} | {tg['ratio']:.2f}x | {'yes' if tg['met'] else '**no**'} |")
    lines += [
        "",
        "## Hot GET beside the framework floor",
        "",
        "`liquid` = httpx `GET /v1/refs/{ref}` to `liquid api` (own process, uvicorn); `floor` = httpx "
        "`GET` to a bare Starlette endpoint returning the same bytes from Redis (`benchmarks/floor.py`, "
        "own process, uvicorn); `client` = `Client.get` over HTTP (SHA-256 checked); `in-proc` = "
        "`Client.embedded(...).get`; `core` = `LiquidService.get`; `redis` = redis-py `GET`. p50 ms.",
        "",
        "| size | n | liquid | floor | liquid / floor | client | in-proc | core | in-proc / core | redis "
        "| liquid p99 | floor p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in floor_rows:
        lines.append(
            f"| {r['size']} | {r['n']} | {r['liquid_http']['p50_ms']:.3f} | "
            f"{r['floor_http']['p50_ms']:.3f} | {r['http_vs_floor']:.2f}x | "
            f"{r['client_http']['p50_ms']:.3f} | {r['in_process']['p50_ms']:.3f} | "
            f"{r['core']['p50_ms']:.3f} | {r['inproc_vs_core']:.2f}x | {r['redis']['p50_ms']:.3f} | "
            f"{r['liquid_http']['p99_ms']:.3f} | {r['floor_http']['p99_ms']:.3f} |"
        )
    lines += [
        "",
        "## Batch resolve of N hot 1 KiB refs (values inline) beside Redis",
        "",
        "`batch` = httpx `POST /v1/refs:resolve` to the API process; `single GET` = one "
        "`GET /v1/refs/{ref}` in the same rounds; `floor` = httpx `POST` of the same request body to a "
        "bare Starlette endpoint that reads it and answers the very bytes of Liquid's answer, read "
        "from Redis with one `GET` (`benchmarks/floor.py`, own process, uvicorn): the framework and "
        "the transport of the answer, none of the resolving; `mget` / `pipeline` = redis-py on the "
        "same N values. Both HTTP sides read the answer's bytes (`.content`) and parse nothing; the "
        "batch side (and the floor) also pays httpx encoding its JSON body (stdlib `json`). p50 ms.",
        "",
        "| refs | n | answer KiB | batch | single GET | batch / single GET | batch / batch of 1 | floor "
        "| batch / floor | mget | pipeline | batch / mget |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in batch_rows:
        lines.append(
            f"| {r['refs']} | {r['n']} | {r['answer_bytes'] / KiB:.0f} | {r['liquid_batch']['p50_ms']:.3f} | "
            f"{r['liquid_single_get']['p50_ms']:.3f} | {r['batch_vs_single_get']:.2f}x | "
            f"{r['batch_vs_batch_of_1']:.2f}x | {r['floor_post']['p50_ms']:.3f} | "
            f"{r['batch_vs_floor']:.2f}x | {r['redis_mget']['p50_ms']:.3f} | "
            f"{r['redis_pipeline']['p50_ms']:.3f} | {r['batch_vs_mget']:.2f}x |"
        )
    lines += render_breakdown(breakdown)
    lines += [
        "",
        "## Every tier through the client beside its raw client",
        "",
        "Resolve = `Client.get(ref)` of one object version (bytes, SHA-256 checked), the API on uvicorn "
        "in a thread of the benchmark process. Ratios are p50 / raw p50.",
        "",
        "| tier | size | n | HTTP p50 ms | HTTP p99 ms | in-proc p50 ms | in-proc p99 ms | "
        "raw p50 ms | raw p99 ms | HTTP / raw | in-proc / raw |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        h, i, w = r["http"], r["in-process"], r["raw"]
        lines.append(
            f"| {r['tier']} | {r['size']} | {r['n']} | {h['p50_ms']:.3f} | {h['p99_ms']:.3f} | "
            f"{i['p50_ms']:.3f} | {i['p99_ms']:.3f} | {w['p50_ms']:.3f} | "
            f"{w['p99_ms']:.3f} | {r['http_ratio_p50']:.2f}x | {r['inproc_ratio_p50']:.2f}x |"
        )
    if t is None:
        lines.append("")
        return "\n".join(lines)
    mb = t["bytes"] / 1e6
    shm, mm, du = t["shm"], t["mmap"], t["durable"]
    lines += [
        "",
        f"## Reading a {mb:.0f} MB Arrow table",
        "",
        "| path | p50 ms | p99 ms | GB/s |",
        "|---|---|---|---|",
        f"| shm hint (`Client.get_table`, zero-copy map) | {shm['p50_ms']:.3f} | {shm['p99_ms']:.3f} | "
        f"{shm['mb_per_s'] / 1e3:.1f} |",
        f"| pyarrow memory-mapping a local IPC file | {mm['p50_ms']:.3f} | {mm['p99_ms']:.3f} | "
        f"{mm['mb_per_s'] / 1e3:.1f} |",
        f"| durable path (HTTP from the cold store) | {du['p50_ms']:.1f} | {du['p99_ms']:.1f} | "
        f"{du['mb_per_s'] / 1e3:.2f} |",
        "",
        f"First shm read of a file in a process (verifies its SHA-256): {t['shm_first_read_ms']:.1f} ms.",
        "",
        f"- shm / mmap p50: {t['shm_vs_mmap_p50']:.2f}x (target ≤ 1.5x: "
        + ("met" if t["targets"]["shm within 1.5x of mmap"] else "**not met**")
        + ")",
        f"- durable / shm p50: {t['durable_vs_shm_p50']:.0f}x (target ≥ 10x: "
        + ("met" if t["targets"]["shm at least 10x faster than durable"] else "**not met**")
        + ")",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
