"""pgvector's exact fallback: structureless queries get the exact top-k, structured ones keep HNSW.

A deliberately sparse graph (m=2, ef_construction=8, ef_search=10) on a dimension of this
module's own (its partial HNSW index is built with these settings) misses most true
neighbours of uniformly random queries among uniformly random vectors; the fallback must
notice and answer them exactly, and must leave queries near a cluster to the index.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from sqlalchemy import text

from liquid.bootstrap import Runtime, open_runtime
from liquid.catalog.fastpath import conninfo
from liquid.config import Settings, VectorSettings
from liquid.errors import DimensionMismatch
from liquid.vectors import VectorFilter
from liquid.vectors.base import VectorRecord
from liquid.vectors.pgvector import (
    SAMPLE_SIZE,
    SAMPLE_TTL,
    PgVectorIndex,
    SetSample,
    _scores,
    register_vector_dumper,
)

DIMS = 97  # no other test uses it: the HNSW index of (97, cosine) gets this module's settings
N_RANDOM, N_CLUSTERED, CENTRES = 2400, 600, 6
SPARSE = {"hnsw_m": 2, "hnsw_ef_construction": 8, "ef_search": 10}


def _unit(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return out


@pytest.fixture(scope="module")
def world(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    cold: Path = tmp_path_factory.mktemp("cold")
    rt: Runtime = open_runtime(
        Settings(
            catalog_url=pg_url,
            stores={"warm": pg_url, "cold": f"file://{cold}"},
            tiers={"hot": None},
            access={"enabled": False},
            vectors=SPARSE,
        )
    )
    tenant = f"fb-{uuid.uuid4().hex[:12]}"
    rt.service.tenancy.create_tenant(tenant)
    rng = np.random.default_rng(16)
    centres = _unit(rng.standard_normal((CENTRES, DIMS)))
    clustered = _unit(
        centres[np.arange(N_CLUSTERED) % CENTRES] + 0.05 * rng.standard_normal((N_CLUSTERED, DIMS))
    )
    data = np.vstack([_unit(rng.standard_normal((N_RANDOM, DIMS))), clustered]).astype(np.float32)
    with rt.service.engine.begin() as conn:  # catalog rows as a put of small values writes them
        conn.execute(
            text(
                "INSERT INTO key_heads (tenant_id, namespace, key, last_version)"
                " SELECT :t, 'kb', 'v' || i, 1 FROM generate_series(0, :n - 1) i"
            ),
            {"t": tenant, "n": len(data)},
        )
        rows = conn.execute(
            text(
                "INSERT INTO objects (id, tenant_id, namespace, key, version, size, stored_size, sha256,"
                " content_type, compression, tags, home_tier, home_store, inline_data, home_since, state,"
                " created_at, legal_hold)"
                " SELECT liquid_object_id(:t), :t, 'kb', 'v' || i, 1, 1, 1, repeat('0', 64), 'text/plain',"
                " 'none', '{}'::jsonb, 'warm', 'catalog', '\\x00'::bytea, now(), 'live', now(), false"
                " FROM generate_series(0, :n - 1) i RETURNING id, key"
            ),
            {"t": tenant, "n": len(data)},
        ).all()
    row_of = {int(oid): int(key[1:]) for oid, key in rows}
    oid_of = {i: oid for oid, i in row_of.items()}
    index = PgVectorIndex(rt.service.engine, settings=rt.service.settings.vectors)
    for lo in range(0, len(data), 500):
        index.add(
            tenant,
            [
                VectorRecord(oid_of[i], "kb", f"v{i}", 1, data[i].tolist())
                for i in range(lo, min(lo + 500, len(data)))
            ],
            metric="cosine",
        )
    # The HNSW graph is shared by every test's vectors. A vacuum repairs it where other tests
    # deleted theirs, and an autovacuum doing so while these tests compare two searches of the
    # same query changed the answer between them (seen in full-suite runs only): vacuum now, and
    # no autovacuum of the table until these tests are done.
    url = rt.service.engine.url.render_as_string(hide_password=False)
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        conn.execute("ALTER TABLE object_vectors SET (autovacuum_enabled = off)")
        conn.execute("VACUUM object_vectors")
    try:
        yield {"rt": rt, "tenant": tenant, "data": data, "centres": centres, "row_of": row_of, "rng": rng}
    finally:
        with psycopg.connect(conninfo(url), autocommit=True) as conn:
            conn.execute("ALTER TABLE object_vectors RESET (autovacuum_enabled)")
        rt.close()


def _index(world: dict[str, Any], **changes: Any) -> PgVectorIndex:
    settings = VectorSettings(**{**SPARSE, **changes})
    return PgVectorIndex(world["rt"].service.engine, settings=settings)


def _top(
    world: dict[str, Any], index: PgVectorIndex, q: np.ndarray, k: int = 10
) -> tuple[list[int], list[int]]:
    hits = index.search(world["tenant"], q.tolist(), k=k, where=VectorFilter(namespace="kb"))
    exact = np.argsort(-(world["data"] @ q))[:k].tolist()
    return [world["row_of"][h.object_id] for h in hits], exact


def test_random_queries_fall_back_to_the_exact_top_k(world: dict[str, Any]) -> None:
    index = _index(world)
    queries = _unit(world["rng"].standard_normal((8, DIMS))).astype(np.float32)
    for q in queries:
        got, exact = _top(world, index, q)
        assert got == exact
    assert (index.searches, index.exact_fallbacks) == (8, 8)


def test_with_the_fallback_off_a_search_is_the_index_statement_alone(world: dict[str, Any]) -> None:
    """``exact_fallback_max: 0`` is honoured: the answer is the HNSW statement's, whatever it finds.

    (How much that statement misses depends on the plan PostgreSQL picks for this tenant's share
    of the table: the benchmark measures it at 100k, recall@10 0.12 on random queries.)
    """
    index = _index(world, exact_fallback_max=0)
    where = VectorFilter(namespace="kb")
    for q in _unit(world["rng"].standard_normal((4, DIMS))).astype(np.float32):
        hits = index.search(world["tenant"], q.tolist(), k=10, where=where)
        plan = index.query(world["tenant"], q.tolist(), k=10, where=where)
        assert plan is not None
        url = world["rt"].service.engine.url.render_as_string(hide_password=False)
        with psycopg.connect(conninfo(url), autocommit=True) as conn:
            register_vector_dumper(conn)
            conn.execute("SET hnsw.ef_search = 10; SET hnsw.iterative_scan = strict_order")
            rows = conn.execute(plan.sql, plan.params).fetchall()
        assert [h.object_id for h in hits] == [r[0] for r in rows]
    assert (index.searches, index.exact_fallbacks) == (4, 0)


class RecordingIndex(PgVectorIndex):
    """Records each fallback decision with the k-th score of the index's own answer."""

    verdicts: list[tuple[float, bool]]

    def stands(self, conn: Any, q: Any, vector: Any, scores: Any, *, k: int) -> bool:
        verdict = super().stands(conn, q, vector, scores, k=k)
        self.verdicts.append((min(scores), verdict))
        return verdict


