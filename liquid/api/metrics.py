"""Prometheus metrics of one app, on its own registry (no module-level collectors).

* ``liquid_http_requests_total{method,route,status}`` and
  ``liquid_http_request_duration_seconds{method,route}`` — ``route`` is the route
  template (``/v1/objects/{namespace}/{key:path}``), never the raw path, so label
  cardinality stays bounded; unmatched paths count as ``unmatched``.
* ``liquid_http_received_bytes_total`` / ``liquid_http_sent_bytes_total`` — body bytes.
* ``liquid_tier_reads_total{source}`` — object reads by where the bytes came from
  (``inline``, ``hot``, ``warm``, ``cold``, ``archive``, ``redirect``), and
  ``liquid_tier_read_bytes_total{source}`` — the bytes those reads asked for (the hot
  tier's byte hit ratio is ``hot`` over all).
* ``liquid_shm_copies_total`` — copies written to shared memory.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    """The collectors of one API instance."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "liquid_http_requests", "HTTP requests.", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "liquid_http_request_duration_seconds",
            "Time from request start to the last response byte.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.bytes_in = Counter("liquid_http_received_bytes", "Request body bytes received.", registry=r)
        self.bytes_out = Counter("liquid_http_sent_bytes", "Response body bytes sent.", registry=r)
        self.tier_reads = Counter(
            "liquid_tier_reads", "Object reads by the tier that served them.", ["source"], registry=r
        )
        self.tier_read_bytes = Counter(
            "liquid_tier_read_bytes", "Bytes read, by the tier that served them.", ["source"], registry=r
        )
        self.shm_copies = Counter("liquid_shm_copies", "Copies written to shared memory.", registry=r)
        # The labelled children each request updates, looked up once: prometheus_client's
        # ``labels()`` takes a lock and builds a key on every call (~3 µs; four per hot GET).
        self._done: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._read: dict[str, tuple[Any, Any]] = {}

    def __repr__(self) -> str:
        return "ApiMetrics()"

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and observe its duration."""
        children = self._done.get((method, route, status))
        if children is None:
            children = self._done[(method, route, status)] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def read_from(self, source: str, nbytes: int) -> None:
        """Count one object read served from ``source`` and the bytes it asked for."""
        children = self._read.get(source)
        if children is None:
            children = self._read[source] = (
                self.tier_reads.labels(source),
                self.tier_read_bytes.labels(source),
            )
        children[0].inc()
        children[1].inc(nbytes)


class MetricsMiddleware:
    """Pure ASGI middleware (no body buffering) that records the metrics above."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        sent = 0
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            m = self.metrics
            m.request_done(scope.get("method", ""), template, status, time.perf_counter() - start)
            if received:
                m.bytes_in.inc(received)
            if sent:
                m.bytes_out.inc(sent)
