"""Invariant 4 over HTTP: tenant A's key (or a made-up key) never reads, lists or learns of B's objects.

For any ref outside the caller's tenant the answer is exactly the one a missing object
gets — a function of the ref's URI alone — so existence cannot be told apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liquid.refs import ResultRef
from liquid.service import LiquidService

NAMESPACES = ["results", "docs", "kb-1"]
KEYS = ["a", "run-7/out.json", "deep/er/key.bin", "résumé 2026.pdf"]


@dataclass
class World:
    base_url: str
    a: str
    a_key: str
    b: str
    b_key: str
    b_refs: list[ResultRef]
    http: httpx.Client


@pytest.fixture(scope="module")
def world(api_service: LiquidService, base_url: str) -> Iterator[World]:
    a, b = f"a-{uuid.uuid4().hex[:10]}", f"b-{uuid.uuid4().hex[:10]}"
    for t in (a, b):
        api_service.tenancy.create_tenant(t)
    b_refs = []
    for ns in NAMESPACES:
        for key in KEYS:
            b_refs.append(api_service.put(b, ns, key, f"secret of {b} {ns} {key}".encode() * 100).ref)
            b_refs.append(api_service.put(b, ns, key, b"small").ref)
    deleted = api_service.put(b, "docs", "deleted", b"gone")
    api_service.delete(b, deleted.ref)
    b_refs.append(deleted.ref)
    a_key = api_service.tenancy.create_api_key(a)
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {a_key}"}, timeout=30) as http:
        yield World(base_url, a, a_key, b, api_service.tenancy.create_api_key(b), b_refs, http)


def expected_not_found(uri: str, path: str) -> dict[str, object]:
    return {
        "type": "liquid:not-found",
        "title": "Not Found",
        "status": 404,
        "detail": f"no object {uri}",
        "field": "ref",
        "instance": path,
    }


def ref_strategy(world: World) -> st.SearchStrategy[ResultRef]:
    """B's real refs, and refs near them: other versions, keys, namespaces and tenants."""
    real = st.sampled_from(world.b_refs)
    near = st.builds(
        ResultRef,
        tenant=st.sampled_from([world.b, "zz-nobody", f"{world.b}x"]),
        namespace=st.sampled_from([*NAMESPACES, "other"]),
        key=st.sampled_from(KEYS)
        | st.from_regex(r"[a-z0-9][a-z0-9/_.-]{0,20}", fullmatch=True).filter(
            lambda k: (
                "//" not in k
                and not k.endswith("/")
                and "/./" not in k
                and "/../" not in k
                and not k.endswith("/.")
                and not k.endswith("/..")
            )
        ),
        version=st.integers(1, 5),
    )
    return real | near


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_other_tenants_refs_answer_exactly_like_missing_ones(world: World, data: st.DataObject) -> None:
    ref = data.draw(ref_strategy(world))
    path = "/v1/refs/" + ref.uri  # the path the server sees after percent-decoding
    url = "/v1/refs/" + quote(ref.uri, safe="")
    for method in ("GET", "DELETE"):
        r = world.http.request(method, url)
        assert r.status_code == 404
        assert r.json() == expected_not_found(ref.uri, path)
        assert not any(h.startswith("x-liquid") or h == "etag" for h in r.headers)
    head = world.http.head(url)
    assert head.status_code == 404 and "etag" not in head.headers
    sign = world.http.post("/v1/refs:sign", json={"ref": ref.uri})
    assert sign.status_code == 404 and sign.json()["detail"] == f"no object {ref.uri}"
    resolved = world.http.post("/v1/refs:resolve", json={"refs": [ref.uri]}).json()["results"][0]
    assert resolved == {
        "index": 0,
        "ok": False,
        "error": {**expected_not_found(ref.uri, None), "field": "refs.0"},
    }  # type: ignore[dict-item]
    # by object path, A only ever addresses its own tenant: B's names are A's (empty) names
    by_path = world.http.get(
        f"/v1/objects/{ref.namespace}/{quote(ref.key, safe='/')}", params={"version": ref.version}
    )
    assert by_path.status_code == 404
    assert (
        by_path.json()["detail"] == f"no object {ResultRef(world.a, ref.namespace, ref.key, ref.version).uri}"
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    namespace=st.sampled_from(NAMESPACES),
    prefix=st.sampled_from(["", "a", "run", "deep/", "r"]),
    all_versions=st.booleans(),
)
def test_listing_never_shows_other_tenants(
    world: World, namespace: str, prefix: str, all_versions: bool
) -> None:
    r = world.http.get(
        f"/v1/objects/{namespace}", params={"prefix": prefix, "all_versions": str(all_versions).lower()}
    )
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}
    v = world.http.get(f"/v1/versions/{namespace}/a")
    assert v.json() == {"items": [], "next_cursor": None}
    # and A naming B in the tenant header is refused the same way for any tenant name
    for tenant in (world.b, "zz-nobody"):
        f = world.http.get(f"/v1/objects/{namespace}", headers={"X-Liquid-Tenant": tenant})
        assert f.status_code == 403
        assert f.json()["detail"] == "a tenant key acts only on its own tenant; drop X-Liquid-Tenant"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_made_up_keys_learn_nothing(world: World, data: st.DataObject) -> None:
    b_prefix = world.b_key.split("_")[1]
    key = data.draw(
        st.one_of(
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60),
            st.builds(lambda s: f"lq_{b_prefix}_{s}", st.text("abcdefXYZ0123-_", min_size=1, max_size=50)),
            st.builds(
                lambda p, s: f"lq_{p}_{s}",
                st.from_regex(r"[0-9a-f]{8}", fullmatch=True),
                st.text("ab", max_size=5),
            ),
        )
    )
    ref = data.draw(st.sampled_from(world.b_refs))
    headers = {"Authorization": f"Bearer {key}"}
    r = httpx.get(f"{world.base_url}/v1/refs/{quote(ref.uri, safe='')}", headers=headers)
    assert r.status_code == 401
    assert r.json()["detail"] == "missing, unknown or revoked API key"
    listing = httpx.get(f"{world.base_url}/v1/objects/{ref.namespace}", headers=headers)
    assert listing.status_code == 401 and listing.json()["detail"] == "missing, unknown or revoked API key"


def test_b_still_reads_its_own(world: World) -> None:
    """The control: the same refs do resolve for their owner."""
    with httpx.Client(base_url=world.base_url, headers={"Authorization": f"Bearer {world.b_key}"}) as b:
        live = [r for r in world.b_refs if r.key != "deleted"]
        assert all(b.get("/v1/refs/" + quote(r.uri, safe="")).status_code == 200 for r in live[:6])
