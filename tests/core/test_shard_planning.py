"""Daemons plan by tenant bucket (``daemon.shard_planning``), a global budget shared by value.

Real daemons (:class:`daemon.tiering.TieringDaemon`, their jobs called in turn) on a catalog of
their own on the test PostgreSQL: rows of tenants in every bucket and rows from before the
partitioning (legacy ids), the applier queueing real journal rows. Checked:

(a) the two daemons plan every bucket exactly once: their states hold disjoint objects whose
    union is every live object, no object is in both daemons' plans, and each change feed and
    read-miss feed hands a daemon only its buckets' ids (legacy ones routed by their tenant);
(b) under a global byte cap on warm, with a hot tenant in one daemon's buckets and a cold one in
    the other's, the two daemons' combined warm set holds at least 95% of the bytes one global
    planner puts there, and the sum of what both plan into warm never exceeds the cap;
(c) a daemon that stops renewing: its buckets are taken over once its leases ran out, and
    planned (and its budget share freed) by the survivor;
(d) the same split on the hot tier, with a Valkey of this module's own: what Redis holds (the
    ledger, after the daemons filled and evicted copies) never exceeds the global hot budget;
(e) a rebuild whose residents are worth budget the other daemon still holds waits a pass (it
    does not evict them to take them back later), and the budget then changes hands.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text

from daemon.tiering import TieringDaemon
from liquid.bootstrap import Runtime, open_runtime
from liquid.catalog import changes, db, partitions
from liquid.catalog.fastpath import conninfo
from liquid.config import Settings
from liquid.embedded import EmbeddedValkey
from liquid.policy.loader import load_policy_text
from liquid.policy.store import apply_policies
from liquid.redis_keys import HOT_MISSED
from liquid.service import LiquidService
from liquid.tiering.engine import ShardMisses
from liquid.tiering.planner import Planner
from liquid.tiering.rows import CatalogRows
from liquid.tiering.state import NO_TIER, TIER_INDEX

NOW = datetime(2034, 3, 1, tzinfo=UTC)
MiB = 1024 * 1024
WARM = TIER_INDEX["warm"]


def policy(cap: int) -> str:
    return f"""
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {{name: all-warm}}
spec:
  rules:
    - {{tier: warm}}
  minResidency: 0s
---
apiVersion: liquid/v1
kind: Budget
metadata: {{name: warm-cap}}
spec:
  tiers:
    warm: {{maxBytes: {cap}}}
"""


def tenant_in(buckets: frozenset[int], tag: str) -> str:
    """A tenant name that hashes into one of ``buckets``."""
    for i in range(10_000):
        name = f"{tag}-{i}"
        if partitions.tenant_bucket(name) in buckets:
            return name
    raise AssertionError(f"no tenant name hashes into {sorted(buckets)}")


class Catalog:
    """A catalog database of this test's own, seeded row by row with ``COPY``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=False)
        self.legacy_seq = 1

    def seed(
        self,
        tenant: str,
        n: int,
        *,
        size: int,
        score: Callable[[int], float],
        legacy: int = 0,
        home: str = "cold",
    ) -> list[int]:
        """``n`` objects of ``tenant`` (the first ``legacy`` with ids from before the partitioning)."""
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO tenants (id, display_name, disabled) VALUES (:t, '', false)"
                    " ON CONFLICT DO NOTHING"
                ),
                {"t": tenant},
            )
            fresh = [
                int(i)
                for i in conn.execute(
                    text("SELECT liquid_object_id(:t) FROM generate_series(1, :n)"),
                    {"t": tenant, "n": n - legacy},
                ).scalars()
            ]
        ids = list(range(self.legacy_seq, self.legacy_seq + legacy)) + fresh
        self.legacy_seq += legacy
        objects, stats = io.StringIO(), io.StringIO()
        for k, oid in enumerate(ids):
            objects.write(
                f"{oid}\t{tenant}\tdata\tk/{k}\t1\t{size}\t{size}\t{'0' * 64}\t"
                "application/octet-stream\tnone\t{}"
                f"\t{(NOW - timedelta(days=2)).isoformat()}\tf\t{home}\t{home}\tl/{oid}\t"
                f"{(NOW - timedelta(days=1)).isoformat()}\tlive\n"
            )
            stats.write(f"{oid}\t{tenant}\t{score(k)}\t10\t{NOW.isoformat()}\t{NOW.isoformat()}\n")
        cols = (
            "id, tenant_id, namespace, key, version, size, stored_size, sha256, content_type, compression,"
            " tags, created_at, legal_hold, home_tier, home_store, locator, home_since, state"
        )
        with psycopg.connect(conninfo(self.url)) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY objects ({cols}) FROM STDIN") as cp:
                cp.write(objects.getvalue())
            with cur.copy(
                "COPY access_stats (object_id, tenant_id, score, hits, last_access_at, updated_at) FROM STDIN"
            ) as cp:
                cp.write(stats.getvalue())
        return ids

    def live(self) -> set[int]:
        with self.engine.connect() as conn:
            return {
                int(i) for i in conn.execute(text("SELECT id FROM objects WHERE state = 'live'")).scalars()
            }


