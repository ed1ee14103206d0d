"""Two daemons split the partitions of objects by lease rows (liquid.tiering.shards), on the real catalog."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from liquid.catalog import partitions
from liquid.service import LiquidService
from liquid.tiering.shards import PartitionShards

ALL = frozenset(partitions.bucket_names())


@pytest.fixture
def engine(service: LiquidService) -> Engine:
    return service.engine


@pytest.fixture
def prefix(engine: Engine) -> Iterator[str]:
    p = f"test-{uuid.uuid4().hex[:10]}:"
    yield p
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM daemon_leases WHERE name LIKE :p"), {"p": p + "%"})


def die(engine: Engine, prefix: str, holder: str) -> None:
    """What a daemon's death does once a lease's length has passed: its rows are expired."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE daemon_leases SET expires_at = now() - interval '1 second'"
                " WHERE name LIKE :p AND holder = :h"
            ),
            {"p": prefix + "%", "h": holder},
        )


def test_two_daemons_split_the_partitions_without_overlap(engine: Engine, prefix: str) -> None:
    a, b = PartitionShards(engine, "a", prefix=prefix), PartitionShards(engine, "b", prefix=prefix)
    alone = a.claim()
    assert alone.held == ALL and alone.taken == ALL and alone.members == 1
    joined = b.claim()  # a holds everything: b waits for a to give its share back
    assert joined.members == 2 and joined.held == frozenset()
    shrunk = a.claim()
    assert len(shrunk.held) == 8 and len(shrunk.dropped) == 8 and not shrunk.taken
    grown = b.claim()
    assert grown.held == shrunk.dropped and grown.taken == grown.held
    assert a.held.isdisjoint(b.held) and a.held | b.held == ALL
    # The database agrees with both, and further rounds change nothing.
    assert a.holders() == {**dict.fromkeys(a.held, "a"), **dict.fromkeys(b.held, "b")}
    again_a, again_b = a.claim(), b.claim()
    assert (again_a.held, again_b.held) == (a.held, b.held)
    assert not again_a.taken and not again_b.taken and not again_a.dropped and not again_b.dropped


def test_a_dead_daemons_partitions_are_taken_over(engine: Engine, prefix: str) -> None:
    a, b = PartitionShards(engine, "a", prefix=prefix), PartitionShards(engine, "b", prefix=prefix)
    a.claim(), b.claim(), a.claim(), b.claim()
    lost = b.held
    assert lost and a.held | lost == ALL
    die(engine, prefix, "b")
    took = a.claim()
    assert took.members == 1 and took.held == ALL and took.taken == lost
    # b comes back: it learns it holds nothing, then gets a share again as a gives it back.
    back = b.claim()
    assert back.held == frozenset() and back.dropped == lost and back.members == 2
    a.claim()
    assert len(b.claim().held) == 8
    assert a.held.isdisjoint(b.held) and a.held | b.held == ALL


def test_a_clean_stop_hands_everything_over_at_once(engine: Engine, prefix: str) -> None:
    a, b = PartitionShards(engine, "a", prefix=prefix), PartitionShards(engine, "b", prefix=prefix)
    a.claim(), b.claim(), a.claim(), b.claim()
    b.release()
    assert b.held == frozenset()
    assert a.claim().held == ALL
    assert set(a.holders().values()) == {"a"}


def test_three_daemons_take_fair_shares(engine: Engine, prefix: str) -> None:
    daemons = [PartitionShards(engine, h, prefix=prefix) for h in "abc"]
    for _ in range(3):
        for d in daemons:
            d.claim()
    sizes = sorted(len(d.held) for d in daemons)
    assert sizes == [4, 6, 6]  # ceil(16 / 3) each, the last one what is left
    held = [d.held for d in daemons]
    assert all(x.isdisjoint(y) for i, x in enumerate(held) for y in held[i + 1 :])


def test_a_daemon_cut_off_from_the_catalog_stops_counting_its_partitions(engine: Engine, prefix: str) -> None:
    now = [100.0]
    a = PartitionShards(engine, "a", prefix=prefix, ttl=30, monotonic=lambda: now[0])
    assert a.claim().held == ALL
    now[0] += 29
    assert a.held == ALL
    now[0] += 2  # a lease's length since its last round: the others may take over now
    assert a.held == frozenset()


def test_a_lease_must_have_a_length(engine: Engine) -> None:
    with pytest.raises(ValueError, match="more than 0 seconds"):
        PartitionShards(engine, "a", ttl=0)
