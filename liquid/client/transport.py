"""In-process transports: the real API app called without a socket.

``Client.embedded(service, tenant)`` and ``AsyncClient.embedded(...)`` build the same
FastAPI app the server runs, with every request acting as a fixed tenant principal
(``ApiContext.fixed_principal``), so in-process use goes through exactly the routes,
validation and error mapping that HTTP callers get. Response bodies are buffered
(``httpx.ASGITransport`` does so); request bodies stream. The sync ``Client`` sends its
per-step calls (get, head, put, delete, latest, batch resolve) to the service directly
instead (:mod:`liquid.client.inprocess`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import anyio.from_thread
import anyio.to_thread
import httpx

from liquid.tenancy import Principal

if TYPE_CHECKING:
    from fastapi import FastAPI

    from liquid.service import LiquidService


def embedded_app(service: LiquidService, tenant: str) -> FastAPI:
    """The API app over ``service`` acting as ``tenant`` for every request."""
    from liquid.api import create_app
    from liquid.refs import check_slug

    check_slug(tenant, "tenant")
    app = create_app(service)
    app.state.liquid.fixed_principal = Principal(tenant=tenant, role="tenant", key_prefix="embedded")
    return app


class _AsyncBody(httpx.AsyncByteStream):
    """A sync request body pulled chunk by chunk from a worker thread."""

    def __init__(self, stream: httpx.SyncByteStream) -> None:
        self._it: Iterator[bytes] = iter(stream)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await anyio.to_thread.run_sync(next, self._it, None)
            if chunk is None:
                return
            yield chunk


class PortalTransport(httpx.BaseTransport):
    """A sync httpx transport that runs an ASGI app on an event loop in a helper thread."""

    def __init__(self, app: Any) -> None:
        self._cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._cm.__enter__()
        self._inner = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        stream = request.stream
        if not isinstance(stream, httpx.AsyncByteStream):
            assert isinstance(stream, httpx.SyncByteStream)
            request = httpx.Request(
                request.method, request.url, headers=request.headers, stream=_AsyncBody(stream)
            )

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            response = await self._inner.handle_async_request(request)
            body = await response.aread()
            return response.status_code, response.headers.raw, body

        status, headers, body = self._portal.call(call)
        return httpx.Response(status, headers=headers, content=body, request=request)

    def close(self) -> None:
        self._cm.__exit__(None, None, None)
