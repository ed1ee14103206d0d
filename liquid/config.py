"""Configuration: one settings class read from ``liquid.yaml`` and ``LIQUID_*`` environment variables.

Precedence, highest first: keyword arguments, environment (``LIQUID_INLINE_THRESHOLD=8KiB``,
nested with ``__``: ``LIQUID_HOT__TTL=10m``), the YAML file (``$LIQUID_CONFIG`` or
``./liquid.yaml``), then the defaults below. Sizes take human units (``4KiB``, ``2GiB``),
durations too (``90s``, ``12h``, ``30d``).

A ``liquid.yaml`` pointing at real servers::

    catalog_url: postgresql+psycopg://liquid:secret@db.internal:5432/liquid
    stores:
      hot: redis://cache.internal:6379/0
      warm: catalog                      # bytes of warm objects live in the catalog database
      cold: s3://liquid-cold/prod?region=eu-west-1&sse=AES256
      archive: s3://liquid-archive/prod?storage_class=GLACIER_IR
    inline_threshold: 4KiB
    warm_max_object_size: 1MiB           # larger objects are born cold
    compression: {docs: zstd, "kb-*": zstd}

Leave ``catalog_url`` and a store URL unset and ``liquid`` starts (or reuses) the
embedded servers under ``home`` (``.liquid/`` by default).
"""

from __future__ import annotations

import fnmatch
import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from liquid.errors import ConfigError
from liquid.units import parse_duration, parse_size

Size = Annotated[int, BeforeValidator(parse_size)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Tier = Literal["hot", "warm", "cold", "archive"]
EncryptedTier = Literal["cold", "archive"]
DURABLE_TIERS: tuple[Tier, ...] = ("warm", "cold", "archive")
#: Store name meaning "the catalog's own PostgreSQL database".
CATALOG_STORE = "catalog"


class HotSettings(BaseModel):
    """The Redis/Valkey read cache."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: Objects larger than this are never cached in Redis.
    max_object_size: Size = 1024 * 1024
    #: A safety net only: a copy expires after this long even if the planner never evicts it
    #: (it is refilled on its next miss while the planner still wants it). What the hot tier
    #: holds is decided by the tiering daemon, within the hot tier's Budget.
    ttl: Duration = 86400.0


class AccessSettings(BaseModel):
    """Read tracking: decayed scores in Redis, flushed to the catalog."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: Half-life of the decayed read count.
    half_life: Duration = 3600.0
    #: How often the daemon moves scores from Redis into the catalog (the most counts Redis loss can cost).
    flush_interval: Duration = 30.0
    #: Correlated-reference period: a read this soon after the object's last counted read adds
    #: nothing to its score (a burst of reads right after a write counts once), though it still
    #: counts as a hit and a last access. 0 turns it off. It caps a counted rate at one read per
    #: period, so keep promoteAbove thresholds below ``3600 / correlation_window`` per hour.
    correlation_window: Duration = 0.0


#: Query options that carry credentials in store URLs (``liquid.stores._common.SECRET_OPTIONS``).
_SECRET_QUERY = frozenset({"access_key", "secret_key", "password", "session_token"})


def redact_url(url: str) -> str:
    """``url`` with its password and credential options replaced by ``***``, for logs and reprs.

    >>> redact_url("postgresql://liquid:pw@db/liquid")
    'postgresql://liquid:***@db/liquid'
    >>> redact_url("s3://b/p?region=eu&secret_key=abc")
    's3://b/p?region=eu&secret_key=***'
    """
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password:
            netloc = netloc.replace(f":{parts.password}@", ":***@")
        query = [
            (k, "***" if k in _SECRET_QUERY else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe=":/*")))
    except ValueError:
        return "<unparseable URL>"


class TierMap(BaseModel):
    """Which named store backs each tier; ``archive`` is optional."""

    model_config = ConfigDict(extra="forbid")

    hot: str | None = "hot"
    warm: str = "warm"
    cold: str = "cold"
    archive: str | None = None


