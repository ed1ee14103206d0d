"""The tiering daemon's cycle, leadership and restore-on-access, on real servers with a fake clock."""

from __future__ import annotations

import os
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from daemon.tiering import TieringDaemon
from liquid.bootstrap import Runtime
from liquid.policy.store import apply_policies
from liquid.service import LiquidService
from tests.fakes import FakeClock

from .conftest import ServiceFactory

T0 = datetime(2032, 1, 1, tzinfo=UTC)


def policy(tenant: str) -> str:
    return f"""
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {{name: d-{tenant}}}
spec:
  priority: 1000
  selector: {{tenants: [{tenant}]}}
  restoreOnAccess: true
  rules:
    - tier: warm
      demoteAfter: 1h
    - tier: cold
  expireAfter: 10d
"""


@pytest.fixture
def clocked(make_service: ServiceFactory, tenant: str) -> tuple[LiquidService, FakeClock]:
    svc = make_service(mover={"grace_period": 0, "backoff": 0})
    clock = FakeClock(T0)
    svc.clock = clock
    assert svc.access is not None
    svc.access.clock = clock
    apply_policies(svc.engine, {"p.yaml": policy(tenant)}, actor="test", clock=clock)
    return svc, clock


def daemon(svc: LiquidService, clock: FakeClock, name: str = "d1") -> TieringDaemon:
    return TieringDaemon(Runtime(service=svc, urls={}), clock=clock, worker_id=name)


def test_run_once_moves_idle_objects_cold_then_expires_them(
    clocked: tuple[LiquidService, FakeClock], tenant: str
) -> None:
    svc, clock = clocked
    idle = svc.put(tenant, "ns", "idle", os.urandom(200_000))
    busy = svc.put(tenant, "ns", "busy", os.urandom(200_000))
    clock.now = T0 + timedelta(minutes=90)
    svc.get(tenant, busy.ref)  # read 0 min ago at planning time
    d = daemon(svc, clock)
    summary = d.run_once()
    d.resign()
    assert summary.applied is not None and summary.applied.moves_queued >= 1
    assert svc.head(tenant, idle.ref).home_tier == "cold"
    assert svc.head(tenant, busy.ref).home_tier == "warm"
    assert svc.get(tenant, idle.ref) == svc.get(tenant, idle.ref)  # readable, verified, from cold

    r = busy.ref
    assert svc.fill_hot(r, svc.fast.find(r.tenant, r.namespace, r.key, r.version).id)
    assert svc.open(tenant, r).source == "hot"  # a copy: expiry must not leave it served
    clock.now = T0 + timedelta(days=11)
    d.run_once(move=False)  # tombstoned; the mover has not purged the bytes yet
    d.resign()
    from liquid.errors import ObjectGone

    for info in (idle, busy):
        with pytest.raises(ObjectGone):
            svc.get(tenant, info.ref)


def test_restore_on_access_promotes_a_cold_object_after_the_read(
    clocked: tuple[LiquidService, FakeClock], tenant: str
) -> None:
    svc, clock = clocked
    info = svc.put(tenant, "ns", "doc", os.urandom(200_000))
    clock.now = T0 + timedelta(hours=2)
    d = daemon(svc, clock)
    d.run_once()
    assert svc.head(tenant, info.ref).home_tier == "cold"
    clock.now = T0 + timedelta(hours=3)
    reader = svc.open(tenant, info.ref)
    assert reader.source == "cold"  # the read itself is served straight from cold
    reader.read()
    # The flush puts the read object in the change feed; the next cycle plans it alone.
    summary = d.run_once()
    d.resign()
    assert summary.plan is not None and summary.plan.kind == "cycle" and summary.plan.evaluated == 1
    assert svc.head(tenant, info.ref).home_tier == "warm"


