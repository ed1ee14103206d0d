"""``GET /v1/events``: the event log, filtered and paginated (see :mod:`liquid.events.history`).

Auth as :mod:`liquid.api.stats`: a tenant key sees its own tenant's events only (naming
another tenant, or a ref in another tenant, is 403); an operator key sees every tenant's
and the system's events (``auth.failed``, ``request.failed``, ...), or the one ``tenant``
names.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from liquid.api.routes import Ctx, run
from liquid.api.stats import Who
from liquid.errors import Forbidden, InvalidInput
from liquid.events.history import MAX_LIMIT, EventQuery, Order, RefFilter, read_page
from liquid.events.log import kinds_matching
from liquid.refs import check_slug

router = APIRouter(prefix="/v1", tags=["events"])

_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _iso_only(value: object) -> object:
    """Refuse a number where an ISO 8601 time is asked: pydantic would read it as Unix seconds."""
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError(f"expected an ISO 8601 time (2026-12-01T00:00:00Z), got the number {value!r}")
    return value


#: A time in a query: ISO 8601 only (the schema says a date-time string).
IsoTime = Annotated[datetime, BeforeValidator(_iso_only)]


@router.get("/events", summary="Events, newest first, filtered by tenant, kind, ref and time")
async def list_events(
    ctx: Ctx,
    who: Who,
    tenant: Annotated[str | None, Query(description="Only this tenant (tenant keys: their own).")] = None,
    kind: Annotated[
        str | None,
        Query(description="Comma-separated kinds or short names: `move,purge`, `object.read`, `apikey.*`."),
    ] = None,
    ref: Annotated[
        str | None, Query(description="A ref (`liquid://t/ns/key@3`), or one without `@version` for all.")
    ] = None,
    start: Annotated[IsoTime | None, Query(alias="from", description="From (ISO 8601, inclusive).")] = None,
    end: Annotated[IsoTime | None, Query(alias="to", description="To (ISO 8601, exclusive).")] = None,
    order: Annotated[Order, Query(description="`desc` (newest first) or `asc`.")] = "desc",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Events per page.")] = 100,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> dict[str, Any]:
    if tenant is not None:
        check_slug(tenant, "tenant")
    refs = RefFilter.parse(ref) if ref is not None else None
    if not who.is_admin:
        if tenant is not None and tenant != who.tenant:
            raise Forbidden("a tenant key sees its own tenant's events only", field="tenant")
        if refs is not None and refs.tenant != who.tenant:
            raise Forbidden("a tenant key sees its own tenant's events only", field="ref")
        tenant = who.tenant
    elif refs is not None and tenant is not None and refs.tenant != tenant:
        raise InvalidInput(f"ref {ref!r} is not in tenant {tenant!r}", field="ref")
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(
                f"{name} must carry a UTC offset (e.g. Z), got {value.isoformat()}", field=name
            )
    try:
        kinds = kinds_matching(kind.split(",")) if kind else []
    except ValueError as exc:
        raise InvalidInput(str(exc), field="kind") from None
    query = EventQuery(tenant=tenant, kinds=kinds, ref=refs, start=start, end=end, limit=limit, order=order)
    page = await run(read_page, ctx.service.engine, query, cursor=cursor)
    return page.as_dict()
