"""Daemons split the partitions of ``objects`` between them: a lease row per partition.

The catalog's ``objects`` table has one partition per tenant bucket plus the legacy one
(:mod:`liquid.catalog.partitions`); a bucket is the unit a daemon plans: its partition and its
tenants' rows in the legacy one (the planner's rows read with
``CatalogRows.scan_columns(bucket=...)``), so each tenant is planned by one daemon. Each daemon
holds the partitions named in ``daemon_leases`` rows ``<prefix>objects_bNN`` with its name and
an ``expires_at`` in the future, taken and renewed like the leader lease
(:mod:`liquid.tiering.leader`: the database's ``now()`` judges expiry, the epoch goes up when a
row changes hands).

A daemon also keeps a membership row (``<prefix>member:<holder>``), so that each one knows how
many are alive and takes a fair share, ``ceil(partitions / members)``. One :meth:`PartitionShards.claim`
round: renew the membership; renew the partitions held; give back those above the share (the
highest names first); take free or expired ones up to the share. A daemon that joins gets its
share within two rounds (the others give theirs back on their next one); a daemon that dies
stops renewing, and its partitions are taken over once its rows expire (one lease's length).
Call :meth:`claim` every third of the lease, as the leader lease renews.

Budgets: a per-tenant budget lives in one partition (all of a tenant's new rows do), so it is
planned whole by the bucket's holder; a global tier budget spans every partition, and each
daemon plans under a share of it split by value (:mod:`liquid.tiering.shares`). The daemon wires
both when ``daemon.shard_planning`` is on (``daemon/tiering.py``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, text

from liquid.catalog import partitions

#: The lease names' prefix of the tiering daemons' partition shards.
SHARDS = "tiering:"

# Take (or renew) many rows at once: a row is ours if free, expired, or already ours.
_TAKE = text(
    """
INSERT INTO daemon_leases AS l (name, holder, epoch, expires_at, server_started)
SELECT n, :holder, 1, now() + make_interval(secs => :ttl), pg_postmaster_start_time()
FROM unnest(CAST(:names AS text[])) AS n
ON CONFLICT (name) DO UPDATE SET
    holder = excluded.holder,
    epoch = l.epoch + CASE WHEN l.holder = excluded.holder THEN 0 ELSE 1 END,
    expires_at = excluded.expires_at,
    server_started = excluded.server_started
