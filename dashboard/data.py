"""The dashboard's data layer: every number it shows, read through the Liquid API with an operator key.

Pages call :class:`DashboardData` and stay small; it holds a :class:`liquid.client.Client` and
no database credentials. API failures come out as :class:`DashboardError` with a message a
person can act on (the page shows it with ``st.error``, never a traceback).

Settings come from the environment (``liquid dashboard`` sets them from its flags)::

    LIQUID_DASHBOARD_API_URL=http://127.0.0.1:8780
    LIQUID_DASHBOARD_API_KEY=lq_...        # an operator (admin) key
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from liquid.client import Client
from liquid.client.errors import ApiError
from liquid.errors import LiquidError
from liquid.refs import ResultRef

T = TypeVar("T")
GiB = 1024**3
#: Durable tiers, coldest last; the order every page lists them in.
DURABLE_TIERS = ("warm", "cold", "archive")
TIERS = ("hot", *DURABLE_TIERS)
#: Events read for one chart at most (the heatmap, failures, purges): the rest is summarized by the API.
MAX_EVENTS = 5000


class DashboardSettings(BaseSettings):
    """Where the API is and the operator key to read it with."""

    model_config = SettingsConfigDict(env_prefix="LIQUID_DASHBOARD_")

    api_url: str = "http://127.0.0.1:8780"
    api_key: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class TierReads:
    """Cumulative reads and bytes read per serving tier (``hot``, ``warm``, ``cold``, ...)."""

    reads: dict[str, int]
    bytes: dict[str, int]

    @staticmethod
    def _ratio(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    @property
    def object_hit_ratio(self) -> float | None:
        return self._ratio(self.reads.get("hot", 0), sum(self.reads.values()))

    @property
    def byte_hit_ratio(self) -> float | None:
        return self._ratio(self.bytes.get("hot", 0), sum(self.bytes.values()))

    def since(self, earlier: TierReads) -> TierReads:
        """What was read between ``earlier`` and this sample (a restarted API counts from zero)."""

        def delta(now: dict[str, int], then: dict[str, int]) -> dict[str, int]:
            if any(now.get(k, 0) < v for k, v in then.items()):
                return dict(now)
            return {k: v - then.get(k, 0) for k, v in now.items()}

        return TierReads(delta(self.reads, earlier.reads), delta(self.bytes, earlier.bytes))


class HitRatioHistory:
    """The hot tier's hit ratios between successive samples of ``/metrics``, newest last.

    The API keeps only running totals, so the ratio over time is what the dashboard saw while
    it was open: one point per sample, for the reads between it and the one before.
    """

    def __init__(self, *, clock: Callable[[], datetime], max_points: int = 500) -> None:
        self.clock = clock
        self.points: deque[dict[str, Any]] = deque(maxlen=max_points)
        self._last: TierReads | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HitRatioHistory(points={len(self.points)})"

    def add(self, sample: TierReads) -> list[dict[str, Any]]:
        """Record a sample; the points so far (``at``, ``objects``, ``bytes``, ``reads``)."""
        with self._lock:
            if self._last is not None:
                window = sample.since(self._last)
                reads = sum(window.reads.values())
                if reads:
                    self.points.append(
                        {
                            "at": self.clock().isoformat(),
                            "objects": window.object_hit_ratio,
                            "bytes": window.byte_hit_ratio,
                            "reads": reads,
                        }
                    )
            self._last = sample
            return list(self.points)


class DashboardError(Exception):
    """An API call failed; ``str()`` says what and what to do."""


@dataclass(frozen=True)
class Filters:
    """The sidebar's filters: a tenant (None: all) and UTC days ``[start, end)``."""

    tenant: str | None
    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise DashboardError(f"the time range ends ({self.end}) before it starts ({self.start})")

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, time(), tzinfo=UTC)

    @property
    def end_at(self) -> datetime:
        return datetime.combine(self.end, time(), tzinfo=UTC)


def default_filters(today: date, days: int = 30) -> Filters:
    """All tenants, the last ``days`` days up to and including ``today``."""
    return Filters(None, today - timedelta(days=days - 1), today + timedelta(days=1))