class ApiSettings(BaseModel):
    """The HTTP API (``liquid.api``)."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8780, ge=0, le=65535)
    #: HMAC secret for signed refs (``?sig=&exp=``); unset disables signed refs.
    signing_secret: SecretStr | None = None
    #: Longest lifetime a signed ref may be given.
    signed_ref_max_ttl: Duration = Field(default=7 * 86400.0, gt=0)
    #: How long a verified API key is remembered in-process (a revoked key works at most this long).
    auth_cache_ttl: Duration = 5.0
    #: Redirect GETs of large cold objects to a presigned URL when the store can presign.
    presign_redirect: bool = False
    presign_min_size: Size = 64 * 1024 * 1024
    #: Lifetime of those presigned URLs. SigV4 (what S3 and its peers accept) allows at most 7 days.
    presign_ttl: Duration = Field(default=300.0, ge=1.0, le=7 * 86400.0)
    #: Most refs one ``POST /v1/refs:resolve`` may carry.
    max_batch: int = Field(default=1000, ge=1, le=100_000)
    #: Batch resolve returns values up to this size inline (base64) when asked for them.
    batch_inline_max: Size = 64 * 1024
    #: Total inline bytes one batch resolve returns; refs past it come without ``inline`` (and say
    #: ``inline_omitted``), so 1,000 refs of 60 KiB cannot build an 80 MB response.
    batch_inline_total: Size = 4 * 1024 * 1024
    #: Requests a second each tenant may make to one API process (a token bucket; 0: no limit).
    #: Over it: 429 with ``Retry-After``. Per process: N replicas admit about N times this.
    rate_limit: float = Field(default=0.0, ge=0.0)
    #: Requests a tenant may make at once before the rate applies.
    rate_burst: int = Field(default=100, ge=1)
    #: Largest body of any request but an object upload (JSON batches, signing); uploads are
    #: bounded by ``max_object_size``.
    max_request_body: Size = 8 * 1024 * 1024


class ShmSettings(BaseModel):
    """The same-node shared-memory tier (``liquid.shm``): Arrow IPC copies under ``dir``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: Unset means ``/dev/shm/liquid-<uid>``, or a temporary directory where ``/dev/shm`` is absent.
    dir: Path | None = None
    #: Total bytes of copies kept; the sweeper evicts the oldest beyond it.
    max_bytes: Size = 1024**3
    #: A copy (and its hint) lives this long.
    ttl: Duration = 900.0
    #: Smaller objects are not worth a copy (they are inline or hot).
    min_size: Size = 64 * 1024
    #: Content types that get a copy when written or read through the API.
    content_types: list[str] = Field(
        default_factory=lambda: ["application/vnd.apache.arrow.stream", "application/vnd.apache.arrow.file"]
    )
    sweep_interval: Duration = 30.0
    #: ``once``: a file's SHA-256 is checked the first time a process maps it (and again if it changes);
    #: ``always``: on every read.
    verify: Literal["once", "always"] = "once"


