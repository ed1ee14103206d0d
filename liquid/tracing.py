"""OpenTelemetry spans around API requests, store calls and moves; off unless configured.

``tracing.exporter`` picks where spans go: ``none`` (the default: a no-op tracer, nothing
recorded, nothing allocated per call), ``console`` (one JSON document per span on stdout)
or ``otlp`` (OTLP/HTTP to ``tracing.endpoint``, e.g. ``http://127.0.0.1:4318/v1/traces``;
needs ``pip install 'liquid-data[otlp]'``). The runtime owns one :class:`Tracing` and hands
it to the service, the API and the mover — no global tracer provider is installed, so two
runtimes in one process (and the tests) never share spans.

How spans meet the trace id stored on objects and events:

* an API request's span continues the caller's W3C ``traceparent``; a put stores that trace
  id on the object (and its events), or — with tracing on and no id given — the request
  span's own, so the object's ``trace_id`` finds the request that wrote it;
* ``X-Liquid-Trace-Id`` (any string, not necessarily W3C) is stored as given and set on the
  request span as the ``liquid.trace_id`` attribute;
* each journal row the mover works (a move, restore or purge) gets a ``mover.move`` span
  with ``liquid.trace_id`` = the object's stored trace id, so a search by that attribute
  lists everything that happened to the objects a trace wrote.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import NoOpTracer, Span, SpanKind, Tracer

from liquid.errors import MissingDependency

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from liquid.config import TracingSettings

#: The attribute that carries the trace id stored on objects and events.
TRACE_ID_ATTR = "liquid.trace_id"

Attributes = Mapping[str, str | int | float | bool]


class Tracing:
    """The tracer Liquid's layers use: a no-op one when tracing is off.

    Args:
        provider: an SDK tracer provider (None: tracing off).
    """

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer("liquid") if provider is not None else NoOpTracer()

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def __repr__(self) -> str:
        return f"Tracing(enabled={self.enabled})"

    @classmethod
    def off(cls) -> Tracing:
        return cls(None)

    @classmethod
    def from_settings(cls, settings: TracingSettings, *, exporter: SpanExporter | None = None) -> Tracing:
        """Tracing as configured; ``exporter`` replaces the configured one (tests: an in-memory one).

        Raises:
            MissingDependency: ``otlp`` without its exporter package installed.
        """
        if exporter is None and settings.exporter == "none":
            return cls.off()
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

        provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            sampler=ParentBasedTraceIdRatio(settings.sample_ratio),
        )
        if exporter is not None:
            # Given exporters are read back at once (tests): export each span as it ends.
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            provider.add_span_processor(BatchSpanProcessor(_exporter(settings)))
        return cls(provider)

    @contextmanager
    def span(
        self, name: str, attributes: Attributes | None = None, *, kind: SpanKind = SpanKind.INTERNAL
    ) -> Iterator[Span]:
        """A span, current for the block; exceptions are recorded on it and re-raised."""
        with self.tracer.start_as_current_span(name, kind=kind, attributes=attributes) as span:
            yield span

    def start(self, name: str, attributes: Attributes | None = None) -> Span:
        """A span that is not made current: the caller ends it (work that outlives a block)."""
        return self.tracer.start_span(name, attributes=attributes)

    def shutdown(self) -> None:
        """Flush pending spans and stop the exporter."""
        if self.provider is not None:
            self.provider.shutdown()


def current_trace_id() -> str | None:
    """The trace id of the current span (32 hex digits), None when there is no recording one."""
    ctx = trace.get_current_span().get_span_context()
    return trace.format_trace_id(ctx.trace_id) if ctx.is_valid else None


def _exporter(settings: TracingSettings) -> SpanExporter:
    if settings.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise MissingDependency(
            "tracing.exporter is otlp but opentelemetry-exporter-otlp-proto-http is not installed:"
            " pip install 'liquid-data[otlp]'",
            field="tracing.exporter",
        ) from None
    kwargs: dict[str, Any] = {"endpoint": settings.endpoint} if settings.endpoint else {}
    return OTLPSpanExporter(**kwargs)
