"""GET /v1/events over real HTTP: filters, cursor pages, tenant scoping; and `liquid events tail`."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from typer.testing import CliRunner

from liquid.cli import app
from liquid.events.history import EventQuery, follow, horizon
from liquid.service import LiquidService
from tests.api.conftest import TenantKey


def _get(base: str, key: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{base}/v1/events", params=params, headers={"Authorization": f"Bearer {key}"})


def test_filters_pages_and_tenant_scope(
    api_service: LiquidService, base_url: str, admin_key: str, make_tenant: Callable[[], TenantKey]
) -> None:
    a, b = make_tenant(), make_tenant()
    refs = [api_service.put(a.tenant, "docs", f"k{i}", os.urandom(5000)).ref for i in range(5)]
    api_service.delete(a.tenant, refs[0])
    api_service.put(b.tenant, "docs", "k0", b"other tenant")

    # Everything of tenant a, newest first, two per page, walked by cursor.
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        r = _get(base_url, a.key, limit=2, **({"cursor": cursor} if cursor else {}))
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["events"]) <= 2
        seen += body["events"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    ids = [e["id"] for e in seen]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    assert {e["tenant"] for e in seen} == {a.tenant}
    kinds = [e["kind"] for e in reversed(seen)]
    # tenant.created and apikey.created, five puts, the delete and the purge of its bytes.
    assert kinds.count("object.created") == 5 and kinds[-2:] == ["object.deleted", "object.purged"]

    # Kind and ref filters, ascending.
    r = _get(base_url, a.key, kind="purge,delete", order="asc")
    assert [e["kind"] for e in r.json()["events"]] == ["object.deleted", "object.purged"]
    assert {e["ref"] for e in r.json()["events"]} == {refs[0].uri}
    key_only = refs[1].uri.rpartition("@")[0]
    r = _get(base_url, a.key, ref=key_only)
    assert [e["ref"] for e in r.json()["events"]] == [refs[1].uri]
    # A time window that ends before the events holds none of them.
    r = _get(base_url, a.key, to=(datetime.now(UTC) - timedelta(days=1)).isoformat())
    assert r.status_code == 200 and r.json()["events"] == []

    # Tenant keys: only their own tenant; naming another one is 403, even through a ref.
    r = _get(base_url, b.key)
    assert r.status_code == 200 and {e["tenant"] for e in r.json()["events"]} == {b.tenant}
    assert _get(base_url, b.key, tenant=a.tenant).status_code == 403
    assert _get(base_url, b.key, ref=refs[1].uri).status_code == 403
    # Operators see any tenant, one by name.
    r = _get(base_url, admin_key, tenant=a.tenant, kind="object.created", limit=1000)
    assert len(r.json()["events"]) == 5
    r = _get(base_url, admin_key, limit=5)
    assert r.status_code == 200 and len(r.json()["events"]) == 5 and r.json()["next_cursor"]
    assert len({e["tenant"] for e in r.json()["events"]}) >= 2  # a's and b's (and the system's)

    # Bad input: one clear 400 naming the field.
    for params, field in (
        ({"kind": "nope"}, "kind"),
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "asc.5"}, "cursor"),  # a cursor of the other order
        ({"ref": "liquid://x"}, "ref"),
        ({"from": "2026-01-01T00:00:00"}, "from"),
        ({"to": "-3.1995976307433796e-229"}, "to"),  # a number is not a time (pydantic read Unix seconds)
        ({"from": "1764547200"}, "from"),
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
    ):
        r = _get(base_url, admin_key, **params)
        assert r.status_code == 400, (params, r.text)
        assert field in r.text, (params, r.text)
    assert httpx.get(f"{base_url}/v1/events").status_code == 401


def test_follow_sees_every_event_once_in_commit_order(api_service: LiquidService, tk: TenantKey) -> None:
    engine = api_service.engine
    query = EventQuery(tenant=tk.tenant, kinds=["object.created"])
    since = horizon(engine)
    stop = threading.Event()
    got: list[dict[str, Any]] = []

    def run() -> None:
        for ev in follow(engine, query, since=since, poll=0.05, stop=stop.is_set, sleep=stop.wait):
            got.append(ev)

    t = threading.Thread(target=run)
    t.start()
    try:
        for i in range(20):
            api_service.put(tk.tenant, "f", f"k{i}", os.urandom(100))
        deadline = time.monotonic() + 10
        while len(got) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(10)
    assert [e["ref"].split("/")[-1] for e in got] == [f"k{i}@1" for i in range(20)]


def test_cli_tail(api_service: LiquidService, api_settings: dict[str, Any], tk: TenantKey) -> None:
    ref = api_service.put(tk.tenant, "docs", "tail-me", os.urandom(5000)).ref
    api_service.delete(tk.tenant, ref)
    env = {
        "LIQUID_CATALOG_URL": api_settings["catalog_url"],
        "LIQUID_STORES": json.dumps(api_settings["stores"]),
    }
    out = CliRunner().invoke(
        app, ["events", "tail", "--tenant", tk.tenant, "--kind", "delete,purge", "--json"], env=env
    )
    assert out.exit_code == 0, out.output
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [e["kind"] for e in lines] == ["object.deleted", "object.purged"]
    assert {e["ref"] for e in lines} == {ref.uri}
    out = CliRunner().invoke(app, ["events", "tail", "--ref", ref.uri, "--limit", "1"], env=env)
    assert out.exit_code == 0, out.output
    assert "object.purged" in out.stdout and ref.uri in out.stdout and len(out.stdout.splitlines()) == 1
    out = CliRunner().invoke(app, ["events", "tail", "--kind", "nope"], env=env)
    assert out.exit_code != 0