@pytest.fixture
def catalog(fresh_engine: Engine) -> Catalog:
    db.upgrade(fresh_engine, "head")
    return Catalog(fresh_engine)


@pytest.fixture
def daemons(catalog: Catalog, tmp_path: Path) -> Iterator[Callable[..., TieringDaemon]]:
    made: list[Runtime] = []
    ds: list[TieringDaemon] = []

    def make(
        name: str, *, lease: float = 30.0, plan_interval: float = 30.0, hot: str | None = None
    ) -> TieringDaemon:
        stores = {"warm": catalog.url, "cold": f"file://{tmp_path / 'cold'}"}
        if hot is not None:
            stores["hot"] = hot
        rt = open_runtime(
            Settings(
                catalog_url=catalog.url,
                stores=stores,
                tiers={"hot": "hot" if hot is not None else None},
                daemon={"shard_planning": True, "leader_lease": lease, "plan_interval": plan_interval},
            ),
            clock=lambda: NOW,
        )
        made.append(rt)
        d = TieringDaemon(rt, clock=lambda: NOW, worker_id=name)
        ds.append(d)
        return d

    yield make
    for d in ds:
        with contextlib.suppress(Exception):
            d.stop()
    for rt in made:
        rt.close()


def split_buckets(a: TieringDaemon, b: TieringDaemon) -> None:
    """Claim rounds until the two daemons hold 8 buckets each (the second waits for the first's)."""
    for _ in range(2):
        a.job_shards(), b.job_shards()
    assert a.shards is not None and b.shards is not None
    assert len(a.shards.held) == len(b.shards.held) == 8


def placed(d: TieringDaemon) -> dict[int, tuple[int, int]]:
    """The objects in a daemon's planner state: id → (planned tier index, size)."""
    assert d.engine.state is not None
    c = d.engine.state.columns
    live = c.tier[: c.n] != NO_TIER
    return {
        int(i): (int(t), int(s))
        for i, t, s in zip(c.ids[: c.n][live], c.tier[: c.n][live], c.size[: c.n][live], strict=True)
    }


def planned(d: TieringDaemon) -> set[int]:
    return set(placed(d))


def in_warm(d: TieringDaemon) -> dict[int, int]:
    return {i: s for i, (t, s) in placed(d).items() if t == WARM}


def warm_used(*ds: TieringDaemon) -> float:
    """What the daemons plan into warm together (the global cap's use, summed over the shards)."""
    total = 0.0
    for d in ds:
        if d.engine.state is not None and "warm" in d.engine.state.capped:
            total += sum(c.used for c in d.engine.state.capped["warm"].caps if c.tenant is None)
    return total


def test_two_daemons_plan_every_bucket_exactly_once(
    catalog: Catalog, daemons: Callable[..., TieringDaemon]
) -> None:
    a, b = daemons("a"), daemons("b")
    apply_policies(catalog.engine, {"p.yaml": policy(10**12)}, actor="test", clock=lambda: NOW)
    split_buckets(a, b)
    # 48 tenants over the 16 buckets, each with rows from before the partitioning and after.
    for bucket in range(1, partitions.BUCKETS + 1):
        for j in range(3):
            tenant = tenant_in(frozenset({bucket}), f"t{bucket}x{j}")
            catalog.seed(tenant, 6, size=1000 + bucket, score=lambda k: 1.0 + k, legacy=2)
    everything = catalog.live()
    assert {partitions.object_id_bucket(i) for i in everything} == set(range(partitions.BUCKETS + 1))
    pa, pb = a.job_cycle(), b.job_cycle()
    assert pa is not None and pb is not None and pa.kind == pb.kind == "rebuild"
    sa, sb = planned(a), planned(b)
    assert sa.isdisjoint(sb) and sa | sb == everything
    moved_a = {c.object_id for c in pa.changes}
    moved_b = {c.object_id for c in pb.changes}
    assert moved_a and moved_b and moved_a.isdisjoint(moved_b)
    assert moved_a <= sa and moved_b <= sb
    # The journal holds one queued move per object, each from the daemon that plans it.
    with catalog.engine.connect() as conn:
        queued = [int(i) for i in conn.execute(text("SELECT object_id FROM move_journal")).scalars()]
    assert len(queued) == len(set(queued)) and set(queued) == moved_a | moved_b

    # The change feed: each daemon drains only its buckets' ids (a legacy id by its tenant's bucket).
    with catalog.engine.begin() as conn:
        changes.mark_changed(conn, everything)
    got_a, got_b = a.engine.feed.changed(), b.engine.feed.changed()
    assert set(got_a) == sa and set(got_b) == sb
    assert changes.pending(catalog.engine) == 0
    # And a cycle plans what its feed gave it, nothing of the other's.
    with catalog.engine.begin() as conn:
        changes.mark_changed(conn, everything)
    ca, cb = a.job_cycle(), b.job_cycle()
    assert ca is not None and cb is not None and ca.kind == cb.kind == "cycle"
    assert ca.evaluated == len(sa) and cb.evaluated == len(sb)
    assert planned(a) == sa and planned(b) == sb


