"""Errors as ``application/problem+json`` (RFC 9457), one stable ``type`` per error class.

Every error the API returns has the same body::

    {"type": "liquid:not-found", "title": "Not Found", "status": 404,
     "detail": "no object liquid://acme/results/x@1", "field": "ref", "instance": "/v1/refs/..."}

``type`` is :attr:`liquid.errors.LiquidError.type` (clients switch on it), ``title`` the
HTTP reason phrase, ``field`` the request part at fault (a path or query parameter, a
header, or a dotted path into the JSON body) or null.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any

import psycopg
import psycopg_pool
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from liquid.errors import LiquidError, RateLimited, StoreUnavailable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
#: Types for errors that do not come from a LiquidError.
TYPE_INVALID = "liquid:invalid-input"
TYPE_NOT_FOUND = "liquid:not-found"
TYPE_METHOD = "liquid:method-not-allowed"
TYPE_INTERNAL = "liquid:internal"
TYPE_RANGE = "liquid:range-not-satisfiable"
TYPE_UNAVAILABLE = "liquid:unavailable"


class Problem(BaseModel):
    """An error response (RFC 9457 problem details)."""

    type: str = Field(description="Stable error type, e.g. `liquid:not-found`; clients switch on it.")
    title: str = Field(description="HTTP reason phrase of the status.")
    status: int
    detail: str = Field(description="What was wrong, for humans.")
    field: str | None = Field(default=None, description="The request part at fault, if one is.")
    instance: str | None = Field(default=None, description="The request path.")


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(
    type_: str, status: int, detail: str, *, field: str | None = None, instance: str | None = None
) -> dict[str, Any]:
    return {
        "type": type_,
        "title": phrase(status),
        "status": status,
        "detail": detail,
        "field": field,
        "instance": instance,
    }


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


def problem(
    type_: str,
    status: int,
    detail: str,
    *,
    field: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return ProblemResponse(
        problem_body(type_, status, detail, field=field, instance=instance),
        status_code=status,
        headers=headers,
    )


def error_body(exc: LiquidError, instance: str | None = None) -> dict[str, Any]:
    return problem_body(exc.type, exc.status, exc.detail, field=exc.field, instance=instance)


def _field_of(loc: Sequence[Any]) -> str | None:
    parts = list(loc)
    if not parts:
        return None
    where, rest = parts[0], parts[1:]
    if where == "header" and rest:
        return "-".join(p.capitalize() for p in str(rest[0]).split("-"))
    if where in ("query", "path", "cookie") and rest:
        return str(rest[0])
    if where == "body":
        return ".".join(str(p) for p in rest) or "body"
    return ".".join(str(p) for p in parts)


#: What a tenant is told for each server-side error type; the details (store URLs, buckets,
#: locators, backend messages) go to the server log under an incident id, never in the body.
_PUBLIC_DETAIL = {
    "liquid:store": "a storage backend failed",
    "liquid:integrity": "the stored bytes failed their integrity check and were not served",
    "liquid:config": "the server is misconfigured",
    "liquid:missing-dependency": "the server lacks a component it needs",
    "liquid:key-unavailable": "an encryption key this object needs is not available to the server",
}


async def _liquid_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LiquidError)
    if exc.status < 500:
        limited = (
            {"Retry-After": str(max(1, math.ceil(exc.retry_after)))} if isinstance(exc, RateLimited) else None
        )
        return problem(
            exc.type, exc.status, exc.detail, field=exc.field, instance=request.url.path, headers=limited
        )
    incident = uuid.uuid4().hex[:12]
    log.warning("incident %s on %s %s: %r", incident, request.method, request.url.path, exc)
    headers: dict[str, str] | None = None
    if isinstance(exc, StoreUnavailable):
        # Written by Liquid for tenants (which tier, when to retry): no backend details in it.
        detail = exc.detail
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    else:
        detail = _PUBLIC_DETAIL.get(exc.type, "the server failed")
        if exc.status == 503:
            headers = {"Retry-After": "5"}
    return problem(
        exc.type,
        exc.status,
        f"{detail} (incident {incident}); the server log has the details",
        field=exc.field if exc.status != 503 else None,
        instance=request.url.path,
        headers=headers,
    )


def catalog_unavailable(retry_after: float) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The handler for a catalog (PostgreSQL) that cannot be reached: 503 with ``Retry-After``."""

    async def handler(request: Request, exc: Exception) -> Response:
        incident = uuid.uuid4().hex[:12]
        log.warning(
            "incident %s on %s %s: catalog unavailable: %r", incident, request.method, request.url.path, exc
        )
        return problem(
            TYPE_UNAVAILABLE,
            503,
            f"the catalog is unavailable; retry shortly (incident {incident})",
            instance=request.url.path,
            headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
        )

    return handler


#: Exceptions that mean the catalog database cannot be reached right now (a restart, a failover,
#: an exhausted pool), as opposed to a bad statement: those are 503s a client retries.
CATALOG_OUTAGES: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx")
        reason = ctx.get("error", "malformed") if isinstance(ctx, dict) else "malformed"
        return problem(
            TYPE_INVALID,
            400,
            f"the request body is not valid JSON: {reason}",
            field="body",
            instance=request.url.path,
        )
    field = _field_of(first.get("loc", ()))
    msg = str(first.get("msg", "invalid value"))
    detail = f"{field}: {msg}" if field else msg
    if "input" in first and first.get("type") != "missing":
        shown = repr(first["input"])
        detail += f" (got {shown[:200]})"
    if len(errors) > 1:
        detail += f"; and {len(errors) - 1} more problem(s)"
    return problem(TYPE_INVALID, 400, detail, field=field, instance=request.url.path)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 404:
        type_, detail = TYPE_NOT_FOUND, f"no route {request.url.path!r}; see /docs for the API"
    elif status == 405:
        type_, detail = TYPE_METHOD, f"method {request.method} is not allowed on {request.url.path!r}"
    else:
        type_, detail = f"liquid:http-{status}", str(exc.detail)
    headers = dict(exc.headers) if exc.headers else None
    return problem(type_, status, detail, instance=request.url.path, headers=headers)


async def _disconnect(request: Request, exc: Exception) -> Response:
    return problem(TYPE_INVALID, 400, "the client went away before the body was read", field="body")


async def _internal(request: Request, exc: Exception) -> Response:
    incident = uuid.uuid4().hex[:12]
    log.error("unhandled error %s on %s %s", incident, request.method, request.url.path, exc_info=exc)
    return problem(
        TYPE_INTERNAL,
        500,
        f"internal error (incident {incident}); the server log has the details",
        instance=request.url.path,
    )


class CrashMiddleware:
    """Answer an unhandled error with the 500 problem here, and keep the connection.

    Starlette's outermost middleware also answers it (with :func:`_internal`), but then re-raises,
    and uvicorn, seeing an exception after a response began, logs it a second time and closes the
    connection: a client's next request on that keep-alive connection fails with a reset. Added
    as the innermost middleware, this answers first, so the others (metrics) see a 500 response.
    An error after the response began cannot be answered and still goes up.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started:
                raise
            response = await _internal(Request(scope), exc)
            await response(scope, receive, send)


def install(app: FastAPI, *, catalog_retry_after: float = 2.0) -> None:
    """Register the handlers that turn every error into problem+json."""
    app.add_exception_handler(LiquidError, _liquid_error)
    for cls in CATALOG_OUTAGES:
        app.add_exception_handler(cls, catalog_unavailable(catalog_retry_after))
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _disconnect)
    app.add_exception_handler(Exception, _internal)
