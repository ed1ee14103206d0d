"""Access tracking on real Valkey and PostgreSQL, with an injected clock."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from sqlalchemy import text

from liquid.access import AccessTracker, DecayedCounts, decay, fold_burst, rate_per_hour
from liquid.redis_keys import TAG
from liquid.service import LiquidService
from tests.fakes import FakeClock

from .conftest import ServiceFactory

T0 = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
HALF_LIFE = 3600.0


@pytest.fixture
def clocked(make_service: ServiceFactory) -> tuple[LiquidService, FakeClock]:
    svc = make_service()
    clock = FakeClock(T0)
    svc.clock = clock
    assert svc.access is not None
    svc.access.clock = clock
    svc.access.flush(svc.engine)  # start from an empty dirty set
    return svc, clock


def _stats(svc: LiquidService, tenant: str) -> dict[str, Any]:
    with svc.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT o.key, a.score, a.hits, a.last_access_at FROM access_stats a"
                " JOIN objects o ON o.id = a.object_id WHERE a.tenant_id = :t"
            ),
            {"t": tenant},
        ).all()
    return {r.key: r for r in rows}


def test_decay_and_rate_helpers() -> None:
    assert decay(8.0, 3 * HALF_LIFE, HALF_LIFE) == pytest.approx(1.0)
    # A steady r reads/s settles at r·h/ln2; rate_per_hour inverts it.
    assert rate_per_hour(10 * HALF_LIFE / math.log(2), HALF_LIFE) == pytest.approx(36000.0)


def test_reads_are_scored_with_decay_and_flushed(
    clocked: tuple[LiquidService, FakeClock], tenant: str
) -> None:
    svc, clock = clocked
    hot = svc.put(tenant, "ns", "hot", os.urandom(5000)).ref
    cold = svc.put(tenant, "ns", "idle", os.urandom(5000)).ref
    svc.get(tenant, hot)  # warm read (populates the cache)
    clock.advance(seconds=HALF_LIFE)
    svc.get(tenant, hot)  # hot read: the record rides in the GET's pipeline
    svc.get(tenant, hot)
    svc.get(tenant, cold)
    report = svc.access.flush(svc.engine)  # type: ignore[union-attr]
    assert (report.objects, report.hits) == (2, 4)
    stats = _stats(svc, tenant)
    # 1 read decayed by one half-life, plus 2 fresh reads.
    assert stats["hot"].score == pytest.approx(0.5 + 2, rel=1e-6)
    assert stats["hot"].hits == 3
    assert stats["hot"].last_access_at == clock.now
    assert stats["idle"].score == pytest.approx(1.0)


def test_flushes_merge_by_decaying_the_catalog_score(
    clocked: tuple[LiquidService, FakeClock], tenant: str
) -> None:
    svc, clock = clocked
    ref = svc.put(tenant, "ns", "k", b"v" * 100).ref
    for _ in range(4):
        svc.get(tenant, ref)
    svc.access.flush(svc.engine)  # type: ignore[union-attr]
    clock.advance(seconds=2 * HALF_LIFE)
    svc.get(tenant, ref)
    svc.access.flush(svc.engine)  # type: ignore[union-attr]
    row = _stats(svc, tenant)["k"]
    assert row.score == pytest.approx(4 * 0.25 + 1, rel=1e-6)
    assert row.hits == 5


def test_losing_redis_loses_at_most_the_unflushed_counts(
    clocked: tuple[LiquidService, FakeClock], tenant: str
) -> None:
    svc, _ = clocked
    tracker = svc.access
    assert tracker is not None
    ref = svc.put(tenant, "ns", "k", b"v").ref
    for _ in range(3):
        svc.get(tenant, ref)
    tracker.flush(svc.engine)
    svc.get(tenant, ref)
    svc.get(tenant, ref)
    tracker.push()  # in Redis, not yet in the catalog
    for key in tracker.client.scan_iter(TAG + ":acc:*"):
        tracker.client.delete(key)  # what a Redis restart does to unflushed deltas
    tracker.client.script_flush()
    assert svc.get(tenant, ref) == b"v"  # reads go on; the tracker reloads its script
    svc.get(tenant, ref)
    tracker.flush(svc.engine)
    assert _stats(svc, tenant)["k"].hits == 5  # 3 flushed + 2 after the restart; the 2 in Redis were lost


def test_reads_batch_in_memory_and_fold_into_one_decayed_delta(
    clocked: tuple[LiquidService, FakeClock], tenant: str
) -> None:
    svc, clock = clocked
    tracker = svc.access
    assert tracker is not None
    ref = svc.put(tenant, "ns", "k", b"v").ref
    tracker.note(ref)
    clock.advance(seconds=HALF_LIFE)
    tracker.note(ref)
    tracker.note(ref)
    assert tracker.push()
    tracker.flush(svc.engine)
    row = _stats(svc, tenant)["k"]
    assert (row.hits, row.score) == (3, pytest.approx(2.5))


def test_a_burst_of_reads_counts_once_across_batches_pushes_and_flushes(
    clocked: tuple[LiquidService, FakeClock], tenant: str
) -> None:
    # Correlated-reference period 600 s: a read within 600 s of the last *counted* read is a hit
    # but adds nothing to the score. The burst is split across every layer that folds reads
    # (the in-memory batch, the Redis script, the catalog merge), which must all agree with
    # DecayedCounts, the replay's counter.
    svc, clock = clocked
    tracker = svc.access
    assert tracker is not None
    tracker.correlation = 600.0
    ref = svc.put(tenant, "ns", "k", b"v").ref
    counts = DecayedCounts(half_life=HALF_LIFE, correlation=600.0)
    start = T0.timestamp()

    def read(at: float) -> None:
        clock.now = datetime.fromtimestamp(start + at, UTC)
        tracker.note(ref)
        counts.note("k", start + at)

    read(0)
    tracker.push()  # Redis: s=1, counted at 0
    read(60)
    tracker.push()  # Redis script: within the period of 0, no count
    tracker.flush(svc.engine)
    read(120)
    tracker.push()
    tracker.flush(svc.engine)  # catalog merge: within the period of 0, no count
    read(700)  # counts (700 s after 0)
    read(760)  # the in-memory batch: within the period of 700
    tracker.push()
    tracker.flush(svc.engine)
    read(1000)  # within the period of 700 again, across a flush
    tracker.push()
    tracker.flush(svc.engine)
    row = _stats(svc, tenant)["k"]
    expected = decay(1.0, 1000, HALF_LIFE) + decay(1.0, 300, HALF_LIFE)  # two counted reads: 0 and 700
    assert row.hits == 6
    assert row.score == pytest.approx(expected, rel=1e-9)
    assert counts.get("k") == (pytest.approx(expected, rel=1e-9), start + 1000, 6)
    assert row.last_access_at == datetime.fromtimestamp(start + 1000, UTC)
    with svc.engine.connect() as conn:
        sql = text("SELECT counted_at FROM access_stats WHERE tenant_id = :t")
        assert conn.execute(sql, {"t": tenant}).scalar_one() == datetime.fromtimestamp(start + 700, UTC)


def test_fold_burst_without_a_period_is_a_plain_decayed_sum() -> None:
    assert fold_burst((2.0, 0.0, 0.0), (1.0, HALF_LIFE, HALF_LIFE, HALF_LIFE), HALF_LIFE, 0.0) == (
        2.0,
        HALF_LIFE,
        HALF_LIFE,
    )
    # Within the period the newer batch's first counted read is taken out and 0 stays the last counted.
    assert fold_burst((2.0, 0.0, 0.0), (1.0, 60.0, 60.0, 60.0), HALF_LIFE, 600.0) == (
        pytest.approx(2.0 * decay(1.0, 60.0, HALF_LIFE)),
        60.0,
        0.0,
    )


def test_reads_from_the_home_are_signalled_as_misses_and_never_write_redis(
    clocked: tuple[LiquidService, FakeClock], tenant: str
) -> None:
    from liquid.catalog import changes
    from liquid.hotcache import hot_key

    svc, _ = clocked
    assert svc.access is not None and svc.hot is not None
    svc.access.drain_missed()
    big = svc.put(tenant, "ns", "big", os.urandom(2 * 1024 * 1024)).ref  # above hot.max_object_size
    small = svc.put(tenant, "ns", "small", os.urandom(20_000)).ref
    ids = {
        name: svc.fast.find(r.tenant, r.namespace, r.key, r.version).id
        for name, r in (("big", big), ("small", small))
    }
    for _ in range(3):
        svc.get(tenant, big)
        svc.get(tenant, small)
    assert svc.access.drain_missed() == [ids["small"]]  # once, however often; never the large one
    assert svc.access.drain_missed() == []
    client = svc.hot.client
    assert not client.exists(hot_key(small)) and not svc.hot.holds(small)
    # A hit is not a miss.
    assert svc.fill_hot(small, ids["small"])
    svc.get(tenant, small)
    assert svc.access.drain_missed() == []
    # The flush puts every read object into the tiering change feed.
    changes.drain(svc.engine)
    svc.access.flush(svc.engine)
    assert set(ids.values()) <= set(changes.drain(svc.engine))


def test_hourly_counts_per_namespace(clocked: tuple[LiquidService, FakeClock], tenant: str) -> None:
    svc, clock = clocked
    ref = svc.put(tenant, "metrics", "k", b"v").ref
    svc.get(tenant, ref)
    clock.advance(hours=1)
    svc.get(tenant, ref)
    svc.get(tenant, ref)
    assert svc.access is not None
    assert svc.access.hourly(tenant, "metrics") == {"2030030112": 1, "2030030113": 2}
    svc.get(tenant, ref)
    svc.access.flush(svc.engine)
    assert svc.access.hourly(tenant, "metrics") == {}  # moved, not copied
    from liquid.access import hourly_reads

    assert hourly_reads(svc.engine, tenant, "metrics") == {
        datetime(2030, 3, 1, 12, tzinfo=UTC): 1,
        datetime(2030, 3, 1, 13, tzinfo=UTC): 3,
    }


def test_reads_work_and_nothing_is_tracked_without_redis(
    make_service: ServiceFactory, base_settings: dict[str, Any], tenant: str
) -> None:
    svc = make_service(stores={**base_settings["stores"], "hot": "redis://127.0.0.1:1/0"})
    assert svc.access is None
    ref = svc.put(tenant, "ns", "k", b"v").ref
    assert svc.get(tenant, ref) == b"v"


def test_tracker_rejects_a_nonsense_half_life(service: LiquidService) -> None:
    assert service.hot is not None
    with pytest.raises(ValueError, match="half_life must be positive"):
        AccessTracker(service.hot.client, half_life=0, clock=lambda: T0)


def test_reads_become_one_event_per_object_per_minute(
    clocked: tuple[LiquidService, FakeClock], tenant: str
) -> None:
    """The event log sees reads aggregated: 50 reads over two minutes of two objects → 3 events."""
    svc, clock = clocked
    a = svc.put(tenant, "ns", "a", os.urandom(3000)).ref
    b = svc.put(tenant, "ns", "b", os.urandom(3000)).ref
    for _ in range(30):
        svc.get(tenant, a)
    for _ in range(5):
        svc.get(tenant, b)
    clock.advance(seconds=60)
    for _ in range(15):
        svc.get(tenant, a)
    assert svc.access is not None
    first = svc.access.flush(svc.engine)
    assert first.read_events == 2  # the current minute waits until it is over
    clock.advance(seconds=60)
    assert svc.access.flush(svc.engine).read_events == 1
    with svc.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT key, at, count, tier, data FROM events WHERE tenant_id = :t AND kind = 'object.read'"
                " ORDER BY at, key"
            ),
            {"t": tenant},
        ).all()
    assert [(r.key, r.at, r.count) for r in rows] == [
        ("a", T0, 30),
        ("b", T0, 5),
        ("a", datetime(2030, 3, 1, 12, 1, tzinfo=UTC), 15),
    ]
    assert all(r.tier == "warm" and r.data == {} for r in rows)
    assert svc.access.flush(svc.engine).read_events == 0  # drained: nothing twice


def test_one_push_of_many_objects_namespaces_and_minutes_counts_each_exactly(
    clocked: tuple[LiquidService, FakeClock], tenant: str
) -> None:
    """The push sends every object's reads in one script call; each lands in its own hashes."""
    svc, clock = clocked
    tracker = svc.access
    assert tracker is not None
    refs = {(ns, i): svc.put(tenant, ns, f"k{i}", b"v").ref for ns in ("left", "right") for i in range(40)}
    expected: dict[str, int] = {}
    minutes: dict[str, int] = {}
    for (ns, i), ref in refs.items():  # minute 12:00: i+1 reads each
        for _ in range(i + 1):
            tracker.note(ref)
        expected[f"{ref.key}/{ns}"] = i + 1
        minutes[f"{ref.key}/{ns}"] = 1
    clock.advance(seconds=60)
    for (ns, i), ref in refs.items():  # minute 12:01: one more read of the even ones
        if i % 2 == 0:
            tracker.note(ref)
            expected[f"{ref.key}/{ns}"] += 1
            minutes[f"{ref.key}/{ns}"] = 2
    assert tracker.push()
    per_ns = {ns: sum(i + 1 + (i % 2 == 0) for i in range(40)) for ns in ("left", "right")}
    assert {ns: sum(tracker.hourly(tenant, ns).values()) for ns in per_ns} == per_ns
    clock.advance(seconds=120)
    report = tracker.flush(svc.engine)
    assert report.read_events == 80 + 40 and report.hits == sum(expected.values())
    with svc.engine.connect() as conn:
        hits = conn.execute(
            text(
                "SELECT o.key || '/' || o.namespace AS k, a.hits FROM access_stats a"
                " JOIN objects o ON o.id = a.object_id WHERE a.tenant_id = :t"
            ),
            {"t": tenant},
        ).all()
        events = conn.execute(
            text(
                "SELECT key || '/' || namespace AS k, sum(count) AS n, count(*) AS e FROM events"
                " WHERE tenant_id = :t AND kind = 'object.read' GROUP BY 1"
            ),
            {"t": tenant},
        ).all()
    assert {r.k: r.hits for r in hits} == expected
    assert {r.k: r.n for r in events} == expected
    assert {r.k: r.e for r in events} == minutes


