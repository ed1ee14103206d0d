"""The catalog: PostgreSQL tables that are the source of truth for every object.

``tenant_id`` leads every tenant-scoped index, so a tenant's queries never scan
another tenant's rows. The event table is append-only: a trigger (see the first
migration) refuses UPDATE and DELETE on it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

# Imported for its side effect too: SQLAlchemy reflection learns the ``vector`` type.
from pgvector.sqlalchemy import VECTOR
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, datetime: DateTime(timezone=True)}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiKey(Base):
    """An API key; only a SHA-256 of the secret is stored (keys are 256-bit random, so no KDF is needed)."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    #: Public lookup part of the key (``lq_<prefix>_<secret>``).
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    #: NULL for operator (admin) keys.
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16), default="tenant")
    name: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_api_keys_tenant", "tenant_id"),)


class KeyHead(Base):
    """The last version handed out per (tenant, namespace, key); the row lock serialises writers.

    No foreign key to ``tenants`` (nor on ``objects.tenant_id``): the one writer,
    :data:`liquid.catalog.fastpath.INSERT_OBJECT`, looks the tenant up in its own statement,
    without the row lock a foreign-key check takes on every put (migration 0013).
    """

    __tablename__ = "key_heads"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63), primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    last_version: Mapped[int] = mapped_column(Integer)


class Object(Base):
    """One immutable object version and where its bytes live.

    Partitioned by range of ``id``, whose high bits carry the tenant's hash bucket: one partition
    per bucket plus ``objects_legacy`` for rows from before migration 0012
    (:mod:`liquid.catalog.partitions`). Writers give the id as ``liquid_object_id(tenant_id)``;
    the default refuses an insert without one. The reference (tenant, namespace, key, version)
    is unique in each partition (the migration makes those constraints), not on the parent.
    """

    __tablename__ = "objects"

    id: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False, server_default=text("liquid_object_id_required()")
    )
    tenant_id: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(63))
    key: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    #: Logical size (what readers get) and stored size (after compression).
    size: Mapped[int] = mapped_column(BigInteger)
    stored_size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(Text, default="application/octet-stream")
    compression: Mapped[str] = mapped_column(String(16), default="none")
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    classification: Mapped[str | None] = mapped_column(Text)
    trace_id: Mapped[str | None] = mapped_column(Text)
    correlation_id: Mapped[str | None] = mapped_column(Text)
    execution_id: Mapped[str | None] = mapped_column(Text)
    #: Lifetime scope, as a workflow engine's results: step | execution | workflow | permanent.
    scope: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime | None]
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Durable home: tier name, configured store name, and the locator inside that store.
    #: Values at or under the inline threshold live in ``inline_data`` (home tier warm, store ``catalog``).
    home_tier: Mapped[str] = mapped_column(String(16))
    home_store: Mapped[str] = mapped_column(Text)
    locator: Mapped[str | None] = mapped_column(Text)
    inline_data: Mapped[bytes | None] = mapped_column(LargeBinary)
    home_since: Mapped[datetime] = mapped_column(server_default=func.now())
    #: live → deleted | expired → purged
    state: Mapped[str] = mapped_column(String(16), default="live")
    deleted_at: Mapped[datetime | None]
    purged_at: Mapped[datetime | None]

    # The id indexes are partial: most objects carry no trace/correlation/execution id, and an
    # index entry per NULL would tax every write for lookups that never ask for NULL.
    __table_args__ = (
        Index("ix_objects_tenant_trace", "tenant_id", "trace_id", postgresql_where="trace_id IS NOT NULL"),
        Index(
            "ix_objects_tenant_correlation",
            "tenant_id",
            "correlation_id",
            postgresql_where="correlation_id IS NOT NULL",
        ),
        Index(
            "ix_objects_tenant_execution",
            "tenant_id",
            "execution_id",
            postgresql_where="execution_id IS NOT NULL",
        ),
        # Planner and retention scans are global, by state and tier.
        Index("ix_objects_state_tier", "state", "home_tier"),
        Index("ix_objects_expires", "expires_at", postgresql_where="expires_at IS NOT NULL"),
        {"postgresql_partition_by": "RANGE (id)"},
    )


class AccessStat(Base):
    """Decayed access score per object, flushed in batches from the hot tier's counters."""

    __tablename__ = "access_stats"

    object_id: Mapped[int] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63))
    score: Mapped[float] = mapped_column(Float, default=0.0)
    hits: Mapped[int] = mapped_column(BigInteger, default=0)
    last_access_at: Mapped[datetime | None]
    #: The last read that added to ``score`` (see ``access.correlation_window``).
    counted_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (Index("ix_access_stats_tenant", "tenant_id", "last_access_at"),)


