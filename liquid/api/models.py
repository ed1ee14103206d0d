"""JSON bodies of the API (for validation and the published OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class IpcHintModel(BaseModel):
    node: str
    path: str
    expires_at: str
    checksum: str | None = None


class RefModel(BaseModel):
    """A ResultRef's JSON form: what a reader needs to fetch and check the object."""

    uri: str = Field(description="liquid://tenant/namespace/key@version")
    size: int
    sha256: str
    content_type: str
    inline: str | None = Field(default=None, description="The value itself, base64, when small.")
    ipc: IpcHintModel | None = Field(default=None, description="Same-node shared-memory copy, if any.")


class ObjectModel(BaseModel):
    """Catalog facts about one object version."""

    uri: str
    tenant: str
    namespace: str
    key: str
    version: int
    size: int
    stored_size: int
    sha256: str
    content_type: str
    compression: str
    tags: dict[str, Any]
    classification: str | None
    trace_id: str | None
    correlation_id: str | None
    execution_id: str | None
    created_at: str
    expires_at: str | None
    legal_hold: bool
    home_tier: str
    home_store: str
    state: str


class PageModel(BaseModel):
    items: list[ObjectModel]
    next_cursor: str | None = Field(description="Pass as `after` for the next page; null on the last.")


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refs: list[Any] = Field(
        description="Refs as `liquid://` URIs or their JSON form (only `uri` is used); "
        "an entry that is neither gets its own error.",
        max_length=100_000,
    )
    inline: bool = Field(default=True, description="Return values up to `api.batch_inline_max` inline.")
    facts: bool = Field(
        default=False,
        description="Also return each version's catalog facts (`object`: tier, tags, state, ...). "
        "Off by default: they take a catalog read of every ref, where a hot batch otherwise takes none.",
    )


class ProblemModel(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    instance: str | None = None


class ResolveResult(BaseModel):
    index: int
    ok: bool
    ref: RefModel | None = Field(default=None, description="The ref's JSON form when `ok`.")
    object: ObjectModel | None = Field(
        default=None, description="Catalog facts when `ok` and the request asked for `facts`."
    )
    error: ProblemModel | None = Field(default=None, description="Why not, when not `ok`.")
    inline_omitted: bool = Field(
        default=False,
        description="The value was small enough to inline but the batch's `api.batch_inline_total` "
        "was spent: read it by its `uri`.",
    )


class ResolveResponse(BaseModel):
    results: list[ResolveResult]
    inline_bytes: int = Field(default=0, description="Bytes returned inline (before base64).")
    inline_omitted: int = Field(
        default=0, description="Refs returned without `inline` because the batch's inline total was spent."
    )


class SignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ref: str = Field(description="A ref of the caller's tenant.")
    ttl: float = Field(default=3600.0, gt=0, description="Seconds the signature stays valid.")


class SignResponse(BaseModel):
    uri: str
    sig: str
    exp: int = Field(description="Expiry, Unix seconds.")
    url: str = Field(description="Path (relative to the API base) that reads the ref without a key.")


class HealthModel(BaseModel):
    status: str


class ReadyModel(BaseModel):
    status: str
    checks: dict[str, str]


class FinishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime | None = Field(default=None, description="Finish time (ISO 8601 with offset); default now.")


class FinishResponse(BaseModel):
    execution_id: str
    finished_at: datetime


class ExplainModel(BaseModel):
    """Why an object is where it is (``liquid explain``)."""

    uri: str
    policy: str | None
    policy_version: int | None
    rule: str | None
    access_rate_per_hour: float
    hits: int
    last_access_at: str | None
    home_tier: str
    home_since: str
    should_be: str
    #: Where the durable home should be: ``should_be``, unless that is ``hot`` (a cache copy).
    home_should_be: str
    action: str
    reason: str
    next_change_at: str | None
    legal_hold: bool
    evaluated_at: str
    #: The hot tier: whether this object has a copy, whether the policy wants one, what it
    #: would take, its value per GB-month there, what the tier holds, and its caps.
    hot: dict[str, Any]
    #: The object's open move-queue row (kind, step, from, to, reason, attempts, queued_at) and
    #: ``waits``: why a restore has not started (a retrieval spend cap); None when nothing is queued.
    queued: dict[str, Any] | None = None


class EmbeddingModel(BaseModel):
    """One embedding of an object version, or of one chunk of it."""

    model_config = ConfigDict(extra="forbid")

    vector: list[Any] = Field(
        description="The embedding: finite numbers, as many as the namespace's dimension."
    )
    chunk_id: str | None = Field(
        default=None, description="Which chunk it embeds; the same chunk id again replaces its vector."
    )
    span: list[int] | None = Field(
        default=None, min_length=2, max_length=2, description="`[start, end)` of the chunk in the object."
    )


class AttachVectorsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embeddings: list[EmbeddingModel] = Field(min_length=1, max_length=100_000)
    metric: str | None = Field(
        default=None, description="cosine | l2 | ip; fixed for the namespace by its first write."
    )
    index: str | None = Field(default=None, description="A configured index name; the default one if unset.")


class AttachVectorsResponse(BaseModel):
    uri: str
    count: int
    index: str


class SearchFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: dict[str, str] = Field(
        default_factory=dict, description="Every pair must be among the object's tags."
    )
    content_type: str | None = None
    classification: str | None = None
    namespace: str | None = None


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vector: list[Any] = Field(description="The query embedding.")
    k: Any = Field(default=10, description="How many results (1 to `vectors.max_k`).")
    namespace: str | None = Field(
        default=None, description="Search one namespace (else all of the tenant's)."
    )
    filters: SearchFilters = Field(default_factory=SearchFilters)
    ef_search: Any = Field(
        default=None, description="HNSW candidates (1-1000); `vectors.ef_search` if unset."
    )
    index: str | None = Field(default=None, description="A configured index name; the default one if unset.")


class SearchResultModel(BaseModel):
    ref: RefModel
    score: float = Field(description="Higher is closer: cosine similarity, inner product, or -L2 distance.")
    chunk_id: str | None
    span: list[int] | None
    namespace: str
    key: str
    version: int
    content_type: str
    size: int
    tags: dict[str, Any]
    classification: str | None
    created_at: str


class SearchResponse(BaseModel):
    index: str
    results: list[SearchResultModel]
