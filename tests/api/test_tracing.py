"""OpenTelemetry spans: a request and a move carry the trace id stored on the object.

Spans go to the SDK's own in-memory exporter (the exporter is the only thing swapped; the
API server, catalog, stores and mover are the real ones).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id
from sqlalchemy import text

from liquid.api.server import ApiServer
from liquid.bootstrap import Runtime, open_runtime
from liquid.config import MoverSettings, TracingSettings, load_settings
from liquid.tiering.journal import enqueue_move
from liquid.tiering.mover import Mover
from liquid.tracing import TRACE_ID_ATTR, Tracing
from tests.fakes import FakeClock

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def traced(api_settings: dict[str, Any]) -> Iterator[tuple[Runtime, InMemorySpanExporter, str]]:
    spans = InMemorySpanExporter()
    tracing = Tracing.from_settings(TracingSettings(), exporter=spans)
    rt = open_runtime(load_settings(**api_settings), migrate=False, tracing=tracing)
    server = ApiServer(rt.service)
    base = server.start()
    yield rt, spans, base
    server.stop()
    rt.close()


def _trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return format_trace_id(span.context.trace_id)


def _object(rt: Runtime, tenant: str, key: str) -> Any:
    with rt.service.engine.connect() as conn:
        return conn.execute(
            text("SELECT id, trace_id, home_tier FROM objects WHERE tenant_id = :t AND key = :k"),
            {"t": tenant, "k": key},
        ).one()


def test_a_request_and_a_move_carry_the_stored_trace_id(
    traced: tuple[Runtime, InMemorySpanExporter, str], api_service: Any
) -> None:
    rt, spans, base = traced
    tenant = f"tr-{os.urandom(4).hex()}"
    rt.service.tenancy.create_tenant(tenant)
    key = rt.service.tenancy.create_api_key(tenant)
    auth = {"Authorization": f"Bearer {key}"}

    # A put that arrives with a W3C traceparent: its server span continues that trace, and the
    # object (and its object.created event) store the same id.
    r = httpx.put(
        f"{base}/v1/objects/docs/a", content=os.urandom(300_000), headers={**auth, "traceparent": TRACEPARENT}
    )
    assert r.status_code == 201, r.text
    (server,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.name == "PUT /v1/objects/{namespace}/{key:path}"
    assert _trace(server) == TRACE and server.attributes is not None
    assert server.parent is not None and format_span_id(server.parent.span_id) == "00f067aa0ba902b7"
    assert server.attributes[TRACE_ID_ATTR] == TRACE and server.attributes["http.response.status_code"] == 201
    obj = _object(rt, tenant, "a")
    assert obj.trace_id == TRACE
    # The store call under it is a child span in the same trace.
    (put,) = [s for s in spans.get_finished_spans() if s.name == "store.put"]
    assert _trace(put) == TRACE and put.parent is not None and put.attributes is not None
    assert put.attributes["liquid.store"] == "warm" and put.attributes["liquid.bytes"] > 0

    # Without a caller's trace, the object stores the request span's own trace id.
    spans.clear()
    r = httpx.put(f"{base}/v1/objects/docs/b", content=b"x" * 10_000, headers=auth)
    assert r.status_code == 201
    (server,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert _object(rt, tenant, "b").trace_id == _trace(server)

    # A move (the real mover, its store calls included) carries the object's trace id.
    spans.clear()
    assert enqueue_move(rt.service.engine, obj.id, "cold", "cold", reason="demote") is not None
    mover = Mover.from_service(
        rt.service, clock=FakeClock(datetime.now(UTC)), settings=MoverSettings(grace_period=0)
    )
    assert mover.run_once().total("moved") == 1
    assert _object(rt, tenant, "a").home_tier == "cold"
    finished = spans.get_finished_spans()
    (move,) = [s for s in finished if s.name == "mover.move"]
    assert move.attributes is not None
    assert move.attributes[TRACE_ID_ATTR] == TRACE
    assert (move.attributes["liquid.object_id"], move.attributes["liquid.to_tier"]) == (obj.id, "cold")
    assert move.attributes["liquid.result"] == "moved"
    (cycle,) = [s for s in finished if s.name == "mover.cycle"]
    assert move.parent is not None and cycle.context is not None
    assert move.parent.span_id == cycle.context.span_id
    stores = {(s.name, (s.attributes or {}).get("liquid.store")) for s in finished}
    assert {("store.put", "cold"), ("store.open", "warm")} <= stores


def test_tracing_is_off_by_default(api_service: Any) -> None:
    assert not api_service.tracing.enabled and not Tracing.from_settings(TracingSettings()).enabled
    assert TracingSettings().exporter == "none"


def test_fastapi_adds_no_spans_of_its_own_under_a_global_provider(
    base_url: str, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Liquid's request spans are its own (liquid.tracing, no global provider). A global SDK provider
    # installed by something else in the process must not make FastAPI record a second set.
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    assert httpx.get(f"{base_url}/v1/objects/nothing-here", headers=auth).status_code == 200
    assert httpx.get(f"{base_url}/healthz").status_code == 200
    assert spans.get_finished_spans() == ()
