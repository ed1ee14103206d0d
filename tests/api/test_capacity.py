"""Bounded concurrency over real HTTP: a flood of slow uploads leaves readiness and small reads answering."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from liquid.api.server import ApiServer
from liquid.config import load_settings
from liquid.service import LiquidService
from tests.api.conftest import TenantKey
from tests.problems import problem_of

MAX_UPLOADS = 8
#: More slow uploaders than the shared worker pool has threads (40): without the bound they held
#: every thread, and /readyz and warm reads waited behind them.
FLOOD = 50


@pytest.fixture(scope="module")
def busy_server(api_service: LiquidService, api_settings: dict[str, Any]) -> Iterator[ApiServer]:
    from liquid.api import create_app

    server = ApiServer(api_service)
    settings = load_settings(**{**api_settings, "resilience": {"max_uploads": MAX_UPLOADS}})
    server.app = create_app(api_service, settings)
    server.config.app = server.app
    server.start()
    yield server
    server.stop()


def slow_upload(base_url: str, key: str, name: str, declared: int = 4_000_000) -> socket.socket:
    """A PUT that announces ``declared`` bytes, sends ten and stalls."""
    host, port = base_url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=30)
    s.sendall(
        f"PUT /v1/objects/flood/{name} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Length: {declared}\r\n\r\n".encode()
        + b"0123456789"
    )
    return s


def answered(socks: list[socket.socket], want: int, deadline: float = 60.0) -> dict[socket.socket, bytes]:
    """The first bytes of the sockets that answer, waiting until ``want`` have (or the deadline)."""
    out: dict[socket.socket, bytes] = {}
    end = time.monotonic() + deadline
    while len(out) < want and time.monotonic() < end:
        ready, _, _ = select.select([s for s in socks if s not in out], [], [], 0.5)
        for s in ready:
            out[s] = s.recv(65536)
    return out


# Four megabytes go to the core piece by piece from a worker thread; a kilobyte is read on the loop
# before the upload takes a thread (liquid.api.routes.put_object): both wait for their bodies in
# their place, and neither holds up readiness or reads.
@pytest.mark.parametrize("declared", [4_000_000, 1_000], ids=["streamed", "read-first"])
def test_a_flood_of_slow_uploads_leaves_readiness_and_small_reads_answering(
    busy_server: ApiServer, api_service: LiquidService, tk: TenantKey, declared: int
) -> None:
    base = busy_server.base_url
    auth = {"Authorization": f"Bearer {tk.key}"}
    warm = api_service.put(tk.tenant, "flood", "small", b"small value" * 10).ref
    hot = api_service.put(tk.tenant, "flood", "hot", b"hot value" * 10).ref
    row = api_service.fast.find(hot.tenant, hot.namespace, hot.key, hot.version)
    assert row is not None and api_service.fill_hot(hot, row.id)

    socks = [slow_upload(base, tk.key, f"up-{i}", declared) for i in range(FLOOD)]
    try:
        # Everyone past the limit is refused at once, with a problem and Retry-After.
        refused = answered(socks, FLOOD - MAX_UPLOADS)
        assert len(refused) == FLOOD - MAX_UPLOADS
        for first in refused.values():
            head = first.split(b"\r\n\r\n", 1)[0].lower()
            assert head.startswith(b"http/1.1 503"), first[:200]
            assert b"\r\nretry-after: 1" in head
            assert b"application/problem+json" in head
        # The ones let in are still waiting for their bodies.
        waiting = [s for s in socks if s not in refused]
        assert len(waiting) == MAX_UPLOADS
        assert select.select(waiting, [], [], 0)[0] == []

        with httpx.Client(base_url=base, headers=auth, timeout=30) as http:
            ready = http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["status"] == "ready"
            for ref in (warm, hot):
                r = http.get("/v1/refs/" + quote(ref.uri, safe=""))
                assert r.status_code == 200
            assert http.get("/v1/refs/" + quote(warm.uri, safe="")).headers["x-liquid-source"] == "warm"
            assert http.get("/v1/refs/" + quote(hot.uri, safe="")).headers["x-liquid-source"] == "hot"
            # One more upload while the uploads are full: refused now, not queued.
            problem_of(http.put("/v1/objects/flood/one-more", content=b"x"), 503, "liquid:unavailable")
    finally:
        for s in socks:
            s.close()

    # Closed uploads give their places back; nothing of them was stored.
    with httpx.Client(base_url=base, headers=auth, timeout=30) as http:
        deadline = time.monotonic() + 60
        while True:
            r = http.put("/v1/objects/flood/after", content=b"after the flood")
            if r.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.status_code == 201, r.text
    listed = api_service.list(tk.tenant, "flood", prefix="up-")
    assert listed.items == []
