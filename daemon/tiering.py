"""The tiering daemon: APScheduler jobs around one :class:`~liquid.tiering.engine.TieringEngine`.

Several daemons may run against one catalog. Exactly one is the **leader** at a time —
the holder of the ``tiering`` lease, a catalog row it renews in the background
(:mod:`liquid.tiering.leader`; a row, not a session lock, so it works behind a
transaction-mode PgBouncer) — and only the leader plans, admits hot copies and runs gc.
**Every** daemon executes moves: the mover claims journal rows with ``FOR UPDATE SKIP
LOCKED`` and a lease, so two daemons never work on one object at once, and a dead daemon's
rows come back when its lease expires. If the leader dies, its lease runs out
(``daemon.leader_lease``) and another daemon takes over on its next cycle; a daemon that
becomes leader rebuilds its state first, and so does a leader that finds the catalog
server restarted (a crash empties the unlogged change feed).

Jobs (intervals from ``Settings.daemon``):

* ``cycle`` (leader, ``plan_interval``): :meth:`TieringEngine.cycle` — the objects in the
  change feed and those whose deadline came, planned and applied (moves and purges queued,
  hot copies evicted then filled). A rebuild at start and after a policy apply. Before it,
  versions past their own ``expires_at`` are expired (:mod:`liquid.tiering.expiry`), with
  or without applied policies.
* ``admit`` (leader, ``admit_interval``): flush access counts, then
  :meth:`TieringEngine.admit` — hot copies for objects just read from their home, within the
  hot tier's budget.
* ``move`` (all, ``move_interval``): one mover pass over the journal.
* ``flush`` (all, ``access.flush_interval``): access counts from Redis into the catalog (the
  drain is atomic, so two daemons flushing at once never count a read twice).
* ``gc`` (leader, ``gc_interval``): reconcile stores against the catalog; sweep purged objects'
  vectors out of external vector indexes.
* ``export`` (leader, ``events.export_interval``): the event log into ClickHouse
  (:mod:`liquid.events.export`) when ``events.sink`` is set; the lag is a metric.
* ``prune`` (leader, ``events.prune_interval``): create the coming months' event partitions,
  drop those past ``events.retention`` that every sink has exported.

**Shard planning** (``daemon.shard_planning``, off by default): every daemon plans the tenant
buckets it holds instead of the leader planning all (:mod:`liquid.tiering.shards`: a lease row
per bucket, a fair share each, claimed by the ``shards`` job every third of
``daemon.leader_lease``), its change feed, read misses and hot ledger filtered to them, and each
global budget cap shared with the other daemons by value (:mod:`liquid.tiering.shares`). A
daemon whose buckets change rebuilds; one in the middle of a pass only renews, and rebalances
after. ``cycle`` and ``admit`` then run on every daemon that holds buckets; the leader alone
still runs ``expire`` (inside ``cycle``), ``gc``, ``export`` and ``prune``.

SIGTERM or SIGINT stops the scheduler; the mover finishes (or safely abandons: every
step is resumable) the row it is on, and the process exits.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import text

from liquid.bootstrap import Runtime
from liquid.catalog import changes, partitions
from liquid.events import retention
from liquid.events.export import EventExporter
from liquid.events.sinks import SinkUnavailable, migrate, open_sink
from liquid.tiering.apply import ApplyReport, CatalogApplier
from liquid.tiering.engine import catalog_engine
from liquid.tiering.expiry import ObjectExpiry
from liquid.tiering.journal import queue_depth
from liquid.tiering.leader import LeaderLease
from liquid.tiering.mover import Mover
from liquid.tiering.plan import Plan
from liquid.tiering.planner import Planner
from liquid.tiering.shards import Claim, PartitionShards
from liquid.tiering.shares import CapShares, ShareDeferred
from liquid.tiering.spend import AppliedSpendGate

log = logging.getLogger("liquid.daemon")


class Metrics:
    """The daemon's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.moves = Counter(
            "liquid_moves",
            "Journal rows finished, by from/to tier and result",
            ["from_tier", "to_tier", "result"],
            registry=r,
        )
        self.bytes_moved = Counter("liquid_bytes_moved", "Bytes copied by moves", registry=r)
        self.plan_seconds = Histogram(
            "liquid_plan_duration_seconds", "Planning pass duration, by kind", ["kind"], registry=r
        )
        self.evaluated = Counter(
            "liquid_plan_evaluated_objects",
            "Objects evaluated by planning passes, by kind",
            ["kind"],
            registry=r,
        )
        self.queue_depth = Gauge("liquid_move_queue_depth", "Open journal rows", registry=r)
        self.feed_backlog = Gauge(
            "liquid_change_feed_backlog", "Objects waiting in the change feed after a cycle", registry=r
        )
        self.objects = Gauge("liquid_planned_objects", "Live objects in the planner's state", registry=r)
        self.state_bytes = Gauge(
            "liquid_planner_state_bytes", "Memory of the planner's per-object columns", registry=r
        )
        self.tier_bytes = Gauge(
            "liquid_tier_bytes",
            "Bytes per tier after the last pass (hot: copies in Redis)",
            ["tier"],
            registry=r,
        )
        self.tier_cost = Gauge(
            "liquid_tier_monthly_cost",
            "Monthly storage cost per tier after the last pass",
            ["tier"],
            registry=r,
        )
        self.hot_ledger_bytes = Gauge(
            "liquid_hot_ledger_bytes",
            "Bytes of the copies Redis holds for Liquid (the hot ledger)",
            registry=r,
        )
        self.hot_half_life = Gauge(
            "liquid_hot_rank_half_life_seconds",
            "The half-life in seconds the hot tier ranks with (chosen by its miniature simulations"
            " when planner.adaptive is on); NaN while the read clock ranks it",
            registry=r,
        )
        self.hot_read_half_life = Gauge(
            "liquid_hot_rank_read_half_life_budgets",
            "The read clock's half-life in hot budgets of bytes read (planner.read_clock; chosen by"
            " its simulations with planner.read_adaptive); +Inf when they chose the tracker's"
            " wall-clock rank; NaN while the read clock is off",
            registry=r,
        )
        self.hot_hysteresis = Gauge(
            "liquid_hot_rank_hysteresis",
            "The factor the hot tier's members' rank is multiplied by against a newcomer's"
            " (planner.hysteresis, or 1.6 times it when the simulations chose residents kept"
            " harder: planner.adaptive_hysteresis)",
            registry=r,
        )
        # Nothing has ranked yet: NaN until the first cycle says which rank and half-life (a 0
        # would read as "a half-life of zero").
        self.hot_half_life.set(math.nan)
        self.hot_hysteresis.set(math.nan)
        self.hot_read_half_life.set(math.nan)
        self.budget_bytes = Gauge(
            "liquid_budget_bytes",
            "Bytes per budget and tier after the last plan",
            ["budget", "tier"],
            registry=r,
        )
        self.budget_limit = Gauge(
            "liquid_budget_limit_bytes", "Byte limit per budget and tier", ["budget", "tier"], registry=r
        )
        self.skipped = Counter(
            "liquid_moves_skipped",
            "Planned moves that could not be queued (no store for the tier)",
            registry=r,
        )
        self.export_lag_events = Gauge(
            "liquid_event_export_lag_events", "Events in the log not yet in ClickHouse", registry=r
        )
        self.export_lag_seconds = Gauge(
            "liquid_event_export_lag_seconds", "Age of the oldest event not yet in ClickHouse", registry=r
        )
        self.exported = Counter("liquid_events_exported", "Events exported to ClickHouse", registry=r)
        self.export_errors = Counter(
            "liquid_event_export_errors", "Export runs stopped by an unavailable sink", registry=r
        )
        self.redis_memory = Gauge("liquid_redis_used_memory_bytes", "Redis used_memory", registry=r)
        self.leader = Gauge("liquid_daemon_leader", "1 while this daemon is the leader", registry=r)
        self.buckets = Gauge(
            "liquid_planner_buckets", "Tenant buckets this daemon plans (shard planning; else 0)", registry=r
        )
        self.share_granted = Gauge(
            "liquid_budget_share_granted",
            "This daemon's grant of a global budget cap (shard planning), in the cap's units",
            ["cap"],
            registry=r,
        )
        self.share_target = Gauge(
            "liquid_budget_share_target",
            "This daemon's share of a global budget cap by value (the grant converges to it)",
            ["cap"],
            registry=r,
        )
        self.shares_deferred = Counter(
            "liquid_budget_share_deferred_rebuilds",
            "Rebuilds deferred until other daemons give back budget this one's residents use",
            registry=r,
        )
        self.restores_held = Gauge(
            "liquid_restores_held",
            "Restores waiting in the queue because a Budget's maxMonthlyRetrievalCost is reached",
            registry=r,
        )

    def observe_rank(self, planner: Planner) -> None:
        """The half-life the hot tier ranks with: in seconds for the wall-clock ranks, in budgets
        read for the read clock; the gauge of the rank not in use is NaN (never a stale number)."""
        self.hot_hysteresis.set(planner.adaptive.bonus)  # planner.hysteresis while adaptation is off
        if not planner.knobs.read_clock:
            self.hot_half_life.set(planner.adaptive.half_life)
            self.hot_read_half_life.set(math.nan)
            return
        chosen = planner.read_adaptive
        budgets = chosen.half_life if chosen.enabled else planner.reads.half_life
        self.hot_read_half_life.set(budgets)
        # Its simulations may choose the tracker's own rank (an infinite read half-life).
        self.hot_half_life.set(planner.settings.access.half_life if math.isinf(budgets) else math.nan)

    def observe(self, plan: Plan, report: ApplyReport | None) -> None:
        """Export one pass's plan: its duration, per-tier bytes and cost, budgets, skips."""
        self.plan_seconds.labels(plan.kind).observe(plan.duration_s)
        self.evaluated.labels(plan.kind).inc(plan.evaluated)
        self.objects.set(plan.objects)
        # An admission pass reports the hot tier only; the others keep the last cycle's figures.
        tiers = ("hot",) if plan.kind == "admit" else tuple(plan.bytes_after)
        for tier in tiers:
            self.tier_bytes.labels(tier).set(plan.bytes_after[tier])
            if plan.kind != "admit":
                self.tier_cost.labels(tier).set(plan.cost_after[tier])
        for use in plan.budgets:
            tier = use.tier or "all"
            self.budget_bytes.labels(use.budget, tier).set(use.bytes_after)
            if use.limit_bytes is not None:
                self.budget_limit.labels(use.budget, tier).set(use.limit_bytes)
        if report is not None and report.skipped:
            self.skipped.inc(len(report.skipped))


