"""The tiering daemon: APScheduler jobs that call the planner, mover, access flush, restore and gc.

Several daemons may run against one catalog. Exactly one is the **leader** at a time —
the holder of a PostgreSQL session advisory lock on a connection of its own — and only
the leader plans, queues restores and runs gc. **Every** daemon executes moves: the
mover claims journal rows with ``FOR UPDATE SKIP LOCKED`` and a lease, so two daemons
never work on one object at once, and a dead daemon's rows come back when its lease
expires. If the leader dies, its lock dies with its connection and another daemon
takes over on its next cycle.

Jobs (intervals from ``Settings.daemon``):

* ``cycle`` (leader): plan with the newest applied policies, queue moves and purges,
  fill hot copies.
* ``move`` (all): one mover pass over the journal.
* ``flush`` (all): access counts from Redis into the catalog (the drain is atomic, so
  two daemons flushing at once never count a read twice).
* ``restore`` (leader): objects read from cold/archive whose policy says
  ``restoreOnAccess`` are queued for promotion; the read itself was already served.
* ``gc`` (leader): reconcile stores against the catalog.

SIGTERM or SIGINT stops the scheduler; the mover finishes (or safely abandons: every
step is journaled) the row it is on, and the process exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from liquid.bootstrap import Runtime
from liquid.catalog.fastpath import conninfo
from liquid.policy.evaluate import select_policy
from liquid.policy.store import active_policies
from liquid.tiering.mover import Mover
from liquid.tiering.planner import ApplyReport, Plan, Planner, apply_plan

log = logging.getLogger("liquid.daemon")

#: Advisory lock key held by the leader (any constant; this one spells "LIQD").
LEADER_LOCK = 0x4C495144


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
        self.plan_seconds = Histogram("liquid_plan_duration_seconds", "Planning cycle duration", registry=r)
        self.queue_depth = Gauge("liquid_move_queue_depth", "Open journal rows", registry=r)
        self.budget_bytes = Gauge(
            "liquid_budget_bytes",
            "Bytes per budget and tier after the last plan",
            ["budget", "tier"],
            registry=r,
        )
        self.budget_limit = Gauge(
            "liquid_budget_limit_bytes", "Byte limit per budget and tier", ["budget", "tier"], registry=r
        )
        self.redis_memory = Gauge("liquid_redis_used_memory_bytes", "Redis used_memory", registry=r)
        self.leader = Gauge("liquid_daemon_leader", "1 while this daemon is the leader", registry=r)


@dataclass
class CycleSummary:
    """What one foreground cycle (``liquid tier run-once``) did."""

    flushed: int = 0
    plan: Plan | None = None
    applied: ApplyReport | None = None
    restores: int = 0
    moves: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "flushed_objects": self.flushed,
            "planned_objects": self.plan.objects if self.plan else 0,
            "plan": self.plan.to_json(changes=False) if self.plan else None,
            "applied": self.applied.as_dict() if self.applied else None,
            "restores_queued": self.restores,
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
        self.planner = Planner(self.service.engine, self.settings, clock=self.clock)
        self.mover = Mover(self.service, worker_id=self.worker_id, clock=self.clock)
        self.metrics = Metrics()
        self._leader_conn: psycopg.Connection[Any] | None = None
        self._scheduler: BackgroundScheduler | None = None
        self._stopped = threading.Event()
        self.cycles = 0
        self.last_plan: Plan | None = None
        self.last_apply: ApplyReport | None = None

    def __repr__(self) -> str:
        return (
            f"TieringDaemon(worker={self.worker_id!r}, leader={self.is_leader}, cycles={self.cycles}, "
            f"mover={self.mover!r})"
        )

    # ------------------------------------------------------------- leadership

    @property
    def is_leader(self) -> bool:
        return self._leader_conn is not None and not self._leader_conn.closed

    def try_lead(self) -> bool:
        """Hold the leader lock if nobody does; keep it while our connection lives."""
        if self.is_leader:
            try:
                assert self._leader_conn is not None
                self._leader_conn.execute("SELECT 1")
                return True
            except psycopg.Error:
                self._leader_conn = None  # connection lost: so is the lock
        url = self.service.engine.url.render_as_string(hide_password=False)
        conn = psycopg.connect(conninfo(url), autocommit=True)
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
        if got and got[0]:
            self._leader_conn = conn
            log.info("%s is now the leader", self.worker_id)
        else:
            conn.close()
        self.metrics.leader.set(1 if self.is_leader else 0)
        return self.is_leader

    def resign(self) -> None:
        if self._leader_conn is not None:
            self._leader_conn.close()  # the session lock goes with the session
            self._leader_conn = None
        self.metrics.leader.set(0)

    # -------------------------------------------------------------------- jobs

    def job_cycle(self) -> Plan | None:
        """Leader: plan with the applied policies and queue what the plan says."""
        if not self.try_lead():
            return None
        applied = active_policies(self.service.engine)
        if applied is None:
            log.info("no policies applied yet; nothing to plan (liquid policy apply FILE...)")
            return None
        started = time.perf_counter()
        plan = self.planner.plan(applied.policies, policy_version=applied.version)
        self.metrics.plan_seconds.observe(time.perf_counter() - started)
        report = apply_plan(plan, self.service, actor=f"daemon {self.worker_id}")
        self.last_apply = report
        for use in plan.budgets:
            tier = use.tier or "all"
            self.metrics.budget_bytes.labels(use.budget, tier).set(use.bytes_after)
            if use.limit_bytes is not None:
                self.metrics.budget_limit.labels(use.budget, tier).set(use.limit_bytes)
        self.cycles += 1
        self.last_plan = plan
        log.info(
            "plan v%s: %d objects, %d changes; %s",
            applied.version,
            plan.objects,
            len(plan.changes),
            report.as_dict(),
        )
        return plan

    def job_move(self) -> dict[str, Any]:
        """All daemons: one mover pass."""
        report = self.mover.run_once()
        for (_kind, frm, to, result), n in report.counts.items():
            self.metrics.moves.labels(frm, to, result).inc(n)
        self.metrics.bytes_moved.inc(report.bytes_moved)
        from liquid.tiering.journal import queue_depth

        self.metrics.queue_depth.set(queue_depth(self.service.engine))
        return report.as_dict()

    def job_flush(self) -> int:
        """All daemons: access counts into the catalog."""
        access = self.service.access
        if access is None:
            return 0
        report = access.flush(self.service.engine)
        with contextlib.suppress(Exception):  # a metric must never stop the flush
            self.metrics.redis_memory.set(float(access.client.info("memory")["used_memory"]))
        return report.objects

    def job_restore(self) -> int:
        """Leader: queue promotions for cold reads whose policy restores on access."""
        access = self.service.access
        if access is None or not self.try_lead():
            return 0
        refs = access.drain_restores()
        if not refs:
            return 0
        applied = active_policies(self.service.engine)
        if applied is None:
            return 0
        from liquid.tiering.journal import enqueue_move

        queued = 0
        for ref in refs:
            row = self.planner.row(ref)
            if row is None or row.facts.home_tier not in ("cold", "archive"):
                continue
            policy = select_policy(applied.policies, row.facts)
            if policy is None or not policy.spec.restore_on_access:
                continue
            store = self.settings.store_for("warm")
            if store is None:
                continue
            reason = f"{policy.name}: read while {row.facts.home_tier}, restoreOnAccess"
            if enqueue_move(self.service.engine, row.object_id, "warm", store, reason=reason) is not None:
                queued += 1
        return queued

    def job_gc(self) -> dict[str, Any]:
        """Leader: reconcile stores against the catalog."""
        if not self.try_lead():
            return {}
        from liquid.tiering.gc import reconcile

        return reconcile(self.runtime, clock=self.clock).as_dict()

    # ------------------------------------------------------------- foreground

    def run_once(self, *, progress: Callable[[str], None] | None = None, move: bool = True) -> CycleSummary:
        """One full cycle in the foreground: flush, recover, plan, apply, restore, move until idle."""
        say = progress or (lambda _msg: None)
        summary = CycleSummary()
        say("flushing access counts")
        summary.flushed = self.job_flush()
        say("recovering interrupted moves")
        self.mover.recover()
        say("planning")
        summary.plan = self.job_cycle()
        summary.applied = self.last_apply if summary.plan is not None else None
        summary.restores = self.job_restore()
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
        scheduler.add_job(self._guard(self.job_cycle), "interval", seconds=d.plan_interval, id="cycle")
        scheduler.add_job(self._guard(self.job_move), "interval", seconds=d.move_interval, id="move")
        scheduler.add_job(self._guard(self.job_restore), "interval", seconds=d.restore_interval, id="restore")
        scheduler.add_job(self._guard(self.job_gc), "interval", seconds=d.gc_interval, id="gc")
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
        self._stopped.set()

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
