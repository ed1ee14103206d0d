"""What keeping an object in a tier is worth: prices, read savings and the rank the budgets sort by.

An object in tier ``T`` rather than the next colder tier saves, per read, the request and
retrieval price difference plus the read time it saves (first byte and transfer, valued
at ``latency_value_per_s``). Its monthly value per byte is ``reads/month x saving / size``
minus the extra storage price per byte, which is the same for every object of a tenant in
a tier, so budgets keep objects in order of ``log(rate x saving / size)``: the **rank**.
Ranks are forward-decayed — ``+ t / half_life x ln 2`` — because every rate decays at the
same speed, so a rank computed at one cycle still compares with one computed later and
untouched objects never need re-ranking.

For the hot tier ``planner.hot_objective`` decides what a hit is worth: ``bytes`` (the
default) counts only the transfer it saves, so hot copies rank by reads/hour whatever
their size (the best byte hit ratio); ``time`` adds first-byte latency, which favours
small objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from liquid.config import Settings
from liquid.policy.costs import tier_prices
from liquid.policy.models import TIERS, PolicySet, TierPrice

GiB = 1024**3
HOURS_PER_MONTH = 730.0
COLDER: dict[str, str | None] = {"hot": "warm", "warm": "cold", "cold": "archive", "archive": None}
TEMP = {tier: i for i, tier in enumerate(TIERS)}

#: Typical read latency per tier (seconds to the first byte), valued at ``latency_value_per_s`` per read.
DEFAULT_LATENCY = {"hot": 0.0002, "warm": 0.001, "cold": 0.02, "archive": 0.05}
#: Typical read throughput per tier (bytes/s) once the first byte arrives: a read of ``n`` bytes
#: takes ``latency + n / throughput``. Redis over a LAN link, PostgreSQL bytea/TOAST, one S3 GET stream.
DEFAULT_THROUGHPUT = {"hot": 1.0e9, "warm": 2.5e8, "cold": 1.0e8, "archive": 1.0e8}


@dataclass(frozen=True, slots=True)
class Prices:
    """One tier's prices, as the planner uses them (from a CostModel's :class:`TierPrice`)."""

    gb_month: float
    per_read: float
    retrieval_per_gb: float

    @classmethod
    def from_tier_price(cls, p: TierPrice) -> Prices:
        return cls(p.storage_per_gb_month, p.reads_per_1k / 1000, p.retrieval_per_gb)


@dataclass(frozen=True, slots=True)
class PlannerSettings:
    """Knobs of the value model and the hot tier (``settings.planner``; latency and throughput are fixed)."""

    latency: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LATENCY))
    throughput: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THROUGHPUT))
    latency_value_per_s: float = 1e-4
    hysteresis: float = 1.25
    #: A copy the policy no longer wants stays while the tier has room, first in line to go.
    keep_while_room: bool = True
    hot_objective: Literal["bytes", "time"] = "bytes"
    #: Share of the global hot byte cap for read-path admissions (see RankedTier.admit_on_read).
    hot_window: float = 0.0
    #: The hot rank's half-life adapts (liquid.tiering.adaptive; the config's default); off: the tracker's.
    adaptive: bool = False
    #: ... and its hysteresis, from ``hysteresis`` up (adaptive.STICKY).
    adaptive_hysteresis: bool = True
    adaptive_sample: float = 0.125
    #: The window's share adapts by hill climbing (liquid.tiering.window).
    adaptive_window: bool = False
    window_period: float = 2.0
    #: The hot rank's recency counts reads, not seconds (liquid.tiering.readclock).
    read_clock: bool = False
    read_half_life: float = 2.0
    #: The read clock's half-life adapts (liquid.tiering.readclock.ReadHalfLife).
    read_adaptive: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> PlannerSettings:
        c = settings.planner
        return cls(
            hysteresis=c.hysteresis,
            keep_while_room=c.keep_while_room,
            hot_objective=c.hot_objective,
            hot_window=c.hot_window,
            adaptive=c.adaptive,
            adaptive_hysteresis=c.adaptive_hysteresis,
            adaptive_sample=c.adaptive_sample,
            adaptive_window=c.adaptive_window,
            window_period=c.window_period,
            read_clock=c.read_clock,
            read_half_life=c.read_half_life,
            read_adaptive=c.read_adaptive,
        )


class ValueModel:
    """Prices per tenant and the rank of an object in a tier.

    Args:
        settings: the tracker's half-life and the planner's knobs.
        knobs: the planner's knobs (default: from ``settings.planner``).
    """

    def __init__(self, settings: Settings, knobs: PlannerSettings | None = None) -> None:
        self.settings = settings
        self.knobs = knobs or PlannerSettings.from_settings(settings)
        self.half_life = settings.access.half_life
        self._ln2_per_s = math.log(2) / self.half_life

    def __repr__(self) -> str:
        return f"ValueModel(objective={self.knobs.hot_objective}, half_life={self.half_life}s)"

    def prices(self, policies: PolicySet, tenant: str | None) -> dict[str, Prices]:
        """Prices per tier for a tenant (:func:`liquid.policy.costs.tier_prices`)."""
        return {tier: Prices.from_tier_price(p) for tier, p in tier_prices(policies, tenant).items()}

    def read_saving(self, size: int, tier: str, prices: dict[str, Prices]) -> float:
        """Dollars one read of ``size`` bytes saves when served from ``tier`` instead of the next colder.

        Request and retrieval prices, plus the read time saved (first byte and transfer, see
        :data:`DEFAULT_THROUGHPUT`) at ``latency_value_per_s``. The transfer term makes large
        objects worth their bytes: without it value per byte falls as 1/size and a tier fills
        with small objects, good for the object hit ratio but poor for the byte hit ratio.
        """
        colder = COLDER[tier]
        if colder is None:
            return 0.0
        gb = size / GiB
        p, q = prices[tier], prices[colder]
        k = self.knobs
        bytes_only = tier == "hot" and k.hot_objective == "bytes"
        first_byte = 0.0 if bytes_only else k.latency[colder] - k.latency[tier]
        seconds = first_byte + size * (1.0 / k.throughput[colder] - 1.0 / k.throughput[tier])
        return (
            (q.per_read - p.per_read)
            + (q.retrieval_per_gb - p.retrieval_per_gb) * gb
            + (seconds * k.latency_value_per_s)
        )

    def value_density(self, size: int, rate: float, tier: str, prices: dict[str, Prices]) -> float:
        """Monthly value per byte of keeping an object in ``tier`` rather than the next colder tier."""
        colder = COLDER[tier]
        if colder is None:
            return math.inf
        size = max(size, 1)
        p, q = prices[tier], prices[colder]
        saved = rate * HOURS_PER_MONTH * self.read_saving(size, tier, prices)
        storage_extra = (p.gb_month - q.gb_month if tier != "hot" else p.gb_month) * size / GiB
        return (saved - storage_extra) / size

    def rank(self, size: int, rate: float, at: float, prices: dict[str, Prices], tier: str = "hot") -> float:
        """The forward-decayed log value per byte of ``size`` bytes read ``rate`` times/hour, at epoch ``at``.

        Orders objects as :meth:`value_density` does within one tenant and tier; ``-inf`` for
        an object that saves nothing there.
        """
        size = max(size, 1)
        saved = rate * self.read_saving(size, tier, prices)
        if saved <= 0:
            return -math.inf
        return math.log(saved / size) + at * self._ln2_per_s

    def saving_per_byte(self, size: int, tier: str, prices: dict[str, Prices]) -> float:
        """``log`` of what one read saves per byte in ``tier`` (``-inf`` when it saves nothing):
        the part of :meth:`rank` that does not depend on reads."""
        size = max(size, 1)
        saved = self.read_saving(size, tier, prices)
        return math.log(saved / size) if saved > 0 else -math.inf

    def rank_columns(
        self,
        size: npt.NDArray[np.int64],
        rate: npt.NDArray[np.float64],
        at: float,
        prices: dict[str, Prices],
        tier: str,
    ) -> npt.NDArray[np.float64]:
        """:meth:`rank` of many objects of one tenant at once."""
        size_f = np.maximum(size, 1).astype(np.float64)
        saved = rate * self.read_saving(size_f, tier, prices)  # type: ignore[arg-type]
        with np.errstate(divide="ignore", invalid="ignore"):
            ranks = np.log(saved / size_f) + at * self._ln2_per_s
        return np.where(saved > 0, ranks, -math.inf)