class Event(Base):
    """Append-only log of every state change and aggregated read (see :mod:`liquid.events.log`).

    Partitioned by month on ``at`` (the migration creates the partitions; the primary key
    carries ``at`` because PostgreSQL wants the partition key in it). ``txid`` is the
    writing transaction's id: the exporter's order (see :mod:`liquid.events.export`).
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_tenant", "tenant_id", "id"),
        Index("ix_events_object", "object_id"),
        Index("ix_events_export", "txid", "id"),
        Index("ix_events_kind_at", "kind", "at"),
        {"postgresql_partition_by": "RANGE (at)"},
    )

    id: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False, server_default=text("nextval('events_id_seq')")
    )
    at: Mapped[datetime] = mapped_column(primary_key=True, server_default=func.now())
    txid: Mapped[int] = mapped_column(BigInteger, server_default=text("(pg_current_xact_id())::text::bigint"))
    tenant_id: Mapped[str | None] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[int | None] = mapped_column(BigInteger)
    namespace: Mapped[str | None] = mapped_column(String(63))
    key: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str | None] = mapped_column(Text)
    tier: Mapped[str | None] = mapped_column(String(16))
    from_tier: Mapped[str | None] = mapped_column(String(16))
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    count: Mapped[int | None] = mapped_column(BigInteger)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    trace_id: Mapped[str | None] = mapped_column(Text)
    correlation_id: Mapped[str | None] = mapped_column(Text)
    execution_id: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class EventExport(Base):
    """Where each event sink's export stands: its watermark and the batch it is writing, if any."""

    __tablename__ = "event_exports"

    sink: Mapped[str] = mapped_column(Text, primary_key=True)
    #: Everything at or below (txid, event_id) is in the sink.
    txid: Mapped[int] = mapped_column(BigInteger, default=0)
    event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The batch written but not yet committed here: (txid, id) of its last event. A re-run
    #: writes exactly that batch again, with the same deduplication token.
    pending_txid: Mapped[int | None] = mapped_column(BigInteger)
    pending_event_id: Mapped[int | None] = mapped_column(BigInteger)
    exported: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class MoverHeartbeat(Base):
    """A mover's last sign of life: rows it claimed are free once this is stale (journal.claim)."""

    __tablename__ = "mover_heartbeats"

    worker_id: Mapped[str] = mapped_column(Text, primary_key=True)
    beat_at: Mapped[datetime]


class DaemonLease(Base):
    """Who leads the daemons, until when (``liquid.tiering.leader``); one row per lease name."""

    __tablename__ = "daemon_leases"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    holder: Mapped[str] = mapped_column(Text)
    #: Goes up each time the lease changes hands: a holder that sees another epoch lost it meanwhile.
    epoch: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime]
    #: ``pg_postmaster_start_time()`` when last renewed: a restart (which empties the unlogged
    #: change feed) shows as a new value, and the leader then rebuilds.
    server_started: Mapped[datetime]


class TieringShare(Base):
    """A planner shard's demand and share under one global budget cap (``liquid.tiering.shares``).

    The row with ``holder = ''`` is the cap's lock (every split takes it ``FOR UPDATE``).
    """

    __tablename__ = "tiering_shares"

    #: ``<tier>/<cap name>`` (the cap names are the Budgets': ``<budget>/<tier>/bytes``).
    cap: Mapped[str] = mapped_column(Text, primary_key=True)
    holder: Mapped[str] = mapped_column(Text, primary_key=True)
    #: ``{"bins": [[bin, units], ...], "pinned": units, "worthless": units, "below": [bin, units]}``.
    demand: Mapped[dict[str, Any]]
    used: Mapped[float] = mapped_column(Float)
    #: The split's answer for this holder (the greedy plan's units above the common threshold).
    share: Mapped[float] = mapped_column(Float)
    #: What the holder may use until its next split: at most the limit minus the others' hold.
    granted: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class TenantDataKey(Base):
    """A tenant's data key for envelope encryption, wrapped by a master key (``liquid.keyring``).

    The newest version encrypts new objects; older versions stay to read objects written with
    them. Rotating the master key rewraps these rows; the objects are not rewritten.
    """

    __tablename__ = "tenant_data_keys"

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    master_key_id: Mapped[str] = mapped_column(Text)
    #: 12-byte nonce + AES-256-GCM ciphertext of the 32-byte key + 16-byte tag.
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class CatalogSecret(Base):
    """A key every process of the deployment shares, made by the migration that adds it (0015)."""

    __tablename__ = "catalog_secrets"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class MoveJournal(Base):
    """One planned move or purge, stepped through copy → verify → switch → delete-source."""

    __tablename__ = "move_journal"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16), default="move")
    from_tier: Mapped[str] = mapped_column(String(16))
    from_store: Mapped[str] = mapped_column(Text)
    from_locator: Mapped[str | None] = mapped_column(Text)
    to_tier: Mapped[str | None] = mapped_column(String(16))
    to_store: Mapped[str | None] = mapped_column(Text)
    to_locator: Mapped[str | None] = mapped_column(Text)
    #: planned → copied → verified → switched → done | failed
    step: Mapped[str] = mapped_column(String(16), default="planned")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(Text)
    claimed_until: Mapped[datetime | None]
    delete_after: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        Index("ix_move_journal_step", "step", "claimed_until"),
        Index("ix_move_journal_object", "object_id"),
        # At most one open (not done/failed) journal row per object: see liquid.tiering.journal.
        Index(
            "uq_move_journal_open",
            "object_id",
            unique=True,
            postgresql_where="step NOT IN ('done', 'failed')",
        ),
    )