def test_queries_near_a_cluster_keep_the_index_answer_unless_the_walk_left_the_cluster(
    world: dict[str, Any],
) -> None:
    """In-cluster hits score ~0.8; the sparse graph sometimes strands a walk among random vectors
    (k-th score < 0.4), and exactly those answers are redone."""
    index = RecordingIndex(world["rt"].service.engine, settings=VectorSettings(**SPARSE))
    index.verdicts = []
    for cluster in np.repeat(np.arange(CENTRES), 3):
        q = _unit(world["centres"][cluster] + 0.05 * world["rng"].standard_normal(DIMS)).astype(np.float32)
        got, _ = _top(world, index, q)
        assert [(i - N_RANDOM) % CENTRES for i in got if i >= N_RANDOM] == [cluster] * 10
    assert all(kept == (kth > 0.6) for kth, kept in index.verdicts), index.verdicts
    assert sum(kept for _, kept in index.verdicts) >= CENTRES  # most stay with the index


def test_sets_over_the_limit_never_fall_back(world: dict[str, Any]) -> None:
    index = _index(world, exact_fallback_max=N_RANDOM)  # the set holds N_RANDOM + N_CLUSTERED
    _top(world, index, _unit(world["rng"].standard_normal(DIMS)).astype(np.float32))
    assert (index.searches, index.exact_fallbacks) == (1, 0)