class _PushFailsAfter:
    """A Redis connection that drops while a push is in flight, after ``meanwhile`` ran (reads
    noted on other threads during the push)."""

    def __init__(self, meanwhile: Callable[[], None]) -> None:
        self.meanwhile = meanwhile

    def pipeline(self, transaction: bool = False) -> _PushFailsAfter:
        return self

    def sadd(self, *args: object) -> None: ...

    def execute_command(self, *args: object) -> None: ...

    def execute(self, raise_on_error: bool = True) -> list[object]:
        self.meanwhile()
        raise redis.ConnectionError("connection dropped mid-push")


def test_reads_kept_through_a_redis_outage_add_up_with_reads_noted_meanwhile(
    clocked: tuple[LiquidService, FakeClock], tenant: str
) -> None:
    svc, clock = clocked
    tracker = svc.access
    assert tracker is not None
    ref = svc.put(tenant, "ns", "k", b"v").ref

    def two_more_reads() -> None:
        clock.advance(seconds=10)
        tracker.note(ref)
        tracker.note(ref)

    for _ in range(3):
        tracker.note(ref)
    live, tracker.client = tracker.client, _PushFailsAfter(two_more_reads)  # type: ignore[assignment]
    try:
        assert not tracker.push()  # the 3 go back to memory, where the 2 already wait
    finally:
        tracker.client = live
    assert tracker.push()
    tracker.flush(svc.engine)
    row = _stats(svc, tenant)["k"]
    assert row.hits == 5
    assert row.score == pytest.approx(decay(3.0, 10, HALF_LIFE) + 2.0)


def test_reads_noted_on_many_threads_while_the_pusher_runs_are_all_counted(
    clocked: tuple[LiquidService, FakeClock], tenant: str
) -> None:
    """note() only appends to a queue the pusher drains: no read is lost in the hand-off."""
    import threading

    svc, _ = clocked
    tracker = svc.access
    assert tracker is not None
    refs = [svc.put(tenant, "ns", f"k{i}", b"v").ref for i in range(10)]
    tracker.close()
    tracker.start(interval=0.001)  # pushes all the time, while the readers note
    before = tracker.noted

    def reader(offset: int) -> None:
        for i in range(2000):
            tracker.note(refs[(i + offset) % len(refs)])

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tracker.noted - before == 8000
    tracker.flush(svc.engine)
    assert sum(row.hits for row in _stats(svc, tenant).values()) == 8000
    assert tracker.dropped == 0
