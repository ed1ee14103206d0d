"""The ``/v1`` routes. Each handler is thin: parse, call the core in a worker thread, shape the answer."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote_to_bytes

import anyio
import anyio.to_thread
import orjson
import pydantic
import redis.asyncio
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry import trace
from sqlalchemy import text
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Match, Route
from starlette.types import Scope

from liquid.api.auth import TENANT_HEADER, Authenticator, Caller, RefSigner, acting_tenant, bearer_key
from liquid.api.metrics import ApiMetrics
from liquid.api.models import (
    ExplainModel,
    FinishRequest,
    FinishResponse,
    HealthModel,
    ObjectModel,
    PageModel,
    ReadyModel,
    RefModel,
    ResolveRequest,
    ResolveResponse,
    SignRequest,
    SignResponse,
)
from liquid.api.problems import TYPE_RANGE, error_body, problem
from liquid.api.ratelimit import TenantRateLimiter
from liquid.api.streaming import BodyBridge, etag_matches, parse_range
from liquid.catalog import db
from liquid.config import Settings
from liquid.errors import (
    Forbidden,
    InvalidInput,
    InvalidRef,
    LiquidError,
    ObjectNotFound,
    StoreUnavailable,
    TooLarge,
    Unauthorized,
)
from liquid.limits import MAX_VERSION, check_header_text, check_instant, expiry_from_ttl
from liquid.refs import IpcHint, RefInfo, ResultRef, ref_json
from liquid.service import LiquidService, ObjectInfo, ObjectReader, Resolved
from liquid.shm import ShmCache, ShmWriter
from liquid.tenancy import Principal
from liquid.tracing import TRACE_ID_ATTR, current_trace_id
from liquid.units import parse_duration
from liquid.versions import VersionFacts

T = TypeVar("T")
B = TypeVar("B", bound=pydantic.BaseModel)
log = logging.getLogger(__name__)
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"

#: Bodies up to this size from durable tiers are read whole in one thread hop instead of streamed.
SMALL_BODY = 256 * 1024


def _decimal_version(value: object) -> object:
    """A version in a query string is written in decimal digits: pydantic's lax ``int`` also reads
    ``1.0`` and `` 1`` as 1 and ``1_0`` as 10, which would serve a version the caller never named."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("a version is a whole number written in decimal digits, e.g. 3")
    return value


#: The ``version`` query parameter of the object routes.
VersionQuery = Annotated[int | None, pydantic.BeforeValidator(_decimal_version), Query(ge=1, le=MAX_VERSION)]


@dataclass
class ApiContext:
    """Everything the routes need; one per app (``app.state.liquid``)."""

    service: LiquidService
    settings: Settings
    auth: Authenticator
    signer: RefSigner | None
    metrics: ApiMetrics
    shm: ShmCache | None
    #: Sources of /v1/stats by name: "postgres" always, "clickhouse" when a sink was given.
    stats: dict[str, Any]
    limiter: TenantRateLimiter
    #: Every request acts as this principal, keys unchecked (in-process clients); None: by key.
    fixed_principal: Principal | None = None
    #: The hot cache's asyncio client, opened by the app's lifespan on its event loop (hot hits
    #: then cost no worker thread); None without a lifespan, a hot cache or a derivable client.
    hot_async: redis.asyncio.Redis | None = None
    hot_loop: asyncio.AbstractEventLoop | None = None
    #: Worker threads of the uploads' own, as many as ``resilience.max_uploads`` (which the capacity
    #: middleware enforces, so an upload never waits here): uploads never take the shared pool.
    upload_threads: anyio.CapacityLimiter | None = None

    def hot_client(self) -> redis.asyncio.Redis | None:
        """The asyncio hot-cache client when this request runs on the loop that owns it."""
        if self.hot_async is None:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self.hot_async if loop is self.hot_loop else None


