"""Deleted, expired or purged means gone from every copy: the fill/delete race, the ledger, shm."""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.tiering import TieringDaemon
from liquid.bootstrap import Runtime
from liquid.catalog import db
from liquid.errors import ObjectGone
from liquid.hotcache import SEAL_MIN, HotCache, decode, encode, entry_size, hot_key, member
from liquid.policy.store import apply_policies
from liquid.redis_keys import hot_tomb
from liquid.refs import ResultRef
from liquid.service import LiquidService
from tests.fakes import FakeClock

from .conftest import ServiceFactory


def oid(svc: LiquidService, r: ResultRef) -> int:
    return int(svc.fast.find(r.tenant, r.namespace, r.key, r.version).id)


def copy_exists(hot: HotCache, r: ResultRef) -> bool:
    return bool(hot.client.exists(hot_key(r)))


def test_fill_writes_the_copy_and_its_ledger_entry_together(service: LiquidService, tenant: str) -> None:
    hot = service.hot
    assert hot is not None
    r = service.put(tenant, "ns", "k", os.urandom(10_000), content_type="application/x-test").ref
    before = hot.used_bytes()
    assert service.fill_hot(r, oid(service, r))
    n = entry_size(10_000, "application/x-test")
    assert hot.client.strlen(hot_key(r)) == n
    assert hot.ledger()[member(r)] == (oid(service, r), n)
    assert hot.used_bytes() == before + n
    assert service.fill_hot(r, oid(service, r))  # filling again does not count twice
    assert hot.used_bytes() == before + n
    assert hot.evict([r]) == 1
    assert not copy_exists(hot, r) and member(r) not in hot.ledger()
    assert hot.used_bytes() == before


def test_a_fill_that_read_the_bytes_before_a_delete_is_refused(service: LiquidService, tenant: str) -> None:
    hot = service.hot
    assert hot is not None
    r = service.put(tenant, "ns", "k", os.urandom(20_000)).ref
    reader = service.open(tenant, r, track=False, cached=False)
    data = reader.read()  # the fill has the bytes in hand...
    service.delete(tenant, r)  # ...when the delete lands and kills every copy
    assert not hot.fill(r, oid(service, r), data, sha256=reader.sha256, content_type=reader.content_type)
    assert not copy_exists(hot, r)
    with pytest.raises(ObjectGone):
        service.get(tenant, r)


