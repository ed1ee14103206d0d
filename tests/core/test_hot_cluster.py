"""The hot tier (HotCache, AccessTracker, the service's fills and reads) on a three-primary Valkey Cluster."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from redis.cluster import RedisCluster

from liquid.bootstrap import Runtime, open_runtime
from liquid.config import load_settings
from liquid.hotcache import hot_key
from liquid.redis_keys import HOT_LEDGER, TAG


@pytest.fixture(scope="module")
def cluster_runtime(base_settings: dict[str, Any], valkey_cluster_url: str) -> Iterator[Runtime]:
    stores = {**base_settings["stores"], "hot": valkey_cluster_url}
    rt = open_runtime(load_settings(**{**base_settings, "stores": stores}))
    yield rt
    rt.close()


def _oid(rt: Runtime, tenant: str, key: str) -> int:
    with rt.service.engine.connect() as conn:
        q = sa.text("SELECT id FROM objects WHERE tenant_id = :t AND key = :k")
        return int(conn.execute(q, {"t": tenant, "k": key}).scalar_one())


def test_fill_read_evict_kill_and_ledger_on_a_cluster(cluster_runtime: Runtime) -> None:
    svc = cluster_runtime.service
    assert svc.hot is not None and isinstance(svc.hot.client, RedisCluster)
    tenant = f"hc-{uuid.uuid4().hex[:8]}"
    svc.tenancy.create_tenant(tenant)
    infos = [svc.put(tenant, "ns", f"k{i}", bytes([i]) * 5000) for i in range(6)]
    for i, info in enumerate(infos):
        assert svc.fill_hot(info.ref, _oid(cluster_runtime, tenant, f"k{i}"))
    # Every hot key of an object, and the ledger they are written with, share one slot.
    client = svc.hot.client
    slots = {client.keyslot(hot_key(info.ref)) for info in infos} | {client.keyslot(HOT_LEDGER)}
    assert len(slots) == 1 and hot_key(infos[0].ref).startswith(TAG)
    reader = svc.open(tenant, infos[2].ref)
    assert reader.source == "hot" and reader.read() == bytes([2]) * 5000
    ledger = svc.hot.ledger()
    assert sum(1 for m in ledger if m.startswith(tenant)) == 6
    assert svc.hot.evict([infos[0].ref]) == 1
    svc.delete(tenant, infos[1].ref)  # a delete kills the copy and tombstones the version
    assert svc.hot.get(infos[1].ref) is None
    assert not svc.fill_hot(infos[1].ref, _oid(cluster_runtime, tenant, "k1"))
    assert svc.open(tenant, infos[0].ref).source != "hot"
    assert svc.hot.used_bytes() >= 4 * 5000


def test_access_tracking_on_a_cluster(cluster_runtime: Runtime) -> None:
    svc = cluster_runtime.service
    assert svc.access is not None
    tenant = f"ac-{uuid.uuid4().hex[:8]}"
    svc.tenancy.create_tenant(tenant)
    info = svc.put(tenant, "ns", "read-me", b"x" * 10_000)
    for _ in range(5):
        assert svc.get(tenant, info.ref) == b"x" * 10_000
    report = svc.access.flush(svc.engine)
    assert report.objects >= 1
    with svc.engine.connect() as conn:
        hits = conn.execute(
            sa.text("SELECT hits FROM access_stats WHERE object_id = :o"),
            {"o": _oid(cluster_runtime, tenant, "read-me")},
        ).scalar_one()
    assert hits == 5
