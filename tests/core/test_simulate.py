"""``liquid policy simulate`` predicts what the daemon then does with the same reads.

Reads are recorded through the real service (the access flush turns them into per-minute
``object.read`` events); ``simulate`` replays them through the engine under a policy with a
hot budget. Then the policy is applied and the same schedule of reads is played again on
fresh objects, with the daemon's own passes (flush + admit every read, a cycle every
``plan_interval``) filling real Redis copies: the hit ratio and the moves the daemon produces
must be what the simulation predicted, within a stated tolerance.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from liquid.cli import app
from liquid.policy.loader import load_policy_text
from liquid.policy.store import apply_policies
from liquid.service import LiquidService
from liquid.tiering.engine import catalog_engine
from liquid.tiering.mover import Mover
from liquid.tiering.simulate import simulate
from tests.fakes import FakeClock

from .conftest import ServiceFactory

T0 = datetime(2033, 5, 1, tzinfo=UTC)
KiB = 1024
STEP = 5.0  # seconds between reads
#: Absolute tolerance on the byte hit ratio: the replay counts reads exactly (DecayedCounts),
#: the daemon sees them through Redis and the catalog a flush later.
BHR_TOLERANCE = 0.05


def _policy(tenant: str) -> str:
    return f"""
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {{name: sim-{tenant}}}
spec:
  priority: 1000
  selector: {{tenants: [{tenant}]}}
  rules:
    - {{tier: hot, promoteAbove: 2/h, demoteBelow: 1/h}}
    - {{tier: warm, demoteAfter: 10m}}
    - {{tier: cold}}
  accessHalfLife: 1h
  minResidency: 0s
---
apiVersion: liquid/v1
kind: Budget
metadata: {{name: sim-budget-{tenant}}}
spec:
  tiers:
    hot: {{maxBytes: {48 * KiB}}}
