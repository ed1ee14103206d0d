"""The move protocol step by step, failures, and objects that change under a move."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from liquid.config import MoverSettings
from liquid.errors import InvalidInput, StoreError
from liquid.service import LiquidService
from liquid.tiering.journal import enqueue_move, queue_counts, queue_depth
from liquid.tiering.mover import Mover, TokenBucket
from tests.daemon.util import ForwardingStore, events, journal, make_objects, read_ok, row, stored
from tests.fakes import FakeClock


def test_move_steps_switch_then_delete_source_after_grace(
    service: LiquidService, tenant: str, clock: FakeClock, mover_settings: MoverSettings
) -> None:
    objs = make_objects(service, tenant, 6)  # row, warm, cold, each plain and zstd
    homes = {o.id: (row(service, o.id).home_store, row(service, o.id).locator) for o in objs}
    assert {h[0] for h in homes.values()} == {"catalog", "warm", "cold"}
    assert {row(service, o.id).compression for o in objs} == {"none", "zstd"}
    for o in objs:
        to = "warm" if homes[o.id][0] == "cold" else "cold"
        assert enqueue_move(service.engine, o.id, to, to, reason="test") is not None
    assert queue_depth(service.engine) >= 6

    mover = Mover.from_service(service, worker_id="w1", clock=clock, settings=mover_settings)
    report = mover.run_once()
    assert report.total("waiting") == 6 and report.bytes_moved > 0
    for o in objs:
        r = row(service, o.id)
        old_store, old_loc = homes[o.id]
        assert r.home_store != old_store and r.inline_data is None and r.locator.startswith(f"{tenant}/")
        assert read_ok(service, tenant, o)
        if old_loc is not None:  # source kept for the grace period
            assert old_loc in stored(service, old_store, tenant)
    assert {j.step for j in journal(service, tenant)} == {"switched"}
    assert len(events(service, tenant, "object.moved")) == 6

    assert mover.run_once().claimed == 0  # grace not over yet
    clock.advance(61)
    report = mover.run_once()
    assert report.total("moved") == 6
    assert {j.step for j in journal(service, tenant)} == {"done"}
    for store in ("warm", "cold"):
        live = {row(service, o.id).locator for o in objs if row(service, o.id).home_store == store}
        assert stored(service, store, tenant) == live
    assert all(read_ok(service, tenant, o) for o in objs)
    assert "moved" in repr(mover)


def test_enqueue_refuses_duplicates_and_nonsense(service: LiquidService, tenant: str) -> None:
    (obj,) = make_objects(service, tenant, 1, kinds=("warm",))
    assert enqueue_move(service.engine, obj.id, "warm", "warm", reason="same store") is None
    first = enqueue_move(service.engine, obj.id, "cold", "cold", reason="r1")
    assert first is not None
    assert enqueue_move(service.engine, obj.id, "cold", "cold", reason="r2") is None
    with pytest.raises(InvalidInput, match="pseudo-store"):
        enqueue_move(service.engine, obj.id, "warm", "catalog", reason="x")
    service.delete(tenant, obj.ref)
    assert enqueue_move(service.engine, 2**62, "cold", "cold", reason="no such object") is None
    assert "move:planned" in queue_counts(service.engine)


def test_object_deleted_mid_move_discards_the_copy(
    service: LiquidService, tenant: str, clock: FakeClock, mover_settings: MoverSettings
) -> None:
    objs = make_objects(service, tenant, 2, kinds=("warm",))
    victim, other = objs

    class DeletingStore(ForwardingStore):
        def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
            n = self.inner.put(locator, chunks, size_hint=size_hint)
            if not self.done:
                self.done = True
                service.delete(tenant, victim.ref)  # the object goes away between copy and switch
            return n

    stores = dict(service.stores)
    stores["cold"] = DeletingStore(service.stores["cold"])
    for o in objs:
        enqueue_move(service.engine, o.id, "cold", "cold", reason="test")
    mover = Mover.from_service(
        service, clock=clock, settings=mover_settings.model_copy(update={"concurrency": 1}), stores=stores
    )
    report = mover.run_once()
    assert report.total("skipped") == 1 and report.total("waiting") == 1
    assert row(service, victim.id).state in ("deleted", "purged")
    assert stored(service, "cold", tenant) == {row(service, other.id).locator}
    assert read_ok(service, tenant, other)


def test_failed_move_leaves_object_readable_and_is_reported(
    service: LiquidService, tenant: str, clock: FakeClock, mover_settings: MoverSettings
) -> None:
    broken, corrupt = make_objects(service, tenant, 2, kinds=("warm",))
    cold = service.stores["cold"]

    class BrokenStore(ForwardingStore):
        def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
            if locator.startswith(f"{tenant}/") and self.mode == "down":
                list(chunks)
                raise StoreError("cold store unreachable (injected)")
            if self.mode == "flip":
                data = bytearray(b"".join(chunks))
                data[0] ^= 0xFF
                return self.inner.put(locator, [bytes(data)], size_hint=size_hint)
            return self.inner.put(locator, chunks, size_hint=size_hint)

    for mode, obj in (("down", broken), ("flip", corrupt)):
        wrapped = BrokenStore(cold)
        wrapped.mode = mode
        stores = {**service.stores, "cold": wrapped}
        before = row(service, obj.id)
        jid = enqueue_move(service.engine, obj.id, "cold", "cold", reason=f"test {mode}")
        mover = Mover.from_service(
            service, clock=clock, settings=mover_settings, stores=stores, sleep=lambda s: None
        )
        results = []
        for _ in range(mover_settings.max_attempts):
            results.append(mover.run_once())
            clock.advance(mover_settings.backoff_max)
        assert [r.total("retry") for r in results] == [1] * (mover_settings.max_attempts - 1) + [0]
        assert results[-1].total("failed") == 1
        (entry,) = [j for j in journal(service, tenant) if j.id == jid]
        assert entry.step == "failed" and entry.attempts == mover_settings.max_attempts
        assert ("unreachable" if mode == "down" else "does not match") in entry.error
        after = row(service, obj.id)
        assert (after.home_store, after.locator, after.state) == (before.home_store, before.locator, "live")
        assert read_ok(service, tenant, obj)
        assert entry.to_locator not in stored(service, "cold", tenant)
    failed = events(service, tenant, "object.move_failed")
    assert {e.object_id for e in failed} == {broken.id, corrupt.id}
    assert enqueue_move(service.engine, broken.id, "cold", "cold", reason="again") is not None


def test_stop_and_recover(
    service: LiquidService, tenant: str, clock: FakeClock, mover_settings: MoverSettings
) -> None:
    objs = make_objects(service, tenant, 3, kinds=("warm",))
    for o in objs:
        enqueue_move(service.engine, o.id, "cold", "cold", reason="test")
    dead = Mover.from_service(service, worker_id="dead", clock=clock, settings=mover_settings)
    from liquid.tiering.journal import claim

    assert len(claim(service.engine, "dead", 10, 30, clock())) >= 3  # claimed, then the worker "dies"
    other = Mover.from_service(service, worker_id="other", clock=clock, settings=mover_settings)
    assert other.run_once().claimed == 0  # leases are live
    assert dead.recover() >= 3  # same worker id restarting frees its rows at once
    assert {j.attempts for j in journal(service, tenant)} == {1}
    other.stop()
    assert other.run_once().claimed == 0
    report = Mover.from_service(service, worker_id="other", clock=clock, settings=mover_settings).run_once()
    assert report.total("waiting") == 3
    assert all(read_ok(service, tenant, o) for o in objs)


def test_token_bucket_limits_rate() -> None:
    t = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        t[0] += s

    bucket = TokenBucket(1000, monotonic=lambda: t[0], sleep=sleep)
    for _ in range(5):
        bucket.take(1000)
    assert sum(slept) == pytest.approx(4.0)
    TokenBucket(0).take(10**9)  # unlimited: returns at once


def test_mover_that_lost_its_lease_never_touches_the_new_home(
    service: LiquidService, tenant: str, clock: FakeClock, mover_settings: MoverSettings
) -> None:
    from liquid.tiering.journal import claim

    (obj,) = make_objects(service, tenant, 1, kinds=("warm",))
    enqueue_move(service.engine, obj.id, "cold", "cold", reason="test")
    slow = Mover.from_service(service, worker_id="slow", clock=clock, settings=mover_settings)
    (stale,) = claim(service.engine, "slow", 10, mover_settings.lease, clock())
    clock.advance(mover_settings.lease + 1)  # "slow" stalls past its lease
    fast = Mover.from_service(service, worker_id="fast", clock=clock, settings=mover_settings)
    assert fast.run_once().total("waiting") == 1  # took over, copied, verified, switched
    # Wakes up at "planned": the object is no longer at the source, and the row is no longer its.
    assert slow._work(stale) == ("abandoned", 0)
    r = row(service, obj.id)
    assert r.home_store == "cold" and r.locator in stored(service, "cold", tenant)
    assert read_ok(service, tenant, obj)
    (entry,) = journal(service, tenant)
    assert entry.step == "switched" and entry.attempts == 1
