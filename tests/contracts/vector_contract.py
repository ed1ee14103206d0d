"""The contract every :class:`liquid.vectors.base.VectorIndex` backend passes, through :class:`VectorSearch`.

A backend's test module supplies one fixture, ``vector_index_url`` (``catalog`` for
pgvector, ``qdrant+memory://`` for Qdrant local mode), then ``class TestX(VectorContract):
pass`` runs everything against real objects in a real catalog: exact answers on small
sets, filters, tenant isolation (also with crafted filters and namespaces), dimension
mismatch, delete/expiry/purge cascades, vectors surviving tier moves, k bounds, bad input.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from liquid.bootstrap import Runtime, open_runtime
from liquid.config import CATALOG_STORE, MoverSettings, Settings
from liquid.errors import DimensionMismatch, InvalidInput, ObjectGone, ObjectNotFound
from liquid.refs import ResultRef
from liquid.tiering.journal import enqueue_move, enqueue_purge
from liquid.tiering.mover import Mover
from liquid.vectors import Embedding, VectorFilter
from liquid.vectors.search import VectorSearch
from tests.fakes import FakeClock

DIMS = 8


def _settings(pg_url: str, cold: Path, index_url: str) -> Settings:
    vectors: dict[str, Any] = (
        {"default": CATALOG_STORE}
        if index_url == CATALOG_STORE
        else {"default": "main", "indexes": {"main": index_url}}
    )
    return Settings(
        catalog_url=pg_url,
        stores={"warm": pg_url, "cold": f"file://{cold}"},
        tiers={"hot": None},
        access={"enabled": False},
        vectors={**vectors, "max_k": 50, "max_batch": 100},
    )


def _unit(rng: np.random.Generator, n: int, dims: int = DIMS) -> np.ndarray:
    v = rng.standard_normal((n, dims))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class VectorContract:
    @pytest.fixture(scope="class")
    @classmethod
    def rt(
        cls, pg_url: str, tmp_path_factory: pytest.TempPathFactory, vector_index_url: str
    ) -> Iterator[Runtime]:
        runtime = open_runtime(_settings(pg_url, tmp_path_factory.mktemp("cold"), vector_index_url))
        yield runtime
        runtime.close()

    @pytest.fixture
    def vs(self, rt: Runtime) -> Iterator[VectorSearch]:
        search = VectorSearch(rt.service.settings, engine=rt.service.engine)
        yield search
        search.close()

    @pytest.fixture
    def tenant(self, rt: Runtime) -> str:
        name = f"v-{uuid.uuid4().hex[:12]}"
        rt.service.tenancy.create_tenant(name)
        return name

    @pytest.fixture
    def other(self, rt: Runtime) -> str:
        name = f"w-{uuid.uuid4().hex[:12]}"
        rt.service.tenancy.create_tenant(name)
        return name

    def _fill(
        self, rt: Runtime, vs: VectorSearch, tenant: str, vectors: np.ndarray, ns: str = "kb", **put: Any
    ) -> list[ResultRef]:
        refs = []
        for i, v in enumerate(vectors):
            ref = rt.service.put(tenant, ns, f"doc-{i}", f"body {i}".encode(), **put).ref
            vs.attach(tenant, ref, [Embedding(v.tolist())], metric=put.get("metric"))
            refs.append(ref)
        return refs

    # ----------------------------------------------------------- exactness

    @pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
    def test_small_sets_give_the_exact_top_k(
        self, rt: Runtime, vs: VectorSearch, tenant: str, metric: str
    ) -> None:
        rng = np.random.default_rng(7)
        data = rng.standard_normal((40, DIMS))
        refs = []
        for i, v in enumerate(data):
            ref = rt.service.put(tenant, "kb", f"doc-{i}", f"body {i}".encode()).ref
            vs.attach(tenant, ref, [Embedding(v.tolist())], metric=metric)  # type: ignore[arg-type]
            refs.append(ref)
        q = rng.standard_normal(DIMS)
        if metric == "cosine":
            scores = (data / np.linalg.norm(data, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
        elif metric == "ip":
            scores = data @ q
        else:
            scores = -np.linalg.norm(data - q, axis=1)
        expect = [refs[i] for i in np.argsort(-scores)[:5]]
        got = vs.search(tenant, q.tolist(), k=5, ef_search=200)
        assert [r.ref.ref for r in got] == expect
        assert [r.score for r in got] == pytest.approx(sorted(scores, reverse=True)[:5], rel=1e-4, abs=1e-4)
        top = got[0]
        assert top.ref.inline == f"body {refs.index(top.ref.ref)}".encode()  # small values come inline
        assert vs.index().space(tenant, "kb").metric == metric  # type: ignore[union-attr]

    def test_chunks_carry_ids_and_spans_and_replace_by_chunk_id(
        self, rt: Runtime, vs: VectorSearch, tenant: str
    ) -> None:
        ref = rt.service.put(tenant, "kb", "long", b"x" * 300).ref
        axes = np.eye(DIMS)
        chunks = [
            Embedding(axes[i].tolist(), chunk_id=f"c{i}", span=(i * 100, i * 100 + 100)) for i in range(3)
        ]
        assert vs.attach(tenant, ref, chunks) == 3
        (hit,) = vs.search(tenant, axes[1].tolist(), k=1)
        assert (hit.chunk_id, hit.span, hit.ref.ref) == ("c1", (100, 200), ref)
        vs.attach(tenant, ref, [Embedding(axes[5].tolist(), chunk_id="c1", span=(7, 9))])
        hits = vs.search(tenant, axes[5].tolist(), k=3)
        assert (hits[0].chunk_id, hits[0].span) == ("c1", (7, 9)) and len(hits) == 3  # replaced, not added

    # -------------------------------------------------------------- filters

    def test_filters_on_tags_namespace_content_type_and_classification(
        self, rt: Runtime, vs: VectorSearch, tenant: str
    ) -> None:
        rng = np.random.default_rng(1)
        data = _unit(rng, 30)
        for i, v in enumerate(data):
            ns = "kb" if i % 3 else "other"
            ref = rt.service.put(
                tenant,
                ns,
                f"d{i}",
                b"x",
                tags={"team": "red" if i % 2 else "blue", "n": str(i)},
                content_type="text/plain" if i % 5 else "text/markdown",
                classification="secret" if i % 7 == 0 else "public",
            ).ref
            vs.attach(tenant, ref, [Embedding(v.tolist())])
        q = data[0].tolist()

        def idx(where: VectorFilter) -> set[int]:
            return {int(r.ref.ref.key[1:]) for r in vs.search(tenant, q, k=50, where=where)}

        assert idx(VectorFilter(tags={"team": "red"})) == {i for i in range(30) if i % 2}
        assert idx(VectorFilter(tags={"team": "red", "n": "3"})) == {3}
        assert idx(VectorFilter(namespace="other")) == {i for i in range(30) if i % 3 == 0}
        assert idx(VectorFilter(content_type="text/markdown")) == {0, 5, 10, 15, 20, 25}
        assert idx(VectorFilter(classification="secret", namespace="kb")) == {7, 14, 28}
        assert idx(VectorFilter(tags={"team": "green"})) == set()
        # A selective filter still yields k matches when there are k.
        assert len(vs.search(tenant, q, k=3, where=VectorFilter(tags={"team": "blue"}))) == 3

    # ------------------------------------------------------- tenant isolation

    def test_a_tenant_never_finds_another_tenants_vectors(
        self, rt: Runtime, vs: VectorSearch, tenant: str, other: str
    ) -> None:
        rng = np.random.default_rng(3)
        mine = self._fill(rt, vs, tenant, _unit(rng, 5), tags={"team": "a"})
        theirs = self._fill(rt, vs, other, _unit(rng, 5), tags={"team": "a"}, classification="c")
        for q in [*_unit(rng, 3), *(np.array([0.0] * DIMS) + np.eye(DIMS)[0],)]:
            for where in (
                VectorFilter(),
                VectorFilter(namespace="kb"),
                VectorFilter(tags={"team": "a"}),
                VectorFilter(tags={"tenant_id": other}),
                VectorFilter(tags={"team": "a') OR ('1'='1"}),
                VectorFilter(classification="c"),
                VectorFilter(content_type="' OR tenant_id <> '"),
            ):
                found = {r.ref.ref for r in vs.search(tenant, q.tolist(), k=50, where=where)}
                assert found <= set(mine) and not found & set(theirs)
        # The other tenant's exact vector finds nothing of theirs either.
        assert {r.ref.ref.tenant for r in vs.search(tenant, [1.0] + [0.0] * (DIMS - 1), k=50)} <= {tenant}
        for crafted in (f"{other}+kb", "kb+x", "KB", "../kb", ""):
            with pytest.raises(InvalidInput):
                vs.search(tenant, [1.0] * DIMS, where=VectorFilter(namespace=crafted))
        with pytest.raises(ObjectNotFound):
            vs.attach(tenant, theirs[0], [Embedding([1.0] * DIMS)])  # another tenant's ref
        with pytest.raises(ObjectNotFound):
            vs.attach(tenant, ResultRef(tenant, "kb", "no-such-key", 1), [Embedding([1.0] * DIMS)])

    def test_a_tenant_without_vectors_finds_nothing(
        self, vs: VectorSearch, tenant: str, other: str, rt: Runtime
    ) -> None:
        self._fill(rt, vs, other, _unit(np.random.default_rng(5), 3))
        assert vs.search(tenant, [1.0] * DIMS, k=10) == []

    # ------------------------------------------------------------ dimensions

    def test_dimension_is_fixed_by_the_first_write_and_a_mismatch_is_clear(
        self, rt: Runtime, vs: VectorSearch, tenant: str
    ) -> None:
        a = rt.service.put(tenant, "kb", "a", b"a").ref
        b = rt.service.put(tenant, "kb", "b", b"b").ref
        vs.attach(tenant, a, [Embedding([1.0] * DIMS)])
        with pytest.raises(DimensionMismatch, match=f"9 dimensions.*'kb' holds {DIMS}-dimensional") as err:
            vs.attach(tenant, b, [Embedding([1.0] * 9, chunk_id="x"), Embedding([2.0] * 9, chunk_id="y")])
        assert err.value.status == 422
        with pytest.raises(InvalidInput, match="one length"):
            vs.attach(
                tenant, b, [Embedding([1.0] * DIMS, chunk_id="ok"), Embedding([1.0] * 9, chunk_id="bad")]
            )
        assert [r.ref.ref for r in vs.search(tenant, [1.0] * DIMS, k=10)] == [a]  # nothing of b was kept
        with pytest.raises(DimensionMismatch):
            vs.search(tenant, [1.0] * 9, where=VectorFilter(namespace="kb"))
        with pytest.raises(DimensionMismatch):
            vs.search(tenant, [1.0] * 9)
        other_ns = rt.service.put(tenant, "kb2", "c", b"c").ref
        vs.attach(tenant, other_ns, [Embedding([1.0] * 9)])  # another namespace has its own dimension
        assert [r.ref.ref for r in vs.search(tenant, [1.0] * 9, k=10)] == [other_ns]

    # -------------------------------------------------------------- cascades

    def _raw_ids(self, vs: VectorSearch, tenant: str, q: list[float]) -> set[int]:
        return {h.object_id for h in vs.index().search(tenant, q, k=50, where=VectorFilter())}

    def _oid(self, rt: Runtime, ref: ResultRef) -> int:
        with rt.service.engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT id FROM objects WHERE tenant_id=:t AND namespace=:n AND key=:k AND version=:v"
                    ),
                    {"t": ref.tenant, "n": ref.namespace, "k": ref.key, "v": ref.version},
                ).scalar_one()
            )

    @pytest.mark.parametrize("size", [10, 200_000], ids=["in-row", "in-store"])
    def test_delete_removes_the_vectors(self, rt: Runtime, vs: VectorSearch, tenant: str, size: int) -> None:
        keep, gone = (rt.service.put(tenant, "kb", k, b"z" * size).ref for k in ("keep", "gone"))
        vs.attach(tenant, keep, [Embedding([1.0] * DIMS)])
        vs.attach(tenant, gone, [Embedding([1.0] * DIMS, chunk_id=c) for c in ("a", "b")])
        rt.service.delete(tenant, gone)
        vs.sweep()
        assert [r.ref.ref for r in vs.search(tenant, [1.0] * DIMS, k=10)] == [keep]
        assert self._raw_ids(vs, tenant, [1.0] * DIMS) == {self._oid(rt, keep)}  # gone from the index itself
        with pytest.raises(ObjectGone):
            vs.attach(tenant, gone, [Embedding([1.0] * DIMS)])

    def test_expiry_purge_removes_the_vectors_and_moves_keep_them(
        self, rt: Runtime, vs: VectorSearch, tenant: str
    ) -> None:
        expiring, moving = (
            rt.service.put(tenant, "kb", k, b"m" * 200_000).ref for k in ("expiring", "moving")
        )
        vs.attach(tenant, expiring, [Embedding([1.0] * DIMS)])
        vs.attach(tenant, moving, [Embedding([0.5] * DIMS)])
        clock = FakeClock(datetime.now(UTC))
        mover = Mover.from_service(rt.service, clock=clock, settings=MoverSettings(grace_period=0))
        assert (
            enqueue_move(rt.service.engine, self._oid(rt, moving), "cold", "cold", reason="demote")
            is not None
        )
        assert enqueue_purge(
            rt.service.engine, self._oid(rt, expiring), reason="retention: test", now=clock()
        )
        mover.run_once()
        vs.sweep()
        with rt.service.engine.connect() as conn:
            home = conn.execute(
                text("SELECT home_tier, state FROM objects WHERE id = :i"), {"i": self._oid(rt, moving)}
            ).one()
            purged = conn.execute(
                text("SELECT state FROM objects WHERE id = :i"), {"i": self._oid(rt, expiring)}
            ).scalar_one()
        assert tuple(home) == ("cold", "live") and purged == "purged"
        assert [r.ref.ref for r in vs.search(tenant, [1.0] * DIMS, k=10)] == [moving]
        assert self._raw_ids(vs, tenant, [1.0] * DIMS) == {self._oid(rt, moving)}

    # --------------------------------------------------------- bounds, input

    def test_k_bounds(self, rt: Runtime, vs: VectorSearch, tenant: str) -> None:
        self._fill(rt, vs, tenant, _unit(np.random.default_rng(2), 4))
        assert len(vs.search(tenant, [1.0] * DIMS, k=50)) == 4  # k above n gives n
        assert len(vs.search(tenant, [1.0] * DIMS, k=1)) == 1
        for k in (0, -1, 51, 1.5, True):
            with pytest.raises(InvalidInput, match="k must be"):
                vs.search(tenant, [1.0] * DIMS, k=k)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "vector",
        [
            [],
            [math.nan] * DIMS,
            [math.inf] * DIMS,
            [1e39] + [0.0] * (DIMS - 1),
            ["1"] * DIMS,
            "abc",
            [True] * DIMS,
            [1.0] * 2001,
            None,
        ],
        ids=["empty", "nan", "inf", "float32-overflow", "strings", "str", "bools", "too-long", "none"],
    )
    def test_bad_vectors_are_refused_and_nothing_is_stored(
        self, rt: Runtime, vs: VectorSearch, tenant: str, vector: Any
    ) -> None:
        ref = rt.service.put(tenant, "kb", "x", b"x").ref
        with pytest.raises(InvalidInput):
            vs.attach(tenant, ref, [Embedding(vector)])
        with pytest.raises(InvalidInput):
            vs.search(tenant, vector)
        assert vs.index().space(tenant, "kb") is None

    def test_a_zero_vector_has_no_cosine_direction_but_is_a_point_under_l2(
        self, rt: Runtime, vs: VectorSearch, tenant: str
    ) -> None:
        zero = [0.0] * DIMS
        a = rt.service.put(tenant, "kb", "a", b"a").ref
        with pytest.raises(InvalidInput, match="all zeros"):  # a first write: nothing fixed
            vs.attach(tenant, a, [Embedding(zero)], metric="cosine")
        assert vs.index().space(tenant, "kb") is None
        with pytest.raises(InvalidInput, match="all zeros"):  # nor in a batch after a good one
            vs.attach(tenant, a, [Embedding([1.0] * DIMS), Embedding(zero, chunk_id="z")], metric="cosine")
        assert vs.index().space(tenant, "kb") is None
        vs.attach(tenant, a, [Embedding([1.0] * DIMS)], metric="cosine")
        with pytest.raises(InvalidInput, match="all zeros"):
            vs.search(tenant, zero, where=VectorFilter(namespace="kb"))
        with pytest.raises(InvalidInput, match="all zeros"):
            vs.search(tenant, zero)
        p = rt.service.put(tenant, "points", "origin", b"o").ref
        vs.attach(tenant, p, [Embedding(zero)], metric="l2")
        (hit,) = vs.search(tenant, [0.5] * DIMS, k=1, where=VectorFilter(namespace="points"))
        assert hit.ref.ref == p and math.isclose(hit.score, -math.sqrt(DIMS * 0.25), rel_tol=1e-5)

    def test_expired_and_deleted_objects_do_not_take_a_live_neighbours_place(
        self, rt: Runtime, tenant: str
    ) -> None:
        """The nearest ones are dead (expired, or deleted and not yet swept out of an external
        index): the k live ones behind them still come back."""
        now = datetime.now(UTC)
        clock = FakeClock(now)
        vs = VectorSearch(rt.service.settings, engine=rt.service.engine, clock=clock)
        try:
            live = []
            for i in range(12):  # dead ones nearest the query, the live ones behind them
                v = [1.0] * DIMS
                v[1] = 1.0 + i / 10
                if i < 8:
                    ref = rt.service.put(
                        tenant, "kb", f"dead-{i}", b"d", expires_at=now + timedelta(minutes=5)
                    ).ref
                else:
                    ref = rt.service.put(tenant, "kb", f"live-{i}", b"l").ref
                    live.append(ref)
                vs.attach(tenant, ref, [Embedding(v)])
            gone = rt.service.put(tenant, "kb", "gone", b"g").ref
            vs.attach(tenant, gone, [Embedding([1.0] * DIMS)])  # the nearest of all
            rt.service.delete(tenant, gone)  # no sweep
            clock.advance(minutes=10)  # past the expiry; nothing has purged the expired ones
            for k in (1, 3, 20):
                got = [r.ref.ref for r in vs.search(tenant, [1.0] * DIMS, k=k)]
                assert got == live[:k], (k, got)
        finally:
            vs.close()

    def test_a_tag_filter_matches_keys_and_values_exactly_whatever_they_contain(
        self, rt: Runtime, vs: VectorSearch, tenant: str
    ) -> None:
        tagged = {
            "k1": {"a=b": "c"},
            "k2": {"a": "b=c"},
            "k3": {"a%3Db": "c"},
            "k4": {"a": "b", "x": "y"},
        }
        for key, tags in tagged.items():
            ref = rt.service.put(tenant, "kb", key, b"t", tags=tags).ref
            vs.attach(tenant, ref, [Embedding([1.0] * DIMS)])
        for want, tags in tagged.items():
            found = vs.search(tenant, [1.0] * DIMS, k=10, where=VectorFilter(tags=tags))
            assert [r.ref.ref.key for r in found] == [want], (tags, found)

    def test_bad_chunks_and_batches_are_refused(self, rt: Runtime, vs: VectorSearch, tenant: str) -> None:
        ref = rt.service.put(tenant, "kb", "x", b"x").ref
        v = [1.0] * DIMS
        for bad in (
            [],
            [Embedding(v)] * 101,
            [Embedding(v, chunk_id="a"), Embedding(v, chunk_id="a")],
            [Embedding(v, chunk_id="x" * 257)],
            [Embedding(v, span=(5, 2))],
            [Embedding(v, span=(-1, 2))],
        ):
            with pytest.raises(InvalidInput):
                vs.attach(tenant, ref, bad)
        with pytest.raises(InvalidInput, match="metric"):
            vs.attach(tenant, ref, [Embedding(v)], metric="hamming")  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="no vector index named 'nope'"):
            vs.search(tenant, v, index="nope")
        with pytest.raises(InvalidInput, match="ef_search"):
            vs.search(tenant, v, ef_search=0)
        assert vs.index().space(tenant, "kb") is None