def test_read_misses_go_to_the_daemon_of_their_bucket(catalog: Catalog, service: LiquidService) -> None:
    access = service.access
    assert access is not None
    half = frozenset(range(1, 9))
    ids_a = catalog.seed(tenant_in(half, "ma"), 5, size=100, score=lambda k: 1.0, legacy=2)
    ids_b = catalog.seed(tenant_in(frozenset(range(9, 17)), "mb"), 5, size=100, score=lambda k: 1.0, legacy=2)
    for oid in ids_a + ids_b[:-1]:
        access.note_miss(oid)
    # An API replica of an earlier release puts every miss in the one shared set.
    access.client.sadd(HOT_MISSED, ids_b[-1])
    a = ShardMisses(access, catalog.engine, lambda: half)
    b = ShardMisses(access, catalog.engine, lambda: frozenset(range(9, 17)))
    got_a, got_b = set(a.missed()), set(b.missed())
    # Other tests' misses may wait in the same Redis: ours must land with their bucket's owner.
    assert set(ids_a) <= got_a and set(ids_b) <= got_b
    assert got_a.isdisjoint(got_b)
    assert not (set(ids_a) | set(ids_b)) & (set(a.missed()) | set(b.missed()))


def test_a_global_cap_is_shared_by_value_close_to_one_planner(
    catalog: Catalog, daemons: Callable[..., TieringDaemon]
) -> None:
    a, b = daemons("a"), daemons("b")
    split_buckets(a, b)
    assert a.shards is not None and b.shards is not None
    bucket_a = frozenset(partitions.bucket_of_partition(n) for n in a.shards.held)
    bucket_b = frozenset(partitions.bucket_of_partition(n) for n in b.shards.held)
    # A cold tenant in a's buckets, a hot one in b's: one global planner would give most of the
    # warm budget to the hot tenant, whose reads save more per byte.
    cold_t, hot_t = tenant_in(bucket_a, "cold"), tenant_in(bucket_b, "hot")
    catalog.seed(cold_t, 120, size=MiB, score=lambda k: 0.5 + 0.01 * k, legacy=10)
    catalog.seed(hot_t, 120, size=MiB, score=lambda k: 2.0 + 0.5 * k, legacy=10)
    cap = 100 * MiB
    apply_policies(catalog.engine, {"p.yaml": policy(cap)}, actor="test", clock=lambda: NOW)

    # What one global planner puts in warm (its rebuild of the whole catalog, nothing applied).
    policies = load_policy_text(policy(cap))
    single_state, _ = Planner(a.settings).rebuild(
        policies,
        CatalogRows(catalog.engine, half_life=a.settings.access.half_life).scan_columns(NOW, policies),
        NOW,
    )
    c = single_state.columns
    one = {
        int(i): int(s)
        for i, s, t in zip(c.ids[: c.n], c.size[: c.n], c.tier[: c.n], strict=True)
        if t == WARM
    }
    assert cap - MiB < sum(one.values()) <= cap

    uses = []
    for _ in range(4):
        for d in (a, b):
            d.job_shards()
            d.job_cycle()
            uses.append(warm_used(a, b))
    assert max(uses) <= cap, f"the shards planned {max(uses)} bytes into warm together, cap {cap}"
    both = in_warm(a) | in_warm(b)
    agree = sum(s for i, s in one.items() if i in both) / sum(one.values())
    print(f"warm agreement with one planner: {agree:.4f}; max combined use {max(uses)} of {cap}")
    assert agree >= 0.95, f"the shards' warm set holds {agree:.1%} of the single planner's bytes"
    assert sum(both.values()) <= cap
    # The split follows value: the hot tenant's shard holds most of the budget, and both agree on it.
    assert b.cap_shares is not None and a.cap_shares is not None
    (grant_b,) = b.cap_shares.grants.values()
    (grant_a,) = a.cap_shares.grants.values()
    assert grant_b.share > 0.8 * cap > grant_a.share
    assert grant_a.granted + grant_b.granted <= cap
    rows = a.cap_shares.rows()
    assert {(h, round(s)) for _, h, _, s, _ in rows} == {
        ("a", round(grant_a.share)),
        ("b", round(grant_b.share)),
    }


