"""The bulkhead and circuit breaker around a backend (liquid.stores.guard): what each outcome does."""

from __future__ import annotations

import time

import pytest

from liquid.errors import ObjectNotFound, StoreError, StoreUnavailable
from liquid.stores.guard import Guard


def fail(guard: Guard, exc: BaseException) -> None:
    with pytest.raises(type(exc)), guard.slot():
        raise exc


def test_outages_trip_the_circuit_and_other_errors_and_successes_do_not_count() -> None:
    guard = Guard("store:x", what="the x tier", failures=3, reset=60.0)
    fail(guard, StoreError("down"))
    fail(guard, StoreError("down"))
    assert (guard.breaker.fail_counter, guard.state) == (2, "closed")
    with guard.slot():
        pass  # a success between failures starts the count over: they must be consecutive
    assert guard.breaker.fail_counter == 0
    fail(guard, StoreError("down"))
    fail(guard, ObjectNotFound("no such object"))  # the backend answered: it is healthy
    assert guard.breaker.fail_counter == 0
    for _ in range(3):
        fail(guard, StoreError("down"))  # the third trips it, and is still raised as itself
    assert guard.state == "open" and guard.is_open
    with pytest.raises(StoreUnavailable, match=r"the x tier is unavailable .*circuit is open"), guard.slot():
        pytest.fail("an open circuit runs nothing")
    assert guard._slots.acquire(blocking=False)  # every slot was given back
    guard._slots.release()


def test_after_its_reset_one_trial_decides_whether_the_circuit_closes() -> None:
    guard = Guard("store:y", failures=1, reset=0.05)
    fail(guard, StoreError("down"))
    assert guard.is_open
    time.sleep(0.1)  # past the reset: the next call is a trial
    fail(guard, StoreError("still down"))
    assert guard.state == "open"
    time.sleep(0.1)
    with guard.slot():
        pass
    assert (guard.state, guard.breaker.fail_counter) == ("closed", 0)


def test_call_counts_and_refuses_as_the_slot_does() -> None:
    # call() (what guarded stores and the hot read use) counts and refuses as slot() does.
    guard = Guard("store:z", what="the z tier", failures=2, reset=60.0, concurrency=1)

    def raising(exc: BaseException) -> None:
        raise exc

    with pytest.raises(StoreError):
        guard.call(raising, StoreError("down"))
    assert guard.call(lambda a, b=0: a + b, 1, b=2) == 3  # a success starts the count over
    assert guard.breaker.fail_counter == 0
    with pytest.raises(ObjectNotFound):
        guard.call(raising, ObjectNotFound("no such object"))  # the backend answered
    assert guard.breaker.fail_counter == 0
    for _ in range(2):
        with pytest.raises(StoreError):
            guard.call(raising, StoreError("down"))
    assert guard.state == "open"
    ran: list[int] = []
    with pytest.raises(StoreUnavailable, match=r"the z tier is unavailable .*circuit is open"):
        guard.call(ran.append, 1)
    assert ran == []
    assert guard._slots.acquire(blocking=False)  # the one slot was given back every time
    # Every slot taken: the next call fails at once instead of queueing behind it.
    held = Guard("store:w", concurrency=1, queue_wait=0.0)
    with held.slot(), pytest.raises(StoreUnavailable, match="all 1 connections are busy"):
        held.call(ran.append, 2)
    assert ran == []