def test_only_one_daemon_leads(clocked: tuple[LiquidService, FakeClock]) -> None:
    svc, clock = clocked
    a, b = daemon(svc, clock, "a"), daemon(svc, clock, "b")
    try:
        assert a.try_lead() is True
        assert b.try_lead() is False
        assert b.job_cycle() is None  # followers do not plan
        assert b.job_gc() == {}  # nor collect
        assert "scanned" in a.job_gc()
        a.resign()
        assert b.try_lead() is True
        assert a.try_lead() is False
    finally:
        a.resign()
        b.resign()


def test_scheduled_daemon_runs_its_jobs_and_stops_on_request(
    clocked: tuple[LiquidService, FakeClock], tenant: str
) -> None:
    svc, clock = clocked
    svc.settings.daemon.plan_interval = 0.2
    svc.settings.daemon.move_interval = 0.2
    svc.put(tenant, "ns", "x", os.urandom(100_000))
    clock.now = T0 + timedelta(hours=2)
    d = daemon(svc, clock)
    done = threading.Event()
    d.start()
    try:
        for _ in range(100):
            if d.cycles >= 1 and d.mover.totals:
                done.set()
                break
            threading.Event().wait(0.1)
    finally:
        d.stop()
    assert done.is_set(), f"daemon did not cycle: {d!r}"
    assert not d.is_leader


def test_the_daemon_and_the_placement_benchmark_drive_the_same_engine(
    clocked: tuple[LiquidService, FakeClock], tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay cannot diverge from production: both run TieringEngine's passes, which run the Planner's."""
    import numpy as np

    from benchmarks.placement import replay as replay_module
    from benchmarks.placement.traces import Trace
    from liquid.tiering.engine import TieringEngine
    from liquid.tiering.planner import Planner

    calls: Counter[str] = Counter()
    for cls, name in [(c, n) for c in (TieringEngine, Planner) for n in ("rebuild", "cycle", "admit")]:
        real = getattr(cls, name)

        def counted(
            self: object, *args: Any, _real: Any = real, _key: str = f"{cls.__name__}.{name}", **kw: Any
        ) -> Any:
            calls[_key] += 1
            return _real(self, *args, **kw)

        monkeypatch.setattr(cls, name, counted)

    svc, clock = clocked
    ref = svc.put(tenant, "ns", "x", os.urandom(10_000)).ref
    d = daemon(svc, clock)
    try:
        d.job_cycle()  # the first cycle rebuilds
        svc.get(tenant, ref)  # a miss for the admission pass
        d.job_admit()
        d.job_cycle()
    finally:
        d.resign()
    assert type(d.engine) is TieringEngine and type(d.engine.planner) is Planner
    in_daemon, calls = dict(calls), Counter()

    trace = Trace("t", "6 requests", np.arange(6.0) + 1000.0, np.array([0, 1, 0, 1, 0, 1]), np.full(6, 4096))
    r = replay_module.Replay(
        replay_module.policies_for(1 << 20),
        replay_module.settings_for(replay_module.policies_for(1 << 20)),
        cycle=2,
    )
    r.run(trace)
    assert type(r.engine) is TieringEngine and type(r.engine.planner) is Planner
    in_replay = dict(calls)
    for key in (
        "TieringEngine.rebuild",
        "TieringEngine.cycle",
        "TieringEngine.admit",
        "Planner.rebuild",
        "Planner.cycle",
        "Planner.admit",
    ):
        assert in_daemon.get(key, 0) >= 1, (key, in_daemon)
        assert in_replay.get(key, 0) >= 1, (key, in_replay)


def test_run_once_says_another_daemon_leads_rather_than_no_policies(
    clocked: tuple[LiquidService, FakeClock], tenant: str
) -> None:
    svc, clock = clocked
    leader, other = daemon(svc, clock, "leader"), daemon(svc, clock, "other")
    try:
        assert leader.try_lead()
        summary = other.run_once(move=False)
        assert summary.plan is None
        assert (
            summary.not_planned is not None and "another daemon holds the leader lease" in summary.not_planned
        )
        assert summary.as_dict()["not_planned"] == summary.not_planned
    finally:
        leader.resign()
        other.resign()
