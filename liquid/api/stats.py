"""``/v1/stats`` and the export lag: usage and cost for the dashboard (see :mod:`liquid.events.stats`).

A tenant key sees its own tenant only (naming another tenant is 403); an operator key sees
every tenant, or the one ``tenant`` names. Answers come from ClickHouse when the app was
given a sink, else from PostgreSQL; ``source=postgres|clickhouse`` picks one.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from liquid.api.routes import Ctx, optional_principal, run
from liquid.errors import Forbidden, InvalidInput, Unauthorized
from liquid.events.stats import StatsFilter, StatsSource, export_lag
from liquid.refs import check_slug
from liquid.tenancy import Principal

router = APIRouter(prefix="/v1/stats", tags=["stats"])

Source = Literal["postgres", "clickhouse"]


async def _principal(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    if principal is None:
        raise Unauthorized("missing API key: send 'Authorization: Bearer lq_...'", field="Authorization")
    return principal


Who = Annotated[Principal, Depends(_principal)]


async def _filter(
    who: Who,
    tenant: Annotated[str | None, Query(description="Only this tenant (tenant keys: their own).")] = None,
    namespace: Annotated[str | None, Query(description="Only this namespace.")] = None,
    start: Annotated[date | None, Query(alias="from", description="First UTC day (inclusive).")] = None,
    end: Annotated[date | None, Query(alias="to", description="Last UTC day (exclusive).")] = None,
) -> StatsFilter:
    if tenant is not None:
        check_slug(tenant, "tenant")
    if namespace is not None:
        check_slug(namespace, "namespace")
    if not who.is_admin:
        if tenant is not None and tenant != who.tenant:
            raise Forbidden("a tenant key sees its own tenant's stats only", field="tenant")
        tenant = who.tenant
    try:
        return StatsFilter(tenant, namespace, start, end)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="to") from None


Filter = Annotated[StatsFilter, Depends(_filter)]
SourceParam = Annotated[
    Source | None, Query(description="Answer from this source (default: ClickHouse if set).")
]


def _source(ctx: Ctx, wanted: Source | None) -> StatsSource:
    sources: dict[str, StatsSource] = ctx.stats
    if wanted is None:
        return sources.get("clickhouse") or sources["postgres"]
    if wanted not in sources:
        raise InvalidInput(f"stats source {wanted!r} is not configured on this server", field="source")
    return sources[wanted]


def _answer(source: StatsSource, f: StatsFilter, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "source": source.name,
        "filter": {
            "tenant": f.tenant,
            "namespace": f.namespace,
            "from": f.start.isoformat() if f.start else None,
            "to": f.end.isoformat() if f.end else None,
        },
        "rows": rows,
    }


@router.get("/usage", summary="Writes, reads and purges per UTC day, tenant and namespace")
async def usage(ctx: Ctx, f: Filter, source: SourceParam = None) -> dict[str, Any]:
    s = _source(ctx, source)
    return _answer(s, f, await run(s.usage, f))


@router.get("/cost", summary="Objects, stored bytes and monthly cost per durable tier")
async def cost(ctx: Ctx, f: Filter, source: SourceParam = None) -> dict[str, Any]:
    s = _source(ctx, source)
    return _answer(s, f, await run(s.cost, f))


@router.get("/moves", summary="Moves and bytes moved per UTC day and (from, to) tier")
async def moves(ctx: Ctx, f: Filter, source: SourceParam = None) -> dict[str, Any]:
    s = _source(ctx, source)
    return _answer(s, f, await run(s.moves, f))


@router.get("/top-objects", summary="The most read versions")
async def top_objects(
    ctx: Ctx,
    f: Filter,
    source: SourceParam = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="How many.")] = 20,
) -> dict[str, Any]:
    s = _source(ctx, source)
    return _answer(s, f, await run(s.top_objects, f, limit))


@router.get("/idle", summary="Stored bytes and cost not read for 30, 90 and 180 days, per tier")
async def idle(ctx: Ctx, f: Filter, source: SourceParam = None) -> dict[str, Any]:
    s = _source(ctx, source)
    return _answer(s, f, await run(s.idle, f, ctx.service.clock()))


@router.get("/export", summary="Each ClickHouse sink's watermark and lag (operator keys)")
async def export(ctx: Ctx, who: Who) -> dict[str, Any]:
    if not who.is_admin:
        raise Forbidden("the export lag is for operator keys", field="Authorization")
    return {"sinks": await run(export_lag, ctx.service.engine, ctx.service.clock())}