WHERE l.holder = excluded.holder OR l.expires_at < now()
RETURNING name
"""
)
_MEMBERS = text("SELECT count(*) FROM daemon_leases WHERE name LIKE :pattern AND expires_at >= now()")
_HELD = text(
    "SELECT name FROM daemon_leases WHERE name = ANY(CAST(:names AS text[])) AND holder = :holder"
    " AND expires_at >= now()"
)
_FREE = text(
    "SELECT n FROM unnest(CAST(:names AS text[])) AS n"
    " WHERE NOT EXISTS (SELECT 1 FROM daemon_leases l WHERE l.name = n AND l.expires_at >= now()) ORDER BY n"
)
_RELEASE = text(
    "UPDATE daemon_leases SET expires_at = '-infinity'"
    " WHERE name = ANY(CAST(:names AS text[])) AND holder = :holder"
)
_HOLDERS = text(
    "SELECT name, holder FROM daemon_leases WHERE name = ANY(CAST(:names AS text[])) AND expires_at >= now()"
)


@dataclass(frozen=True)
class Claim:
    """The answer of :meth:`PartitionShards.claim` (partition names, as in ``pg_class``)."""

    #: Partitions this daemon plans now.
    held: frozenset[str]
    #: Held now and not at the last round: their planner state must be rebuilt.
    taken: frozenset[str]
    #: Given back this round (above the share) or lost (taken by another after expiring).
    dropped: frozenset[str]
    #: Daemons alive, this one included.
    members: int


class PartitionShards:
    """One daemon's side of the partition leases (see the module docstring).

    Args:
        engine: the catalog (migrated to 0012 or later).
        holder: this daemon's unique name.
        ttl: a lease's length in seconds; claim every ``ttl / 3``.
        prefix: the lease names' prefix (one per group of daemons that split the partitions).
        names: the partitions to split (default: every bucket's partition of ``objects``).
        monotonic: the local clock that bounds how long a renewal counts.
    """

    def __init__(
        self,
        engine: Engine,
        holder: str,
        *,
        ttl: float = 30.0,
        prefix: str = SHARDS,
        names: Sequence[str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"a lease must last more than 0 seconds, got {ttl}")
        self.engine = engine
        self.holder = holder
        self.ttl = float(ttl)
        self.prefix = prefix
        self.names = list(names if names is not None else partitions.bucket_names())
        self.monotonic = monotonic
        self.rounds = 0
        self._lock = threading.Lock()
        self._held: frozenset[str] = frozenset()
        self._valid_until = 0.0

    def __repr__(self) -> str:
        return (
            f"PartitionShards({self.holder!r}, prefix={self.prefix!r},"
            f" held={len(self.held)}/{len(self.names)}, ttl={self.ttl:g}s, rounds={self.rounds})"
        )

    def _lease(self, names: Sequence[str]) -> list[str]:
        return [self.prefix + n for n in names]

    def _partition(self, lease: str) -> str:
        return lease.removeprefix(self.prefix)

    @property
    def held(self) -> frozenset[str]:
        """The partitions this daemon plans (by its last round; empty once a lease's length passed)."""
        with self._lock:
            return self._held if self.monotonic() < self._valid_until else frozenset()

    def claim(self, *, rebalance: bool = True) -> Claim:
        """One round: renew, give back above the share, take up to it (see the module docstring).

        ``rebalance=False`` only renews what is held (a daemon in the middle of planning its
        buckets keeps them until the pass is over; it rebalances on its next round).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the catalog could not be asked (what is held then
                counts only until the last round's leases run out).
        """
        started = self.monotonic()
        before = self.held
        all_leases = self._lease(self.names)
        with self.engine.begin() as conn:
            conn.execute(
                _TAKE,
                {"names": [f"{self.prefix}member:{self.holder}"], "holder": self.holder, "ttl": self.ttl},
            )
            members = max(1, int(conn.execute(_MEMBERS, {"pattern": f"{self.prefix}member:%"}).scalar_one()))
            share = math.ceil(len(self.names) / members)
            mine = sorted(r[0] for r in conn.execute(_HELD, {"names": all_leases, "holder": self.holder}))
            # Renew what is still ours; the highest names above the share go back.
            keep, extra = (mine[:share], mine[share:]) if rebalance else (mine, [])
            if extra:
                conn.execute(_RELEASE, {"names": extra, "holder": self.holder})
            held = [
                r[0] for r in conn.execute(_TAKE, {"names": keep, "holder": self.holder, "ttl": self.ttl})
            ]
            wanted = share - len(held) if rebalance else 0
            if wanted > 0:
                free = [r[0] for r in conn.execute(_FREE, {"names": all_leases})][:wanted]
                if free:
                    held += [
                        r[0]
                        for r in conn.execute(_TAKE, {"names": free, "holder": self.holder, "ttl": self.ttl})
                    ]
        now = frozenset(self._partition(n) for n in held)
        with self._lock:
            self._held = now
            self._valid_until = started + self.ttl
            self.rounds += 1
        return Claim(held=now, taken=now - before, dropped=before - now, members=members)

    def release(self) -> None:
        """Give every partition and the membership back at once (a clean stop)."""
        with self._lock:
            self._held, self._valid_until = frozenset(), 0.0
        with self.engine.begin() as conn:
            names = [*self._lease(self.names), f"{self.prefix}member:{self.holder}"]
            conn.execute(_RELEASE, {"names": names, "holder": self.holder})

    def holders(self) -> dict[str, str]:
        """Who holds each held partition now (by the database); free ones are absent."""
        with self.engine.connect() as conn:
            rows = conn.execute(_HOLDERS, {"names": self._lease(self.names)})
            return {self._partition(str(n)): str(h) for n, h in rows}


__all__ = ["SHARDS", "Claim", "PartitionShards"]