# ----------------------------------------------------------------- formatting


def format_bytes(n: int | float | None) -> str:
    """Binary units with two decimals: ``1536 → '1.50 KiB'``, ``5 GiB → '5.00 GiB'``."""
    if n is None:
        return "-"
    value = float(n)
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(value) >= factor:
            return f"{value / factor:,.2f} {unit}"
    return f"{int(value)} B"


def format_cost(dollars: float | None) -> str:
    """A monthly cost: cents above a dollar, else six decimals (tiny demo data still shows)."""
    if dollars is None:
        return "-"
    if abs(dollars) >= 1:
        return f"${dollars:,.2f}/month"
    return f"${dollars:.6f}/month"


# ------------------------------------------------------------------ the reader


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Client and transport failures as one DashboardError naming the call and the fix."""
    try:
        yield
    except ApiError as exc:
        where = f", field {exc.field}" if exc.field else ""
        hint = (
            " Check LIQUID_DASHBOARD_API_KEY: it must be an operator key." if exc.status in (401, 403) else ""
        )
        raise DashboardError(f"{what}: {exc.detail} (HTTP {exc.status}{where}).{hint}") from None
    except httpx.TransportError as exc:
        raise DashboardError(
            f"{what}: cannot reach the API ({exc.__class__.__name__}: {exc}). "
            "Start it with `liquid up` or point LIQUID_DASHBOARD_API_URL at it."
        ) from None
    except LiquidError as exc:
        raise DashboardError(f"{what}: {exc.detail}") from None


@dataclass
class DashboardData:
    """Every report the pages show, each one API call (or a few) away."""

    settings: DashboardSettings
    client_factory: Callable[..., Client] = Client
    _client: Client | None = field(default=None, repr=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            if not self.settings.api_key:
                raise DashboardError(
                    "no API key: set LIQUID_DASHBOARD_API_KEY (or pass --api-key to `liquid dashboard`)"
                    " to an operator key, e.g. from `liquid key create --admin`"
                )
            self._client = self.client_factory(
                self.settings.api_url, api_key=self.settings.api_key, timeout=self.settings.timeout, retries=1
            )
        return self._client

    def _tenant_client(self, tenant: str) -> Client:
        return self.client_factory(
            self.settings.api_url,
            api_key=self.settings.api_key,
            tenant=tenant,
            timeout=self.settings.timeout,
            retries=1,
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _stats(self, report: str, f: Filters, **extra: Any) -> list[dict[str, Any]]:
        with _translated(f"reading /v1/stats/{report}"):
            rows: list[dict[str, Any]] = self.client.report(
                report, tenant=f.tenant, start=f.start, end=f.end, **extra
            )["rows"]
        return rows

    # ---------------------------------------------------------------- overview

    def tenants(self, f: Filters) -> list[str]:
        """Tenants with any usage in the range (for the tenant filter)."""
        rows = self._stats("usage", Filters(None, f.start, f.end))
        return sorted({r["tenant"] for r in rows if r.get("tenant")})

    def tier_costs(self, f: Filters) -> list[dict[str, Any]]:
        """Per durable tier as of the range's end: objects, bytes, monthly cost (``/v1/stats/cost``)."""
        return self._stats("cost", f)

    def cost_trend(self, f: Filters, points: int = 12) -> list[dict[str, Any]]:
        """Total monthly cost as of the end of each of up to ``points`` days in the range."""
        days = (f.end - f.start).days
        step = max(1, -(-days // points))
        out = []
        for offset in range(step, days + step, step):
            day_end = min(f.start + timedelta(days=offset), f.end)
            rows = self._stats("cost", Filters(f.tenant, f.start, day_end))
            out.append(
                {
                    "day": (day_end - timedelta(days=1)).isoformat(),
                    "monthly_cost": round(sum(r["monthly_cost"] or 0 for r in rows), 6),
                    "bytes": sum(r["bytes"] for r in rows),
                }
            )
            if day_end == f.end:
                break
        return out

    def applied_plan(self) -> dict[str, Any] | None:
        """The dry run of the applied policies (budgets, per-tier bytes incl. hot); None if none applied."""
        with _translated("planning the applied policies"):
            try:
                return self.client.plan_policies()
            except ApiError as exc:
                if exc.status == 400 and "no policies applied" in exc.detail:
                    return None
                raise

    def status(self) -> dict[str, Any]:
        """Move queue, pending rows, movers' heartbeats, export lag (``/v1/tiering/status``)."""
        with _translated("reading /v1/tiering/status"):
            return self.client.tiering_status()

    def tier_reads(self) -> TierReads:
        """Reads and bytes read since the API started, by the tier that served them (``/metrics``)."""
        from prometheus_client.parser import text_string_to_metric_families

        with _translated("reading /metrics"):
            text = self.client.metrics()
        counts: dict[str, dict[str, int]] = {"liquid_tier_reads": {}, "liquid_tier_read_bytes": {}}
        for family in text_string_to_metric_families(text):
            if family.name in counts:
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        counts[family.name][sample.labels["source"]] = int(sample.value)
        return TierReads(counts["liquid_tier_reads"], counts["liquid_tier_read_bytes"])

    # ------------------------------------------------------------------- usage

    def usage(self, f: Filters) -> list[dict[str, Any]]:
        return self._stats("usage", f)

    def top_objects(self, f: Filters, limit: int = 20) -> list[dict[str, Any]]:
        return self._stats("top-objects", f, limit=limit)

    def idle(self, f: Filters) -> list[dict[str, Any]]:
        return self._stats("idle", f)

    def events(self, f: Filters, kind: str, *, limit: int = MAX_EVENTS, ref: str | None = None) -> list[Any]:
        """Events of ``kind`` in the range, newest first, at most ``limit``."""
        out: list[Any] = []
        cursor = None
        with _translated(f"reading /v1/events?kind={kind}"):
            while len(out) < limit:
                page = self.client.events(
                    tenant=f.tenant,
                    kind=kind,
                    ref=ref,
                    start=f.start_at,
                    end=f.end_at,
                    limit=min(1000, limit - len(out)),
                    cursor=cursor,
                )
                out += page["events"]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
        return out

    # --------------------------------------------------------------- movements

    def moves(self, f: Filters) -> list[dict[str, Any]]:
        return self._stats("moves", f)

    # ---------------------------------------------------------------- policies

    def policies(self) -> dict[str, Any]:
        with _translated("reading /v1/policies"):
            return self.client.policies()

    def plan(self, sources: Mapping[str, str] | None) -> dict[str, Any]:
        """The dry run of pasted files (or the applied set): ``liquid policy plan``'s numbers."""
        with _translated("planning the policies"):
            return self.client.plan_policies(sources, changes=True)

    # -------------------------------------------------------------- ref lookup

    def lookup(self, text: str) -> dict[str, Any]:
        """A ref's metadata, explain, and its event history (placement and reads)."""
        try:
            ref = ResultRef.parse(text.strip())
        except LiquidError as exc:
            raise DashboardError(
                f"not a ref: {exc.detail} (expected liquid://tenant/namespace/key@version)"
            ) from None
        with _translated(f"looking up {ref.uri}"), self._tenant_client(ref.tenant) as c:
            meta = c.head(ref)
            explained = c.explain(ref.namespace, ref.key, version=ref.version)
            history = c.events(ref=ref.uri, limit=1000, order="asc")["events"]
        return {
            "ref": ref.uri,
            "meta": {
                "size": meta.size,
                "sha256": meta.sha256,
                "content_type": meta.content_type,
                "home_tier": meta.home_tier,
                "created_at": meta.created_at.isoformat() if meta.created_at else None,
                "expires_at": meta.expires_at.isoformat() if meta.expires_at else None,
            },
            "explain": explained,
            "history": history,
        }


def guarded(fn: Callable[[], T]) -> T | DashboardError:
    """``fn()``, or the DashboardError it raised (for pages that show it and carry on)."""
    try:
        return fn()
    except DashboardError as exc:
        return exc
