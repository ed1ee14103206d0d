"""What the sync and async clients share: request shapes, response parsing, retry policy, shm reads."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

import httpx
import orjson
import pyarrow as pa  # type: ignore[import-untyped]
from tenacity import wait_exponential, wait_random
from tenacity.wait import wait_base

from liquid.client import errors
from liquid.errors import InvalidInput, LiquidError
from liquid.limits import SCOPES, check_header_text, check_tags, check_text, expiry_from_ttl
from liquid.refs import RefInfo, ResultRef, check_key, check_new_key, check_slug
from liquid.shm import ShmReader, read_ipc

ARROW_STREAM = "application/vnd.apache.arrow.stream"
JSON = "application/json"
#: Upload bodies are sent in pieces of this size.
CHUNK = 1024 * 1024
RETRY_STATUSES = frozenset({429, 503, 504})

RefLike = ResultRef | RefInfo | str


@dataclass(frozen=True, slots=True)
class SignedRef:
    """A ref plus a signature that lets anyone holding it read that version until ``exp``."""

    uri: str
    sig: str
    exp: int
    url: str


Target = RefLike | SignedRef


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """What ``HEAD`` tells about a version."""

    ref: ResultRef
    size: int
    sha256: str
    content_type: str
    home_tier: str | None
    created_at: datetime | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing: object facts as JSON dicts (see ``ObjectInfo.to_json``)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Resolved:
    """One result of :meth:`Client.resolve_many`: ``ref`` when ``ok``, else ``error``.

    ``object`` holds the version's catalog facts when they were asked for (``facts=True``).
    """

    index: int
    ref: RefInfo | None = None
    object: dict[str, Any] | None = None
    error: errors.ApiError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ClientStats:
    """Where reads were served from, client side."""

    inline: int = 0
    shm: int = 0
    http: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)


def uri_of(ref: Target) -> str:
    if isinstance(ref, SignedRef):
        return ref.uri
    if isinstance(ref, RefInfo | ResultRef):
        return ref.uri
    try:
        return ResultRef.parse(ref).uri
    except LiquidError as exc:
        raise errors.from_core(exc) from None


def ref_path(ref: Target) -> str:
    return "/v1/refs/" + quote(uri_of(ref), safe="")


def sig_params(ref: Target) -> dict[str, str]:
    return {"sig": ref.sig, "exp": str(ref.exp)} if isinstance(ref, SignedRef) else {}


def _checked(check: Any, *args: Any, field: str | None = None) -> Any:
    """``check(*args)``, its InvalidInput raised as the client's BadRequest (its field renamed to
    ``field``, a header's name, when given)."""
    try:
        return check(*args)
    except InvalidInput as exc:
        if field is not None:
            exc.field = field
        raise errors.from_core(exc) from None


def _object_part(namespace: str, key: str, *, new: bool = False) -> str:
    """``{namespace}/{key}`` for a URL path, both checked as the service checks them.

    The key keeps its ``/`` separators, so a ``.``, ``..`` or empty segment would be folded by
    httpx (``a/../b`` sent as ``b``, ``../other/k`` into namespace ``other``): refused here,
    with the service's own error, before anything is sent.
    """
    _checked(check_slug, namespace, "namespace")
    _checked(check_new_key if new else check_key, key)
    return f"{quote(namespace, safe='')}/{quote(key, safe='/')}"


def segment(value: str, field: str) -> str:
    """One quoted URL path segment; refuses what httpx would fold (empty, ``.``, ``..``)."""
    if not isinstance(value, str) or value in ("", ".", ".."):
        raise errors.BadRequest(
            f"{field} must be a non-empty name other than '.' or '..', got {value!r}", field=field
        )
    return quote(value, safe="")


def namespace_path(namespace: str) -> str:
    """``/v1/objects/{namespace}`` (the listing), the namespace checked as the service checks it."""
    _checked(check_slug, namespace, "namespace")
    return f"/v1/objects/{quote(namespace, safe='')}"


def object_path(namespace: str, key: str, *, new: bool = False) -> str:
    """``/v1/objects/{namespace}/{key}``; ``new`` for a put (a key ending in ``/vectors`` is refused)."""
    return f"/v1/objects/{_object_part(namespace, key, new=new)}"


def explain_path(namespace: str, key: str) -> str:
    return f"/v1/explain/{_object_part(namespace, key)}"


def finish_path(execution_id: str) -> str:
    return f"/v1/executions/{quote(execution_id, safe='')}:finish"


