"""Upgrading from the one-tag hot layout: old copies are never served, and the new leader drops them once."""

from __future__ import annotations

import hashlib
import os

from daemon.tiering import TieringDaemon
from liquid.bootstrap import Runtime
from liquid.hotcache import encode, hot_key, member
from liquid.redis_keys import LEGACY_HOT_BYTES, LEGACY_HOT_LEDGER, LEGACY_HOT_OBJECT
from liquid.service import LiquidService


def test_old_copies_are_misses_then_dropped_and_the_tier_refills(service: LiquidService, tenant: str) -> None:
    svc = service
    assert svc.hot is not None
    client = svc.hot.client
    data = os.urandom(20_000)
    info = svc.put(tenant, "ns", "k", data)
    oid = svc.fast.find(info.ref.tenant, info.ref.namespace, info.ref.key, info.ref.version).id
    m = member(info.ref)
    # What the earlier layout left in Redis: a copy (here, of other bytes, so a read of it would
    # show) and its entry in the one ledger.
    other = b"not these bytes"
    client.set(LEGACY_HOT_OBJECT + m, encode(other, hashlib.sha256(other).hexdigest(), "text/plain"))
    client.hset(LEGACY_HOT_LEDGER, m, f"{oid} 1234")
    client.incrby(LEGACY_HOT_BYTES, 1234)

    reader = svc.open(tenant, info.ref)
    assert reader.source != "hot" and reader.read() == data  # read through to the home
    assert m not in svc.hot.ledger()  # the budget does not count the old copy

    d = TieringDaemon(Runtime(service=svc, urls={}), worker_id=f"upgrade-{tenant}")
    try:
        assert d.try_lead()  # a new leader drops the old layout once
    finally:
        d.resign()
    assert not client.exists(LEGACY_HOT_OBJECT + m, LEGACY_HOT_LEDGER, LEGACY_HOT_BYTES)
    assert svc.hot.drop_legacy() == 0  # nothing left: cheap from now on

    assert svc.fill_hot(info.ref, oid)  # refilled under the sharded name
    assert client.exists(hot_key(info.ref)) and svc.hot.holds(info.ref)
    hit = svc.open(tenant, info.ref)
    assert hit.source == "hot" and hit.read() == data
