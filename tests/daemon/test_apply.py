"""The applier's refusals: a move it cannot queue is skipped with a reason that names the cause."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import text

from liquid.bootstrap import Runtime
from liquid.tiering.apply import CatalogApplier
from liquid.tiering.plan import Change, Plan
from tests.daemon.util import make_objects


def test_a_move_into_a_catalog_backed_tier_is_skipped_and_says_why(
    make_runtime: Callable[..., Runtime], tenant: str
) -> None:
    # warm backed by the catalog itself: it takes bytes only at put time, so a cold object cannot
    # move there, and the reason must say so (not "no store is configured").
    rt = make_runtime(tiers={"hot": "hot", "warm": "catalog", "cold": "cold"})
    svc = rt.service
    (cold,) = make_objects(svc, tenant, 1, kinds=("cold",))
    change = Change(cold.id, cold.ref.ref.uri, cold.ref.size, "move", "cold", "warm", "p", "r", "test")
    report = CatalogApplier(svc, svc.settings).apply(
        Plan(at=datetime.now(UTC), policy_version=None, changes=[change])
    )
    assert report.moves_queued == 0
    ((object_id, uri, why),) = report.skipped
    assert (object_id, uri) == (cold.id, cold.ref.ref.uri)
    assert "keeps its bytes in the catalog" in why and "no store is configured" not in why
    with svc.engine.connect() as conn:
        queued = conn.execute(text("SELECT count(*) FROM move_journal WHERE object_id = :i"), {"i": cold.id})
        assert queued.scalar_one() == 0
