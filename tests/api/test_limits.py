"""Per-tenant rate limits (429 + Retry-After, before any work) and request body limits (413)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from liquid.api.ratelimit import BodyLimitMiddleware, TenantRateLimiter
from liquid.api.server import ApiServer
from liquid.client import Client
from liquid.client import RateLimited as ClientRateLimited
from liquid.errors import RateLimited
from liquid.service import LiquidService
from tests.api.conftest import TenantKey


def test_token_bucket_with_a_fake_clock() -> None:
    now = [100.0]
    limiter = TenantRateLimiter(2.0, 3, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("acme")
    with pytest.raises(RateLimited, match="'acme' is over its rate limit of 2 requests/s") as caught:
        limiter.check("acme")
    assert caught.value.retry_after == pytest.approx(0.5)
    limiter.check("other")  # tenants do not share a bucket
    now[0] += 0.5
    limiter.check("acme")  # one token back after 1/rate seconds
    with pytest.raises(RateLimited):
        limiter.check("acme")
    now[0] += 60
    for _ in range(3):  # refilled to the burst, not beyond
        limiter.check("acme")
    with pytest.raises(RateLimited):
        limiter.check("acme")
    assert limiter.limited == 3


def test_off_by_default() -> None:
    limiter = TenantRateLimiter(0.0, 1)
    for _ in range(1000):
        limiter.check("acme")


@pytest.fixture(scope="module")
def limited_url(api_service: LiquidService) -> Iterator[str]:
    # One token per 1000 s after a burst of 3: the fourth request is over the limit however slow
    # the machine runs, so nothing here depends on timing.
    settings = api_service.settings.model_copy(deep=True)
    settings.api.rate_limit = 0.001
    settings.api.rate_burst = 3
    settings.api.max_request_body = 1024
    server = ApiServer(api_service, settings=settings)
    server.start()
    yield server.base_url
    server.stop()


def test_over_the_limit_is_a_fast_429_with_retry_after(
    limited_url: str, make_tenant: Callable[[], TenantKey]
) -> None:
    a, b = make_tenant(), make_tenant()
    ha = {"Authorization": f"Bearer {a.key}"}
    for _ in range(3):
        assert httpx.get(f"{limited_url}/v1/objects/ns", headers=ha).status_code == 200
    over = httpx.put(f"{limited_url}/v1/objects/ns/k", headers=ha, content=b"not stored")
    assert over.status_code == 429
    assert over.headers["content-type"].startswith("application/problem+json")
    assert over.json()["type"] == "liquid:rate-limited"
    assert 900 <= int(over.headers["Retry-After"]) <= 1000
    # Refused before any work: the write did not happen.
    listed = httpx.get(f"{limited_url}/v1/objects/ns", headers={"Authorization": f"Bearer {b.key}"})
    assert listed.status_code == 200  # another tenant is unaffected
    assert httpx.get(f"{limited_url}/v1/objects/ns", headers=ha).status_code == 429
    # The client's exception says so, with the server's Retry-After.
    with Client(limited_url, api_key=a.key, retries=0) as lq, pytest.raises(ClientRateLimited) as err:
        lq.put("ns", "k", b"not stored")
    assert err.value.status == 429 and err.value.retry_after is not None and err.value.retry_after >= 900


def test_request_bodies_are_bounded_but_uploads_are_not(
    limited_url: str, make_tenant: Callable[[], TenantKey]
) -> None:
    h = {"Authorization": f"Bearer {make_tenant().key}", "Content-Type": "application/json"}
    big = b'{"refs": [' + b",".join([b'"liquid://x/ns/k@1"'] * 100) + b"]}"
    declared = httpx.post(f"{limited_url}/v1/refs:resolve", headers=h, content=big)
    assert declared.status_code == 413 and declared.json()["type"] == "liquid:too-large"

    def chunked() -> Iterator[bytes]:
        yield big[:600]
        yield big[600:]

    streamed = httpx.post(f"{limited_url}/v1/refs:resolve", headers=h, content=chunked())
    assert streamed.status_code == 413, streamed.text
    upload = httpx.put(f"{limited_url}/v1/objects/ns/big", headers=h, content=b"x" * 4096)
    assert upload.status_code == 201, upload.text
    # Embeddings attached under an object's path are JSON like any other body: bounded.
    vectors = b'{"embeddings": [{"vector": [' + b",".join([b"0.5"] * 1000) + b"]}]}"
    attach = httpx.put(f"{limited_url}/v1/objects/ns/big/vectors", headers=h, content=vectors)
    assert attach.status_code == 413 and attach.json()["type"] == "liquid:too-large", attach.text


def test_the_lean_ref_read_is_limited_too(
    limited_url: str, api_service: LiquidService, make_tenant: Callable[[], TenantKey]
) -> None:
    a = make_tenant()
    ref = api_service.put(a.tenant, "ns", "hot", b"v" * 2000).ref  # GET /v1/refs: the lean route
    h = {"Authorization": f"Bearer {a.key}"}
    url = f"{limited_url}/v1/refs/{quote(ref.uri, safe='')}"
    assert [httpx.get(url, headers=h).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_the_lean_search_is_limited_too(limited_url: str, make_tenant: Callable[[], TenantKey]) -> None:
    a = make_tenant()
    h = {"Authorization": f"Bearer {a.key}"}
    statuses = [
        httpx.post(f"{limited_url}/v1/search", json={"vector": [1.0, 0.0]}, headers=h).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]  # no vectors yet: an empty answer, then the limit


@pytest.mark.parametrize(
    ("http_version", "headers", "answer"),
    [
        ("1.1", [], 200),  # HTTP/1 without a length or chunks: no body, nothing to watch
        ("1.1", [(b"transfer-encoding", b"chunked")], 413),
        ("2", [], 413),  # HTTP/2 frames the body itself: no length header needed, so it is watched
    ],
)
def test_a_body_past_the_limit_is_cut_off_however_it_is_framed(
    http_version: str, headers: list[tuple[bytes, bytes]], answer: int
) -> None:
    async def reading_app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read"})

    # A server hands over whatever arrives; HTTP/1 without a length or chunks would send no body.
    chunks = iter([{"type": "http.request", "body": b"x" * 60, "more_body": True}] * 3)

    async def receive() -> dict[str, Any]:
        return next(chunks, {"type": "http.request", "body": b"", "more_body": False})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v1/refs/x",
        "http_version": http_version,
        "headers": headers,
    }
    if http_version == "1.1" and not headers:
        chunks = iter([])  # what the server passes for a bodiless HTTP/1 request
    asyncio.run(BodyLimitMiddleware(reading_app, limit=100)(scope, receive, send))
    assert sent[0]["status"] == answer