class MoverSettings(BaseModel):
    """The mover (``liquid.tiering.mover``), retention purge and reconciliation (``liquid.tiering.gc``)."""

    model_config = ConfigDict(extra="forbid")

    #: Journal rows worked on at once by one mover (threads).
    concurrency: int = Field(default=4, ge=1, le=256)
    #: Copy bandwidth cap shared by a mover's threads; 0 means unlimited.
    bytes_per_second: Size = 0
    #: Most journal rows one ``run_once`` claims.
    max_moves_per_cycle: int = Field(default=1000, ge=1)
    #: How long a source copy outlives the switch, so readers that looked the old home up still finish.
    grace_period: Duration = 300.0
    #: A claim expires this long after it was last renewed (a dead mover's rows come back). A
    #: working mover renews the leases of the rows it holds every ``lease / 3`` seconds.
    lease: Duration = 300.0
    #: A mover holding rows beats this often; one silent for three beats counts as crashed and its
    #: rows are claimable at once (the lease above is the backstop for movers that never beat).
    heartbeat: Duration = Field(default=5.0, gt=0)
    #: After this many failed or interrupted attempts a row is marked ``failed`` and reported.
    max_attempts: int = Field(default=5, ge=1)
    #: Delay before a failed row is retried; doubles per attempt up to ``backoff_max``.
    backoff: Duration = 30.0
    backoff_max: Duration = 3600.0
    #: Quick in-step retries of a transient store error before the attempt counts as failed.
    step_retries: int = Field(default=3, ge=1, le=20)
    #: Moves of objects whose stored size is at most this go in batches: their rows are copied and
    #: verified concurrently, then switched together in one catalog transaction, and their sources
    #: deleted with one bulk call per store. They record no ``copied``/``verified`` journal steps
    #: (after a crash, copying a small object again is cheaper than journaling it). 0: every move
    #: takes the per-row path, which journals each step.
    small_move_size: Size = 1024 * 1024
    #: Most small moves switched in one catalog transaction; also bounds the copies a crash can waste.
    batch_size: int = Field(default=100, ge=1, le=10_000)
    #: Longest a store call may go without progress (a chunk read or written) before the mover
    #: gives up on the row's attempt (counted and retried with backoff like any failure), stops
    #: renewing its lease and returns; the stuck call is abandoned on its thread.
    store_timeout: Duration = Field(default=60.0, gt=0)
    #: ``liquid gc`` deletes unreferenced bytes only once they are older than this.
    gc_grace: Duration = 86400.0


class DaemonSettings(BaseModel):
    """Job intervals of ``liquid daemon`` (the access flush interval is ``access.flush_interval``)."""

    model_config = ConfigDict(extra="forbid")

    #: How often the leader plans what changed (a rebuild at start and after a policy apply).
    plan_interval: Duration = 30.0
    #: How often the leader turns reads that missed the hot tier into hot copies (if they earn one).
    admit_interval: Duration = 1.0
    move_interval: Duration = 5.0
    gc_interval: Duration = 3600.0
    #: The leader's lease (a catalog row): renewed every third of this; another daemon takes over
    #: this long after the leader stopped renewing (died, hung, lost the catalog).
    leader_lease: Duration = Field(default=30.0, ge=1.0)
    #: Serve Prometheus metrics on 127.0.0.1 at this port (0: off).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    #: Every daemon plans the tenant buckets it holds (leases split them fairly, claimed every
    #: third of ``leader_lease``), each global budget cap shared between them by value
    #: (``liquid.tiering.shares``); the leader alone still expires, runs gc, exports and prunes.
    #: Off: the leader alone plans the whole catalog. Needs the catalog at migration 0014.
    shard_planning: bool = False


class EventsSettings(BaseModel):
    """The event log's export to ClickHouse and its retention (``liquid.events``)."""

    model_config = ConfigDict(extra="forbid")

    #: Where the leader daemon exports events: ``chdb:///abs/path`` or ``chdb://rel/path`` (embedded
    #: ClickHouse; one process per path), ``clickhouse://user:pass@host:8123/db``. None: no export.
    sink: str | None = None
    export_interval: Duration = 10.0
    batch_size: int = Field(default=50_000, ge=1, le=1_000_000)
    #: Exported events older than this are pruned, a month's partition at a time.
    retention: Duration = 90 * 86400.0
    prune_interval: Duration = 3600.0

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "sink" and isinstance(value, str) else value


class TracingSettings(BaseModel):
    """OpenTelemetry spans around API requests, store calls and moves (``liquid.tracing``)."""

    model_config = ConfigDict(extra="forbid")

    #: none: no spans (the default); console: JSON on stdout; otlp: OTLP/HTTP to ``endpoint``.
    exporter: Literal["none", "console", "otlp"] = "none"
    #: The OTLP/HTTP traces URL (default: the exporter's own, ``OTEL_EXPORTER_OTLP_*`` or localhost:4318).
    endpoint: str | None = None
    service_name: str = "liquid"
    #: Share of new traces recorded; a request that arrives sampled by its caller is always recorded.
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)


