"""Where the time of one hot GET goes: a stage-by-stage breakdown and a pyinstrument profile.

    python -m benchmarks.request_profile [--quick]

Starts embedded PostgreSQL and Valkey (or uses ``LIQUID_TEST_*``), stores a 1 KiB and a
1 MiB object, gives both a hot copy (the daemon's fill), then for each size times

* every stage of ``GET /v1/refs/{ref}`` on its own, in the calling thread: key check
  (cached), ref parsing, the hot read (Redis GET + checksum), access tracking, the core
  ``LiquidService.open().read()``, one worker-thread hop, building the response;
* the whole app called as ASGI (no socket, no HTTP parsing), inside its lifespan (which opens
  the asyncio Redis client hot hits are read with);
* the whole request over loopback HTTP to uvicorn, and the same to a bare Starlette
  endpoint that does the same Redis read (the framework floor);

and profiles a few thousand ASGI calls with pyinstrument. Writes
``benchmarks/results/request_profile.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import anyio.to_thread
import httpx
import orjson
from rich.console import Console
from starlette.responses import Response

from benchmarks.core_io import start_catalog_and_cache
from benchmarks.floor import FloorServer
from liquid.api import create_app
from liquid.api.routes import InlineBudget, parse_ref_path, resolve_batch
from liquid.api.server import ApiServer
from liquid.bootstrap import open_runtime
from liquid.config import Settings
from liquid.refs import ResultRef

RESULTS = Path(__file__).parent / "results"
KiB, MiB = 1024, 1024 * 1024
SIZES = {"1KiB": KiB, "1MiB": MiB}
console = Console(stderr=True)


def median_us(fn: Callable[[], object], n: int) -> float:
    for _ in range(min(n, 20)):
        fn()
    xs = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        xs.append(time.perf_counter() - t0)
    return statistics.median(xs) * 1e6


async def amedian_us(fn: Callable[[], Awaitable[object]], n: int) -> float:
    for _ in range(min(n, 20)):
        await fn()
    xs = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        xs.append(time.perf_counter() - t0)
    return statistics.median(xs) * 1e6


def asgi_get(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> Callable[[], Awaitable[int]]:
    """One GET through the ASGI app, with nothing in between (returns the body length)."""
    raw = path.encode()

    async def call() -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": unquote(path),
            "raw_path": raw,
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        sent = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal sent
            if message["type"] == "http.response.body":
                sent += len(message.get("body", b""))

        await app(scope, receive, send)
        return sent

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the operations (smoke run)")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    counts = {"1KiB": max(int(3000 * scale), 100), "1MiB": max(int(300 * scale), 30)}

    from pyinstrument import Profiler

    workdir = Path(tempfile.mkdtemp(prefix="liquid-prof-", dir="/tmp"))
    pg, redis_url, started = start_catalog_and_cache(workdir)
    (workdir / "cold").mkdir()
    settings = Settings(
        catalog_url=pg,
        stores={"hot": redis_url, "warm": pg, "cold": f"file://{workdir / 'cold'}"},
        warm_max_object_size=64 * MiB,
        hot={"max_object_size": 8 * MiB},
        shm={"enabled": False},
    )
    rt = open_runtime(settings)
    svc = rt.service
    tenant = f"prof-{uuid.uuid4().hex[:6]}"
    svc.tenancy.create_tenant(tenant)
    key = svc.tenancy.create_api_key(tenant)
    app = create_app(svc)
    ctx = app.state.liquid
    server = ApiServer(svc)
    base = server.start()
    floor = FloorServer(redis_url)
    floor_base = floor.start()
    http = httpx.Client(headers={"Authorization": f"Bearer {key}"})
    headers = [(b"authorization", f"Bearer {key}".encode()), (b"host", b"liquid")]

    out: dict[str, Any] = {}
    profiles: dict[str, str] = {}
    for size_name, nbytes in SIZES.items():
        n = counts[size_name]
        payload = os.urandom(nbytes)
        ref = svc.put(tenant, "prof", f"obj-{size_name}", payload).ref
        row = svc.fast.find(ref.tenant, ref.namespace, ref.key, ref.version)
        assert row is not None and svc.fill_hot(ref, row.id)
        assert svc.open(tenant, ref).source == "hot"
        floor.put(f"floor:{size_name}", payload)
        path = "/v1/refs/" + quote(ref.uri, safe="")
        call = asgi_get(app, path, headers)

        async def stages(
            call: Any = call, ref: Any = ref, n: int = n, payload: bytes = payload
        ) -> dict[str, float]:
            hdrs = {"ETag": "x", "Content-Length": str(len(payload))}
            s: dict[str, float] = {}
            s["auth (cached key)"] = await amedian_us(lambda: ctx.auth.authenticate(key), n)
            s["ref parsing"] = median_us(lambda: parse_ref_path(ref.uri.removeprefix("liquid://")), n)
            assert svc.hot is not None and svc.access is not None
            sha = hashlib.sha256(payload).hexdigest()
            s["hot read, sync client (Redis GET + the copy's check)"] = median_us(
                lambda: svc.hot.get(ref, expect_sha256=sha),  # type: ignore[union-attr]
                n,
            )
            async with app.router.lifespan_context(app):
                client = ctx.hot_async
                assert client is not None
                s["hot read on the event loop (asyncio Redis GET + the copy's check)"] = await amedian_us(
                    lambda: svc.hot.aget(ref, client, expect_sha256=sha),  # type: ignore[union-attr]
                    n,
                )
                s["whole app, ASGI (no socket)"] = await amedian_us(call, n)
            s["access tracking (note)"] = median_us(lambda: svc.access.note(ref), n)  # type: ignore[union-attr]
            s["core open().read() (all of the above in the core)"] = median_us(
                lambda: svc.open(tenant, ref).read(), n
            )
            s["one worker-thread hop (anyio.to_thread)"] = await amedian_us(
                lambda: anyio.to_thread.run_sync(lambda: None), n
            )
            s["response object"] = median_us(lambda: Response(payload, headers=hdrs), n)
            return s

        stage = asyncio.run(stages())
        liquid_url = base + path
        floor_url = f"{floor_base}/floor/{size_name}"
        assert http.get(liquid_url).content == payload and http.get(floor_url).content == payload
        stage["whole request, HTTP to uvicorn (Liquid)"] = median_us(lambda u=liquid_url: http.get(u), n)
        stage["whole request, HTTP to uvicorn (bare Starlette + Redis: the floor)"] = median_us(
            lambda u=floor_url: http.get(u), n
        )
        out[size_name] = stage

        profiler = Profiler(interval=0.0002, async_mode="enabled")

        async def many(call: Any = call, n: int = n) -> None:
            async with app.router.lifespan_context(app):
                for _ in range(n):
                    await call()

        profiler.start()
        asyncio.run(many())
        profiler.stop()
        profiles[size_name] = profiler.output_text(unicode=True, color=False, show_all=False)

    batch = batch_stages(svc, ctx, tenant, http, base, max(counts["1KiB"] // 10, 30))

    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "quick": args.quick,
    }
    RESULTS.mkdir(exist_ok=True)
    doc = {"meta": meta, "stages_us": out, "batch_us": batch}
    (RESULTS / "request_profile.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = render(meta, out, profiles, batch)
    (RESULTS / "request_profile.md").write_text(md)
    print(md)

    http.close()
    floor.stop()
    server.stop()
    rt.close()
    for srv in reversed(started):
        srv.stop()
    shutil.rmtree(workdir, ignore_errors=True)  # the servers' data: the disk is shared


def batch_stages(svc: Any, ctx: Any, tenant: str, http: httpx.Client, base: str, n: int) -> dict[str, float]:
    """Where the time of a batch resolve of 100 hot 1 KiB refs goes: known versions, and at first sight."""
    from liquid.versions import VersionCache

    payload = os.urandom(KiB)
    refs = []
    for i in range(100):
        ref = svc.put(tenant, "prof-batch", f"obj-{i}", payload).ref
        row = svc.fast.find(ref.tenant, ref.namespace, ref.key, ref.version)
        assert row is not None and svc.fill_hot(ref, row.id)
        refs.append(ref)
    uris = [r.uri for r in refs]
    api = ctx.settings.api

    def resolve() -> object:
        return resolve_batch(ctx, tenant, uris, api.batch_inline_max, InlineBudget(api.batch_inline_total))

    def first_sight() -> object:
        svc.versions = VersionCache()  # as a process that never read these versions
        return resolve()

    s: dict[str, float] = {}
    assert svc.hot is not None
    s["parse 100 ref texts (not seen before)"] = median_us(lambda: [ResultRef.parse(u) for u in uris], n)
    shas = [hashlib.sha256(payload).hexdigest()] * len(refs)
    s["Redis MGET of the 100 copies + the check of each"] = median_us(
        lambda: svc.hot.get_many(refs, expect_sha256=shas),  # type: ignore[union-attr]
        n,
    )
    s["catalog statement for 100 versions (first sight only)"] = median_us(
        lambda: svc.fast.find_many([(r.tenant, r.namespace, r.key, r.version) for r in refs], full=False), n
    )
    s["resolve_batch, versions known (the steady state)"] = median_us(resolve, n)
    s["resolve_batch, first sight (fresh version cache)"] = median_us(first_sight, n)
    answer = resolve()  # and the facts stay learned for the HTTP rows
    s["orjson of the answer"] = median_us(lambda: orjson.dumps({"results": answer}), n)
    body = {"refs": uris, "inline": True}
    single = base + "/v1/refs/" + quote(uris[0], safe="")
    s["whole batch request, HTTP to uvicorn"] = median_us(
        lambda: http.post(base + "/v1/refs:resolve", json=body).content, n
    )
    s["one single-ref GET, HTTP to uvicorn"] = median_us(lambda: http.get(single).content, n)
    return s


def render(
    meta: dict[str, Any],
    out: dict[str, dict[str, float]],
    profiles: dict[str, str],
    batch: dict[str, float],
) -> str:
    names = list(next(iter(out.values())))
    lines = [
        "# Where the time of one hot `GET /v1/refs/{ref}` goes",
        "",
        f"{meta['when']} · {meta['machine']} · median µs per call, each stage timed on its own",
        "",
        "| stage | " + " | ".join(out) + " |",
        "|---|" + "---|" * len(out),
    ]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{out[s][name]:.0f}" for s in out) + " |")
    lines += [
        "",
        "## Where the time of one batch resolve of 100 hot 1 KiB refs goes",
        "",
        "`POST /v1/refs:resolve` runs `resolve_batch` in a worker thread; versions the process wrote or",
        "read before are known (`liquid.versions`) and cost no catalog statement. Median µs per call.",
        "",
        "| stage | µs |",
        "|---|---|",
    ]
    lines += [f"| {name} | {us:.0f} |" for name, us in batch.items()]
    for size, text in profiles.items():
        lines += ["", f"## pyinstrument: ASGI calls of the {size} GET", "", "```", text.strip(), "```"]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