#: The request's deadline for one call into the core (``resilience.request_timeout``), set per
#: request by :func:`context`.
_DEADLINE: ContextVar[float | None] = ContextVar("liquid_api_deadline", default=None)


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call the synchronous core in a worker thread, within the request's deadline.

    Past the deadline the request gets a 503 with ``Retry-After`` at once; the thread is left to
    finish on its own (every backend call under it is bounded by its own timeouts).
    """
    timeout = _DEADLINE.get()
    if timeout is None:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
    try:
        with anyio.fail_after(timeout):
            return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), abandon_on_cancel=True)
    except TimeoutError:
        raise StoreUnavailable(
            f"the request did not finish within {timeout:g} s (a backend is slow); retry later",
            retry_after=min(timeout, 10.0),
        ) from None


async def within_deadline(work: Awaitable[T]) -> T:
    """Await core work that runs on the event loop itself, within the request's deadline (as :func:`run`).

    ``asyncio.timeout``, not anyio's cancel scope: the work is asyncio's own (psycopg's async pool),
    the scope cost a search ~8 µs against ~3, and asyncio cancels once, so the work's cleanup
    (giving its connection back to the pool) is not cancelled again as it awaits.
    """
    timeout = _DEADLINE.get()
    if timeout is None:
        return await work
    try:
        async with asyncio.timeout(timeout):
            return await work
    except TimeoutError:
        raise StoreUnavailable(
            f"the request did not finish within {timeout:g} s (a backend is slow); retry later",
            retry_after=min(timeout, 10.0),
        ) from None


def app_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.liquid
    return ctx


async def context(request: Request) -> ApiContext:
    """The app's context, as a dependency; it also starts the request's deadline for :func:`run`."""
    ctx = app_context(request)
    _DEADLINE.set(ctx.settings.resilience.request_timeout)
    return ctx


Ctx = Annotated[ApiContext, Depends(context)]
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer lq_...`")


async def optional_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal | None:
    """The principal of the presented key; None without one (the context's fixed one in-process)."""
    fixed = app_context(request).fixed_principal
    if fixed is not None:
        return fixed
    if credentials is None:
        if request.headers.get("authorization"):
            raise Unauthorized("use 'Authorization: Bearer lq_...'", field="Authorization")
        return None
    ctx = app_context(request)
    principal = await ctx.auth.authenticate(credentials.credentials)
    # Before any other work: an over-limit tenant costs one token-bucket check.
    ctx.limiter.check(principal.tenant if principal.tenant is not None else f"admin:{principal.key_prefix}")
    return principal


TenantHeader = Annotated[
    str | None,
    Header(
        alias=TENANT_HEADER,
        description="Admin keys: the tenant to act on. Tenant keys may only name their own tenant.",
    ),
]


async def caller(
    principal: Annotated[Principal | None, Depends(optional_principal)], tenant: TenantHeader = None
) -> Caller:
    if principal is None:
        raise Unauthorized("missing API key: send 'Authorization: Bearer lq_...'", field="Authorization")
    return Caller(principal, acting_tenant(principal, tenant))


Who = Annotated[Caller, Depends(caller)]
Namespace = Annotated[
    str,
    Path(description="Namespace: a slug (lowercase letters, digits, '-', '_', '.').", pattern=SLUG_PATTERN),
]
Key = Annotated[str, Path(description="Object key; may contain '/'.")]
RefPath = Annotated[
    str,
    Path(
        description="A ref, `liquid://tenant/namespace/key@version` percent-encoded, or without the scheme."
    ),
]


def parse_ref_path(value: str, parse: Callable[[object], ResultRef] = ResultRef.parse) -> ResultRef:
    """The ref a path names (with or without its scheme, or with one slash left of it by a proxy)."""
    if value.startswith("liquid:/") and not value.startswith("liquid://"):
        value = "liquid://" + value[len("liquid:/") :]
    elif not value.startswith("liquid://"):
        value = "liquid://" + value
    return parse(value)


async def ref_reader(
    request: Request,
    ref: RefPath,
    principal: Annotated[Principal | None, Depends(optional_principal)],
    tenant: TenantHeader = None,
    sig: Annotated[str | None, Query(description="Signature of a signed ref (no key needed).")] = None,
    exp: Annotated[int | None, Query(description="Expiry of a signed ref, Unix seconds.")] = None,
) -> tuple[str, ResultRef]:
    """(tenant, ref) for read routes on ``/v1/refs``: by key, or by signature."""
    return read_target(app_context(request), ref, principal, tenant, sig, exp)


def read_target(
    c: ApiContext, ref: str, principal: Principal | None, tenant: str | None, sig: str | None, exp: int | None
) -> tuple[str, ResultRef]:
    """(tenant, ref) a read of ``ref`` acts on: by key, or by signature."""
    # Parsed once per ref text in this process: a runtime reads the same refs again and again.
    r = parse_ref_path(ref, c.service.versions.parse)
    if sig is not None or exp is not None:
        if sig is None or exp is None:
            raise InvalidInput("a signed ref needs both sig and exp", field="sig" if sig is None else "exp")
        if c.signer is None:
            raise Unauthorized("signed refs are not enabled on this server (api.signing_secret)", field="sig")
        c.signer.verify(r, sig, exp)
        c.limiter.check(r.tenant)
        return r.tenant, r
    if principal is None:
        raise Unauthorized("missing API key: send 'Authorization: Bearer lq_...'", field="Authorization")
    return acting_tenant(principal, tenant, ref=r), r


async def ref_writer(
    ref: RefPath,
    principal: Annotated[Principal | None, Depends(optional_principal)],
    tenant: TenantHeader = None,
) -> tuple[str, ResultRef]:
    r = parse_ref_path(ref)
    if principal is None:
        raise Unauthorized("missing API key: send 'Authorization: Bearer lq_...'", field="Authorization")
    return acting_tenant(principal, tenant, ref=r), r


#: A percent-escape of a byte above 0x7F: only these can make a path's bytes invalid UTF-8.
_HIGH_ESCAPE = re.compile(rb"%[89a-fA-F]")


def check_utf8_path(request: Request) -> None:
    """Refuse a path whose percent-escapes are not UTF-8.

    Starlette decodes them with replacement, so ``%FF`` and ``%FE`` would both become U+FFFD:
    two different keys silently one, and a read of one returning the other's bytes.
    """
    raw = request.scope.get("raw_path")
    if not isinstance(raw, bytes) or (raw.isascii() and not _HIGH_ESCAPE.search(raw)):
        return  # every byte, escaped or not, is ASCII: UTF-8 whatever the escapes
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(
            f"the path {raw[:200].decode('ascii', 'replace')!r} has percent-escapes that are not UTF-8;"
            " keys are Unicode text, percent-encoded as UTF-8",
            field="key",
        ) from None


async def utf8_path(request: Request) -> None:
    """:func:`check_utf8_path` as the routers' dependency.

    A coroutine, as every dependency here must be: FastAPI runs a plain ``def`` dependency in a
    worker thread, a hop there and back on every request (``tests/api/test_dependencies.py``).
    """
    check_utf8_path(request)


router = APIRouter(dependencies=[Depends(utf8_path)])
_ERRORS = {400, 401, 403, 404, 410, 502, 503}
BINARY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The object's bytes, streamed; its Content-Type is stored with it.",
    }
}
BINARY_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The bytes.",
    },
    206: {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}, "description": "A range."},
    304: {"description": "Not modified (If-None-Match matched the ETag)."},
    307: {"description": "Redirect to a short-lived presigned URL (large cold objects, when enabled)."},
}


# ---------------------------------------------------------------- helpers


def _etag(sha256: str) -> str:
    return f'"{sha256}"'


def _ref_location(uri: str) -> str:
    return "/v1/refs/" + quote(uri, safe="")


def _meta_headers(info: ObjectInfo) -> dict[str, str]:
    headers = {
        "ETag": _etag(info.sha256),
        "Accept-Ranges": "bytes",
        "Content-Type": info.content_type,
        "Content-Length": str(info.size),
        "Last-Modified": format_datetime(info.created_at.astimezone(UTC), usegmt=True),
        "X-Liquid-Ref": info.ref.uri,
        "X-Liquid-Version": str(info.ref.version),
        "X-Liquid-Home-Tier": info.home_tier,
        "X-Liquid-Created-At": info.created_at.isoformat(),
    }
    if info.expires_at is not None:
        headers["X-Liquid-Expires-At"] = info.expires_at.isoformat()
    return headers


def _close(reader: ObjectReader) -> None:
    close = getattr(reader.chunks, "close", None)
    if close is not None:
        close()


def _not_modified(sha256: str) -> Response:
    return Response(status_code=304, headers={"ETag": _etag(sha256)})


async def _object_ref(c: ApiContext, tenant: str, namespace: str, key: str, version: int | None) -> ResultRef:
    if version is None:
        return await run(c.service.latest, tenant, namespace, key)
    return ResultRef(tenant, namespace, key, version)


def _on_version(
    c: ApiContext, tenant: str, namespace: str, key: str, version: int | None, fn: Callable[[ResultRef], T]
) -> Callable[[], T]:
    """``fn`` of the named version, or of the latest one found first in the same worker-thread call
    (one hop, not one for the version and one for ``fn``)."""
    if version is not None:
        ref = ResultRef(tenant, namespace, key, version)
        return lambda: fn(ref)
    return lambda: fn(c.service.latest(tenant, namespace, key))


