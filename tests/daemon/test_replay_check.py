"""`liquid events replay --check`: the log alone rebuilds every object's state and placement.

A mixed workload runs through the production paths — puts (inline, warm, cold), deletes,
the planner's applier (bulk expiry and queued demotions), single expiries, the real mover
(moves, restores to a warmer tier, purges) — and the replay finds no divergence. Then a
catalog row edited behind the log's back is reported, field by field, and the CLI exits 1.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from typer.testing import CliRunner

from liquid.cli import app
from liquid.config import MoverSettings
from liquid.events import replay
from liquid.service import LiquidService
from liquid.tiering.apply import CatalogApplier
from liquid.tiering.journal import enqueue_move, enqueue_purge
from liquid.tiering.mover import Mover
from liquid.tiering.plan import Change, Plan
from tests.daemon.util import make_objects, row
from tests.fakes import FakeClock


def _change(obj: Any, action: str, to_tier: str | None) -> Change:
    return Change(obj.id, obj.ref.uri, 0, action, "warm", to_tier, "docs", "r1", f"test {action}")


def _cli(daemon_settings: dict[str, Any], *args: str) -> Any:
    env = {
        "LIQUID_CATALOG_URL": daemon_settings["catalog_url"],
        "LIQUID_STORES": json.dumps(daemon_settings["stores"]),
    }
    return CliRunner().invoke(app, ["events", "replay", *args], env=env)


def test_mixed_workload_replays_without_divergence_and_a_corrupt_row_is_reported(
    service: LiquidService,
    tenant: str,
    clock: FakeClock,
    mover_settings: MoverSettings,
    daemon_settings: dict[str, Any],
) -> None:
    objs = make_objects(service, tenant, 12)  # catalog rows, warm and cold homes
    mover = Mover.from_service(service, clock=clock, settings=mover_settings)
    applier = CatalogApplier(service, service.settings)

    # Deletes: one of each home.
    for o in objs[:3]:
        service.delete(tenant, o.ref.ref)
    # The planner's applier: a bulk expiry and two demotions to cold.
    plan = Plan(clock(), None, changes=[_change(objs[3], "expire", None)])
    plan.changes += [_change(o, "move", "cold") for o in (objs[4], objs[7])]
    report = applier.apply(plan)
    assert (report.purges_queued, report.moves_queued) == (1, 2)
    # A single expiry through the journal.
    assert enqueue_purge(service.engine, objs[5].id, reason="retention: docs/ttl", now=clock()) is not None
    first = mover.run_once()
    assert first.total("waiting") == 2 and first.total("purged") == 2  # switched; sources kept
    clock.advance(mover_settings.grace_period + 1)
    assert mover.run_once().total("moved") == 2
    # Restores: a demoted one back to warm, and one that was cold from the start.
    for o in (objs[4], objs[8]):
        assert row(service, o.id).home_tier == "cold"
        assert enqueue_move(service.engine, o.id, "warm", "warm", reason="restoreOnAccess") is not None
    assert mover.run_once().total("waiting") == 2
    clock.advance(mover_settings.grace_period + 1)
    assert mover.run_once().total("moved") == 2
    purged = [objs[i] for i in (0, 1, 2, 3, 5)]
    assert {row(service, o.id).state for o in purged} == {"purged"}
    assert row(service, objs[4].id).home_tier == "warm" and row(service, objs[7].id).home_tier == "cold"
    # And reads, which log object.read aggregates (no state change).
    for o in objs[6:]:
        service.get(tenant, o.ref.ref)

    checked = replay.check(service.engine, tenant=tenant)
    assert checked.ok, [str(d) for d in checked.divergences]
    assert checked.objects == 12 and checked.moves == 4
    assert checked.states == {"purged": 5, "live": 7}
    out = _cli(daemon_settings, "--check", "--tenant", tenant)
    assert out.exit_code == 0, out.output
    assert "no divergence" in out.stdout

    # A row edited behind the log's back: every changed field is reported, with its history.
    victim = objs[4]
    with service.engine.begin() as conn:
        conn.execute(
            text("UPDATE objects SET home_tier = 'cold', size = size + 1 WHERE id = :id"), {"id": victim.id}
        )
        conn.execute(text("UPDATE objects SET state = 'live' WHERE id = :id"), {"id": objs[0].id})
    checked = replay.check(service.engine, tenant=tenant)
    found = {(d.object_id, d.field, d.log, d.catalog) for d in checked.divergences}
    size = row(service, victim.id).size
    assert found == {
        (victim.id, "home_tier", "warm", "cold"),
        (victim.id, "size", size - 1, size),
        (objs[0].id, "state", "purged", "live"),
    }
    tiers = [tier for _, tier, _ in checked.histories[victim.id]]
    assert tiers == ["warm", "cold", "warm"]
    out = _cli(daemon_settings, "--check", "--tenant", tenant, "--json")
    assert out.exit_code == 1, out.output
    body = json.loads(out.stdout)
    assert not body["ok"] and len(body["divergences"]) == 3
    assert _cli(daemon_settings).exit_code != 0  # --check is required