@dataclass
class CycleSummary:
    """What one foreground cycle (``liquid tier run-once``) did."""

    flushed: int = 0
    plan: Plan | None = None
    applied: ApplyReport | None = None
    admitted: Plan | None = None
    moves: dict[str, Any] = field(default_factory=dict)
    #: Why nothing was planned (another daemon leads, or no policy is applied), else None.
    not_planned: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "not_planned": self.not_planned,
            "flushed_objects": self.flushed,
            "planned_objects": self.plan.objects if self.plan else 0,
            "plan": self.plan.to_json(changes=False) if self.plan else None,
            "applied": self.applied.as_dict() if self.applied else None,
            "hot_admitted": self.admitted.count("hot-admit")[0] if self.admitted else 0,
            "moves": self.moves,
        }


class TieringDaemon:
    """One daemon process's jobs. Everything comes in through the constructor.

    Args:
        runtime: the wired service (catalog, stores, hot cache, tracker).
        clock: current UTC time (the service's by default).
        worker_id: unique name for journal claims and logs.
    """

    def __init__(
        self, runtime: Runtime, *, clock: Callable[[], datetime] | None = None, worker_id: str | None = None
    ) -> None:
        self.runtime = runtime
        self.service = runtime.service
        self.settings = self.service.settings
        self.clock = clock or self.service.clock
        self.worker_id = worker_id or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        d = self.settings.daemon
        #: Shard planning: this daemon's bucket leases (None: the leader plans everything).
        self.shards: PartitionShards | None = None
        #: The buckets the engine plans now; changed only between passes, under ``_planning``.
        self._buckets: frozenset[int] = frozenset()
        self._server_started: object = None
        self.engine = catalog_engine(
            self.service,
            clock=self.clock,
            actor=f"daemon {self.worker_id}",
            buckets=(lambda: self._buckets) if d.shard_planning else None,
        )
        self.cap_shares: CapShares | None = None
        if d.shard_planning:
            self.shards = PartitionShards(self.service.engine, self.worker_id, ttl=d.leader_lease)
            # A share must outlive a live shard's gap between two passes.
            self.cap_shares = CapShares(
                self.service.engine, self.worker_id, ttl=d.leader_lease + 2 * d.plan_interval
            )
            self.engine.planner.shares = self.cap_shares
        self.mover = Mover.from_service(
            self.service,
            worker_id=self.worker_id,
            clock=self.clock,
            spend_gate=AppliedSpendGate(self.service.engine, self.clock),
        )
        self.expiry = ObjectExpiry(
            self.service.engine,
            CatalogApplier(self.service, self.settings, actor=f"daemon {self.worker_id}"),
            clock=self.clock,
        )
        self.metrics = Metrics()
        self.lease = LeaderLease(self.service.engine, self.worker_id, ttl=self.settings.daemon.leader_lease)
        self._scheduler: BackgroundScheduler | None = None
        self._stopped = threading.Event()
        # One planning pass at a time: cycle and admit share the engine's state.
        self._planning = threading.Lock()
        self.cycles = 0
        self._exporter: EventExporter | None = None

    def __repr__(self) -> str:
        return (
            f"TieringDaemon(worker={self.worker_id!r}, leader={self.is_leader}, cycles={self.cycles}, "
            f"engine={self.engine!r}, mover={self.mover!r})"
        )

    @property
    def last_plan(self) -> Plan | None:
        return self.engine.last_plan

    @property
    def last_apply(self) -> ApplyReport | None:
        return self.engine.last_report

    # ------------------------------------------------------------- leadership

    @property
    def is_leader(self) -> bool:
        return self.lease.held

    def try_lead(self) -> bool:
        """Take the leader lease if nobody holds it, or renew ours.

        A daemon that (re)gains the lease drops its planner state: the next cycle rebuilds,
        since another leader may have planned (and the change feed been drained) meanwhile.
        So does a leader whose catalog server restarted (the change feed is unlogged).
        """
        hold = self.lease.acquire()
        if hold.fresh:
            if self.shards is None:  # a shard's state follows its buckets, not the leadership
                self.engine.invalidate()
            if self.service.hot is not None:
                try:  # copies under the one-tag names of earlier versions: once, by the leader
                    self.service.hot.drop_legacy()
                except redis.RedisError as exc:
                    log.warning("could not drop the old-layout hot copies (they expire by TTL): %s", exc)
            log.info("%s is now the leader: %r", self.worker_id, self.lease)
        self.metrics.leader.set(1 if hold.held else 0)
        return hold.held

    def resign(self) -> None:
        """Give up the lease at once (another daemon may lead on its next cycle)."""
        self.lease.release()
        self.metrics.leader.set(0)

    # ------------------------------------------------------------ shard planning

    def job_shards(self) -> Claim | None:
        """All (shard planning): renew this daemon's bucket leases; between passes, rebalance them."""
        if self.shards is None:
            return None
        with self.service.engine.connect() as conn:
            started = conn.execute(text("SELECT pg_postmaster_start_time()")).scalar()
        if self._planning.acquire(blocking=False):
            try:
                claim = self.shards.claim()
                if self._server_started is not None and started != self._server_started:
                    # A crash empties the unlogged change feed: only a rebuild sees everything.
                    log.info("%s: the catalog server restarted; rebuilding", self.worker_id)
                    self.engine.invalidate()
                self._server_started = started
                self._sync_buckets()
            finally:
                self._planning.release()
        else:  # a pass is planning these buckets: keep them until it is over
            claim = self.shards.claim(rebalance=False)
        if self.cap_shares is not None:
            self.cap_shares.members = claim.members
            self.cap_shares.fraction = len(claim.held) / len(self.shards.names)
        self.metrics.buckets.set(len(claim.held))
        return claim

    def _sync_buckets(self) -> bool:
        """Under ``_planning``: plan the buckets held now (a change rebuilds); False when none."""
        assert self.shards is not None
        held = frozenset(partitions.bucket_of_partition(n) for n in self.shards.held)
        if held != self._buckets:
            log.info(
                "%s plans buckets %s now (was %s): rebuilding",
                self.worker_id,
                sorted(held),
                sorted(self._buckets),
            )
            self._buckets = held
            self.engine.invalidate()
            if not held and self.cap_shares is not None:
                # Planning nothing: give the budget shares back now, not when they expire.
                with contextlib.suppress(Exception):
                    self.cap_shares.release()
        return bool(held)

    @property
    def buckets(self) -> frozenset[int]:
        """The tenant buckets this daemon plans (shard planning; empty otherwise)."""
        return self._buckets

    # -------------------------------------------------------------------- jobs

    def job_cycle(self) -> Plan | None:
        """Leader (or each shard): plan what changed (or rebuild) with the applied policies, and apply it."""
        if self.shards is None and not self.try_lead():
            return None
        # Objects' own expiry first: it holds with or without applied policies (the leader's job).
        self.job_expire()
        with self._planning:
            if self.shards is not None and not self._sync_buckets():
                return None
            try:
                plan = self.engine.cycle()
            except ShareDeferred as exc:
                self.metrics.shares_deferred.inc()
                log.info("%s", exc)
                return None
            self._observe_shares()
        if plan is None:
            log.info("no policies applied yet; nothing to plan (liquid policy apply FILE...)")
            return None
        self.metrics.observe(plan, self.engine.last_report)
        with contextlib.suppress(Exception):  # a metric must never stop the cycle
            self.metrics.feed_backlog.set(changes.pending(self.service.engine))
            if self.engine.state is not None:
                self.metrics.state_bytes.set(self.engine.state.memory_bytes)
            if self.service.hot is not None:
                self.metrics.hot_ledger_bytes.set(self.service.hot.used_bytes())
            self.metrics.observe_rank(self.engine.planner)
        self.cycles += 1
        report = self.engine.last_report
        log.info(
            "%s v%s: %d objects, %d evaluated, %d changes in %.3fs; %s",
            plan.kind,
            plan.policy_version,
            plan.objects,
            plan.evaluated,
            len(plan.changes),
            plan.duration_s,
            report.as_dict() if report else {},
        )
        if report is not None:
            for oid, uri, why in report.skipped[:10]:
                log.warning("move of %s (object %d) skipped: %s", uri, oid, why)
        return plan

    def job_expire(self) -> int:
        """Leader: expire versions past their own ``expires_at`` (with or without policies)."""
        if not self.try_lead():
            return 0
        return self.expiry.run().purges_queued

    def _observe_shares(self) -> None:
        if self.cap_shares is None:
            return
        for key, grant in self.cap_shares.grants.items():
            self.metrics.share_granted.labels(key).set(grant.granted)
            self.metrics.share_target.labels(key).set(grant.share)

    def job_admit(self) -> Plan | None:
        """Leader (or each shard): flush access counts, then hot copies for objects read from their home."""
        if self.shards is None and not self.try_lead():
            return None
        access = self.service.access
        if access is not None:  # ranks from fresh counts (the hourly ones wait for the flush job)
            access.flush(self.service.engine, hourly=False)
        with self._planning:
            if self.engine.state is None:
                return None  # the next cycle rebuilds first
            if self.shards is not None and not self._sync_buckets():
                return None
            if self.engine.state is None:
                return None  # the buckets changed: the next cycle rebuilds
            plan = self.engine.admit()
        if plan is not None:
            self.metrics.observe(plan, self.engine.last_report)
        return plan

    def job_move(self) -> dict[str, Any]:
        """All daemons: one mover pass."""
        report = self.mover.run_once()
        for (_kind, frm, to, result), n in report.counts.items():
            self.metrics.moves.labels(frm, to, result).inc(n)
        self.metrics.bytes_moved.inc(report.bytes_moved)
        self.metrics.queue_depth.set(queue_depth(self.service.engine))
        self.metrics.restores_held.set(sum(self.mover.held.values()))
        return report.as_dict()

    def job_flush(self) -> int:
        """All daemons: access counts into the catalog (and the change feed)."""
        access = self.service.access
        if access is None:
            return 0
        report = access.flush(self.service.engine)
        with contextlib.suppress(Exception):  # a metric must never stop the flush
            self.metrics.redis_memory.set(float(access.client.info("memory")["used_memory"]))
        return report.objects

    def job_gc(self) -> dict[str, Any]:
        """Leader: reconcile stores against the catalog."""
        if not self.try_lead():
            return {}
        from liquid.tiering.gc import reconcile_service
        from liquid.vectors.search import VectorSearch

        report = reconcile_service(self.service, clock=self.clock).as_dict()
        if self.settings.vectors.indexes:
            # Purged objects' vectors in external indexes (pgvector's went with the purge itself).
            search = VectorSearch(self.settings, engine=self.service.engine, clock=self.clock)
            try:
                report["vectors_swept"] = search.sweep()
            finally:
                search.close()
        return report

    def exporter(self) -> EventExporter | None:
        """The leader's exporter, opened on first use (chDB allows one process per path)."""
        url = self.settings.events.sink
        if url is None:
            return None
        if self._exporter is None:
            sink = open_sink(url)
            migrate(sink)
            self._exporter = EventExporter(
                self.service.engine, sink, batch_size=self.settings.events.batch_size, clock=self.clock
            )
        return self._exporter

    def job_export(self) -> dict[str, Any]:
        """Leader: export the event log past the watermark; report the lag."""
        if not self.try_lead():
            return {}
        exporter = self.exporter()
        if exporter is None:
            return {}
        try:
            report = exporter.run_once()
        except SinkUnavailable as exc:
            self.metrics.export_errors.inc()
            log.warning("event export paused: %s", exc)
            return {"error": str(exc)}
        finally:
            with contextlib.suppress(Exception):  # a metric must never stop the export
                lag = exporter.lag()
                self.metrics.export_lag_events.set(lag.events)
                self.metrics.export_lag_seconds.set(lag.seconds)
        self.metrics.exported.inc(report.events)
        return report.as_dict()

    def job_prune(self) -> dict[str, Any]:
        """Leader: event partitions for the coming months; drop old ones every sink has exported."""
        if not self.try_lead():
            return {}
        now = self.clock()
        made = retention.ensure_partitions(self.service.engine, now)
        exporter = self.exporter()
        sinks = [exporter.sink.name] if exporter is not None else []
        report = retention.prune(
            self.service.engine,
            now,
            retention=timedelta(seconds=self.settings.events.retention),
            sinks=sinks,
        )
        return {"created": made, "dropped": report.dropped, "rows": report.rows, "waiting": report.waiting}

    # ------------------------------------------------------------- foreground

    def run_once(self, *, progress: Callable[[str], None] | None = None, move: bool = True) -> CycleSummary:
        """One full cycle in the foreground: flush, recover, plan, apply, admit, move until idle."""
        say = progress or (lambda _msg: None)
        summary = CycleSummary()
        say("flushing access counts")
        summary.flushed = self.job_flush()
        say("recovering interrupted moves")
        self.mover.recover()
        say("planning")
        if self.shards is not None:
            self.job_shards()
            summary.plan = self.job_cycle()
            if summary.plan is None:
                summary.not_planned = (
                    "this daemon holds no tenant bucket yet (shard planning), or waits for budget"
                    " other daemons give back, or no policies are applied"
                )
        elif not self.try_lead():
            summary.not_planned = (
                "another daemon holds the leader lease and plans; this run flushed and moved only"
            )
        else:
            summary.plan = self.job_cycle()
            if summary.plan is None:
                summary.not_planned = "no policies applied (liquid policy apply FILE...)"
        summary.applied = self.last_apply if summary.plan is not None else None
        summary.admitted = self.job_admit()
        if move:
            say("moving")
            summary.moves = self.mover.run_until_idle().as_dict()
        return summary

    # --------------------------------------------------------------- service

    def start(self) -> None:
        """Start the scheduled jobs in background threads (returns at once)."""
        d = self.settings.daemon
        self.mover.recover()
        scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
            timezone="UTC",
        )
        scheduler.add_job(
            self._guard(self.job_flush), "interval", seconds=self.settings.access.flush_interval, id="flush"
        )
        if self.shards is not None:
            self.job_shards()
            scheduler.add_job(
                self._guard(self.job_shards), "interval", seconds=d.leader_lease / 3, id="shards"
            )
        scheduler.add_job(self._guard(self.job_cycle), "interval", seconds=d.plan_interval, id="cycle")
        scheduler.add_job(self._guard(self.job_admit), "interval", seconds=d.admit_interval, id="admit")
        scheduler.add_job(self._guard(self.job_move), "interval", seconds=d.move_interval, id="move")
        scheduler.add_job(self._guard(self.job_gc), "interval", seconds=d.gc_interval, id="gc")
        ev = self.settings.events
        scheduler.add_job(self._guard(self.job_export), "interval", seconds=ev.export_interval, id="export")
        scheduler.add_job(self._guard(self.job_prune), "interval", seconds=ev.prune_interval, id="prune")
        scheduler.start()
        self._scheduler = scheduler
        log.info("daemon %s started", self.worker_id)

    @staticmethod
    def _guard(job: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                job()
            except Exception:
                log.exception("daemon job %s failed", getattr(job, "__name__", job))

        run.__name__ = getattr(job, "__name__", "job")
        return run

    def stop(self) -> None:
        """Stop scheduling, let the current move step finish, release leadership."""
        self.mover.stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        self.resign()
        self.release_shards()
        if self._exporter is not None:
            self._exporter.sink.close()
            self._exporter = None
        self._stopped.set()

    def release_shards(self) -> None:
        """Give this daemon's buckets and budget shares back at once (a clean stop)."""
        if self.shards is None:
            return
        with contextlib.suppress(Exception):  # unreachable catalog: they expire by themselves
            self.shards.release()
            if self.cap_shares is not None:
                self.cap_shares.release()
        self.metrics.buckets.set(0)

    def run_forever(self) -> None:
        """Start, then block until SIGTERM/SIGINT."""
        self.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stopped.set())
        try:
            while not self._stopped.wait(0.5):
                pass
        finally:
            self.stop()