def test_fewer_hits_than_k_under_a_filter_are_checked_exactly(world: dict[str, Any]) -> None:
    """A filter that matches nothing HNSW reaches still answers with what matches (all of the set)."""
    index = _index(world)
    q = _unit(world["rng"].standard_normal(DIMS)).astype(np.float32)
    hits = index.search(
        world["tenant"], q.tolist(), k=10, where=VectorFilter(namespace="kb", content_type="text/none")
    )
    assert hits == [] and index.exact_fallbacks == 1


def test_the_exact_answer_skips_dead_objects_however_many_are_nearest(world: dict[str, Any]) -> None:
    """The exact scan tests the liveness of its 4k nearest; when dead ones (expired, not yet purged)
    fill them, it is asked again over the whole set and still answers the k nearest live ones."""
    index = _index(world)
    tenant, data, row_of = world["tenant"], world["data"], world["row_of"]
    oid_of = {i: oid for oid, i in row_of.items()}
    q = _unit(world["rng"].standard_normal(DIMS)).astype(np.float32)
    order = np.argsort(-(data @ q)).tolist()
    dead = [oid_of[i] for i in order[:30]]  # more than 4k of the nearest
    engine = world["rt"].service.engine
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE objects SET expires_at = now() - interval '1 hour' WHERE id = ANY(:ids)"),
            {"ids": dead},
        )
    try:
        hits = index.search(tenant, q.tolist(), k=5, where=VectorFilter(namespace="kb"))
        assert index.exact_fallbacks == 1  # a random query: the sparse graph's answer does not stand
        assert [row_of[h.object_id] for h in hits] == order[30:35]
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE objects SET expires_at = NULL WHERE id = ANY(:ids)"), {"ids": dead})


def test_an_old_sample_serves_while_a_new_one_is_read_off_the_request_path(world: dict[str, Any]) -> None:
    """A set's first search reads its sample; later ones use it, and one past its age hands the
    re-read to ``spawn`` (a background thread in production) and answers with the old sample."""
    now = [0.0]
    pending: list[Callable[[], None]] = []
    index = PgVectorIndex(
        world["rt"].service.engine,
        settings=VectorSettings(**SPARSE),
        timer=lambda: now[0],
        spawn=pending.append,
    )
    queries = _unit(world["rng"].standard_normal((5, DIMS))).astype(np.float32)

    def sample() -> SetSample:
        (cached,) = index._samples.values()
        return cached[0]

    got, exact = _top(world, index, queries[0])
    assert got == exact and not pending
    first = sample()
    assert first.n == N_RANDOM + N_CLUSTERED and first.vectors.shape == (SAMPLE_SIZE, DIMS)
    now[0] = SAMPLE_TTL - 1
    _top(world, index, queries[1])
    assert not pending and sample() is first
    now[0] = SAMPLE_TTL + 1
    for q in queries[2:4]:  # both answered with the old sample; one re-read is asked for, not two
        got, exact = _top(world, index, q)
        assert got == exact
    assert len(pending) == 1 and sample() is first
    pending.pop()()
    fresh = sample()
    # Read again, and (the set unchanged) the same rows: the sample is a hash order of the ids.
    assert fresh is not first and fresh.n == first.n and np.array_equal(fresh.vectors, first.vectors)
    _top(world, index, queries[4])
    assert not pending and sample() is fresh
    assert index.exact_fallbacks == index.searches == 5


