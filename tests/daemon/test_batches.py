"""Small moves in batches: one catalog transaction per batch, events, and rows whose object moved on."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from liquid.config import MoverSettings
from liquid.service import LiquidService
from liquid.tiering.journal import enqueue_move
from liquid.tiering.mover import Mover
from tests.daemon.util import (
    ForwardingStore,
    events,
    journal,
    live_locators,
    make_objects,
    opposite,
    read_ok,
    row,
    stored,
)
from tests.fakes import FakeClock


def _changed(service: LiquidService, ids: Iterable[int]) -> set[int]:
    """Which of ``ids`` are in the planner's change feed."""
    with service.engine.connect() as conn:
        return set(
            conn.execute(
                text("SELECT object_id FROM tiering_changes WHERE object_id = ANY(:ids)"), {"ids": list(ids)}
            ).scalars()
        )


class _Statements:
    """Counts the SQL statements an engine runs (the catalog's round trips)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.n = 0

    def _count(self, *args: Any) -> None:
        self.n += 1

    def __enter__(self) -> _Statements:
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)


def test_small_moves_switch_together_with_their_events(
    service: LiquidService, tenant: str, clock: FakeClock, mover_settings: MoverSettings
) -> None:
    # The journal is shared with every other test: carry out (or back off) whatever they left
    # waiting first, so the counts below are this test's 24 moves.
    Mover.from_service(service, worker_id="drain", clock=clock, settings=mover_settings).run_until_idle(
        max_cycles=5
    )
    objs = make_objects(service, tenant, 24, kinds=("row", "warm"))  # catalog rows and warm, half zstd
    homes = {o.id: (row(service, o.id).home_store, row(service, o.id).locator) for o in objs}
    for o in objs:
        tier, store = opposite(row(service, o.id).home_tier)
        assert enqueue_move(service.engine, o.id, tier, store, reason="batch test") is not None
    settings = mover_settings.model_copy(update={"batch_size": 10})  # three batches: 10, 10, 4
    mover = Mover.from_service(service, worker_id="batcher", clock=clock, settings=settings)
    before = clock()

    with _Statements(service.engine) as catalog:
        report = mover.run_once()
    assert report.total("waiting") == 24 and report.bytes_moved > 0
    # Claim, load the objects, then per batch: lock, switch, mark changed, release the waiting rows.
    # The per-row path spends about ten statements on every single move.
    assert catalog.n <= 2 + 3 * 6, catalog.n

    rows = journal(service, tenant)
    assert {j.step for j in rows} == {"switched"}
    assert all(j.delete_after == before + timedelta(seconds=settings.grace_period) for j in rows)
    assert all(j.claimed_by is None and j.attempts == 0 for j in rows)
    moved = {e.object_id: e for e in events(service, tenant, "object.moved")}
    assert set(moved) == {o.id for o in objs}
    for j in rows:
        data = moved[j.object_id].data
        assert moved[j.object_id].actor == "mover:batcher"
        assert data["journal_id"] == j.id and data["reason"] == "batch test"
        assert (data["from_store"], data["from_locator"]) == homes[j.object_id]
        assert (data["to_store"], data["to_locator"]) == (j.to_store, j.to_locator)
        assert data["size"] == row(service, j.object_id).size
    assert _changed(service, homes) == set(homes)
    for o in objs:
        r = row(service, o.id)
        assert r.home_store != homes[o.id][0] and r.inline_data is None
        assert read_ok(service, tenant, o)

    clock.advance(61)
    with _Statements(service.engine) as catalog:
        report = mover.run_once()
    assert report.total("moved") == 24
    assert catalog.n <= 3, catalog.n  # claim, (no objects to load), close every row at once
    assert {j.step for j in journal(service, tenant)} == {"done"}
    for store in ("warm", "cold"):
        assert stored(service, store, tenant) == live_locators(service, tenant, store)
    assert all(read_ok(service, tenant, o) for o in objs)


def test_object_deleted_mid_batch_discards_only_its_row(
    service: LiquidService, tenant: str, clock: FakeClock, mover_settings: MoverSettings
) -> None:
    objs = make_objects(service, tenant, 6, kinds=("warm",))
    victim = objs[2]
    victim_to: list[str] = []

    class DeletingStore(ForwardingStore):
        def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
            n = self.inner.put(locator, chunks, size_hint=size_hint)
            if locator in victim_to:
                service.delete(tenant, victim.ref)  # gone after its copy, before the batch's switch
            return n

    for o in objs:
        enqueue_move(service.engine, o.id, "cold", "cold", reason="test")
    victim_to.extend(j.to_locator for j in journal(service, tenant) if j.object_id == victim.id)
    stores = {**service.stores, "cold": DeletingStore(service.stores["cold"])}
    mover = Mover.from_service(
        service, clock=clock, settings=mover_settings.model_copy(update={"grace_period": 0}), stores=stores
    )
    report = mover.run_once()

    assert report.total("skipped") == 1 and report.total("moved") == 5
    by_object = {j.object_id: j for j in journal(service, tenant)}
    assert by_object[victim.id].step == "done" and "deleted or changed" in by_object[victim.id].error
    assert all(j.step == "done" and j.error is None for oid, j in by_object.items() if oid != victim.id)
    assert row(service, victim.id).state in ("deleted", "purged")
    assert row(service, victim.id).home_store == "warm"  # never switched to the dropped copy
    assert {e.object_id for e in events(service, tenant, "object.moved")} == {o.id for o in objs} - {
        victim.id
    }
    assert _changed(service, [o.id for o in objs]) >= {o.id for o in objs if o is not victim}
    # The victim's copy is dropped (its warm bytes are its purge's business); everyone else moved.
    assert stored(service, "cold", tenant) == live_locators(service, tenant, "cold")
    assert stored(service, "warm", tenant) <= {row(service, victim.id).locator}
    assert all(read_ok(service, tenant, o) for o in objs if o is not victim)


def test_batched_copy_that_fails_verification_is_retried_alone(
    service: LiquidService, tenant: str, clock: FakeClock, mover_settings: MoverSettings
) -> None:
    objs = make_objects(service, tenant, 4, kinds=("warm",))
    bad = objs[1]
    bad_to: list[str] = []

    class FlippingStore(ForwardingStore):
        def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
            if locator not in bad_to:
                return self.inner.put(locator, chunks, size_hint=size_hint)
            data = bytearray(b"".join(chunks))
            data[-1] ^= 0xFF
            return self.inner.put(locator, [bytes(data)], size_hint=size_hint)

    for o in objs:
        enqueue_move(service.engine, o.id, "cold", "cold", reason="test")
    bad_to.extend(j.to_locator for j in journal(service, tenant) if j.object_id == bad.id)
    stores = {**service.stores, "cold": FlippingStore(service.stores["cold"])}
    mover = Mover.from_service(service, clock=clock, settings=mover_settings, stores=stores)
    report = mover.run_once()
    assert report.total("retry") == 1 and report.total("waiting") == 3
    (entry,) = [j for j in journal(service, tenant) if j.object_id == bad.id]
    assert entry.step == "planned" and entry.attempts == 1 and "does not match" in entry.error
    assert row(service, bad.id).home_store == "warm" and read_ok(service, tenant, bad)

    bad_to.clear()  # the store heals: the retry overwrites the bad copy and switches
    clock.advance(mover_settings.backoff + 1)
    assert mover.run_once().total("waiting") == 1
    assert row(service, bad.id).home_store == "cold" and read_ok(service, tenant, bad)


@pytest.mark.parametrize("small_move_size", [0, 1024 * 1024], ids=["per-row", "batched"])
def test_both_paths_agree_on_end_states(
    service: LiquidService,
    tenant: str,
    clock: FakeClock,
    mover_settings: MoverSettings,
    small_move_size: int,
) -> None:
    objs = make_objects(service, tenant, 6)  # catalog rows, warm and cold; plain and zstd
    for o in objs:
        tier, store = opposite(row(service, o.id).home_tier)
        enqueue_move(service.engine, o.id, tier, store, reason="test")
    settings = mover_settings.model_copy(update={"small_move_size": small_move_size, "grace_period": 0})
    report = Mover.from_service(service, clock=clock, settings=settings).run_once()
    assert report.total("moved") == 6 and report.claimed == 6
    rows = journal(service, tenant)
    assert {j.step for j in rows} == {"done"} and all(j.claimed_by is None for j in rows)
    assert len(events(service, tenant, "object.moved")) == 6
    for store in ("warm", "cold"):
        assert stored(service, store, tenant) == live_locators(service, tenant, store)
    assert all(read_ok(service, tenant, o) for o in objs)