def versions_path(namespace: str, key: str) -> str:
    return f"/v1/versions/{_object_part(namespace, key)}"


def header_text(value: object, field: str, header: str, limit: int = 256) -> str:
    """A text sent in ``header``, else BadRequest naming the header (as the server does).

    First the service's own check of ``field`` (1-``limit`` characters, no control character, same
    message), then :func:`wire_text`: what a header carries unchanged.
    """
    _checked(check_text, value, field, limit, field=header)
    assert isinstance(value, str)
    return wire_text(value, header)


def wire_text(value: str, field: str) -> str:
    """``value`` if an HTTP header carries it unchanged, else BadRequest naming ``field``.

    Printable ASCII only: httpx cannot encode other text (nor h11 send DEL), and the server reads
    header bytes as Latin-1, so UTF-8 would arrive as other characters. No leading or trailing
    space either: h11 refuses to send it and a server would strip it.
    """
    bad = next((c for c in value if not " " <= c <= "~"), None)
    if bad is not None:
        raise errors.BadRequest(
            f"{field} {value!r} contains U+{ord(bad):04X}: over HTTP it is sent in a header, "
            "which carries printable ASCII only",
            field=field,
        )
    if value != value.strip(" "):
        raise errors.BadRequest(
            f"{field} {value!r} starts or ends with a space, which an HTTP header does not keep", field=field
        )
    return value


def retention_text(ttl: timedelta | float) -> str:
    """``X-Liquid-Retention`` for a ttl: plain decimal seconds (the header takes no exponent).

    The digits are the float's shortest round-trip form, so the server reads the same number;
    a ttl that no decimal can carry (not positive, not finite) is refused as the service would.
    """
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if not (math.isfinite(seconds) and seconds > 0):
        try:
            expiry_from_ttl(datetime.now(UTC), seconds)
        except InvalidInput as exc:
            raise errors.BadRequest(exc.detail, field="X-Liquid-Retention") from None
    return format(Decimal(repr(seconds)), "f")


def put_headers(
    *,
    content_type: str,
    size: int | None,
    tags: Mapping[str, str] | None,
    classification: str | None,
    ttl: timedelta | float | None,
    expires_at: datetime | None,
    trace_id: str | None,
    correlation_id: str | None,
    execution_id: str | None,
    legal_hold: bool,
    scope: str | None = None,
    wire: bool = True,
) -> dict[str, str]:
    """``PUT``'s headers, refusing (BadRequest with the field) what the server would refuse or
    read differently.

    ``wire=False`` (in-process, nothing is sent) keeps only the checks that hold without HTTP:
    the content type and the tags; the service checks the rest itself.
    """
    # Refused here as the server would: a control character in a header cannot be sent or read back.
    # Errors name the header, as the server (and the in-process client, which answers as it) does.
    headers = {"Content-Type": _checked(check_header_text, content_type, "Content-Type")}
    tag_map = _checked(check_tags, tags, field="X-Liquid-Tags")
    if not wire:
        return headers
    wire_text(content_type, "Content-Type")
    if scope is not None and scope not in SCOPES:
        raise errors.BadRequest(
            f"scope must be one of {', '.join(SCOPES)}, got {scope!r}", field="X-Liquid-Scope"
        )
    if size is not None:
        headers["Content-Length"] = str(size)
    if tag_map:
        headers["X-Liquid-Tags"] = urlencode(tag_map)
    if expires_at is not None:
        headers["X-Liquid-Expires-At"] = expires_at.isoformat()
    for name, field_, value in (
        ("X-Liquid-Classification", "classification", classification),
        ("X-Liquid-Trace-Id", "trace_id", trace_id),
        ("X-Liquid-Correlation-Id", "correlation_id", correlation_id),
        ("X-Liquid-Execution-Id", "execution_id", execution_id),
        ("X-Liquid-Scope", "scope", scope),
    ):
        if value is not None:
            headers[name] = header_text(value, field_, name)
    if ttl is not None:  # after the texts, as the service checks them
        headers["X-Liquid-Retention"] = retention_text(ttl)
    if legal_hold:
        headers["X-Liquid-Legal-Hold"] = "true"
    return headers


def body_parts(data: Any) -> tuple[Any, int | None]:
    """(httpx content, size or None) for bytes, a pyarrow Buffer, a file, or an iterable of bytes."""
    if isinstance(data, bytes | bytearray):
        return bytes(data), len(data)
    if isinstance(data, memoryview | pa.Buffer):
        view = memoryview(data).cast("B")
        return _slices(view), view.nbytes
    if hasattr(data, "read"):
        size: int | None = None
        try:
            size = os.fstat(data.fileno()).st_size - data.tell()
        except (OSError, AttributeError, ValueError):
            size = None
        return _file_chunks(data), size
    return (bytes(c) for c in data), None