def test_a_search_on_the_event_loop_answers_as_the_worker_thread_one(world: dict[str, Any]) -> None:
    """``asearch`` (the API's path) runs the same statements: same hits, same fallbacks, same errors;
    its first search of a set reads the sample (in a thread), later ones use the cache."""
    threaded, looped = _index(world), _index(world)
    rng = world["rng"]
    queries = [
        *_unit(rng.standard_normal((3, DIMS))).astype(np.float32),  # the fallback's
        *(
            _unit(world["centres"][c] + 0.05 * rng.standard_normal(DIMS)).astype(np.float32)
            for c in range(CENTRES)
        ),
    ]
    wheres = [
        VectorFilter(namespace="kb"),
        VectorFilter(),
        VectorFilter(namespace="kb", content_type="application/octet-stream"),
    ]
    tenant = world["tenant"]

    def key(hits: list[Any]) -> list[tuple[int, float]]:
        return [(h.object_id, round(h.score, 5)) for h in hits]

    async def main() -> None:
        await looped.astart(max_size=2)
        try:
            assert looped.on_loop()
            for q in queries:
                for where in wheres:
                    want = threaded.search(tenant, q.tolist(), k=10, where=where)
                    got = await looped.asearch(tenant, q.tolist(), k=10, where=where)
                    assert key(got) == key(want) and len(got) == 10
                    assert got[0].live_row.key == want[0].live_row.key
            assert (
                await looped.asearch("nobody-" + uuid.uuid4().hex, queries[0].tolist(), k=3, where=wheres[0])
                == []
            )
            with pytest.raises(DimensionMismatch):
                await looped.asearch(tenant, [1.0, 0.0], k=3, where=wheres[0])
            with pytest.raises(DimensionMismatch):
                await looped.asearch(tenant, [1.0, 0.0], k=3, where=VectorFilter())
        finally:
            await looped.astop()
        assert not looped.on_loop()

    asyncio.run(main())
    assert (looped.searches, looped.exact_fallbacks) == (threaded.searches, threaded.exact_fallbacks)
    assert 0 < looped.exact_fallbacks < looped.searches


def test_a_search_on_the_event_loop_survives_a_killed_connection(world: dict[str, Any]) -> None:
    """A pooled connection the server closed while idle is replaced before the search, not failed on."""
    index = _index(world)
    q = _unit(world["centres"][1]).astype(np.float32).tolist()
    url = world["rt"].service.engine.url.render_as_string(hide_password=False)

    async def main() -> None:
        await index.astart(max_size=1)
        try:
            first = await index.asearch(world["tenant"], q, k=5, where=VectorFilter(namespace="kb"))
            pool = index._apool
            assert pool is not None
            async with pool.connection() as conn:
                pid = conn.info.backend_pid
            with psycopg.connect(conninfo(url), autocommit=True) as admin:
                assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
            await asyncio.sleep(0.2)  # the FATAL message reaches the idle socket
            again = await index.asearch(world["tenant"], q, k=5, where=VectorFilter(namespace="kb"))
            async with pool.connection() as conn:
                assert conn.info.backend_pid != pid
            assert [h.object_id for h in again] == [h.object_id for h in first]
        finally:
            await index.astop()

    asyncio.run(main())


def test_a_search_on_the_event_loop_scores_the_sample_while_the_statement_runs(
    world: dict[str, Any],
) -> None:
    """With the set's sample cached, the fallback's chance statistics are computed while the HNSW
    statement is out at PostgreSQL (the connection busy with it), and the answer is unchanged."""
    index, threaded = _index(world), _index(world)
    tenant, where = world["tenant"], VectorFilter(namespace="kb")
    queries = [
        _unit(world["rng"].standard_normal(DIMS)).astype(np.float32),  # the fallback's
        _unit(world["centres"][2] + 0.05 * world["rng"].standard_normal(DIMS)).astype(np.float32),
    ]
    seen: list[psycopg.pq.TransactionStatus] = []
    chance = index._chance

    def watched(*args: Any) -> Any:
        [conn] = list(index._asession)  # the pool's only connection
        seen.append(conn.info.transaction_status)
        return chance(*args)

    index._chance = watched  # type: ignore[method-assign]

    async def main() -> list[list[tuple[int, float]]]:
        await index.astart(max_size=1)
        try:
            out = []
            for q in [queries[0], *queries]:  # the first search of the set reads its sample
                hits = await index.asearch(tenant, q.tolist(), k=10, where=where)
                out.append([(h.object_id, round(h.score, 5)) for h in hits])
            return out[1:]
        finally:
            await index.astop()

    got = asyncio.run(main())
    want = [
        [(h.object_id, round(h.score, 5)) for h in threaded.search(tenant, q.tolist(), k=10, where=where)]
        for q in queries
    ]
    assert got == want
    # The first search computed them after reading the sample (connection idle), the others with
    # the statement in progress.
    assert seen == [psycopg.pq.TransactionStatus.IDLE, *[psycopg.pq.TransactionStatus.ACTIVE] * 2]
    # The same fallbacks as the worker-thread path (the random query's, searched twice, among them).
    assert threaded.exact_fallbacks >= 1
    assert (index.searches, index.exact_fallbacks) == (3, threaded.exact_fallbacks + 1)


