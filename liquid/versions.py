"""What a ref names, remembered in-process: the immutable facts of object versions.

A version never changes once written (a new write makes a new version, and no path
deletes an ``objects`` or ``key_heads`` row, so a version number is never reused).
Its size, SHA-256, content type and expiry are therefore as good from memory as from
the catalog, for as long as the process lives. :class:`VersionCache` keeps them, and
the parsed form of the ref texts readers send, so a hot read needs no catalog round
trip and no re-parsing to check a copy against its version's checksum.

**It never says a version is live.** Liveness (deleted, expired, purged) is not a fact
of the version and is not kept here: a reader that finds the facts still needs proof of
life, which is either a hot copy (copies exist only of live versions: every delete,
expiry and purge kills them, :meth:`liquid.hotcache.HotCache.kill`, and a copy's Redis
TTL ends by its version's ``expires_at``) or the catalog row. The expiry kept here is
checked on every use as well, so a version past it goes back to the catalog (and its
410) even if a copy lingered.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from liquid.refs import ResultRef


@dataclass(frozen=True, slots=True)
class VersionFacts:
    """What never changes about one object version."""

    ref: ResultRef
    size: int
    sha256: str
    content_type: str
    expires_at: datetime | None
    #: The catalog row's id: the primary key finds the version again without its name.
    object_id: int
    #: Its data classification (liquid.classification), which no path changes after the write.
    classification: str | None = None

    @classmethod
    def of(cls, ref: ResultRef, row: Any) -> VersionFacts:
        """The facts of a catalog row (id, size, sha256, content_type, expires_at and classification)."""
        return cls(
            ref,
            int(row.size),
            str(row.sha256),
            str(row.content_type),
            row.expires_at,
            int(row.id),
            row.classification,
        )

    def alive_at(self, now: datetime) -> bool:
        """False once the version's own expiry passed (it may still be gone earlier: see the module)."""
        return self.expires_at is None or self.expires_at > now


class VersionCache:
    """Bounded, thread-safe maps: ref text → :class:`ResultRef`, and version → :class:`VersionFacts`.

    Both sit on every ref of a batch, so both are C-speed lookups: the parse is
    :func:`functools.lru_cache` (thread-safe), the facts a dict read without a lock, bounded
    first-in first-out (a version pushed out costs one catalog read when it comes back).

    Args:
        max_versions: versions whose facts are kept (about 300 bytes each).
        max_texts: ref texts whose parse is kept.
    """

    def __init__(self, *, max_versions: int = 100_000, max_texts: int = 100_000) -> None:
        self.max_versions = max_versions
        self._facts: dict[str, VersionFacts] = {}
        self._lock = threading.Lock()
        self._parse = functools.lru_cache(maxsize=max_texts)(ResultRef.parse)

    def __repr__(self) -> str:
        return f"VersionCache(versions={len(self._facts)}/{self.max_versions})"

    def parse(self, text: object) -> ResultRef:
        """:meth:`ResultRef.parse`, remembered for texts seen before (raises the same InvalidRef)."""
        if not isinstance(text, str):
            return ResultRef.parse(text)  # the error, as parse words it (unhashable input included)
        return self._parse(text)

    def get(self, ref: ResultRef) -> VersionFacts | None:
        return self._facts.get(ref.uri)

    def learn(self, ref: ResultRef, row: Any) -> VersionFacts:
        """Remember (and return) the facts of ``ref`` from its catalog row."""
        return self.remember(VersionFacts.of(ref, row))

    def remember(self, facts: VersionFacts) -> VersionFacts:
        """Remember the facts of a version (its writer knows them all)."""
        ref = facts.ref
        with self._lock:
            self._facts[ref.uri] = facts
            while len(self._facts) > self.max_versions:
                del self._facts[next(iter(self._facts))]
        return facts

    def __len__(self) -> int:
        return len(self._facts)
