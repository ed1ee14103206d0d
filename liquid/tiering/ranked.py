"""A budgeted tier's members, kept from cycle to cycle: who is in, ranked by value per byte.

One :class:`RankedTier` per budgeted tier: the hot tier always (its members are exactly
the copies in Redis), and every durable tier that some Budget caps. An object the policy
wants in the tier is *offered* with a rank (:meth:`ValueModel.rank`: the log of what it
saves per byte, forward-decayed, so ranks computed at different cycles compare without
re-ranking untouched objects). :meth:`RankedTier.settle` admits the best waiting offers
while they fit, and lets an offer displace members only when it outranks each of them by
the hysteresis margin (members rank ``+ ln(hysteresis)``): the greedy-by-value-per-byte
answer to the knapsack, kept incrementally, so a cycle costs ``O(changed · log n)``.

**Caps.** A tier can have several: a global one and one per tenant, each in bytes or in
money (a cost cap weighs each byte by its tenant's price). An offer is admitted only when
every cap that applies to it holds afterwards; victims for a tenant's cap come from that
tenant's members, victims for a global cap from anyone's.

**The window** (hot tier only): a share of the global byte cap where every missed read gets
a copy at once, whatever its rank; the oldest leave in order and meet the ranked part,
where rank decides (:meth:`RankedTier.admit_on_read`). With ``window_lru`` a member read
again (offered by a cycle) goes to the back of the line, so the window is an LRU at the
cycle's grain; :meth:`RankedTier.set_window` changes its share (``liquid.tiering.window``).

An offer that neither fits nor outranks enough members is **parked**: when a member later
leaves without a replacement, the best parked offers that fit take the room (so an object a
budget pushed out comes back when there is room again, as a full plan would decide). In the
hot tier (``readmit=False``) a copy a better offer displaced is forgotten instead, until it is
read again: a fill costs a read of the home, and room left over by a displacement was refilled
with copies evicted before and not read since, which were the next to go.

**Released** members (the policy no longer wants them, ``keep_while_room``) keep their place
while there is room, without the bonus, and are the first to go.

Heaps use lazy deletion (an entry is valid while it matches the member's current rank) and
are rebuilt when stale entries outnumber valid ones, so memory does not grow with cycles.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from dataclasses import dataclass, field

#: Rank of a member that must not move (inside its minResidency): never displaced.
PINNED = math.inf


@dataclass(slots=True)
class Cap:
    """One limit on a tier: ``limit`` units for one tenant's objects (or everyone's, ``tenant=None``).

    Units are bytes times ``factor`` (1 for a byte cap; a tenant's price per byte for a cost
    cap, from ``factors`` by tenant, ``default_factor`` for the rest).
    """

    name: str
    limit: float
    tenant: str | None = None
    #: With ``tenant``: only that tenant's objects in this namespace (a namespace Budget).
    namespace: str | None = None
    factors: dict[str, float] = field(default_factory=dict)
    default_factor: float = 1.0
    #: ``bytes`` or ``cost`` (what ``limit`` is in).
    unit: str = "bytes"
    #: Units used by members, kept as they come and go.
    used: float = 0.0
    #: The policy's limit when ``limit`` is a planner shard's share of it (liquid.tiering.shares).
    policy_limit: float | None = None

    def applies(self, tenant: str, namespace: str = "") -> bool:
        return self.tenant is None or (
            self.tenant == tenant and (self.namespace is None or self.namespace == namespace)
        )

    @property
    def scope(self) -> str | None:
        """Whose members can make room under this cap: everyone's (None), a tenant's, a namespace's."""
        return None if self.tenant is None else scope_of(self.tenant, self.namespace)

    def factor(self, tenant: str) -> float:
        return self.factors.get(tenant, self.default_factor)

    @property
    def is_bytes(self) -> bool:
        return self.unit == "bytes"


def scope_of(tenant: str, namespace: str | None = None) -> str:
    """The key of a tenant's (or one of its namespaces') members among the tier's heaps."""
    return tenant if namespace is None else f"{tenant}\x1f{namespace}"


