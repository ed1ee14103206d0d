"""The SDK over HTTP and in-process: one interface, typed errors, retries."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from liquid import errors as core_errors
from liquid.client import (
    AsyncClient,
    BadRequest,
    Client,
    Forbidden,
    Gone,
    IntegrityError,
    InvalidRef,
    MethodNotAllowed,
    NotFound,
    RangeNotSatisfiable,
    Unauthorized,
    Unavailable,
)
from liquid.service import LiquidService
from tests.api.conftest import TenantKey


def exercise(lq: Client, tenant: str) -> None:
    """The same script for every mode of the sync client."""
    data = os.urandom(200_000)
    ref = lq.put("results", "run-1/out.bin", data, tags={"k": "v"}, ttl=3600, trace_id="t1")
    assert lq.get(ref) == data and lq.get(ref.ref) == data and lq.get(ref.uri) == data
    assert lq.get(ref.ref, start=10, end=20) == data[10:20]
    with lq.open(ref.ref) as stream:
        assert stream.size == len(data) and stream.sha256 == ref.sha256
        assert b"".join(stream.iter_bytes()) == data
    meta = lq.head(ref.ref)
    assert (meta.size, meta.sha256, meta.ref) == (len(data), ref.sha256, ref.ref)
    assert meta.expires_at is not None

    jref = lq.put_json("results", "run-1/score.json", {"score": 0.93, "name": "é"})
    assert jref.inline is not None
    assert lq.get_json(jref) == {"score": 0.93, "name": "é"}
    assert lq.get_json(jref.uri) == {"score": 0.93, "name": "é"}

    table = pa.table({"a": list(range(1000)), "b": [str(i) for i in range(1000)]})
    tref = lq.put_table("tables", "t", table)
    assert tref.content_type == "application/vnd.apache.arrow.stream"
    assert lq.get_table(tref.ref).equals(table)

    fref = lq.put("results", "from-file", io.BytesIO(b"file body"))
    assert lq.get(fref.ref) == b"file body"
    gref = lq.put("results", "from-iter", iter([b"a", b"b", b"c"]))
    assert lq.get(gref.ref) == b"abc"

    v2 = lq.put("results", "run-1/out.bin", b"second")
    assert lq.latest("results", "run-1/out.bin") == v2.ref
    assert [v["version"] for v in lq.versions("results", "run-1/out.bin")] == [2, 1]
    page = lq.list("results", prefix="run-1/")
    assert [i["key"] for i in page.items] == ["run-1/out.bin", "run-1/score.json"]
    assert len(list(lq.iter_objects("results", page_size=1))) == 4

    resolved = lq.resolve_many([ref, jref.ref, f"liquid://{tenant}/results/missing@1", "bogus"])
    assert [r.ok for r in resolved] == [True, True, False, False]
    assert resolved[1].ref is not None and resolved[1].ref.inline is not None
    assert isinstance(resolved[2].error, NotFound) and isinstance(resolved[3].error, InvalidRef)

    assert lq.delete(v2.ref)["state"] == "deleted"
    with pytest.raises(Gone):
        lq.get(v2.ref)
    with pytest.raises(NotFound) as exc:
        lq.get(f"liquid://{tenant}/results/nothing@1")
    assert isinstance(exc.value, core_errors.ObjectNotFound) and isinstance(exc.value, FileNotFoundError)
    with pytest.raises(NotFound):
        lq.get("liquid://someone-else/results/run-1/out.bin@1")
    with pytest.raises(InvalidRef):
        lq.get("not-a-ref")
    with pytest.raises(BadRequest) as bad:
        lq.put("Bad NS", "k", b"x")
    assert bad.value.field == "namespace"
    with pytest.raises(RangeNotSatisfiable):
        lq.get(ref.ref, start=len(data) + 5)


def test_http_client(client: Client, tk: TenantKey) -> None:
    exercise(client, tk.tenant)


def test_embedded_client(api_service: LiquidService, tk: TenantKey, shm_dir: Path) -> None:
    with Client.embedded(api_service, tk.tenant, shm_dirs=[shm_dir]) as lq:
        assert lq.direct is not None  # the calls of every step go to the service itself
        exercise(lq, tk.tenant)


def test_embedded_client_through_the_app(api_service: LiquidService, tk: TenantKey, shm_dir: Path) -> None:
    # The same script with every call through the in-process API app: both modes answer alike.
    with Client.embedded(api_service, tk.tenant, shm_dirs=[shm_dir]) as lq:
        lq.direct = None
        exercise(lq, tk.tenant)


def test_async_clients(base_url: str, tk: TenantKey, api_service: LiquidService) -> None:
    async def script(lq: AsyncClient) -> None:
        data = os.urandom(100_000)
        ref = await lq.put("a", "k", data)
        assert await lq.get(ref) == data
        assert b"".join([c async for c in lq.open(ref.ref)]) == data

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(3):
                yield b"xyz"

        sref = await lq.put("a", "streamed", chunks())
        assert await lq.get(sref.ref) == b"xyzxyzxyz"
        assert (await lq.head(ref.ref)).size == len(data)
        assert await lq.get_json(await lq.put_json("a", "j", [1, 2])) == [1, 2]
        table = pa.table({"x": [1.0, 2.0]})
        assert (await lq.get_table(await lq.put_table("a", "t", table))).equals(table)
        assert [r.ok for r in await lq.resolve_many([ref, "liquid://zz/a/b@1"])] == [True, False]
        assert (await lq.latest("a", "k")) == ref.ref
        assert len((await lq.list("a")).items) == 4
        assert [v["version"] for v in await lq.versions("a", "k")] == [1]
        signed = await lq.sign(ref.ref, ttl=60)
        assert signed.exp > 0
        assert (await lq.delete(ref.ref))["state"] == "deleted"
        with pytest.raises(Gone):
            await lq.get(ref.ref)
        with pytest.raises(NotFound):
            async for _ in lq.open(f"liquid://{tk.tenant}/a/none@1"):
                pass

    async def main() -> None:
        async with AsyncClient(base_url, api_key=tk.key, retries=0) as lq:
            await script(lq)
        async with AsyncClient.embedded(api_service, tk.tenant) as lq:
            await lq.put("a", "k", b"second version")  # v2 exists beside the deleted v1
            assert await lq.get(await lq.latest("a", "k")) == b"second version"

    asyncio.run(main())


def test_signed_refs_need_no_key(client: Client, base_url: str) -> None:
    ref = client.put("s", "k", b"shared with a worker" * 500)
    signed = client.sign(ref.ref, ttl=60)
    with Client(base_url) as anonymous:
        assert anonymous.get(signed) == b"shared with a worker" * 500
        assert anonymous.head(signed).size == ref.size
        with pytest.raises(Unauthorized):
            anonymous.get(ref.ref)


def test_auth_errors_are_typed(base_url: str, make_tenant: Callable[[], TenantKey]) -> None:
    with Client(base_url, api_key="lq_00000000_wrong", retries=0) as lq, pytest.raises(Unauthorized):
        lq.list("ns")
    other = make_tenant()
    with Client(base_url, api_key=other.key, tenant="not-mine", retries=0) as lq, pytest.raises(Forbidden):
        lq.list("ns")


def test_admin_client_names_the_tenant(base_url: str, admin_key: str, tk: TenantKey) -> None:
    with Client(base_url, api_key=admin_key, tenant=tk.tenant) as lq:
        ref = lq.put("ops", "k", b"by admin")
        assert ref.ref.tenant == tk.tenant and lq.get(ref.ref) == b"by admin"


def test_retries_idempotent_calls_only() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) < 3:
            return httpx.Response(
                503,
                json={"type": "liquid:store", "title": "x", "status": 503, "detail": "down", "field": None},
                headers={"content-type": "application/problem+json"},
            )
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    with Client("http://x", transport=httpx.MockTransport(handler), retries=3) as lq:
        assert lq.list("ns").items == []
    assert calls == ["GET", "GET", "GET"]

    calls.clear()
    with (
        Client("http://x", transport=httpx.MockTransport(handler), retries=3) as lq,
        pytest.raises(Unavailable),
    ):
        lq.put("ns", "k", b"x")
    assert calls == ["PUT"]  # a write that reached the server is never repeated

    attempts = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(
            201,
            json={
                "uri": "liquid://t/ns/k@1",
                "size": 1,
                "sha256": "0" * 64,
                "content_type": "x",
                "inline": "eA==",
            },
        )

    with Client("http://x", transport=httpx.MockTransport(refuse), retries=2) as lq:
        assert lq.put("ns", "k", b"x").uri == "liquid://t/ns/k@1"  # never reached the server: safe to retry
    assert attempts == 2


def test_corrupted_transfer_is_detected() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"tampered", headers={"etag": '"' + "a" * 64 + '"'})

    with Client("http://x", transport=httpx.MockTransport(handler)) as lq, pytest.raises(IntegrityError):
        lq.get("liquid://t/ns/k@1")


def test_a_failed_head_over_http_still_says_what_was_asked(client: Client, tk: TenantKey) -> None:
    """HEAD answers carry no body, so no problem detail: the error names the request instead of
    a bare 'HTTP 404', and a missing version's field is the ref, as in process."""
    with pytest.raises(NotFound) as err:
        client.head(f"liquid://{tk.tenant}/kb/no-such-key@1")
    assert err.value.field == "ref" and "HEAD /v1/refs/" in str(err.value) and "no-such-key" in str(err.value)
    with pytest.raises(NotFound) as err:
        client.latest("kb", "no-such-key")
    assert err.value.field == "ref" and "HEAD /v1/objects/kb/no-such-key" in str(err.value)


def test_a_method_the_route_does_not_take_is_its_own_error(client: Client) -> None:
    with pytest.raises(MethodNotAllowed) as err:
        client._call("PATCH", "/v1/objects/kb/k")
    assert err.value.status == 405 and not isinstance(err.value, BadRequest)
