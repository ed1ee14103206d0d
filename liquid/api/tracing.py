"""One OpenTelemetry server span per HTTP request (see :mod:`liquid.tracing`).

The span continues the caller's W3C ``traceparent`` (so its trace id is the one a put stores
on the object), is named ``METHOD /route/template`` once routing has matched, and carries the
status and, when the caller sent ``X-Liquid-Trace-Id``, that id as ``liquid.trace_id``. It is
a pure ASGI middleware (no body buffering), installed only when tracing is on.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from liquid.tracing import TRACE_ID_ATTR, Tracing

_PROPAGATOR = TraceContextTextMapPropagator()


class TracingMiddleware:
    """Starts each request's server span; the routes run inside it."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        parent = _PROPAGATOR.extract(headers)
        method = scope.get("method", "")
        attrs: dict[str, str | int] = {"http.request.method": method, "url.path": scope.get("path", "")}
        if "x-liquid-trace-id" in headers:
            attrs[TRACE_ID_ATTR] = headers["x-liquid-trace-id"]
        status = 500
        with self.tracing.tracer.start_as_current_span(
            method, context=parent, kind=SpanKind.SERVER, attributes=attrs
        ) as span:

            async def traced_send(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, traced_send)
            finally:
                route: Any = scope.get("route")
                template = getattr(route, "path", None)
                if template:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