class RankedTier:
    """Members of one budgeted tier under its caps. See the module docstring.

    Args:
        caps: the limits (none: every offer is admitted).
        hysteresis: the members' bonus factor (``planner.hysteresis``).
        window: share of the global byte cap kept for read-path admissions (hot tier only).
        window_lru: a window member offered again (read since the last cycle) goes to the back.
        readmit: a member a better offer displaced waits among the offers, to come back when
            room frees (a capped durable tier: its full plan would move it back). False (the
            hot tier): it is forgotten until its next offer, as every cache admits only on a
            request (see :meth:`_evict`).
    """

    #: Parked offers kept at most (the best ones); see :meth:`_trim_parked`.
    max_parked = 100_000

    def __init__(
        self,
        caps: list[Cap] | None = None,
        *,
        hysteresis: float = 1.25,
        window: float = 0.0,
        window_lru: bool = False,
        readmit: bool = True,
    ) -> None:
        self.caps = list(caps or [])
        self.readmit = readmit
        self.bonus = math.log(hysteresis)
        self.window_fraction = window
        self.window_lru = window_lru
        self._derive()
        self.members: dict[int, int] = {}  # object id -> bytes (the window's included)
        self.bytes = 0
        self.window: OrderedDict[int, int] = OrderedDict()  # read-path admissions, oldest first
        self.window_bytes = 0
        self._tenant: dict[int, str] = {}
        self._ns: dict[int, str] = {}
        self._label: dict[int, str] = {}  # what to call an object in a plan (its ref)
        #: Membership before the first change since the last :meth:`drain` (see there).
        self._touched: dict[int, bool] = {}
        self._left: list[int] = []
        self._withdrawn: set[int] = set()  # members withdrawn since the last drain
        #: Members' bytes per tenant (for budget reports).
        self.tenant_bytes: dict[str, int] = {}
        #: Members' bytes per (tenant, namespace) of the namespaces a Budget caps (for its report).
        self.namespace_bytes: dict[tuple[str, str], int] = {}
        self._rank: dict[int, float] = {}  # object id -> rank (without the member bonus)
        self._size: dict[int, int] = {}
        self._released: set[int] = set()  # members the policy no longer wants: no bonus
        self._heaps: dict[str | None, list[tuple[float, int]]] = {None: []}  # lowest member first
        self._waiting: list[tuple[float, int]] = []  # highest-ranked offer first (negated)
        # Offers that neither fit nor could displace anyone: tried again, best first, once a
        # member leaves without a replacement (so an object pushed out comes back when room frees).
        self._parked: list[tuple[float, int]] = []
        self._freed = False
        self._since_compact = 0
        #: Offers, seats, releases and withdrawals so far: what :meth:`demand` depends on changed.
        self.mutations = 0

    def __repr__(self) -> str:
        caps = ", ".join(f"{c.name}={c.used:.0f}/{c.limit:.0f}" for c in self.caps)
        return f"RankedTier(members={len(self.members)}, bytes={self.bytes}, caps=[{caps}])"

    # ------------------------------------------------------------------ caps

    def set_caps(self, caps: list[Cap]) -> None:
        """Replace the caps (a new policy set), recounting what members use; call :meth:`trim` after."""
        self.caps = list(caps)
        self._derive()
        self._freed = True
        for cap in self.caps:
            cap.used = sum(
                size * cap.factor(self._tenant[oid])
                for oid, size in self.members.items()
                if cap.applies(self._tenant[oid], self._ns.get(oid, ""))
            )
        self.namespace_bytes = {}
        for oid, size in self.members.items():
            self._count_namespace(oid, size)

    def set_limit(self, cap: Cap, limit: float) -> None:
        """A new limit for one of the caps (a planner shard's share of a global cap).

        Lower: the next :meth:`trim` evicts down to it. Higher: the next :meth:`settle` also
        tries the parked offers (room was made).
        """
        if cap.limit != limit:
            cap.limit = limit
            self._derive()
            self._freed = True

    def demand(self, cap: Cap) -> tuple[list[float], list[float]]:
        """(ranks, units) of every member and offer ``cap`` applies to (released members too).

        Ranks are without the member bonus; a member adopted without a rank counts at ``-inf``.
        What a planner shard publishes of its wants under a global cap (:mod:`liquid.tiering.shares`).
        """
        ranks: list[float] = []
        units: list[float] = []
        everyone = cap.tenant is None
        per_byte = cap.is_bytes and not cap.factors and cap.default_factor == 1.0
        for oid in self._rank.keys() | self.members.keys():
            tenant = self._tenant.get(oid, "")
            if not everyone and not cap.applies(tenant, self._ns.get(oid, "")):
                continue
            size = self.members.get(oid, self._size.get(oid, 0))
            ranks.append(self._rank.get(oid, -math.inf))
            units.append(float(size) if per_byte else size * cap.factor(tenant))
        return ranks, units

    def _derive(self) -> None:
        """What the caps imply, worked out once per set of caps (these run per offer)."""
        limits = [c.limit for c in self.caps if c.tenant is None and c.is_bytes]
        #: The tightest global byte cap (None when there is none).
        self.limit: int | None = int(min(limits)) if limits else None
        #: Bytes of the global byte cap kept for the window (``window`` x the cap).
        self.window_limit = 0 if self.limit is None else int(self.limit * self.window_fraction)
        self._caps_for: dict[tuple[str, str], list[Cap]] = {}
        #: Scopes some cap limits (tenants, and namespaces as ``scope_of(tenant, ns)``).
        self._capped_scopes = {c.scope for c in self.caps if c.scope is not None}
        self._capped_namespaces = {(c.tenant, c.namespace) for c in self.caps if c.namespace is not None}

    def _caps_of(self, tenant: str, namespace: str = "") -> list[Cap]:
        caps = self._caps_for.get((tenant, namespace))
        if caps is None:
            caps = self._caps_for[tenant, namespace] = [c for c in self.caps if c.applies(tenant, namespace)]
        return caps

    def _scopes(self, oid: int) -> list[str]:
        """The capped scopes ``oid`` belongs to (besides everyone's)."""
        tenant, ns = self._tenant.get(oid, ""), self._ns.get(oid, "")
        return [s for s in (tenant, scope_of(tenant, ns)) if s in self._capped_scopes]

    def _count_namespace(self, oid: int, size: int) -> None:
        key = (self._tenant.get(oid, ""), self._ns.get(oid, ""))
        if key in self._capped_namespaces:
            self.namespace_bytes[key] = self.namespace_bytes.get(key, 0) + size

    def _main_limit(self, cap: Cap) -> float:
        # The window's share comes out of the global byte cap; its members are not ranked there.
        if cap.tenant is None and cap.is_bytes:
            return cap.limit - self.window_limit
        return cap.limit

    def _main_used(self, cap: Cap) -> float:
        if cap.tenant is None and cap.is_bytes:
            return cap.used - self.window_bytes
        return cap.used

    # ---------------------------------------------------------------- offers

    def offer(
        self, oid: int, size: int, rank: float, *, tenant: str = "", namespace: str = "", label: str = ""
    ) -> None:
        """The policy wants ``oid`` here with this rank."""
        self.mutations += 1
        self._rank[oid] = rank
        self._size[oid] = size
        self._tenant[oid] = tenant
        self._ns[oid] = namespace
        if label:
            self._label[oid] = label
        self._released.discard(oid)
        if oid in self.window:
            if self.window_lru:
                self.window.move_to_end(oid)  # read again: the last to leave
            return  # ranked again; it meets the ranked part when it leaves the window
        if oid in self.members:
            if size != self.members[oid]:
                self._resize(oid, size)
            self._push_member(oid, rank + self.bonus)
        else:
            heapq.heappush(self._waiting, (-rank, oid))
            self._maybe_compact()

    def seat(
        self, oid: int, size: int, rank: float, *, tenant: str = "", namespace: str = "", label: str = ""
    ) -> None:
        """``oid`` is already here (its home is this tier): a member with its rank, caps unchecked.

        Call :meth:`trim` once every resident is seated; it evicts the lowest until caps hold.
        """
        self.mutations += 1
        if oid in self.members:
            self.offer(oid, size, rank, tenant=tenant, namespace=namespace, label=label)
            return
        self._rank[oid], self._size[oid], self._tenant[oid] = rank, size, tenant
        self._ns[oid] = namespace
        if label:
            self._label[oid] = label
        self._released.discard(oid)
        self._add(oid, size)
        self._push_member(oid, rank if rank == PINNED else rank + self.bonus)

    def adopt(self, oid: int, size: int, *, tenant: str = "", namespace: str = "", label: str = "") -> None:
        """Take ``oid`` as a member without a rank yet (a copy found in Redis at start).

        It is displaced first unless an offer ranks it before the next :meth:`settle`.
        """
        self.mutations += 1
        if oid in self.members:
            return
        self._tenant[oid] = tenant
        self._ns[oid] = namespace
        self._size[oid] = size
        if label:
            self._label[oid] = label
        self._rank[oid] = -math.inf
        self._add(oid, size)
        self._push_member(oid, -math.inf)

    def admit_on_read(
        self, oid: int, size: int, rank: float, *, tenant: str = "", namespace: str = "", label: str = ""
    ) -> bool:
        """Read-path admission: a missed object gets a copy now if it fits or outranks members.

        The same rule as :meth:`settle`, applied between cycles, so objects read a few times
        within minutes (workflow results) are cached while they are read. True if admitted.
        """
        self.mutations += 1
        if oid in self.members:
            return True
        room = self.window_limit
        scoped = tenant in self._capped_scopes or scope_of(tenant, namespace) in self._capped_scopes
        if size > room or scoped:
            self.offer(oid, size, rank, tenant=tenant, namespace=namespace, label=label)
            self.settle()
            return oid in self.members
        # The window: every missed read gets a copy at once, whatever its rank; the oldest
        # leave in order and are offered to the ranked part, where rank decides.
        self._rank[oid], self._size[oid], self._tenant[oid] = rank, size, tenant
        self._ns[oid] = namespace
        if label:
            self._label[oid] = label
        self._released.discard(oid)
        self.window[oid] = size
        self.window_bytes += size
        self._add(oid, size)
        self._shrink_window(room)
        self.settle()
        return True

    def set_window(self, fraction: float) -> None:
        """The window's share of the global byte cap is now ``fraction``.

        A smaller window lets its oldest go to meet the ranked part; a larger one leaves the
        ranked part over its share, and :meth:`trim` (or the next :meth:`settle` of an offer)
        evicts its lowest-ranked members. Call :meth:`trim` and :meth:`settle` after.
        """
        self.window_fraction = fraction
        self.window_limit = 0 if self.limit is None else int(self.limit * fraction)
        self._shrink_window(self.window_limit)
        self._freed = True

    def _shrink_window(self, room: int) -> None:
        """The oldest window members leave until the window fits ``room``; each is offered to the
        ranked part with its rank (or dropped, if the policy released it)."""
        while self.window_bytes > room and self.window:
            old, old_size = self.window.popitem(last=False)
            self.window_bytes -= old_size
            self._remove(old)
            if old in self._released:
                self._forget(old)
            else:
                heapq.heappush(self._waiting, (-self._rank[old], old))

    def release(self, oid: int) -> None:
        """The policy no longer wants ``oid``, but a member keeps its place until room is needed.

        It loses the member bonus and keeps its last rank, which is forward-decayed and so
        already below every object read since: released members are displaced first, least
        valuable first. A waiting offer is dropped.
        """
        self.mutations += 1
        if oid not in self.members:
            self._forget(oid)
            return
        if oid in self.window:
            self._released.add(oid)  # dropped when it leaves the window
        elif oid not in self._released:
            self._released.add(oid)
            self._push_member(oid, self._rank[oid])

    def withdraw(self, oid: int) -> bool:
        """``oid`` leaves (or may not enter) the tier; True if it was a member."""
        self.mutations += 1
        self._forget(oid)
        was = oid in self.members
        if was:
            self._remove(oid)
            self._withdrawn.add(oid)
            in_window = self.window.pop(oid, None)
            if in_window is not None:
                self.window_bytes -= in_window
        if oid not in self._touched:
            self._tenant.pop(oid, None)
            self._ns.pop(oid, None)
            self._size.pop(oid, None)
            self._label.pop(oid, None)
        return was

    def known(self) -> set[int]:
        """Every member and offer (what :meth:`knows` answers for one)."""
        return self._rank.keys() | self.members.keys()

    def ranked_count(self) -> int:
        """How many members and offers have a rank (cheap, unlike ``len(known())``)."""
        return len(self._rank)

    def knows(self, oid: int) -> bool:
        """Whether ``oid`` is a member or an offer (something to release or withdraw)."""
        return oid in self._rank or oid in self.members

    def label(self, oid: int) -> str:
        """What the plan calls ``oid`` (its ref), as given with its last offer."""
        return self._label.get(oid, f"object {oid}")

    def drain(self, *, withdrawn: bool = True) -> tuple[list[int], list[int]]:
        """(joined, left): objects whose membership differs from what it was at the last drain.

        ``withdrawn=False`` leaves out of ``left`` the members that were withdrawn (gone, or
        wanted elsewhere now), keeping only those displaced by caps.
        """
        # Objects that left at the previous drain were kept so that plan could name them.
        for o in self._left:
            if o not in self.members and o not in self._rank and o not in self._touched:
                self._size.pop(o, None)
                self._tenant.pop(o, None)
                self._ns.pop(o, None)
                self._label.pop(o, None)
        joined = sorted(o for o, was in self._touched.items() if not was and o in self.members)
        left = sorted(
            o
            for o, was in self._touched.items()
            if was and o not in self.members and (withdrawn or o not in self._withdrawn)
        )
        self._left = [o for o in self._touched if o not in self.members]
        self._touched = {}
        self._withdrawn = set()
        return joined, left

    def size(self, oid: int) -> int:
        """The bytes ``oid`` was offered (or seated) with."""
        return self._size.get(oid, 0)

    def tenant(self, oid: int) -> str:
        return self._tenant.get(oid, "")

    def namespace(self, oid: int) -> str:
        return self._ns.get(oid, "")

    def waiting(self, oid: int) -> bool:
        """Whether ``oid`` is offered but not a member."""
        return oid in self._rank and oid not in self.members

    def rank(self, oid: int) -> float | None:
        """The object's last rank, without the member bonus (None if neither offered nor a member)."""
        return self._rank.get(oid)

    def rerank(self, ranks: dict[int, float]) -> None:
        """New ranks for members and offers (a new ranking, e.g. the hot tier's half-life changed).

        Pinned members keep theirs. Every offer waits again (parked ones too), so the next
        :meth:`settle` compares everyone on the new ranks.
        """
        self.mutations += len(ranks)
        for oid, rank in ranks.items():
            old = self._rank.get(oid)
            if old is not None and old != PINNED:
                self._rank[oid] = rank
        self._heaps = {None: []}
        for oid in self.members:
            rank = self._rank.get(oid, -math.inf)
            self._push_member(oid, rank if rank == PINNED or oid in self._released else rank + self.bonus)
        self._waiting = [(-r, o) for o, r in self._rank.items() if o not in self.members]
        heapq.heapify(self._waiting)
        self._parked = []
        self._freed = True

    # ---------------------------------------------------------------- settle

    def settle(self) -> tuple[list[int], list[int]]:
        """Admit the best offers that fit or outrank members; (admitted, evicted) object ids."""
        admitted: list[int] = []
        evicted: list[int] = []
        while self._waiting:
            neg, oid = self._waiting[0]
            rank = -neg
            if oid in self.members or self._rank.get(oid) != rank:
                heapq.heappop(self._waiting)  # stale: re-ranked, withdrawn or admitted since
                continue
            heapq.heappop(self._waiting)
            victims = self._victims(oid, rank)
            if victims is None:
                # Cannot fit: it is parked until room frees or it is offered again, and smaller
                # offers behind it still get their turn (no head-of-line blocking).
                heapq.heappush(self._parked, (neg, oid))
                continue
            for m in victims:
                self._evict(m, wait=self.readmit)
                evicted.append(m)
            self._add(oid, self._size[oid])
            self._push_member(oid, rank + self.bonus)
            admitted.append(oid)
        if self._freed:
            admitted += self._unpark()
        if len(self._parked) > 2 * self.max_parked:  # a settle can park many (a rebuild over a full tier)
            self._trim_parked()
        # An object evicted and re-admitted in one settle is neither.
        both = set(admitted) & set(evicted)
        return [o for o in admitted if o not in both], [o for o in evicted if o not in both]

    def _unpark(self, patience: int = 8) -> list[int]:
        """Admit parked offers, best first, that fit in the room members left (no displacement).

        Stops after ``patience`` parked offers in a row that do not fit, so the work per settle
        stays bounded however many wait.
        """
        self._freed = False
        admitted: list[int] = []
        kept: list[tuple[float, int]] = []
        misses = 0
        while self._parked and misses < patience:
            neg, oid = heapq.heappop(self._parked)
            if oid in self.members or self._rank.get(oid) != -neg:
                continue  # stale
            if self._fits(oid):
                self._add(oid, self._size[oid])
                self._push_member(oid, -neg + self.bonus)
                admitted.append(oid)
            else:
                kept.append((neg, oid))
                misses += 1
        for entry in kept:
            heapq.heappush(self._parked, entry)
        return admitted

    def _fits(self, oid: int) -> bool:
        tenant = self._tenant.get(oid, "")
        size = self._size[oid]
        return all(
            self._main_used(c) + size * c.factor(tenant) <= self._main_limit(c) + 1e-9
            for c in self._caps_of(tenant, self._ns.get(oid, ""))
        )

    def trim(self) -> list[int]:
        """Evict the lowest-ranked members until every cap holds (after new caps or adoptions)."""
        evicted: list[int] = []
        for cap in self.caps:
            heap = self._heaps.get(cap.scope, [])
            while self._main_used(cap) > self._main_limit(cap) + 1e-9 and heap:
                key, m = heapq.heappop(heap)
                if not self._valid(m, key) or m in self.window:
                    continue
                if key == PINNED:
                    heapq.heappush(heap, (key, m))
                    break  # only objects that may not move are left: over budget, reported
                self._evict(m, wait=True)  # room taken away, not a better offer: it may come back
                evicted.append(m)
        return evicted

    def over(self) -> list[Cap]:
        """Caps that do not hold (only members that may not move are left to displace)."""
        return [c for c in self.caps if c.used > c.limit + 1e-9]

    # -------------------------------------------------------------- internals

    def _victims(self, oid: int, rank: float) -> list[int] | None:
        """Members to displace so that ``oid`` fits under every cap, or None if it cannot."""
        tenant = self._tenant.get(oid, "")
        size = self._size[oid]
        caps = self._caps_of(tenant, self._ns.get(oid, ""))
        for cap in caps:
            if size * cap.factor(tenant) > self._main_limit(cap) + 1e-9:
                return None
        freed = dict.fromkeys(range(len(caps)), 0.0)
        need = {
            i: self._main_used(c) + size * c.factor(tenant) - self._main_limit(c) for i, c in enumerate(caps)
        }
        chosen: dict[int, tuple[str | None, tuple[float, int]]] = {}
        # A namespace's caps first, then its tenant's (only their members help), then the global ones.
        order = sorted(range(len(caps)), key=lambda i: (caps[i].tenant is None, caps[i].namespace is None))
        for i in order:
            heap = self._heaps.get(caps[i].scope, [])
            while freed[i] < need[i] - 1e-9 and heap:
                key, m = heap[0]
                if not self._valid(m, key) or m in chosen or m in self.window:
                    heapq.heappop(heap)  # stale, a duplicate, or in the window (not ranked here)
                    continue
                if key >= rank:
                    break
                entry = heapq.heappop(heap)
                chosen[m] = (caps[i].scope, entry)
                mt, mns = self._tenant[m], self._ns.get(m, "")
                for j, c in enumerate(caps):
                    if c.applies(mt, mns):
                        freed[j] += self.members[m] * c.factor(mt)
            if freed[i] < need[i] - 1e-9:
                for scope, entry in chosen.values():
                    heapq.heappush(self._heaps.setdefault(scope, []), entry)
                return None
        # Entries popped from one heap stay valid in the other; they become stale on removal.
        return list(chosen)

    def _valid(self, m: int, key: float) -> bool:
        if m not in self.members:
            return False
        rank = self._rank.get(m)
        if rank is None:
            return False
        if rank != PINNED and m not in self._released:
            rank += self.bonus
        return rank == key

    def _push_member(self, oid: int, key: float) -> None:
        heapq.heappush(self._heaps[None], (key, oid))
        for scope in self._scopes(oid):
            heapq.heappush(self._heaps.setdefault(scope, []), (key, oid))
        self._maybe_compact()

    def _add(self, oid: int, size: int) -> None:
        self._touched.setdefault(oid, False)
        self.members[oid] = size
        self.bytes += size
        tenant = self._tenant.get(oid, "")
        self.tenant_bytes[tenant] = self.tenant_bytes.get(tenant, 0) + size
        self._count_namespace(oid, size)
        for cap in self._caps_of(tenant, self._ns.get(oid, "")):
            cap.used += size * cap.factor(tenant)

    def _remove(self, oid: int) -> None:
        self._freed = True
        self._touched.setdefault(oid, True)
        size = self.members.pop(oid)
        self.bytes -= size
        tenant = self._tenant.get(oid, "")
        self.tenant_bytes[tenant] -= size
        self._count_namespace(oid, -size)
        for cap in self._caps_of(tenant, self._ns.get(oid, "")):
            cap.used -= size * cap.factor(tenant)

    def _resize(self, oid: int, size: int) -> None:
        window = oid in self.window
        self._remove(oid)
        self._add(oid, size)
        if window:
            self.window_bytes += size - self.window[oid]
            self.window[oid] = size

    def _evict(self, m: int, *, wait: bool) -> None:
        """``m`` leaves for want of room: it waits among the offers to come back (``wait``), or
        is forgotten until its next offer.

        Without ``readmit`` a copy a better offer displaced comes back only when it is offered
        again, that is read again (a copy :meth:`trim` evicted, because caps or the window
        changed, still waits: the room may come back with them). Room left over when a large
        member made way for a smaller one was otherwise refilled by the best waiting offer,
        often a copy evicted earlier and not read since, which cost a read of its home and was
        the next to go: on the placement grid's zipf0.8-drift5%-3d trace at a 10% hot budget,
        163,000 of the hot tier's 314,000 admissions, 177 of them read before they were evicted
        again.
        """
        self._remove(m)
        if m in self._released or not wait:  # released: the policy no longer wants it
            self._forget(m)
        else:
            heapq.heappush(self._waiting, (-self._rank[m], m))

    def _forget(self, oid: int) -> None:
        self._released.discard(oid)
        self._rank.pop(oid, None)
        if oid not in self.members and oid not in self._touched:
            self._size.pop(oid, None)
            self._tenant.pop(oid, None)
            self._ns.pop(oid, None)
            self._label.pop(oid, None)

    def _trim_parked(self) -> None:
        """Keep the ``max_parked`` best parked offers; the rest wait for their next offer instead.

        Bounds memory when a budget leaves millions of objects outside their tier (each is
        offered again when it changes or its deadline comes).
        """
        valid = [e for e in self._parked if e[1] not in self.members and self._rank.get(e[1]) == -e[0]]
        valid.sort()
        keep, drop = valid[: self.max_parked], valid[self.max_parked :]
        self._parked = keep  # sorted ascending by -rank: already a heap
        for _, oid in drop:
            if oid not in self.members:
                self._forget(oid)

    def _maybe_compact(self) -> None:
        """Drop stale heap entries once they outnumber the valid ones (bounded memory)."""
        self._since_compact += 1
        if self._since_compact < 64:  # looked at every 64 pushes: the check itself is not free
            return
        self._since_compact = 0
        for scope, heap in self._heaps.items():
            if len(heap) > 2 * len(self.members) + 1024:
                self._heaps[scope] = [e for e in heap if self._valid(e[1], e[0])]
                heapq.heapify(self._heaps[scope])
        if len(self._parked) > 2 * self.max_parked:
            self._trim_parked()
        offered = len(self._rank) - len(self.members)
        for name in ("_waiting", "_parked"):
            offers: list[tuple[float, int]] = getattr(self, name)
            if len(offers) > 2 * offered + 1024:
                offers = [e for e in offers if e[1] not in self.members and self._rank.get(e[1]) == -e[0]]
                heapq.heapify(offers)
                setattr(self, name, offers)
