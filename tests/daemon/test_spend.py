"""Retrieval spend caps: once a Budget's maxMonthlyRetrievalCost is reached, restores wait.

The spend comes from the event log (restores out of archive and cold, reads served by them),
priced by the shipped CostModel; the mover leaves held restores ``planned`` in the queue while
it works everything else; explain and plan say why.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from liquid.events import log as events
from liquid.policy.loader import load_policy_sources
from liquid.service import LiquidService
from liquid.tiering.explain import explain
from liquid.tiering.journal import enqueue_move, held_restores, open_row
from liquid.tiering.mover import Mover
from liquid.tiering.planner import Planner
from liquid.tiering.rows import CatalogRows
from liquid.tiering.spend import SpendGate, month_start, retrieval_spend, spend_gate

GiB = 1024**3


def _budget(tenant: str | None, cap: float) -> str:
    scope = f"  tenant: {tenant}\n" if tenant else ""
    return (
        "apiVersion: liquid/v1\nkind: Budget\nmetadata: {name: restores}\n"
        f"spec:\n{scope}  maxMonthlyRetrievalCost: {cap}\n"
    )


def _restore_event(service: LiquidService, tenant: str, at: datetime, size: int) -> None:
    """An ``object.moved`` archive → warm event of a real object (the log stays consistent for
    readers such as ``/v1/stats``), claiming ``size`` bytes were retrieved."""
    ref = service.put(tenant, "ns", f"k-{at.timestamp():.0f}", b"x").ref
    obj = service.fast.find(ref.tenant, ref.namespace, ref.key, ref.version)
    assert obj is not None
    with service.engine.begin() as conn:
        events.append(
            conn,
            events.NewEvent(
                events.MOVED,
                at,
                tenant_id=tenant,
                object_id=obj.id,
                namespace="ns",
                key=ref.key,
                version=ref.version,
                tier="warm",
                from_tier="archive",
                bytes=size,
                data={
                    "journal_id": 0,
                    "from_store": "archive",
                    "from_locator": None,
                    "to_store": "warm",
                    "to_locator": None,
                    "size": size,
                    "reason": "test",
                },
            ),
        )


def test_spend_is_read_from_the_log_per_month_and_priced(service: LiquidService, tenant: str) -> None:
    now = datetime.now(UTC)
    _restore_event(service, tenant, now - timedelta(seconds=5), 10 * GiB)
    if now - month_start(now) > timedelta(days=1):  # last month's restores do not count this month
        _restore_event(service, tenant, month_start(now) - timedelta(hours=1), 100 * GiB)
    spent = retrieval_spend(service.engine, None, now)[tenant]
    # Archive (shipped prices): $0.03 per GiB retrieved + $0.01 per 1,000 requests.
    assert abs(spent - (10 * 0.03 + 0.01 / 1000)) < 1e-9
    tight = load_policy_sources({"b.yaml": _budget(tenant, 0.25)})
    gate = spend_gate(service.engine, tight, now)
    assert gate.holds(tenant) and not gate.holds("someone-else")
    why = gate.why(tenant)
    assert why is not None and "0.30 USD of 0.25 USD this month" in why and "restores wait until" in why
    loose = load_policy_sources({"b.yaml": _budget(tenant, 5)})
    assert spend_gate(service.engine, loose, now).held == frozenset()


def test_held_restores_wait_in_the_queue_and_run_when_released(service: LiquidService, tenant: str) -> None:
    ref = service.put(tenant, "cold", "big", os.urandom(2 * 1024 * 1024)).ref  # born cold (> 1 MiB)
    obj = service.fast.find(ref.tenant, ref.namespace, ref.key, ref.version)
    assert obj is not None and obj.home_tier == "cold"
    job = enqueue_move(service.engine, obj.id, "warm", "warm", reason="restoreOnAccess")
    assert job is not None
    held = SpendGate(frozenset({tenant}), {tenant: "cap reached"})
    mover = Mover.from_service(service, worker_id="spend-test", spend_gate=lambda: held)
    mover.run_until_idle()
    row = open_row(service.engine, obj.id)
    assert row is not None and row["id"] == job and row["step"] == "planned" and row["restore"]
    assert mover.held == {tenant: 1}
    assert held_restores(service.engine, held.claim_filter()) == {tenant: 1}
    # explain says what is queued and why it waits: the Budget's cap, reached at 0.
    capped = load_policy_sources({"b.yaml": _budget(tenant, 0)})
    now = datetime.now(UTC)
    row_ = CatalogRows(service.engine, half_life=service.settings.access.half_life).row(ref, now)
    assert row_ is not None
    said = explain(Planner(service.settings), capped, row_, now, engine=service.engine)["queued"]
    assert said["step"] == "planned" and said["from"] == "cold" and said["to"] == "warm"
    assert "retrieval spend cap of Budget 'restores' reached" in said["waits"]
    # A global cap holds everyone's; lifting it lets the restore run.
    everyone = SpendGate(frozenset({None}), {None: "global cap"})
    assert everyone.holds(tenant) and held_restores(service.engine, everyone.claim_filter())[tenant] == 1
    Mover.from_service(service, worker_id="spend-test-2", spend_gate=lambda: SpendGate()).run_until_idle()
    after = open_row(service.engine, obj.id)  # switched: the cold copy goes after the grace period
    assert after is None or after["step"] == "switched"
    moved = service.fast.find(ref.tenant, ref.namespace, ref.key, ref.version)
    assert moved is not None and moved.home_tier == "warm"