class PlannerConfig(BaseModel):
    """How the planner values a hot copy (``liquid.tiering.planner``)."""

    model_config = ConfigDict(extra="forbid")

    #: What a hot hit is worth when ranking hot copies. ``bytes``: the bytes it keeps off the
    #: home store, so the hot tier is ranked by reads per hour alone and maximises the byte hit
    #: ratio; ``time``: the read time it saves, first-byte latency included, which favours
    #: small objects (a higher object hit ratio, a lower byte hit ratio).
    hot_objective: Literal["bytes", "time"] = "bytes"
    #: A resident's savings are multiplied by this before it is compared with a newcomer.
    hysteresis: float = Field(default=1.25, ge=1.0, le=10.0)
    #: Keep hot copies the policy no longer asks for while the hot budget has room; they are
    #: the first to go when room is needed. Off: they are evicted at the next cycle.
    keep_while_room: bool = True
    #: Share of the hot budget kept as a window for read-path admissions: a missed read gets a
    #: copy there at once whatever its rank, and meets the ranked tier only when it leaves, so a
    #: burst of reads right after a write is served even when the ranked tier is full of
    #: objects read more often. 0 turns it off.
    hot_window: float = Field(default=0.0, ge=0.0, le=0.5)
    #: Let the hot tier's rank choose its own half-life, between recency (LRU-like) and the
    #: tracker's frequency, by miniature simulations of a sample of objects, each object's score
    #: summed exactly from the reads seen (``liquid.tiering.adaptive``). On by default (unless
    #: ``read_clock`` is on, the other hot rank): on the placement grid it meets the best online
    #: peer in 20 of 33 cells (the fixed rank 9), is at or above the fixed rank in 31 (two
    #: cells at most 0.13 points below), mean byte hit ratio 0.539 against 0.501, with 0.73x
    #: LRU's hot fills (at most 1.005x in a cell), and a daemon cycle at 1M objects takes about
    #: as long (0.93 s against 1.02 with 1% changed; benchmarks/results/placement.md,
    #: placement-fixed.md; the traces held out from that tuning: placement-holdout.md). Off: hot
    #: copies rank by the tracker's decayed rate.
    adaptive: bool = True
    #: With ``adaptive``, the simulations also try each half-life with residents kept harder
    #: (``hysteresis`` times 1.6), and the tier keeps the better: a loop or a steady popular set
    #: is served by residents that newcomers one read ahead do not displace, fast drift by
    #: giving them up. ``hysteresis`` stays the least the tier uses. On the held-out loop at 10%
    #: it took the byte hit ratio from 0.280 to 0.294 (S3-FIFO 0.298) with 0.66x the hot fills;
    #: over the grid the mean is level (0.5393 against 0.5390) with 0.73x LRU's fills against
    #: 0.77x; a 1M-object daemon cycle 1.06 s against 1.04 with 1% changed. Off: ``hysteresis`` alone.
    adaptive_hysteresis: bool = True
    #: Share of objects the simulations follow (hashed by id; objects large against the hot tier
    #: more often, at a smaller weight); more is steadier and costs more.
    adaptive_sample: float = Field(default=0.125, gt=0.0, le=1.0)
    #: Let the hot window's share (``hot_window`` is where it starts) adapt by hill climbing on
    #: the hot tier's byte hit ratio, counted in reads rather than seconds
    #: (``liquid.tiering.window``): large where popularity drifts fast (LRU-like), small where
    #: it is steady (ranked by the tracker's rate). Window members read again go to the back.
    adaptive_window: bool = False
    #: Bytes read per sample period of the window's hill climbing, in hot budgets.
    window_period: float = Field(default=2.0, gt=0.0, le=1000.0)
    #: Rank hot copies with recency counted in reads, not seconds (``liquid.tiering.readclock``):
    #: an object's standing halves every ``read_half_life`` hot budgets of bytes re-read (reads
    #: of objects once read do not count, so a one-time scan does not age the hot set), and the
    #: same reads rank the same whether they come in 3 days or 30. Off: the tracker's wall-clock
    #: decay. Opt-in: on the placement grid it gains up to 13 points of byte hit ratio where
    #: popularity drifts fast but loses 1.5 on the scan trace, whose Zipf part does not drift,
    #: and 1.6 on workflow at 5% (benchmarks/results/placement-readclock.md).
    read_clock: bool = False
    #: The read clock's half-life, in hot budgets of bytes read (with ``read_adaptive``: where
    #: its choice starts, and the middle of its candidates).
    read_half_life: float = Field(default=2.0, gt=0.0, le=1e6)
    #: Let the read clock's half-life adapt, from an eighth of ``read_half_life`` to eight
    #: times it, or to the tracker's own wall-clock rank, by miniature simulations of a sample
    #: of objects (``liquid.tiering.readclock.ReadHalfLife``): short where popularity drifts,
    #: long where it is steady. Needs ``read_clock`` (and so excludes ``adaptive``, which adapts
    #: the wall-clock rank instead). The simulated tiers admit as the real one does, its
    #: ``hot_window`` included. Opt-in: on the placement grid it is at or above the fixed rank
    #: (``adaptive: false``) in 29 of 33 cells (workflow and scan included) and meets the best
    #: online peer in 19 (the default adaptive rank 20), but is 0.12 and 0.21 points below the
    #: fixed rank on zipf0.7-drift20%-30d at 5% and 10%
    #: (benchmarks/results/placement-readadaptive.md).
    read_adaptive: bool = False

    @model_validator(mode="after")
    def _one_rank(self) -> PlannerConfig:
        # Each would otherwise be ignored without a word: the operator would believe a rank runs
        # that does not.
        if self.read_adaptive and not self.read_clock:
            raise ValueError("read_adaptive adapts the read clock's half-life: it needs read_clock: true")
        if self.read_clock and self.adaptive:
            if "adaptive" not in self.model_fields_set:
                # On by default; an operator who turns the read clock on chose that rank instead.
                self.adaptive = False
                return self
            raise ValueError(
                "read_clock and adaptive are two different hot ranks (recency in bytes read, or a"
                " half-life in seconds chosen by simulations): turn one of them off"
            )
        return self