def test_a_rebuild_waits_for_budget_rather_than_evicting_residents_it_gets_back(
    catalog: Catalog, daemons: Callable[..., TieringDaemon]
) -> None:
    a, b = daemons("a"), daemons("b")
    split_buckets(a, b)
    assert a.shards is not None and b.shards is not None
    cold_t = tenant_in(frozenset(partitions.bucket_of_partition(n) for n in a.shards.held), "rcold")
    hot_t = tenant_in(frozenset(partitions.bucket_of_partition(n) for n in b.shards.held), "rhot")
    # Everything is in warm already, 240 MiB against a 100 MiB cap.
    catalog.seed(cold_t, 120, size=MiB, score=lambda k: 0.5 + 0.01 * k, home="warm")
    catalog.seed(hot_t, 120, size=MiB, score=lambda k: 2.0 + 0.5 * k, home="warm")
    cap = 100 * MiB
    apply_policies(catalog.engine, {"p.yaml": policy(cap)}, actor="test", clock=lambda: NOW)
    first = a.job_cycle()  # b has not published: a plans under the whole cap
    assert first is not None and warm_used(a, b) <= cap
    # b's residents are worth the cap but a holds it: b waits instead of evicting them.
    assert b.job_cycle() is None and b.engine.state is None
    assert b.metrics.shares_deferred._value.get() == 1
    assert warm_used(a, b) <= cap
    shrunk = a.job_cycle()  # a learns b's demand and gives back
    assert shrunk is not None and warm_used(a, b) <= cap
    assert sum(in_warm(a).values()) < 10 * MiB
    grown = b.job_cycle()
    assert grown is not None and grown.kind == "rebuild"
    assert warm_used(a, b) <= cap
    kept = in_warm(b)
    assert sum(kept.values()) > cap - 2 * MiB
    # b evicted only its own least valuable residents, never more than it had to.
    evicted = [c for c in grown.changes if c.action == "move" and c.from_tier == "warm"]
    assert len(evicted) <= 120 - len(kept)


def expire(engine: Engine, holder: str) -> None:
    """What a lease's length without renewal does to a stopped daemon's rows (see test_shards.py)."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE daemon_leases SET expires_at = now() - interval '1 second' WHERE holder = :h"),
            {"h": holder},
        )
        conn.execute(
            text("UPDATE tiering_shares SET expires_at = now() - interval '1 second' WHERE holder = :h"),
            {"h": holder},
        )


def test_a_stopped_daemons_buckets_are_taken_over_after_the_lease(
    catalog: Catalog, daemons: Callable[..., TieringDaemon]
) -> None:
    a, b = daemons("a"), daemons("b")
    split_buckets(a, b)
    for t in range(32):
        catalog.seed(f"s{t:02d}", 4, size=MiB, score=lambda k: 1.0 + k, legacy=1)
    cap = 40 * MiB
    apply_policies(catalog.engine, {"p.yaml": policy(cap)}, actor="test", clock=lambda: NOW)
    everything = catalog.live()
    for _ in range(2):
        for d in (a, b):
            d.job_shards()
            d.job_cycle()
    assert planned(a) | planned(b) == everything and planned(a).isdisjoint(planned(b))
    assert warm_used(a, b) <= cap
    lost = planned(b)
    # b stops without a word (no release): while its leases last, a keeps to its own share...
    claim = a.job_shards()
    assert claim is not None and len(claim.held) == 8 and claim.members == 2 and not claim.taken
    assert a.job_cycle() is not None and planned(a) | lost == everything
    # ...and once they ran out, a takes every bucket, rebuilds, and plans b's objects too.
    expire(catalog.engine, "b")
    claim = a.job_shards()
    assert claim is not None and len(claim.held) == partitions.BUCKETS and claim.members == 1
    assert len(claim.taken) == 8
    plan = a.job_cycle()
    assert plan is not None and plan.kind == "rebuild"
    assert planned(a) == everything and lost <= planned(a)
    # b's budget share ran out with it: a now holds the whole cap.
    assert a.cap_shares is not None
    (grant,) = a.cap_shares.grants.values()
    assert grant.shards == 1 and grant.granted == pytest.approx(cap)
    assert warm_used(a) <= cap
    a.job_cycle()
    assert sum(s for s in in_warm(a).values()) > cap - 2 * MiB  # it grew into b's part


HOT_POLICY = """
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {{name: hot-when-read}}
spec:
  rules:
    - {{tier: hot, promoteAbove: 1/h, demoteBelow: 0.5/h}}
    - {{tier: warm}}
  minResidency: 0s
