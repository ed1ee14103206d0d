"""The vector routes: attach embeddings to an object version, and search them.

Embeddings attach at ``PUT /v1/objects/{namespace}/{key}/vectors``, or at its twin
``PUT /v1/vectors/{namespace}/{key}``. So that the first path always means the embeddings, no
object may be stored under a key ending in ``/vectors`` (:func:`liquid.refs.check_new_key`); one
stored before that rule is still read, listed and deleted as before.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import pydantic
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from liquid.api.models import AttachVectorsRequest, AttachVectorsResponse, SearchRequest, SearchResponse
from liquid.api.routes import (
    _NAMESPACE,
    ApiContext,
    Ctx,
    Key,
    LeanRoute,
    Namespace,
    VersionQuery,
    Who,
    _invalid,
    _lean_caller,
    _object_ref,
    body_error,
    lean_call,
    run,
    utf8_path,
    within_deadline,
)
from liquid.errors import InvalidInput
from liquid.refs import reserved_key_message
from liquid.vectors import Embedding, VectorFilter
from liquid.vectors.base import check_metric
from liquid.vectors.search import VectorSearch

router = APIRouter(dependencies=[Depends(utf8_path)])
_422: dict[int | str, dict[str, Any]] = {
    422: {"description": "An embedding's dimension differs from the namespace's (fixed by its first write)."}
}


async def vector_search(request: Request) -> VectorSearch:
    search: VectorSearch = request.app.state.vectors
    return search


Vectors = Annotated[VectorSearch, Depends(vector_search)]


@router.put(
    "/v1/objects/{namespace}/{key:path}/vectors",
    response_model=AttachVectorsResponse,
    summary="Attach embeddings (whole object or chunks) to a version (the latest unless `version`)",
    tags=["vectors"],
    responses=_422,
)
@router.put(
    "/v1/vectors/{namespace}/{key:path}",
    response_model=AttachVectorsResponse,
    summary="Attach embeddings: the same as `PUT /v1/objects/{namespace}/{key}/vectors`",
    tags=["vectors"],
    responses=_422,
)
async def attach_vectors(
    c: Ctx,
    who: Who,
    vs: Vectors,
    namespace: Namespace,
    key: Key,
    body: AttachVectorsRequest,
    version: VersionQuery = None,
) -> Response:
    return await _attach(c, who.tenant, vs, namespace, key, body, version)


async def _attach(
    c: ApiContext,
    tenant: str,
    vs: VectorSearch,
    namespace: str,
    key: str,
    body: AttachVectorsRequest,
    version: int | None,
) -> Response:
    ref = await _object_ref(c, tenant, namespace, key, version)
    metric = check_metric(body.metric) if body.metric is not None else None
    embeddings = []
    for i, e in enumerate(body.embeddings):
        if e.span is not None and not all(isinstance(x, int) for x in e.span):
            raise InvalidInput(f"embeddings[{i}].span must be two integers", field=f"embeddings[{i}].span")
        span = (e.span[0], e.span[1]) if e.span is not None else None
        embeddings.append(Embedding(e.vector, chunk_id=e.chunk_id or "", span=span))
    count = await run(vs.attach, tenant, ref, embeddings, index=body.index, metric=metric)
    index = body.index if body.index is not None else c.settings.vectors.default
    return JSONResponse({"uri": ref.uri, "count": count, "index": index})


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    summary="Nearest object versions (or chunks) to a vector, with metadata filters",
    tags=["vectors"],
    responses=_422,
)
async def search(c: Ctx, who: Who, vs: Vectors, body: SearchRequest) -> Response:
    return await _search(c, vs, who.tenant, body)


async def _search(c: ApiContext, vs: VectorSearch, tenant: str, body: SearchRequest) -> Response:
    f = body.filters
    if body.namespace is not None and f.namespace is not None and body.namespace != f.namespace:
        raise InvalidInput(
            f"namespace {body.namespace!r} and filters.namespace {f.namespace!r} disagree", field="namespace"
        )
    where = VectorFilter(
        namespace=body.namespace if body.namespace is not None else f.namespace,  # "" is checked, not "all"
        tags=f.tags,
        content_type=f.content_type,
        classification=f.classification,
    )
    if vs.on_loop(body.index):
        # pgvector in the catalog: the search waits on PostgreSQL's socket in this loop, no worker
        # thread to hop to and back from (benchmarks/results/vectors.md: the hop cost the most),
        # and its hits come back in their JSON form, written straight from the catalog rows.
        found = await within_deadline(
            vs.asearch_json(
                tenant, body.vector, k=body.k, where=where, ef_search=body.ef_search, index=body.index
            )
        )
    else:
        results = await run(
            vs.search, tenant, body.vector, k=body.k, where=where, ef_search=body.ef_search, index=body.index
        )
        found = [r.to_json() for r in results]
    # orjson: ten results with their inline values and metadata, written several times faster.
    answer = {"index": body.index if body.index is not None else c.settings.vectors.default, "results": found}
    return Response(orjson.dumps(answer), media_type="application/json")


# ---------------------------------------------------------- the lean search route


async def search_lean(request: Request) -> Response:
    """``POST /v1/search`` without FastAPI's per-request dependency solving.

    A runtime agent searches on every step. The FastAPI route above documents it (OpenAPI) and
    defines its behaviour; this does the same work by hand: the same key check and tenant rate
    limit (:func:`~liquid.api.routes._principal_of`), the same acting tenant, the same model
    validating the body (in pydantic-core, straight from the JSON bytes), the same handler, and
    the same problem+json answers.
    """
    c, tenant, body = await lean_call(request, SearchRequest)
    return await _search(c, request.app.state.vectors, tenant, body)


async def attach_under_object(request: Request) -> Response:
    """``PUT /v1/objects/{namespace}/{key}/vectors``, matched before the object routes' ``PUT``.

    Its FastAPI twin above documents it, but the lean object ``PUT`` would take the path first
    (as a key ending in ``/vectors``), so this route sits ahead of it and does the twin's checks
    in FastAPI's order. A body that is not JSON at all, and not declared JSON, was most likely
    meant as an object's bytes: it gets the reason such a key cannot be stored, rather than a JSON
    parser's complaint.
    """
    c, who = await _lean_caller(request)
    errors, version = _invalid(request, (_NAMESPACE,), version=True)
    if errors:
        raise RequestValidationError(errors)
    params = request.path_params
    raw = await request.body()
    try:
        body = AttachVectorsRequest.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        declared = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if declared != "application/json" and any(e["type"] == "json_invalid" for e in exc.errors()):
            raise InvalidInput(
                reserved_key_message(params["key"] + "/vectors")
                + '; to attach embeddings, send JSON: {"embeddings": [{"vector": [...]}]}',
                field="key",
            ) from None
        raise body_error(exc) from None
    return await _attach(
        c, who.tenant, request.app.state.vectors, params["namespace"], params["key"], body, version
    )


def lean_routes() -> list[Route]:
    """Routes matched before the routers' and the object routes' (see :func:`liquid.api.app.create_app`)."""
    return [
        LeanRoute("/v1/search", search_lean, methods=["POST"], include_in_schema=False),
        LeanRoute(
            "/v1/objects/{namespace}/{key:path}/vectors",
            attach_under_object,
            methods=["PUT"],
            include_in_schema=False,
        ),
    ]
