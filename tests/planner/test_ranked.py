"""Ranked tiers under several caps (global and per tenant, bytes and money), and bounded memory."""

from __future__ import annotations

import math

from liquid.tiering.ranked import PINNED, Cap, RankedTier


def test_a_tenant_cap_holds_while_the_global_cap_has_room() -> None:
    hot = RankedTier([Cap("acme", 500, tenant="acme"), Cap("all", 10_000)], hysteresis=1.0)
    hot.offer(1, 300, rank=5.0, tenant="acme")
    hot.offer(2, 300, rank=4.0, tenant="acme")  # acme would be at 600 > 500
    hot.offer(3, 300, rank=1.0, tenant="beta")  # beta has no cap of its own
    assert sorted(hot.settle()[0]) == [1, 3]
    assert hot.tenant_bytes == {"acme": 300, "beta": 300}
    # A better acme object displaces acme's own member, never beta's.
    hot.offer(4, 300, rank=9.0, tenant="acme")
    assert hot.settle() == ([4], [1])
    assert set(hot.members) == {3, 4}


def test_victims_for_a_global_cap_come_from_any_tenant() -> None:
    hot = RankedTier([Cap("acme", 1000, tenant="acme"), Cap("all", 600)], hysteresis=1.0)
    hot.offer(1, 300, rank=1.0, tenant="beta")
    hot.offer(2, 300, rank=2.0, tenant="acme")
    hot.settle()
    hot.offer(3, 300, rank=3.0, tenant="acme")
    assert hot.settle() == ([3], [1])  # beta's lowest-ranked member goes for the global cap


