"""Access tracking: a decayed read score per object, kept in Redis and flushed to the catalog in batches.

Every read adds one to an exponentially decayed count (half-life ``access.half_life``):
``S(t) = S(t0) · 2^-((t - t0) / h) + 1``. Redis holds only what accumulated since the last
flush — the *delta* score, its time, and the hit count — so a flush can merge it into the
catalog's ``access_stats`` row (``score_cat · 2^-(Δt/h) + delta``) and reset it atomically.
Losing Redis therefore loses at most one flush interval of counts, never objects, and a
read with Redis down just is not counted.

A read only touches memory (:meth:`AccessTracker.note` queues the ref and its time); a
background thread folds the queued reads per object into one decayed delta and pushes them
to Redis every 100 ms, one Lua call (``EVALSHA``) per push for all the objects read (the
per-object calls it replaced cost the reading process ~38 µs of CPU per object per push;
``benchmarks/read_events.py`` measures the read path's and the pusher's shares). Reads
served from the durable home are also noted (:meth:`AccessTracker.note_miss`) and pushed as
a set of object ids, which the daemon drains to decide which of them earn a hot copy. Reads
are also counted per object per minute, and the flush turns each finished minute into one
``object.read`` event per object (:meth:`AccessTracker.flush_minutes`): the event log sees
reads without one row per read.
A crash loses at most that window of counts; a Redis outage keeps them in memory (bounded) until it is back.

A decayed count converts to a rate: with half-life ``h`` seconds, a steady ``r`` reads/s
settles at ``S = r · h / ln 2``; :func:`rate_per_hour` inverts that for the policy engine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import Engine, text

from liquid.catalog import partitions
from liquid.events import log as events
from liquid.redis_keys import (
    ACCESS_DIRTY,
    ACCESS_HOURLY,
    ACCESS_MINUTE,
    ACCESS_MINUTES,
    ACCESS_OBJECT,
    HOT_MISSED,
    hot_missed,
)
from liquid.refs import ResultRef

log = logging.getLogger(__name__)

#: Seconds after a search returned an object's value inline during which the next read of that
#: version is the caller resolving the hit it already counted, not a read of its own.
SEARCH_CLAIM_WINDOW = 600.0
#: Inline search hits remembered for that (the oldest forgotten first).
MAX_SEARCH_CLAIMS = 100_000

# One call per push records every object's batch of reads.
# KEYS: dirty set, set of minute hashes, then the push's distinct hourly hashes, then its
# distinct minute hashes. The per-object hashes are named from ARGV[1] (their prefix) and each
# member, as ``_DRAIN`` does; every key shares the {liquid} hash tag, so a cluster runs it on
# one node.
# ARGV[2]: JSON [half-life, ttl, correlation window (see fold_burst), number of hourly hashes,
# [hour field of each minute hash]]. ARGV[3]: the members, one per line (URI-quoted: none holds
# a newline). ARGV[4]: per member, seven little-endian doubles: its hourly hash index, minute
# hash index, time of the batch's last read, batch score, reads, the batch's first and last
# counted reads. Binary doubles cost the push no formatting and lose no digits; Redis writes a
# number argument in its shortest exact form.
# Each object hash holds what accumulated since the last flush: s (score at t), t (last read),
# n (reads), f (first counted read) and c (last counted read).
_RECORD = """
local p = cjson.decode(ARGV[2])
local hl, ttl, w, hours, hour_fields = p[1], p[2], p[3], p[4], p[5]
local blob = ARGV[4]
local pos = 1
for member in string.gmatch(ARGV[3], '[^\\n]+') do
  local h, mi, now, bs, n, bf, bc
  h, mi, now, bs, n, bf, bc, pos = struct.unpack('<ddddddd', blob, pos)
  local key = ARGV[1] .. member
  local v = redis.call('HMGET', key, 's', 't', 'c')
  local s = tonumber(v[1]) or 0
  local t = tonumber(v[2]) or now
  local c = tonumber(v[3])
  local dt = now - t
  if dt < 0 then dt = 0 end
  s = s * math.pow(0.5, dt / hl) + bs
  if w > 0 and c and bf - c < w then
    local d = now - bf
    if d < 0 then d = 0 end
    s = s - math.pow(0.5, d / hl)
    if bc == bf then bc = c end
  end
  if c and c > bc then bc = c end
  if t < now then t = now end
  redis.call('HSET', key, 's', tostring(s), 't', tostring(t), 'c', tostring(bc))
  if not v[1] then redis.call('HSET', key, 'f', bf) end
  redis.call('HINCRBY', key, 'n', n)
  redis.call('EXPIRE', key, ttl)
  redis.call('SADD', KEYS[1], member)
  redis.call('HINCRBY', KEYS[2 + h], hour_fields[mi], n)
  redis.call('HINCRBY', KEYS[2 + hours + mi], member, n)
