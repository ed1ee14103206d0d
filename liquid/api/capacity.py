"""Bounded concurrency per route class: a fast 503 with ``Retry-After`` instead of a queue that starves.

An upload larger than a piece (1 MiB) holds a worker thread for as long as its body arrives
(a smaller one is read on the event loop before it takes one), so without a bound ~40 slow
uploaders (the thread pool's size) stalled every route, ``/readyz`` included. Requests
are sorted into classes — ``uploads`` (``PUT`` of an object), ``reads`` (``GET``/``HEAD``
of objects and refs) and ``other`` (the rest of ``/v1``) — and each class may have at most
its limit (``resilience.max_uploads`` / ``max_reads`` / ``max_other``) in flight. One more
gets ``503`` problem+json with ``Retry-After`` at once, before its body is read. Health,
readiness, metrics and the docs are never limited.

Uploads run on worker threads of their own (as many as their limit, see
:attr:`liquid.api.routes.ApiContext.upload_threads`), so they never take the shared pool's
threads; readiness probes have their own too, and hot reads need none (they are served on
the event loop).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from liquid.api.problems import TYPE_UNAVAILABLE, problem
from liquid.refs import VECTORS_SUFFIX

UPLOADS, READS, OTHER = "uploads", "reads", "other"


def is_object_upload(method: str, path: str) -> bool:
    """``PUT /v1/objects/{ns}/{key}``: an object's bytes, not ``.../{key}/vectors`` (embeddings as JSON).

    >>> is_object_upload("PUT", "/v1/objects/kb/doc"), is_object_upload("PUT", "/v1/objects/kb/doc/vectors")
    (True, False)
    """
    return method == "PUT" and path.startswith("/v1/objects/") and not path.endswith(VECTORS_SUFFIX)


def route_class(method: str, path: str) -> str | None:
    """The class a request counts against, or None when it is never limited.

    >>> route_class("PUT", "/v1/objects/ns/k"), route_class("GET", "/v1/refs/x")
    ('uploads', 'reads')
    >>> route_class("GET", "/readyz") is None
    True
    """
    if not path.startswith("/v1/"):
        return None
    if is_object_upload(method, path):
        return UPLOADS
    if path.startswith("/v1/objects/"):
        if method in ("GET", "HEAD"):
            return READS
    elif path.startswith("/v1/refs/") and method in ("GET", "HEAD"):
        return READS
    return OTHER


class CapacityMiddleware:
    """Pure ASGI middleware that counts requests in flight per class and refuses those past the limit.

    Counting needs no lock: every request enters and leaves on the one event loop.
    """

    def __init__(self, app: ASGIApp, *, limits: dict[str, int], retry_after: float) -> None:
        self.app = app
        self.limits = dict(limits)
        self.retry_after = retry_after
        self.in_flight = dict.fromkeys(self.limits, 0)
        self.refused = dict.fromkeys(self.limits, 0)

    def __repr__(self) -> str:
        return f"CapacityMiddleware(limits={self.limits}, in_flight={self.in_flight})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind = route_class(scope.get("method", ""), scope.get("path", ""))
        if kind is None or kind not in self.limits:
            await self.app(scope, receive, send)
            return
        limit = self.limits[kind]
        if self.in_flight[kind] >= limit:
            self.refused[kind] += 1
            seconds = max(1, round(self.retry_after))
            response = problem(
                TYPE_UNAVAILABLE,
                503,
                f"the server is at its limit of {limit} concurrent {kind}; retry in {seconds} s",
                instance=scope.get("path"),
                headers={"Retry-After": str(seconds), "Connection": "close"},
            )
            await response(scope, receive, send)
            return
        self.in_flight[kind] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight[kind] -= 1
