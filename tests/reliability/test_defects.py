"""Regression tests for the defects of issue 12, one or more per defect, over real servers.

Each test failed on main before its fix (the issue names the symptom; the test says it).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import create_engine, text

from liquid.access import AccessTracker
from liquid.api.server import ApiServer
from liquid.errors import InvalidInput, ObjectGone
from liquid.redis_keys import ACCESS_DIRTY, ACCESS_OBJECT
from liquid.refs import ResultRef
from liquid.service import LiquidService
from liquid.tiering.apply import CatalogApplier
from liquid.tiering.expiry import ObjectExpiry
from tests.problems import problem_of
from tests.reliability.conftest import TenantKey

pytestmark = pytest.mark.reliability


def put(http: httpx.Client, ns: str, key: str, data: bytes, **headers: str) -> httpx.Response:
    return http.put(f"/v1/objects/{ns}/{quote(key, safe='/')}", content=data, headers=headers)


def ref_url(uri: str) -> str:
    return "/v1/refs/" + quote(uri, safe="")


def namespace_works(http: httpx.Client, ns: str) -> None:
    """List, HEAD, versions, explain and batch resolve of a namespace all answer below 500."""
    r = http.get(f"/v1/objects/{ns}")
    assert r.status_code == 200, r.text
    for item in r.json()["items"]:
        key = quote(item["key"], safe="/")
        for resp in (
            http.head(f"/v1/objects/{ns}/{key}"),
            http.get(f"/v1/versions/{ns}/{key}"),
            http.get(f"/v1/explain/{ns}/{key}"),
            http.post("/v1/refs:resolve", json={"refs": [item["uri"]]}),
        ):
            assert resp.status_code < 500, (resp.request.url, resp.status_code, resp.text)


# ----------------------------------------------------------- 1. a header poisons a namespace


def test_far_future_expiry_header_is_refused_and_the_namespace_keeps_working(http: httpx.Client) -> None:
    assert put(http, "poison", "ok", b"fine").status_code == 201
    r = put(http, "poison", "bad", b"x", **{"X-Liquid-Expires-At": "9999-12-31T23:59:59-00:01"})
    body = problem_of(r, 400, "liquid:invalid-input")
    assert body["field"] == "X-Liquid-Expires-At"
    namespace_works(http, "poison")


@pytest.mark.parametrize(
    "at", ["9999-12-31T23:59:59-00:01", "0001-01-01T00:00:00+00:01", "1969-12-31T23:59:59+00:00"]
)
def test_finish_execution_at_out_of_range_is_400(http: httpx.Client, at: str) -> None:
    r = http.post("/v1/executions/run-1:finish", json={"at": at})
    problem_of(r, 400)


# ------------------------------------------------ 2. one tenant's 404 discards every tenant's counts


def test_a_ref_past_the_version_column_is_400_and_not_counted(
    http: httpx.Client, tk: TenantKey, api_service: LiquidService
) -> None:
    assert api_service.access is not None
    before = api_service.access.noted
    r = http.get(ref_url(f"liquid://{tk.tenant}/ns/k@2147483648"))
    problem_of(r, 400, "liquid:invalid-ref")
    r = http.get("/v1/objects/ns/k", params={"version": 2147483648})
    problem_of(r, 400)
    assert api_service.access.noted == before


def test_reads_of_missing_versions_are_not_counted(
    http: httpx.Client, tk: TenantKey, api_service: LiquidService
) -> None:
    assert api_service.access is not None
    before = api_service.access.noted
    r = http.get(ref_url(f"liquid://{tk.tenant}/ns/missing@7"))
    problem_of(r, 404)
    assert api_service.access.noted == before
    uri = put(http, "ns", "there", b"x" * 10).json()["uri"]
    assert http.get(ref_url(uri)).status_code == 200
    assert api_service.access.noted == before + 1


def test_a_failed_flush_puts_its_batch_back(api_service: LiquidService, make_tenant: Any) -> None:
    """The drain takes the batch out of Redis; a failed catalog write must not lose it."""
    access = api_service.access
    assert access is not None
    a, b = make_tenant(), make_tenant()
    refs = [api_service.put(t.tenant, "counts", "k", b"v" * 100).ref for t in (a, b)]
    access.flush(api_service.engine)  # start from an empty batch
    for r in refs:
        for _ in range(3):
            api_service.get(r.tenant, r)
    # A real server that is not there: connection refused, as during a PostgreSQL restart.
    down = create_engine("postgresql+psycopg://liquid@127.0.0.1:9/none", pool_pre_ping=False)
    with pytest.raises(Exception):  # noqa: B017  (whatever the driver raises for a refused connection)
        access.flush(down)
    down.dispose()
    access.flush(api_service.engine)
    with api_service.engine.connect() as conn:
        hits = dict(
            conn.execute(
                text("SELECT tenant_id, hits FROM access_stats WHERE tenant_id = ANY(:t)"),
                {"t": [a.tenant, b.tenant]},
            ).all()
        )
    assert hits == {a.tenant: 3, b.tenant: 3}


def test_an_unparseable_access_record_is_dropped_not_fatal(api_service: LiquidService, tk: TenantKey) -> None:
    """A member past the version column (left by an older server) is dropped; the rest flush."""
    access = api_service.access
    assert access is not None
    ref = api_service.put(tk.tenant, "counts", "k", b"v" * 10).ref
    api_service.get(tk.tenant, ref)
    access.push()
    # The tracker's own keys: a record under other names would prove nothing.
    bad = f"{tk.tenant}/counts/k@2147483648"
    now = time.time()
    access.client.hset(ACCESS_OBJECT + bad, mapping={"s": 1, "t": now, "n": 1, "f": now, "c": now})
    access.client.sadd(ACCESS_DIRTY, bad)
    access.flush(api_service.engine)
    assert not access.client.sismember(ACCESS_DIRTY, bad)
    with api_service.engine.connect() as conn:
        n = conn.execute(
            text("SELECT hits FROM access_stats WHERE tenant_id = :t"), {"t": tk.tenant}
        ).scalar()
    assert n == 1


# -------------------------------------------------------------------- 3. other 500s on bad input


def test_listing_cursor_past_the_version_column_is_400(http: httpx.Client) -> None:
    problem_of(http.get("/v1/objects/ns", params={"after": "x@2147483648"}), 400)
    problem_of(http.get("/v1/objects/ns", params={"after": "x@" + "9" * 5000}), 400)


@pytest.mark.parametrize("prefix", ["\x00", "a\x00b", "\x1f", "\x7f"])
def test_control_characters_in_a_prefix_are_400(http: httpx.Client, prefix: str) -> None:
    body = problem_of(http.get("/v1/objects/ns", params={"prefix": prefix}), 400)
    assert body["field"] == "prefix"


def test_a_range_header_of_thousands_of_digits_is_not_a_500(http: httpx.Client) -> None:
    uri = put(http, "ranges", "r", b"0123456789").json()["uri"]
    r = http.get(ref_url(uri), headers={"Range": "bytes=" + "9" * 5000 + "-"})
    problem_of(r, 416)
    r = http.get(ref_url(uri), headers={"Range": "bytes=2-" + "9" * 5000})
    assert r.status_code == 206 and r.content == b"23456789"
    r = http.get(ref_url(uri), headers={"Range": "bytes=-" + "9" * 5000})
    assert r.status_code == 206 and r.content == b"0123456789"


@pytest.mark.parametrize("retention", ["999999999999d", "9" * 400, "99999999999w"])
def test_an_enormous_retention_is_400(http: httpx.Client, retention: str) -> None:
    body = problem_of(put(http, "ret", "k", b"x", **{"X-Liquid-Retention": retention}), 400)
    assert body["field"] == "X-Liquid-Retention"


def test_a_content_type_with_a_control_character_is_refused_everywhere(
    http: httpx.Client, api_service: LiquidService, tk: TenantKey
) -> None:
    # The CLI and in-process callers go through the service.
    for bad in ("text/plain\x01", "text/plain\ttab", "text/\x7f", "text/日本"):
        with pytest.raises(InvalidInput) as err:
            api_service.put(tk.tenant, "ct", "k", b"x", content_type=bad)
        assert err.value.field == "content_type"
    # HTTP clients can send a tab (a legal header character).
    body = problem_of(put(http, "ct", "k", b"x", **{"Content-Type": "text/plain\tx"}), 400)
    assert body["field"] == "Content-Type"
    # The Python client refuses before sending.
    from liquid.client._base import put_headers

    with pytest.raises(InvalidInput):
        put_headers(
            content_type="a\x00b", size=1, tags=None, classification=None, ttl=None, expires_at=None,
            trace_id=None, correlation_id=None, execution_id=None, legal_hold=False,
        )  # fmt: skip


def test_the_cli_refuses_a_control_character_in_a_content_type(
    tmp_path: Any, api_settings: dict[str, Any], api_service: LiquidService, tk: TenantKey
) -> None:
    """Against the real catalog and an existing tenant, so only the content type can stop the put."""
    import json

    from typer.testing import CliRunner

    from liquid.cli import app

    env = {
        "LIQUID_CATALOG_URL": api_settings["catalog_url"],
        "LIQUID_STORES": json.dumps(api_settings["stores"]),
        "LIQUID_TENANT": "",
    }
    f = tmp_path / "f.txt"
    f.write_bytes(b"x")
    args = ["put", "clict", "k", str(f), "--tenant", tk.tenant, "--content-type"]
    ok = CliRunner().invoke(app, [*args, "text/plain"], env=env)
    assert ok.exit_code == 0, ok.output
    result = CliRunner().invoke(app, [*args, "a\x01b"], env=env)
    assert result.exit_code != 0
    assert "content_type" in (result.output + str(result.exception))
    page = api_service.list(tk.tenant, "clict", all_versions=True)
    assert [(i.ref.key, i.ref.version) for i in page.items] == [("k", 1)]


# ------------------------------------------------------------------ 4. per-object expiry enforced


def test_a_past_expiry_header_is_400(http: httpx.Client) -> None:
    past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    body = problem_of(put(http, "exp", "k", b"x", **{"X-Liquid-Expires-At": past}), 400)
    assert body["field"] == "X-Liquid-Expires-At"


def test_reads_refuse_an_object_past_its_expiry_with_410(http: httpx.Client) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1.5)
    r = put(http, "exp", "soon", b"short-lived" * 500, **{"X-Liquid-Expires-At": soon.isoformat()})
    assert r.status_code == 201, r.text
    uri = r.json()["uri"]
    retained = put(http, "exp", "ttl", b"also" * 10, **{"X-Liquid-Retention": "1s"}).json()["uri"]
    assert http.get(ref_url(uri)).status_code == 200
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.1)
    for u in (uri, retained):
        problem_of(http.get(ref_url(u)), 410, "liquid:gone")
        assert http.head(ref_url(u)).status_code == 410
    problem_of(http.get("/v1/objects/exp/soon"), 404)
    assert [i["key"] for i in http.get("/v1/objects/exp").json()["items"]] == []
    res = http.post("/v1/refs:resolve", json={"refs": [uri]}).json()["results"][0]
    assert res["ok"] is False and res["error"]["status"] == 410


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_the_daemon_expires_objects_past_their_own_expiry(
    api_service: LiquidService, tk: TenantKey, make_tenant: Any
) -> None:
    """No policy needed: the expiry pass tombstones, queues the purge and kills the hot copy."""
    clock = FakeClock()
    svc = LiquidService(
        api_service.settings, engine=api_service.engine, stores=api_service.stores, hot=api_service.hot,
        clock=clock,
    )  # fmt: skip
    try:
        put_short = svc.put(tk.tenant, "exp", "short", b"s" * 100_000, ttl=60)
        short = put_short.ref
        held = svc.put(tk.tenant, "exp", "held", b"h" * 10, ttl=60, legal_hold=True).ref
        lasting = svc.put(tk.tenant, "exp", "lasting", b"l" * 10, ttl=3600).ref
        with svc.engine.connect() as conn:
            oid = conn.execute(
                text("SELECT id FROM objects WHERE tenant_id = :t AND key = 'short'"), {"t": tk.tenant}
            ).scalar_one()
        assert svc.fill_hot(short, oid)

        def states() -> dict[str, str]:
            with svc.engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT key, state FROM objects WHERE tenant_id = :t"), {"t": tk.tenant}
                ).all()
            return {str(k): str(v) for k, v in rows}

        # The catalog is shared with other tests: look at this tenant's objects only.
        expiry = ObjectExpiry(svc.engine, CatalogApplier(svc, svc.settings), clock=clock)
        expiry.run()
        assert states() == {"short": "live", "held": "live", "lasting": "live"}
        clock.now += timedelta(seconds=61)
        with pytest.raises(ObjectGone):
            svc.head(tk.tenant, short)
        assert expiry.run().purges_queued >= 1
        assert svc.hot is not None and svc.hot.get(short, expect_sha256=put_short.sha256) is None
        with svc.engine.connect() as conn:
            kinds = (
                conn.execute(text("SELECT kind FROM move_journal WHERE object_id = :o"), {"o": oid})
                .scalars()
                .all()
            )
        assert states() == {"short": "expired", "held": "live", "lasting": "live"}
        assert kinds == ["purge"]
        expiry.run()  # idempotent
        assert states() == {"short": "expired", "held": "live", "lasting": "live"}
        svc.head(tk.tenant, lasting)
        with pytest.raises(ObjectGone):  # under legal hold: kept, but past its expiry it is not served
            svc.head(tk.tenant, held)
    finally:
        svc.fast.close()


def test_a_hot_copy_does_not_outlive_its_object(api_service: LiquidService, tk: TenantKey) -> None:
    ref = api_service.put(tk.tenant, "exp", "hot", b"h" * 5000, ttl=1.0).ref
    with api_service.engine.connect() as conn:
        oid = conn.execute(
            text("SELECT id FROM objects WHERE tenant_id = :t AND key = 'hot'"), {"t": tk.tenant}
        ).scalar_one()
    assert api_service.fill_hot(ref, oid)
    assert api_service.hot is not None
    from liquid.hotcache import hot_key

    pttl = api_service.hot.client.pttl(hot_key(ref))
    assert 0 < pttl <= 1000


# ------------------------------------------------------------------ 5. invalid UTF-8 in keys


def test_invalid_utf8_in_an_object_key_is_400_not_a_collision(base_url: str, auth: dict[str, str]) -> None:
    with httpx.Client(base_url=base_url, headers=auth, timeout=30) as http:
        for raw in ("%FF", "%FE", "a/%C3", "%ED%A0%80"):
            url = httpx.URL(f"{base_url}/v1/objects/ns/{raw}")
            r = http.put(url, content=b"x")
            body = problem_of(r, 400)
            assert body["field"] == "key"
            problem_of(http.get(url), 400)
            # The lean ref read checks its path as the routers do (an ASCII path needs no decoding).
            ref_url = httpx.URL(f"{base_url}/v1/refs/liquid%3A%2F%2Ft%2Fns%2F{raw}%401")
            assert problem_of(http.get(ref_url), 400)["field"] == "key"
        # A key that really holds U+FFFD is fine, percent-encoded as UTF-8.
        r = http.put(f"{base_url}/v1/objects/ns/{quote(chr(0xFFFD))}", content=b"ok")
        assert r.status_code == 201


# ------------------------------------------------------------------------------- 10. smaller


def test_batch_resolve_bounds_its_inline_total(http: httpx.Client, api_service: LiquidService) -> None:
    """1,000 refs of 60 KiB used to build an 83 MB response; past the total, refs come without bodies."""
    size = 60 * 1024
    uris = [put(http, "batch", f"k{i}", bytes([i]) * size).json()["uri"] for i in range(50)]
    refs = [uris[i % len(uris)] for i in range(1000)]
    r = http.post("/v1/refs:resolve", json={"refs": refs})
    assert r.status_code == 200, r.text[:500]
    total = api_service.settings.api.batch_inline_total
    assert len(r.content) < total * 4 // 3 + 1_000_000, len(r.content)
    body = r.json()
    fit = total // size
    assert body["inline_bytes"] == fit * size
    assert body["inline_omitted"] == 1000 - fit
    results = body["results"]
    assert all(x["ok"] for x in results)
    assert all("inline" in x["ref"] and not x.get("inline_omitted") for x in results[:fit])
    assert all("inline" not in x["ref"] and x["inline_omitted"] is True for x in results[fit:])
    # Refs past the total still resolve: the body is one GET away.
    assert http.get(ref_url(results[-1]["ref"]["uri"])).content == bytes([999 % 50]) * size


# --------------------------------------------------------------------------- helpers for others


@pytest.fixture
def bare_http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        yield c


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


__all__ = ["AccessTracker", "ApiServer", "ResultRef", "bare_http", "sha", "unique"]
