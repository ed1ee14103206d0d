"""The Python SDK: :class:`Client` and :class:`AsyncClient` over the HTTP API, or in-process.

from liquid.client import Client, NotFound

with Client("http://127.0.0.1:8780", api_key="lq_...") as lq:
    ref = lq.put_table("features", "batch-7", table)   # RefInfo, maybe with a same-node shm hint
    again = lq.get_table(ref)                           # zero-copy from /dev/shm when on this node
    try:
        lq.get("liquid://acme/results/missing@1")
    except NotFound:
        ...

lq = Client.embedded(service, "acme")                   # same interface, no server
"""

from __future__ import annotations

from liquid.client._base import ClientStats, ObjectMeta, Page, Resolved, SearchHit, SignedRef
from liquid.client.aio import AsyncClient
from liquid.client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    DimensionMismatch,
    Forbidden,
    Gone,
    IntegrityError,
    InvalidRef,
    MethodNotAllowed,
    NotFound,
    RangeNotSatisfiable,
    RateLimited,
    ServerError,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from liquid.client.sync import Client, ObjectStream

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "ClientStats",
    "Conflict",
    "DimensionMismatch",
    "Forbidden",
    "Gone",
    "IntegrityError",
    "InvalidRef",
    "MethodNotAllowed",
    "NotFound",
    "ObjectMeta",
    "ObjectStream",
    "Page",
    "RangeNotSatisfiable",
    "RateLimited",
    "Resolved",
    "SearchHit",
    "ServerError",
    "SignedRef",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
]