class ResilienceSettings(BaseModel):
    """How Liquid bounds its calls to backends (``liquid.stores.guard``) and to the core (the API)."""

    model_config = ConfigDict(extra="forbid")

    #: Calls in flight to one durable store at once (a bulkhead); further calls wait ``queue_wait``
    #: for a slot, then fail with 503. Keeps a hung store from holding every API worker thread.
    store_concurrency: int = Field(default=16, ge=1, le=1024)
    queue_wait: Duration = 1.0
    #: Consecutive failures of a backend that open its circuit (calls then fail at once with 503
    #: and ``Retry-After``), and how long it stays open before a trial call.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_reset: Duration = 10.0
    #: Socket connect and read timeout of the Redis hot cache and access tracker, in seconds.
    hot_timeout: Duration = 0.5
    #: Longest an API request waits for a catalog or store answer before 503 + ``Retry-After``
    #: (uploads and the body of a streamed read are bounded per chunk by the stores' own timeouts).
    request_timeout: Duration = 15.0
    #: ``Retry-After`` sent when the catalog (PostgreSQL) is unreachable.
    catalog_retry_after: Duration = 2.0
    #: API requests in flight at once per route class (``liquid.api.capacity``): object uploads
    #: (one larger than a piece, 1 MiB, holds a worker thread of the uploads' own while its body
    #: arrives; a smaller one is read on the event loop first), object and ref reads,
    #: and the rest of ``/v1``. One more gets 503 + ``Retry-After: busy_retry_after`` at once.
    max_uploads: int = Field(default=16, ge=1, le=1024)
    max_reads: int = Field(default=512, ge=1, le=100_000)
    max_other: int = Field(default=128, ge=1, le=100_000)
    busy_retry_after: Duration = 1.0


