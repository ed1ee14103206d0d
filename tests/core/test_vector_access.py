"""Reads through search count once for tiering: an inline hit is the read; otherwise resolving its ref is."""

from __future__ import annotations

from sqlalchemy import text

from liquid.service import LiquidService
from liquid.vectors import Embedding
from liquid.vectors.search import VectorSearch
from tests.core.conftest import ServiceFactory


def test_a_search_hit_then_its_read_is_one_access(make_service: ServiceFactory, tenant: str) -> None:
    svc: LiquidService = make_service()
    assert svc.access is not None
    svc.access.flush(svc.engine)
    small = svc.put(tenant, "kb", "small", b"tiny value").ref  # under inline_threshold: comes inline
    large = svc.put(tenant, "kb", "large", b"L" * 10_000).ref
    vs = VectorSearch(svc.settings, engine=svc.engine, access=svc.access, clock=svc.clock)
    try:
        vs.attach(tenant, small, [Embedding([1.0, 0.0])])
        vs.attach(tenant, large, [Embedding([0.9, 0.1])])
        results = vs.search(tenant, [1.0, 0.0], k=2)
        assert [r.ref.ref for r in results] == [small, large]
        assert results[0].ref.inline == b"tiny value" and results[1].ref.inline is None
        svc.get(tenant, results[1].ref.ref)  # the caller resolves the hit that had no value
    finally:
        vs.close()
    svc.access.flush(svc.engine)
    with svc.engine.connect() as conn:
        hits = dict(
            conn.execute(
                text(
                    "SELECT o.key, a.hits FROM access_stats a JOIN objects o ON o.id = a.object_id"
                    " WHERE a.tenant_id = :t"
                ),
                {"t": tenant},
            ).all()
        )
    assert hits == {"small": 1, "large": 1}
