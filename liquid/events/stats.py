"""Usage and cost statistics from the event log: the numbers the dashboard and ``/v1/stats`` show.

Two sources answer the same questions with the same numbers: :class:`PostgresStats` (the
event log itself; always there) and :class:`ClickHouseStats` (the exported copy and its
daily rollup; both ClickHouse transports run the same SQL). Definitions, for both:

* **usage** per UTC day, tenant and namespace: writes and bytes written
  (``object.created``), reads (the ``count`` of ``object.read``), purges and bytes purged.
* **cost** per durable tier: objects and stored bytes as the log has them (created and moved
  in, minus purged and moved out), and the monthly cost: each tenant's bytes at its own
  storage price (:func:`liquid.policy.costs.tier_prices`, per GiB-month; the same prices as
  ``policy plan``). Deleted versions count until they are purged: their bytes are still paid for.
* **moves** per UTC day and (from, to) tier: count and bytes.
* **top objects**: most read versions in the range.
* **idle**: stored versions whose last read (or write, if never read) is older than 30, 90
  and 180 days: objects, bytes and monthly cost per tier.

Filters: ``tenant`` and ``namespace`` (exact), ``start``/``end`` as UTC dates (``end``
exclusive). ClickHouse answers up to the export watermark: with lag, its numbers trail.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Engine, text

from liquid.catalog import db
from liquid.events.sinks import EventSink
from liquid.policy.costs import tier_prices
from liquid.policy.models import PolicySet, TierPrice

GiB = 1024**3
IDLE_DAYS = (30, 90, 180)
#: Prices per tier for a tenant (``None``: the default model's).
PricesOf = Callable[[str | None], Mapping[str, TierPrice]]
#: The policy set whose CostModels price the bytes (the applied one), read once per question.
PoliciesOf = Callable[[], PolicySet | None]


def _prices_of(policies_of: PoliciesOf) -> PricesOf:
    policies = policies_of()
    return functools.cache(lambda tenant: tier_prices(policies, tenant))


@dataclass(frozen=True)
class StatsFilter:
    tenant: str | None = None
    namespace: str | None = None
    start: date | None = None
    end: date | None = None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")


class StatsSource(Protocol):
    name: str

    def usage(self, f: StatsFilter) -> list[dict[str, Any]]: ...
    def cost(self, f: StatsFilter) -> list[dict[str, Any]]: ...
    def moves(self, f: StatsFilter) -> list[dict[str, Any]]: ...
    def top_objects(self, f: StatsFilter, limit: int) -> list[dict[str, Any]]: ...
    def idle(self, f: StatsFilter, now: datetime) -> list[dict[str, Any]]: ...


def _plain(rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts, typed the same whichever database answered."""
    out = []
    for row in rows:
        item: dict[str, Any] = {}
        for k, v in row.items():
            if isinstance(v, Decimal):
                v = int(v)
            elif isinstance(v, datetime):
                v = v.date().isoformat() if k == "day" else v.astimezone(UTC).isoformat()
            elif isinstance(v, date):
                v = v.isoformat()
            item[k] = v
        out.append(item)
    return out


