"""The activity line `liquid up` prints: moves, purges, writes and reads from the event log, the queue."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from liquid.service import LiquidService
from liquid.tiering.activity import Activity, activity
from liquid.tiering.journal import enqueue_move


def test_activity_counts_what_the_log_and_queue_say(service: LiquidService, tenant: str) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    refs = [service.put(tenant, "act", f"k{i}", b"z" * 1000).ref for i in range(3)]
    service.get(tenant, refs[0])
    found = service.fast.find(refs[1].tenant, refs[1].namespace, refs[1].key, refs[1].version)
    assert found is not None
    job = enqueue_move(service.engine, found.id, "cold", "cold", reason="test")
    assert job is not None
    try:
        seen = activity(
            service.engine, start, datetime.now(UTC) + timedelta(seconds=1), skipped=["no store for archive"]
        )
        assert seen.writes >= 3  # other tests may write in the same window; never fewer
        assert seen.waiting >= 1
        assert seen.skipped == Counter({"no store for archive": 1})
        line = seen.line()
        assert "writes" in line and "queue:" in line and "skipped: 1 (no store for archive)" in line
        assert not seen.quiet
    finally:
        with service.engine.begin() as conn:
            conn.execute(text("DELETE FROM move_journal WHERE id = :i"), {"i": job})


def test_a_quiet_minute_prints_nothing_and_moves_show_route_and_bytes() -> None:
    t = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert Activity(t - timedelta(minutes=1), t).quiet
    busy = Activity(t - timedelta(minutes=1), t, moves={("warm", "cold"): (2, 3 * 1024 * 1024)}, purges=1)
    assert busy.line() == (
        "12:00:00  last 1m: 2 moves (warm→cold 2 · 3MiB), 1 purge, 0 writes, 0 reads;"
        " queue: 0 waiting, 0 in flight"
    )