class VectorSettings(BaseModel):
    """Vector search (:mod:`liquid.vectors`): the default index, other named indexes, HNSW knobs.

    ``indexes`` maps a name to an index URL (see :func:`liquid.vectors.open_index`); a query or a
    write names one to use it, and its credentials stay here::

        vectors:
          default: catalog                     # pgvector in the catalog database
          indexes:
            kb2: qdrant://qdrant.internal:6333?api_key=secret
          ef_search: 100
    """

    model_config = ConfigDict(extra="forbid")

    #: The index writes and searches use unless they name another: ``catalog`` (pgvector in the
    #: catalog database) or a key of ``indexes``.
    default: str = "catalog"
    indexes: dict[str, str] = Field(default_factory=dict)
    #: The distance a namespace gets at its first write unless the write names one.
    metric: Literal["cosine", "l2", "ip"] = "cosine"
    #: HNSW build parameters (pgvector ``m``/``ef_construction``; Qdrant ``m``/``ef_construct``).
    hnsw_m: int = Field(default=16, ge=2, le=100)
    hnsw_ef_construction: int = Field(default=64, ge=4, le=1000)
    #: Candidates an HNSW search keeps (recall against speed); a query may override it.
    ef_search: int = Field(default=100, ge=1, le=1000)
    #: pgvector: a search whose k-th hit is no closer than chance alone would put it (the query
    #: has no neighbourhood in the data, where HNSW's graph has nothing to follow and misses most
    #: true neighbours) is answered again by an exact scan, when the searched set holds at most
    #: this many vectors; 0 turns the fallback off. An exact scan costs about 1 µs per vector
    #: (~90 ms at 100k on 2 shared cores; ``benchmarks/results/vectors.md``), so this bounds
    #: what such a query may cost; above it, structureless queries get HNSW's own recall.
    exact_fallback_max: int = Field(default=200_000, ge=0)
    #: How far (in standard deviations of the distances to a sample of the set) the k-th hit must
    #: stand beyond the best of ``n`` chance draws (``sqrt(2 ln n)``) for the HNSW answer to stand.
    exact_fallback_margin: float = Field(default=1.0, ge=0.0, le=20.0)
    #: Largest ``k`` a query may ask for, and most embeddings one write may carry.
    max_k: int = Field(default=1000, ge=1, le=1000)
    max_batch: int = Field(default=1000, ge=1, le=100_000)
    #: Longest embedding accepted (pgvector's HNSW indexes at most 2000 dimensions).
    max_dimensions: int = Field(default=2000, ge=1, le=2000)


class EncryptionSettings(BaseModel):
    """Client-side envelope encryption of cold and archive objects (``liquid.stores.envelope``).

    Master keys come only from the environment or a file (see :mod:`liquid.keyring` for the
    format and rotation); they are never logged or shown.
    """

    model_config = ConfigDict(extra="forbid")

    #: Encrypt every object the stores of ``tiers`` hold with its tenant's data key.
    envelope: bool = False
    #: Warm bytes live in PostgreSQL rows and the hot tier is a cache, so only these two apply.
    tiers: list[EncryptedTier] = Field(default_factory=lambda: list[EncryptedTier](["cold", "archive"]))
    #: ``id:base64key`` items, comma-separated, the active key first (``LIQUID_ENCRYPTION__MASTER_KEYS``).
    master_keys: SecretStr | None = None
    #: A file of ``id base64key`` lines, the active key first (a mounted secret).
    master_keys_file: Path | None = None
    #: KMS keys (key id, ARN or ``alias/NAME``), the active one first: data keys are wrapped by
    #: KMS (``liquid.kms``), credentials from boto3's chain. With a key file or ``master_keys``
    #: as well, the KMS key is active and ``liquid keys rotate-master`` moves data keys to it.
    kms_keys: list[str] = Field(default_factory=list)
    #: A KMS-API endpoint other than AWS's own (``LIQUID_ENCRYPTION__KMS_ENDPOINT``).
    kms_endpoint: str | None = None
    #: The KMS region (else boto3's: ``AWS_REGION``, the config files).
    kms_region: str | None = None


