"""Access tracking: a decayed read score per object, kept in Redis and flushed to the catalog in batches.

Every read adds one to an exponentially decayed count (half-life ``access.half_life``):
``S(t) = S(t0) · 2^-((t - t0) / h) + 1``. Redis holds only what accumulated since the last
flush — the *delta* score, its time, and the hit count — so a flush can merge it into the
catalog's ``access_stats`` row (``score_cat · 2^-(Δt/h) + delta``) and reset it atomically.
Losing Redis therefore loses at most one flush interval of counts, never objects, and a
read with Redis down just is not counted.

The record is one Lua call (``EVALSHA``) that a caller can put in the same pipeline as its
hot-cache GET, so tracking costs no extra round trip on the hot path.

A decayed count converts to a rate: with half-life ``h`` seconds, a steady ``r`` reads/s
settles at ``S = r · h / ln 2``; :func:`rate_per_hour` inverts that for the policy engine.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from redis.client import Pipeline
from sqlalchemy import Engine, text

from liquid.redis_keys import ACCESS_DIRTY, ACCESS_HOURLY, ACCESS_OBJECT, RESTORE_QUEUE
from liquid.refs import ResultRef

log = logging.getLogger(__name__)

# KEYS: object hash, dirty set, hourly hash. ARGV: now, half-life, member, hour field, ttl.
_RECORD = """
local v = redis.call('HMGET', KEYS[1], 's', 't')
local now = tonumber(ARGV[1])
local s = tonumber(v[1]) or 0
local t = tonumber(v[2]) or now
local dt = now - t
if dt < 0 then dt = 0 end
s = s * math.pow(0.5, dt / tonumber(ARGV[2])) + 1
redis.call('HSET', KEYS[1], 's', tostring(s), 't', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
redis.call('EXPIRE', KEYS[3], 691200)
return 1
"""

# KEYS: dirty set. ARGV: batch size, object-hash prefix. Pops members and returns
# [member, s, t, n, ...] after deleting each hash: read-and-reset in one atomic step.
_DRAIN = """
local members = redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))
local out = {}
for _, m in ipairs(members) do
  local k = ARGV[2] .. m
  local v = redis.call('HMGET', k, 's', 't', 'n')
  redis.call('DEL', k)
  if v[1] then
    table.insert(out, m)
    table.insert(out, v[1])
    table.insert(out, v[2])
    table.insert(out, v[3] or '0')
  end
