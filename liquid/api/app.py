"""The FastAPI application: :func:`create_app` wires routes, auth, errors, metrics and the shm sweeper.

Routes (OpenAPI at ``/openapi.json``, docs at ``/docs``):

=======================================  ==============================================================
``PUT /v1/objects/{ns}/{key}``           store a new version (body streamed) → 201 ref JSON
``GET|HEAD /v1/objects/{ns}/{key}``      bytes / metadata of the latest (or ``?version=``) version
``DELETE /v1/objects/{ns}/{key}``        delete the latest (or ``?version=``) version
``GET /v1/objects/{ns}``                 list (``prefix``, ``after``, ``limit``, ``all_versions``)
``GET /v1/versions/{ns}/{key}``          live versions of one key
``GET|HEAD|DELETE /v1/refs/{ref}``       the same by ref (``GET``/``HEAD`` also signed: ``?sig=&exp=``)
``POST /v1/refs:resolve``                a batch of refs → per-ref JSON form, facts or problem
``POST /v1/refs:sign``                   an HMAC-signed URL for one ref
``GET /v1/events``                       the event log, filtered and paginated (``liquid.api.events``)
``GET /v1/stats/...``                    usage, cost, moves, top objects, idle (``liquid.api.stats``)
``/healthz`` ``/readyz`` ``/metrics``    liveness, backend reachability, Prometheus
=======================================  ==============================================================

Versions of a key live at ``/v1/versions/...`` rather than ``/v1/objects/{ns}/{key}/versions``
because keys may themselves end in ``/versions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from liquid.api import problems
from liquid.api.auth import Authenticator, RefSigner
from liquid.api.events import router as events_router
from liquid.api.metrics import ApiMetrics, MetricsMiddleware
from liquid.api.problems import Problem
from liquid.api.ratelimit import BodyLimitMiddleware, TenantRateLimiter
from liquid.api.routes import ApiContext, router
from liquid.api.stats import router as stats_router
from liquid.api.tracing import TracingMiddleware
from liquid.config import Settings
from liquid.events.sinks import EventSink
from liquid.events.stats import ClickHouseStats, PostgresStats
from liquid.service import LiquidService
from liquid.shm import ShmCache

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
_ERROR_CODES = ("400", "401", "403", "404", "410", "413", "416", "429", "502", "503")


def create_app(
    service: LiquidService, settings: Settings | None = None, *, stats_sink: EventSink | None = None
) -> FastAPI:
    """The Liquid HTTP API over one service.

    Args:
        service: the core service (its catalog, stores and hot cache).
        settings: API, shm and limits; defaults to the service's own settings.
        stats_sink: the ClickHouse the exporter writes; ``/v1/stats`` answers from it when given.
    """
    settings = settings or service.settings
    metrics = ApiMetrics()
    # The service owns this node's shm copies (its deletes and expiries remove them); the API
    # writes them and runs the sweeper.
    shm = service.shm if settings.shm.enabled else None
    secret = settings.api.signing_secret
    signer = (
        RefSigner(secret.get_secret_value().encode(), max_ttl=settings.api.signed_ref_max_ttl)
        if secret is not None and secret.get_secret_value()
        else None
    )
    ctx = ApiContext(
        service=service,
        settings=settings,
        auth=Authenticator(service.tenancy, cache_ttl=settings.api.auth_cache_ttl),
        signer=signer,
        metrics=metrics,
        shm=shm,
        stats={"postgres": PostgresStats(service.engine, prices=settings.cost_model)},
        limiter=TenantRateLimiter(settings.api.rate_limit, settings.api.rate_burst),
    )
    if stats_sink is not None:
        ctx.stats["clickhouse"] = ClickHouseStats(stats_sink, prices=settings.cost_model)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_sweeper(shm, settings.shm.sweep_interval)) if shm is not None else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="Liquid",
        version=API_VERSION,
        summary="Tiered storage for workflow results, documents and artifacts.",
        lifespan=lifespan,
    )
    app.state.liquid = ctx
    app.include_router(router)
    app.include_router(stats_router)
    app.include_router(events_router)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    problems.install(app, catalog_retry_after=settings.resilience.catalog_retry_after)
    app.add_middleware(BodyLimitMiddleware, limit=settings.api.max_request_body)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if service.tracing.enabled:
        app.add_middleware(TracingMiddleware, tracing=service.tracing)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


async def _sweeper(shm: ShmCache, interval: float) -> None:
    while True:
        try:
            await anyio.to_thread.run_sync(shm.sweep)
        except Exception:
            log.exception("shared-memory sweep failed")
        await asyncio.sleep(max(interval, 0.05))


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema with every error documented as problem+json (and no 422: validation is 400)."""
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, description=__doc__, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    ref = {"$ref": "#/components/schemas/Problem"}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            responses.pop("422", None)
            for code in _ERROR_CODES:
                entry = responses.setdefault(code, {"description": problems.phrase(int(code))})
                if code == "503" and "content" in entry:
                    entry["content"]["application/problem+json"] = {"schema": ref}
                    continue
                entry["content"] = {"application/problem+json": {"schema": ref}}
            responses["default"] = {
                "description": "Error",
                "content": {"application/problem+json": {"schema": ref}},
            }
    return schema
