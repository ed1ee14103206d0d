"""The data layer's own logic: formatting, filters, hit ratios between samples."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from dashboard.data import DashboardError, Filters, HitRatioHistory, TierReads, format_bytes, format_cost

T0 = datetime(2031, 1, 1, tzinfo=UTC)


def test_units() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(1536) == "1.50 KiB"
    assert format_bytes(5 * 1024**3) == "5.00 GiB"
    assert format_cost(12.345) == "$12.35/month"
    assert format_cost(0.0000537) == "$0.000054/month"


def test_a_range_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(DashboardError, match="ends"):
        Filters(None, date(2031, 1, 2), date(2031, 1, 1))


def test_hit_ratios_over_time_are_of_the_reads_between_samples() -> None:
    now = [T0]
    history = HitRatioHistory(clock=lambda: now[0])
    assert history.add(TierReads({"hot": 10, "warm": 10}, {"hot": 100, "warm": 900})) == []
    now[0] += timedelta(minutes=1)
    (point,) = history.add(TierReads({"hot": 13, "warm": 11}, {"hot": 400, "warm": 1000}))
    assert point == {"at": now[0].isoformat(), "objects": 0.75, "bytes": 0.75, "reads": 4}
    # No reads in between: no point. A restarted API (counters went down) counts from zero.
    assert len(history.add(TierReads({"hot": 13, "warm": 11}, {"hot": 400, "warm": 1000}))) == 1
    points = history.add(TierReads({"hot": 0, "cold": 2}, {"hot": 0, "cold": 50}))
    assert points[-1]["objects"] == 0.0 and points[-1]["reads"] == 2
    assert TierReads({}, {}).object_hit_ratio is None
