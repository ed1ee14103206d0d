"""Every Redis key prefix Liquid writes, in one place (so an operator can see and budget them).

**Hot copies spread.** A copy, its tombstone and its ledger entry live under one of
:data:`HOT_SHARDS` hash tags, ``{lqh:00}`` … ``{lqh:ff}``, chosen by the object version's name
(CRC-32 of ``<tenant>/<namespace>/<key>@<version>``). The scripts that write a copy update its
ledger shard in the same call, so every key of one object — and the ledger entry that counts
it — is in one slot, while 256 tags spread the copies over a cluster's primaries. The budget is
the sum of the shards (:func:`hot_bytes` of each).

**Access counters, the missed set and the adaptive state** start with the hash tag ``{liquid}``:
the access tracker's per-read script updates an object's counters together with shared sets
(dirty objects, per-minute reads), which a cluster allows only within one slot. So on a cluster
they live on one primary; they are small (one hash per recently read object).

The byte store (liquid.stores.redis) tags per object instead.

Earlier versions kept hot copies as ``{liquid}:obj:<member>`` with one ledger ``{liquid}:hot:ledger``;
:meth:`liquid.hotcache.HotCache.drop_legacy` removes them once (the leader calls it when it starts
leading) and the hot tier refills under the new names.
"""

from __future__ import annotations

import zlib

#: The hash tag of the access tracker's keys and of the hot tier's shared, non-copy keys.
TAG = "{liquid}"

#: Hash-tag shards of the hot copies and their ledger.
HOT_SHARDS = 256


def hot_shard(member: str) -> int:
    """Which shard holds the copy of a version (its name's CRC-32: the same in every process)."""
    return zlib.crc32(member.encode("utf-8")) % HOT_SHARDS


def hot_tag(shard: int) -> str:
    """The hash tag of one shard: ``{lqh:2a}``."""
    return f"{{lqh:{shard:02x}}}"


def hot_object(member: str) -> str:
    """A version's copy: ``{lqh:2a}:obj:<tenant>/<namespace>/<key>@<version>``."""
    return f"{hot_tag(hot_shard(member))}:obj:{member}"


def hot_tomb(member: str) -> str:
    """A deleted, expired or purged version's tombstone: a fill of it is refused while it exists."""
    return f"{hot_tag(hot_shard(member))}:tomb:{member}"


def hot_ledger(shard: int) -> str:
    """What one shard holds: hash ``<member>`` → ``"<object id> <bytes>"``.

    Every copy is written and removed together with its entry (one script), so the sum of the
    entries is what the copies occupy, and the planner's budget is checked against it.
    """
    return f"{hot_tag(shard)}:ledger"


def hot_bytes(shard: int) -> str:
    """The sum of one ledger shard's bytes (kept by the same scripts)."""
    return f"{hot_tag(shard)}:bytes"


#: The names of the one-tag layout before the shards (removed once by ``HotCache.drop_legacy``).
LEGACY_HOT_OBJECT = TAG + ":obj:"
LEGACY_HOT_LEDGER = TAG + ":hot:ledger"
LEGACY_HOT_BYTES = TAG + ":hot:bytes"

#: The hot rank's adaptive state (JSON), written by the leader; explain shows it, a new leader resumes it.
HOT_ADAPTIVE = TAG + ":hot:adaptive"
#: Set of object ids read from their home since the daemon last looked (candidates for a copy):
#: ids from before the catalog's partitioning; the others are in one set per tenant bucket
#: (:func:`hot_missed`), so each planner shard takes only its own.
HOT_MISSED = TAG + ":hot:missed"
#: Per-object access deltas since the last flush (hash: s, t, n).
ACCESS_OBJECT = TAG + ":acc:o:"
#: Set of objects with unflushed access deltas.
ACCESS_DIRTY = TAG + ":acc:dirty"
#: Reads per hour per namespace: ``{liquid}:acc:h:<tenant>:<namespace>`` (hash: YYYYMMDDHH → count).
ACCESS_HOURLY = TAG + ":acc:h:"
#: Reads per object per minute: ``{liquid}:acc:m:<YYYYMMDDHHMM>`` (hash: member → count); the
#: flush turns each finished minute into ``object.read`` events and deletes it.
ACCESS_MINUTE = TAG + ":acc:m:"
#: Set of the per-minute hashes not yet flushed.
ACCESS_MINUTES = TAG + ":acc:minutes"


def hot_missed(bucket: int) -> str:
    """The set of read misses of one tenant bucket's objects (0: ids from before the partitioning)."""
    return HOT_MISSED if bucket == 0 else f"{HOT_MISSED}:b{bucket:02d}"