async def _serve(request: Request, c: ApiContext, tenant: str, ref: ResultRef) -> Response:
    """GET: 200 / 206 / 304 / 307 / 416 for one version."""
    svc = c.service
    api = c.settings.api
    inm = request.headers.get("if-none-match")
    rng = parse_range(request.headers.get("range"))
    info: ObjectInfo | None = None
    if (
        inm is not None
        or (rng is not None and rng.suffix is not None)
        or (api.presign_redirect and rng is None)
    ):
        info = await run(svc.head, tenant, ref)
        if inm is not None and etag_matches(inm, info.sha256):
            return _not_modified(info.sha256)
        if (
            api.presign_redirect
            and rng is None
            and info.home_tier in ("cold", "archive")
            and info.size >= api.presign_min_size
        ):
            signed = await run(svc.presign_get, tenant, ref, expires=int(api.presign_ttl))
            if signed is not None:
                c.metrics.read_from("redirect", info.size)
                return RedirectResponse(
                    signed[1],
                    status_code=307,
                    headers={"Cache-Control": "no-store", "ETag": _etag(info.sha256)},
                )
    start, end = 0, None
    if rng is not None:
        if rng.suffix is not None:
            assert info is not None
            span = rng.resolve(info.size)
            if span is None:
                return _unsatisfiable(request, info.size)
            start, end = span
        else:
            assert rng.first is not None
            start, end = rng.first, None if rng.last is None else rng.last + 1
    reader: ObjectReader | None = None
    cached = True
    hot_client = c.hot_client()
    if (
        hot_client is not None
        and svc.hot is not None
        and not svc.hot.kills_pending
        and svc.known(ref) is not None
    ):
        # A hot hit on the event loop itself: no worker thread, no catalog round trip (the copy is
        # checked against the version's checksum, known from an earlier read in this process).
        reader = await svc.aopen_hot(tenant, ref, hot_client, start=start, end=end)
        cached = False
    data: bytes | None = None
    if reader is None:
        opened, data = await run(_open_read, c, tenant, ref, start, end, cached, whole=rng is None)
        reader = opened
    if rng is not None and rng.suffix is None and start >= reader.size:
        _close(reader)
        return _unsatisfiable(request, reader.size)
    c.metrics.read_from(reader.source, reader.length)
    headers = {
        "ETag": _etag(reader.sha256),
        "Accept-Ranges": "bytes",
        "Content-Type": reader.content_type,
        "Content-Length": str(reader.length),
        "X-Liquid-Ref": reader.ref.uri,
        "X-Liquid-Source": reader.source,
    }
    status = 200
    if rng is not None:
        status = 206
        headers["Content-Range"] = f"bytes {reader.start}-{reader.end - 1}/{reader.size}"
    if reader.source in ("inline", "hot"):
        # Served from the one buffer Redis answered with: no copy, whatever the size.
        return Response(reader.buffer(), status_code=status, headers=headers)
    if data is not None:
        return Response(data, status_code=status, headers=headers)
    writer: ShmWriter | None = None
    if _to_shm(c, reader, whole=rng is None):
        assert c.shm is not None
        writer = c.shm.writer()
    if writer is None and reader.length <= SMALL_BODY:
        return Response(await run(reader.read), status_code=status, headers=headers)
    return StreamingResponse(
        iterate_in_threadpool(_teed(reader, writer, c)), status_code=status, headers=headers
    )


def _open_read(
    c: ApiContext, tenant: str, ref: ResultRef, start: int, end: int | None, cached: bool, *, whole: bool
) -> tuple[ObjectReader, bytes | None]:
    """Open the version and, when :func:`_serve` would read it whole anyway (a small body from a
    durable tier, no shared-memory copy to write), read it in the same worker-thread call: one
    hop there and back instead of two."""
    reader = c.service.open(tenant, ref, start=start, end=end, cached=cached)
    if (
        reader.source in ("inline", "hot")
        or reader.length > SMALL_BODY
        or (not whole and start >= reader.size)  # a range past the end: 416, nothing read
        or _to_shm(c, reader, whole=whole)
    ):
        return reader, None
    try:
        return reader, reader.read()
    except BaseException:
        _close(reader)
        raise


def _to_shm(c: ApiContext, reader: ObjectReader, *, whole: bool) -> bool:
    """Whether this read also writes a copy into shared memory for local readers."""
    return (
        whole
        and c.shm is not None
        and c.service.classifier.allows_shm(reader.classification)
        and c.shm.wants(reader.content_type, reader.size)
        and c.shm.hint(reader.ref, reader.sha256) is None
    )


def _teed(reader: ObjectReader, writer: ShmWriter | None, c: ApiContext) -> Iterator[bytes | memoryview]:
    """The reader's chunks, copied into shared memory on the way when ``writer`` is given."""
    try:
        for chunk in reader:
            if writer is not None:
                writer.write(chunk)
            yield chunk
        if writer is not None and writer.commit(reader.ref, reader.sha256) is not None:
            c.metrics.shm_copies.inc()
            # Published after the bytes were read: a delete that landed meanwhile already ran its
            # unlink, so look again and take the copy back rather than serve a deleted version.
            if not c.service.is_live(reader.ref) and c.shm is not None:
                c.shm.delete(reader.ref, reader.sha256)
    finally:
        if writer is not None and writer.active:
            writer.abort()


def _unsatisfiable(request: Request, size: int) -> Response:
    return problem(
        TYPE_RANGE,
        416,
        f"the requested range is not within the object's {size} bytes",
        field="Range",
        instance=request.url.path,
        headers={"Content-Range": f"bytes */{size}"},
    )


async def _head(request: Request, c: ApiContext, tenant: str, ref: ResultRef) -> Response:
    return _head_answer(request, await run(c.service.head, tenant, ref))


def _head_answer(request: Request, info: ObjectInfo) -> Response:
    inm = request.headers.get("if-none-match")
    if inm is not None and etag_matches(inm, info.sha256):
        return _not_modified(info.sha256)
    return Response(status_code=200, headers=_meta_headers(info))


async def _delete(c: ApiContext, who: Caller, tenant: str, ref: ResultRef) -> Response:
    info = await run(c.service.delete, tenant, ref, actor=f"key:{who.principal.key_prefix}")
    return JSONResponse(info.to_json())


def _utf8_header(value: str | None, header: str) -> str | None:
    """A header's text as UTF-8, as the in-process client passes it (the server reads header bytes
    as Latin-1, so ``geheim-ü`` sent as UTF-8 would be stored as ``geheim-Ã¼``); 400 if not UTF-8."""
    if value is None or value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise InvalidInput(f"{header} is not UTF-8 text", field=header) from None


