"""The lean read path over real HTTP: hot hits on the event loop, and every way a copy must not be served."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import socket
from collections.abc import Callable, Iterator
from urllib.parse import quote

import httpx
import pytest
import redis
from fastapi import FastAPI

from liquid.api import server as server_module
from liquid.api.server import ApiServer
from liquid.bootstrap import Runtime
from liquid.hotcache import HotCache, encode, hot_key
from liquid.refs import ResultRef
from liquid.service import LiquidService
from tests.api.conftest import TenantKey
from tests.problems import problem_of


@pytest.fixture
def http(base_url: str, auth: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers=auth, timeout=30) as c:
        yield c


def ref_url(ref: ResultRef) -> str:
    return "/v1/refs/" + quote(ref.uri, safe="")


def hot_object(svc: LiquidService, tenant: str, key: str, data: bytes) -> ResultRef:
    ref = svc.put(tenant, "hot", key, data).ref
    row = svc.fast.find(ref.tenant, ref.namespace, ref.key, ref.version)
    assert row is not None and svc.fill_hot(ref, row.id)
    return ref


def test_the_server_reads_hot_copies_on_its_event_loop(api_server: ApiServer) -> None:
    # The lifespan opened the asyncio client: hot hits take no worker thread.
    assert api_server.app.state.liquid.hot_async is not None


@pytest.mark.parametrize("size", [1, 1024, 300 * 1024])
def test_hot_hit_serves_the_copy_whole_and_in_ranges(
    http: httpx.Client, api_service: LiquidService, tk: TenantKey, size: int
) -> None:
    data = os.urandom(size)
    ref = hot_object(api_service, tk.tenant, f"obj-{size}", data)
    r = http.get(ref_url(ref))
    assert r.status_code == 200
    assert r.headers["x-liquid-source"] == "hot"
    assert r.content == data
    assert r.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert r.headers["content-length"] == str(size)
    r = http.get(ref_url(ref), headers={"Range": f"bytes=0-{size // 2}"})
    assert r.status_code == 206 and r.content == data[: size // 2 + 1]
    assert r.headers["x-liquid-source"] == "hot"
    head = http.head(ref_url(ref))
    assert head.status_code == 200 and head.headers["content-length"] == str(size)


def test_hot_hits_are_counted_and_reads_of_missing_refs_are_not(
    http: httpx.Client, api_service: LiquidService, tk: TenantKey
) -> None:
    assert api_service.access is not None
    ref = hot_object(api_service, tk.tenant, "counted", b"x" * 100)
    before = api_service.access.noted
    assert http.get(ref_url(ref)).headers["x-liquid-source"] == "hot"
    assert api_service.access.noted == before + 1
    missing = ResultRef(tk.tenant, "hot", "counted", ref.version + 1)
    problem_of(http.get(ref_url(missing)), 404)
    assert api_service.access.noted == before + 1


def test_a_deleted_version_is_never_served_from_its_copy(
    http: httpx.Client, api_service: LiquidService, tk: TenantKey
) -> None:
    ref = hot_object(api_service, tk.tenant, "deleted", b"secret" * 10)
    assert http.get(ref_url(ref)).headers["x-liquid-source"] == "hot"
    assert http.delete(ref_url(ref)).status_code == 200
    problem_of(http.get(ref_url(ref)), 410)


def test_a_copy_whose_kill_is_pending_is_not_served(
    http: httpx.Client, api_service: LiquidService, tk: TenantKey
) -> None:
    # A delete whose kill did not reach Redis leaves the copy behind; until a kill succeeds this
    # process serves no copy of it, the event-loop path included.
    hot = api_service.hot
    assert hot is not None
    data = b"gone" * 10
    ref = hot_object(api_service, tk.tenant, "unkilled", data)
    api_service.delete(tk.tenant, ref)
    hot.client.set(hot_key(ref), encode(data, hashlib.sha256(data).hexdigest(), "text/plain"))
    with hot._unkilled_lock:
        hot._unkilled.add(ref)
    try:
        problem_of(http.get(ref_url(ref)), 410)
    finally:
        with hot._unkilled_lock:
            hot._unkilled.discard(ref)
        hot.kill([ref])


def test_a_corrupt_copy_is_dropped_and_the_home_serves(
    http: httpx.Client, api_service: LiquidService, tk: TenantKey
) -> None:
    hot = api_service.hot
    assert hot is not None
    data = os.urandom(2048)
    ref = hot_object(api_service, tk.tenant, "corrupt", data)
    raw = hot.client.get(hot_key(ref))
    assert isinstance(raw, bytes)
    hot.client.set(hot_key(ref), raw[:-1] + bytes([raw[-1] ^ 1]))
    r = http.get(ref_url(ref))
    assert r.status_code == 200 and r.content == data
    assert r.headers["x-liquid-source"] == "warm"
    assert hot.client.get(hot_key(ref)) is None


def test_a_copy_of_other_bytes_is_not_served_on_the_event_loop(
    http: httpx.Client, api_service: LiquidService, tk: TenantKey
) -> None:
    # The copy checks out against its own digest, but not against its version's checksum.
    hot = api_service.hot
    assert hot is not None
    right = os.urandom(1500)
    ref = hot_object(api_service, tk.tenant, "other-bytes", right)
    assert http.get(ref_url(ref)).headers["x-liquid-source"] == "hot"  # known to the API now
    wrong = os.urandom(1500)
    hot.client.set(hot_key(ref), encode(wrong, hashlib.sha256(wrong).hexdigest(), "text/plain"))
    r = http.get(ref_url(ref))
    assert r.status_code == 200 and r.content == right and r.headers["x-liquid-source"] == "warm"
    assert hot.client.get(hot_key(ref)) is None


def test_a_stalled_redis_is_a_miss_on_the_event_loop_not_a_hang() -> None:
    # A Redis that accepts the connection and never answers: the read on the event loop gives up
    # after the hot timeout (its client has no socket timeout of its own) and counts an error.
    with socket.create_server(("127.0.0.1", 0)) as stalled:
        port = stalled.getsockname()[1]
        hot = HotCache(
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.2, socket_connect_timeout=0.2),
            ttl=60.0,
            max_object_size=1024,
        )
        ref = ResultRef.parse("liquid://t/ns/stalled@1")

        async def read() -> object:
            client = hot.async_client()
            assert client is not None
            try:
                # The outer bound only fails the test instead of hanging it.
                return await asyncio.wait_for(hot.aget(ref, client, expect_sha256="0" * 64), 30)
            finally:
                await client.aclose()

        assert asyncio.run(read()) is None
        assert hot.errors == 1


def test_another_tenants_hot_copy_is_not_found(
    http: httpx.Client, api_service: LiquidService, make_tenant: Callable[[], TenantKey]
) -> None:
    other = make_tenant()
    ref = hot_object(api_service, other.tenant, "theirs", b"private")
    problem_of(http.get(ref_url(ref)), 404)


def test_batch_resolve_reads_every_tier_and_counts_only_live_values(
    http: httpx.Client, api_service: LiquidService, tk: TenantKey
) -> None:
    assert api_service.access is not None and api_service.hot is not None
    hot_data, warm_data = os.urandom(700), os.urandom(900)
    hot = hot_object(api_service, tk.tenant, "b-hot", hot_data)
    warm = api_service.put(tk.tenant, "hot", "b-warm", warm_data).ref
    killed = hot_object(api_service, tk.tenant, "b-killed", b"deleted bytes")
    api_service.delete(tk.tenant, killed)
    # A copy that does not match its version's checksum is never returned.
    stale = hot_object(api_service, tk.tenant, "b-stale", b"right bytes")
    api_service.hot.client.set(
        hot_key(stale), encode(b"wrong bytes", hashlib.sha256(b"wrong bytes").hexdigest(), "text/plain")
    )
    missing = ResultRef(tk.tenant, "hot", "b-missing", 1)
    before = api_service.access.noted
    body = {"refs": [hot.uri, warm.uri, killed.uri, missing.uri, stale.uri, hot.uri]}
    results = http.post("/v1/refs:resolve", json=body).json()["results"]
    assert [r["ok"] for r in results] == [True, True, False, False, True, True]
    assert decode_inline(results[0]) == hot_data == decode_inline(results[5])
    assert decode_inline(results[1]) == warm_data
    assert decode_inline(results[4]) == b"right bytes"
    assert [results[i]["error"]["type"] for i in (2, 3)] == ["liquid:gone", "liquid:not-found"]
    assert api_service.access.noted == before + 4


def decode_inline(result: dict[str, object]) -> bytes:
    import base64

    ref = result["ref"]
    assert isinstance(ref, dict)
    return base64.b64decode(ref["inline"])


def test_a_batch_of_known_hot_refs_takes_no_worker_thread(
    http: httpx.Client, api_service: LiquidService, tk: TenantKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    from liquid.api import routes

    data = [os.urandom(300 + i) for i in range(3)]
    refs = [hot_object(api_service, tk.tenant, f"loop-{i}", d) for i, d in enumerate(data)]
    hops: list[object] = []
    real = routes.run

    async def counted(fn: Callable[..., object], *args: object, **kwargs: object) -> object:
        hops.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(routes, "run", counted)
    results = http.post("/v1/refs:resolve", json={"refs": [r.uri for r in refs]}).json()["results"]
    assert [decode_inline(r) for r in results] == data and hops == []
    # A version that needs the catalog (no copy) takes the hop, once, for the whole batch.
    warm = api_service.put(tk.tenant, "hot", "loop-warm", b"warm bytes").ref
    body = {"refs": [refs[0].uri, warm.uri]}
    results = http.post("/v1/refs:resolve", json=body).json()["results"]
    assert [decode_inline(r) for r in results] == [data[0], b"warm bytes"] and len(hops) == 1
    # Catalog facts are asked for: the thread path, as before.
    facts = http.post("/v1/refs:resolve", json={**body, "facts": True}).json()["results"]
    assert [r["object"]["key"] for r in facts] == ["loop-0", "loop-warm"] and len(hops) == 2


def test_the_inline_budget_leaves_out_the_same_values_on_either_path(
    api_server: ApiServer, api_service: LiquidService, tk: TenantKey
) -> None:
    from liquid.api.routes import InlineBudget, aresolve_batch, resolve_batch

    ctx = api_server.app.state.liquid
    hot = api_service.hot
    assert hot is not None
    data = [os.urandom(1000) for _ in range(4)]
    refs = [hot_object(api_service, tk.tenant, f"budget-{i}", d) for i, d in enumerate(data)]
    big = hot_object(api_service, tk.tenant, "budget-big", os.urandom(5000))
    texts = [refs[0].uri, big.uri, "not a ref", refs[1].uri, refs[2].uri, refs[3].uri]

    async def on_loop(budget: InlineBudget) -> list[dict[str, object]]:
        client = hot.async_client()
        assert client is not None
        try:
            return await aresolve_batch(ctx, tk.tenant, texts, 4096, budget, client)
        finally:
            await client.aclose()

    loop_budget, thread_budget = InlineBudget(2500), InlineBudget(2500)
    got = asyncio.run(on_loop(loop_budget))
    expected = resolve_batch(ctx, tk.tenant, texts, 4096, thread_budget)
    assert got == expected
    assert (loop_budget.used, loop_budget.omitted) == (thread_budget.used, thread_budget.omitted) == (2000, 2)
    # Two values fit the total; the big one is over the per-value limit (no value, not "omitted").
    assert [decode_inline(r) for r in (got[0], got[3])] == data[:2]
    assert "inline" not in got[1]["ref"] and "inline_omitted" not in got[1]  # type: ignore[operator]
    assert got[2]["ok"] is False
    assert [r.get("inline_omitted") for r in got[4:]] == [True, True]


def test_the_api_process_hides_its_start_up_from_the_collector(
    api_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full collection scanning start-up's ~190k long-lived objects paused the event loop for
    # tens of milliseconds: `liquid api` freezes them just before it serves.
    seen: list[tuple[object, int]] = []
    monkeypatch.setattr(
        server_module.uvicorn, "run", lambda app, **kw: seen.append((app, gc.get_freeze_count()))
    )
    gc.unfreeze()
    try:
        server_module.serve(api_runtime, port=0)
    finally:
        gc.unfreeze()  # this test process's objects go back to the collector
    ((app, frozen),) = seen
    assert isinstance(app, FastAPI)
    assert frozen > 10_000
