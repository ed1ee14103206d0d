"""A pgvector search of every namespace plans from the tenant's spaces as this process last read
them, and proves that plan in its own rows: no round trip for the spaces on every search, and
the same answers and errors as a plan read fresh, whatever another process added meanwhile."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from liquid.bootstrap import Runtime, open_runtime
from liquid.config import Settings
from liquid.errors import DimensionMismatch, InvalidInput
from liquid.vectors import VectorFilter
from liquid.vectors.base import VectorRecord
from liquid.vectors.pgvector import PgVectorIndex

DIMS = 11  # no other test uses it
EVERY = VectorFilter()


@pytest.fixture(scope="module")
def rt(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    cold: Path = tmp_path_factory.mktemp("cold")
    runtime = open_runtime(
        Settings(
            catalog_url=pg_url,
            stores={"warm": pg_url, "cold": f"file://{cold}"},
            tiers={"hot": None},
            access={"enabled": False},
        )
    )
    yield runtime
    runtime.close()


def _index(rt: Runtime) -> PgVectorIndex:
    """An index of its own: another process's cache of spaces."""
    return PgVectorIndex(rt.service.engine, settings=rt.service.settings.vectors)


def _put(
    rt: Runtime, index: PgVectorIndex, tenant: str, ns: str, vectors: list[list[float]], metric: str
) -> None:
    records = []
    for i, v in enumerate(vectors):
        ref = rt.service.put(tenant, ns, f"d{i}", b"x").ref
        row = rt.service.fast.find(tenant, ns, ref.key, ref.version)
        records.append(VectorRecord(int(row.id), ns, ref.key, ref.version, v))
    index.add(tenant, records, metric=metric)  # type: ignore[arg-type]


def _counting(index: PgVectorIndex, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    sync, on_loop = index._read_tenant_spaces, index._aread_tenant_spaces

    def counted(tenant: str) -> object:
        reads.append(tenant)
        return sync(tenant)

    async def acounted(conn: object, tenant: str) -> object:
        reads.append(tenant)
        return await on_loop(conn, tenant)  # type: ignore[arg-type]

    monkeypatch.setattr(index, "_read_tenant_spaces", counted)
    monkeypatch.setattr(index, "_aread_tenant_spaces", acounted)
    return reads


def _unit(i: int, dims: int = DIMS) -> list[float]:
    return [1.0 if j == i % dims else 0.0 for j in range(dims)]


@pytest.mark.parametrize("path", ["sync", "loop"])
def test_spaces_are_read_once_and_a_metric_added_elsewhere_is_still_refused(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    tenant = f"sc-{uuid.uuid4().hex[:10]}"
    rt.service.tenancy.create_tenant(tenant)
    other_process = _index(rt)
    _put(rt, other_process, tenant, "kb", [_unit(i) for i in range(4)], "cosine")
    index = _index(rt)
    reads = _counting(index, monkeypatch)

    async def run() -> None:
        if path == "loop":
            await index.astart(max_size=1)
        try:

            async def search(vector: list[float]) -> list[object]:
                if path == "loop":
                    return list(await index.asearch(tenant, vector, k=3, where=EVERY))
                return list(index.search(tenant, vector, k=3, where=EVERY))

            assert len(await search(_unit(0))) == 3
            assert len(await search(_unit(1))) == 3
            assert reads == [tenant]  # the second search read no spaces
            # Another process gives a second namespace the same dimension with another metric: a
            # fresh plan refuses to guess which to search, and so does this cached one.
            _put(rt, other_process, tenant, "kb2", [_unit(i) for i in range(2)], "ip")
            with pytest.raises(InvalidInput, match="several metrics"):
                _index(rt).search(tenant, _unit(0), k=3, where=EVERY)
            with pytest.raises(InvalidInput, match="several metrics"):
                await search(_unit(0))
            # A dimension this process has not seen is read again, not refused from the cache.
            _put(rt, other_process, tenant, "kb3", [_unit(i, DIMS + 1) for i in range(2)], "l2")
            assert len(await search(_unit(0, DIMS + 1))) == 2
            with pytest.raises(DimensionMismatch):
                await search(_unit(0, DIMS + 2))
        finally:
            if path == "loop":
                await index.astop()

    asyncio.run(run())


def test_a_search_that_finds_nothing_still_refuses_an_ambiguous_dimension(rt: Runtime) -> None:
    tenant = f"sc-{uuid.uuid4().hex[:10]}"
    rt.service.tenancy.create_tenant(tenant)
    other_process = _index(rt)
    _put(rt, other_process, tenant, "kb", [_unit(0)], "cosine")
    index = _index(rt)
    assert len(index.search(tenant, _unit(0), k=3, where=EVERY)) == 1
    _put(rt, other_process, tenant, "kb2", [_unit(1)], "ip")
    # Every live object is deleted: no rows come back to prove the plan, so the spaces are read.
    with rt.service.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE objects SET state = 'deleted' WHERE tenant_id = %s", (tenant,))
    with pytest.raises(InvalidInput, match="several metrics"):
        index.search(tenant, _unit(0), k=3, where=EVERY)