def test_a_search_cancelled_while_its_statement_runs_leaves_nothing_running(world: dict[str, Any]) -> None:
    """A deadline that cancels the search while the statement is out cancels the statement too; the
    pool's connection answers the next search."""
    index = _index(world)
    tenant, where = world["tenant"], VectorFilter(namespace="kb")
    q = _unit(world["centres"][3]).astype(np.float32).tolist()
    chance = index._chance

    def cancelling(*args: Any) -> Any:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        return chance(*args)

    async def main() -> None:
        await index.astart(max_size=1)
        try:
            first = await index.asearch(tenant, q, k=5, where=where)  # reads the sample
            index._chance = cancelling  # type: ignore[method-assign]
            with pytest.raises(asyncio.CancelledError):
                await index.asearch(tenant, q, k=5, where=where)
            statements = [t for t in asyncio.all_tasks() if "_arows" in t.get_coro().__qualname__]
            assert statements == []  # the statement's task was cancelled and awaited, not left behind
            del index._chance
            again = await index.asearch(tenant, q, k=5, where=where)
            assert [h.object_id for h in again] == [h.object_id for h in first] and len(first) == 5
        finally:
            await index.astop()

    asyncio.run(main())


def test_the_fallbacks_cosine_scores_are_numpys_to_the_bit() -> None:
    """The query's norm is taken as ``np.linalg.norm`` takes it for a 1-D array, so the chance
    statistics, and every fallback decision made from them, are the same bits as before."""
    rng = np.random.default_rng(7)
    sample = _unit(rng.standard_normal((SAMPLE_SIZE, 48))).astype(np.float32)
    for scale in (1e-30, 1e-3, 1.0, 1e3, 1e15):  # 1e-30: squares underflow, the norm is 0
        q = (scale * rng.standard_normal(48)).astype(np.float32)
        norm = float(np.linalg.norm(q))
        want = (sample @ q) / (norm if norm > 0 else 1.0)
        got = _scores("cosine", sample, q)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    zero = np.zeros(48, dtype=np.float32)
    assert _scores("cosine", sample, zero).tobytes() == (sample @ zero).tobytes()


def test_every_process_draws_the_same_sample_of_a_set(world: dict[str, Any]) -> None:
    """Two indexes (two API processes) read the same sample of one set, so the fallback's test gives
    them the same verdict for every query: with ``ORDER BY random()`` a query near the threshold got
    the graph's hits from one process and the exact scan's from the other."""
    a, b = _index(world), _index(world)
    q = a.query(world["tenant"], world["centres"][0].tolist(), k=10, where=VectorFilter(namespace="kb"))
    assert q is not None
    first, second = a._load_sample(q), b._load_sample(q)
    assert first.n == second.n and len(first.vectors) == SAMPLE_SIZE
    assert np.array_equal(first.vectors, second.vectors)
    # Spread over the set, not its first or last rows: the clustered vectors (the last fifth) are
    # about a fifth of it.
    clustered = world["data"][-N_CLUSTERED:]
    inside = sum(bool(np.isclose(clustered @ v, 1.0, atol=1e-5).any()) for v in first.vectors)
    assert 0.1 < inside / len(first.vectors) < 0.3, inside
