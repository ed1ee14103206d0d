"""The hot tier's budget holds in production: liquid daemon, real Redis, a skewed read workload.

The daemon runs in-process with its real scheduler and short intervals, on a clock that runs
an hour per real second, while a reader hammers a Zipf-skewed set of objects through the
core service. A checker samples Redis itself — the sum of the copies' sizes under this
tenant's keys — many times a second: it must never exceed the budget, while hot hits happen.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from daemon.tiering import TieringDaemon
from liquid.bootstrap import Runtime
from liquid.policy.store import apply_policies
from liquid.service import LiquidService

from .conftest import ServiceFactory

KiB, MiB = 1024, 1024 * 1024
BUDGET = 3 * MiB
#: The default cost model's hot price: $9 per GB-month, so this buys the same 3 MiB.
BUDGET_COST = BUDGET / 1024**3 * 9.0


@dataclass
class FastClock:
    """UTC time that runs ``speed`` times faster than the wall clock, from ``start``."""

    start: datetime
    speed: float
    _t0: float = 0.0

    def __post_init__(self) -> None:
        self._t0 = time.monotonic()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)


def policy(tenant: str, cap: str) -> str:
    return f"""
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {{name: hot-{tenant}}}
spec:
  priority: 1000
  selector: {{tenants: [{tenant}]}}
  rules:
    - {{tier: hot, promoteAbove: 1/h, demoteBelow: 0.5/h}}
    - {{tier: warm}}
  accessHalfLife: 1h
---
apiVersion: liquid/v1
kind: Budget
metadata: {{name: hot-{tenant}}}
spec:
  tenant: {tenant}
  tiers:
    hot: {{{cap}}}
"""


def hot_bytes(svc: LiquidService, tenant: str) -> int:
    """What Redis holds for this tenant's copies, read from Redis itself."""
    assert svc.hot is not None
    client = svc.hot.client
    keys = list(client.scan_iter(match=f"{{lqh:*}}:obj:{tenant}/*", count=1000))
    if not keys:
        return 0
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.strlen(k)
    return sum(int(n) for n in pipe.execute())


@pytest.mark.parametrize("cap", [f"maxBytes: {BUDGET}", f"maxMonthlyCost: {BUDGET_COST:.10f}"])
def test_the_daemon_keeps_redis_within_the_hot_budget_while_serving_hits(
    make_service: ServiceFactory, tenant: str, cap: str
) -> None:
    clock = FastClock(datetime(2033, 1, 1, tzinfo=UTC), speed=3600.0)
    svc = make_service(
        access={"flush_interval": 0.2, "half_life": 3600},
        daemon={"plan_interval": 0.3, "admit_interval": 0.1, "move_interval": 0.5, "gc_interval": 3600},
    )
    svc.clock = clock
    assert svc.access is not None and svc.hot is not None
    svc.access.clock = clock
    apply_policies(svc.engine, {"p.yaml": policy(tenant, cap)}, actor="test", clock=clock)
    rng = random.Random(7)
    refs = [
        svc.put(tenant, "data", f"o{i:02d}", os.urandom(rng.randint(100, 300) * KiB)).ref for i in range(40)
    ]
    weights = [1.0 / (i + 1) ** 1.1 for i in range(len(refs))]  # Zipf: a few objects take most reads

    d = TieringDaemon(Runtime(service=svc, urls={}), clock=clock, worker_id="budget-test")
    stop = threading.Event()
    samples: list[int] = []
    reads = 0

    def check() -> None:
        while not stop.is_set():
            samples.append(hot_bytes(svc, tenant))
            time.sleep(0.01)

    checker = threading.Thread(target=check, daemon=True)
    hits_before = svc.hot.hits
    d.start()
    checker.start()
    try:
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline:
            svc.get(tenant, rng.choices(refs, weights)[0])
            reads += 1
    finally:
        stop.set()
        checker.join(timeout=5)
        d.stop()
    samples.append(hot_bytes(svc, tenant))
    hits = svc.hot.hits - hits_before
    assert len(samples) > 100, "the checker must look many times"
    assert max(samples) <= BUDGET, f"Redis held {max(samples)} bytes for the tenant, budget {BUDGET}"
    assert max(samples) > BUDGET // 3, "the hot tier should fill up to near its budget"
    assert hits > reads // 4, f"only {hits} of {reads} reads hit the hot tier"
    # The plan reports what Redis holds, and the ledger agrees with Redis.
    cycle = d.engine.last_cycle
    assert cycle is not None and cycle.bytes_after["hot"] > 0
    assert svc.hot.used_bytes() >= samples[-1]
    use = next(u for u in cycle.budgets if u.tenant == tenant and u.tier == "hot")
    assert use.ok and use.bytes_after <= BUDGET
