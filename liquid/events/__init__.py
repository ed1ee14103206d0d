"""Events: the append-only log (:mod:`.log`), its partitions (:mod:`.retention`), the export to
ClickHouse (:mod:`.export`, :mod:`.sinks`) and the stats the dashboard reads (:mod:`.stats`).

The log sits just above the catalog: the service and the tiering modules write through
:mod:`liquid.events.log`; export and stats sit above them and are imported only by the
API, the CLI and the daemon.
"""

from __future__ import annotations

from liquid.events.log import KINDS, EventKind, NewEvent, append, append_many, insert_from, kind_of

__all__ = ["KINDS", "EventKind", "NewEvent", "append", "append_many", "insert_from", "kind_of"]