def test_a_fill_slower_than_the_tombstone_takes_its_copy_back(
    service: LiquidService, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hot = service.hot
    assert hot is not None
    r = service.put(tenant, "ns", "k", os.urandom(20_000)).ref
    real_fill = hot.fill

    def late_fill(*args: object, **kwargs: object) -> bool:
        # The delete lands while the fill is in flight, and the fill takes longer than the
        # tombstone lives: only the fill's own check of the catalog afterwards can catch it.
        service.delete(tenant, r)
        hot.client.delete(hot_tomb(member(r)))
        return real_fill(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hot, "fill", late_fill)
    assert not service.fill_hot(r, oid(service, r))
    assert not copy_exists(hot, r) and member(r) not in hot.ledger()


def test_racing_deletes_and_fills_never_leave_a_copy(service: LiquidService, tenant: str) -> None:
    hot = service.hot
    assert hot is not None
    infos = [service.put(tenant, "race", f"k{i}", os.urandom(30_000)) for i in range(40)]
    refs = [info.ref for info in infos]
    ids = [oid(service, r) for r in refs]
    for r, i, sha in zip(refs, ids, (info.sha256 for info in infos), strict=True):
        start = threading.Barrier(2)

        def fill(r: ResultRef = r, i: int = i, start: threading.Barrier = start) -> None:
            start.wait()
            service.fill_hot(r, i)

        def delete(r: ResultRef = r, start: threading.Barrier = start) -> None:
            start.wait()
            service.delete(tenant, r)

        threads = [threading.Thread(target=fill), threading.Thread(target=delete)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not copy_exists(hot, r), f"{r} was deleted but a copy is still in Redis"
        assert hot.get(r, expect_sha256=sha) is None


def test_expiry_by_the_daemon_kills_the_hot_and_shm_copies(
    make_service: ServiceFactory, tenant: str, tmp_path: Path
) -> None:
    svc = make_service(shm={"dir": str(tmp_path / "shm"), "min_size": 1})
    clock = FakeClock(datetime(2034, 1, 1, tzinfo=UTC))
    svc.clock = clock
    assert svc.access is not None and svc.hot is not None and svc.shm is not None
    svc.access.clock = clock
    apply_policies(
        svc.engine,
        {
            "p.yaml": f"""
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {{name: short-{tenant}}}
spec:
  priority: 1000
  selector: {{tenants: [{tenant}]}}
  rules: [{{tier: hot, promoteAbove: 1/h}}, {{tier: warm}}]
  expireAfter: 1h
"""
        },
        actor="test",
        clock=clock,
    )
    info = svc.put(tenant, "ns", "k", os.urandom(50_000))
    r = info.ref
    assert svc.fill_hot(r, oid(svc, r))
    svc.shm.put(r, [svc.get(tenant, r)], sha256=info.sha256)
    assert svc.shm.hint(r, info.sha256) is not None
    d = TieringDaemon(Runtime(service=svc, urls={}), clock=clock, worker_id="expiry")
    clock.advance(hours=2)
    try:
        d.run_once(move=False)  # tombstoned by the plan; the mover has not purged the bytes yet
    finally:
        d.resign()
    assert not copy_exists(svc.hot, r) and member(r) not in svc.hot.ledger()
    assert svc.shm.hint(r, info.sha256) is None
    with pytest.raises(ObjectGone):
        svc.get(tenant, r)
    assert svc.hot.client.exists(hot_tomb(member(r)))  # a late fill would be refused


# ------------------------------------------------------------------ sealed copies (LQH2)


def test_large_copies_are_sealed_and_small_ones_keep_their_sha256(
    service: LiquidService, tenant: str
) -> None:
    hot = service.hot
    assert hot is not None and hot.key is not None and len(hot.key) == 32
    big = service.put(tenant, "ns", "big", os.urandom(SEAL_MIN)).ref
    small = service.put(tenant, "ns", "small", os.urandom(SEAL_MIN - 1)).ref
    for r in (big, small):
        assert service.fill_hot(r, oid(service, r))
    assert hot.client.getrange(hot_key(big), 0, 3) == b"LQH2"
    assert hot.client.getrange(hot_key(small), 0, 3) == b"LQH1"
    assert hot.client.strlen(hot_key(big)) == entry_size(SEAL_MIN, "application/octet-stream")
    assert hot.client.strlen(hot_key(small)) == entry_size(SEAL_MIN - 1, "application/octet-stream")
    for r in (big, small):
        reader = service.open(tenant, r)
        assert reader.source == "hot"
        assert hashlib.sha256(reader.read()).hexdigest() == service.head(tenant, r).sha256


@pytest.mark.parametrize(
    "tamper",
    [
        "a data byte",
        "the content type",
        "the mac",
        "sealed with another key",
        "another version's copy",
        "truncated",
    ],
)
def test_a_sealed_copy_that_does_not_check_is_never_served(
    service: LiquidService, tenant: str, tamper: str
) -> None:
    hot = service.hot
    assert hot is not None and hot.key is not None
    data = os.urandom(40_000)
    r = service.put(tenant, "ns", "k", data, content_type="text/plain").ref
    other = service.put(tenant, "ns", "k", os.urandom(40_000), content_type="text/plain").ref
    assert service.fill_hot(r, oid(service, r)) and service.fill_hot(other, oid(service, other))
    raw = bytearray(hot.client.get(hot_key(r)))
    assert raw[:4] == b"LQH2"
    if tamper == "a data byte":
        raw[-1] ^= 1
    elif tamper == "the content type":
        raw[38:42] = b"html"  # text/plain → html/plain: same length, another type
    elif tamper == "the mac":
        raw[4] ^= 1
    elif tamper == "sealed with another key":
        raw = bytearray(encode(data, service.head(tenant, r).sha256, "text/plain", key=os.urandom(32)))
    elif tamper == "another version's copy":
        # Another version's copy under this one's key (its mac is right for its own digest): the
        # reader checks the mac against the digest the catalog gave it, not the one in the copy.
        raw = bytearray(hot.client.get(hot_key(other)))
    else:
        raw = raw[:-1]
    hot.client.set(hot_key(r), bytes(raw))
    corrupt = hot.corrupt
    reader = service.open(tenant, r)
    assert reader.source != "hot" and reader.read() == data and reader.content_type == "text/plain"
    assert hot.corrupt == corrupt + 1
    hot.client.set(hot_key(r), bytes(raw))  # the batch path judges copies alike
    (got,) = service.resolve_many(tenant, [r], want=lambda i, facts: True)
    assert not isinstance(got, Exception) and got.data is not None and bytes(got.data) == data
    assert hot.corrupt == corrupt + 2


def test_every_process_on_a_catalog_seals_with_its_key(
    service: LiquidService, tenant: str, make_service: ServiceFactory
) -> None:
    # Made once by the migration: a second process reads the same key, and upgrading again keeps it.
    other = make_service()
    assert other.hot is not None and service.hot is not None
    assert other.hot.key == service.hot.key == db.secret(service.engine, "hot_copy_key")
    db.upgrade(service.engine)
    assert db.secret(service.engine, "hot_copy_key") == service.hot.key
    data = os.urandom(100_000)
    sha = hashlib.sha256(data).hexdigest()
    r = service.put(tenant, "ns", "k", data).ref
    assert service.fill_hot(r, oid(service, r))  # this process (the daemon, say) seals...
    reader = other.open(tenant, r)  # ...and another (an API) checks it
    assert reader.source == "hot" and reader.read() == data
    # A cache without the key refuses sealed copies rather than serve what it cannot check.
    keyless = HotCache(service.hot.client, ttl=60, max_object_size=1 << 20)
    assert keyless.get(r, expect_sha256=sha) is None
    assert decode(encode(data, sha, "x/y"), sha) is not None  # a keyless cache writes LQH1
    assert decode(encode(data, sha, "x/y", key=service.hot.key), sha) is None  # and reads no LQH2