def _put_options(
    tags: str | None, retention: str | None, expires_at: str | None, legal_hold: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if tags is not None:
        try:
            # errors="strict": %FF is refused, not read as U+FFFD (two tags could collide).
            pairs = parse_qsl(tags, keep_blank_values=True, strict_parsing=bool(tags), errors="strict")
        except ValueError:
            raise InvalidInput(
                f"X-Liquid-Tags must be URL-encoded pairs like 'a=1&b=two', got {tags!r}",
                field="X-Liquid-Tags",
            ) from None
        out["tags"] = dict(pairs)
    if retention is not None:
        try:
            out["ttl"] = parse_duration(retention)
        except ValueError as exc:
            raise InvalidInput(f"X-Liquid-Retention: {exc}", field="X-Liquid-Retention") from None
        expiry_from_ttl(datetime.now(UTC), out["ttl"], "X-Liquid-Retention")  # bounds, before the body
    if expires_at is not None:
        try:
            when = datetime.fromisoformat(expires_at)
        except ValueError:
            raise InvalidInput(
                f"X-Liquid-Expires-At must be an ISO 8601 time with offset, got {expires_at[:100]!r}",
                field="X-Liquid-Expires-At",
            ) from None
        out["expires_at"] = check_instant(when, "X-Liquid-Expires-At")
    if legal_hold is not None:
        value = legal_hold.strip().lower()
        if value not in ("true", "false", "1", "0"):
            raise InvalidInput(
                f"X-Liquid-Legal-Hold must be true or false, got {legal_hold!r}", field="X-Liquid-Legal-Hold"
            )
        out["legal_hold"] = value in ("true", "1")
    return out


#: Service arguments that came from a request header, to name the header in a 400.
_HEADER_OF = {
    "expires_at": "X-Liquid-Expires-At",
    "ttl": "X-Liquid-Retention",
    "content_type": "Content-Type",
    "tags": "X-Liquid-Tags",
    "classification": "X-Liquid-Classification",
    "trace_id": "X-Liquid-Trace-Id",
    "correlation_id": "X-Liquid-Correlation-Id",
    "execution_id": "X-Liquid-Execution-Id",
    "scope": "X-Liquid-Scope",
}


def _header_fields(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` with InvalidInput's ``field`` renamed from the service argument to the request header."""

    def call(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except InvalidInput as exc:
            if exc.field in _HEADER_OF:
                exc.field = _HEADER_OF[exc.field]
            raise

    return call


def _trace_from(traceparent: str | None) -> str | None:
    # W3C trace context: version-traceid-parentid-flags; only a well-formed one is used.
    if traceparent is None:
        return None
    parts = traceparent.strip().split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and all(ch in "0123456789abcdef" for ch in parts[1]):
        return parts[1]
    return None


# ------------------------------------------------------------------ objects

OptHeader = Annotated[str | None, Header()]
#: The patterns ``PUT``'s headers are checked against (by FastAPI on the documented route, by
#: :func:`put_lean` by hand, with the same errors).
RETENTION_PATTERN = r"^(\d+(\.\d+)?|(\d+(\.\d+)?(ms|s|m|h|d|w))+)$"
LEGAL_HOLD_PATTERN = "^(true|false|1|0)$"
SCOPE_PATTERN = "^(step|execution|workflow|permanent)$"


@router.put(
    "/v1/objects/{namespace}/{key:path}",
    status_code=201,
    response_model=RefModel,
    openapi_extra=BINARY_BODY,
    summary="Store a new version (streamed)",
    tags=["objects"],
    responses={413: {"description": "Body larger than max_object_size."}},
)
async def put_object(
    request: Request,
    c: Ctx,
    who: Who,
    namespace: Namespace,
    key: Key,
    x_liquid_tags: Annotated[str | None, Header(description="Tags, URL-encoded: `a=1&b=two`.")] = None,
    x_liquid_classification: OptHeader = None,
    x_liquid_retention: Annotated[
        str | None,
        Header(
            description="Expire after: `30d`, `12h`, `3600`.",
            pattern=RETENTION_PATTERN,
        ),
    ] = None,
    x_liquid_expires_at: Annotated[
        str | None, Header(description="Expire at (ISO 8601 with offset).")
    ] = None,
    x_liquid_legal_hold: Annotated[
        str | None, Header(description="`true` to block deletion.", pattern=LEGAL_HOLD_PATTERN)
    ] = None,
    x_liquid_trace_id: OptHeader = None,
    x_liquid_correlation_id: OptHeader = None,
    x_liquid_execution_id: OptHeader = None,
    x_liquid_scope: Annotated[
        str | None,
        Header(
            description="Lifetime scope: step | execution | workflow | permanent. Step and execution"
            " scopes start their policy clock when the execution finishes"
            " (`POST /v1/executions/{id}:finish`).",
            pattern=SCOPE_PATTERN,
        ),
    ] = None,
    traceparent: Annotated[
        str | None, Header(description="W3C trace context; its trace id is stored.")
    ] = None,
) -> Response:
    return await _put(
        request,
        c,
        who,
        namespace,
        key,
        x_liquid_tags=x_liquid_tags,
        x_liquid_classification=x_liquid_classification,
        x_liquid_retention=x_liquid_retention,
        x_liquid_expires_at=x_liquid_expires_at,
        x_liquid_legal_hold=x_liquid_legal_hold,
        x_liquid_trace_id=x_liquid_trace_id,
        x_liquid_correlation_id=x_liquid_correlation_id,
        x_liquid_execution_id=x_liquid_execution_id,
        x_liquid_scope=x_liquid_scope,
        traceparent=traceparent,
    )


async def _put(
    request: Request,
    c: ApiContext,
    who: Caller,
    namespace: str,
    key: str,
    *,
    x_liquid_tags: str | None,
    x_liquid_classification: str | None,
    x_liquid_retention: str | None,
    x_liquid_expires_at: str | None,
    x_liquid_legal_hold: str | None,
    x_liquid_trace_id: str | None,
    x_liquid_correlation_id: str | None,
    x_liquid_execution_id: str | None,
    x_liquid_scope: str | None,
    traceparent: str | None,
) -> Response:
    """``PUT /v1/objects/{namespace}/{key}`` once its parameters are checked (both twins)."""
    ResultRef(who.tenant, namespace, key, 1)  # validate names before reading any body
    x_liquid_tags = _utf8_header(x_liquid_tags, "X-Liquid-Tags")
    x_liquid_classification = _utf8_header(x_liquid_classification, "X-Liquid-Classification")
    x_liquid_trace_id = _utf8_header(x_liquid_trace_id, "X-Liquid-Trace-Id")
    x_liquid_correlation_id = _utf8_header(x_liquid_correlation_id, "X-Liquid-Correlation-Id")
    x_liquid_execution_id = _utf8_header(x_liquid_execution_id, "X-Liquid-Execution-Id")
    options = _put_options(x_liquid_tags, x_liquid_retention, x_liquid_expires_at, x_liquid_legal_hold)
    content_type = check_header_text(
        request.headers.get("content-type") or "application/octet-stream", "Content-Type"
    )
    limit = c.settings.max_object_size
    size_hint: int | None = None
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise InvalidInput(f"Content-Length must be a number, got {declared!r}", field="Content-Length")
        size_hint = int(declared)
        if size_hint > limit:
            raise TooLarge(
                f"body of {size_hint} bytes exceeds the maximum object size of {limit}", field="body"
            )
    # The id stored on the object and its events: the caller's, else the request span's (tracing on).
    trace_id = x_liquid_trace_id or _trace_from(traceparent) or current_trace_id()
    if trace_id is not None:
        trace.get_current_span().set_attribute(TRACE_ID_ATTR, trace_id)
    bridge = BodyBridge(request.stream(), limit=limit)
    # A body declared no larger than one piece is read on the loop before the upload takes a
    # worker thread (one hop in all, and no thread held while a slow client sends it).
    small: list[bytes] | None = None
    if size_hint is not None and size_hint <= bridge.coalesce:
        body = await bridge.read_small()
        small = [body] if body else []
    shm = c.shm
    writer = (
        shm.writer()
        if shm is not None
        and shm.wants(content_type, size_hint)
        and c.service.classifier.allows_shm(x_liquid_classification)
        # The shm copy would hold the text before redaction.
        and not (c.service.redaction is not None and c.service.redaction.applies(content_type))
        else None
    )

    def tee() -> Iterator[bytes]:
        for chunk in bridge if small is None else small:
            if writer is not None:
                writer.write(chunk)
            yield chunk

    def work() -> RefInfo:
        try:
            info = _header_fields(c.service.put)(
                who.tenant,
                namespace,
                key,
                tee(),
                content_type=content_type,
                size_hint=size_hint,
                classification=x_liquid_classification,
                trace_id=trace_id,
                correlation_id=x_liquid_correlation_id,
                execution_id=x_liquid_execution_id,
                scope=x_liquid_scope,
                actor=f"key:{who.principal.key_prefix}",
                **options,
            )
            if writer is not None and shm is not None and writer.size >= shm.min_size:
                hint = writer.commit(info.ref, info.sha256)
                if hint is not None:
                    c.metrics.shm_copies.inc()
                    info = replace(info, ipc=hint)
            return info
        finally:
            if writer is not None and writer.active:
                writer.abort()

    info = await anyio.to_thread.run_sync(work, limiter=c.upload_threads)
    return JSONResponse(
        info.to_json(),
        status_code=201,
        headers={"Location": _ref_location(info.uri), "ETag": _etag(info.sha256)},
    )


@router.get(
    "/v1/objects/{namespace}/{key:path}",
    summary="Read a version's bytes (the latest unless `version`)",
    tags=["objects"],
    responses={**BINARY_RESPONSE, 416: {"description": "Range not satisfiable."}},
    response_class=Response,
)
async def get_object(
    request: Request,
    c: Ctx,
    who: Who,
    namespace: Namespace,
    key: Key,
    version: VersionQuery = None,
    range: Annotated[str | None, Header(description="One `bytes=` range.")] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    return await _get_object(request, c, who, namespace, key, version)


async def _get_object(
    request: Request, c: ApiContext, who: Caller, namespace: str, key: str, version: int | None
) -> Response:
    ref = await _object_ref(c, who.tenant, namespace, key, version)
    return await _serve(request, c, who.tenant, ref)


@router.head(
    "/v1/objects/{namespace}/{key:path}",
    summary="A version's metadata as headers",
    tags=["objects"],
    responses={200: {"description": "Metadata in headers."}, 304: {"description": "Not modified."}},
    response_class=Response,
)
async def head_object(
    request: Request,
    c: Ctx,
    who: Who,
    namespace: Namespace,
    key: Key,
    version: VersionQuery = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    return await _head_object(request, c, who, namespace, key, version)


async def _head_object(
    request: Request, c: ApiContext, who: Caller, namespace: str, key: str, version: int | None
) -> Response:
    head = functools.partial(c.service.head, who.tenant)
    return _head_answer(request, await run(_on_version(c, who.tenant, namespace, key, version, head)))


@router.delete(
    "/v1/objects/{namespace}/{key:path}",
    response_model=ObjectModel,
    summary="Delete a version (the latest unless `version`)",
    tags=["objects"],
)
async def delete_object(
    request: Request,
    c: Ctx,
    who: Who,
    namespace: Namespace,
    key: Key,
    version: VersionQuery = None,
) -> Response:
    return await _delete_object(request, c, who, namespace, key, version)


async def _delete_object(
    request: Request, c: ApiContext, who: Caller, namespace: str, key: str, version: int | None
) -> Response:
    delete = functools.partial(c.service.delete, who.tenant, actor=f"key:{who.principal.key_prefix}")
    info = await run(_on_version(c, who.tenant, namespace, key, version, delete))
    return JSONResponse(info.to_json())


@router.get(
    "/v1/objects/{namespace}",
    response_model=PageModel,
    summary="List live objects of a namespace (newest version of each key unless `all_versions`)",
    tags=["objects"],
)
async def list_objects(
    c: Ctx,
    who: Who,
    namespace: Namespace,
    prefix: Annotated[str, Query(max_length=1024)] = "",
    after: Annotated[
        str | None, Query(max_length=2048, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    all_versions: bool = False,
) -> Response:
    page = await run(
        c.service.list,
        who.tenant,
        namespace,
        prefix=prefix,
        after=after,
        limit=limit,
        all_versions=all_versions,
    )
    return JSONResponse({"items": [i.to_json() for i in page.items], "next_cursor": page.next_cursor})


@router.get(
    "/v1/versions/{namespace}/{key:path}",
    response_model=PageModel,
    summary="Live versions of one key, newest first",
    tags=["objects"],
)
async def list_versions(
    c: Ctx,
    who: Who,
    namespace: Namespace,
    key: Key,
    after: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Response:
    ResultRef(who.tenant, namespace, key, 1)

    def versions() -> tuple[list[ObjectInfo], str | None]:
        found: list[ObjectInfo] = []
        cursor = after
        if cursor is not None and cursor.rpartition("@")[0] != key:
            raise InvalidInput(f"cursor {cursor!r} is not one this listing returned", field="after")
        while len(found) < limit:
            page = c.service.list(
                who.tenant, namespace, prefix=key, after=cursor, limit=limit - len(found), all_versions=True
            )
            mine = [i for i in page.items if i.ref.key == key]
            found += mine
            if page.next_cursor is None or len(mine) < len(page.items):
                return found, None
            cursor = page.next_cursor
        last = found[-1].ref
        return found, f"{last.key}@{last.version}"

    items, cursor = await run(versions)
    return JSONResponse({"items": [i.to_json() for i in items], "next_cursor": cursor})


# --------------------------------------------------------- workflow, policy


@router.post(
    "/v1/executions/{execution_id}:finish",
    response_model=FinishResponse,
    summary="Mark a workflow execution finished (starts the clock of its step/execution-scoped results)",
    tags=["workflow"],
)
async def finish_execution(
    c: Ctx,
    who: Who,
    execution_id: Annotated[str, Path(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")],
    body: FinishRequest | None = None,
) -> Response:
    at = body.at if body is not None else None
    if at is not None and at.tzinfo is None:
        raise InvalidInput("at needs a UTC offset", field="at")
    when = await run(
        c.service.finish_execution, who.tenant, execution_id, at=at, actor=f"key:{who.principal.key_prefix}"
    )
    return JSONResponse({"execution_id": execution_id, "finished_at": when.isoformat()})


@router.get(
    "/v1/explain/{namespace}/{key:path}",
    response_model=ExplainModel,
    summary="Which policy and rule govern an object, its score, where it is and should be, what comes next",
    tags=["workflow"],
)
async def explain_object(
    c: Ctx,
    who: Who,
    namespace: Namespace,
    key: Key,
    version: VersionQuery = None,
) -> Response:
    ref = await _object_ref(c, who.tenant, namespace, key, version)

    def work() -> dict[str, Any]:
        from liquid.policy.models import PolicySet
        from liquid.policy.store import active_policies
        from liquid.tiering.explain import explain
        from liquid.tiering.planner import Planner
        from liquid.tiering.rows import CatalogRows

        svc = c.service
        svc.head(who.tenant, ref)  # missing / gone / other tenant: the usual answers
        applied = active_policies(svc.engine)
        now = svc.clock()
        row = CatalogRows(svc.engine, half_life=svc.settings.access.half_life).row(ref, now)
        if row is None:
            raise ObjectNotFound(f"no object {ref.uri}", field="ref")
        policies = applied.policies if applied else PolicySet()
        out = explain(Planner(svc.settings), policies, row, now, hot=svc.hot, engine=svc.engine)
        out["policy_version"] = applied.version if applied else None
        return out

    return JSONResponse(await run(work))


# --------------------------------------------------------------------- refs


@router.post(
    "/v1/refs:resolve", response_model=ResolveResponse, summary="Resolve a batch of refs", tags=["refs"]
)
async def resolve_refs(c: Ctx, who: Who, body: ResolveRequest) -> Response:
    return await _resolve(c, who.tenant, body)


async def _resolve(c: ApiContext, tenant: str, body: ResolveRequest) -> Response:
    if len(body.refs) > c.settings.api.max_batch:
        raise InvalidInput(
            f"a batch holds at most {c.settings.api.max_batch} refs, got {len(body.refs)}", field="refs"
        )
    inline_max = c.settings.api.batch_inline_max if body.inline else -1
    budget = InlineBudget(c.settings.api.batch_inline_total)
    hot_client = c.hot_client()
    if hot_client is not None and not body.facts:
        # On the event loop: known hot versions cost one MGET there and no worker thread.
        results = await within_deadline(aresolve_batch(c, tenant, body.refs, inline_max, budget, hot_client))
    else:
        results = await run(resolve_batch, c, tenant, body.refs, inline_max, budget, facts=body.facts)
    # orjson: a batch's answer is mostly base64 strings, which it writes several times faster.
    answer = {"results": results, "inline_bytes": budget.used, "inline_omitted": budget.omitted}
    return Response(orjson.dumps(answer), media_type="application/json")


class InlineBudget:
    """The inline bytes one batch may still return: refs past the total come without their values."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self.omitted = 0

    def take(self, size: int) -> bool:
        """Reserve ``size`` bytes; False (and counted as omitted) when they do not fit."""
        if self.used + size > self.total:
            self.omitted += 1
            return False
        self.used += size
        return True

    def __repr__(self) -> str:
        return f"InlineBudget(used={self.used}/{self.total}, omitted={self.omitted})"


def resolve_batch(
    c: ApiContext,
    tenant: str,
    refs: list[Any],
    inline_max: int,
    budget: InlineBudget,
    *,
    facts: bool = False,
) -> list[dict[str, Any]]:
    """One result per ref, in order: its JSON form (and catalog facts if ``facts``), or a problem.

    Pipelined (:meth:`LiquidService.resolve_many`): hot versions this process has read before cost
    one Redis ``MGET`` for the batch, the others one catalog statement more, so a batch costs about
    one request, not one per ref. Ref texts seen before are not parsed again.
    """
    batch = _BatchAnswer(c, refs, inline_max, budget)
    return batch.shape(c.service.resolve_many(tenant, batch.refs, want=batch.want, full=facts))


async def aresolve_batch(
    c: ApiContext,
    tenant: str,
    refs: list[Any],
    inline_max: int,
    budget: InlineBudget,
    client: redis.asyncio.Redis,
) -> list[dict[str, Any]]:
    """:func:`resolve_batch` (without facts) on the event loop (:meth:`LiquidService.aresolve_many`).

    The same answers: only where the hot copies are read differs (the asyncio client, no worker
    thread); what needs the catalog or a home still goes to a worker thread.
    """
    batch = _BatchAnswer(c, refs, inline_max, budget)
    found = await c.service.aresolve_many(tenant, batch.refs, client, want=batch.want, offload=run)
    return batch.shape(found)


class _BatchAnswer:
    """A batch resolve's answer in the making: ref texts parsed, inline budget kept, results shaped."""

    __slots__ = ("budget", "inline_max", "omitted", "positions", "refs", "results", "shm")

    def __init__(self, c: ApiContext, refs: list[Any], inline_max: int, budget: InlineBudget) -> None:
        self.shm = c.shm
        self.inline_max = inline_max
        self.budget = budget
        #: Per ref, its result once known (parse errors now, the rest in :meth:`shape`).
        self.results: list[dict[str, Any] | None] = [None] * len(refs)
        #: The position of each parsed ref among the texts.
        self.positions: list[int] = []
        self.refs: list[ResultRef] = []
        #: Parsed refs (by their place in :attr:`refs`) whose value the budget left out.
        self.omitted: set[int] = set()
        parse = c.service.versions.parse
        for i, item in enumerate(refs):
            try:
                uri = item.get("uri") if isinstance(item, dict) else item
                if not isinstance(uri, str):
                    raise InvalidRef(
                        f"refs[{i}] must be a liquid:// string or an object with 'uri'", field=f"refs.{i}"
                    )
                self.refs.append(parse(uri))
                self.positions.append(i)
            except LiquidError as exc:
                self.results[i] = _batch_error(i, exc)

    def want(self, position: int, version: VersionFacts) -> bool:
        """Whether a version's value comes inline: small enough, and within the batch's total."""
        size = version.size
        if not 0 <= size <= self.inline_max:
            return False
        # Checked before the read: a batch past its total reads no more bodies.
        if self.budget.take(size):
            return True
        self.omitted.add(position)
        return False

    def shape(self, found: Resolved) -> list[dict[str, Any]]:
        """The results in order, each ref's JSON form (the value base64 inline) or its problem."""
        out, shm, omitted = self.results, self.shm, self.omitted
        for position, (i, ref, result) in enumerate(zip(self.positions, self.refs, found, strict=True)):
            if isinstance(result, LiquidError):
                out[i] = _batch_error(i, result)
                continue
            version = result.facts
            hint: IpcHint | None = None
            if shm is not None and version.size >= shm.min_size:
                hint = shm.hint(ref, version.sha256)
            shape = ref_json(ref, version.size, version.sha256, version.content_type, result.data, hint)
            done: dict[str, Any] = {"index": i, "ok": True, "ref": shape}
            if result.info is not None:
                done["object"] = result.info.to_json()
            if position in omitted:
                done["inline_omitted"] = True
            out[i] = done
        return [r for r in out if r is not None]


def _batch_error(i: int, exc: LiquidError) -> dict[str, Any]:
    if exc.field == "ref":
        exc.field = f"refs.{i}"
    return {"index": i, "ok": False, "error": error_body(exc)}


@router.post(
    "/v1/refs:sign",
    response_model=SignResponse,
    summary="Sign a ref for reading without a key",
    tags=["refs"],
)
async def sign_ref(c: Ctx, who: Who, body: SignRequest) -> Response:
    if c.signer is None:
        raise Forbidden("signed refs are not enabled on this server (set api.signing_secret)", field="ref")
    ref = ResultRef.parse(body.ref)
    await run(c.service.head, who.tenant, ref)  # 404 for other tenants' and missing refs alike
    sig, exp = c.signer.sign(ref, body.ttl)
    url = f"{_ref_location(ref.uri)}?sig={sig}&exp={exp}"
    return JSONResponse({"uri": ref.uri, "sig": sig, "exp": exp, "url": url})


RefRead = Annotated[tuple[str, ResultRef], Depends(ref_reader)]


@router.get(
    "/v1/refs/{ref:path}",
    summary="Read a ref's bytes (by key, or signed with `sig` and `exp`)",
    tags=["refs"],
    responses={**BINARY_RESPONSE, 416: {"description": "Range not satisfiable."}},
    response_class=Response,
)
async def get_ref(
    request: Request,
    c: Ctx,
    target: RefRead,
    range: Annotated[str | None, Header(description="One `bytes=` range.")] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    tenant, ref = target
    return await _serve(request, c, tenant, ref)


@router.head(
    "/v1/refs/{ref:path}",
    summary="A ref's metadata as headers",
    tags=["refs"],
    responses={200: {"description": "Metadata in headers."}, 304: {"description": "Not modified."}},
    response_class=Response,
)
async def head_ref(
    request: Request, c: Ctx, target: RefRead, if_none_match: Annotated[str | None, Header()] = None
) -> Response:
    tenant, ref = target
    return await _head(request, c, tenant, ref)


@router.delete(
    "/v1/refs/{ref:path}", response_model=ObjectModel, summary="Delete a ref's version", tags=["refs"]
)
async def delete_ref(
    c: Ctx,
    target: Annotated[tuple[str, ResultRef], Depends(ref_writer)],
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Response:
    tenant, ref = target
    assert principal is not None
    return await _delete(c, Caller(principal, tenant), tenant, ref)


# ------------------------------------------------------ the lean read route


class LeanRoute(Route):
    """A plain Starlette route that names itself in the scope as FastAPI's do (for metrics, tracing)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


async def read_ref(request: Request) -> Response:
    """``GET``/``HEAD /v1/refs/{ref}`` without FastAPI's per-request dependency solving.

    The hottest route of all: a runtime resolves a ref on every step. Its FastAPI twins above
    document it (OpenAPI) and define its behaviour; this does the same work by hand, which
    halves the framework's share of a hot hit. Errors are the same problem+json answers.
    """
    c = app_context(request)
    check_utf8_path(request)
    _DEADLINE.set(c.settings.resilience.request_timeout)
    sig = exp_text = None
    if request.scope.get("query_string"):  # a plain read has none: nothing to parse
        query = request.query_params
        sig = query.get("sig")
        exp_text = query.get("exp")
    exp: int | None = None
    if exp_text is not None:
        try:
            exp = int(exp_text)
        except ValueError:
            raise InvalidInput(
                f"exp: must be an integer of Unix seconds (got {exp_text[:200]!r})", field="exp"
            ) from None
    principal = await _principal_of(request, c)
    tenant, ref = read_target(
        c, request.path_params["ref"], principal, request.headers.get(TENANT_HEADER), sig, exp
    )
    if request.method == "HEAD":
        return await _head(request, c, tenant, ref)
    return await _serve(request, c, tenant, ref)


#: A checked parameter of the object routes: (where, name, pattern).
_NAMESPACE = ("path", "namespace", SLUG_PATTERN)
#: ``PUT``'s checked parameters, in the order FastAPI reports them.
_PUT_CHECKS = (
    _NAMESPACE,
    ("header", "x-liquid-retention", RETENTION_PATTERN),
    ("header", "x-liquid-legal-hold", LEGAL_HOLD_PATTERN),
    ("header", "x-liquid-scope", SCOPE_PATTERN),
)
_PATTERNS = {
    p: pydantic.TypeAdapter(Annotated[str, pydantic.StringConstraints(pattern=p)]) for *_, p in _PUT_CHECKS
}
_VERSION = pydantic.TypeAdapter(
    Annotated[int | None, pydantic.BeforeValidator(_decimal_version), pydantic.Field(ge=1, le=MAX_VERSION)]
)


async def _lean_caller(request: Request) -> tuple[ApiContext, Caller]:
    """What an object route's FastAPI dependencies give it: the context (its deadline started),
    after the path's UTF-8 check, and the caller (key, tenant rate limit, acting tenant)."""
    c = app_context(request)
    check_utf8_path(request)
    _DEADLINE.set(c.settings.resilience.request_timeout)
    principal = await _principal_of(request, c)
    if principal is None:
        raise Unauthorized("missing API key: send 'Authorization: Bearer lq_...'", field="Authorization")
    return c, Caller(principal, acting_tenant(principal, request.headers.get(TENANT_HEADER)))


def _invalid(
    request: Request, checks: tuple[tuple[str, str, str], ...], *, version: bool = False
) -> tuple[list[Any], int | None]:
    """FastAPI's validation errors for these patterned parameters (and the ``version`` query
    parameter), in its order (path, query, header), and the version."""
    errors: list[Any] = []
    found: int | None = None

    def add(where: str, name: str, exc: pydantic.ValidationError) -> None:
        errors.extend({**e, "loc": (where, name)} for e in exc.errors(include_url=False))

    for where, name, pattern in checks:
        if where == "path":
            try:
                _PATTERNS[pattern].validate_python(request.path_params[name])
            except pydantic.ValidationError as exc:
                add(where, name, exc)
    if version and request.scope.get("query_string"):
        raw = request.query_params.get("version")
        if raw is not None:
            try:
                found = _VERSION.validate_python(raw)
            except pydantic.ValidationError as exc:
                add("query", "version", exc)
    for where, name, pattern in checks:
        value = request.headers.get(name) if where == "header" else None
        if value is not None:
            try:
                _PATTERNS[pattern].validate_python(value)
            except pydantic.ValidationError as exc:
                add(where, name, exc)
    return errors, found


async def put_lean(request: Request) -> Response:
    """``PUT /v1/objects/{namespace}/{key}`` without FastAPI's per-request dependency solving.

    A runtime stores a result on every step. The FastAPI twin (:func:`put_object`) documents it
    and defines its behaviour; this does the same checks by hand, in FastAPI's order: the path's
    UTF-8, the key and tenant rate limit, the acting tenant, then the namespace and the patterned
    headers (each failure reported as FastAPI reports it), then the same handler.
    """
    c, who = await _lean_caller(request)
    errors, _ = _invalid(request, _PUT_CHECKS)
    if errors:
        raise RequestValidationError(errors)
    headers = request.headers
    params = request.path_params
    return await _put(
        request,
        c,
        who,
        params["namespace"],
        params["key"],
        x_liquid_tags=headers.get("x-liquid-tags"),
        x_liquid_classification=headers.get("x-liquid-classification"),
        x_liquid_retention=headers.get("x-liquid-retention"),
        x_liquid_expires_at=headers.get("x-liquid-expires-at"),
        x_liquid_legal_hold=headers.get("x-liquid-legal-hold"),
        x_liquid_trace_id=headers.get("x-liquid-trace-id"),
        x_liquid_correlation_id=headers.get("x-liquid-correlation-id"),
        x_liquid_execution_id=headers.get("x-liquid-execution-id"),
        x_liquid_scope=headers.get("x-liquid-scope"),
        traceparent=headers.get("traceparent"),
    )


_OBJECT_LEAN = {"GET": _get_object, "HEAD": _head_object, "DELETE": _delete_object}


async def object_lean(request: Request) -> Response:
    """``GET``/``HEAD``/``DELETE /v1/objects/{namespace}/{key}[?version=]`` without FastAPI's
    dependency solving: the same checks and handlers as their documented twins, as :func:`put_lean`."""
    c, who = await _lean_caller(request)
    errors, version = _invalid(request, (_NAMESPACE,), version=True)
    if errors:
        raise RequestValidationError(errors)
    params = request.path_params
    handler = _OBJECT_LEAN[request.method]
    return await handler(request, c, who, params["namespace"], params["key"], version)


async def resolve_refs_lean(request: Request) -> Response:
    """``POST /v1/refs:resolve`` without FastAPI's dependency solving (its twin above documents it).

    A runtime's step resolves its inputs in one batch; the framework's share of that request is
    worth the few lines. The body is validated by the same model, and its errors answered by the
    same handler, as the twin's.
    """
    c, tenant, body = await lean_call(request, ResolveRequest)
    return await _resolve(c, tenant, body)


async def lean_call(request: Request, model: type[B]) -> tuple[ApiContext, str, B]:
    """What a lean route's FastAPI twin gets from its dependencies: context, acting tenant, body.

    The same deadline, key check and tenant rate limit (:func:`_principal_of`), the same acting
    tenant, and the body validated by the twin's model straight from the JSON bytes, its errors
    raised as FastAPI raises them (under ``body``) so the problem+json answer is the same.
    """
    c, who = await _lean_caller(request)
    try:
        body = model.model_validate_json(await request.body())
    except pydantic.ValidationError as exc:
        raise body_error(exc) from None
    return c, who.tenant, body


def body_error(exc: pydantic.ValidationError) -> RequestValidationError:
    """A model's errors on a request body as FastAPI raises them (located under ``body``)."""
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)])


async def _principal_of(request: Request, c: ApiContext) -> Principal | None:
    """:func:`optional_principal` without the dependency machinery (same answers)."""
    if c.fixed_principal is not None:
        return c.fixed_principal
    key = bearer_key(request.headers.get("authorization"))  # as lenient with spaces as HTTPBearer
    if key is None:
        return None
    principal = await c.auth.authenticate(key)
    c.limiter.check(principal.tenant if principal.tenant is not None else f"admin:{principal.key_prefix}")
    return principal


def lean_routes() -> list[Route]:
    """Routes matched before the routers' (see :func:`liquid.api.app.create_app`)."""
    return [
        LeanRoute("/v1/refs:resolve", resolve_refs_lean, methods=["POST"], include_in_schema=False),
        LeanRoute("/v1/refs/{ref:path}", read_ref, methods=["GET", "HEAD"], include_in_schema=False),
        LeanRoute("/v1/objects/{namespace}/{key:path}", put_lean, methods=["PUT"], include_in_schema=False),
        LeanRoute(
            "/v1/objects/{namespace}/{key:path}",
            object_lean,
            methods=["GET", "HEAD", "DELETE"],
            include_in_schema=False,
        ),
    ]


# ------------------------------------------------------------------- health


@router.get("/healthz", response_model=HealthModel, summary="The process is up", tags=["health"])
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    response_model=ReadyModel,
    summary="The catalog and every durable store are reachable (the hot cache is optional)",
    tags=["health"],
    responses={503: {"model": ReadyModel, "description": "The catalog or a durable store is unreachable."}},
)
async def readyz(c: Ctx) -> Response:
    checks = await check_backends(c.service)
    required = [v for k, v in checks.items() if k != "hot"]
    if all(v == "ok" for v in required):
        status = "ready" if checks.get("hot", "ok") == "ok" else "degraded"
        return JSONResponse({"status": status, "checks": checks})
    return JSONResponse(
        {"status": "unavailable", "checks": checks},
        status_code=503,
        headers={"Retry-After": str(max(1, round(c.settings.resilience.breaker_reset)))},
    )


#: Longest one readiness probe may take.
PROBE_TIMEOUT = 2.0


async def check_backends(svc: LiquidService, timeout: float = PROBE_TIMEOUT) -> dict[str, str]:
    """``ok``, ``unavailable`` or ``timeout`` for the catalog, the hot cache and each store, probed at once.

    Readiness answers within ``timeout`` whatever hangs. The answer names no endpoint and quotes
    no backend error (``/readyz`` needs no key): the reasons go to the server log.
    """
    probes: dict[str, Callable[[], object]] = {}

    def catalog() -> None:
        with db.reading(svc.engine) as conn:
            conn.execute(text("SELECT 1"))

    probes["catalog"] = catalog
    if svc.hot is not None:
        hot = svc.hot

        def ping_hot() -> None:
            if hot.guard.is_open:
                raise StoreUnavailable("the hot cache's circuit is open")
            hot.ping()

        probes["hot"] = ping_hot
    for name, store in sorted(svc.stores.items()):
        probes[f"store:{name}"] = store.ping
    checks: dict[str, str] = dict.fromkeys(probes, "timeout")

    # Threads of their own: a pool taken by slow requests must not make the server look down.
    threads = anyio.CapacityLimiter(len(probes))

    async def probe(name: str, fn: Callable[[], object]) -> None:
        try:
            with anyio.fail_after(timeout):
                await anyio.to_thread.run_sync(fn, abandon_on_cancel=True, limiter=threads)
            checks[name] = "ok"
        except TimeoutError:
            log.warning("readiness probe of %s timed out after %gs", name, timeout)
        except Exception as exc:
            checks[name] = "unavailable"
            log.warning("readiness probe of %s failed: %r", name, exc)

    async with anyio.create_task_group() as tg:
        for name, fn in probes.items():
            tg.start_soon(probe, name, fn)
    return checks
