"""The leader lease (liquid.tiering.leader) on the real catalog: one holder, expiry, restarts."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine, text

from liquid.service import LiquidService
from liquid.tiering.leader import LeaderLease


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(service: LiquidService) -> Engine:
    return service.engine


@pytest.fixture
def name() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def expire(engine: Engine, name: str) -> None:
    """What the passing of the lease's length does to the row."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE daemon_leases SET expires_at = now() - interval '1 second' WHERE name = :n"),
            {"n": name},
        )


def test_one_holder_at_a_time_until_it_releases(engine: Engine, name: str) -> None:
    a, b = LeaderLease(engine, "a", name=name), LeaderLease(engine, "b", name=name)
    try:
        first = a.acquire()
        assert first.held and first.fresh  # a new leader rebuilds
        assert not b.acquire().held
        again = a.acquire()
        assert again.held and not again.fresh  # a renewal keeps the state
        assert b.current_holder() == "a"
        a.release()
        assert not a.held and a.current_holder() is None
        taken = b.acquire()
        assert taken.held and taken.fresh
        assert not a.acquire().held
    finally:
        a.release()
        b.release()


def test_an_expired_lease_changes_hands_and_the_old_holder_learns_it(engine: Engine, name: str) -> None:
    a, b = LeaderLease(engine, "a", name=name), LeaderLease(engine, "b", name=name)
    try:
        assert a.acquire().held
        expire(engine, name)  # a hung: it did not renew in time
        assert b.acquire().held
        assert not a.renew() and not a.held  # its next renewal finds the row taken
        assert not a.acquire().held
        b.release()
        back = a.acquire()
        assert back.held and back.fresh  # b may have drained the change feed: rebuild
    finally:
        a.release()
        b.release()


def test_the_holder_that_renews_after_its_own_expiry_keeps_its_state(engine: Engine, name: str) -> None:
    a = LeaderLease(engine, "a", name=name)
    try:
        assert a.acquire().held
        expire(engine, name)  # late, but nobody else took it: nobody else planned
        late = a.acquire()
        assert late.held and not late.fresh
    finally:
        a.release()


def test_a_server_restart_tells_the_leader_to_rebuild(engine: Engine, name: str) -> None:
    a = LeaderLease(engine, "a", name=name)
    try:
        assert a.acquire().held
        # What a crash-restart looks like from here: another pg_postmaster_start_time().
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE daemon_leases SET server_started = '2000-01-01' WHERE name = :n"), {"n": name}
            )
        a.renew()  # the background renewal notices...
        again = a.acquire()
        assert again.held and again.fresh  # ...and the next job rebuilds
        assert not a.acquire().fresh
    finally:
        a.release()


def test_a_holder_cut_off_from_the_catalog_steps_down_after_one_lease(engine: Engine, name: str) -> None:
    ticks = Ticks()
    a = LeaderLease(engine, "a", name=name, ttl=30, monotonic=ticks)
    try:
        assert a.acquire().held
        ticks.now += 29
        assert a.held
        ticks.now += 2  # no renewal for a whole lease: the others may take it by now
        assert not a.held
    finally:
        a.release()


def test_a_lease_must_have_a_length(engine: Engine) -> None:
    with pytest.raises(ValueError, match="more than 0 seconds"):
        LeaderLease(engine, "a", ttl=0)
