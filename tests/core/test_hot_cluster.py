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
from liquid.hotcache import hot_key, member
from liquid.redis_keys import hot_ledger, hot_shard, hot_tomb


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
    # An object's copy, tombstone and ledger shard share one slot (its scripts need that).
    client = svc.hot.client
    for info in infos:
        m = member(info.ref)
        shard = hot_shard(m)
        assert len({client.keyslot(k) for k in (hot_key(info.ref), hot_tomb(m), hot_ledger(shard))}) == 1
    reader = svc.open(tenant, infos[2].ref)
    assert reader.source == "hot" and reader.read() == bytes([2]) * 5000
    ledger = svc.hot.ledger()
    assert sum(1 for m in ledger if m.startswith(tenant)) == 6
    assert svc.hot.evict([infos[0].ref]) == 1
    svc.delete(tenant, infos[1].ref)  # a delete kills the copy and tombstones the version
    assert svc.hot.get(infos[1].ref, expect_sha256=infos[1].sha256) is None
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


def test_hot_copies_spread_over_every_primary(cluster_runtime: Runtime) -> None:
    """The shards' hash tags put copies on all three primaries, and the ledger sums them all."""
    svc = cluster_runtime.service
    assert svc.hot is not None and isinstance(svc.hot.client, RedisCluster)
    tenant = f"hs-{uuid.uuid4().hex[:8]}"
    svc.tenancy.create_tenant(tenant)
    infos = [svc.put(tenant, "ns", f"k{i}", bytes([i % 251]) * 5000) for i in range(60)]
    for i, info in enumerate(infos):
        assert svc.fill_hot(info.ref, _oid(cluster_runtime, tenant, f"k{i}"))
    client = svc.hot.client
    nodes = {client.get_node_from_key(hot_key(info.ref)).name for info in infos}
    assert len(nodes) == 3, nodes
    ledger = svc.hot.ledger()
    mine = {m: v for m, v in ledger.items() if m.startswith(tenant + "/")}
    assert set(mine) == {member(info.ref) for info in infos}
    assert svc.hot.used_bytes() >= sum(n for _oid_, n in mine.values())
    # MGET across slots, split by the client
    hits = svc.hot.get_many([info.ref for info in infos], expect_sha256=[info.sha256 for info in infos])
    assert all(h is not None for h in hits)
    assert svc.hot.evict([info.ref for info in infos]) == 60
    assert not any(m.startswith(tenant + "/") for m in svc.hot.ledger())