def test_a_cost_cap_weighs_each_byte_by_its_tenants_price() -> None:
    # $1 of hot memory; acme pays 2x the default price per byte, so it fits half as many bytes.
    gib = 1024**3
    cost = Cap("cost", 1.0, factors={"acme": 2.0 / gib}, default_factor=1.0 / gib, unit="cost")
    hot = RankedTier([cost], hysteresis=1.0)
    hot.offer(1, gib // 2, rank=5.0, tenant="acme")  # $1.00: full
    hot.offer(2, gib // 4, rank=1.0, tenant="beta")  # $0.25: does not fit and cannot displace
    assert hot.settle() == ([1], [])
    assert math.isclose(cost.used, 1.0)
    hot.offer(3, gib // 2, rank=9.0, tenant="beta")  # $0.50: displaces acme's $1.00...
    assert hot.settle() == ([3, 2], [1])  # ...and parked 2 ($0.25) takes the room left
    assert math.isclose(cost.used, 0.75)
    assert hot.over() == []


def test_trim_evicts_the_lowest_until_new_caps_hold_but_never_pinned_members() -> None:
    warm = RankedTier([Cap("cap", 10_000)], hysteresis=1.25)
    for oid, rank in ((1, 1.0), (2, 2.0), (3, 3.0)):
        warm.seat(oid, 100, rank)
    warm.seat(4, 100, PINNED)
    warm.set_caps([Cap("cap", 250)])
    assert warm.trim() == [1, 2]
    assert set(warm.members) == {3, 4}
    warm.set_caps([Cap("cap", 50)])
    assert warm.trim() == [3]
    assert set(warm.members) == {4} and [c.name for c in warm.over()] == ["cap"]  # reported, not moved


def test_drain_reports_membership_changes_since_the_last_drain() -> None:
    hot = RankedTier([Cap("cap", 200)], hysteresis=1.0)
    hot.offer(1, 100, rank=1.0, label="liquid://t/n/a@1")
    hot.settle()
    assert hot.drain() == ([1], [])
    hot.offer(2, 150, rank=2.0)
    hot.settle()
    assert hot.drain() == ([2], [1])
    assert hot.label(1) == "liquid://t/n/a@1"  # still named for the plan that evicted it
    hot.offer(3, 10, rank=0.5)
    hot.settle()
    hot.withdraw(3)  # in and out between drains: neither
    assert hot.drain() == ([], [])


def test_memory_stays_bounded_when_members_are_re_ranked_every_cycle() -> None:
    hot = RankedTier([Cap("cap", 100 * 50)], hysteresis=1.25)
    for cycle in range(400):
        for oid in range(200):
            hot.offer(oid, 50, rank=cycle + oid / 1000)
        hot.settle()
        hot.drain()
    assert len(hot.members) == 100
    assert all(len(h) <= 2 * len(hot.members) + 1024 for h in hot._heaps.values())
    assert len(hot._waiting) <= 2 * 200 + 1024
    # Objects that stop being offered are forgotten entirely.
    for oid in range(200):
        hot.withdraw(oid)
    hot.drain()
    hot.drain()
    assert not hot._rank and not hot._size and not hot._tenant and not hot._label


def test_parked_offers_are_bounded_and_the_best_are_kept() -> None:
    warm = RankedTier([Cap("cap", 100)], hysteresis=1.0)
    warm.max_parked = 50
    warm.offer(0, 100, rank=1000.0)
    warm.settle()
    for oid in range(1, 1001):  # none fits, none outranks the member
        warm.offer(oid, 100, rank=float(oid))
        warm.settle()
    assert len(warm._parked) <= 2 * warm.max_parked
    assert len(warm._rank) <= 2 * warm.max_parked + 1  # the dropped ones are forgotten
    warm.withdraw(0)  # room for one: the best parked offer takes it
    assert warm.settle()[0] == [1000]


def test_a_namespace_cap_limits_that_namespace_and_takes_room_only_from_it() -> None:
    warm = RankedTier(
        [Cap("acme-logs", 500, tenant="acme", namespace="logs"), Cap("acme", 1000, tenant="acme")],
        hysteresis=1.0,
    )
    warm.offer(1, 300, rank=5.0, tenant="acme", namespace="logs")
    warm.offer(2, 300, rank=4.0, tenant="acme", namespace="logs")  # logs would be at 600 > 500
    warm.offer(3, 300, rank=1.0, tenant="acme", namespace="docs")  # docs: only the tenant's cap
    assert sorted(warm.settle()[0]) == [1, 3]
    assert warm.namespace_bytes == {("acme", "logs"): 300}
    # A better logs object displaces a logs member, never the lower-ranked docs one.
    warm.offer(4, 300, rank=9.0, tenant="acme", namespace="logs")
    assert warm.settle() == ([4], [1])
    assert set(warm.members) == {3, 4}
    # The tenant cap still binds across namespaces: a docs object displaces the lowest acme member.
    warm.offer(5, 500, rank=6.0, tenant="acme", namespace="docs")
    joined, left = warm.settle()
    assert joined == [5] and left == [3]
    assert all(c.used <= c.limit for c in warm.caps)
    # Another tenant's "logs" is not acme's.
    warm.offer(6, 400, rank=0.5, tenant="beta", namespace="logs")
    assert 6 in warm.settle()[0]


def test_a_hot_copy_a_better_offer_displaced_comes_back_only_when_offered_again() -> None:
    """The room a large member leaves to a smaller offer is not refilled with a copy just evicted
    (each fill reads the object's home, and it would be the next to go); a capped durable tier
    takes it back, as its full plan would."""
    for readmit in (True, False):
        tier = RankedTier([Cap("all", 100)], hysteresis=1.0, readmit=readmit)
        tier.offer(1, 30, rank=1.0)
        tier.offer(2, 70, rank=2.0)
        assert sorted(tier.settle()[0]) == [1, 2]
        tier.offer(3, 40, rank=3.0)  # 1 and 2 both make way; 60 bytes are left over
        if readmit:
            assert tier.settle() == ([3], [2])  # 1 took 30 of them back: it never left
            assert set(tier.members) == {1, 3} and tier.waiting(2)
            continue
        assert tier.settle() == ([3], [1, 2])
        assert set(tier.members) == {3} and not tier.knows(1) and not tier.knows(2)
        tier.offer(4, 10, rank=4.0)
        assert tier.settle() == ([4], [])  # room came, but an evicted copy is not offered
        tier.offer(1, 30, rank=5.0)  # read again: offered, it takes the room as any offer does
        assert tier.settle() == ([1], [])


def test_a_hot_copy_trim_evicted_still_waits_for_room_to_come_back() -> None:
    """Room taken away (a smaller cap, a larger read window), not a better offer: the copies it
    evicted come back when the room does, without a new read."""
    hot = RankedTier([Cap("all", 100)], hysteresis=1.0, readmit=False)
    for oid, rank in ((1, 1.0), (2, 2.0)):
        hot.offer(oid, 50, rank=rank)
    hot.settle()
    hot.set_caps([Cap("all", 50)])
    assert hot.trim() == [1] and hot.waiting(1)
    hot.set_caps([Cap("all", 100)])
    assert hot.settle() == ([1], [])
