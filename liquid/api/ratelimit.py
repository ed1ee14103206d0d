"""Per-tenant request rate limits and request body limits for the API.

:class:`TenantRateLimiter` is a token bucket per tenant (``api.rate_limit`` requests a second,
``api.rate_burst`` at once). It lives in each API process, so N replicas behind a round-robin
proxy admit about N times the rate in total: set the per-replica figure. An empty bucket fails the
request at once with 429 and ``Retry-After`` (the seconds until a token is back) before any
catalog or store work is done.

:class:`BodyLimitMiddleware` bounds every request body except object uploads (which
``max_object_size`` bounds while streaming): a ``Content-Length`` over ``api.max_request_body``
is refused with 413 before the body is read, and a chunked body is cut off (and answered 413)
as soon as it passes it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from liquid.api.capacity import is_object_upload
from liquid.api.problems import PROBLEM_JSON, problem_body
from liquid.errors import RateLimited

#: Buckets kept before full (idle) ones are dropped; a full bucket is the same as none.
_MAX_BUCKETS = 100_000


class TenantRateLimiter:
    """Token buckets by tenant; ``clock`` is injected so tests move time instead of sleeping."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at)
        self._lock = threading.Lock()
        self.limited = 0

    def __repr__(self) -> str:
        return f"TenantRateLimiter(rate={self.rate}/s, burst={self.burst}, limited={self.limited})"

    def check(self, tenant: str) -> None:
        """Take one token for ``tenant``, or raise :class:`RateLimited` with the wait until the next."""
        if self.rate <= 0:
            return
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(tenant, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._buckets[tenant] = (tokens, now)
                self.limited += 1
                wait = (1.0 - tokens) / self.rate
                raise RateLimited(
                    f"tenant {tenant!r} is over its rate limit of {self.rate:g} requests/s "
                    f"(burst {self.burst}); retry in {math.ceil(wait)} s",
                    retry_after=wait,
                )
            if len(self._buckets) >= _MAX_BUCKETS:
                self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.burst - 1}
            self._buckets[tenant] = (tokens - 1.0, now)


class BodyLimitMiddleware:
    """413 for request bodies over ``limit`` bytes, except object uploads (``PUT /v1/objects/{ns}/{key}``)."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __repr__(self) -> str:
        return f"BodyLimitMiddleware(limit={self.limit})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._exempt(scope):
            await self.app(scope, receive, send)
            return
        declared, chunked = _framing(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, send, f"request body of {declared} bytes exceeds {self.limit}")
            return
        if not chunked and scope.get("http_version") in ("1.0", "1.1"):
            # HTTP/1 frames the body by its Content-Length (none: no body), and the server reads
            # no more than that: nothing to watch (a GET, the hottest request, has no body).
            await self.app(scope, receive, send)
            return
        seen = 0
        exceeded = started = False

        async def bounded() -> Message:
            nonlocal seen, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Look like a client that went away: the app stops reading and gives up.
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the app says about a body cut short, the answer is 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(scope, send, f"request body exceeds {self.limit} bytes")

    @staticmethod
    def _exempt(scope: Scope) -> bool:
        return is_object_upload(scope["method"], str(scope["path"]))

    async def _refuse(self, scope: Scope, send: Send, detail: str) -> None:
        import json

        body = json.dumps(
            problem_body("liquid:too-large", 413, detail, field="body", instance=str(scope["path"]))
        ).encode()
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The request's declared ``Content-Length`` (None: none or unreadable), and whether it has a
    ``Transfer-Encoding`` (a chunked body, of any length)."""
    declared: int | None = None
    chunked = unreadable = False
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                unreadable = True
        elif name == b"transfer-encoding":
            chunked = True
    # A length the server could not read frames nothing we know of: watch the body as it comes.
    return declared, chunked or unreadable