"""


def _schedule(n_objects: int, reads: int) -> list[int]:
    """A skewed, drifting read sequence: Zipf-like over the objects, the order reshuffled halfway."""
    rng = random.Random(11)
    weights = [1.0 / (i + 1) ** 1.1 for i in range(n_objects)]
    order = list(range(n_objects))
    out = []
    for i in range(reads):
        if i == reads // 2:
            rng.shuffle(order)
        out.append(order[rng.choices(range(n_objects), weights)[0]])
    return out


@pytest.mark.parametrize(
    ("reads", "planner"),
    [
        # Half an hour of reads, the operator's hysteresis alone on both sides: on so few reads
        # the simulations' choice of a stickier one (planner.adaptive_hysteresis) flips back and
        # forth, and the live daemon and the replay, fed the same reads a flush apart, end it at
        # different times. Measured with it: the daemon 0.570-0.580 against a prediction of
        # 0.622 (without: 0.573 against 0.601). A paired-evidence rule for switching fixed this
        # and cost the placement grid (liquid.tiering.adaptive, AdaptiveHalfLife._choose).
        (360, {"adaptive_hysteresis": False}),
        # Two hours, the default engine: 0.612 against 0.617, the choice switching 7 times.
        (1440, {}),
    ],
    ids=["30min-operator-hysteresis", "2h-default-engine"],
)
def test_simulate_predicts_the_hit_ratio_and_moves_the_daemon_then_produces(
    make_service: ServiceFactory, tenant: str, reads: int, planner: dict[str, object]
) -> None:
    svc: LiquidService = make_service(**({"planner": planner} if planner else {}))
    clock = FakeClock(T0)
    svc.clock = clock
    assert svc.access is not None and svc.hot is not None
    svc.access.clock = clock
    svc.access.flush(svc.engine)
    rng = random.Random(5)
    sizes = [rng.randint(2, 20) * KiB for _ in range(16)]
    schedule = _schedule(len(sizes), reads)

    # 1. Record: reads through the service, flushed to the event log every minute.
    refs: dict[int, object] = {}
    for i, o in enumerate(schedule):
        clock.advance(seconds=STEP)
        if o not in refs:
            refs[o] = svc.put(tenant, "rec", f"k{o}", os.urandom(sizes[o])).ref
        svc.get(tenant, refs[o])  # type: ignore[arg-type]
        if i % 12 == 11:
            svc.access.flush(svc.engine)
    clock.advance(seconds=120)
    svc.access.flush(svc.engine)

    # 2. Simulate the policy on what was recorded.
    policies = load_policy_text(_policy(tenant))
    report = simulate(
        svc.engine,
        svc.settings,
        policies,
        None,
        since=T0,
        until=T0 + timedelta(seconds=reads * STEP + 60),
        tenant=tenant,
    )
    assert report["reads"] == reads and report["objects"] == len(sizes)
    predicted = report["runs"]["proposed"]
    assert 0.2 < predicted["hot_byte_hit_ratio"] < 0.95
    assert predicted["moves"] > 0  # objects idle 10 minutes go cold
    assert report["ceiling"]["belady_byte_hit_ratio"] >= predicted["hot_byte_hit_ratio"]

    # 3. The daemon with the policy applied, on the same schedule of reads (fresh objects; the
    # recorded ones are deleted, or they would compete for the budget with three hours of reads).
    for ref in refs.values():
        svc.delete(tenant, ref)  # type: ignore[arg-type]
    clock.now = T0 + timedelta(hours=3)
    apply_policies(svc.engine, {"sim.yaml": _policy(tenant)}, actor="test", clock=clock)
    engine = catalog_engine(svc)
    engine.cycle()  # the leader's first pass: a rebuild
    live: dict[int, object] = {}
    hit_bytes = total_bytes = moves = 0
    next_cycle = clock.now + timedelta(seconds=svc.settings.daemon.plan_interval)
    for o in schedule:
        clock.advance(seconds=STEP)
        if o not in live:
            live[o] = svc.put(tenant, "live", f"k{o}", os.urandom(sizes[o])).ref
        reader = svc.open(tenant, live[o])  # type: ignore[arg-type]
        reader.read()
        total_bytes += sizes[o]
        hit_bytes += sizes[o] if reader.source == "hot" else 0
        svc.access.flush(svc.engine, hourly=False)  # the admit job: flush, then admit
        engine.admit()
        if clock.now >= next_cycle:
            plan = engine.cycle()
            assert plan is not None
            moves += sum(1 for c in plan.changes if c.action == "move")
            next_cycle = clock.now + timedelta(seconds=svc.settings.daemon.plan_interval)
    # The moves were queued, not carried out: carry them out so no other test's mover finds them.
    Mover.from_service(svc, worker_id="simulate-test").run_until_idle()
    # Nor may their hot copies hold the (global) hot budget against the next case's or test's.
    for ref in live.values():
        svc.delete(tenant, ref)  # type: ignore[arg-type]
    daemon_bhr = hit_bytes / total_bytes
    assert abs(daemon_bhr - predicted["hot_byte_hit_ratio"]) <= BHR_TOLERANCE, (daemon_bhr, predicted)
    assert abs(moves - predicted["moves"]) <= max(2, 0.2 * predicted["moves"]), (moves, predicted)


def test_the_cli_reports_both_policy_sets_and_refuses_a_bad_window(
    tenant: str, tmp_path: object, base_settings: dict
) -> None:
    import json
    from pathlib import Path

    path = Path(str(tmp_path)) / "p.yaml"
    path.write_text(_policy(tenant))
    env = {
        "LIQUID_CATALOG_URL": base_settings["catalog_url"],
        "LIQUID_STORES": json.dumps(base_settings["stores"]),
    }
    bad = CliRunner().invoke(app, ["policy", "simulate", str(path), "--since", "soon"], env=env)
    assert bad.exit_code != 0 and "--since" in bad.output
    out = CliRunner().invoke(
        app, ["policy", "simulate", str(path), "--since", "1h", "--tenant", tenant, "-o", "json"], env=env
    )
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["reads"] == 0 and report["tenant"] == tenant  # a tenant with no reads yet
    assert "proposed" in report["runs"]
    # A tenant that does not exist is a typo, not a what-if of zeros.
    typo = CliRunner().invoke(app, ["policy", "simulate", str(path), "--tenant", "nobody-here"], env=env)
    assert typo.exit_code != 0 and "does not exist" in str(typo.exception), typo.output
