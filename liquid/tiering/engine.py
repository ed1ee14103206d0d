"""The tiering engine: the one entry point that plans and applies, for the daemon and the benchmark alike.

:class:`TieringEngine` owns a :class:`~liquid.tiering.state.PlacementState` and runs three
kinds of pass, each ``read → plan → apply``:

* :meth:`~TieringEngine.rebuild` — every live object (a catalog scan) into a fresh state; at
  start, after a policy apply (a new policy version), after leadership changes hands, and
  after any pass that failed half way. The hot tier starts from what Redis holds (the
  ledger), so a restart evicts only what the plan no longer wants.
* :meth:`~TieringEngine.cycle` — only the objects in the change feed (written, read,
  moved, deleted, expired, a finished execution) and those whose deadline came; a cycle
  costs what changed.
* :meth:`~TieringEngine.admit` — hot copies for objects just read from their home.

:meth:`~TieringEngine.dry_run` is a rebuild that applies nothing and leaves the state alone
(``liquid policy plan``).

Everything comes in through the constructor: where rows come from, the change feed, the
read misses, the hot ledger, the policies, the applier and the clock. Production wires the
catalog and Redis (:func:`catalog_engine`); the placement benchmark wires a replayed
trace to the same class and calls the same methods.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Engine, text

from liquid.access import AccessTracker
from liquid.catalog import changes, partitions
from liquid.hotcache import HotCache
from liquid.policy.models import PolicySet
from liquid.policy.store import active_policies
from liquid.redis_keys import HOT_ADAPTIVE
from liquid.service import LiquidService
from liquid.tiering.apply import Applier, ApplyReport, CatalogApplier
from liquid.tiering.plan import Plan
from liquid.tiering.planner import Planner
from liquid.tiering.readclock import TRACKER
from liquid.tiering.rows import CatalogRows, ColumnBatch, Row, RowSource
from liquid.tiering.state import PlacementState

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class ChangeFeed(Protocol):
    def changed(self) -> list[int]:
        """Ids of objects whose facts changed since the last call (each call takes them)."""
        ...


class MissFeed(Protocol):
    def missed(self) -> list[int]:
        """Ids of objects read from their home since the last call."""
        ...


class HotLedger(Protocol):
    def residents(self) -> dict[int, tuple[str, int]]:
        """Copies in the hot tier now: object id → (ref without ``liquid://``, bytes)."""
        ...


class PolicySource(Protocol):
    def version(self) -> int | None:
        """The current policy version (cheap; None when none is applied)."""
        ...

    def current(self) -> tuple[PolicySet, int | None] | None:
        """The current policy set and its version, or None when none is applied."""
        ...


class TieringEngine:
    """Plans and applies placements (see the module docstring).

    Args:
        planner: decisions and budgets.
        rows: where objects' facts are read.
        applier: what carries plans out.
        policies: the applied policies.
        feed: the change feed.
        misses: objects read from their home (None: no read-path admission).
        hot: the hot tier's ledger (None: start from an empty hot tier).
        clock: current UTC time.
    """

    def __init__(
        self,
        planner: Planner,
        rows: RowSource,
        applier: Applier,
        *,
        policies: PolicySource,
        feed: ChangeFeed,
        misses: MissFeed | None = None,
        hot: HotLedger | None = None,
        clock: Clock,
    ) -> None:
        self.planner = planner
        self.rows = rows
        self.applier = applier
        self.policies = policies
        self.feed = feed
        self.misses = misses
        self.hot = hot
        self.clock = clock
        self.state: PlacementState | None = None
        self.last_plan: Plan | None = None
        #: The last rebuild's or cycle's plan (admission passes report the hot tier only).
        self.last_cycle: Plan | None = None
        self.last_report: ApplyReport | None = None
        self.passes: dict[str, int] = {"rebuild": 0, "cycle": 0, "admit": 0}
        self._published = -math.inf  # monotonic time the adaptive state was last saved
        self._restored = False

    def __repr__(self) -> str:
        return f"TieringEngine({self.state!r}, passes={self.passes})"

    def invalidate(self) -> None:
        """Drop the state: the next :meth:`cycle` rebuilds (leadership changed, a pass failed)."""
        self.state = None

    # ------------------------------------------------------------------ passes

    def rebuild(self) -> Plan | None:
        """Plan every live object into a fresh state and apply it; None when no policy is applied."""
        current = self.policies.current()
        if current is None:
            self.state = None
            return None
        policies, version = current
        # Whatever is in the feed now is read by the scan; what arrives during it, next cycle.
        self.feed.changed()
        now = self.clock()
        residents = self._residents()
        if not self._restored:
            self._restore()
        try:
            state, plan = self.planner.rebuild(
                policies,
                self.rows.scan_columns(now, policies),
                now,
                policy_version=version,
                hot_residents=residents,
            )
            self.state = state
            self._apply(plan)
        except BaseException:
            self.state = None
            raise
        self.passes["rebuild"] += 1
        return plan

    def cycle(self) -> Plan | None:
        """Plan what changed or came due (rebuilding first when needed) and apply it."""
        state = self.state
        if state is None or self.policies.version() != state.policy_version:
            return self.rebuild()
        now = self.clock()
        try:
            ids = set(self.feed.changed())
            ids.update(int(i) for i in state.columns.take_due(now.timestamp()))
            wanted = sorted(ids)
            batch = self.rows.columns(wanted, now, state.policies)
            live = {int(i) for i in batch.ids}
            gone = [i for i in wanted if i not in live]
            # A new version supersedes its predecessor: that one's facts changed too.
            known = state.columns.find_many(sorted(live))
            newer = [
                int(i) for i, v in zip(batch.ids, batch.version, strict=True) if v > 1 and i not in known
            ]
            if newer:
                new_rows = batch.rows(np.nonzero(np.isin(batch.ids, newer))[0])
                older = [r for r in self.rows.predecessors(new_rows, now) if r.object_id not in live]
                batch = ColumnBatch.concat([batch, ColumnBatch.of_rows(older)])
            plan = self.planner.cycle(state, batch, gone, now)
            self._apply(plan)
        except BaseException:
            self.state = None  # the feed was taken: only a rebuild is sure to see everything again
            raise
        self.passes["cycle"] += 1
        return plan

    def admit(self) -> Plan | None:
        """Consider hot copies for objects read from their home since the last call."""
        if self.misses is None or self.state is None:
            return None
        ids = self.misses.missed()
        if not ids:
            return None
        try:
            now = self.clock()
            plan = self.planner.admit(self.state, self.rows.rows(ids, now), now)
            self._apply(plan)
        except BaseException:
            self.state = None
            raise
        self.passes["admit"] += 1
        return plan

    def dry_run(self, policies: PolicySet, version: int | None = None) -> Plan:
        """A rebuild under ``policies`` that applies nothing and keeps the engine's state."""
        now = self.clock()
        self.planner.learning = False
        try:
            _, plan = self.planner.rebuild(
                policies,
                self.rows.scan_columns(now, policies),
                now,
                policy_version=version,
                hot_residents=self._residents(),
            )
        finally:
            self.planner.learning = True
        return plan

    def next_due(self) -> float:
        """Epoch second of the earliest deadline in the state (inf when none or not built)."""
        return self.state.columns.next_due() if self.state is not None else math.inf

    # --------------------------------------------------------------- helpers

    def _residents(self) -> dict[int, tuple[str, int]]:
        if self.hot is None:
            return {}
        try:
            return self.hot.residents()
        except Exception as exc:  # Redis down: plan as if empty; fills fail until it is back
            log.warning("hot ledger unavailable, planning the hot tier from empty: %s", exc)
            return {}

    def _publish(self) -> None:
        """Save the hot rank's adaptive state (the half-life, the window's share, the read clock)
        where ``explain`` and the next leader find it (on a change, else at most every 30 s).
        Redis down: it waits for the next pass."""
        planner = self.planner
        adaptive, window = planner.adaptive, planner.window
        save = getattr(self.hot, "save_adaptive", None)
        if save is None or not (adaptive.enabled or window.enabled or planner.knobs.read_clock):
            return
        read_adaptive = planner.read_adaptive
        changed = adaptive.changed or window.changed or read_adaptive.changed
        if not changed and time.monotonic() - self._published < 30.0:
            return
        state = adaptive.to_json() if adaptive.enabled else {}
        if window.enabled:
            state["window"] = window.to_json()
        if planner.knobs.read_clock:
            state["read_clock"] = planner.reads.to_json()
            if read_adaptive.enabled:
                state["read_clock"]["adaptive"] = read_adaptive.to_json()
        try:
            save(state)
        except Exception as exc:
            log.warning("could not save the hot rank's adaptive state: %s", exc)
            return
        adaptive.changed = window.changed = read_adaptive.changed = False
        self._published = time.monotonic()

    def _restore(self) -> None:
        """Resume with the half-life and window share a previous leader chose (once)."""
        self._restored = True
        load = getattr(self.hot, "load_adaptive", None)
        adaptive, window = self.planner.adaptive, self.planner.window
        read_adaptive = self.planner.read_adaptive
        if load is None or not (adaptive.enabled or window.enabled or read_adaptive.enabled):
            return
        try:
            saved = load()
        except Exception as exc:
            log.warning("could not read the hot rank's adaptive state: %s", exc)
            return
        if not saved:
            return
        if adaptive.enabled and saved.get("tracker_half_life_s") == adaptive.base:
            hysteresis = saved.get("hysteresis")
            adaptive.restore(float(saved["half_life_s"]), None if hysteresis is None else float(hysteresis))
        chosen = (saved.get("read_clock") or {}).get("adaptive") or {}
        if read_adaptive.enabled and chosen.get("configured_half_life_budgets") == read_adaptive.base:
            h = chosen["half_life_budgets"]
            read_adaptive.restore(math.inf if h == TRACKER else float(h))
        if window.enabled and isinstance(saved.get("window"), dict):
            window.restore(float(saved["window"].get("window_share", window.share)))

    def _apply(self, plan: Plan) -> None:
        self._publish()
        report = self.applier.apply(plan)
        if report.skipped and self.state is not None:
            self.planner.undo_moves(self.state, [oid for oid, _, _ in report.skipped], plan)
        self.last_plan = plan
        if plan.kind != "admit":
            self.last_cycle = plan
        self.last_report = report


# ---------------------------------------------------------------- production


#: The tenant buckets a planner shard plans now (:mod:`liquid.tiering.shards`), asked once per read.
Buckets = Callable[[], frozenset[int]]


def member_bucket(oid: int, member: str) -> int:
    """The tenant bucket of a hot copy: from its id, or (a legacy id) from its ref's tenant."""
    bucket = partitions.object_id_bucket(oid)
    return bucket if bucket else partitions.tenant_bucket(member.partition("/")[0])


class CatalogFeed:
    """The change feed in the catalog (:mod:`liquid.catalog.changes`); with ``buckets``, a shard's part."""

    def __init__(self, engine: Engine, *, buckets: Buckets | None = None) -> None:
        self.engine = engine
        self.buckets = buckets

    def changed(self) -> list[int]:
        if self.buckets is None:
            return changes.drain(self.engine)
        return changes.drain(self.engine, buckets=self.buckets())


class TrackerMisses:
    """Read misses the access tracker pushed to Redis."""

    def __init__(self, drain: Callable[[], list[int]]) -> None:
        self._drain = drain

    def missed(self) -> list[int]:
        return self._drain()


_LEGACY_BUCKETS = text(
    f"SELECT id, liquid_tenant_bucket(tenant_id) FROM objects WHERE id = ANY(CAST(:ids AS bigint[]))"
    f" AND id < {partitions.LEGACY_END}"
)


class ShardMisses:
    """A planner shard's read misses: its buckets' sets, and the legacy ids whose tenant is in one.

    A legacy id (from before the partitioning) carries no bucket, so its tenant's is looked up
    in the catalog (one query per pass) before the shard takes it out of the shared set.
    """

    def __init__(self, access: AccessTracker, engine: Engine, buckets: Buckets) -> None:
        self.access = access
        self.engine = engine
        self.buckets = buckets

    def missed(self) -> list[int]:
        mine = self.buckets()
        if not mine:
            return []
        ids = self.access.drain_missed(buckets=mine)
        legacy = self.access.legacy_missed()
        if legacy:
            with self.engine.connect() as conn:
                found: dict[int, int] = {
                    int(i): int(b) for i, b in conn.execute(_LEGACY_BUCKETS, {"ids": legacy})
                }
            # A legacy id without a row goes to bucket 1's owner, as in the change feed; a new id
            # in the shared set (an API replica of an earlier release put it there) by its bits.
            ids += self.access.take_missed(
                i for i in legacy if (partitions.object_id_bucket(i) or found.get(i, 1)) in mine
            )
        return sorted(ids)


class BucketRows:
    """A planner shard's rows: the catalog's, a rebuild scanning only the shard's buckets."""

    def __init__(self, rows: CatalogRows, buckets: Buckets) -> None:
        self.inner = rows
        self.buckets = buckets

    def scan_columns(self, now: datetime, policies: PolicySet | None = None) -> Iterator[ColumnBatch]:
        for bucket in sorted(self.buckets()):
            yield from self.inner.scan_columns(now, policies, bucket=bucket)

    def columns(self, ids: Sequence[int], now: datetime, policies: PolicySet | None = None) -> ColumnBatch:
        return self.inner.columns(ids, now, policies)

    def rows(self, ids: Sequence[int], now: datetime) -> list[Row]:
        return self.inner.rows(ids, now)

    def predecessors(self, rows: Sequence[Row], now: datetime) -> list[Row]:
        return self.inner.predecessors(rows, now)


class RedisLedger:
    """The hot cache's ledger in Redis, and the hot rank's adaptive state beside it.

    With ``buckets``, a planner shard's part: the copies of its buckets' objects.
    """

    def __init__(self, hot: HotCache, *, buckets: Buckets | None = None) -> None:
        self.hot = hot
        self.buckets = buckets

    def residents(self) -> dict[int, tuple[str, int]]:
        everything = {oid: (member, n) for member, (oid, n) in self.hot.ledger().items()}
        if self.buckets is None:
            return everything
        mine = self.buckets()
        return {oid: v for oid, v in everything.items() if member_bucket(oid, v[0]) in mine}

    def save_adaptive(self, state: dict[str, Any]) -> None:
        self.hot.client.set(HOT_ADAPTIVE, json.dumps(state))

    def load_adaptive(self) -> dict[str, Any] | None:
        raw = self.hot.client.get(HOT_ADAPTIVE)
        return json.loads(raw) if raw else None


class AppliedPolicies:
    """The newest applied policy version in the catalog (``liquid policy apply``).

    :meth:`current` parses the stored files only when the version changed since its last call
    (a version query otherwise), so frequent callers — the mover's spend gate before each
    claim, ``/v1/stats`` — do not re-validate the same YAML every time.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cached: tuple[PolicySet, int | None] | None = None

    def version(self) -> int | None:
        with self.engine.connect() as conn:
            v = conn.execute(text("SELECT max(version) FROM policy_versions")).scalar()
        return int(v) if v is not None else None

    def current(self) -> tuple[PolicySet, int | None] | None:
        version = self.version()
        if version is None:
            return None
        if self._cached is None or self._cached[1] != version:
            applied = active_policies(self.engine)
            self._cached = None if applied is None else (applied.policies, applied.version)
        return self._cached


class FixedPolicies:
    """One policy set that never changes (dry runs of files, the benchmark)."""

    def __init__(self, policies: PolicySet, version: int | None = None) -> None:
        self.policies = policies
        self._version = version

    def version(self) -> int | None:
        return self._version

    def current(self) -> tuple[PolicySet, int | None] | None:
        return self.policies, self._version


def dry_run_plan(service: LiquidService, policies: PolicySet, version: int | None = None) -> Plan:
    """The daemon's own rebuild under ``policies``, applying nothing (``liquid policy plan``, the API's).

    The plan also says what earlier cycles queued that is still waiting or in flight
    (``queued``), and warns of restores a retrieval spend cap holds back.
    """
    from liquid.tiering.journal import held_restores, queue_counts
    from liquid.tiering.spend import spend_gate

    plan = catalog_engine(service, policies=FixedPolicies(policies, version)).dry_run(policies, version)
    plan.queued = queue_counts(service.engine)
    gate = spend_gate(service.engine, policies, service.clock())
    waiting = held_restores(service.engine, gate.claim_filter())
    for tenant, reason in sorted(gate.reasons.items(), key=lambda kv: kv[0] or ""):
        n = sum(waiting.values()) if tenant is None else waiting.get(tenant, 0)
        plan.warnings.append(f"{tenant or 'every tenant'}: {reason}; {n} restores waiting")
    return plan


def catalog_engine(
    service: LiquidService,
    *,
    clock: Clock | None = None,
    actor: str = "planner",
    policies: PolicySource | None = None,
    planner: Planner | None = None,
    buckets: Buckets | None = None,
) -> TieringEngine:
    """The engine production runs: the catalog's rows and feed, Redis's misses and ledger, the journal.

    ``buckets``: a planner shard's engine, planning only the tenant buckets this returns (the
    rows, both feeds and the hot ledger are filtered by it); None plans the whole catalog.
    """
    settings = service.settings
    access = service.access
    rows = CatalogRows(service.engine, half_life=settings.access.half_life)
    misses: MissFeed | None = None
    if access is not None and service.hot is not None:
        misses = (
            TrackerMisses(access.drain_missed)
            if buckets is None
            else ShardMisses(access, service.engine, buckets)
        )
    return TieringEngine(
        planner or Planner(settings),
        rows if buckets is None else BucketRows(rows, buckets),
        CatalogApplier(service, settings, actor=actor),
        policies=policies or AppliedPolicies(service.engine),
        feed=CatalogFeed(service.engine, buckets=buckets),
        misses=misses,
        hot=RedisLedger(service.hot, buckets=buckets) if service.hot is not None else None,
        clock=clock or service.clock,
    )


__all__ = [
    "AppliedPolicies",
    "BucketRows",
    "Buckets",
    "CatalogFeed",
    "ChangeFeed",
    "FixedPolicies",
    "HotLedger",
    "MissFeed",
    "PolicySource",
    "RedisLedger",
    "ShardMisses",
    "TieringEngine",
    "TrackerMisses",
    "catalog_engine",
    "dry_run_plan",
]