def _by_tier(
    rows: list[dict[str, Any]], prices_of: PricesOf, costs: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Fold rows per (tenant, tier) into rows per tier, pricing each tenant's bytes at its own price.

    ``costs`` maps each cost column to add to the bytes column it prices.
    """
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        tenant, tier = r.pop("tenant"), r["tier"]
        price = prices_of(tenant).get(tier)
        row = out.setdefault(tier, {"tier": tier, **dict.fromkeys(costs, 0.0)})
        for k, v in r.items():
            if k != "tier":
                row[k] = row.get(k, 0) + v
        for cost, col in costs.items():
            if price is None or row[cost] is None:
                row[cost] = None
            else:
                row[cost] += r[col] / GiB * price.storage_per_gb_month
    for row in out.values():
        for cost in costs:
            if row[cost] is not None:
                row[cost] = round(row[cost], 6)
    return [out[t] for t in sorted(out)]


_COST = {"monthly_cost": "bytes"}
_IDLE = {f"monthly_cost_{d}d": f"bytes_{d}d" for d in IDLE_DAYS}


# -------------------------------------------------------------------- PostgreSQL


class PostgresStats:
    """Statistics straight from the event log in PostgreSQL."""

    name = "postgres"

    def __init__(self, engine: Engine, *, policies: PoliciesOf) -> None:
        self.engine = engine
        self.policies = policies

    def __repr__(self) -> str:
        return "PostgresStats()"

    def _where(self, f: StatsFilter, *, time: bool = True) -> tuple[str, dict[str, Any]]:
        parts: list[str] = []
        params: dict[str, Any] = {}
        if f.tenant is not None:
            parts.append("tenant_id = :tenant")
            params["tenant"] = f.tenant
        if f.namespace is not None:
            parts.append("namespace = :namespace")
            params["namespace"] = f.namespace
        if time and f.start is not None:
            parts.append("at >= :start")
            params["start"] = datetime(f.start.year, f.start.month, f.start.day, tzinfo=UTC)
        if f.end is not None:
            parts.append("at < :end")
            params["end"] = datetime(f.end.year, f.end.month, f.end.day, tzinfo=UTC)
        return "".join(f" AND {p}" for p in parts), params

    def _rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with db.reading(self.engine) as conn:
            return _plain([dict(r._mapping) for r in conn.execute(text(sql), params)])

    def usage(self, f: StatsFilter) -> list[dict[str, Any]]:
        where, params = self._where(f)
        return self._rows(
            "SELECT (at AT TIME ZONE 'UTC')::date AS day, tenant_id AS tenant, namespace,"
            " count(*) FILTER (WHERE kind = 'object.created') AS writes,"
            " coalesce(sum(bytes) FILTER (WHERE kind = 'object.created'), 0)::bigint AS bytes_written,"
            " coalesce(sum(count) FILTER (WHERE kind = 'object.read'), 0)::bigint AS reads,"
            " count(*) FILTER (WHERE kind = 'object.purged') AS purges,"
            " coalesce(sum(bytes) FILTER (WHERE kind = 'object.purged'), 0)::bigint AS bytes_purged"
            " FROM events WHERE kind IN ('object.created', 'object.read', 'object.purged')"
            f"{where} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            params,
        )

    def cost(self, f: StatsFilter) -> list[dict[str, Any]]:
        where, params = self._where(f, time=False)
        rows = self._rows(
            "SELECT tenant, tier, sum(n)::bigint AS objects, sum(b)::bigint AS bytes FROM ("
            " SELECT tenant_id AS tenant, tier, CASE WHEN kind = 'object.purged' THEN -1 ELSE 1 END AS n,"
            " CASE WHEN kind = 'object.purged' THEN -bytes ELSE bytes END AS b FROM events"
            f" WHERE kind IN ('object.created', 'object.moved', 'object.purged'){where}"
            " UNION ALL SELECT tenant_id, from_tier, -1, -bytes FROM events"
            f" WHERE kind = 'object.moved'{where}"
            ") s GROUP BY tenant, tier HAVING sum(n) <> 0 OR sum(b) <> 0 ORDER BY tenant, tier",
            params,
        )
        return _by_tier(rows, _prices_of(self.policies), _COST)

    def moves(self, f: StatsFilter) -> list[dict[str, Any]]:
        where, params = self._where(f)
        return self._rows(
            "SELECT (at AT TIME ZONE 'UTC')::date AS day, from_tier, tier AS to_tier, count(*) AS moves,"
            " sum(bytes)::bigint AS bytes FROM events"
            f" WHERE kind = 'object.moved'{where} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            params,
        )

    def top_objects(self, f: StatsFilter, limit: int) -> list[dict[str, Any]]:
        where, params = self._where(f)
        return self._rows(
            "SELECT tenant_id AS tenant, namespace, key, version, sum(count)::bigint AS reads FROM events"
            f" WHERE kind = 'object.read'{where} GROUP BY 1, 2, 3, 4"
            " ORDER BY reads DESC, tenant, namespace, key, version LIMIT :limit",
            {**params, "limit": limit},
        )

    def idle(self, f: StatsFilter, now: datetime) -> list[dict[str, Any]]:
        where, params = self._where(StatsFilter(f.tenant, f.namespace), time=False)
        cols = ", ".join(
            f"count(*) FILTER (WHERE last_at < :t{d}) AS objects_{d}d,"
            f" coalesce(sum(bytes) FILTER (WHERE last_at < :t{d}), 0)::bigint AS bytes_{d}d"
            for d in IDLE_DAYS
        )
        rows = self._rows(
            f"SELECT tenant, tier, {cols} FROM ("
            " SELECT object_id, min(tenant_id) AS tenant,"
            " max(at) FILTER (WHERE kind IN ('object.created', 'object.read')) AS last_at,"
            " bool_or(kind = 'object.purged') AS purged,"
            " (array_agg(tier ORDER BY id DESC) FILTER (WHERE kind IN ('object.created', 'object.moved')))[1]"
            " AS tier,"
            " max(bytes) FILTER (WHERE kind = 'object.created') AS bytes"
            " FROM events WHERE object_id IS NOT NULL"
            f" AND kind IN ('object.created', 'object.read', 'object.moved', 'object.purged'){where}"
            " GROUP BY object_id) o WHERE NOT purged AND tier IS NOT NULL GROUP BY tenant, tier"
            " ORDER BY tenant, tier",
            {**params, **{f"t{d}": now - timedelta(days=d) for d in IDLE_DAYS}},
        )
        return _by_tier(rows, _prices_of(self.policies), _IDLE)


# -------------------------------------------------------------------- ClickHouse


def literal(value: Any) -> str:
    """A ClickHouse SQL literal (strings escaped; the stats queries bind nothing else)."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"no literal for {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return f"toDateTime64('{value.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')}', 6, 'UTC')"
    if isinstance(value, date):
        return f"toDate('{value.isoformat()}')"
    s = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{s}'"


class ClickHouseStats:
    """Statistics from the exported events and their daily rollup (chDB or a server: same SQL)."""

    name = "clickhouse"

    def __init__(self, sink: EventSink, *, policies: PoliciesOf) -> None:
        self.sink = sink
        self.db = sink.database
        self.policies = policies

    def __repr__(self) -> str:
        return f"ClickHouseStats({self.sink!r})"

    def _where(self, f: StatsFilter, *, time: str | None = "at") -> str:
        parts = []
        if f.tenant is not None:
            parts.append(f"tenant_id = {literal(f.tenant)}")
        if f.namespace is not None:
            parts.append(f"namespace = {literal(f.namespace)}")
        if time is not None and f.start is not None:
            parts.append(f"{time} >= {literal(f.start)}")
        if time is not None and f.end is not None:
            parts.append(f"{time} < {literal(f.end)}")
        return "".join(f" AND {p}" for p in parts)

    def _rows(self, sql: str) -> list[dict[str, Any]]:
        return _plain(self.sink.query(sql).to_pylist())

    def usage(self, f: StatsFilter) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT day, tenant_id AS tenant, namespace, toInt64(sum(writes)) AS writes,"
            " toInt64(sum(bytes_written)) AS bytes_written, toInt64(sum(reads)) AS reads,"
            " toInt64(sum(purges)) AS purges, toInt64(sum(bytes_purged)) AS bytes_purged"
            f" FROM {self.db}.usage_daily WHERE 1{self._where(f, time='day')}"
            " GROUP BY day, tenant, namespace HAVING writes + reads + purges > 0"
            " ORDER BY day, tenant, namespace"
        )

    def cost(self, f: StatsFilter) -> list[dict[str, Any]]:
        end = f" AND day < {literal(f.end)}" if f.end is not None else ""
        rows = self._rows(
            "SELECT tenant_id AS tenant, tier,"
            " toInt64(sum(writes + moves_in - purges - moves_out)) AS objects,"
            " toInt64(sum(bytes_in - bytes_out)) AS bytes"
            f" FROM {self.db}.usage_daily WHERE tier != ''{self._where(f, time=None)}{end}"
            " GROUP BY tenant, tier HAVING objects != 0 OR bytes != 0 ORDER BY tenant, tier"
        )
        return _by_tier(rows, _prices_of(self.policies), _COST)

    def moves(self, f: StatsFilter) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT toDate(at) AS day, from_tier, tier AS to_tier, toInt64(count()) AS moves,"
            f" toInt64(sum(bytes)) AS bytes FROM {self.db}.events"
            f" WHERE kind = 'object.moved'{self._where(f)}"
            " GROUP BY day, from_tier, to_tier ORDER BY day, from_tier, to_tier"
        )

    def top_objects(self, f: StatsFilter, limit: int) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT tenant_id AS tenant, namespace, key, toInt64(assumeNotNull(version)) AS version,"
            f" toInt64(sum(count)) AS reads FROM {self.db}.events"
            f" WHERE kind = 'object.read'{self._where(f)}"
            " GROUP BY tenant, namespace, key, version"
            f" ORDER BY reads DESC, tenant, namespace, key, version LIMIT {int(limit)}"
        )

    def idle(self, f: StatsFilter, now: datetime) -> list[dict[str, Any]]:
        cols = ", ".join(
            f"toInt64(countIf(last_at < {literal(now - timedelta(days=d))})) AS objects_{d}d,"
            f" toInt64(sumIf(bytes, last_at < {literal(now - timedelta(days=d))})) AS bytes_{d}d"
            for d in IDLE_DAYS
        )
        rows = self._rows(
            f"SELECT tenant, tier, {cols} FROM ("
            " SELECT object_id, any(tenant_id) AS tenant,"
            " maxIfOrNull(at, kind IN ('object.created', 'object.read')) AS last_at,"
            " countIf(kind = 'object.purged') > 0 AS purged,"
            " argMaxIf(tier, id, kind IN ('object.created', 'object.moved')) AS tier,"
            " maxIf(bytes, kind = 'object.created') AS bytes"
            f" FROM {self.db}.events WHERE object_id IS NOT NULL"
            " AND kind IN ('object.created', 'object.read', 'object.moved', 'object.purged')"
            f"{self._where(StatsFilter(f.tenant, f.namespace), time=None)}"
            " GROUP BY object_id) WHERE NOT purged AND tier != '' GROUP BY tenant, tier ORDER BY tenant, tier"
        )
        return _by_tier(rows, _prices_of(self.policies), _IDLE)


def export_lag(engine: Engine, now: datetime) -> list[dict[str, Any]]:
    """Each sink's watermark, events exported, and how far behind the log it is."""
    with db.reading(engine) as conn:
        rows = conn.execute(
            text(
                "SELECT x.sink, x.exported, x.updated_at,"
                " (SELECT count(*) FROM events e WHERE (e.txid, e.id) > (x.txid, x.event_id)) AS lag_events,"
                " (SELECT min(at) FROM events e WHERE (e.txid, e.id) > (x.txid, x.event_id)) AS oldest"
                " FROM event_exports x ORDER BY x.sink"
            )
        ).all()
    return [
        {
            "sink": r.sink,
            "exported": int(r.exported),
            "lag_events": int(r.lag_events),
            "lag_seconds": max(0.0, (now - r.oldest).total_seconds()) if r.oldest is not None else 0.0,
            "updated_at": r.updated_at.astimezone(UTC).isoformat(),
        }
        for r in rows
    ]
