"""How the objects table is partitioned: by the tenant's hash bucket, carried in each object's id.

An object's id is ``bucket << 48 | n``: ``n`` comes from the one ``objects_id_seq`` sequence
(so ids stay unique whatever the bucket), and ``bucket`` is a stable hash of the tenant,
``1 + first 32 bits of md5(tenant) mod BUCKETS``. ``objects`` is partitioned ``BY RANGE (id)``
with one partition per bucket (``objects_b01`` … ``objects_b16``), so:

- the primary key and the four foreign keys to ``objects.id`` stay on ``id`` alone (PostgreSQL
  wants the partition key in every unique constraint: ``id`` is it);
- a lookup by id alone prunes to one partition; every row of a tenant written since migration
  0012 lives in that tenant's partition, so a tenant's queries touch one partition;
- rows from before the migration keep their ids (all below ``1 << 48``) and live in
  ``objects_legacy``, the range ``[0, 1 << 48)``: one more partition, scanned like the others.

The reference ``(tenant, namespace, key, version)`` is unique per partition (each partition has
its own unique constraint): a tenant's new rows share one partition, and versions are handed out
by the ``key_heads`` row lock, always above those of its legacy rows.

Writers insert ``liquid_object_id(tenant_id)`` as the id (a SQL function of the migration, the
mirror of :func:`object_id_bucket` here); an insert without an id fails with that hint.

``BUCKETS`` is fixed by the migration: changing it would move tenants between buckets. 16 buckets
keep every id below ``17 << 48 < 2**53``, so ids stay exact in JavaScript clients' numbers.
"""

from __future__ import annotations

import hashlib

#: Hash buckets of tenants, one partition each (fixed by migration 0012).
BUCKETS = 16
#: Bits of the sequence value below the bucket.
SHIFT = 48
#: The partition of rows written before migration 0012 (ids below ``1 << SHIFT``).
LEGACY = "objects_legacy"


#: Ids below this are the legacy partition's.
LEGACY_END = 1 << SHIFT
#: Prunes a lookup by reference to the tenant's partition and the legacy one (a reference names
#: no id, and PostgreSQL cannot derive the bucket from ``tenant_id``): the values of
#: :func:`tenant_ids` fill it. Without it a lookup probes the unique index of every partition.
TENANT_IDS = "({col} < %s OR ({col} >= %s AND {col} < %s))"


def tenant_ids(tenant: str) -> tuple[int, int, int]:
    """The values of :data:`TENANT_IDS` for ``tenant``: legacy end, its partition's low and high."""
    low, high = id_range(tenant_bucket(tenant))
    return LEGACY_END, low, high


def tenant_rows(tenant: str, *, col: str = "id") -> str:
    """SQL: ``col`` (an objects id) in ``tenant``'s partition or the legacy one, the bounds inlined.

    For the catalog's SQLAlchemy and text queries of one tenant's rows (``list``, a delete's
    lookup, an execution's objects): without it PostgreSQL plans and probes every partition,
    which costs more than the query (``latest`` took 1.7 ms so, before it moved to the fast path's
    :data:`TENANT_IDS`). The bounds are integers computed here, so inlining them is safe, and
    constants let the planner prune before it plans.
    """
    legacy_end, low, high = tenant_ids(tenant)
    return f"({col} < {legacy_end} OR ({col} >= {low} AND {col} < {high}))"


def same_tenant_rows(col: str, row: str) -> str:
    """SQL: objects id ``col`` in the partition of the tenant of the objects row aliased ``row``, or
    the legacy one.

    For a subquery over ``objects`` run once per row of another scan of it (the planner's count of
    newer noncurrent versions): the bounds come from the row's own id, or for a legacy row from
    its tenant's hash, and PostgreSQL prunes the subquery's partitions each time it runs it;
    without them each run probed all seventeen (a scan of 160,000 rows, 120,000 of them
    noncurrent: 3.3 s before, 1.8 s after).
    """
    bucket = (
        f"(CASE WHEN {row}.id >= {LEGACY_END} THEN {row}.id >> {SHIFT}"
        f" ELSE liquid_tenant_bucket({row}.tenant_id) END)"
    )
    return (
        f"({col} < {LEGACY_END} OR ({col} >= ({bucket} << {SHIFT}) AND {col} < (({bucket} + 1) << {SHIFT})))"
    )


def tenant_bucket(tenant: str) -> int:
    """The tenant's bucket, 1 … BUCKETS; the same as SQL ``liquid_tenant_bucket(tenant)``."""
    return 1 + int(hashlib.md5(tenant.encode(), usedforsecurity=False).hexdigest()[:8], 16) % BUCKETS


def object_id_bucket(object_id: int) -> int:
    """The bucket an id carries (0 for a row from before the partitioning)."""
    return object_id >> SHIFT


def object_id(tenant: str, sequence_value: int) -> int:
    """The id a row of ``tenant`` gets from sequence value ``sequence_value``."""
    return (tenant_bucket(tenant) << SHIFT) | sequence_value


def partition_name(bucket: int) -> str:
    """The partition holding ``bucket``'s ids (0: the legacy one)."""
    if not 0 <= bucket <= BUCKETS:
        raise ValueError(f"bucket {bucket} is outside 0 … {BUCKETS}")
    return LEGACY if bucket == 0 else f"objects_b{bucket:02d}"


def partition_names() -> list[str]:
    """Every partition of ``objects``, the legacy one first."""
    return [partition_name(b) for b in range(BUCKETS + 1)]


def bucket_names() -> list[str]:
    """The buckets' partitions (not the legacy one): the units daemons split (``liquid.tiering.shards``)."""
    return [partition_name(b) for b in range(1, BUCKETS + 1)]


def bucket_of_partition(name: str) -> int:
    """The bucket whose partition is ``name`` (``objects_b07`` → 7)."""
    for b in range(1, BUCKETS + 1):
        if partition_name(b) == name:
            return b
    raise ValueError(f"{name!r} is not the partition of a bucket (objects_b01 … objects_b{BUCKETS:02d})")


def bucket_rows(bucket: int, *, alias: str = "o") -> str:
    """SQL: the rows of ``bucket``'s tenants — its partition and their rows in the legacy one.

    A planner shard reads this: all of a tenant's rows, whatever their age, so a tenant's
    budget is planned by one daemon. PostgreSQL prunes it to the two partitions; in the legacy
    one the migration's index on ``liquid_tenant_bucket(tenant_id)`` finds the bucket's rows.
    """
    if not 1 <= bucket <= BUCKETS:
        raise ValueError(f"bucket {bucket} is outside 1 … {BUCKETS}")
    low, high = id_range(bucket)
    return (
        f"(({alias}.id >= {low} AND {alias}.id < {high}) OR"
        f" ({alias}.id < {LEGACY_END} AND liquid_tenant_bucket({alias}.tenant_id) = {bucket}))"
    )


def id_range(bucket: int) -> tuple[int, int]:
    """The ids ``[low, high)`` of ``bucket``'s partition."""
    partition_name(bucket)
    return bucket << SHIFT, (bucket + 1) << SHIFT
