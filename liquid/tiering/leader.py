"""The daemons' leader lease: one catalog row, held by renewing it before it expires.

Exactly one daemon leads (plans, admits hot copies, runs gc, exports, prunes): the one named
in the ``daemon_leases`` row while its ``expires_at`` is in the future. The holder renews the
row every third of the lease from a thread of its own, so a long rebuild does not lose it, and
gives it up on a clean stop; any daemon takes a row that expired. A dead or hung leader thus
leaves the daemons without one for at most the lease's length (``daemon.leader_lease``).

Why a row and not a session advisory lock: a transaction-mode pooler (PgBouncer) gives each
transaction whichever server session is free, so a session lock is neither held by the client
that took it nor released when that client dies. A row and ``now()`` work through any pooler.

Expiry is judged by the database's clock (``now()``), never the daemons' own: all contenders
compare against one clock, so skew between daemon hosts cannot make two leaders. Locally the
holder stops calling itself leader once a lease's length has passed since the start of its last
successful renewal (a monotonic clock), so a holder cut off from the catalog steps down no later
than the others may step up.

A holder learns from :meth:`LeaderLease.acquire` whether its planner state may be stale
(``fresh``): when it just took the lease (another leader may have drained the change feed
meanwhile), when the epoch moved (someone else held it between two of its renewals), or when
the server restarted (``pg_postmaster_start_time()`` changed: a crash empties the unlogged
change feed). It then rebuilds.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("liquid.leader")

#: The lease the tiering daemons contend for.
TIERING = "tiering"

# Take the row if nobody holds it, it expired, or we hold it already (then it is a renewal).
# The epoch goes up only when the row changes hands. ``before`` is the server start time the
# row recorded at its last renewal (the CTE reads the snapshot from before the upsert).
_TAKE = text(
    """
WITH before AS (SELECT server_started FROM daemon_leases WHERE name = :name)
INSERT INTO daemon_leases AS l (name, holder, epoch, expires_at, server_started)
VALUES (:name, :holder, 1, now() + make_interval(secs => :ttl), pg_postmaster_start_time())
ON CONFLICT (name) DO UPDATE SET
    holder = excluded.holder,
    epoch = l.epoch + CASE WHEN l.holder = excluded.holder THEN 0 ELSE 1 END,
    expires_at = excluded.expires_at,
    server_started = excluded.server_started
WHERE l.holder = excluded.holder OR l.expires_at < now()
RETURNING epoch, server_started, (SELECT server_started FROM before)
"""
)
_RELEASE = text("UPDATE daemon_leases SET expires_at = '-infinity' WHERE name = :name AND holder = :holder")
_HOLDER = text("SELECT holder FROM daemon_leases WHERE name = :name AND expires_at >= now()")


@dataclass(frozen=True)
class Hold:
    """The answer of :meth:`LeaderLease.acquire`."""

    #: This daemon leads now.
    held: bool
    #: It did not lead without a break since the last answer: state planned before may be stale.
    fresh: bool


class LeaderLease:
    """One daemon's side of a lease row (see the module docstring).

    Args:
        engine: the catalog (migrated to 0011 or later).
        holder: this daemon's unique name.
        name: which lease (one per group of daemons that must not overlap).
        ttl: the lease's length in seconds; renewed every ``ttl / 3``.
        monotonic: the local clock that bounds how long a renewal counts.
    """

    def __init__(
        self,
        engine: Engine,
        holder: str,
        *,
        name: str = TIERING,
        ttl: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"a lease must last more than 0 seconds, got {ttl}")
        self.engine = engine
        self.holder = holder
        self.name = name
        self.ttl = float(ttl)
        self.monotonic = monotonic
        self.renewals = 0
        self._lock = threading.Lock()
        self._epoch: int | None = None
        self._started: datetime | None = None
        self._valid_until = 0.0
        self._fresh = True
        self._beat: threading.Event | None = None

    def __repr__(self) -> str:
        return (
            f"LeaderLease({self.name!r}, holder={self.holder!r}, held={self.held}, epoch={self._epoch},"
            f" ttl={self.ttl:g}s, renewals={self.renewals})"
        )

    @property
    def held(self) -> bool:
        """Whether this daemon leads (by its last renewal; no round trip)."""
        return self._epoch is not None and self.monotonic() < self._valid_until

    def acquire(self) -> Hold:
        """Take the lease if it is free or expired, or renew it if ours; start renewing it in the background.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the catalog could not be asked (leadership is then
                kept only until the last renewal runs out).
        """
        self._take()
        with self._lock:
            if not self.held:
                self._fresh = True  # whoever leads meanwhile may drain the change feed
                return Hold(False, False)
            fresh, self._fresh = self._fresh, False
        self._start_beating()
        return Hold(True, fresh)

    def _take(self) -> bool:
        started_at = self.monotonic()
        with self.engine.begin() as conn:
            row = conn.execute(_TAKE, {"name": self.name, "holder": self.holder, "ttl": self.ttl}).first()
        with self._lock:
            if row is None:  # another daemon holds it
                if self._epoch is not None:
                    log.warning("%s lost the %s lease", self.holder, self.name)
                self._epoch, self._fresh = None, True
                return False
            epoch, server_started, before = int(row[0]), row[1], row[2]
            if epoch != self._epoch or server_started != self._started or server_started != before:
                self._fresh = True
            self._epoch, self._started = epoch, server_started
            self._valid_until = started_at + self.ttl
            self.renewals += 1
            return True

    def renew(self) -> bool:
        """One renewal (the background thread's step); False when the lease is lost or unreachable."""
        try:
            return self._take()
        except SQLAlchemyError as exc:
            log.warning("%s could not renew the %s lease: %s", self.holder, self.name, exc)
            return self.held

    def _start_beating(self) -> None:
        with self._lock:
            if self._beat is not None:
                return
            self._beat = stop = threading.Event()
        thread = threading.Thread(
            target=_beat, args=(weakref.ref(self), stop, self.ttl / 3), name=f"lease-{self.name}", daemon=True
        )
        thread.start()

    def _stopped_beating(self, stop: threading.Event) -> None:
        with self._lock:
            if self._beat is stop:
                self._beat = None

    def release(self) -> None:
        """Stop renewing and give the lease up at once (a clean stop), if this daemon holds it."""
        with self._lock:
            beat, self._beat = self._beat, None
            had = self._epoch is not None
            self._epoch, self._fresh, self._valid_until = None, True, 0.0
        if beat is not None:
            beat.set()
        if had:
            try:
                with self.engine.begin() as conn:
                    conn.execute(_RELEASE, {"name": self.name, "holder": self.holder})
            except SQLAlchemyError as exc:  # it runs out on its own
                log.warning("%s could not release the %s lease: %s", self.holder, self.name, exc)

    def current_holder(self) -> str | None:
        """Who holds the lease now (by the database), or None."""
        with self.engine.connect() as conn:
            holder: str | None = conn.execute(_HOLDER, {"name": self.name}).scalar()
            return holder


def _beat(ref: weakref.ref[LeaderLease], stop: threading.Event, every: float) -> None:
    # A weak reference: a lease dropped without release() (a test, a crashed owner) stops
    # renewing and runs out, instead of being held forever by this thread.
    while not stop.wait(every):
        lease = ref()
        if lease is None:
            return
        held = lease.renew()
        if not held:
            lease._stopped_beating(stop)
            return
        del lease
