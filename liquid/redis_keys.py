"""Every Redis key prefix Liquid writes, in one place (so an operator can see and budget them)."""

from __future__ import annotations

#: Hot-tier object copies: ``liquid:obj:<tenant>/<namespace>/<key>@<version>``.
HOT_OBJECT = "liquid:obj:"
#: Per-object access deltas since the last flush (hash: s, t, n).
ACCESS_OBJECT = "liquid:acc:o:"
#: Set of objects with unflushed access deltas.
ACCESS_DIRTY = "liquid:acc:dirty"
#: Reads per hour per namespace: ``liquid:acc:h:<tenant>:<namespace>`` (hash: YYYYMMDDHH → count).
ACCESS_HOURLY = "liquid:acc:h:"
#: Objects read from cold or archive that may deserve a restore.
RESTORE_QUEUE = "liquid:restore"
