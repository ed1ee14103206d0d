"""What the tiering engine remembers between cycles, in a few bytes per object.

:class:`PlacementState` holds, per live object, its durable tier (as planned: the engine
assumes the moves it queued happen, and the mover's switch puts the object back in the
change feed), its size and tenant, and when its placement decision next changes by the
clock alone (``demoteAfter``, ``expireAfter``, a ``demoteBelow`` rate decaying, a
``minResidency`` ending). These live in numpy columns sorted by object id (~21 bytes per
object; ~210 MB for 10M objects), not in Python objects: a cycle re-reads the few objects
it plans from the catalog instead of keeping every row in memory.

Deadlines are found without scanning every object: the columns are cut into blocks of
:data:`BLOCK` slots with the earliest deadline of each block kept aside, so
:meth:`Columns.take_due` looks at the block minima and then only inside blocks that have
something due.

Running sums of bytes (and legal-hold bytes) per tenant and tier are kept as objects come,
move and go, so budgets and the plan's per-tier totals never need a scan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from liquid.policy.models import TIERS, PolicySet
from liquid.tiering.ranked import RankedTier

#: Slots per block of the deadline index.
BLOCK = 4096
TIER_INDEX = {t: i for i, t in enumerate(TIERS)}
NO_TIER = -1
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


class Columns:
    """Per-object columns keyed by object id (kept sorted), with a block index of deadlines.

    A slot whose tier is ``NO_TIER`` is dead (its object is gone, or a slot was just made for
    a new id); :meth:`drop` marks slots dead and compacts once they are half the slots.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self.n = 0
        self.dead = 0
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        self.ids: I64 = np.zeros(capacity, dtype=np.int64)
        self.tier = np.full(capacity, NO_TIER, dtype=np.int8)
        self.held = np.zeros(capacity, dtype=np.bool_)
        self.size: I64 = np.zeros(capacity, dtype=np.int64)
        self.tenant = np.zeros(capacity, dtype=np.int32)
        self.due: F64 = np.full(capacity, math.inf, dtype=np.float64)
        self.block_min: F64 = np.full(capacity // BLOCK + 1, math.inf, dtype=np.float64)

    def __len__(self) -> int:
        return self.n - self.dead

    def __repr__(self) -> str:
        return f"Columns(live={len(self)}, slots={self.n}, bytes={self.nbytes})"

    @property
    def nbytes(self) -> int:
        return sum(
            a.nbytes
            for a in (self.ids, self.tier, self.held, self.size, self.tenant, self.due, self.block_min)
        )

    def find(self, oids: I64) -> npt.NDArray[np.intp]:
        """Slot of each id, or -1 where the id has none (or its object is gone)."""
        if self.n == 0:
            return np.full(len(oids), -1, dtype=np.intp)
        ids = self.ids[: self.n]
        pos = np.minimum(np.searchsorted(ids, oids), self.n - 1)
        ok = (ids[pos] == oids) & (self.tier[pos] != NO_TIER)
        return np.where(ok, pos, -1)

    def find_many(self, oids: list[int]) -> set[int]:
        """The ids among ``oids`` that have a live slot."""
        arr = np.asarray(oids, dtype=np.int64)
        return {int(i) for i in arr[self.find(arr) >= 0]}

    def put(
        self,
        oids: I64,
        tier: npt.NDArray[np.int8],
        size: I64,
        tenant: npt.NDArray[np.int32],
        held: npt.NDArray[np.bool_],
        due: F64,
    ) -> None:
        """Insert or overwrite these objects (ids sorted, unique; tiers real)."""
        if len(oids) == 0:
            return
        slots = self._slots_for(oids)
        self.dead -= int((self.tier[slots] == NO_TIER).sum())
        self.tier[slots] = tier
        self.size[slots] = size
        self.tenant[slots] = tenant
        self.held[slots] = held
        self.due[slots] = due
        np.minimum.at(self.block_min, slots // BLOCK, due)

    def drop(self, oids: I64) -> None:
        """Forget these objects (deleted, expired, purged)."""
        slots = self.find(oids)
        slots = slots[slots >= 0]
        self.tier[slots] = NO_TIER
        self.due[slots] = math.inf
        self.size[slots] = 0
        self.dead += len(slots)
        if self.dead > 1024 and self.dead * 2 > self.n:
            self._compact()

    def take_due(self, now: float) -> I64:
        """Ids whose deadline has come (their deadline is cleared; the planner sets the next)."""
        blocks = np.nonzero(self.block_min <= now)[0]
        out = []
        for b in blocks:
            lo, hi = int(b) * BLOCK, min((int(b) + 1) * BLOCK, self.n)
            part = self.due[lo:hi]
            hit = np.nonzero(part <= now)[0]
            if len(hit):
                out.append(self.ids[lo + hit])
                part[hit] = math.inf
            self.block_min[b] = part.min() if len(part) else math.inf
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def next_due(self) -> float:
        """The earliest deadline (inf when none)."""
        return float(self.block_min.min()) if len(self.block_min) else math.inf

    def _slots_for(self, oids: I64) -> npt.NDArray[np.intp]:
        if self.n:
            ids = self.ids[: self.n]
            pos = np.minimum(np.searchsorted(ids, oids), self.n - 1)
            known = ids[pos] == oids
            if known.all():
                return pos
            new = oids[~known]
        else:
            new = oids
        if self.n == 0 or new[0] > self.ids[self.n - 1]:
            self._append(new)  # the usual case: new objects have the largest ids
        else:
            self._merge(new)  # a write committed after a newer one was already seen
        return np.searchsorted(self.ids[: self.n], oids)

    def _append(self, new: I64) -> None:
        need = self.n + len(new)
        if need > len(self.ids):
            self._grow(max(need, 2 * len(self.ids)))
        self.ids[self.n : need] = new
        self.n = need
        self.dead += len(new)  # dead until put() writes them

    def _merge(self, new: I64) -> None:
        keep = slice(0, self.n)
        ids = np.concatenate([self.ids[keep], new])
        order = np.argsort(ids, kind="stable")
        cols = {
            "tier": np.concatenate([self.tier[keep], np.full(len(new), NO_TIER, dtype=np.int8)]),
            "held": np.concatenate([self.held[keep], np.zeros(len(new), dtype=np.bool_)]),
            "size": np.concatenate([self.size[keep], np.zeros(len(new), dtype=np.int64)]),
            "tenant": np.concatenate([self.tenant[keep], np.zeros(len(new), dtype=np.int32)]),
            "due": np.concatenate([self.due[keep], np.full(len(new), math.inf)]),
        }
        self._reset(ids[order], {k: v[order] for k, v in cols.items()})

    def _compact(self) -> None:
        live = self.tier[: self.n] != NO_TIER
        cols = {k: getattr(self, k)[: self.n][live] for k in ("tier", "held", "size", "tenant", "due")}
        self._reset(self.ids[: self.n][live], cols)

    def _reset(self, ids: I64, cols: dict[str, npt.NDArray[np.generic]]) -> None:
        n = len(ids)
        self._alloc(max(1024, 2 * n))
        self.n = n
        self.ids[:n] = ids
        for k, v in cols.items():
            getattr(self, k)[:n] = v
        self.dead = int((self.tier[:n] == NO_TIER).sum())
        self._reindex()

    def _grow(self, capacity: int) -> None:
        def grown(a: npt.NDArray[np.generic], fill: object) -> npt.NDArray[np.generic]:
            out = np.full(capacity, fill, dtype=a.dtype)
            out[: len(a)] = a
            return out

        self.ids = grown(self.ids, 0)  # type: ignore[assignment]
        self.tier = grown(self.tier, NO_TIER)  # type: ignore[assignment]
        self.held = grown(self.held, False)  # type: ignore[assignment]
        self.size = grown(self.size, 0)  # type: ignore[assignment]
        self.tenant = grown(self.tenant, 0)  # type: ignore[assignment]
        self.due = grown(self.due, math.inf)  # type: ignore[assignment]
        self._reindex()

    def _reindex(self) -> None:
        blocks = len(self.ids) // BLOCK + 1
        padded = np.full(blocks * BLOCK, math.inf)
        padded[: self.n] = self.due[: self.n]
        self.block_min = padded.reshape(blocks, BLOCK).min(axis=1)


@dataclass
class PlacementState:
    """Everything an incremental planner remembers (see the module docstring)."""

    policies: PolicySet | None = None
    policy_version: int | None = None
    columns: Columns = field(default_factory=Columns)
    #: The hot tier's members: exactly the copies in Redis.
    hot: RankedTier = field(default_factory=RankedTier)
    #: One per durable tier some Budget caps.
    capped: dict[str, RankedTier] = field(default_factory=dict)
    #: Tenant names by column index.
    tenants: list[str] = field(default_factory=list)
    tenant_index: dict[str, int] = field(default_factory=dict)
    #: Bytes (and legal-hold bytes) per tenant index and tier index, kept as objects come and go.
    bytes: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, len(TIERS)), dtype=np.int64))
    held_bytes: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros((0, len(TIERS)), dtype=np.int64)
    )
    #: Plan warnings from the last rebuild (budgets the catalog can never meet).
    warnings: list[str] = field(default_factory=list)
    #: Rows evaluated since the state was built (what incremental planning saves shows here).
    evaluated: int = 0
    cycles: int = 0

    def __repr__(self) -> str:
        return (
            f"PlacementState(objects={len(self.columns)}, hot={self.hot!r}, evaluated={self.evaluated}, "
            f"cycles={self.cycles})"
        )

    def tenant_id(self, name: str) -> int:
        i = self.tenant_index.get(name)
        if i is None:
            i = self.tenant_index[name] = len(self.tenants)
            self.tenants.append(name)
            pad = np.zeros((1, len(TIERS)), dtype=np.int64)
            self.bytes = np.vstack([self.bytes, pad])
            self.held_bytes = np.vstack([self.held_bytes, pad])
        return i

    def tier_bytes(self, tenant: str | None = None) -> dict[str, int]:
        """Bytes per durable tier (the hot tier's are its members'), for one tenant or all."""
        if tenant is None:
            sums = self.bytes.sum(axis=0) if len(self.bytes) else np.zeros(len(TIERS), dtype=np.int64)
        else:
            i = self.tenant_index.get(tenant)
            sums = self.bytes[i] if i is not None else np.zeros(len(TIERS), dtype=np.int64)
        return {t: int(sums[TIER_INDEX[t]]) for t in TIERS}

    def account(self, tenants: npt.ArrayLike, tiers: npt.ArrayLike, sizes: npt.ArrayLike, sign: int) -> None:
        """Add (``sign=1``) or take out (``-1``) objects' bytes from the running sums."""
        if np.size(tenants):
            np.add.at(self.bytes, (np.asarray(tenants), np.asarray(tiers)), sign * np.asarray(sizes))

    def account_held(
        self, tenants: npt.ArrayLike, tiers: npt.ArrayLike, sizes: npt.ArrayLike, sign: int
    ) -> None:
        if np.size(tenants):
            np.add.at(self.held_bytes, (np.asarray(tenants), np.asarray(tiers)), sign * np.asarray(sizes))

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the columns (the per-object part of the state)."""
        return self.columns.nbytes + self.bytes.nbytes + self.held_bytes.nbytes
