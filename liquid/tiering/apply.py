"""Carrying out a plan: moves and purges into the journal, hot copies evicted and filled.

:class:`CatalogApplier` is what production runs. Its order keeps every promise:

1. **Expirations** tombstone their objects and queue their purges, a batch per statement
   (readers get 410 at once), and every cache copy is killed (hot, same-node shm), so an
   expired version is never served again; the mover deletes the bytes and writes the receipt.
2. **Moves** are queued in the journal (one statement per batch); a move to a tier with no
   store is *skipped* and reported with the reason, never silently dropped.
3. **Hot evictions** (and copies of objects that are gone) are removed from Redis *before*
   any fill, so the hot tier never holds more than its budget, even for a moment.
4. **Hot fills** read the home and write through the hot cache's ledger, best rank first,
   at most ``max_hot_fills`` per pass; an admitted object left unfilled is filled the first
   time a read misses it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Engine, text

from liquid.config import CATALOG_STORE, Settings, Tier
from liquid.events import log as events
from liquid.refs import ResultRef
from liquid.service import LiquidService
from liquid.tiering.plan import Change, Plan

log = logging.getLogger(__name__)

#: Moves queued per statement.
BATCH = 5000


@dataclass
class ApplyReport:
    """What applying one plan queued or did."""

    moves_queued: int = 0
    purges_queued: int = 0
    hot_filled: int = 0
    hot_evicted: int = 0
    already_queued: int = 0
    #: Moves that could not be queued, with why: (object id, uri, reason).
    skipped: list[tuple[int, str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "moves_queued": self.moves_queued,
            "purges_queued": self.purges_queued,
            "hot_filled": self.hot_filled,
            "hot_evicted": self.hot_evicted,
            "already_queued": self.already_queued,
            "skipped": [{"object_id": o, "uri": u, "reason": r} for o, u, r in self.skipped],
        }


class Applier(Protocol):
    """Carries out plans (the catalog and Redis in production; a cost ledger in the replay)."""

    def apply(self, plan: Plan) -> ApplyReport:
        """Carry out ``plan``."""
        ...


_ENQUEUE_MOVES = text(
    """
    INSERT INTO move_journal (object_id, tenant_id, kind, from_tier, from_store, from_locator,
                              to_tier, to_store, to_locator, step, attempts, reason, created_at, updated_at)
    SELECT o.id, o.tenant_id, 'move', o.home_tier, o.home_store, o.locator, m.to_tier, m.to_store,
           o.tenant_id || '/' || o.namespace || '/' || m.suffix, 'planned', 0, m.reason, now(), now()
    FROM unnest(CAST(:ids AS bigint[]), CAST(:tiers AS text[]), CAST(:stores AS text[]),
                CAST(:suffixes AS text[]), CAST(:reasons AS text[]))
         AS m(id, to_tier, to_store, suffix, reason)
    JOIN objects o ON o.id = m.id AND o.state = 'live' AND o.home_store <> m.to_store
    ON CONFLICT (object_id) WHERE step NOT IN ('done', 'failed') DO NOTHING
    RETURNING object_id
    """
)


# Expirations in bulk, as enqueue_purge does one at a time: tombstone each live object not under
# legal hold (readers get 410 from now on), log object.expired, tell the change feed, and queue
# the purge of its bytes for the mover (a purge row starts at 'switched').
_EXPIRE = text(
    f"""
    WITH r AS (
        SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:reasons AS text[])) AS r(id, reason)
    ), t AS (
        UPDATE objects o SET state = 'expired', deleted_at = :now, inline_data = NULL
        FROM r WHERE o.id = r.id AND o.state = 'live' AND NOT o.legal_hold
        RETURNING o.id, o.tenant_id, o.namespace, o.key, o.version, o.home_tier, o.home_store, o.locator,
                  o.sha256, o.stored_size, o.trace_id, o.correlation_id, o.execution_id, r.reason
    ), ev AS (
        {
        events.insert_from(
            "t", events.EXPIRED, at=":now", actor=":actor", data={"reason": "reason"}, **events.OBJECT_EXPRS
        )
    }
    ), ch AS (
        INSERT INTO tiering_changes (object_id) SELECT id FROM t ON CONFLICT DO NOTHING
    ), j AS (
        INSERT INTO move_journal (object_id, tenant_id, kind, from_tier, from_store, from_locator,
                                  step, attempts, reason, created_at, updated_at)
        SELECT id, tenant_id, 'purge', home_tier, home_store, locator, 'switched', 0, reason, :now, :now
        FROM t
        ON CONFLICT (object_id) WHERE step NOT IN ('done', 'failed') DO NOTHING
    )
    SELECT id AS object_id, sha256 FROM t
    """
)


class CatalogApplier:
    """Production's applier: the move journal, the hot cache and the service's fills (module docstring).

    Args:
        service: reads homes for fills and kills cache copies (hot, same-node shm).
        settings: which store backs each tier.
        actor: recorded on expirations.
        max_hot_fills: hot copies written per plan at most.
    """

    def __init__(
        self, service: LiquidService, settings: Settings, *, actor: str = "planner", max_hot_fills: int = 1000
    ) -> None:
        self.service = service
        self.engine: Engine = service.engine
        self.settings = settings
        self.actor = actor
        self.max_hot_fills = max_hot_fills

    def __repr__(self) -> str:
        return f"CatalogApplier(actor={self.actor!r}, max_hot_fills={self.max_hot_fills})"

    def apply(self, plan: Plan) -> ApplyReport:
        report = ApplyReport()
        by_action: dict[str, list[Change]] = {}
        for c in plan.changes:
            by_action.setdefault(c.action, []).append(c)
        self._expire(plan, by_action.get("expire", []), report)
        self._moves(by_action.get("move", []), report)
        hot = self.service.hot
        if hot is not None:
            evict = [ResultRef.parse(c.uri) for c in by_action.get("hot-evict", [])]
            report.hot_evicted = hot.evict(evict) if evict else 0
            fills = by_action.get("hot-admit", []) + by_action.get("hot-refill", [])
            report.hot_filled = self._fill(fills[: self.max_hot_fills])
        return report

    def _expire(self, plan: Plan, changes: list[Change], report: ApplyReport) -> None:
        for i in range(0, len(changes), BATCH):
            part = changes[i : i + BATCH]
            with self.engine.begin() as conn:
                found = conn.execute(
                    _EXPIRE,
                    {
                        "ids": [c.object_id for c in part],
                        "reasons": [f"expired by {c.policy}/{c.rule or '-'}: {c.reason}" for c in part],
                        "now": plan.at,
                        "actor": self.actor,
                    },
                ).all()
            queued = {int(r.object_id): str(r.sha256) for r in found}
            report.purges_queued += len(queued)
            report.already_queued += len(part) - len(queued)
            # Tombstoned now: no copy may outlive it (readers get 410, never the old bytes).
            self.service.kill_copies(
                (ResultRef.parse(c.uri), queued[c.object_id]) for c in part if c.object_id in queued
            )

    def _forbidden(self, changes: list[Change]) -> dict[int, str]:
        """Object id -> why, for moves a classification rule forbids (planned by a policy or a budget)."""
        classifier = self.service.classifier
        if not classifier.rules or not changes:
            return {}
        with self.engine.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT id, classification FROM objects"
                    " WHERE id = ANY(:ids) AND classification IS NOT NULL"
                ),
                {"ids": [c.object_id for c in changes]},
            ).all()
        cls = {int(r.id): str(r.classification) for r in found}
        return {
            c.object_id: f"classification {cls[c.object_id]!r} may not live in {c.to_tier}"
            for c in changes
            if c.object_id in cls
            and c.to_tier is not None
            and not classifier.allows(cls[c.object_id], c.to_tier)
        }

    def _moves(self, changes: list[Change], report: ApplyReport) -> None:
        rows: list[tuple[int, str, str, str]] = []
        forbidden = self._forbidden(changes)
        for c in changes:
            if c.object_id in forbidden:
                report.skipped.append((c.object_id, c.uri, forbidden[c.object_id]))
                continue
            assert c.to_tier is not None
            store = self.settings.store_for(_tier(c.to_tier))
            if store is None:
                why = f"no store is configured for tier {c.to_tier} (set tiers.{c.to_tier} in liquid.yaml)"
                report.skipped.append((c.object_id, c.uri, why))
                continue
            if store == CATALOG_STORE:
                # The catalog takes an object's bytes only in the put that writes its row; the
                # mover copies between object stores, so nothing moves back into the catalog.
                why = (
                    f"tier {c.to_tier} keeps its bytes in the catalog, which takes them only at put time:"
                    f" nothing moves into it (give tier {c.to_tier} an object store in liquid.yaml"
                    " to allow moves there)"
                )
                report.skipped.append((c.object_id, c.uri, why))
                continue
            rows.append(
                (c.object_id, c.to_tier, store, f"{c.policy or 'budget'}/{c.rule or '-'}: {c.reason}")
            )
        for i in range(0, len(rows), BATCH):
            part = rows[i : i + BATCH]
            with self.engine.begin() as conn:
                queued = conn.execute(
                    _ENQUEUE_MOVES,
                    {
                        "ids": [r[0] for r in part],
                        "tiers": [r[1] for r in part],
                        "stores": [r[2] for r in part],
                        "suffixes": [uuid.uuid4().hex for _ in part],
                        "reasons": [r[3] for r in part],
                    },
                ).all()
            report.moves_queued += len(queued)
            report.already_queued += len(part) - len(queued)

    def _fill(self, changes: list[Change]) -> int:
        hot = self.service.hot
        if hot is None or not changes:
            return 0
        refs = [ResultRef.parse(c.uri) for c in changes]
        present = hot.exists(refs)
        if present is None:
            return 0  # Redis down: admitted copies are filled when a read misses them
        filled = 0
        for c, r, there in zip(changes, refs, present, strict=True):
            if there:
                continue
            try:
                filled += self.service.fill_hot(r, c.object_id)
            except Exception as exc:  # a home that cannot be read must not stop the pass
                log.warning("hot fill of %s failed (it is filled again on its next miss): %s", c.uri, exc)
        return filled


def _tier(name: str) -> Tier:
    if name not in ("hot", "warm", "cold", "archive"):
        raise ValueError(f"not a tier: {name!r}")
    return name  # type: ignore[return-value]
