"""The synchronous client: :class:`Client`."""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, TypeVar

import httpx
import pyarrow as pa  # type: ignore[import-untyped]
from tenacity import Retrying, retry_if_exception, stop_after_attempt

from liquid.client import _base as b
from liquid.client import errors
from liquid.refs import RefInfo, ResultRef

if TYPE_CHECKING:
    from liquid.client.inprocess import InProcess
    from liquid.service import LiquidService

T = TypeVar("T")
Body = bytes | bytearray | memoryview | IO[bytes] | Iterable[bytes]


class ObjectStream:
    """An open streaming read; iterate it (or :meth:`read`) and close it (or use ``with``)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status = response.status_code
        self.size = int(response.headers.get("content-length", "-1"))
        self.sha256 = response.headers.get("etag", "").strip('"')
        self.content_type = response.headers.get("content-type", "application/octet-stream")
        #: Where the server read the bytes from (``hot``, ``warm``, ``cold``, ...).
        self.source = response.headers.get("x-liquid-source")

    def __iter__(self) -> Iterator[bytes]:
        return self.response.iter_bytes()

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        return self.response.iter_bytes(chunk_size)

    def read(self) -> bytes:
        return self.response.read()

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> ObjectStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """Liquid over HTTP (or in-process, see :meth:`embedded`) with one interface.

    Args:
        base_url: the API, e.g. ``http://127.0.0.1:8780``.
        api_key: ``lq_...``; None to read only signed refs.
        tenant: for admin keys, the tenant to act on (``X-Liquid-Tenant``).
        timeout: seconds per request (connect, read, write).
        retries: extra attempts for idempotent calls on transport errors and 429/503/504
            (exponential backoff with jitter); writes are retried only when the connection
            was never made.
        node_id, shm_dirs: this node's name and the directories whose shared-memory copies
            may be mapped (defaults: ``LIQUID_NODE_ID`` or the host name; ``/dev/shm/liquid-<uid>``).
        transport: an httpx transport (in-process, test doubles).

    Example::

        with Client("http://127.0.0.1:8780", api_key=key) as lq:
            ref = lq.put_json("results", "run-7/out.json", {"score": 0.93})
            assert lq.get_json(ref) == {"score": 0.93}
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8780",
        *,
        api_key: str | None = None,
        tenant: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        node_id: str | None = None,
        shm_dirs: Sequence[Path | str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": "liquid-client/1"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if tenant:
            headers["X-Liquid-Tenant"] = tenant
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)
        self.retries = retries
        self.stats = b.ClientStats()
        self.local = b.LocalReads(
            node_id=node_id, shm_dirs=[Path(d) for d in shm_dirs] if shm_dirs else None, stats=self.stats
        )
        self._closers: list[Callable[[], None]] = []
        #: In-process: the calls made on every step go to the service directly (see ``embedded``).
        self.direct: InProcess | None = None

    @classmethod
    def embedded(cls, service: LiquidService, tenant: str, **kwargs: Any) -> Client:
        """A client in-process over ``service`` as ``tenant`` (no server, no key).

        Get, head, put, delete, latest and batch resolve call the service directly
        (:mod:`liquid.client.inprocess`, the HTTP API's semantics and errors); the other calls
        go through the API app in-process.
        """
        from liquid.client.inprocess import InProcess
        from liquid.client.transport import PortalTransport, embedded_app

        app = embedded_app(service, tenant)
        transport = PortalTransport(app)
        client = cls(
            "http://liquid.embedded", transport=transport, node_id=service.settings.node_id, **kwargs
        )
        client.direct = InProcess(app.state.liquid, tenant)
        return client

    def __repr__(self) -> str:
        return f"Client({str(self.http.base_url)!r})"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -------------------------------------------------------------- plumbing

    def _retrying(self, fn: Callable[[], T], *, idempotent: bool) -> T:
        """``fn()``, retried on transient failures up to ``retries`` times with backoff and jitter."""
        try:
            return fn()  # the first attempt without tenacity's cost
        except Exception as exc:
            if self.retries < 1 or not b.is_transient(exc, idempotent=idempotent):
                raise
        time.sleep(b.first_retry_wait())
        for attempt in Retrying(
            stop=stop_after_attempt(self.retries),
            wait=b.retry_wait(),
            retry=retry_if_exception(lambda e: b.is_transient(e, idempotent=idempotent)),
            reraise=True,
        ):
            with attempt:
                return fn()
        raise AssertionError("unreachable")

    def _direct(self, fn: Callable[[], T], *, idempotent: bool = True) -> T:
        """An in-process call, retried as its HTTP twin would be."""
        return self._retrying(fn, idempotent=idempotent)

    def _call(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        kwargs = b.json_request(kwargs)

        def once() -> httpx.Response:
            response = self.http.request(method, url, **kwargs)
            b.check_response(response)
            return response

        return self._retrying(once, idempotent=idempotent)

    # ---------------------------------------------------------------- writes

    def put(
        self,
        namespace: str,
        key: str,
        data: Body,
        *,
        content_type: str = "application/octet-stream",
        tags: Mapping[str, str] | None = None,
        classification: str | None = None,
        ttl: timedelta | float | None = None,
        expires_at: datetime | None = None,
        trace_id: str | None = None,
        correlation_id: str | None = None,
        execution_id: str | None = None,
        legal_hold: bool = False,
        scope: str | None = None,
    ) -> RefInfo:
        """Store a new version of ``namespace/key`` (streamed) and return its ref.

        Raises:
            BadRequest, TooLarge, Unauthorized, Forbidden: see :mod:`liquid.client.errors`.
        """
        # In process, the service's put checks and reads the body itself (liquid.client.inprocess).
        if self.direct is not None:
            direct = self.direct
            return self._direct(
                lambda: direct.put(
                    namespace,
                    key,
                    data,
                    content_type=content_type,
                    tags=tags,
                    classification=classification,
                    ttl=ttl,
                    expires_at=expires_at,
                    trace_id=trace_id,
                    correlation_id=correlation_id,
                    execution_id=execution_id,
                    legal_hold=legal_hold,
                    scope=scope,
                ),
                idempotent=False,
            )
        content, size = b.body_parts(data)
        # The path first: the service checks the namespace and key before the options.
        path = b.object_path(namespace, key, new=True)
        headers = b.put_headers(
            content_type=content_type,
            size=size,
            tags=tags,
            classification=classification,
            ttl=ttl,
            expires_at=expires_at,
            trace_id=trace_id,
            correlation_id=correlation_id,
            execution_id=execution_id,
            legal_hold=legal_hold,
            scope=scope,
        )
        # Only bytes can be sent twice; a stream is retried only if it was never started.
        response = self._call("PUT", path, content=content, headers=headers, idempotent=False)
        return RefInfo.from_json(response.json())

    def put_json(self, namespace: str, key: str, value: Any, **options: Any) -> RefInfo:
        return self.put(namespace, key, b.json_bytes(value), content_type=b.JSON, **options)

    def put_table(self, namespace: str, key: str, table: pa.Table, **options: Any) -> RefInfo:
        """Store a pyarrow table as an Arrow IPC stream; the ref may carry a same-node shm hint."""
        return self.put(namespace, key, b.table_bytes(table), content_type=b.ARROW_STREAM, **options)

    def delete(self, ref: b.RefLike) -> dict[str, Any]:
        """Delete one version; returns its facts (``state`` is ``deleted``)."""
        if self.direct is not None:
            direct = self.direct
            return self._direct(lambda: direct.delete(ref))
        result: dict[str, Any] = self._call("DELETE", b.ref_path(ref)).json()
        return result

    def sign(self, ref: b.RefLike, *, ttl: float = 3600.0) -> b.SignedRef:
        """A signed ref anyone can read for ``ttl`` seconds without a key."""
        data = self._call("POST", "/v1/refs:sign", json={"ref": b.uri_of(ref), "ttl": ttl}).json()
        return b.SignedRef(uri=data["uri"], sig=data["sig"], exp=data["exp"], url=data["url"])

    def finish_execution(self, execution_id: str, *, at: datetime | None = None) -> datetime:
        """Mark a workflow execution finished: the clock starts for its step/execution-scoped results."""
        body = {"at": at.isoformat()} if at is not None else {}
        response = self._call("POST", b.finish_path(execution_id), json=body)
        return datetime.fromisoformat(response.json()["finished_at"])

    def explain(self, namespace: str, key: str, *, version: int | None = None) -> dict[str, Any]:
        """Which policy and rule govern an object, its score, where it is and should be, what comes next."""
        params = {"version": str(version)} if version is not None else {}
        response = self._call("GET", b.explain_path(namespace, key), params=params)
        result: dict[str, Any] = response.json()
        return result

    # ------------------------------------------------------ operator reports

    def report(
        self,
        name: str,
        *,
        tenant: str | None = None,
        namespace: str | None = None,
        start: date | None = None,
        end: date | None = None,
        source: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """One ``/v1/stats/{name}`` answer (``usage``, ``cost``, ``moves``, ``top-objects``, ``idle``).

        ``start``/``end`` are UTC days, ``end`` exclusive; a tenant key sees its own tenant only.
        """
        params = b.drop_none(
            {
                "tenant": tenant,
                "namespace": namespace,
                "from": start.isoformat() if start else None,
                "to": end.isoformat() if end else None,
                "source": source,
                "limit": limit,
            }
        )
        result: dict[str, Any] = self._call(
            "GET", f"/v1/stats/{b.segment(name, 'name')}", params=params
        ).json()
        return result

    def export_lag(self) -> list[dict[str, Any]]:
        """Each ClickHouse sink's watermark and lag (operator keys)."""
        sinks: list[dict[str, Any]] = self._call("GET", "/v1/stats/export").json()["sinks"]
        return sinks

    def events(
        self,
        *,
        tenant: str | None = None,
        kind: str | None = None,
        ref: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        order: str = "desc",
        limit: int = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of ``/v1/events``: ``events`` and ``next_cursor``."""
        params = b.drop_none(
            {
                "tenant": tenant,
                "kind": kind,
                "ref": ref,
                "from": start.isoformat() if start else None,
                "to": end.isoformat() if end else None,
                "order": order,
                "limit": limit,
                "cursor": cursor,
            }
        )
        result: dict[str, Any] = self._call("GET", "/v1/events", params=params).json()
        return result

    def policies(self, *, history: int = 20) -> dict[str, Any]:
        """The applied policy set, its diff to the previous version and the history (operator keys)."""
        result: dict[str, Any] = self._call("GET", "/v1/policies", params={"history": history}).json()
        return result

    def plan_policies(
        self, sources: Mapping[str, str] | None = None, *, changes: bool = False
    ) -> dict[str, Any]:
        """``liquid policy plan --output json`` over HTTP, of ``sources`` (name → YAML) or the applied set."""
        body: dict[str, Any] = {"changes": changes}
        if sources is not None:
            body["sources"] = dict(sources)
        result: dict[str, Any] = self._call("POST", "/v1/policies:plan", json=body).json()
        return result

    def tiering_status(self, *, limit: int = 50) -> dict[str, Any]:
        """Move queue depth, the oldest pending moves, the movers' heartbeats, the export lag."""
        result: dict[str, Any] = self._call("GET", "/v1/tiering/status", params={"limit": limit}).json()
        return result

    def metrics(self) -> str:
        """The API's Prometheus exposition text (``/metrics``)."""
        return self._call("GET", "/metrics").text

    # ----------------------------------------------------------------- reads

    def get(self, ref: b.Target, *, start: int = 0, end: int | None = None) -> bytes:
        """The bytes of a version (``[start, end)``): inline or shm when the ref allows, else HTTP.

        Whole reads are checked against the version's SHA-256.
        """
        buf = self.local.buffer(ref)
        if buf is not None:
            data: bytes = buf.to_pybytes()
            return data[start:end] if (start, end) != (0, None) else data
        return self._fetch(ref, start, end)

    def _fetch(self, ref: b.Target, start: int = 0, end: int | None = None) -> bytes:
        self.stats.http += 1
        if self.direct is not None and not isinstance(ref, b.SignedRef):
            direct = self.direct
            return self._direct(lambda: direct.get(ref, start, end))
        response = self._call(
            "GET", b.ref_path(ref), headers=b.range_header(start, end), params=b.sig_params(ref)
        )
        data = response.content
        if response.status_code == 200:
            b.verify(data, response.headers.get("etag", "").strip('"'), b.uri_of(ref))
        return data

    def open(self, ref: b.Target, *, start: int = 0, end: int | None = None) -> ObjectStream:
        """A streaming read; use as a context manager."""

        def once() -> ObjectStream:
            request = self.http.build_request(
                "GET", b.ref_path(ref), headers=b.range_header(start, end), params=b.sig_params(ref)
            )
            response = self.http.send(request, stream=True)
            if response.status_code >= 400:
                response.read()
                response.close()
                b.check_response(response)
            return ObjectStream(response)

        self.stats.http += 1
        return self._retrying(once, idempotent=True)

    def head(self, ref: b.Target) -> b.ObjectMeta:
        if self.direct is not None and not isinstance(ref, b.SignedRef):
            direct = self.direct
            return self._direct(lambda: direct.head(ref))
        return b.meta_from(self._call("HEAD", b.ref_path(ref), params=b.sig_params(ref)))

    def latest(self, namespace: str, key: str) -> ResultRef:
        """The newest live version of a key."""
        if self.direct is not None:
            direct = self.direct
            return self._direct(lambda: direct.latest(namespace, key))
        return b.meta_from(self._call("HEAD", b.object_path(namespace, key))).ref

    def get_json(self, ref: b.Target) -> Any:
        return json.loads(self.get(ref))

    def get_table(self, ref: b.Target) -> pa.Table:
        """A pyarrow table: zero-copy from a same-node shm copy when the ref's hint is valid."""
        table = self.local.table(ref)
        if table is not None:
            return table
        return b.table_from(self._fetch(ref))

    def attach_vectors(
        self,
        namespace: str,
        key: str,
        embeddings: Sequence[Sequence[float] | dict[str, Any]],
        *,
        version: int | None = None,
        metric: str | None = None,
        index: str | None = None,
    ) -> int:
        """Attach embeddings to a version (the latest unless ``version``); returns how many were stored.

        Each embedding is a vector, or ``{"vector": [...], "chunk_id": "c1", "span": [0, 512]}``;
        the same chunk id again replaces its vector. A vector of another length than the
        namespace's raises :class:`~liquid.client.errors.ApiError` with status 422.
        """
        params = {"version": version} if version is not None else {}
        body = b.embeddings_payload(embeddings, metric=metric, index=index)
        response = self._call("PUT", b.vectors_path(namespace, key), json=body, params=params)
        return int(response.json()["count"])

    def search(
        self,
        vector: Sequence[float],
        *,
        k: int = 10,
        namespace: str | None = None,
        tags: dict[str, str] | None = None,
        content_type: str | None = None,
        classification: str | None = None,
        ef_search: int | None = None,
        index: str | None = None,
    ) -> list[b.SearchHit]:
        """The ``k`` nearest object versions (or chunks) of this tenant, closest first, with filters.

        Each hit's ref carries the value inline when it is small; resolve the others as usual.
        """
        body = b.search_payload(
            vector,
            k=k,
            namespace=namespace,
            tags=tags,
            content_type=content_type,
            classification=classification,
            ef_search=ef_search,
            index=index,
        )
        return b.hits_from(b.json_of(self._call("POST", "/v1/search", json=body)))

    def resolve_many(
        self, refs: Sequence[b.RefLike], *, inline: bool = True, facts: bool = False
    ) -> list[b.Resolved]:
        """Resolve many refs in one call; each result has the ref's JSON form or its own error.

        ``facts`` adds each version's catalog facts (``Resolved.object``), at a catalog read per batch.
        """
        if self.direct is not None:
            direct = self.direct
            return self._direct(lambda: direct.resolve_many(refs, inline=inline, facts=facts))
        payload = b.resolve_payload(refs, inline=inline, facts=facts)
        return b.resolved_from(b.json_of(self._call("POST", "/v1/refs:resolve", json=payload)))

    def list(
        self,
        namespace: str,
        *,
        prefix: str = "",
        after: str | None = None,
        limit: int = 100,
        all_versions: bool = False,
    ) -> b.Page:
        params: dict[str, Any] = {"prefix": prefix, "limit": limit, "all_versions": str(all_versions).lower()}
        if after is not None:
            params["after"] = after
        data = self._call("GET", b.namespace_path(namespace), params=params).json()
        return b.Page(items=data["items"], next_cursor=data["next_cursor"])

    def iter_objects(
        self, namespace: str, *, prefix: str = "", page_size: int = 1000
    ) -> Iterator[dict[str, Any]]:
        """Every live object of a namespace (newest versions), page by page."""
        after: str | None = None
        while True:
            page = self.list(namespace, prefix=prefix, after=after, limit=page_size)
            yield from page.items
            if page.next_cursor is None:
                return
            after = page.next_cursor

    def versions(self, namespace: str, key: str, *, limit: int = 100) -> builtins.list[dict[str, Any]]:
        items: builtins.list[dict[str, Any]] = self._call(
            "GET", b.versions_path(namespace, key), params={"limit": limit}
        ).json()["items"]
        return items

    def ready(self) -> dict[str, Any]:
        """The server's ``/readyz`` answer (raises Unavailable when a backend is down)."""
        result: dict[str, Any] = self._call("GET", "/readyz").json()
        return result


__all__ = ["Client", "ObjectStream", "errors"]