class ClassificationRule(BaseModel):
    """Where objects of one classification may live (``liquid.classification``)."""

    model_config = ConfigDict(extra="forbid")

    #: Tiers the object may have a copy or home in.
    tiers: list[Tier] = Field(default_factory=lambda: list[Tier](["hot", "warm", "cold", "archive"]))
    #: Only in tiers whose store encrypts: envelope encryption (``encryption.tiers``) or a store
    #: named in ``classification.encrypted_stores``. The hot tier (Redis) never counts.
    encrypted_only: bool = False
    #: Whether same-node shared-memory copies (plain files in /dev/shm) are allowed.
    shm: bool = True


def _default_classes() -> dict[str, ClassificationRule]:
    return {
        "restricted": ClassificationRule(tiers=["warm", "cold", "archive"], encrypted_only=True, shm=False)
    }


class ClassificationSettings(BaseModel):
    """Per-classification placement rules; objects with no classification, or one not listed, go anywhere."""

    model_config = ConfigDict(extra="forbid")

    rules: dict[str, ClassificationRule] = Field(default_factory=_default_classes)
    #: Stores the platform encrypts at rest (e.g. the catalog on encrypted disks, S3 with SSE-KMS):
    #: an operator's statement, counted as encrypted for ``encrypted_only``.
    encrypted_stores: list[str] = Field(default_factory=list)


