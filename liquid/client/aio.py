"""The asyncio client: :class:`AsyncClient`, the same interface as :class:`~liquid.client.Client`."""

from __future__ import annotations

import builtins
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import httpx
import pyarrow as pa  # type: ignore[import-untyped]
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from liquid.client import _base as b
from liquid.refs import RefInfo, ResultRef

if TYPE_CHECKING:
    from liquid.service import LiquidService

T = TypeVar("T")


async def _aiter(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


class AsyncClient:
    """Liquid over HTTP for asyncio code; see :class:`~liquid.client.Client` for the arguments."""

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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": "liquid-client/1"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if tenant:
            headers["X-Liquid-Tenant"] = tenant
        self.http = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )
        self.retries = retries
        self.stats = b.ClientStats()
        self.local = b.LocalReads(
            node_id=node_id, shm_dirs=[Path(d) for d in shm_dirs] if shm_dirs else None, stats=self.stats
        )

    @classmethod
    def embedded(cls, service: LiquidService, tenant: str, **kwargs: Any) -> AsyncClient:
        """An in-process client over ``service`` as ``tenant`` (httpx's ASGI transport, no server)."""
        from liquid.client.transport import embedded_app

        transport = httpx.ASGITransport(app=embedded_app(service, tenant))
        return cls("http://liquid.embedded", transport=transport, node_id=service.settings.node_id, **kwargs)

    def __repr__(self) -> str:
        return f"AsyncClient({str(self.http.base_url)!r})"

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _retrying(self, fn: Callable[[], Awaitable[T]], *, idempotent: bool) -> T:
        """``await fn()``, retried on transient failures up to ``retries`` times with backoff and jitter."""
        try:
            return await fn()  # the first attempt without tenacity's cost
        except Exception as exc:
            if self.retries < 1 or not b.is_transient(exc, idempotent=idempotent):
                raise
        await anyio.sleep(b.first_retry_wait())
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.retries),
            wait=b.retry_wait(),
            retry=retry_if_exception(lambda e: b.is_transient(e, idempotent=idempotent)),
            reraise=True,
        ):
            with attempt:
                return await fn()
        raise AssertionError("unreachable")

    async def _call(self, method: str, url: str, *, idempotent: bool = True, **kwargs: Any) -> httpx.Response:
        kwargs = b.json_request(kwargs)

        async def once() -> httpx.Response:
            response = await self.http.request(method, url, **kwargs)
            b.check_response(response)
            return response

        return await self._retrying(once, idempotent=idempotent)

    async def put(
        self,
        namespace: str,
        key: str,
        data: Any,
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
        """Store a new version; ``data`` may also be an async iterable of bytes."""
        if hasattr(data, "__aiter__"):
            content: Any = data
            size = None
        else:
            content, size = b.body_parts(data)
            if not isinstance(content, bytes):
                content = _aiter(content)
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
        response = await self._call("PUT", path, content=content, headers=headers, idempotent=False)
        return RefInfo.from_json(response.json())

    async def put_json(self, namespace: str, key: str, value: Any, **options: Any) -> RefInfo:
        return await self.put(namespace, key, b.json_bytes(value), content_type=b.JSON, **options)

    async def put_table(self, namespace: str, key: str, table: pa.Table, **options: Any) -> RefInfo:
        return await self.put(namespace, key, b.table_bytes(table), content_type=b.ARROW_STREAM, **options)

    async def delete(self, ref: b.RefLike) -> dict[str, Any]:
        result: dict[str, Any] = (await self._call("DELETE", b.ref_path(ref))).json()
        return result

    async def sign(self, ref: b.RefLike, *, ttl: float = 3600.0) -> b.SignedRef:
        data = (await self._call("POST", "/v1/refs:sign", json={"ref": b.uri_of(ref), "ttl": ttl})).json()
        return b.SignedRef(uri=data["uri"], sig=data["sig"], exp=data["exp"], url=data["url"])

    async def finish_execution(self, execution_id: str, *, at: datetime | None = None) -> datetime:
        """Mark a workflow execution finished: the clock starts for its step/execution-scoped results."""
        body = {"at": at.isoformat()} if at is not None else {}
        response = await self._call("POST", b.finish_path(execution_id), json=body)
        return datetime.fromisoformat(response.json()["finished_at"])

    async def explain(self, namespace: str, key: str, *, version: int | None = None) -> dict[str, Any]:
        """Which policy and rule govern an object, its score, where it is and should be, what comes next."""
        params = {"version": str(version)} if version is not None else {}
        response = await self._call("GET", b.explain_path(namespace, key), params=params)
        result: dict[str, Any] = response.json()
        return result

    async def get(self, ref: b.Target, *, start: int = 0, end: int | None = None) -> bytes:
        buf = self.local.buffer(ref)
        if buf is not None:
            data: bytes = buf.to_pybytes()
            return data[start:end] if (start, end) != (0, None) else data
        return await self._fetch(ref, start, end)

    async def _fetch(self, ref: b.Target, start: int = 0, end: int | None = None) -> bytes:
        self.stats.http += 1
        response = await self._call(
            "GET", b.ref_path(ref), headers=b.range_header(start, end), params=b.sig_params(ref)
        )
        data = response.content
        if response.status_code == 200:
            b.verify(data, response.headers.get("etag", "").strip('"'), b.uri_of(ref))
        return data

    async def open(self, ref: b.Target, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream the bytes (an async generator; break out of it to stop early)."""
        self.stats.http += 1
        request = self.http.build_request(
            "GET", b.ref_path(ref), headers=b.range_header(start, end), params=b.sig_params(ref)
        )
        response = await self._retrying(lambda: self.http.send(request, stream=True), idempotent=True)
        try:
            if response.status_code >= 400:
                await response.aread()
                b.check_response(response)
            async for chunk in response.aiter_bytes():
                yield chunk
        finally:
            await response.aclose()

    async def head(self, ref: b.Target) -> b.ObjectMeta:
        return b.meta_from(await self._call("HEAD", b.ref_path(ref), params=b.sig_params(ref)))

    async def latest(self, namespace: str, key: str) -> ResultRef:
        return b.meta_from(await self._call("HEAD", b.object_path(namespace, key))).ref

    async def get_json(self, ref: b.Target) -> Any:
        return json.loads(await self.get(ref))

    async def get_table(self, ref: b.Target) -> pa.Table:
        table = self.local.table(ref)
        if table is not None:
            return table
        return b.table_from(await self._fetch(ref))

    async def attach_vectors(
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
        response = await self._call("PUT", b.vectors_path(namespace, key), json=body, params=params)
        return int(response.json()["count"])

    async def search(
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
        return b.hits_from(b.json_of(await self._call("POST", "/v1/search", json=body)))

    async def resolve_many(
        self, refs: Sequence[b.RefLike], *, inline: bool = True, facts: bool = False
    ) -> list[b.Resolved]:
        payload = b.resolve_payload(refs, inline=inline, facts=facts)
        return b.resolved_from(b.json_of(await self._call("POST", "/v1/refs:resolve", json=payload)))

    async def list(
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
        data = (await self._call("GET", b.namespace_path(namespace), params=params)).json()
        return b.Page(items=data["items"], next_cursor=data["next_cursor"])

    async def versions(self, namespace: str, key: str, *, limit: int = 100) -> builtins.list[dict[str, Any]]:
        response = await self._call("GET", b.versions_path(namespace, key), params={"limit": limit})
        items: builtins.list[dict[str, Any]] = response.json()["items"]
        return items
