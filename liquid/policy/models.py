"""The policy file format: Kubernetes-style documents validated by pydantic models.

Every document has ``apiVersion: liquid/v1``, a ``kind``, ``metadata`` (``name``,
optional ``labels`` and ``annotations``) and a ``spec``. Three kinds exist:

``TieringPolicy``
    Which objects it governs (``spec.selector``) and where they live: ``spec.rules``
    is a ladder of tiers from hottest to coldest, each with the thresholds that move
    objects down (``demoteAfter`` idle time, ``demoteBelow`` access rate, ``maxAge``,
    ``demoteAt``) and back up (``promoteAbove``, ``restoreOnAccess``); plus
    ``minResidency`` (hysteresis), ``archiveAfter``, ``expireAfter`` and ``legalHold``.
``Budget``
    Limits in bytes and/or dollars per month, in total and per tier, for one tenant
    (``spec.tenant``) or for everything (no tenant).
``CostModel``
    Prices per tier: $/GB-month, $/1k reads and writes, retrieval $/GB and the minimum
    storage duration, for one tenant or for everything.

Durations (``90s``, ``15m``, ``12h``, ``30d``), sizes (``4KiB``, ``2GiB``) and access
rates (``10/h``, ``0.5/min``; a bare number is reads per hour) are written in human
units; the models hold plain seconds, bytes and reads per hour. YAML field names are
camelCase (the aliases); Python attributes are snake_case.

The loader (:mod:`liquid.policy.loader`) turns YAML into these models with located
errors; :func:`liquid.policy.schema.generate_schema` turns them into JSON Schema.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, WithJsonSchema
from pydantic.alias_generators import to_camel

from liquid.limits import SCOPES as LIMIT_SCOPES
from liquid.policy.problems import Problem
from liquid.units import parse_duration, parse_size

API_VERSION = "liquid/v1"
#: Tiers from hottest to coldest; rules must follow this order.
TIERS: tuple[str, ...] = ("hot", "warm", "cold", "archive")
SCOPES: tuple[str, ...] = LIMIT_SCOPES  # the scopes a put may name
#: Scopes whose lifecycle clock starts when the execution that produced them finishes.
EXECUTION_SCOPES = frozenset({"step", "execution", "workflow"})
KINDS: tuple[str, ...] = ("TieringPolicy", "Budget", "CostModel")

Tier: TypeAlias = Literal["hot", "warm", "cold", "archive"]
Scope: TypeAlias = Literal["step", "execution", "workflow", "permanent"]

# A duration longer than a century is a typo, and keeping values bounded keeps every
# datetime computed from them inside datetime's range (year 9999).
MAX_DURATION = 100 * 365 * 86400.0
MAX_SIZE = 2**63 - 1  # the catalog's BIGINT
MAX_RATE = 1e9
MAX_MONEY = 1e12


class InvalidValue(ValueError):
    """A field value is wrong; carries what was wrong and what is allowed, for located messages."""

    def __init__(self, problem: str, allowed: str) -> None:
        super().__init__(f"{problem}; allowed: {allowed}")
        self.problem = problem
        self.allowed = allowed


def show(value: object, limit: int = 40) -> str:
    """A short description of a YAML value for error messages."""
    if value is None:
        return "null (an empty value)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple | set):
        return "a list"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- human units ---------------------------------------------------------------------------------

SIZE_ALLOWED = (
    "a byte count or a number with a unit, e.g. 512, 64KiB, 2GiB, 1.5GB "
    "(units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
)
DURATION_ALLOWED = (
    "a number of seconds or a duration with units, e.g. 90s, 15m, 12h, 30d, 2w, 1h30m "
    "(units: ms, s, m, h, d, w; at most 36500d)"
)
RATE_ALLOWED = "reads per hour as a number (e.g. 2.5), or a rate with a unit: 10/h, 0.5/min, 3/d, 1/s"
MONEY_ALLOWED = "an amount of money, e.g. 12.5 or '$12.50' (not negative)"
INSTANT_ALLOWED = "a date (2027-01-31) or an ISO 8601 date-time (2027-01-31T00:00:00Z); naive times are UTC"
NAME_ALLOWED = (
    "1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit "
    "(e.g. workflow-results)"
)


def to_size(value: object) -> int:
    """Bytes from ``512``, ``"64KiB"`` or ``"2GiB"``.

    >>> to_size("2GiB")
    2147483648
    """
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidValue(f"expected a size, got {show(value)}", SIZE_ALLOWED)
    if (isinstance(value, int) and value < 0) or (isinstance(value, str) and value.strip().startswith("-")):
        raise InvalidValue(f"a size cannot be negative, got {show(value)}", SIZE_ALLOWED)
    try:
        size = parse_size(value)
    except (ValueError, OverflowError):
        raise InvalidValue(f"{show(value)} is not a size", SIZE_ALLOWED) from None
    if size > MAX_SIZE:
        raise InvalidValue(f"{show(value)} is too large", "at most 8EiB (2**63 - 1 bytes)")
    return size


def to_duration(value: object) -> float:
    """Seconds from ``90``, ``"15m"``, ``"12h"``, ``"30d"`` or ``"1h30m"``.

    >>> to_duration("1h30m")
    5400.0
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidValue(f"expected a duration, got {show(value)}", DURATION_ALLOWED)
    if (isinstance(value, int | float) and value < 0) or (
        isinstance(value, str) and value.strip().startswith("-")
    ):
        raise InvalidValue(f"a duration cannot be negative, got {show(value)}", DURATION_ALLOWED)
    try:
        seconds = parse_duration(value)
    except (ValueError, OverflowError):
        raise InvalidValue(f"{show(value)} is not a duration", DURATION_ALLOWED) from None
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise InvalidValue(f"{show(value)} is too long", DURATION_ALLOWED)
    return seconds