class RedactionSettings(BaseModel):
    """Redaction of text payloads before storage (``liquid.redaction``); off by default."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    #: Content-type globs whose payloads are redacted.
    content_types: list[str] = Field(
        default_factory=lambda: ["text/*", "application/json", "application/*+json"]
    )
    #: Redaction reads a payload into memory: larger text payloads are refused (413).
    max_size: Size = 16 * 1024 * 1024
    #: ``package.module:factory``: a callable taking the settings, returning a Redactor.
    hook: str | None = None


class Settings(BaseSettings):
    """Everything Liquid reads at start. Invalid values fail with the key and the reason."""

    model_config = SettingsConfigDict(
        env_prefix="LIQUID_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    #: Where embedded servers keep their data, and the default cold directory.
    home: Path = Path(".liquid")
    #: SQLAlchemy URL of the catalog; unset means the embedded PostgreSQL under ``home``.
    catalog_url: str | None = None
    #: What sits between Liquid and the catalog's PostgreSQL: ``none`` (a direct connection, or a
    #: session-mode pool) or ``transaction`` (PgBouncer in transaction mode, or any pooler that hands
    #: each transaction a different server session): then no server-side prepared statements and no
    #: session settings are used. docs/scaling.md says what each mode needs.
    catalog_pooler: Literal["none", "transaction"] = "none"
    #: Named stores, by URL (see :func:`liquid.stores.open_store`); ``catalog`` means the catalog database.
    stores: dict[str, str] = Field(default_factory=dict)
    tiers: TierMap = Field(default_factory=TierMap)
    #: Values up to this size are returned inside the ref itself.
    inline_threshold: Size = 4096
    max_object_size: Size = 5 * 1024**3
    #: New objects up to this size are born warm (PostgreSQL); larger ones are born cold.
    warm_max_object_size: Size = 1024 * 1024
    #: Warm objects up to this size keep their bytes in their catalog row instead of the warm store.
    warm_row_max_size: Size = 64 * 1024
    hot: HotSettings = Field(default_factory=HotSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    #: Namespace glob → codec, for warm and cold bytes; first match wins.
    compression: dict[str, Literal["zstd", "none"]] = Field(default_factory=dict)
    compression_level: int = Field(default=3, ge=1, le=22)
    #: This node's name, for shared-memory hints.
    node_id: str = Field(default_factory=socket.gethostname)
    api: ApiSettings = Field(default_factory=ApiSettings)
    shm: ShmSettings = Field(default_factory=ShmSettings)
    mover: MoverSettings = Field(default_factory=MoverSettings)
    planner: PlannerConfig = Field(default_factory=PlannerConfig)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    vectors: VectorSettings = Field(default_factory=VectorSettings)
    encryption: EncryptionSettings = Field(default_factory=EncryptionSettings)
    classification: ClassificationSettings = Field(default_factory=ClassificationSettings)
    redaction: RedactionSettings = Field(default_factory=RedactionSettings)

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "cost_model" in data:
            raise ValueError(
                "cost_model is no longer a setting: prices live in one place, a CostModel policy document "
                "(copy liquid/policy/cost-model-defaults.yaml, edit it and `liquid policy apply` it)"
            )
        return data

    def __repr_args__(self) -> Any:
        # Settings get logged; URLs in them carry passwords and keys.
        for name, value in super().__repr_args__():
            if name == "catalog_url" and isinstance(value, str):
                value = redact_url(value)
            elif name == "stores" and isinstance(value, dict):
                value = {k: redact_url(v) for k, v in value.items()}
            yield name, value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.inline_threshold > self.max_object_size:
            raise ValueError("inline_threshold must not exceed max_object_size")
        for tier in ("hot", "warm", "cold", "archive"):
            name = getattr(self.tiers, tier)
            if name is not None and name != CATALOG_STORE and self.stores and name not in self.stores:
                # A named store that is missing is only an error once stores are configured at all;
                # with none configured the embedded defaults fill every slot.
                raise ValueError(
                    f"tiers.{tier} names store {name!r}, which is not in stores ({', '.join(self.stores)})"
                )
        if self.vectors.default != CATALOG_STORE and self.vectors.default not in self.vectors.indexes:
            raise ValueError(
                f"vectors.default names index {self.vectors.default!r}, which is neither 'catalog' nor"
                f" in vectors.indexes ({', '.join(self.vectors.indexes) or 'none configured'})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = os.environ.get("LIQUID_CONFIG", "liquid.yaml")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if Path(path).is_file():
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        elif "LIQUID_CONFIG" in os.environ:
            raise ConfigError(f"LIQUID_CONFIG points at {path!r}, which is not a file", field="LIQUID_CONFIG")
        return tuple(sources)

    def compression_for(self, namespace: str) -> str:
        """The codec for a namespace's warm and cold bytes (``zstd`` or ``none``)."""
        for pattern, codec in self.compression.items():
            if fnmatch.fnmatchcase(namespace, pattern):
                return codec
        return "none"

    def store_for(self, tier: Tier) -> str | None:
        """The store name configured for a tier."""
        name: str | None = getattr(self.tiers, tier)
        return name


def load_settings(**overrides: Any) -> Settings:
    """Build :class:`Settings`, turning validation errors into one ConfigError listing ``key: reason``."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        source = os.environ.get("LIQUID_CONFIG", "liquid.yaml")
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            shown = repr(err.get("input"))
            # Never echo a whole mapping or a URL/secret back: it may carry passwords into logs.
            private = not err["loc"] or any(
                word in key for word in ("url", "secret", "password", "stores", "key", "sink")
            )
            lines.append(f"  {key}: {msg}" + ("" if private or shown in msg else f" (got {shown})"))
        raise ConfigError(
            f"invalid configuration (from {source}, LIQUID_* environment or arguments):\n" + "\n".join(lines),
            field=str(exc.errors()[0]["loc"][0]) if exc.errors() and exc.errors()[0]["loc"] else None,
        ) from None
