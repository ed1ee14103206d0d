"""Every Redis key prefix Liquid writes, in one place (so an operator can see and budget them)."""

from __future__ import annotations

#: Hot-tier object copies: ``liquid:obj:<tenant>/<namespace>/<key>@<version>``.
HOT_OBJECT = "liquid:obj:"
#: What the hot tier holds: hash ``<tenant>/<namespace>/<key>@<version>`` → ``"<object id> <bytes>"``.
#: Every copy is written and removed together with its entry (one script), so the sum of
#: the entries is what the copies occupy, and the planner's budget is checked against it.
HOT_LEDGER = "liquid:hot:ledger"
#: Sum of the ledger's bytes (kept by the same scripts).
HOT_BYTES = "liquid:hot:bytes"
#: The hot rank's adaptive state (JSON), written by the leader; explain shows it, a new leader resumes it.
HOT_ADAPTIVE = "liquid:hot:adaptive"
#: A deleted, expired or purged version: ``liquid:hot:tomb:<tenant>/<namespace>/<key>@<version>``;
#: a fill of that version is refused while it exists.
HOT_TOMB = "liquid:hot:tomb:"
#: Set of object ids read from their home since the daemon last looked (candidates for a copy).
HOT_MISSED = "liquid:hot:missed"
#: Per-object access deltas since the last flush (hash: s, t, n).
ACCESS_OBJECT = "liquid:acc:o:"
#: Set of objects with unflushed access deltas.
ACCESS_DIRTY = "liquid:acc:dirty"
#: Reads per hour per namespace: ``liquid:acc:h:<tenant>:<namespace>`` (hash: YYYYMMDDHH → count).
ACCESS_HOURLY = "liquid:acc:h:"
#: Reads per object per minute: ``liquid:acc:m:<YYYYMMDDHHMM>`` (hash: member → count); the
#: flush turns each finished minute into ``object.read`` events and deletes it.
ACCESS_MINUTE = "liquid:acc:m:"
#: Set of the per-minute hashes not yet flushed.
ACCESS_MINUTES = "liquid:acc:minutes"