---
apiVersion: liquid/v1
kind: Budget
metadata: {{name: hot-cap}}
spec:
  tiers:
    hot: {{maxBytes: {cap}}}
"""


@pytest.fixture(scope="module")
def own_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Valkey of this module's own: the shards' hot ledgers must not see other tests' copies."""
    server = EmbeddedValkey(tmp_path_factory.mktemp("shard-valkey"))
    try:
        yield server.start()
    finally:
        server.stop()


def test_the_hot_tiers_global_budget_is_shared_and_redis_stays_within_it(
    catalog: Catalog, daemons: Callable[..., TieringDaemon], own_valkey: str
) -> None:
    a, b = daemons("a", hot=own_valkey), daemons("b", hot=own_valkey)
    split_buckets(a, b)
    assert a.shards is not None and b.shards is not None
    svc = a.service
    assert svc.hot is not None
    cold_t = tenant_in(frozenset(partitions.bucket_of_partition(n) for n in a.shards.held), "hcold")
    hot_t = tenant_in(frozenset(partitions.bucket_of_partition(n) for n in b.shards.held), "hhot")
    size = 20 * 1024
    ids: dict[str, list[int]] = {}
    for t in (cold_t, hot_t):
        svc.tenancy.create_tenant(t)
        ids[t] = []
        for k in range(40):
            svc.put(t, "data", f"o{k:02d}", bytes([k]) * size)
    with catalog.engine.begin() as conn:
        for t, rate in ((cold_t, lambda k: 2.0 + 0.05 * k), (hot_t, lambda k: 20.0 + 2.0 * k)):
            got = conn.execute(
                text("SELECT id FROM objects WHERE tenant_id = :t ORDER BY key"), {"t": t}
            ).scalars()
            ids[t] = [int(i) for i in got]
            conn.execute(
                text(
                    "INSERT INTO access_stats (object_id, tenant_id, score, hits, last_access_at, updated_at)"
                    " SELECT unnest(CAST(:ids AS bigint[])), :t, unnest(CAST(:s AS float8[])), 10, :now, :now"
                    " ON CONFLICT (object_id) DO UPDATE SET score = excluded.score,"
                    " last_access_at = excluded.last_access_at"
                ),
                {"ids": ids[t], "t": t, "s": [rate(k) for k in range(len(ids[t]))], "now": NOW},
            )
        changes.mark_changed(conn, ids[cold_t] + ids[hot_t])
    cap = 30 * (size + 512)
    apply_policies(catalog.engine, {"p.yaml": HOT_POLICY.format(cap=cap)}, actor="test", clock=lambda: NOW)

    policies = load_policy_text(HOT_POLICY.format(cap=cap))
    single, _ = Planner(a.settings).rebuild(
        policies,
        CatalogRows(catalog.engine, half_life=a.settings.access.half_life).scan_columns(NOW, policies),
        NOW,
    )
    one = dict(single.hot.members)
    assert cap - size - 1024 < sum(one.values()) <= cap

    in_redis, planned_hot = [], []
    for _ in range(4):
        for d in (a, b):
            d.job_shards()
            d.job_cycle()
            planned_hot.append(sum(x.engine.state.hot.bytes for x in (a, b) if x.engine.state is not None))
            in_redis.append(svc.hot.used_bytes())
    assert max(planned_hot) <= cap and max(in_redis) <= cap, (planned_hot, in_redis)
    both = {**a.engine.state.hot.members, **b.engine.state.hot.members}  # type: ignore[union-attr]
    agree = sum(s for i, s in one.items() if i in both) / sum(one.values())
    print(f"hot agreement with one planner: {agree:.4f}; Redis held at most {max(in_redis)} of {cap}")
    assert agree >= 0.95
    assert in_redis[-1] > cap // 2, "the hot tier should fill up to near its budget"