class Execution(Base):
    """When a workflow execution finished: the clock start for its step/execution-scoped objects."""

    __tablename__ = "executions"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    execution_id: Mapped[str] = mapped_column(Text, primary_key=True)
    finished_at: Mapped[datetime]
    actor: Mapped[str | None] = mapped_column(Text)


class PolicyVersion(Base):
    """Applied policy sets, newest wins; kept forever so an operator can see who changed what, when."""

    __tablename__ = "policy_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(server_default=func.now())
    applied_by: Mapped[str | None] = mapped_column(Text)
    #: The YAML as the operator wrote it (all files, concatenated with their names).
    source: Mapped[str] = mapped_column(Text)
    #: Normalised documents, as PolicySet.documents() returns them.
    documents: Mapped[dict[str, Any]] = mapped_column()


class AccessHourly(Base):
    """Reads per hour per namespace (for the dashboard), flushed from Redis with the scores."""

    __tablename__ = "access_hourly"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    reads: Mapped[int] = mapped_column(BigInteger)


class TieringChange(Base):
    """An object whose placement facts changed since the planner last looked (see liquid.catalog.changes)."""

    __tablename__ = "tiering_changes"
    __table_args__ = {"prefixes": ["UNLOGGED"]}

    object_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class VectorSpace(Base):
    """A namespace's embedding space in pgvector: its dimension and metric, fixed by its first write."""

    __tablename__ = "vector_spaces"

    tenant_id: Mapped[str] = mapped_column(
        String(63), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    namespace: Mapped[str] = mapped_column(String(63), primary_key=True)
    dims: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ObjectVector(Base):
    """One embedding of an object version (or of a chunk of it), in the pgvector index.

    ``dims`` and ``metric`` are copied from the namespace's :class:`VectorSpace`, because each
    HNSW index is a partial expression index on ``embedding::vector(dims)`` for one
    (dims, metric) pair (pgvector indexes one dimension per index). Tags, content type and
    classification are copied from the object so filters need no join; a version is immutable.
    """

    __tablename__ = "object_vectors"
    __table_args__ = (
        UniqueConstraint("object_id", "chunk_id", name="uq_object_vectors_chunk"),
        Index("ix_object_vectors_tenant_ns", "tenant_id", "namespace"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(63))
    object_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("objects.id", ondelete="CASCADE"))
    #: '' when the embedding stands for the whole object.
    chunk_id: Mapped[str] = mapped_column(Text, server_default="")
    span_start: Mapped[int | None] = mapped_column(BigInteger)
    span_end: Mapped[int | None] = mapped_column(BigInteger)
    dims: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(8))
    tags: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    content_type: Mapped[str] = mapped_column(Text)
    classification: Mapped[str | None] = mapped_column(Text)
    embedding: Mapped[Any] = mapped_column(VECTOR())


class VectorPosting(Base):
    """Which external (non-catalog) index holds vectors of an object; the purge path's outbox for them.

    A purge stamps ``purged_at`` in its own transaction; :func:`liquid.vectors.sweep` then deletes
    the vectors from that index and the row. Searches never serve a purged object meanwhile:
    every hit is checked against the catalog.
    """

    __tablename__ = "vector_postings"
    __table_args__ = (
        Index("ix_vector_postings_purged", "purged_at", postgresql_where="purged_at IS NOT NULL"),
        # The purge path finds an object's postings by object id alone.
        Index("ix_vector_postings_object", "object_id"),
    )

    index_name: Mapped[str] = mapped_column(Text, primary_key=True)
    object_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("objects.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[str] = mapped_column(String(63))
    purged_at: Mapped[datetime | None]