_RATE_UNITS = {
    "s": 3600.0,
    "sec": 3600.0,
    "second": 3600.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 1.0,
    "hour": 1.0,
    "d": 1 / 24,
    "day": 1 / 24,
    "w": 1 / (24 * 7),
    "week": 1 / (24 * 7),
}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*$")


def to_rate(value: object) -> float:
    """Reads per hour from ``2.5`` (already per hour), ``"10/h"``, ``"0.5/min"`` or ``"3/d"``.

    >>> to_rate("1/min")
    60.0
    """
    if isinstance(value, bool):
        raise InvalidValue(f"expected an access rate, got {show(value)}", RATE_ALLOWED)
    number: float
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        m = _RATE_RE.match(text)
        if re.fullmatch(r"-?\d+(?:\.\d+)?", text):
            number = float(text)
        elif m and m.group(2) in _RATE_UNITS:
            number = float(m.group(1)) * _RATE_UNITS[m.group(2)]
        elif text.startswith("-"):
            raise InvalidValue(f"an access rate cannot be negative, got {show(value)}", RATE_ALLOWED)
        else:
            raise InvalidValue(f"{show(value)} is not an access rate", RATE_ALLOWED)
    else:
        raise InvalidValue(f"expected an access rate, got {show(value)}", RATE_ALLOWED)
    if number < 0:
        raise InvalidValue(f"an access rate cannot be negative, got {show(value)}", RATE_ALLOWED)
    if not math.isfinite(number) or number > MAX_RATE:
        raise InvalidValue(f"{show(value)} is not a usable access rate", RATE_ALLOWED)
    return number


def to_money(value: object) -> float:
    """An amount from ``12.5`` or ``"$12.50"``.

    >>> to_money("$0.023")
    0.023
    """
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().removeprefix("$").strip()
        if re.fullmatch(r"-?\d+(?:\.\d+)?", text):
            number = float(text)
    if number is None:
        raise InvalidValue(f"{show(value)} is not an amount of money", MONEY_ALLOWED)
    if number < 0:
        raise InvalidValue(f"an amount cannot be negative, got {show(value)}", MONEY_ALLOWED)
    if not math.isfinite(number) or number > MAX_MONEY:
        raise InvalidValue(f"{show(value)} is not a usable amount", MONEY_ALLOWED)
    return number