end
return out
"""

_UPSERT = text(
    """
    INSERT INTO access_stats (object_id, tenant_id, score, hits, last_access_at, updated_at)
    SELECT o.id, o.tenant_id, v.s, v.n, v.t, :now
    FROM unnest(CAST(:tenants AS text[]), CAST(:namespaces AS text[]), CAST(:keys AS text[]),
                CAST(:versions AS int[]), CAST(:scores AS float8[]), CAST(:hits AS bigint[]),
                CAST(:times AS timestamptz[])) AS v(tenant_id, namespace, key, version, s, n, t)
    JOIN objects o ON o.tenant_id = v.tenant_id AND o.namespace = v.namespace AND o.key = v.key
                  AND o.version = v.version
    ON CONFLICT (object_id) DO UPDATE SET
        score = access_stats.score * power(0.5, GREATEST(0, extract(epoch FROM
                    EXCLUDED.last_access_at - access_stats.last_access_at)) / :half_life) + EXCLUDED.score,
        hits = access_stats.hits + EXCLUDED.hits,
        last_access_at = GREATEST(access_stats.last_access_at, EXCLUDED.last_access_at),
        updated_at = EXCLUDED.updated_at
    """
)


def rate_per_hour(score: float, half_life: float) -> float:
    """Reads per hour that a decayed count ``score`` (half-life in seconds) stands for."""
    return score * math.log(2) / half_life * 3600.0 if half_life > 0 else 0.0


def decay(score: float, seconds: float, half_life: float) -> float:
    """``score`` after ``seconds`` more of decay."""
    return score * 0.5 ** (max(seconds, 0.0) / half_life) if half_life > 0 else score


@dataclass(frozen=True, slots=True)
class FlushReport:
    objects: int
    hits: int

    def __repr__(self) -> str:
        return f"FlushReport(objects={self.objects}, hits={self.hits})"


class AccessTracker:
    """Records reads in Redis and flushes them to the catalog.

    Args:
        client: the Redis/Valkey client (the hot cache's, so reads pipeline both).
        half_life: decay half-life in seconds.
        clock: current UTC time; tests inject a fake one.
        key_ttl: seconds an untouched per-object hash survives in Redis (a backstop if flushes stop).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        half_life: float,
        clock: Callable[[], datetime],
        key_ttl: int = 7 * 86400,
    ) -> None:
        if half_life <= 0:
            raise ValueError(f"half_life must be positive, got {half_life}")
        self.client = client
        self.half_life = half_life
        self.clock = clock
        self.key_ttl = key_ttl
        self._record_sha = client.script_load(_RECORD)
        self._drain_sha = client.script_load(_DRAIN)
        self.recorded = 0
        self.errors = 0

    def __repr__(self) -> str:
        return f"AccessTracker(half_life={self.half_life}s, recorded={self.recorded}, errors={self.errors})"

    @staticmethod
    def member(ref: ResultRef) -> str:
        return ref.uri.removeprefix("liquid://")

    def queue(self, pipe: Pipeline, ref: ResultRef, *, now: datetime | None = None) -> None:
        """Add the record command to a caller's pipeline (no round trip of its own)."""
        when = now or self.clock()
        m = self.member(ref)
        pipe.execute_command(
            "EVALSHA",
            self._record_sha,
            3,
            ACCESS_OBJECT + m,
            ACCESS_DIRTY,
            f"{ACCESS_HOURLY}{ref.tenant}:{ref.namespace}",
            repr(when.timestamp()),
            repr(self.half_life),
            m,
            when.strftime("%Y%m%d%H"),
            self.key_ttl,
        )

    def record(self, ref: ResultRef, *, now: datetime | None = None) -> bool:
        """Record one read in its own round trip; False (and a counted error) when Redis is down."""
        pipe = self.client.pipeline(transaction=False)
        self.queue(pipe, ref, now=now)
        return self.execute(pipe) is not None

    def execute(self, pipe: Pipeline) -> list[Any] | None:
        """Run a pipeline holding queued records; reload the script once if Redis forgot it."""
        try:
            results: list[Any] = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            self.errors += 1
            log.warning("access tracking unavailable, read not counted: %s", exc)
            return None
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
            # Redis restarted and lost its script cache: reload for the next call; this read is lost.
            self._record_sha = self.client.script_load(_RECORD)
            self._drain_sha = self.client.script_load(_DRAIN)
        self.recorded += 1
        return results

    def request_restore(self, ref: ResultRef) -> None:
        """Ask the daemon to consider promoting a cold object that was just read."""
        try:
            self.client.sadd(RESTORE_QUEUE, self.member(ref))
        except redis.RedisError as exc:
            self.errors += 1
            log.warning("restore request for %s not queued: %s", ref, exc)

    def drain_restores(self, limit: int = 1000) -> list[ResultRef]:
        """Refs whose reads asked for a restore since the last call."""
        members = self.client.spop(RESTORE_QUEUE, limit) or []
        return [ResultRef.parse("liquid://" + _text(m)) for m in members]  # type: ignore[union-attr]

    def hourly(self, tenant: str, namespace: str) -> dict[str, int]:
        """Reads per hour (``YYYYMMDDHH`` → count) still held in Redis for one namespace."""
        raw = self.client.hgetall(f"{ACCESS_HOURLY}{tenant}:{namespace}")
        return {_text(k): int(v) for k, v in raw.items()}  # type: ignore[union-attr]

    def flush(self, engine: Engine, *, batch: int = 1000, max_batches: int = 1000) -> FlushReport:
        """Move accumulated scores into ``access_stats``, ``batch`` objects per statement."""
        objects = hits = 0
        for _ in range(max_batches):
            raw = self.client.evalsha(self._drain_sha, 1, ACCESS_DIRTY, batch, ACCESS_OBJECT)
            items = list(raw)  # type: ignore[arg-type]
            if not items:
                break
            rows = [items[i : i + 4] for i in range(0, len(items), 4)]
            objects += len(rows)
            hits += self._upsert(engine, rows)
            if len(rows) < batch:
                break
        return FlushReport(objects=objects, hits=hits)

    def _upsert(self, engine: Engine, rows: Iterable[list[Any]]) -> int:
        cols: dict[str, list[Any]] = {k: [] for k in ("tenants", "namespaces", "keys", "versions")}
        scores: list[float] = []
        counts: list[int] = []
        times: list[datetime] = []
        for member, s, t, n in rows:
            try:
                ref = ResultRef.parse("liquid://" + _text(member))
            except ValueError:
                log.warning("dropping unparseable access record %r", member)
                continue
            cols["tenants"].append(ref.tenant)
            cols["namespaces"].append(ref.namespace)
            cols["keys"].append(ref.key)
            cols["versions"].append(ref.version)
            scores.append(float(s))
            counts.append(int(n))
            times.append(datetime.fromtimestamp(float(t), UTC))
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
                    "now": self.clock(),
                    "half_life": self.half_life,
                },
            )
        return sum(counts)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
