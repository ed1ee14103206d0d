"""Every Redis key prefix Liquid writes, in one place (so an operator can see and budget them).

Every key starts with the hash tag ``{liquid}``, so on a Redis/Valkey Cluster they all hash to
one slot: the hot cache's scripts touch an object's copy together with the shared ledger, and
the access tracker's scripts its per-object hash together with the shared sets, which a cluster
allows only within one slot. The price: on a cluster the hot tier and the access counters live
on one primary (its replicas give failover, not spread); docs/scaling.md has the numbers and
what sharding them would take. The byte store (liquid.stores.redis) tags per object instead.
"""

from __future__ import annotations

#: The hash tag every key below starts with.
TAG = "{liquid}"

#: Hot-tier object copies: ``{liquid}:obj:<tenant>/<namespace>/<key>@<version>``.
HOT_OBJECT = TAG + ":obj:"
#: What the hot tier holds: hash ``<tenant>/<namespace>/<key>@<version>`` → ``"<object id> <bytes>"``.
#: Every copy is written and removed together with its entry (one script), so the sum of
#: the entries is what the copies occupy, and the planner's budget is checked against it.
HOT_LEDGER = TAG + ":hot:ledger"
#: Sum of the ledger's bytes (kept by the same scripts).
HOT_BYTES = TAG + ":hot:bytes"
#: The hot rank's adaptive state (JSON), written by the leader; explain shows it, a new leader resumes it.
HOT_ADAPTIVE = TAG + ":hot:adaptive"
#: A deleted, expired or purged version: ``{liquid}:hot:tomb:<tenant>/<namespace>/<key>@<version>``;
#: a fill of that version is refused while it exists.
HOT_TOMB = TAG + ":hot:tomb:"
#: Set of object ids read from their home since the daemon last looked (candidates for a copy).
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
