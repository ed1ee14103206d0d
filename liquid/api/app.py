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
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from liquid.api import problems
from liquid.api.auth import Authenticator, RefSigner
from liquid.api.capacity import OTHER, READS, UPLOADS, CapacityMiddleware
from liquid.api.events import router as events_router
from liquid.api.metrics import ApiMetrics, MetricsMiddleware
from liquid.api.policies import router as policies_router
from liquid.api.problems import Problem
from liquid.api.ratelimit import BodyLimitMiddleware, TenantRateLimiter
from liquid.api.routes import ApiContext, lean_routes, router
from liquid.api.stats import router as stats_router
from liquid.api.tracing import TracingMiddleware
from liquid.api.vectors import lean_routes as vector_lean_routes
from liquid.api.vectors import router as vectors_router
from liquid.config import Settings
from liquid.events.sinks import EventSink
from liquid.events.stats import ClickHouseStats, PostgresStats
from liquid.policy.models import PolicySet
from liquid.service import LiquidService
from liquid.tiering.engine import AppliedPolicies
from liquid.vectors.search import VectorSearch

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

    source = AppliedPolicies(service.engine)

    def applied() -> PolicySet | None:
        """The applied policy set, whose CostModels price ``/v1/stats`` as ``policy plan`` does."""
        current = source.current()
        return current[0] if current is not None else None

    ctx = ApiContext(
        service=service,
        settings=settings,
        auth=Authenticator(service.tenancy, cache_ttl=settings.api.auth_cache_ttl),
        signer=signer,
        metrics=metrics,
        shm=shm,
        stats={"postgres": PostgresStats(service.engine, policies=applied)},
        limiter=TenantRateLimiter(settings.api.rate_limit, settings.api.rate_burst),
        upload_threads=anyio.CapacityLimiter(settings.resilience.max_uploads),
    )
    vectors = VectorSearch(settings, engine=service.engine, access=service.access, clock=service.clock)
    if stats_sink is not None:
        ctx.stats["clickhouse"] = ClickHouseStats(stats_sink, policies=applied)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = []
        if shm is not None:
            tasks.append(
                asyncio.create_task(_sweeper(shm.sweep, settings.shm.sweep_interval, "shared-memory"))
            )
        if settings.vectors.indexes:
            # Purged objects' vectors in external indexes (pgvector's go in the purge's transaction).
            tasks.append(asyncio.create_task(_sweeper(vectors.sweep, 10.0, "vector")))
        # Hot hits read Redis on this loop (redis-py's asyncio client), not in a worker thread.
        hot = service.hot.async_client() if service.hot is not None else None
        ctx.hot_async, ctx.hot_loop = hot, asyncio.get_running_loop()
        # pgvector searches wait on PostgreSQL in this loop (their own pool), not in worker threads.
        await vectors.astart()
        try:
            yield
        finally:
            await vectors.astop()
            ctx.hot_async = ctx.hot_loop = None
            if hot is not None:
                await hot.aclose()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            vectors.close()

    app = FastAPI(
        title="Liquid",
        version=API_VERSION,
        summary="Tiered storage for workflow results, documents and artifacts.",
        lifespan=lifespan,
        docs_url=None,  # served below from the packaged Swagger UI: no CDN, so /docs works offline
        redoc_url=None,
        # Liquid's own spans and metrics (liquid.tracing: no global provider; /metrics) describe
        # each request; FastAPI's would add a second set the moment anything else in the process
        # installs a global OpenTelemetry provider, and checking for one costs every request
        # ~20 µs (a tenth of a hot 1 KiB GET's time in the app).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.liquid = ctx
    app.state.vectors = vectors
    app.router.routes.extend(vector_lean_routes())  # first: PUT .../{key}/vectors is not an object's PUT
    app.router.routes.extend(lean_routes())
    app.include_router(vectors_router)
    app.include_router(router)
    app.include_router(stats_router)
    app.include_router(events_router)
    app.include_router(policies_router)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    problems.install(app, catalog_retry_after=settings.resilience.catalog_retry_after)
    res = settings.resilience
    app.add_middleware(problems.CrashMiddleware)  # first added: the innermost
    app.add_middleware(
        CapacityMiddleware,
        limits={UPLOADS: res.max_uploads, READS: res.max_reads, OTHER: res.max_other},
        retry_after=res.busy_retry_after,
    )
    app.add_middleware(BodyLimitMiddleware, limit=settings.api.max_request_body)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if service.tracing.enabled:
        app.add_middleware(TracingMiddleware, tracing=service.tracing)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    _offline_docs(app)
    return app


def _offline_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the ``swagger-ui-bundle-v2`` wheel, so it renders with no Internet."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/static", StaticFiles(directory=swagger_ui_path), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Liquid API",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
        )


async def _sweeper(sweep: Callable[[], object], interval: float, what: str) -> None:
    while True:
        try:
            await anyio.to_thread.run_sync(sweep)
        except Exception:
            log.exception("%s sweep failed", what)
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
            if "HTTPValidationError" in str(responses.get("422")):
                responses.pop("422")  # request validation errors are 400s
            elif "422" in responses:
                responses["422"]["content"] = {"application/problem+json": {"schema": ref}}
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
