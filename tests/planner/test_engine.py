"""The tiering engine's passes over a small in-memory catalog: what a cycle reads, deadlines, budgets.

The catalog here is a dict of rows (the engine's sources are protocols); the real catalog,
Redis and the daemon are exercised in tests/core (test_daemon, test_hot_budget).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pytest

from liquid.config import Settings
from liquid.policy.loader import load_policy_text
from liquid.policy.models import PolicySet
from liquid.tiering.apply import ApplyReport
from liquid.tiering.engine import TieringEngine
from liquid.tiering.plan import Plan
from liquid.tiering.planner import Planner
from liquid.tiering.rows import ColumnBatch, Row
from liquid.tiering.state import BLOCK, Columns
from tests.fakes import FakeClock
from tests.planner.test_planner import NOW, budget, row

POLICY = """
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: docs}
spec:
  rules:
    - {tier: hot, promoteAbove: 10/h, demoteBelow: 5/h}
    - {tier: warm, demoteAfter: 1h}
    - {tier: cold}
  minResidency: 0s
"""


class Catalog:
    """Rows by id, a change feed, read misses, and an applier that moves objects at once."""

    def __init__(self, clock: FakeClock, policies: PolicySet) -> None:
        self.clock = clock
        self.objects: dict[int, Row] = {}
        self.feed: set[int] = set()
        self.misses: set[int] = set()
        self.policies = policies
        self.policy_version = 1
        self.applied: list[Plan] = []
        self.skip_tier: str | None = None

    def add(self, r: Row) -> None:
        self.objects[r.object_id] = r
        self.feed.add(r.object_id)

    # RowSource
    def scan_columns(self, now: datetime, policies: object = None) -> Iterator[ColumnBatch]:
        ids = sorted(self.objects)
        yield ColumnBatch.of_rows([self._fresh(i) for i in ids])

    def columns(self, ids: Sequence[int], now: datetime, policies: object = None) -> ColumnBatch:
        return ColumnBatch.of_rows(self.rows(ids, now))

    def rows(self, ids: Sequence[int], now: datetime) -> list[Row]:
        return [self._fresh(i) for i in ids if i in self.objects]

    def predecessors(self, rows: Sequence[Row], now: datetime) -> list[Row]:
        return []

    def _fresh(self, i: int) -> Row:
        r = self.objects[i]
        return Row(
            object_id=r.object_id, version=r.version, facts=r.facts, home_store=r.home_store, stored_size=1
        )

    # feeds and policies
    def changed(self) -> list[int]:
        out, self.feed = sorted(self.feed), set()
        return out

    def missed(self) -> list[int]:
        out, self.misses = sorted(self.misses), set()
        return out

    def version(self) -> int | None:
        return self.policy_version

    def current(self) -> tuple[PolicySet, int | None]:
        return self.policies, self.policy_version

    # Applier
    def apply(self, plan: Plan) -> ApplyReport:
        report = ApplyReport()
        for c in plan.changes:
            if c.action == "move" and c.to_tier is not None:
                if c.to_tier == self.skip_tier:
                    report.skipped.append((c.object_id, c.uri, "no store"))
                    continue
                r = self.objects[c.object_id]
                facts = replace(r.facts, home_tier=c.to_tier, home_since=self.clock())
                self.objects[c.object_id] = replace(r, facts=facts)
            elif c.action == "expire":
                self.objects.pop(c.object_id, None)
        self.applied.append(plan)
        return report


def make(policy: str = POLICY, settings: Settings | None = None) -> tuple[TieringEngine, Catalog, FakeClock]:
    clock = FakeClock(NOW)
    cat = Catalog(clock, load_policy_text(policy))
    engine = TieringEngine(
        Planner(settings or Settings()), cat, cat, policies=cat, feed=cat, misses=cat, clock=clock
    )
    return engine, cat, clock


def test_a_cycle_reads_only_what_changed_or_came_due() -> None:
    engine, cat, clock = make()
    for i in range(1, 1001):
        cat.add(row(i, rate=1.0, idle=timedelta(minutes=1)))  # warm, idle for 1 min: cold in 59 min
    first = engine.cycle()
    assert first is not None and first.kind == "rebuild" and first.evaluated == 1000
    for i in (5, 17, 999):
        cat.feed.add(i)
    second = engine.cycle()
    assert second is not None and second.kind == "cycle" and second.evaluated == 3
    assert engine.cycle().evaluated == 0  # type: ignore[union-attr]
    # An hour later every object's demoteAfter deadline has come: they are planned by the clock alone.
    clock.advance(hours=1)
    due = engine.cycle()
    assert due is not None and due.evaluated == 1000
    assert due.count("move") == (1000, 100 * 1000)
    assert engine.state is not None and math.isinf(engine.next_due())


def test_objects_that_leave_the_catalog_are_forgotten_and_a_new_policy_rebuilds() -> None:
    engine, cat, _ = make()
    for i in range(1, 11):
        cat.add(row(i, rate=1.0))
    engine.cycle()
    del cat.objects[3]
    cat.feed.add(3)
    plan = engine.cycle()
    assert plan is not None and plan.objects == 9 and plan.bytes_after["warm"] == 900
    cat.policy_version = 2
    assert engine.cycle().kind == "rebuild"  # type: ignore[union-attr]


def test_a_warm_budget_pushes_the_least_valuable_cold_and_brings_it_back_when_room_appears() -> None:
    capped = POLICY + budget(300, "warm")
    engine, cat, _ = make(capped)
    for i, rate in ((1, 4.0), (2, 3.0), (3, 2.0), (4, 1.0)):
        cat.add(row(i, rate=rate, size=100))
    plan = engine.cycle()
    assert plan is not None
    assert [(c.object_id, c.action, c.to_tier) for c in plan.changes] == [(4, "move", "cold")]
    assert "over budget" in plan.changes[0].reason
    # Object 1 is deleted: room for 100 bytes in warm, and 4 (waiting for warm) comes back.
    del cat.objects[1]
    cat.feed.add(1)
    back = engine.cycle()
    assert back is not None
    assert [(c.object_id, c.action, c.from_tier, c.to_tier) for c in back.changes] == [
        (4, "move", "cold", "warm")
    ]
    use = next(u for u in back.budgets if u.tier == "warm")
    assert use.ok and use.bytes_after == 300


def test_a_member_displaced_by_an_admission_is_evicted_not_refilled() -> None:
    capped = POLICY + budget(500, "hot")
    engine, cat, _ = make(capped)
    cat.add(row(1, rate=20.0, size=300))
    engine.cycle()
    assert engine.state is not None and 1 in engine.state.hot.members
    # Both read from their home: 1's copy had vanished; 2 outranks it and needs its room.
    cat.add(row(2, rate=500.0, size=300))
    engine.cycle()
    cat.misses |= {1, 2}
    plan = engine.admit()
    assert plan is not None
    actions = {(c.object_id, c.action) for c in plan.changes}
    assert (1, "hot-refill") not in actions
    assert engine.state.hot.members.keys() == {2}


@pytest.mark.parametrize(("capped", "evicted"), [(False, [2, 9]), (True, [9])])
def test_a_rebuild_keeps_wanted_copies_already_in_redis_and_evicts_the_rest(
    capped: bool, evicted: list[int]
) -> None:
    engine, cat, _ = make(POLICY + budget(10_000, "hot") if capped else POLICY)
    cat.add(row(1, rate=50.0))  # wants a copy
    cat.add(row(2, rate=0.0))  # does not: kept while a hot Budget has room (keep_while_room)
    residents = {1: ("acme/ns/k1@1", 162), 2: ("acme/ns/k2@1", 162), 9: ("acme/ns/gone@1", 162)}
    engine.hot = type("Ledger", (), {"residents": lambda self: residents})()
    plan = engine.cycle()
    assert plan is not None and plan.kind == "rebuild"
    got = sorted(c.object_id for c in plan.changes if c.action == "hot-evict")
    assert got == evicted  # the copy of the object that is gone always goes
    assert not [c for c in plan.changes if c.action in ("hot-admit", "hot-refill")]  # 1 stays as is
    assert plan.bytes_before["hot"] == 3 * 162


def test_a_move_with_no_store_for_its_tier_is_not_assumed_and_not_retried_every_cycle() -> None:
    engine, cat, _ = make()
    cat.skip_tier = "cold"
    cat.add(row(1, rate=0.0, idle=timedelta(hours=3)))
    plan = engine.cycle()
    assert plan is not None and plan.count("move") == (1, 100)
    assert engine.last_report is not None and engine.last_report.skipped
    assert engine.state is not None and engine.state.tier_bytes()["warm"] == 100
    assert engine.cycle().evaluated == 0  # type: ignore[union-attr]


def test_columns_keep_ids_sorted_find_deadlines_by_block_and_compact() -> None:
    cols = Columns()
    ids = np.arange(1, 3 * BLOCK, dtype=np.int64) * 2  # even ids
    n = len(ids)
    cols.put(
        ids,
        np.ones(n, np.int8),
        np.full(n, 10),
        np.zeros(n, np.int32),
        np.zeros(n, bool),
        np.full(n, math.inf),
    )
    late = np.array([7, 3 * BLOCK + 1], dtype=np.int64)  # written after newer ids were seen
    cols.put(
        late,
        np.full(2, 2, np.int8),
        np.full(2, 5),
        np.zeros(2, np.int32),
        np.zeros(2, bool),
        np.array([50.0, 10.0]),
    )
    assert len(cols) == n + 2 and (np.diff(cols.ids[: cols.n]) > 0).all()
    assert list(cols.find(np.array([7, 8, 9], dtype=np.int64)) >= 0) == [True, True, False]
    assert cols.next_due() == 10.0
    assert cols.take_due(20.0).tolist() == [3 * BLOCK + 1]
    assert cols.take_due(20.0).tolist() == []  # taken: the planner sets the next deadline
    assert cols.take_due(100.0).tolist() == [7]
    cols.drop(ids[: n - 10])
    assert len(cols) == 12 and cols.n < n  # compacted once most slots were dead
    assert cols.find_many([7, int(ids[-1]), int(ids[0])]) == {7, int(ids[-1])}


@pytest.mark.parametrize("n", [1, 5000])
def test_state_memory_is_a_few_bytes_per_object(n: int) -> None:
    engine, cat, _ = make()
    for i in range(1, n + 1):
        cat.add(row(i))
    engine.cycle()
    assert engine.state is not None
    assert engine.state.memory_bytes <= 2 * 30 * max(n, 1024) + 65536


def test_a_namespace_budget_caps_its_namespace_only_and_reports_its_use() -> None:
    capped = (
        POLICY
        + "---\napiVersion: liquid/v1\nkind: Budget\nmetadata: {name: logs}\n"
        + "spec:\n  tenant: acme\n  namespace: logs\n  tiers:\n    warm: {maxBytes: 200}\n"
    )
    engine, cat, _ = make(capped)
    for i, rate in ((1, 4.0), (2, 3.0), (3, 2.0)):
        r = row(i, rate=rate, size=100)
        cat.add(replace(r, facts=replace(r.facts, namespace="logs", key=f"l{i}")))
    for i in (4, 5, 6):
        cat.add(row(i, rate=0.5, size=100))  # namespace "ns": no cap of its own, lower ranked
    plan = engine.cycle()
    assert plan is not None
    # The least valuable logs object goes cold; ns objects, though ranked lower, stay.
    assert [(c.object_id, c.action, c.to_tier) for c in plan.changes] == [(3, "move", "cold")]
    use = next(u for u in plan.budgets if u.budget == "logs")
    assert (use.tenant, use.namespace, use.tier) == ("acme", "logs", "warm")
    assert use.ok and use.bytes_after == 200 and use.limit_bytes == 200
    assert "logs (acme/logs) warm" in plan.render()