end
for i = 3, #KEYS do
  redis.call('EXPIRE', KEYS[i], 691200)
end
for i = 3 + hours, #KEYS do
  redis.call('SADD', KEYS[2], KEYS[i])
end
return 1
"""

# KEYS: dirty set. ARGV: batch size, object-hash prefix. Pops members and returns
# [member, s, t, n, f, c, ...] after deleting each hash: read-and-reset in one atomic step.
_DRAIN = """
local members = redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))
local out = {}
for _, m in ipairs(members) do
  local k = ARGV[2] .. m
  local v = redis.call('HMGET', k, 's', 't', 'n', 'f', 'c')
  redis.call('DEL', k)
  if v[1] then
    table.insert(out, m)
    table.insert(out, v[1])
    table.insert(out, v[2])
    table.insert(out, v[3] or '0')
    table.insert(out, v[4] or v[2])
    table.insert(out, v[5] or v[2])
  end
end
return out
"""

# KEYS: dirty set. ARGV: object-hash prefix, half-life, ttl, then (member, s, t, n, f, c) per object.
# Puts drained rows back after a failed catalog write, merged with reads that came meanwhile
# (the older batch decays to the newer one's time), so a flush that fails loses no counts.
_RESTORE = """
local hl = tonumber(ARGV[2])
for i = 4, #ARGV, 6 do
  local m = ARGV[i]
  local k = ARGV[1] .. m
  local s, t, n = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local f, c = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  local v = redis.call('HMGET', k, 's', 't', 'f', 'c')
  if v[1] then
    local s2, t2 = tonumber(v[1]), tonumber(v[2])
    local f2, c2 = tonumber(v[3]) or f, tonumber(v[4]) or c
    if t2 >= t then
      s = s2 + s * math.pow(0.5, (t2 - t) / hl)
      t = t2
    else
      s = s + s2 * math.pow(0.5, (t - t2) / hl)
    end
    if f2 < f then f = f2 end
    if c2 > c then c = c2 end
  end
  redis.call('HSET', k, 's', tostring(s), 't', tostring(t), 'f', tostring(f), 'c', tostring(c))
  redis.call('HINCRBY', k, 'n', n)
  redis.call('EXPIRE', k, ARGV[3])
  redis.call('SADD', KEYS[1], m)
