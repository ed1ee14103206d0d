"""Retention purges with deletion receipts, and gc in both directions."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import cast

import pytest
from sqlalchemy import text

from liquid.config import MoverSettings
from liquid.errors import Forbidden, ObjectGone
from liquid.service import LiquidService
from liquid.stores.base import write_bytes
from liquid.stores.s3 import S3Store
from liquid.tiering.gc import reconcile_service
from liquid.tiering.journal import enqueue_move, enqueue_purge
from liquid.tiering.mover import Mover
from tests.daemon.util import events, journal, make_objects, read_ok, row, stored
from tests.fakes import FakeClock


def test_purge_tombstones_deletes_everywhere_and_leaves_a_receipt(
    service: LiquidService, tenant: str, clock: FakeClock, mover_settings: MoverSettings
) -> None:
    objs = make_objects(service, tenant, 3)  # one catalog row, one warm, one cold
    assert service.hot is not None
    for o in objs:
        assert read_ok(service, tenant, o)  # populates the hot copy
    # Purges other tests queued in the shared catalog go first: the count below is this test's.
    Mover.from_service(service, clock=clock, settings=mover_settings).run_once()
    rule = "retention: policy docs, rule ttl-30d"
    for o in objs:
        assert enqueue_purge(service.engine, o.id, reason=rule, now=clock()) is not None
        assert row(service, o.id).state == "expired"
        with pytest.raises(ObjectGone):
            service.head(tenant, o.ref)
    assert [e.data["reason"] for e in events(service, tenant, "object.expired")] == [rule] * 3
    homes = {o.id: (row(service, o.id).home_store, row(service, o.id).locator) for o in objs}

    report = Mover.from_service(service, clock=clock, settings=mover_settings).run_once()
    assert report.total("purged") == 3
    for o in objs:
        r = row(service, o.id)
        assert r.state == "purged" and r.purged_at == clock() and r.inline_data is None
        assert service.hot.get(o.ref.ref, expect_sha256=o.ref.sha256) is None
    assert stored(service, "warm", tenant) == set() and stored(service, "cold", tenant) == set()
    receipts = {e.object_id: e for e in events(service, tenant, "object.purged")}
    assert set(receipts) == {o.id for o in objs}
    for oid, receipt in receipts.items():
        assert receipt.data["rule"] == rule
        assert (receipt.data["store"], receipt.data["locator"]) == homes[oid]
        assert receipt.data["sha256"] and receipt.at == clock()  # the receipt's time is the purge's
    assert {j.kind + ":" + j.step for j in journal(service, tenant)} == {"purge:done"}
    assert enqueue_purge(service.engine, objs[0].id, reason=rule) is None  # already purged


def test_legal_hold_blocks_purge(service: LiquidService, tenant: str) -> None:
    info = service.put(tenant, "docs", "held", b"x" * 100_000, legal_hold=True)
    from tests.daemon.util import object_id

    oid = object_id(service, info)
    with pytest.raises(Forbidden, match="legal hold"):
        enqueue_purge(service.engine, oid, reason="retention")
    assert row(service, oid).state == "live" and journal(service, tenant) == []


def test_purge_waits_for_an_open_move(
    service: LiquidService, tenant: str, clock: FakeClock, mover_settings: MoverSettings
) -> None:
    (obj,) = make_objects(service, tenant, 1, kinds=("warm",))
    assert enqueue_move(service.engine, obj.id, "cold", "cold", reason="demote") is not None
    assert enqueue_purge(service.engine, obj.id, reason="retention", now=clock()) is None
    assert row(service, obj.id).state == "expired"  # tombstoned anyway: no longer served
    mover = Mover.from_service(service, clock=clock, settings=mover_settings)
    assert mover.run_once().total("skipped") == 1  # the move notices and drops its copy
    assert enqueue_purge(service.engine, obj.id, reason="retention", now=clock()) is not None
    assert mover.run_once().total("purged") == 1
    assert stored(service, "warm", tenant) == set() and stored(service, "cold", tenant) == set()


def test_gc_deletes_old_orphans_and_reports_missing_bytes(
    service: LiquidService, tenant: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    objs = make_objects(service, tenant, 3, kinds=("warm", "cold", "row"))
    warm_obj, cold_obj, _ = objs
    # Bytes nobody references: a write that crashed before its catalog row, in both stores.
    for store in ("warm", "cold"):
        write_bytes(service.stores[store], f"{tenant}/data/orphan-{store}", b"o" * 5000)
    # A live object whose bytes vanished behind the catalog's back.
    lost = row(service, cold_obj.id)
    service.stores["cold"].delete(lost.locator)
    # A deleted object whose purge never happened.
    with service.engine.begin() as conn:
        conn.execute(
            text("UPDATE objects SET state = 'deleted', deleted_at = now() WHERE id = :id"),
            {"id": warm_obj.id},
        )
    warm_loc = row(service, warm_obj.id).locator

    with caplog.at_level(logging.ERROR, logger="liquid.tiering.gc"):
        young = reconcile_service(service, grace=3600, clock=clock, tenants=[tenant])
    assert young.young == 2 and young.deleted == []
    assert [m[0] for m in young.missing] == [cold_obj.id]
    assert any(lost.locator in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert young.purged == [("warm", warm_loc, young.purged[0][2])]
    assert row(service, warm_obj.id).state == "purged"
    assert [e.data["locator"] for e in events(service, tenant, "object.purged")] == [warm_loc]

    clock.advance(7200)
    old = reconcile_service(service, grace=timedelta(hours=1), clock=clock, tenants=[tenant])
    assert sorted(old.deleted) == [
        ("cold", f"{tenant}/data/orphan-cold", 5000),
        ("warm", f"{tenant}/data/orphan-warm", 5000),
    ]
    assert old.bytes_freed == 10000
    receipts = [
        e for e in events(service, None, "gc.bytes_deleted") if e.data["locator"].startswith(f"{tenant}/")
    ]
    assert len(receipts) == 2 and all(e.data["rule"].startswith("gc:") for e in receipts)
    # Missing bytes are reported every time, never dropped.
    assert [m[0] for m in old.missing] == [cold_obj.id]
    assert row(service, cold_obj.id).state == "live"
    assert len(events(service, tenant, "object.missing")) == 2
    assert stored(service, "warm", tenant) == set() and stored(service, "cold", tenant) == set()
    assert read_ok(service, tenant, objs[2])  # the catalog-row object is untouched
    assert "missing=1" in repr(old) and old.as_dict()["bytes_freed"] == 10000


def test_gc_spares_bytes_of_moves_in_flight(
    service: LiquidService, tenant: str, clock: FakeClock, mover_settings: MoverSettings
) -> None:
    (obj,) = make_objects(service, tenant, 1, kinds=("warm",))
    src = row(service, obj.id).locator
    enqueue_move(service.engine, obj.id, "cold", "cold", reason="demote")
    mover = Mover.from_service(service, clock=clock, settings=mover_settings)
    mover.run_once()  # switched; the source is kept for the grace period
    clock.advance(10 * 86400)
    report = reconcile_service(service, grace=60, clock=clock, tenants=[tenant], dry_run=True)
    assert report.deleted == [] and report.missing == []
    assert src in stored(service, "warm", tenant)
    assert mover.run_once().total("moved") == 1
    assert stored(service, "warm", tenant) == set()
    assert read_ok(service, tenant, obj)


def test_gc_aborts_incomplete_multipart_uploads_past_the_grace(
    service: LiquidService, tenant: str, clock: FakeClock
) -> None:
    """A put that crashed mid-upload leaves billed parts no listing shows; gc reports and aborts them."""
    cold = service.stores["cold"]
    s3 = cast(S3Store, getattr(cold, "store", cold))
    started = []
    for name in ("crashed-a", "crashed-b"):
        key = f"{s3.prefix}{tenant}/data/{name}"
        upload_id = s3.client.create_multipart_upload(Bucket=s3.bucket, Key=key)["UploadId"]
        s3.client.upload_part(Bucket=s3.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"p" * 1000)
        started.append(upload_id)

    def open_uploads() -> set[str]:
        page = s3.client.list_multipart_uploads(Bucket=s3.bucket, Prefix=f"{s3.prefix}{tenant}/")
        return {u["UploadId"] for u in page.get("Uploads", [])}

    assert open_uploads() == set(started)
    young = reconcile_service(service, grace=3600, clock=clock, tenants=[tenant], only=["cold"])
    assert young.uploads_young == 2 and young.uploads_aborted == []
    assert open_uploads() == set(started)

    clock.advance(7200)
    dry = reconcile_service(service, grace=3600, clock=clock, tenants=[tenant], only=["cold"], dry_run=True)
    assert len(dry.uploads_aborted) == 2 and open_uploads() == set(started)
    old = reconcile_service(service, grace=3600, clock=clock, tenants=[tenant], only=["cold"])
    assert sorted(u[1] for u in old.uploads_aborted) == [
        f"{tenant}/data/crashed-a",
        f"{tenant}/data/crashed-b",
    ]
    assert {u["upload_id"] for u in old.as_dict()["uploads_aborted"]} == set(started)
    assert open_uploads() == set()
    assert "uploads_aborted=2" in repr(old) and old.errors == []
    # Nothing left to do, and a second run is harmless.
    again = reconcile_service(service, grace=3600, clock=clock, tenants=[tenant], only=["cold"])
    assert again.uploads_aborted == [] and again.errors == []
