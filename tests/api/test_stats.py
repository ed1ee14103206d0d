"""/v1/stats over real HTTP: PostgreSQL and ClickHouse (chDB) give the same numbers; tenant-scoped."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from liquid.api.server import ApiServer
from liquid.events.export import EventExporter
from liquid.events.sinks import ChDBSink, EventSink, migrate
from liquid.policy.costs import tier_prices
from liquid.policy.store import active_policies, apply_policies
from liquid.service import LiquidService
from tests.api.conftest import TenantKey

GiB = 1024**3
ENDPOINTS = ("usage", "cost", "moves", "top-objects", "idle")


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[EventSink]:
    s = ChDBSink(tmp_path / "ch")
    migrate(s)
    yield s
    s.close()


@pytest.fixture
def stats_server(api_service: LiquidService, sink: EventSink) -> Iterator[str]:
    server = ApiServer(api_service, stats_sink=sink)
    base = server.start()
    yield base
    server.stop()


def _workload(svc: LiquidService, tenant: str) -> None:
    refs = [svc.put(tenant, "docs", f"d{i}", os.urandom(2000 + i)).ref for i in range(6)]
    refs.append(svc.put(tenant, "big", "blob", os.urandom(300_000)).ref)
    for i, ref in enumerate(refs):
        for _ in range(i + 1):
            svc.get(tenant, ref)
    svc.delete(tenant, refs[0])
    assert svc.access is not None
    # Finished minutes only: flush the reads as events as of a minute later.
    clock = svc.access.clock
    try:
        later = clock()
        from datetime import timedelta

        svc.access.clock = lambda: later + timedelta(minutes=2)
        svc.access.flush(svc.engine)
    finally:
        svc.access.clock = clock


def _get(base: str, key: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{base}/v1/stats/{path}", params=params, headers={"Authorization": f"Bearer {key}"})


def test_both_sources_give_the_same_numbers(
    api_service: LiquidService,
    sink: EventSink,
    stats_server: str,
    admin_key: str,
    make_tenant: Callable[[], TenantKey],
) -> None:
    a = make_tenant()
    _workload(api_service, a.tenant)
    EventExporter(api_service.engine, sink).run_once()
    for path in ENDPOINTS:
        for params in ({"tenant": a.tenant}, {}):
            pg = _get(stats_server, admin_key, path, source="postgres", **params)
            ch = _get(stats_server, admin_key, path, source="clickhouse", **params)
            assert pg.status_code == ch.status_code == 200, (path, pg.text, ch.text)
            assert pg.json()["source"] == "postgres" and ch.json()["source"] == "clickhouse"
            assert pg.json()["rows"] == ch.json()["rows"], (path, params)
    usage = _get(stats_server, a.key, "usage").json()["rows"]
    assert sum(r["writes"] for r in usage) == 7 and sum(r["reads"] for r in usage) == 28
    assert sum(r["purges"] for r in usage) == 1
    cost = {r["tier"]: r for r in _get(stats_server, a.key, "cost").json()["rows"]}
    assert cost["warm"]["objects"] == 6 and cost["warm"]["monthly_cost"] > 0
    top = _get(stats_server, a.key, "top-objects", limit=2).json()["rows"]
    assert [(r["key"], r["reads"]) for r in top] == [("blob", 7), ("d5", 6)]
    idle = _get(stats_server, a.key, "idle").json()["rows"]
    assert all(r["objects_30d"] == 0 for r in idle)  # everything was just read
    lag = _get(stats_server, admin_key, "export").json()["sinks"]
    assert any(s["sink"] == sink.name and s["exported"] > 0 for s in lag)


def test_a_tenant_key_sees_its_own_tenant_only(
    api_service: LiquidService, stats_server: str, admin_key: str, make_tenant: Callable[[], TenantKey]
) -> None:
    a, b = make_tenant(), make_tenant()
    api_service.put(a.tenant, "docs", "x", b"a's secret data" * 10)
    api_service.put(b.tenant, "docs", "y", b"b's data" * 10)
    for path in ENDPOINTS:
        denied = _get(stats_server, a.key, path, tenant=b.tenant, source="postgres")
        assert denied.status_code == 403 and "own tenant" in denied.json()["detail"]
        own = _get(stats_server, a.key, path, source="postgres").json()
        assert own["filter"]["tenant"] == a.tenant
        assert all(r.get("tenant", a.tenant) == a.tenant for r in own["rows"])
    everyone = _get(stats_server, admin_key, "usage", source="postgres").json()["rows"]
    assert {a.tenant, b.tenant} <= {r["tenant"] for r in everyone}
    assert _get(stats_server, a.key, "export").status_code == 403
    assert httpx.get(f"{stats_server}/v1/stats/usage").status_code == 401


def test_bad_input_is_a_clear_400(stats_server: str, admin_key: str) -> None:
    r = _get(stats_server, admin_key, "usage", **{"from": "2026-12-02", "to": "2026-12-01"})
    assert r.status_code == 400 and "must be after" in r.json()["detail"]
    r = _get(stats_server, admin_key, "usage", tenant="Bad Tenant!")
    assert r.status_code == 400 and "tenant" in r.text
    r = _get(stats_server, admin_key, "usage", **{"from": "yesterday"})
    assert r.status_code in (400, 422) and "from" in r.text


def test_costs_are_priced_by_the_applied_cost_model_per_tenant(
    api_service: LiquidService, stats_server: str, admin_key: str, make_tenant: Callable[[], TenantKey]
) -> None:
    a, b = make_tenant(), make_tenant()
    api_service.put(a.tenant, "docs", "x", os.urandom(5000))
    api_service.put(b.tenant, "docs", "y", os.urandom(7000))
    prices = (
        "apiVersion: liquid/v1\nkind: CostModel\nmetadata: {name: a-prices}\n"
        f"spec:\n  tenant: {a.tenant}\n  tiers:\n    warm: {{storagePerGBMonth: 1000}}\n"
    )
    before = active_policies(api_service.engine)
    apply_policies(api_service.engine, {"prices.yaml": prices}, actor="test", clock=api_service.clock)
    try:
        shipped = tier_prices(None, None)["warm"].storage_per_gb_month

        def warm(key: str, **params: Any) -> dict[str, Any]:
            rows = _get(stats_server, key, "cost", source="postgres", **params).json()["rows"]
            return next(r for r in rows if r["tier"] == "warm")

        own = warm(a.key)
        assert own["monthly_cost"] == round(own["bytes"] / GiB * 1000, 6)
        theirs = warm(b.key)
        assert theirs["monthly_cost"] == round(theirs["bytes"] / GiB * shipped, 6)
        both = warm(admin_key)  # every tenant at its own price, then summed
        assert both["monthly_cost"] >= own["monthly_cost"] + theirs["monthly_cost"] - 1e-6
    finally:
        apply_policies(
            api_service.engine, before.sources if before else {}, actor="test", clock=api_service.clock
        )


def test_an_object_whose_log_has_only_moves_is_not_idle_in_either_source(
    api_service: LiquidService,
    sink: EventSink,
    stats_server: str,
    admin_key: str,
    make_tenant: Callable[[], TenantKey],
) -> None:
    # Retention may prune an object's object.created while a later object.moved stays: with no
    # write or read in the log, neither source may call it idle (ClickHouse's maxIf gave 1970).
    from datetime import UTC, datetime

    from liquid.events import log as events

    a = make_tenant()
    with api_service.engine.begin() as conn:
        events.append(
            conn,
            events.NewEvent(
                events.MOVED,
                datetime.now(UTC),
                tenant_id=a.tenant,
                object_id=10**12,
                namespace="ns",
                key="k",
                version=1,
                tier="cold",
                from_tier="warm",
                bytes=100,
                data={
                    "journal_id": 0,
                    "from_store": "warm",
                    "from_locator": None,
                    "to_store": "cold",
                    "to_locator": "x",
                    "size": 100,
                    "reason": "test",
                },
            ),
        )
    EventExporter(api_service.engine, sink).run_once()
    pg = _get(stats_server, admin_key, "idle", source="postgres", tenant=a.tenant).json()["rows"]
    ch = _get(stats_server, admin_key, "idle", source="clickhouse", tenant=a.tenant).json()["rows"]
    assert pg == ch
    assert all(r["objects_30d"] == 0 for r in ch)