def _slices(view: memoryview) -> Iterator[bytes]:
    for i in range(0, view.nbytes, CHUNK):
        yield bytes(view[i : i + CHUNK])


def _file_chunks(fh: Any) -> Iterator[bytes]:
    while chunk := fh.read(CHUNK):
        yield chunk


def table_bytes(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def check_response(response: httpx.Response) -> None:
    """Raise the typed error for an error response (whose body has been read)."""
    if response.status_code < 400:
        return
    try:
        body: Any = response.json()
    except (ValueError, UnicodeDecodeError):
        body = response.text
    if not body and response.request.method == "HEAD":
        # A HEAD answer has no body to carry the problem: say at least what was asked.
        what = unquote(response.request.url.path)
        body = {
            "detail": f"{response.reason_phrase or 'HTTP'} ({response.status_code}) for HEAD {what}",
            "field": "ref" if response.status_code in (404, 410) else None,
        }
    error = errors.from_problem(response.status_code, body)
    if isinstance(error, errors.RateLimited):
        try:
            error.retry_after = float(response.headers.get("retry-after", ""))
        except ValueError:
            error.retry_after = None
    raise error


def first_retry_wait() -> float:
    """Seconds to wait before the second attempt of a call.

    The clients make a call's first attempt without tenacity (its machinery costs ~30 µs a call, a
    fortieth of a hot read) and only a transient failure goes on to it: this wait, then
    :func:`retry_wait`'s schedule, so the waits run 50, 100, 200 ms... up to 2 s, each with up to
    50 ms of jitter.
    """
    return 0.05 + random.uniform(0, 0.05)


def retry_wait() -> wait_base:
    """Tenacity's waits between the attempts after the second (see :func:`first_retry_wait`)."""
    return wait_exponential(multiplier=0.1, max=2.0) + wait_random(0, 0.05)


def json_request(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` for httpx with a ``json=`` body encoded by orjson instead of httpx's ``json``.

    A 384-float search vector takes ~10 µs to encode against ~150 µs through the standard
    library, a tenth of a whole search. numpy scalars and arrays encode as numbers. A NaN or an
    infinity encodes as ``null`` (JSON has neither), which the API refuses with a 400 naming
    the element.
    """
    if "json" not in kwargs:
        return kwargs
    out = dict(kwargs)
    out["content"] = orjson.dumps(out.pop("json"), option=orjson.OPT_SERIALIZE_NUMPY)
    out["headers"] = {**(out.get("headers") or {}), "Content-Type": "application/json"}
    return out


def json_of(response: httpx.Response) -> Any:
    """The response's JSON body (orjson: the answers to searches and batch resolves are the big ones)."""
    return orjson.loads(response.content)


def is_transient(exc: BaseException, *, idempotent: bool) -> bool:
    """Whether a failed call may be retried."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True  # the request never reached the server
    if not idempotent:
        return False
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, errors.ApiError) and exc.status in RETRY_STATUSES


def range_header(start: int, end: int | None) -> dict[str, str]:
    if start == 0 and end is None:
        return {}
    if end is not None and end <= start:
        raise errors.BadRequest(f"empty range start={start} end={end}", field="range")
    return {"Range": f"bytes={start}-" + ("" if end is None else str(end - 1))}


def meta_from(response: httpx.Response) -> ObjectMeta:
    h = response.headers

    def when(name: str) -> datetime | None:
        value = h.get(name)
        return datetime.fromisoformat(value) if value else None

    return ObjectMeta(
        ref=ResultRef.parse(h["x-liquid-ref"]),
        size=int(h.get("content-length", "0")),
        sha256=h.get("etag", "").strip('"'),
        content_type=h.get("content-type", "application/octet-stream"),
        home_tier=h.get("x-liquid-home-tier"),
        created_at=when("x-liquid-created-at"),
        expires_at=when("x-liquid-expires-at"),
    )


def resolve_payload(refs: Sequence[RefLike], *, inline: bool, facts: bool) -> dict[str, Any]:
    """The body of ``POST /v1/refs:resolve``."""
    uris = [uri_of(r) if not isinstance(r, str) else r for r in refs]
    body: dict[str, Any] = {"refs": uris, "inline": inline}
    if facts:
        body["facts"] = True
    return body


def resolved_from(data: dict[str, Any]) -> list[Resolved]:
    out = []
    for item in data.get("results", []):
        if item.get("ok"):
            out.append(Resolved(item["index"], ref=RefInfo.from_json(item["ref"]), object=item.get("object")))
        else:
            problem = item.get("error") or {}
            out.append(
                Resolved(item["index"], error=errors.from_problem(int(problem.get("status", 400)), problem))
            )
    return out


def drop_none(params: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters without the unset ones."""
    return {k: v for k, v in params.items() if v is not None}


def ref_json(ref: RefLike) -> str:
    return uri_of(ref)


def verify(data: bytes, sha256: str, what: str) -> bytes:
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise errors.IntegrityError(f"{what}: received bytes do not match sha256 {sha256[:16]}…", status=502)
    return data


class LocalReads:
    """Reads a ref can answer without the server: inline values and same-node shm copies."""

    def __init__(self, *, node_id: str | None, shm_dirs: list[Path] | None, stats: ClientStats) -> None:
        node = node_id or os.environ.get("LIQUID_NODE_ID") or socket.gethostname()
        self.shm = ShmReader(node_id=node, dirs=shm_dirs or ())
        self.stats = stats

    def buffer(self, ref: Target) -> pa.Buffer | None:
        if not isinstance(ref, RefInfo):
            return None
        if ref.inline is not None and hashlib.sha256(ref.inline).hexdigest() == ref.sha256:
            self.stats.inline += 1
            return pa.py_buffer(ref.inline)
        if ref.ipc is not None:
            buf = self.shm.open_buffer(ref.ipc, sha256=ref.sha256, size=ref.size)
            if buf is not None:
                self.stats.shm += 1
                return buf
            self.stats.fallbacks = dict(self.shm.fallbacks)
        return None

    def table(self, ref: Target) -> pa.Table | None:
        buf = self.buffer(ref)
        if buf is None:
            return None
        try:
            return read_ipc(buf)
        except pa.ArrowInvalid:
            return None


def table_from(data: bytes) -> pa.Table:
    try:
        return read_ipc(pa.py_buffer(data))
    except pa.ArrowInvalid as exc:
        raise errors.BadRequest(f"the object is not an Arrow IPC stream or file: {exc}") from None


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One result of :meth:`Client.search`: the ref (value inline when small), score, chunk and metadata."""

    ref: RefInfo
    score: float
    chunk_id: str | None
    span: tuple[int, int] | None
    #: namespace, key, version, content_type, size, tags, classification, created_at.
    meta: dict[str, Any]


def vectors_path(namespace: str, key: str) -> str:
    return f"/v1/objects/{_object_part(namespace, key)}/vectors"


def embeddings_payload(
    embeddings: Sequence[Sequence[float] | dict[str, Any]], *, metric: str | None, index: str | None
) -> dict[str, Any]:
    """The body of ``PUT .../vectors``: each embedding a vector, or ``{vector, chunk_id, span}``."""
    items = [dict(e) if isinstance(e, dict) else {"vector": list(e)} for e in embeddings]
    body: dict[str, Any] = {"embeddings": items}
    if metric is not None:
        body["metric"] = metric
    if index is not None:
        body["index"] = index
    return body


def search_payload(
    vector: Sequence[float],
    *,
    k: int,
    namespace: str | None,
    tags: dict[str, str] | None,
    content_type: str | None,
    classification: str | None,
    ef_search: int | None,
    index: str | None,
) -> dict[str, Any]:
    filters: dict[str, Any] = {"tags": dict(tags or {})}
    if content_type is not None:
        filters["content_type"] = content_type
    if classification is not None:
        filters["classification"] = classification
    body: dict[str, Any] = {"vector": list(vector), "k": k, "filters": filters}
    for name, value in (("namespace", namespace), ("ef_search", ef_search), ("index", index)):
        if value is not None:
            body[name] = value
    return body


def hits_from(data: dict[str, Any]) -> list[SearchHit]:
    out = []
    for item in data.get("results", []):
        span = item.get("span")
        meta = {k: v for k, v in item.items() if k not in ("ref", "score", "chunk_id", "span")}
        out.append(
            SearchHit(
                ref=RefInfo.from_json(item["ref"]),
                score=float(item["score"]),
                chunk_id=item.get("chunk_id"),
                span=(int(span[0]), int(span[1])) if span else None,
                meta=meta,
            )
        )
    return out
