"""Reads through search count once for tiering: an inline hit is the read; otherwise resolving its ref is."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text

from liquid.service import LiquidService
from liquid.vectors import Embedding
from liquid.vectors.search import VectorSearch
from tests.core.conftest import ServiceFactory


def _hits_by_key(svc: LiquidService, tenant: str) -> dict[str, int]:
    """The tenant's counted reads per key, once the tracker has flushed them to the catalog."""
    assert svc.access is not None
    svc.access.flush(svc.engine)
    with svc.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT o.key, a.hits FROM access_stats a JOIN objects o ON o.id = a.object_id"
                " WHERE a.tenant_id = :t"
            ),
            {"t": tenant},
        ).all()
    return {key: int(n) for key, n in rows}


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
        # The caller resolves the inline hit too, though it has the value: still the search's read.
        svc.get(tenant, results[0].ref.ref)
        # A second search, its hit resolved in a batch (after a push: the claim outlives one).
        vs.search(tenant, [1.0, 0.0], k=1)
        svc.access.push()
        svc.resolve_many(tenant, [small], want=lambda i, facts: True)
    finally:
        vs.close()
    hits = _hits_by_key(svc, tenant)
    assert hits == {"small": 2, "large": 1}  # two searches, each with its resolve


def test_the_apis_json_search_answers_and_counts_as_the_result_objects_do(
    make_service: ServiceFactory, tenant: str
) -> None:
    """``asearch_json`` (what ``POST /v1/search`` sends) writes the results straight from the catalog
    rows: the same JSON as ``SearchResult.to_json`` of ``asearch`` and of ``search``, the same reads."""
    svc: LiquidService = make_service()
    assert svc.access is not None
    small = svc.put(
        tenant, "kb", "a key/with space", b"tiny", tags={"lang": "en"}, classification="internal"
    ).ref
    large = svc.put(tenant, "kb", "large", b"L" * 10_000, content_type="text/plain").ref
    vs = VectorSearch(svc.settings, engine=svc.engine, access=svc.access, clock=svc.clock)

    async def main() -> tuple[list[Any], list[Any], list[int]]:
        await vs.astart(max_size=1)
        try:
            assert vs.on_loop()
            noted = [svc.access.noted]  # type: ignore[union-attr]
            objs = await vs.asearch(tenant, [1.0, 0.0], k=5)
            noted.append(svc.access.noted)  # type: ignore[union-attr]
            found = await vs.asearch_json(tenant, [1.0, 0.0], k=5)
            noted.append(svc.access.noted)  # type: ignore[union-attr]
            assert await vs.asearch_json("nobody", [1.0, 0.0], k=5) == []
            return objs, found, noted
        finally:
            await vs.astop()

    try:
        vs.attach(tenant, small, [Embedding([1.0, 0.0])])
        vs.attach(
            tenant,
            large,
            [Embedding([0.9, 0.1], chunk_id="c0", span=(0, 5000)), Embedding([0.5, 0.5], chunk_id="c1")],
        )
        objs, found, noted = asyncio.run(main())
        threaded = vs.search(tenant, [1.0, 0.0], k=5)
    finally:
        vs.close()
    assert found == [r.to_json() for r in objs] == [r.to_json() for r in threaded]
    assert [(x["key"], x["chunk_id"], x["span"]) for x in found] == [
        ("a key/with space", None, None),
        ("large", "c0", [0, 5000]),
        ("large", "c1", None),
    ]
    assert found[0]["ref"]["inline"] and found[0]["tags"] == {"lang": "en"}
    assert found[0]["classification"] == "internal" and found[0]["ref"]["uri"] == small.uri
    assert "inline" not in found[1]["ref"] and found[1]["content_type"] == "text/plain"
    # One read per search: the inline hit (the other hits' reads come when their refs are resolved).
    assert noted[1] - noted[0] == noted[2] - noted[1] == 1


def test_a_hit_resolved_twice_or_long_after_counts_the_later_reads(
    make_service: ServiceFactory, tenant: str
) -> None:
    """Only the first read of an inline hit after its search is the search's; later ones are reads."""
    from datetime import timedelta

    from liquid.access import SEARCH_CLAIM_WINDOW

    svc: LiquidService = make_service()
    assert svc.access is not None
    svc.access.flush(svc.engine)
    a = svc.put(tenant, "kb", "a", b"a value").ref
    b = svc.put(tenant, "kb", "b", b"b value").ref
    vs = VectorSearch(svc.settings, engine=svc.engine, access=svc.access, clock=svc.clock)
    try:
        vs.attach(tenant, a, [Embedding([1.0, 0.0])])
        vs.attach(tenant, b, [Embedding([0.0, 1.0])])
        assert [r.ref.ref for r in vs.search(tenant, [1.0, 0.1], k=2)] == [a, b]
        now = svc.clock()
        svc.access.note(a, now=now)  # the hit resolved: the search's read
        svc.access.note(a, now=now)  # and again: a read of its own
        svc.access.note(b, now=now + timedelta(seconds=SEARCH_CLAIM_WINDOW + 60))  # long after: a read
    finally:
        vs.close()
    hits = _hits_by_key(svc, tenant)
    assert hits == {"a": 2, "b": 2}
