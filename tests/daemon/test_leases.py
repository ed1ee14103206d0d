"""The mover's heartbeat keeps long steps leased, and its watchdog gives up on hung store calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from liquid.config import MoverSettings
from liquid.service import LiquidService, utcnow
from liquid.stores.base import Store
from liquid.tiering.journal import claim, enqueue_move, release, renew
from liquid.tiering.mover import Mover
from tests.daemon.util import journal, make_objects, read_ok, row
from tests.fakes import FakeClock

#: Generous bound on anything that should take about a second: the hung-store tests never wait longer.
PATIENCE = 30.0


class _Blocking:
    """Forwards to ``inner``, but ``put`` or ``open`` of the test tenant's locators blocks until released."""

    def __init__(self, inner: Store, tenant: str, method: str) -> None:
        self.inner = inner
        self.url = inner.url
        self.tenant = tenant
        self.method = method
        self.entered = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()

    def _block(self, locator: str, method: str) -> None:
        if method == self.method and locator.startswith(f"{self.tenant}/") and not self.release.is_set():
            self.entered.set()
            try:
                self.release.wait(PATIENCE)
            finally:
                self.returned.set()

    def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
        n = self.inner.put(locator, chunks, size_hint=size_hint)
        self._block(locator, "put")
        return n

    def open(self, locator: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        self._block(locator, "open")
        return self.inner.open(locator, start=start, end=end)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _mover_threads_done() -> bool:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if not any(t.name.startswith("liquid-mover") and t.is_alive() for t in threading.enumerate()):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("small_move_size", [1024 * 1024, 0], ids=["batched", "per-row"])
def test_heartbeat_keeps_a_long_step_from_being_claimed_twice(
    service: LiquidService, tenant: str, mover_settings: MoverSettings, small_move_size: int
) -> None:
    (obj,) = make_objects(service, tenant, 1, kinds=("warm",))
    enqueue_move(service.engine, obj.id, "cold", "cold", reason="test")
    # A lease far shorter than the copy: only the heartbeat keeps the row this mover's.
    settings = mover_settings.model_copy(update={"lease": 1.5, "small_move_size": small_move_size})
    cold = _Blocking(service.stores["cold"], tenant, "put")
    slow = Mover.from_service(
        service, worker_id="slow", clock=utcnow, settings=settings, stores={**service.stores, "cold": cold}
    )
    other = Mover.from_service(service, worker_id="other", clock=utcnow, settings=settings)
    reports = []
    worker = threading.Thread(target=lambda: reports.append(slow.run_once()))
    worker.start()
    try:
        assert cold.entered.wait(PATIENCE)
        (first,) = journal(service, tenant)
        deadline = time.monotonic() + 3 * settings.lease
        while time.monotonic() < deadline:  # three leases long, the other mover finds nothing to claim
            assert other.run_once().claimed == 0
            time.sleep(0.05)
        (during,) = journal(service, tenant)
        assert during.claimed_by == "slow" and during.claimed_until > first.claimed_until
    finally:
        cold.release.set()
        worker.join(PATIENCE)
    assert not worker.is_alive()
    assert reports[0].total("waiting") == 1
    (after,) = journal(service, tenant)
    assert after.step == "switched" and after.attempts == 0 and after.claimed_by is None
    assert row(service, obj.id).home_store == "cold" and read_ok(service, tenant, obj)
    assert not any(t.name == "liquid-mover-heartbeat" and t.is_alive() for t in threading.enumerate())


def test_renew_touches_only_open_rows_the_worker_still_holds(
    service: LiquidService, tenant: str, clock: FakeClock
) -> None:
    objs = make_objects(service, tenant, 3, kinds=("warm",))
    for o in objs:
        enqueue_move(service.engine, o.id, "cold", "cold", reason="test")
    held = [e.id for e in claim(service.engine, "a", 100, 30, clock()) if e.tenant_id == tenant]
    assert len(held) == 3
    stolen, released, kept = held
    with service.engine.begin() as conn:
        conn.execute(text("UPDATE move_journal SET claimed_by = 'b' WHERE id = :id"), {"id": stolen})
        conn.execute(text("UPDATE move_journal SET claimed_by = NULL WHERE id = :id"), {"id": released})
    before = {j.id: j.claimed_until for j in journal(service, tenant)}
    assert renew(service.engine, "a", held, 300, clock()) == {kept}
    after = {j.id: j.claimed_until for j in journal(service, tenant)}
    assert after[stolen] == before[stolen] and after[released] == before[released]
    assert (after[kept] - clock()).total_seconds() == pytest.approx(300)


@pytest.mark.parametrize(
    ("small_move_size", "stuck_at"), [(1024 * 1024, "planned"), (0, "copied")], ids=["batched", "per-row"]
)
def test_hung_store_call_fails_the_attempt_and_run_once_returns(
    service: LiquidService,
    tenant: str,
    clock: FakeClock,
    mover_settings: MoverSettings,
    small_move_size: int,
    stuck_at: str,
) -> None:
    (obj,) = make_objects(service, tenant, 1, kinds=("warm",))
    enqueue_move(service.engine, obj.id, "cold", "cold", reason="test")
    settings = mover_settings.model_copy(update={"store_timeout": 2.0, "small_move_size": small_move_size})
    cold = _Blocking(service.stores["cold"], tenant, "open")  # the read-back hangs
    mover = Mover.from_service(
        service, clock=clock, settings=settings, stores={**service.stores, "cold": cold}
    )
    started = time.monotonic()
    try:
        report = mover.run_once()
        took = time.monotonic() - started
        assert cold.entered.is_set() and not cold.returned.is_set()  # returned while the call still hangs
        assert took < PATIENCE / 2, took
        assert report.total("retry") == 1
        (entry,) = journal(service, tenant)
        assert entry.attempts == 1 and "store_timeout" in entry.error
        assert entry.claimed_by is None and entry.claimed_until == clock() + timedelta(
            seconds=settings.backoff
        )
        assert row(service, obj.id).home_store == "warm" and read_ok(service, tenant, obj)
        # A later cycle of this same worker takes the row again before the abandoned call returns.
        clock.advance(settings.backoff + 1)
        assert [e.id for e in claim(service.engine, mover.worker_id, 100, 30, clock())] == [entry.id]
    finally:
        cold.release.set()

    # The abandoned thread's attempt was counted as failed: whatever it tries to record now is refused.
    assert cold.returned.wait(PATIENCE) and _mover_threads_done()
    (entry,) = journal(service, tenant)
    assert (entry.step, entry.attempts, entry.claimed_by) == (stuck_at, 1, mover.worker_id)

    release(service.engine, mover.worker_id, [entry.id], now=clock())
    assert mover.run_once().total("waiting") == 1  # retried with the store healed
    assert row(service, obj.id).home_store == "cold" and read_ok(service, tenant, obj)
