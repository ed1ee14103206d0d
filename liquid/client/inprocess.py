"""The in-process client's direct calls: the core service itself, no ASGI round trip.

``Client.embedded(service, tenant)`` sends the calls a runtime makes on every step — get,
head, put, delete, latest and batch resolve — straight to :class:`~liquid.service.LiquidService`
(an HTTP round trip through the app cost 10-40x the core call itself). They keep the HTTP
API's semantics: the same tenant checks (the service's), the same validation, and every
error raised as the client exception the HTTP answer would have become (``errors.from_core``
on the same core error; a range past the end is the same 416). Everything else (listing,
versions, signing, explain, streams, readiness) goes through the in-process app as before.

Differences, by design: the bytes of a read are checked by the core (as every read is)
and not hashed a second time by the client, and a read does not write a same-node
shared-memory copy of an Arrow object (a put still does, as over HTTP).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from liquid.client import _base as b
from liquid.client import errors
from liquid.errors import InvalidInput, LiquidError
from liquid.refs import RefInfo, ResultRef

if TYPE_CHECKING:
    from liquid.api.routes import ApiContext

T = TypeVar("T")
ACTOR = "key:embedded"


class InProcess:
    """Direct calls on the service of an in-process API context, as one tenant."""

    def __init__(self, ctx: ApiContext, tenant: str) -> None:
        self.ctx = ctx
        self.service = ctx.service
        self.tenant = tenant

    def __repr__(self) -> str:
        return f"InProcess(tenant={self.tenant!r})"

    @staticmethod
    def _core(fn: Callable[[], T]) -> T:
        """Run ``fn``; a core error becomes the client error its HTTP answer would have become."""
        try:
            return fn()
        except errors.ApiError:
            raise
        except LiquidError as exc:
            raise errors.from_core(exc) from None

    @staticmethod
    def _ref(target: b.RefLike) -> ResultRef:
        """The version a target names (the server sees only the URI: inline bytes play no part)."""
        if isinstance(target, ResultRef):
            return target
        if isinstance(target, RefInfo):
            return target.ref
        from liquid.api.routes import parse_ref_path

        uri = b.uri_of(target)
        return InProcess._core(lambda: parse_ref_path(uri))

    def get(self, target: b.RefLike, start: int, end: int | None) -> bytes:
        """The bytes of ``[start, end)``, as ``GET /v1/refs/{ref}`` with a Range would give them."""
        b.range_header(start, end)  # an empty range is refused before any call, as over HTTP
        ref = self._ref(target)
        if (start, end) == (0, None):
            # A whole value: the core's own get (no reader for a hot or warm small value).
            return self._core(lambda: self.service.get(self.tenant, ref))

        def read() -> bytes:
            reader = self.service.open(self.tenant, ref, start=start, end=end)
            if (start, end) != (0, None) and start >= reader.size:
                close = getattr(reader.chunks, "close", None)
                if close is not None:
                    close()
                raise errors.from_problem(416, _range_problem(reader.size))
            return reader.read()

        return self._core(read)

    def head(self, target: b.RefLike) -> b.ObjectMeta:
        ref = self._ref(target)
        info = self._core(lambda: self.service.head(self.tenant, ref))
        return b.ObjectMeta(
            ref=info.ref,
            size=info.size,
            sha256=info.sha256,
            content_type=info.content_type,
            home_tier=info.home_tier,
            created_at=info.created_at,
            expires_at=info.expires_at,
        )

    def latest(self, namespace: str, key: str) -> ResultRef:
        return self._core(lambda: self.service.latest(self.tenant, namespace, key))

    def delete(self, target: b.RefLike) -> dict[str, Any]:
        ref = self._ref(target)
        return self._core(lambda: self.service.delete(self.tenant, ref, actor=ACTOR)).to_json()

    def put(
        self,
        namespace: str,
        key: str,
        data: Any,
        *,
        content_type: str,
        tags: Mapping[str, str] | None,
        classification: str | None,
        ttl: timedelta | float | None,
        expires_at: datetime | None,
        trace_id: str | None,
        correlation_id: str | None,
        execution_id: str | None,
        legal_hold: bool,
        scope: str | None,
    ) -> RefInfo:
        """``PUT /v1/objects/{namespace}/{key}``: the service's put, and the same shm copy for Arrow."""
        # The client-side checks HTTP does first that hold without HTTP (content type, tags).
        b.put_headers(
            content_type=content_type,
            size=None,
            tags=tags,
            classification=classification,
            ttl=ttl,
            expires_at=expires_at,
            trace_id=trace_id,
            correlation_id=correlation_id,
            execution_id=execution_id,
            legal_hold=legal_hold,
            scope=scope,
            wire=False,
        )
        content, size = b.body_parts(data)
        shm = self.ctx.shm
        writer = shm.writer() if shm is not None and shm.wants(content_type, size) else None

        def tee(chunks: Iterable[bytes | memoryview]) -> Iterable[bytes | memoryview]:
            for chunk in chunks:
                if writer is not None:
                    writer.write(chunk)
                yield chunk

        def put() -> RefInfo:
            from liquid.api.routes import _header_fields

            body: Any = content
            if writer is not None and isinstance(content, bytes):
                view = memoryview(content)
                body = (view[i : i + b.CHUNK] for i in range(0, len(content), b.CHUNK))
            info = _header_fields(self.service.put)(
                self.tenant,
                namespace,
                key,
                tee(body) if writer is not None else body,
                content_type=content_type,
                size_hint=size,
                tags=tags,
                classification=classification,
                trace_id=trace_id,
                correlation_id=correlation_id,
                execution_id=execution_id,
                expires_at=expires_at,
                ttl=ttl,
                legal_hold=legal_hold,
                scope=scope,
                actor=ACTOR,
            )
            if writer is not None and shm is not None and writer.size >= shm.min_size:
                hint = writer.commit(info.ref, info.sha256)
                if hint is not None:
                    info = replace(info, ipc=hint)
            return info

        try:
            return self._core(put)
        finally:
            if writer is not None and writer.active:
                writer.abort()

    def resolve_many(
        self, refs: Sequence[b.RefLike], *, inline: bool, facts: bool = False
    ) -> list[b.Resolved]:
        """``POST /v1/refs:resolve``: the route's own batch function on this context."""
        from liquid.api.routes import InlineBudget, resolve_batch

        api = self.ctx.settings.api
        items = [b.uri_of(r) if not isinstance(r, str) else r for r in refs]
        if len(items) > api.max_batch:
            raise errors.from_core(
                InvalidInput(f"a batch holds at most {api.max_batch} refs, got {len(items)}", field="refs")
            )
        budget = InlineBudget(api.batch_inline_total)
        inline_max = api.batch_inline_max if inline else -1
        results = self._core(
            lambda: resolve_batch(self.ctx, self.tenant, items, inline_max, budget, facts=facts)
        )
        return b.resolved_from({"results": results})


def _range_problem(size: int) -> dict[str, Any]:
    from liquid.api.problems import TYPE_RANGE, problem_body

    return problem_body(
        TYPE_RANGE, 416, f"the requested range is not within the object's {size} bytes", field="Range"
    )