end
return 1
"""

# KEYS: one minute hash, the set of minute hashes. Returns its fields and counts, deletes it and
# forgets it: read-and-reset at once.
_DRAIN_MINUTE = """
local v = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], KEYS[1])
return v
"""

_JOINED_OBJECT: Mapping[str, str] = {name: f"o.{expr}" for name, expr in events.OBJECT_EXPRS.items()}
# Reads of one minute as one object.read event per object (refs of purged or unknown versions
# are dropped by the join).
_READ_EVENTS = text(
    events.insert_from(
        "unnest(CAST(:tenants AS text[]), CAST(:namespaces AS text[]), CAST(:keys AS text[]),"
        " CAST(:versions AS int[]), CAST(:counts AS bigint[]))"
        " AS v(tenant_id, namespace, key, version, n)"
        " JOIN objects o ON o.tenant_id = v.tenant_id AND o.namespace = v.namespace AND o.key = v.key"
        " AND o.version = v.version",
        events.READ,
        at=":minute",
        actor="'reader'",
        count="v.n",
        data={},
        **_JOINED_OBJECT,
    )
)

# KEYS: one hourly hash. Returns its fields and counts, and deletes it: read-and-reset at once.
_DRAIN_HOURLY = """
local v = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return v
"""

_UPSERT_HOURLY = text(
    """
    INSERT INTO access_hourly (tenant_id, namespace, hour, reads)
    SELECT v.t, v.n, v.h, v.r
    FROM unnest(CAST(:tenants AS text[]), CAST(:namespaces AS text[]), CAST(:hours AS timestamptz[]),
                CAST(:reads AS bigint[])) AS v(t, n, h, r)
    ON CONFLICT (tenant_id, namespace, hour) DO UPDATE SET reads = access_hourly.reads + EXCLUDED.reads
    """
)

# Merge drained batches into access_stats by fold_burst: an update of the rows that exist (it
# needs each batch's first counted read, which an INSERT's EXCLUDED row cannot carry), then an
# insert of the rest; a row inserted concurrently in between is merged without the correlation.
# The objects go into the tiering change feed (liquid.catalog.changes) in the same statement.
_UPSERT = text(
    """
    WITH v AS (
        SELECT o.id, o.tenant_id, v.s, v.n, v.t, v.f, v.c
        FROM unnest(CAST(:tenants AS text[]), CAST(:namespaces AS text[]), CAST(:keys AS text[]),
                    CAST(:versions AS int[]), CAST(:scores AS float8[]), CAST(:hits AS bigint[]),
                    CAST(:times AS timestamptz[]), CAST(:firsts AS timestamptz[]),
                    CAST(:counteds AS timestamptz[])) AS v(tenant_id, namespace, key, version, s, n, t, f, c)
        JOIN objects o ON o.tenant_id = v.tenant_id AND o.namespace = v.namespace AND o.key = v.key
                      AND o.version = v.version
    ), upd AS (
        UPDATE access_stats a SET
            score = a.score * power(0.5, GREATEST(0, extract(epoch FROM v.t - a.last_access_at)) / :half_life)
                    + v.s
                    - CASE WHEN :correlation > 0 AND a.counted_at IS NOT NULL
                                AND extract(epoch FROM v.f - a.counted_at) < :correlation
                           THEN power(0.5, GREATEST(0, extract(epoch FROM v.t - v.f)) / :half_life)
                           ELSE 0 END,
            counted_at = CASE WHEN :correlation > 0 AND a.counted_at IS NOT NULL
                                   AND extract(epoch FROM v.f - a.counted_at) < :correlation AND v.c = v.f
                              THEN a.counted_at
                              ELSE GREATEST(a.counted_at, v.c) END,
            hits = a.hits + v.n,
            last_access_at = GREATEST(a.last_access_at, v.t),
            updated_at = :now
        FROM v WHERE a.object_id = v.id
        RETURNING a.object_id
    ), changed AS (
        INSERT INTO tiering_changes (object_id) SELECT id FROM v ON CONFLICT DO NOTHING
    )
    INSERT INTO access_stats (object_id, tenant_id, score, hits, last_access_at, counted_at, updated_at)
    SELECT v.id, v.tenant_id, v.s, v.n, v.t, v.c, :now FROM v
    WHERE v.id NOT IN (SELECT object_id FROM upd)
    ON CONFLICT (object_id) DO UPDATE SET
        score = access_stats.score * power(0.5, GREATEST(0, extract(epoch FROM
                    EXCLUDED.last_access_at - access_stats.last_access_at)) / :half_life) + EXCLUDED.score,
        hits = access_stats.hits + EXCLUDED.hits,
        last_access_at = GREATEST(access_stats.last_access_at, EXCLUDED.last_access_at),
        counted_at = GREATEST(access_stats.counted_at, EXCLUDED.counted_at),
        updated_at = EXCLUDED.updated_at
    """
)


def rate_per_hour(score: float, half_life: float) -> float:
    """Reads per hour that a decayed count ``score`` (half-life in seconds) stands for."""
    return score * math.log(2) / half_life * 3600.0 if half_life > 0 else 0.0


def decay(score: float, seconds: float, half_life: float) -> float:
    """``score`` after ``seconds`` more of decay."""
    return score * 0.5 ** (max(seconds, 0.0) / half_life) if half_life > 0 else score


def fold(score: float, at: float, when: float, half_life: float, reads: float = 1.0) -> tuple[float, float]:
    """Add ``reads`` at epoch second ``when`` to a decayed ``score`` last updated at ``at``.

    Returns the new ``(score, at)``. A read older than ``at`` (out of order) counts at ``at``,
    so folding is order-insensitive within a batch. This is the one formula the in-memory
    batch, the Redis script (``_RECORD``), the catalog merge (``_UPSERT``) and the placement
    replay (:class:`DecayedCounts`) all apply::

        >>> fold(1.0, 0.0, 3600.0, 3600.0)
        (1.5, 3600.0)
    """
    return decay(score, when - at, half_life) + reads, max(at, when)


def count_read(
    score: float, at: float, counted: float, when: float, half_life: float, correlation: float
) -> tuple[float, float, float]:
    """One read at ``when`` into ``(score, last read, last counted read)``: :func:`fold_burst` for a
    single read. Within ``correlation`` seconds of the last counted read it adds no score."""
    if when - counted < correlation:
        score, at = fold(score, at, when, half_life, reads=0.0)
        return score, at, counted
    score, at = fold(score, at, when, half_life)
    return score, at, max(counted, when)


def fold_burst(
    summary: tuple[float, float, float | None],
    burst: tuple[float, float, float, float],
    half_life: float,
    correlation: float,
) -> tuple[float, float, float | None]:
    """Merge a newer batch of reads into an older summary, honouring the correlated-reference period.

    ``summary`` is ``(score, time of the score = last read, last counted read or None)``;
    ``burst`` is the newer batch's ``(score, last read, first counted read, last counted read)``.
    With ``correlation`` > 0 a read less than ``correlation`` seconds after the object's last
    *counted* read adds nothing to its score (a burst of reads counts once, as in LRU-K's
    correlated reference period); it still moves the last-read time. So the batch's first
    counted read is taken back out when it falls within the period of the summary's last
    counted read. The Redis script (``_RECORD``) and the catalog merge (``_UPSERT``) implement
    this rule; the in-memory batch and :class:`DecayedCounts` apply its one-read case,
    :func:`count_read`. With ``correlation`` 0 it is plain :func:`fold`. It is exact while the
    period is longer than a push and a flush interval, so that a batch holds at most one
    counted read (the daemon default: 30 s).

        >>> fold_burst((1.0, 0.0, 0.0), (1.0, 3600.0, 3600.0, 3600.0), 3600.0, 7200.0)
        (0.5, 3600.0, 0.0)
    """
    score, at, counted = summary
    b_score, b_at, b_first, b_counted = burst
    merged = decay(score, b_at - at, half_life) + b_score
    if correlation > 0 and counted is not None and b_first - counted < correlation:
        merged -= decay(1.0, b_at - b_first, half_life)
        if b_counted == b_first:
            b_counted = counted
    return merged, max(at, b_at), b_counted


class DecayedCounts:
    """Decayed read counts held in memory: the tracker's state without Redis or a catalog.

    What :class:`AccessTracker` plus a flush leave in ``access_stats`` (score, hits, last read)
    for each key, kept in one dict. The placement benchmark replays traces through it; it
    uses the same :func:`fold` as the tracker, so scores match what production would have.
    """

    __slots__ = ("_stats", "correlation", "half_life")

    def __init__(self, *, half_life: float, correlation: float = 0.0) -> None:
        if half_life <= 0:
            raise ValueError(f"half_life must be positive, got {half_life}")
        self.half_life = half_life
        self.correlation = correlation
        # key -> [score, time of the score (epoch s), hits, last counted read]
        self._stats: dict[Any, list[float]] = {}

    def __repr__(self) -> str:
        return f"DecayedCounts(half_life={self.half_life}s, keys={len(self._stats)})"

    def __len__(self) -> int:
        return len(self._stats)

    def note(self, key: Any, when: float) -> None:
        """Count one read of ``key`` at epoch second ``when``."""
        entry = self._stats.get(key)
        if entry is None:
            self._stats[key] = [1.0, when, 1.0, when]
        else:
            entry[0], entry[1], entry[3] = count_read(
                entry[0], entry[1], entry[3], when, self.half_life, self.correlation
            )
            entry[2] += 1.0

    def get(self, key: Any) -> tuple[float, float, int] | None:
        """``(score, time of the last read, hits)``, the ``access_stats`` row, or None if never read."""
        entry = self._stats.get(key)
        return None if entry is None else (entry[0], entry[1], int(entry[2]))

    def rate(self, key: Any, now: float) -> float:
        """Reads per hour at ``now``, as the planner computes it from the catalog row."""
        entry = self._stats.get(key)
        if entry is None:
            return 0.0
        return rate_per_hour(decay(entry[0], now - entry[1], self.half_life), self.half_life)


@dataclass(frozen=True, slots=True)
class FlushReport:
    objects: int
    hits: int
    read_events: int = 0

    def __repr__(self) -> str:
        return f"FlushReport(objects={self.objects}, hits={self.hits}, read_events={self.read_events})"


class AccessTracker:
    """Records reads in Redis and flushes them to the catalog.

    Args:
        client: the Redis/Valkey client (the hot cache's, so reads pipeline both).
        half_life: decay half-life in seconds.
        clock: current UTC time; tests inject a fake one.
        key_ttl: seconds an untouched per-object hash survives in Redis (a backstop if flushes stop).
        correlation: the correlated-reference period in seconds (0: off; see :func:`fold_burst`).
        timer: ``clock`` as epoch seconds, if there is a cheaper way to it than ``clock().timestamp()``
            (``time.time`` for the system clock); None derives it from ``clock``.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        half_life: float,
        clock: Callable[[], datetime],
        key_ttl: int = 7 * 86400,
        correlation: float = 0.0,
        timer: Callable[[], float] | None = None,
    ) -> None:
        if half_life <= 0:
            raise ValueError(f"half_life must be positive, got {half_life}")
        self.client = client
        self.half_life = half_life
        self.correlation = correlation
        self._clock = clock
        # Building a datetime per read costs more than the rest of note() together: when the
        # clock is the system's, its epoch seconds come straight from time.time.
        self.timer = timer
        self.key_ttl = key_ttl
        self._record_sha = client.script_load(_RECORD)
        self._drain_sha = client.script_load(_DRAIN)
        self._lock = threading.Lock()
        # Reads noted since the last push, as (ref, epoch seconds): the read path only appends.
        self._reads: deque[tuple[ResultRef, float] | tuple[ResultRef, float, bool]] = deque()
        # Inline search hits not yet resolved: uri -> when (only the pusher touches it).
        self._claims: dict[str, float] = {}
        self.max_reads = 500_000
        self.dropped = 0
        # (uri, minute) -> [score, last read, reads, first counted, last counted, ref]; only the
        # pusher (under _push_lock) touches it.
        self._pending: dict[tuple[str, int], list[Any]] = {}
        self._missed: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._push_lock = threading.Lock()
        self.max_pending = 1_000_000
        self._folded = 0
        self.pushed = 0
        self.errors = 0
        #: CPU seconds this process spent pushing (the reads' cost off the read path).
        self.push_seconds = 0.0

    def __repr__(self) -> str:
        return (
            f"AccessTracker(half_life={self.half_life}s, noted={self.noted}, pushed={self.pushed}, "
            f"errors={self.errors}, dropped={self.dropped})"
        )

    @property
    def noted(self) -> int:
        """Reads counted so far (queued or folded)."""
        with self._lock:
            return self._folded + len(self._reads)

    @property
    def clock(self) -> Callable[[], datetime]:
        return self._clock

    @clock.setter
    def clock(self, clock: Callable[[], datetime]) -> None:
        """A new clock (tests move time): reads take their time from it, not from the old ``timer``."""
        self._clock = clock
        self.timer = None

    @staticmethod
    def member(ref: ResultRef) -> str:
        return ref.uri.removeprefix("liquid://")

    def _when(self, now: datetime | None) -> float:
        """A read's time in epoch seconds: ``now`` if given, else the cheapest way to the clock."""
        if now is not None:
            return now.timestamp()
        if self.timer is not None:
            return self.timer()
        return self.clock().timestamp()

    def note(self, ref: ResultRef, *, now: datetime | None = None) -> None:
        """Count one read: queue it in memory (a fraction of a microsecond, no I/O, no lock).

        This runs on every hot read, so it does only what cannot wait: take the read's time
        and queue it (``deque.append`` is atomic). The pusher folds the queue into one entry
        per object and minute at its next :meth:`push`, off the read path. Past
        ``max_reads`` queued (the pusher stopped), reads are dropped and counted in ``dropped``.
        """
        when = self._when(now)
        reads = self._reads
        if len(reads) < self.max_reads:
            reads.append((ref, when))
        else:
            self.dropped += 1

    def note_many(self, refs: Iterable[ResultRef], *, now: datetime | None = None) -> None:
        """:meth:`note` of several reads at one time (a batch resolve): one clock read, one extend."""
        when = self._when(now)
        self._queue([(ref, when) for ref in refs])

    def _queue(self, batch: list[Any]) -> None:
        """Queue reads in one extend; past ``max_reads`` queued, the rest are dropped and counted."""
        reads = self._reads
        room = self.max_reads - len(reads)
        if room < len(batch):
            self.dropped += len(batch) - max(room, 0)
            batch = batch[: max(room, 0)]
        reads.extend(batch)

    def note_search_hits(self, refs: Iterable[ResultRef], *, now: datetime | None = None) -> None:
        """Count the versions a search returned with their values inline: each is read by the search.

        The caller then has the value; if it resolves the ref anyway within
        ``SEARCH_CLAIM_WINDOW``, that read is the same one and is not counted again ("a search hit
        that the caller then resolves is one read, not two"). The claim lives in this process's
        tracker, so a resolve served by another API process counts again.
        """
        when = self._when(now)
        self._queue([(ref, when, True) for ref in refs])

    def _fold(self) -> None:
        """Fold the queued reads into their object-minute entries (under the push lock).

        One entry per object and minute keeps the hourly counts and per-minute read events exact
        across a boundary; the entry is keyed by the ref's URI, whose hash Python caches. Reads
        fold into one decayed delta exactly as if sent one by one: :func:`count_read`'s
        arithmetic, written out, since a function call per read costs more than the sums.
        """
        reads, pending, claims = self._reads, self._pending, self._claims
        half_life, correlation = self.half_life, self.correlation
        with self._lock:  # taken off the queue and counted at once, for ``noted``
            batch = [reads.popleft() for _ in range(len(reads))]
            self._folded += len(batch)
        claimed = 0
        for item in batch:
            ref, when = item[0], item[1]
            if len(item) > 2:  # an inline search hit: counted here, the caller's resolve of it not
                claims.pop(ref.uri, None)  # re-inserted last: the oldest claim goes first
                claims[ref.uri] = when
                if len(claims) > MAX_SEARCH_CLAIMS:
                    del claims[next(iter(claims))]
            elif claims:
                seen = claims.pop(ref.uri, None)
                if seen is not None and 0.0 <= when - seen <= SEARCH_CLAIM_WINDOW:
                    claimed += 1
                    continue
            m = (ref.uri, int(when // 60))
            entry = pending.get(m)
            if entry is None:
                pending[m] = [1.0, when, 1, when, when, ref]  # score, last read, reads, first/last counted
                continue
            if when > entry[1]:
                entry[0] *= 0.5 ** ((when - entry[1]) / half_life)
                entry[1] = when
            if when - entry[4] >= correlation:
                entry[0] += 1.0
                if when > entry[4]:
                    entry[4] = when
            entry[2] += 1
        if claimed:
            with self._lock:
                self._folded -= claimed

    def record(self, ref: ResultRef, *, now: datetime | None = None) -> bool:
        """Count one read and push at once; False when Redis is down."""
        self.note(ref, now=now)
        return self.push()

    def push(self) -> bool:
        """Send every pending read to Redis in one pipeline; False (counts kept for retry) on failure.

        One push at a time: a flush's push waits for the background pusher's pipeline in flight,
        so a flush sees every read noted before it was called.
        """
        with self._push_lock:
            started = time.thread_time()
            try:
                return self._push()
            finally:
                self.push_seconds += time.thread_time() - started

    def _push(self) -> bool:
        self._fold()
        pending, self._pending = self._pending, {}
        with self._lock:
            missed, self._missed = self._missed, set()
        if not pending and not missed:
            return True
        pipe = self.client.pipeline(transaction=False)
        if missed:
            by_bucket: dict[int, list[int]] = {}
            for oid in missed:
                by_bucket.setdefault(partitions.object_id_bucket(oid), []).append(oid)
            for bucket, ids in sorted(by_bucket.items()):
                pipe.sadd(hot_missed(bucket), *ids)
        if pending:
            pipe.execute_command("EVALSHA", self._record_sha, *self._record_args(pending))  # type: ignore[no-untyped-call]
        try:
            results = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            self.errors += 1
            self._requeue(pending, missed)
            log.warning(
                "access tracking unavailable, %d objects' reads kept for retry: %s", len(pending), exc
            )
            return False
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
            # Redis restarted and lost its script cache: reload and send this batch again.
            self._record_sha = self.client.script_load(_RECORD)
            self._drain_sha = self.client.script_load(_DRAIN)
            self._requeue(pending, set())  # the misses were added (SADD is not a script)
            return self._push()
        self.pushed += len(pending)
        return True

    def _record_args(self, pending: dict[tuple[str, int], list[Any]]) -> list[Any]:
        """``numkeys, *KEYS, *ARGV`` of one ``_RECORD`` call for the whole push (see the script).

        This runs for every object read since the last push, so it only collects: the names
        are made once per namespace and minute, the numbers packed in one C call.
        """
        hourly: dict[tuple[str, str], int] = {}
        minutes: dict[int, int] = {}
        members: list[str] = []
        numbers: list[float] = []
        for (uri, minute), (score, when, n, first, counted, ref) in pending.items():
            h = hourly.setdefault((ref.tenant, ref.namespace), len(hourly) + 1)
            m = minutes.setdefault(minute, len(minutes) + 1)
            members.append(uri[9:])  # the URI without liquid://
            numbers += (h, m, when, score, n, first, counted)
        starts = [datetime.fromtimestamp(minute * 60, UTC) for minute in minutes]
        keys = [
            ACCESS_DIRTY,
            ACCESS_MINUTES,
            *(f"{ACCESS_HOURLY}{tenant}:{namespace}" for tenant, namespace in hourly),
            *(ACCESS_MINUTE + start.strftime("%Y%m%d%H%M") for start in starts),
        ]
        head = [
            self.half_life,
            self.key_ttl,
            self.correlation,
            len(hourly),
            [t.strftime("%Y%m%d%H") for t in starts],
        ]
        return [
            len(keys),
            *keys,
            ACCESS_OBJECT,
            json.dumps(head),
            "\n".join(members),
            array("d", numbers).tobytes(),
        ]

    def _requeue(self, pending: dict[tuple[str, int], list[Any]], missed: set[int]) -> None:
        self._fold()  # reads noted during the failed push go first: the older batch merges into them
        with self._lock:
            if len(self._pending) + len(pending) + len(self._missed) > self.max_pending:
                return  # Redis is away for long: drop rather than grow without bound
            for m, entry in pending.items():
                newer = self._pending.get(m)
                if newer is None:
                    self._pending[m] = entry
                else:
                    # Reads noted meanwhile for the same object and minute: both batches count.
                    score, at, counted = fold_burst(
                        (entry[0], entry[1], entry[4]),
                        (newer[0], newer[1], newer[3], newer[4]),
                        self.half_life,
                        self.correlation,
                    )
                    self._pending[m] = [score, at, entry[2] + newer[2], entry[3], counted, entry[5]]
            self._missed |= missed

    def start(self, interval: float = 0.1) -> None:
        """Push pending reads every ``interval`` seconds from a background thread."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.push()
                except Exception:
                    log.exception("access push failed")

        self._thread = threading.Thread(target=loop, name="liquid-access-push", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the pusher and send what is pending."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with contextlib.suppress(redis.RedisError):
            self.push()

    def note_miss(self, object_id: int) -> None:
        """A read of this object came from its home: the daemon considers it for a hot copy."""
        with self._lock:
            self._missed.add(object_id)

    def drain_missed(self, limit: int = 10_000, *, buckets: Iterable[int] | None = None) -> list[int]:
        """Object ids whose reads missed the hot tier since the last call (at most ``limit`` per bucket).

        ``buckets``: only these tenant buckets' ids (a planner shard's); ids from before the
        catalog's partitioning carry no bucket: see :meth:`legacy_missed`.
        """
        self.push()
        wanted = range(partitions.BUCKETS + 1) if buckets is None else sorted(buckets)
        keys = [hot_missed(b) for b in wanted]
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.spop(key, limit)
        out: set[int] = set()
        for raw in pipe.execute():
            out.update(int(m) for m in raw or [])
        return sorted(out)

    def legacy_missed(self, limit: int = 10_000) -> list[int]:
        """Read misses of objects from before the partitioning, left in place (their owner takes them)."""
        self.push()
        raw: list[Any] = self.client.srandmember(HOT_MISSED, limit) or []  # type: ignore[assignment]
        return sorted(int(m) for m in raw)

    def take_missed(self, object_ids: Iterable[int]) -> list[int]:
        """Take these legacy read misses; those another daemon took first are left out."""
        ids = sorted(object_ids)
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for oid in ids:
            pipe.srem(HOT_MISSED, oid)
        return [oid for oid, n in zip(ids, pipe.execute(), strict=True) if n]

    def hourly(self, tenant: str, namespace: str) -> dict[str, int]:
        """Reads per hour (``YYYYMMDDHH`` → count) still held in Redis for one namespace."""
        self.push()
        raw: dict[Any, Any] = self.client.hgetall(f"{ACCESS_HOURLY}{tenant}:{namespace}")
        return {_text(k): int(v) for k, v in raw.items()}

    def flush(
        self, engine: Engine, *, batch: int = 1000, max_batches: int = 1000, hourly: bool = True
    ) -> FlushReport:
        """Move accumulated scores into ``access_stats``, ``batch`` objects per statement.

        ``hourly=False`` leaves the per-namespace hourly counts and the per-minute read events
        for a later flush (finding the hourly counts scans Redis's keys: not something to do
        every second).
        """
        self.push()
        objects = hits = 0
        for _ in range(max_batches):
            raw = self.client.evalsha(self._drain_sha, 1, ACCESS_DIRTY, batch, ACCESS_OBJECT)
            items = list(raw)
            if not items:
                break
            rows = [items[i : i + 6] for i in range(0, len(items), 6)]
            try:
                hits += self._upsert(engine, rows)
            except BaseException:
                # The batch left Redis with the drain: put it back before giving up, or every
                # tenant's counts in it would be lost with this one failure.
                self._restore(rows)
                raise
            objects += len(rows)
            if len(rows) < batch:
                break
        read_events = 0
        if hourly:
            self._flush_hourly(engine)
            read_events = self.flush_minutes(engine)
        return FlushReport(objects=objects, hits=hits, read_events=read_events)

    def flush_minutes(self, engine: Engine) -> int:
        """Turn every finished minute's reads into ``object.read`` events: one per object per minute.

        A minute is finished once the clock is past it and one push interval more (late reads
        of a minute already flushed, after a Redis outage, make a second event for it: counts
        are never lost or doubled). Returns how many events were appended.
        """
        self.push()
        current = self.clock().astimezone(UTC).strftime("%Y%m%d%H%M")
        appended = 0
        for raw_key in sorted(_text(k) for k in self.client.smembers(ACCESS_MINUTES)):
            stamp = raw_key.removeprefix(ACCESS_MINUTE)
            if stamp >= current:
                continue
            raw = list(self.client.eval(_DRAIN_MINUTE, 2, raw_key, ACCESS_MINUTES))
            cols: dict[str, list[Any]] = {
                k: [] for k in ("tenants", "namespaces", "keys", "versions", "counts")
            }
            for member, count in zip(raw[0::2], raw[1::2], strict=True):
                if _add_ref(cols, member, "read"):
                    cols["counts"].append(int(count))
            if not cols["counts"]:
                continue
            minute = datetime.strptime(stamp, "%Y%m%d%H%M").replace(tzinfo=UTC)
            with engine.begin() as conn:
                result = conn.execute(_READ_EVENTS, {**cols, "minute": minute})
            appended += result.rowcount
        return appended

    def _flush_hourly(self, engine: Engine) -> int:
        """Move the per-namespace hourly counts into ``access_hourly``; returns how many hours."""
        cols: dict[str, list[Any]] = {"tenants": [], "namespaces": [], "hours": [], "reads": []}
        drained: list[tuple[str, str, int]] = []
        for key in self.client.scan_iter(match=ACCESS_HOURLY + "*", count=1000):
            name = _text(key)
            tenant, _, namespace = name.removeprefix(ACCESS_HOURLY).partition(":")
            raw = list(self.client.eval(_DRAIN_HOURLY, 1, name))
            for field_, count in zip(raw[0::2], raw[1::2], strict=True):
                drained.append((name, _text(field_), int(count)))
                hour = datetime.strptime(_text(field_), "%Y%m%d%H").replace(tzinfo=UTC)
                cols["tenants"].append(tenant)
                cols["namespaces"].append(namespace)
                cols["hours"].append(hour)
                cols["reads"].append(int(count))
        if cols["reads"]:
            try:
                with engine.begin() as conn:
                    conn.execute(_UPSERT_HOURLY, cols)
            except BaseException:
                self._restore_hourly(drained)
                raise
        return len(cols["reads"])

    def _restore_hourly(self, drained: list[tuple[str, str, int]]) -> None:
        """Add drained hourly counts back (HINCRBY: reads counted meanwhile add up)."""
        pipe = self.client.pipeline(transaction=False)
        for name, hour, count in drained:
            pipe.hincrby(name, hour, count)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            self.errors += 1
            log.error("access flush failed and %d hourly counts could not be put back: %s", len(drained), exc)

    def _restore(self, rows: list[list[Any]]) -> None:
        """Put drained rows back into Redis (see ``_RESTORE``); logged, never raised, if Redis fails too."""
        args: list[Any] = [ACCESS_OBJECT, repr(self.half_life), self.key_ttl]
        for row in rows:
            args += [_text(x) for x in row]
        try:
            self.client.eval(_RESTORE, 1, ACCESS_DIRTY, *args)
        except redis.RedisError as exc:
            self.errors += 1
            log.error("access flush failed and %d objects' counts could not be put back: %s", len(rows), exc)

    def _upsert(self, engine: Engine, rows: Iterable[list[Any]]) -> int:
        cols: dict[str, list[Any]] = {k: [] for k in ("tenants", "namespaces", "keys", "versions")}
        scores: list[float] = []
        counts: list[int] = []
        times: list[datetime] = []
        firsts: list[datetime] = []
        counteds: list[datetime] = []
        for member, s, t, n, f, c in rows:
            if not _add_ref(cols, member, "access"):
                continue
            scores.append(float(s))
            counts.append(int(n))
            times.append(datetime.fromtimestamp(float(t), UTC))
            firsts.append(datetime.fromtimestamp(float(f), UTC))
            counteds.append(datetime.fromtimestamp(float(c), UTC))
        if not scores:
            return 0
        with engine.begin() as conn:
            conn.execute(
                _UPSERT,
                {
                    **cols,
                    "scores": scores,
                    "hits": counts,
                    "times": times,
                    "firsts": firsts,
                    "counteds": counteds,
                    "now": self.clock(),
                    "half_life": self.half_life,
                    "correlation": self.correlation,
                },
            )
        return sum(counts)


def _add_ref(cols: dict[str, list[Any]], member: Any, what: str) -> bool:
    """Append a Redis member's tenant, namespace, key and version to ``cols``; False (logged) when
    it does not parse, so one bad record is dropped instead of failing every flush."""
    try:
        ref = ResultRef.parse("liquid://" + _text(member))
    except ValueError:
        log.warning("dropping unparseable %s record %r", what, member)
        return False
    cols["tenants"].append(ref.tenant)
    cols["namespaces"].append(ref.namespace)
    cols["keys"].append(ref.key)
    cols["versions"].append(ref.version)
    return True


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def hourly_reads(engine: Engine, tenant: str, namespace: str) -> dict[datetime, int]:
    """Flushed reads per hour of one namespace, oldest first (the dashboard's source)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT hour, reads FROM access_hourly WHERE tenant_id = :t AND namespace = :n ORDER BY hour"
            ),
            {"t": tenant, "n": namespace},
        ).all()
    return {r.hour: int(r.reads) for r in rows}
