"""Per-object expiry: versions whose own ``expires_at`` (``X-Liquid-Expires-At``, a retention) has passed.

Readers refuse such a version at once (410, see :meth:`LiquidService._live_row`); this pass
makes it final through the same path policy expirations take (:class:`CatalogApplier`'s bulk
expire): tombstone, ``object.expired`` event, change feed, purge queued for the mover, and
every cache copy killed. It does not need a policy to be applied: an object's own expiry holds
whatever the operator's policies say. A legal hold blocks it, as it blocks a policy's.

Cost: one range scan of ``ix_objects_expires`` per pass, starting a little before the last
pass's end (``rescan`` seconds, which covers writers whose clocks lag this one's), so a pass
reads what came due, not the history of expired versions. The first pass after a start reads
the whole range once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine, text

from liquid.limits import MIN_INSTANT
from liquid.refs import format_uri
from liquid.tiering.apply import Applier, ApplyReport
from liquid.tiering.plan import Change, Plan

log = logging.getLogger(__name__)

_DUE = text(
    """
    SELECT id, tenant_id, namespace, key, version, size, home_tier, expires_at
    FROM objects
    WHERE expires_at > :since AND expires_at <= :now AND state = 'live' AND NOT legal_hold
    ORDER BY expires_at, id
    LIMIT :limit
    """
)


class ObjectExpiry:
    """Expires versions past their own ``expires_at`` (see the module docstring).

    Args:
        engine: the catalog.
        applier: carries the expirations out (production: :class:`CatalogApplier`).
        clock: current UTC time.
        batch: versions per statement (and per plan).
        rescan: seconds before the last pass's end that the next pass starts from.
    """

    def __init__(
        self,
        engine: Engine,
        applier: Applier,
        *,
        clock: Callable[[], datetime],
        batch: int = 1000,
        rescan: float = 600.0,
    ) -> None:
        self.engine = engine
        self.applier = applier
        self.clock = clock
        self.batch = batch
        self.rescan = rescan
        self.since = MIN_INSTANT
        self.expired = 0

    def __repr__(self) -> str:
        return f"ObjectExpiry(since={self.since.isoformat()}, expired={self.expired})"

    def run(self, *, max_batches: int = 100) -> ApplyReport:
        """Expire what is due now; returns what the applier queued (purges, already queued)."""
        now = self.clock()
        total = ApplyReport()
        since = self.since
        for _ in range(max_batches):
            with self.engine.connect() as conn:
                rows = conn.execute(_DUE, {"since": since, "now": now, "limit": self.batch}).all()
            if not rows:
                break
            plan = Plan(at=now, policy_version=None, kind="expire", objects=len(rows), evaluated=len(rows))
            plan.changes = [
                Change(
                    object_id=int(r.id),
                    uri=format_uri(r.tenant_id, r.namespace, r.key, int(r.version)),
                    size=int(r.size),
                    action="expire",
                    from_tier=str(r.home_tier),
                    to_tier=None,
                    policy="object",
                    rule="expires_at",
                    reason=f"its expires_at {r.expires_at.isoformat()} has passed",
                )
                for r in rows
            ]
            report = self.applier.apply(plan)
            total.purges_queued += report.purges_queued
            total.already_queued += report.already_queued
            if len(rows) < self.batch:
                break
            since = rows[-1].expires_at - timedelta(microseconds=1)
        self.expired += total.purges_queued
        self.since = max(MIN_INSTANT, now - timedelta(seconds=self.rescan))
        if total.purges_queued:
            log.info("expired %d versions past their own expires_at", total.purges_queued)
        return total
