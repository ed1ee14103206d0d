"""Vector routes over HTTP: attach, search, filters, tenant isolation, problem+json for bad input, clients."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from liquid.api.server import ApiServer
from liquid.client import AsyncClient, Client
from liquid.client.errors import BadRequest, DimensionMismatch
from liquid.errors import InvalidInput
from liquid.service import LiquidService
from tests.api.conftest import TenantKey
from tests.problems import problem_of

E = [[1.0 if i == j else 0.0 for i in range(4)] for j in range(4)]


def _put(
    http: httpx.Client, auth: dict[str, str], key: str, body: bytes = b"v", **headers: str
) -> dict[str, Any]:
    r = http.put(f"/v1/objects/kb/{key}", content=body, headers={**auth, **headers})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def http(base_url: str) -> httpx.Client:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        yield c  # type: ignore[misc]


def test_attach_then_search_returns_scored_refs_with_inline_values(
    http: httpx.Client, auth: dict[str, str]
) -> None:
    for i in range(3):
        _put(http, auth, f"doc/{i}", f"body {i}".encode(), **{"X-Liquid-Tags": f"n={i}"})
        r = http.put(f"/v1/objects/kb/doc/{i}/vectors", json={"embeddings": [{"vector": E[i]}]}, headers=auth)
        assert r.status_code == 200 and r.json()["count"] == 1, r.text
    r = http.post("/v1/search", json={"vector": E[1], "k": 2, "namespace": "kb"}, headers=auth)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0]["key"] == "doc/1" and len(results) == 2
    assert math.isclose(results[0]["score"], 1.0, abs_tol=1e-6)
    assert results[0]["tags"] == {"n": "1"} and results[0]["ref"]["inline"]  # base64 of b"body 1"
    r = http.post("/v1/search", json={"vector": E[1], "filters": {"tags": {"n": "2"}}}, headers=auth)
    assert [x["key"] for x in r.json()["results"]] == ["doc/2"]


def test_chunks_with_spans_and_a_version_query(http: httpx.Client, auth: dict[str, str]) -> None:
    _put(http, auth, "long", b"a" * 100)
    v2 = _put(http, auth, "long", b"b" * 100)
    body = {
        "embeddings": [
            {"vector": E[0], "chunk_id": "c0", "span": [0, 50]},
            {"vector": E[3], "chunk_id": "c1", "span": [50, 100]},
        ]
    }
    r = http.put("/v1/vectors/kb/long", json=body, params={"version": 1}, headers=auth)
    assert r.status_code == 200 and r.json()["uri"].endswith("@1"), r.text
    (hit,) = http.post("/v1/search", json={"vector": E[3], "k": 1}, headers=auth).json()["results"]
    assert (hit["chunk_id"], hit["span"], hit["version"]) == ("c1", [50, 100], 1)
    assert v2["uri"].endswith("@2")


def test_another_tenant_sees_nothing_and_cannot_attach(
    http: httpx.Client, auth: dict[str, str], make_tenant: Callable[[], TenantKey]
) -> None:
    _put(http, auth, "secret")
    assert http.put("/v1/objects/kb/secret/vectors", json={"embeddings": [{"vector": E[0]}]}, headers=auth)
    other = {"Authorization": f"Bearer {make_tenant().key}"}
    r = http.post("/v1/search", json={"vector": E[0], "k": 10, "namespace": "kb"}, headers=other)
    assert r.status_code == 200 and r.json()["results"] == []
    r = http.put("/v1/objects/kb/secret/vectors", json={"embeddings": [{"vector": E[0]}]}, headers=other)
    problem_of(r, 404, "liquid:not-found")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"vector": []}, 400, "vector"),
        ({"vector": "abc"}, 400, "vector"),
        ({"vector": [1, "x", 0, 0]}, 400, "vector"),
        ({"vector": [10**400, 0, 0, 0]}, 400, "vector"),
        ({"vector": [1e39, 0, 0, 0]}, 400, "vector"),  # finite, but an infinity as float32
        ({"vector": [0.0, 0.0, 0.0, 0.0]}, 400, "vector"),  # no direction under cosine
        ({"vector": E[0], "namespace": ""}, 400, "namespace"),  # not "every namespace"
        ({"vector": E[0], "filters": {"namespace": ""}}, 400, "namespace"),
        ({"vector": E[0], "index": ""}, 400, "index"),  # not "the default index"
        ({"vector": E[0], "k": 0}, 400, "k"),
        ({"vector": E[0], "k": 100_000}, 400, "k"),
        ({"vector": E[0], "k": "ten"}, 400, "k"),
        ({"vector": E[0], "ef_search": 0}, 400, "ef_search"),
        ({"vector": E[0], "namespace": "NOPE/.."}, 400, "namespace"),
        ({"vector": E[0], "index": "elsewhere"}, 400, "index"),
        ({"vector": E[0], "filters": {"tags": {"a": 1}}}, 400, None),
        ({"vector": E[0], "surprise": 1}, 400, None),
        ({"vector": [1.0] * 5, "namespace": "kb"}, 422, "vector"),
    ],
)
def test_bad_search_input_is_a_problem_not_a_5xx(
    http: httpx.Client, auth: dict[str, str], body: dict[str, Any], status: int, field: str | None
) -> None:
    _put(http, auth, "x")
    assert http.put("/v1/objects/kb/x/vectors", json={"embeddings": [{"vector": E[0]}]}, headers=auth)
    problem = problem_of(http.post("/v1/search", json=body, headers=auth), status)
    if field is not None:
        assert problem["field"] == field, problem


def test_bad_vector_writes_are_problems_and_store_nothing(http: httpx.Client, auth: dict[str, str]) -> None:
    _put(http, auth, "x")
    url = "/v1/objects/kb/x/vectors"
    assert http.put(url, json={"embeddings": [{"vector": E[0]}]}, headers=auth).status_code == 200
    problem = problem_of(
        http.put(url, json={"embeddings": [{"vector": [1.0] * 5, "chunk_id": "b"}]}, headers=auth),
        422,
        "liquid:vector-dimension",
    )
    assert "4-dimensional" in problem["detail"]
    for bad in (
        {"embeddings": []},
        '{"embeddings": [{"vector": [Infinity, 0, 0, 0]}]}',
        '{"embeddings": [{"vector": [NaN, 0, 0, 0]}]}',
        "{not json",
        {"embeddings": [{"vector": E[0], "span": [3, 1]}]},
        {"embeddings": [{"vector": E[0], "span": [1]}]},
        {"embeddings": [{"vector": E[0], "chunk_id": "a"}, {"vector": E[1], "chunk_id": "a"}]},
        {"embeddings": [{"vector": E[0]}], "metric": "manhattan"},
        {"embeddings": [{"vector": E[0]}], "index": "nope"},
        {"embeddings": [{"vector": E[0]}], "index": ""},
        {"embeddings": [{"vector": [1e39, 0, 0, 0]}]},
        {"embeddings": [{"vector": [0, 0, 0, 0]}]},
        {"embeddings": "no"},
    ):
        if isinstance(bad, str):
            r = http.put(url, content=bad, headers={**auth, "Content-Type": "application/json"})
        else:
            r = http.put(url, json=bad, headers=auth)
        problem_of(r, 400)
    problem_of(
        http.put("/v1/objects/kb/missing/vectors", json={"embeddings": [{"vector": E[0]}]}, headers=auth), 404
    )
    hits = http.post("/v1/search", json={"vector": E[0], "k": 10}, headers=auth).json()["results"]
    assert [(h["key"], h["chunk_id"]) for h in hits] == [("x", None)]


def test_delete_removes_vectors_from_search(http: httpx.Client, auth: dict[str, str]) -> None:
    _put(http, auth, "gone")
    _put(http, auth, "kept")
    for key in ("gone", "kept"):
        http.put(f"/v1/objects/kb/{key}/vectors", json={"embeddings": [{"vector": E[0]}]}, headers=auth)
    assert http.delete("/v1/objects/kb/gone", headers=auth).status_code == 200
    hits = http.post("/v1/search", json={"vector": E[0], "k": 10}, headers=auth).json()["results"]
    assert [h["key"] for h in hits] == ["kept"]
    problem_of(
        http.put("/v1/objects/kb/gone/vectors", json={"embeddings": [{"vector": E[0]}]}, headers=auth), 404
    )


def test_sync_and_async_clients_attach_and_search(
    client: Client, base_url: str, tk: TenantKey, api_service: LiquidService
) -> None:
    client.put("kb", "c", b"client value", tags={"kind": "note"})
    assert (
        client.attach_vectors("kb", "c", [E[2], {"vector": E[3], "chunk_id": "tail", "span": [6, 12]}]) == 2
    )
    (hit,) = client.search(E[3], k=1, namespace="kb", tags={"kind": "note"})
    assert (hit.chunk_id, hit.span, hit.ref.uri.split("/")[-1]) == ("tail", (6, 12), "c@1")
    assert hit.ref.inline == b"client value" and hit.meta["tags"] == {"kind": "note"}
    with pytest.raises(DimensionMismatch) as err:
        client.search([1.0] * 7, namespace="kb")
    assert err.value.status == 422 and err.value.field == "vector"
    # numpy vectors go as they are (the client's JSON encoder writes numpy numbers).
    (nhit,) = client.search(np.asarray(E[3], dtype=np.float32), k=1, namespace="kb")
    assert nhit.chunk_id == "tail"
    assert client.attach_vectors("kb", "c", [np.asarray(E[0], dtype=np.float32)]) == 1
    # JSON has no NaN: the element goes as null and the API names it.
    with pytest.raises(BadRequest) as bad:
        client.search([1.0, math.nan, 0.0, 0.0], namespace="kb")
    assert bad.value.status == 400 and "vector" in str(bad.value.field), bad.value

    async def main() -> list[Any]:
        async with AsyncClient(base_url, api_key=tk.key, retries=0) as lq:
            await lq.attach_vectors("kb", "c", [{"vector": E[1], "chunk_id": "mid"}])
            return await lq.search(E[1], k=1)

    (ahit,) = asyncio.run(main())
    assert ahit.chunk_id == "mid" and ahit.score == pytest.approx(1.0)


def test_no_object_is_stored_under_a_key_ending_in_vectors(
    http: httpx.Client, auth: dict[str, str], api_service: LiquidService, tk: TenantKey
) -> None:
    _put(http, auth, "model", b"weights")
    # Bytes meant as an object: refused with the reason, and no version of either key appears.
    p = problem_of(http.put("/v1/objects/kb/model/vectors", content=b"not embeddings", headers=auth), 400)
    assert p["field"] == "key" and "attaches embeddings to 'model'" in p["detail"], p
    problem_of(http.get("/v1/objects/kb/model/vectors", headers=auth), 404)
    assert [i["version"] for i in http.get("/v1/versions/kb/model", headers=auth).json()["items"]] == [1]
    # Declared JSON but broken: the parser's complaint, under body.
    broken = {**auth, "Content-Type": "application/json"}
    p = problem_of(http.put("/v1/objects/kb/model/vectors", content=b"{not json", headers=broken), 400)
    assert p["field"] == "body", p
    # JSON that is not embeddings: the model's own complaint, under body.
    p = problem_of(http.put("/v1/objects/kb/model/vectors", json={"weights": [1]}, headers=auth), 400)
    assert p["field"] == "embeddings", p
    # The service refuses the key too, so the in-process client cannot store what HTTP could not name.
    with pytest.raises(InvalidInput, match="ends in '/vectors'"):
        api_service.put(tk.tenant, "kb", "model/vectors", b"x")
    with pytest.raises(InvalidInput, match="ends in '/vectors'"):
        Client.embedded(api_service, tk.tenant).put("kb", "deep/model/vectors", b"x")
    # A key that merely contains the word is an ordinary object.
    _put(http, auth, "vectors", b"top-level")
    _put(http, auth, "vectors/readme", b"inside")
    assert http.get("/v1/objects/kb/vectors/readme", headers=auth).content == b"inside"


def test_both_attach_paths_reach_the_same_version(http: httpx.Client, auth: dict[str, str]) -> None:
    _put(http, auth, "twin/a", b"a")
    r = http.put("/v1/objects/kb/twin/a/vectors", json={"embeddings": [{"vector": E[0]}]}, headers=auth)
    assert r.status_code == 200 and r.json()["uri"].endswith("/kb/twin/a@1"), r.text
    r = http.put(
        "/v1/vectors/kb/twin/a", json={"embeddings": [{"vector": E[1], "chunk_id": "c"}]}, headers=auth
    )
    assert r.status_code == 200 and r.json()["uri"].endswith("/kb/twin/a@1"), r.text
    found = http.post("/v1/search", json={"vector": E[1], "k": 5, "namespace": "kb"}, headers=auth).json()
    mine = [x for x in found["results"] if x["key"] == "twin/a"]
    assert {x.get("chunk_id") or "" for x in mine} == {"", "c"}, found
    # Unauthenticated, a bad namespace, a bad version: the same answers as every object route.
    problem_of(http.put("/v1/objects/kb/twin/a/vectors", json={"embeddings": [{"vector": E[0]}]}), 401)
    assert (
        problem_of(http.put("/v1/objects/KB!/twin/a/vectors", json={"embeddings": []}, headers=auth), 400)[
            "field"
        ]
        == problem_of(http.put("/v1/vectors/KB!/twin/a", json={"embeddings": []}, headers=auth), 400)["field"]
    )
    r = http.put(
        "/v1/objects/kb/twin/a/vectors?version=0", json={"embeddings": [{"vector": E[0]}]}, headers=auth
    )
    assert problem_of(r, 400)["field"] == "version"


def test_search_is_served_by_the_lean_route(api_service: LiquidService) -> None:
    from liquid.api.app import create_app
    from liquid.api.vectors import search_lean

    app = create_app(api_service)
    first = next(r for r in app.router.routes if getattr(r, "path", None) == "/v1/search")
    assert getattr(first, "endpoint", None) is search_lean  # matched before the FastAPI twin


def test_lean_search_checks_keys_and_tenants_like_every_route(
    http: httpx.Client,
    tk: TenantKey,
    auth: dict[str, str],
    make_tenant: Callable[[], TenantKey],
    admin_key: str,
) -> None:
    _put(http, auth, "mine")
    assert http.put("/v1/objects/kb/mine/vectors", json={"embeddings": [{"vector": E[2]}]}, headers=auth)
    body = {"vector": E[2], "k": 5}
    problem_of(http.post("/v1/search", json=body), 401)
    problem_of(http.post("/v1/search", json=body, headers={"Authorization": "Bearer lq_nope"}), 401)
    problem_of(http.post("/v1/search", json=body, headers={"Authorization": "Basic x"}), 401)
    other = {"Authorization": f"Bearer {make_tenant().key}"}
    # A tenant key naming another tenant is refused, never obeyed.
    problem_of(http.post("/v1/search", json=body, headers={**other, "X-Liquid-Tenant": tk.tenant}), 403)
    assert http.post("/v1/search", json=body, headers=other).json()["results"] == []
    # An admin key acts on the tenant it names, and must name one.
    admin = {"Authorization": f"Bearer {admin_key}"}
    (hit,) = http.post(
        "/v1/search", json={**body, "k": 1}, headers={**admin, "X-Liquid-Tenant": tk.tenant}
    ).json()["results"]
    assert hit["key"] == "mine"
    assert http.post("/v1/search", json=body, headers=admin).status_code == 400
    bad = http.post("/v1/search", content="{not json", headers={**auth, "Content-Type": "application/json"})
    assert problem_of(bad, 400)["field"] == "body"


def test_search_waits_on_postgresql_in_the_event_loop(
    http: httpx.Client, auth: dict[str, str], api_server: ApiServer
) -> None:
    """The server's lifespan gave the catalog's pgvector index a pool on its loop: searches use it."""
    _put(http, auth, "looped")
    assert http.put("/v1/objects/kb/looped/vectors", json={"embeddings": [{"vector": E[3]}]}, headers=auth)
    index = api_server.app.state.vectors.index("catalog")
    pool = index._apool
    assert pool is not None
    before = (index.searches, pool.get_stats().get("requests_num", 0))
    (hit,) = http.post("/v1/search", json={"vector": E[3], "k": 1, "namespace": "kb"}, headers=auth).json()[
        "results"
    ]
    assert hit["key"] == "looped"
    assert index.searches == before[0] + 1 and pool.get_stats()["requests_num"] == before[1] + 1


def test_a_search_past_the_request_deadline_is_a_503_and_its_cleanup_still_runs() -> None:
    """``within_deadline`` (the loop's searches): past ``resilience.request_timeout`` the request gets a
    503 with Retry-After, and the work is cancelled once, so it can still await its cleanup (give its
    connection back to the pool) instead of being cancelled again there."""
    from liquid.api.routes import _DEADLINE, within_deadline
    from liquid.errors import StoreUnavailable

    cleaned: list[str] = []

    async def search() -> int:
        try:
            await asyncio.sleep(60)
            return 1
        finally:
            await asyncio.sleep(0)  # e.g. ``await pool.putconn(conn)``
            cleaned.append("returned")

    async def main() -> None:
        token = _DEADLINE.set(0.05)
        try:
            with pytest.raises(StoreUnavailable) as info:
                await within_deadline(search())
            assert info.value.retry_after == 0.05 and "did not finish within 0.05 s" in info.value.detail
            assert await within_deadline(asyncio.sleep(0, result=7)) == 7
        finally:
            _DEADLINE.reset(token)
        assert await within_deadline(asyncio.sleep(0, result=8)) == 8  # no deadline set: awaited as is

    asyncio.run(main())
    assert cleaned == ["returned"]