def to_instant(value: object) -> datetime:
    """An aware datetime from a YAML date, date-time or ISO string; naive means UTC.

    >>> to_instant("2027-01-31")
    datetime.datetime(2027, 1, 31, 0, 0, tzinfo=datetime.timezone.utc)
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidValue(f"{show(value)} is not a date", INSTANT_ALLOWED) from None
    if isinstance(value, datetime):
        return _in_range(value if value.tzinfo is not None else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return _in_range(datetime.combine(value, time(0), tzinfo=UTC))
    raise InvalidValue(f"expected a date, got {show(value)}", INSTANT_ALLOWED)


#: Instants a policy may name: every one converts to UTC and to a timestamp, and prints.
MIN_INSTANT = datetime(1, 1, 2, tzinfo=UTC)
MAX_INSTANT = datetime(9999, 12, 31, tzinfo=UTC)


def _in_range(value: datetime) -> datetime:
    """``value``, if it lies from 0001-01-02 to 9999-12-31 UTC (an offset can push a date at the
    calendar's edge past it, where conversions to UTC and to timestamps overflow).

    >>> _in_range(datetime.fromisoformat("0001-01-01T00:00:00+14:00"))
    Traceback (most recent call last):
    ...
    liquid.policy.models.InvalidValue: 0001-01-01T00:00:00+14:00 is outside the supported range; \
allowed: a date from 0001-01-02 to 9999-12-31 (UTC)
    """
    if not MIN_INSTANT <= value <= MAX_INSTANT:
        raise InvalidValue(
            f"{value.isoformat()} is outside the supported range",
            f"a date from {MIN_INSTANT.date()} to {MAX_INSTANT.date()} (UTC)",
        )
    return value


_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def to_name(value: object) -> str:
    """A DNS-label style name, as Kubernetes uses for ``metadata.name``."""
    if not isinstance(value, str):
        raise InvalidValue(f"expected a name, got {show(value)}", NAME_ALLOWED)
    if not _NAME_RE.match(value):
        raise InvalidValue(f"{value!r} is not a valid name", NAME_ALLOWED)
    return value


def exact_size(n: int) -> int | str:
    """``2147483648 → '2GiB'``; sizes without an exact binary unit stay plain bytes, so nothing is rounded."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return n


def format_duration(seconds: float) -> str:
    """The shortest exact form: ``604800 → '7d'``, ``5400 → '90m'``, ``1.5 → '1.5s'``.

    >>> format_duration(36 * 3600)
    '36h'
    """
    if seconds > 0 and float(seconds).is_integer():
        for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds % factor == 0:
                return f"{int(seconds // factor)}{unit}"
        return f"{int(seconds)}s"
    return f"{seconds:g}s"


def format_rate(per_hour: float) -> str:
    """A rate in reads per hour: ``2.5 → '2.5/h'``."""
    return f"{per_hour:g}/h"


def _pattern_schema(pattern: str, description: str, *, number: bool = True) -> dict[str, Any]:
    options: list[dict[str, Any]] = [{"type": "string", "pattern": pattern}]
    if number:
        options.insert(0, {"type": "number", "minimum": 0})
    return {"anyOf": options, "description": description}


Size = Annotated[
    int,
    PlainValidator(to_size),
    PlainSerializer(lambda n: exact_size(n), return_type=int | str),
    WithJsonSchema(
        _pattern_schema(
            r"^\s*\d+(\.\d+)?\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$", "Size in bytes or with a unit, e.g. 2GiB"
        )
    ),
]
Duration = Annotated[
    float,
    PlainValidator(to_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        _pattern_schema(r"^\s*(\d+(\.\d+)?(ms|s|m|h|d|w)?)+\s*$", "Duration, e.g. 90s, 15m, 12h, 30d")
    ),
]
Rate = Annotated[
    float,
    PlainValidator(to_rate),
    PlainSerializer(format_rate, return_type=str),
    WithJsonSchema(
        _pattern_schema(
            r"^\s*\d+(\.\d+)?\s*(/\s*(s|sec|second|m|min|minute|h|hour|d|day|w|week))?\s*$",
            "Decayed access rate: reads per hour, or e.g. 10/h, 0.5/min",
        )
    ),
]
Money = Annotated[
    float,
    PlainValidator(to_money),
    WithJsonSchema(_pattern_schema(r"^\s*\$?\s*\d+(\.\d+)?\s*$", "Amount in the cost model's currency")),
]
Instant = Annotated[
    datetime,
    PlainValidator(to_instant),
    PlainSerializer(lambda d: d.isoformat(), return_type=str),
    WithJsonSchema(
        {"type": "string", "description": "A date (2027-01-31) or date-time (2027-01-31T00:00:00Z)"}
    ),
]
Name = Annotated[
    str,
    PlainValidator(to_name),
    WithJsonSchema({"type": "string", "pattern": _NAME_RE.pattern, "maxLength": 63}),
]


class PolicyModel(BaseModel):
    """Base of every policy model: camelCase aliases, immutable, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
    )


class Metadata(PolicyModel):
    name: Name = Field(description="Unique name per kind: " + NAME_ALLOWED)
    labels: dict[str, str] = Field(default_factory=dict, description="Free-form string labels")
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Free-form string notes (e.g. where prices came from)"
    )


# -- TieringPolicy -------------------------------------------------------------------------------


class Selector(PolicyModel):
    """Which objects a policy governs; every condition given must hold, an empty selector matches all."""

    tenants: tuple[str, ...] = Field(default=(), description="Tenant ids (exact); empty means every tenant")
    namespaces: tuple[str, ...] = Field(
        default=(), description="Namespace globs such as 'results-*'; empty means every namespace"
    )
    key_prefix: str | None = Field(default=None, description="Keys starting with this prefix")
    tags: dict[str, str] = Field(
        default_factory=dict, description="Tags that must all be present with these values"
    )
    min_size: Size | None = Field(default=None, description="Objects at least this large (inclusive)")
    max_size: Size | None = Field(default=None, description="Objects at most this large (inclusive)")
    content_types: tuple[str, ...] = Field(
        default=(), description="Content-type globs such as 'text/*' or 'application/json'"
    )
    classifications: tuple[str, ...] = Field(
        default=(), description="Data classifications, e.g. pii, internal"
    )
    scopes: tuple[Scope, ...] = Field(
        default=(),
        description=(
            "Object scopes: step | execution | workflow | permanent. For step, execution and workflow "
            "objects the idle/age clock starts when their execution finishes"
        ),
    )
    versions: Literal["any", "current", "noncurrent"] = Field(
        default="any",
        description=(
            "Object versions: current (the newest of its key), noncurrent (superseded; the age clock "
            "starts when the newer version was written) or any"
        ),
    )
    newer_noncurrent_versions: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description=(
            "With versions: noncurrent, only versions with at least this many newer noncurrent versions "
            "of the same key: the newest N noncurrent versions are left out (S3's NewerNoncurrentVersions)"
        ),
    )


class TierRule(PolicyModel):
    """One step of the tier ladder: objects live in ``tier`` until a demotion threshold is crossed."""

    name: Name | None = Field(default=None, description="Shown in explain output; defaults to rules[i]")
    tier: Tier = Field(description="hot | warm | cold | archive; rules go from hotter to colder")
    promote_above: Rate | None = Field(
        default=None,
        description=(
            "Objects in a colder tier whose decayed access rate reaches this come back up to this tier"
        ),
    )
    demote_below: Rate | None = Field(
        default=None, description="Objects whose decayed access rate falls below this leave for a colder tier"
    )
    demote_after: Duration | None = Field(
        default=None, description="Objects not read for this long leave for a colder tier"
    )
    max_age: Duration | None = Field(
        default=None,
        description=(
            "Objects older than this leave for a colder tier and never come back (like S3 Transitions.Days)"
        ),
    )
    demote_at: Instant | None = Field(
        default=None,
        description="From this date every object leaves for a colder tier (like S3 Transitions.Date)",
    )
    min_residency: Duration | None = Field(
        default=None, description="Overrides spec.minResidency for objects whose home is this tier"
    )

    def label(self, index: int) -> str:
        return self.name or f"rules[{index}]"


class TieringSpec(PolicyModel):
    priority: int = Field(
        default=0, ge=0, le=1_000_000, description="Higher wins where several policies select an object"
    )
    selector: Selector = Field(default_factory=Selector, description="Which objects this policy governs")
    rules: tuple[TierRule, ...] = Field(
        default=(),
        description="Tier ladder from hottest to coldest; new objects belong to the first rule's tier",
    )
    min_residency: Duration = Field(
        default=0.0, description="No move before an object has been in its tier this long (hysteresis)"
    )
    restore_on_access: bool = Field(
        default=True,
        description="A read of an object in a colder tier brings it back up to the tier its activity earns",
    )
    access_half_life: Duration = Field(
        default=3600.0, description="Half-life of the decayed access rate (used by the access tracker)"
    )
    archive_after: Duration | None = Field(default=None, description="Move to archive at this age")
    archive_at: Instant | None = Field(default=None, description="Move to archive from this date")
    expire_after: Duration | None = Field(default=None, description="Expire (delete) at this age")
    expire_at: Instant | None = Field(default=None, description="Expire (delete) from this date")
    legal_hold: bool = Field(
        default=False, description="Objects are never expired or deleted while this is true"
    )


class TieringPolicy(PolicyModel):
    """Where a set of objects lives over its life, and when it expires."""

    api_version: Literal["liquid/v1"] = Field(description="Always liquid/v1")
    kind: Literal["TieringPolicy"]
    metadata: Metadata
    spec: TieringSpec

    @property
    def name(self) -> str:
        return self.metadata.name


# -- Budget --------------------------------------------------------------------------------------


class TierLimit(PolicyModel):
    max_bytes: Size | None = Field(default=None, description="Most bytes this tier may hold")
    max_monthly_cost: Money | None = Field(default=None, description="Most this tier may cost per month")


class BudgetTiers(PolicyModel):
    hot: TierLimit | None = None
    warm: TierLimit | None = None
    cold: TierLimit | None = None
    archive: TierLimit | None = None

    def items(self) -> list[tuple[str, TierLimit]]:
        return [(t, limit) for t in TIERS if (limit := getattr(self, t)) is not None]


class BudgetSpec(PolicyModel):
    tenant: str | None = Field(default=None, min_length=1, description="Tenant id; omit for a global budget")
    namespace: str | None = Field(
        default=None,
        min_length=1,
        description="With tenant: cap only that tenant's objects in this namespace (tiers limits only)",
    )
    max_bytes: Size | None = Field(default=None, description="Most bytes in total (each object counted once)")
    max_monthly_cost: Money | None = Field(
        default=None, description="Most all tiers together may cost per month"
    )
    max_monthly_retrieval_cost: Money | None = Field(
        default=None,
        description="Most that reads out of cold and archive (retrieval and request fees) may cost in a"
        " calendar month (UTC); once reached, restores wait in the move queue until the month ends",
    )
    tiers: BudgetTiers = Field(default_factory=BudgetTiers, description="Limits per tier")


class Budget(PolicyModel):
    """Caps on bytes and monthly cost, globally or for one tenant."""

    api_version: Literal["liquid/v1"] = Field(description="Always liquid/v1")
    kind: Literal["Budget"]
    metadata: Metadata
    spec: BudgetSpec

    @property
    def name(self) -> str:
        return self.metadata.name


# -- CostModel -----------------------------------------------------------------------------------


class TierPrice(PolicyModel):
    storage_per_gb_month: Money = Field(alias="storagePerGBMonth", description="Storage price per GiB-month")
    reads_per_1k: Money = Field(default=0.0, alias="readsPer1k", description="Price per 1,000 reads")
    writes_per_1k: Money = Field(default=0.0, alias="writesPer1k", description="Price per 1,000 writes")
    retrieval_per_gb: Money = Field(
        default=0.0, alias="retrievalPerGB", description="Price per GiB read back"
    )
    min_storage_duration: Duration = Field(
        default=0.0, description="Objects removed earlier are billed as if stored this long"
    )


class CostTiers(PolicyModel):
    hot: TierPrice | None = None
    warm: TierPrice | None = None
    cold: TierPrice | None = None
    archive: TierPrice | None = None

    def items(self) -> list[tuple[str, TierPrice]]:
        return [(t, price) for t in TIERS if (price := getattr(self, t)) is not None]


class CostModelSpec(PolicyModel):
    tenant: str | None = Field(
        default=None, min_length=1, description="Tenant id; omit for the default model"
    )
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. USD")
    source: str | None = Field(default=None, description="Where the prices come from, and when")
    tiers: CostTiers = Field(description="Prices per tier")


class CostModel(PolicyModel):
    """What each tier costs, to project plans and check budgets."""

    api_version: Literal["liquid/v1"] = Field(description="Always liquid/v1")
    kind: Literal["CostModel"]
    metadata: Metadata
    spec: CostModelSpec

    @property
    def name(self) -> str:
        return self.metadata.name


PolicyDocument: TypeAlias = TieringPolicy | Budget | CostModel
DOCUMENT_MODELS: dict[str, type[TieringPolicy] | type[Budget] | type[CostModel]] = {
    "TieringPolicy": TieringPolicy,
    "Budget": Budget,
    "CostModel": CostModel,
}


# -- the loaded set ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where a document was defined, and the line:column of each of its fields."""

    file: str
    line: int
    column: int
    marks: Mapping[tuple[str | int, ...], tuple[int, int]] = field(default_factory=dict, repr=False)

    def locate(self, path: tuple[str | int, ...]) -> tuple[int, int]:
        """Line and column of ``path`` or of its nearest present ancestor."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.marks:
                return self.marks[path[:end]]
        return self.line, self.column


@dataclass(frozen=True)
class PolicySet:
    """Validated policies: tiering policies highest priority first, budgets, cost models, findings.

    ``notes`` say how overlapping selectors are resolved; ``warnings`` are things that
    validate but are probably wrong (found without catalog facts; see
    :func:`liquid.policy.checks.budget_warnings` for the checks that need them).
    """

    tiering: tuple[TieringPolicy, ...] = ()
    budgets: tuple[Budget, ...] = ()
    cost_models: tuple[CostModel, ...] = ()
    sources: Mapping[tuple[str, str], Source] = field(default_factory=dict, repr=False)
    notes: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()

    def __repr__(self) -> str:
        return (
            f"PolicySet(tiering={[p.name for p in self.tiering]}, budgets={[b.name for b in self.budgets]}, "
            f"cost_models={[c.name for c in self.cost_models]}, notes={len(self.notes)}, "
            f"warnings={len(self.warnings)})"
        )

    def cost_model_for(self, tenant: str | None) -> CostModel | None:
        """The tenant's own CostModel, else the default (tenant-less) one."""
        default = None
        for model in self.cost_models:
            if model.spec.tenant == tenant and tenant is not None:
                return model
            if model.spec.tenant is None:
                default = model
        return default

    def budgets_for(self, tenant: str) -> tuple[Budget, ...]:
        """The global budget (if any) and the tenant's own (if any)."""
        return tuple(b for b in self.budgets if b.spec.tenant in (None, tenant))

    def documents(self) -> list[dict[str, Any]]:
        """Every document as a plain dict in YAML form (human units), e.g. to store or print."""
        docs: list[PolicyDocument] = [*self.tiering, *self.budgets, *self.cost_models]
        return [d.model_dump(mode="json", by_alias=True, exclude_defaults=True) for d in docs]

    def locate(
        self, kind: str, name: str, path: tuple[str | int, ...] = ()
    ) -> tuple[str, int | None, int | None]:
        """File, line and column of a field of a loaded document."""
        source = self.sources.get((kind, name))
        if source is None:
            return "<policies>", None, None
        line, column = source.locate(path)
        return source.file, line, column
