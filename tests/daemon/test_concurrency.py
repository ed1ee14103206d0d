"""Readers during moves, and two movers on one catalog."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from liquid.bootstrap import Runtime
from liquid.config import MoverSettings
from liquid.service import LiquidService
from liquid.tiering.journal import JournalEntry, enqueue_move
from liquid.tiering.mover import Mover
from tests.daemon.util import Obj, journal, make_objects, opposite, read_ok, row, stored
from tests.fakes import FakeClock


def _enqueue_opposite(service: LiquidService, objs: list[Obj]) -> int:
    queued = 0
    for o in objs:
        tier, store = opposite(row(service, o.id).home_tier)
        queued += enqueue_move(service.engine, o.id, tier, store, reason="back and forth") is not None
    return queued


def test_readers_during_moves_always_get_the_right_bytes(
    service: LiquidService,
    tenant: str,
    clock: FakeClock,
    mover_settings: MoverSettings,
    make_runtime: Callable[..., Runtime],
) -> None:
    objs = make_objects(service, tenant, 12)
    # Readers without the hot cache: every read goes to the durable home that is being moved.
    readers = make_runtime(hot={"enabled": False}).service
    results: dict[str, int] = defaultdict(int)
    errors: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def reader(offset: int) -> None:
        for i in range(120):
            o = objs[(i + offset) % len(objs)]
            try:
                data = readers.get(tenant, o.ref.ref)
                ok = hashlib.sha256(data).hexdigest() == o.data_sha
                key = "ok" if ok else "wrong"
            except Exception as exc:
                key = "error"
                with lock:
                    errors.append(f"{o.ref.ref}: {type(exc).__name__}: {exc}")
            with lock:
                results[key] += 1

    mover = Mover.from_service(service, worker_id="mover", clock=clock, settings=mover_settings)
    rounds = 0

    def move_loop() -> None:
        nonlocal rounds
        while not done.is_set():
            _enqueue_opposite(service, objs)
            mover.run_once()  # copy, verify, switch
            clock.advance(mover_settings.grace_period + 1)
            mover.run_once()  # delete the sources
            rounds += 1

    threads = [threading.Thread(target=reader, args=(k * 3,)) for k in range(4)]
    mover_thread = threading.Thread(target=move_loop)
    mover_thread.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    mover_thread.join()

    assert errors == []
    assert dict(results) == {"ok": 480}
    assert rounds >= 2, "the readers finished before the objects moved back and forth"
    assert all(read_ok(readers, tenant, o) for o in objs)
    moved = [j for j in journal(service, tenant) if j.step == "done"]
    assert len(moved) >= 12


def test_two_movers_never_work_one_object_at_once(
    service: LiquidService, tenant: str, clock: FakeClock, mover_settings: MoverSettings
) -> None:
    objs = make_objects(service, tenant, 30)
    settings = mover_settings.model_copy(update={"grace_period": 0, "concurrency": 2})
    spans: list[tuple[int, str, float, float]] = []
    lock = threading.Lock()

    def recording(mover: Mover) -> None:
        # Per-object work: a step of the per-row path, a copy and verification of the batched path.
        def wrap(work: Callable[..., Any]) -> Callable[..., Any]:
            def wrapped(entry: JournalEntry, *args: Any) -> Any:
                t0 = time.monotonic()
                try:
                    return work(entry, *args)
                finally:
                    with lock:
                        spans.append((entry.object_id, mover.worker_id, t0, time.monotonic()))

            return wrapped

        mover._step = wrap(mover._step)  # type: ignore[method-assign]
        mover._copy_small = wrap(mover._copy_small)  # type: ignore[method-assign]

    movers = [
        Mover.from_service(service, worker_id=f"m{i}", clock=clock, settings=settings) for i in range(2)
    ]
    for m in movers:
        recording(m)

    for _ in range(2):  # there and back again
        assert _enqueue_opposite(service, objs) == len(objs)

        def drain(m: Mover) -> None:
            while m.run_once(limit=3).claimed:
                pass

        threads = [threading.Thread(target=drain, args=(m,)) for m in movers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(j.step == "done" for j in journal(service, tenant))

    by_object: dict[int, list[tuple[str, float, float]]] = defaultdict(list)
    for oid, worker, t0, t1 in spans:
        by_object[oid].append((worker, t0, t1))
    for oid, items in by_object.items():
        items.sort(key=lambda s: s[1])
        for (w1, _, end1), (w2, start2, _) in itertools.pairwise(items):
            assert w1 == w2 or start2 >= end1, f"object {oid}: {w1} and {w2} overlapped"
    workers = {w for _, w, _, _ in spans}
    assert workers == {"m0", "m1"}, "both movers should have taken part"
    assert len(journal(service, tenant)) == 2 * len(objs)
    assert all(read_ok(service, tenant, o) for o in objs)
    for store in ("warm", "cold"):
        live = {row(service, o.id).locator for o in objs if row(service, o.id).home_store == store}
        assert stored(service, store, tenant) == live
