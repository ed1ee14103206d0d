"""Evaluation: for one object, the tier it should be in now, what to do, and why.

A pure function of the policies, the object's facts and an injected ``now``; it never
reads a clock, so tests, the planner and ``explain`` all get the same answer for the
same inputs.

How one TieringPolicy places an object (the first, highest-priority policy whose
selector matches decides):

1. **Clock.** Age and idle time count from creation; for ``step``/``execution``/
   ``workflow`` objects from the moment their execution finished (until then nothing
   moves or expires); for a ``versions: noncurrent`` policy from the moment a newer
   version was written. Idle time counts from the last read or the clock start,
   whichever is later.
2. **Expiry.** ``expireAfter`` (age) or ``expireAt`` (date) → ``expire``; if the
   object or the policy is under legal hold the action is ``hold`` instead, and
   ``tier`` still says where the object should live.
3. **Archive.** ``archiveAfter`` / ``archiveAt`` → ``archive``, whatever the activity.
4. **Ladder.** Starting at the first rule, an object falls to the next rule's tier
   while the current rule's ``maxAge``, ``demoteAt``, ``demoteAfter`` (idle) or
   ``demoteBelow`` (decayed reads/hour) is crossed. An object already colder than
   that tier only comes back up to a rule whose ``promoteAbove`` its rate reaches, or,
   for rules without ``promoteAbove``, when ``restoreOnAccess`` is on and it was read
   since it moved. Age limits (``maxAge``, ``demoteAt``, archive) are never undone.
5. **Hysteresis.** No move before ``minResidency`` (the home tier's rule's, else the
   spec's) has passed since the object's last move.

``hot`` is a cache over a durable home (see DESIGN.md): a decision for ``hot`` asks
the planner for a hot copy; pass ``home_tier="hot"`` when a current hot copy exists.

The planner evaluates every object of the catalog, so the policy side is worked out
once: each selector becomes a test function and each policy a ``_Ladder`` of plain
values, both cached by identity and freed with the policy set; and a Decision puts
its reason into words only when someone reads it.
"""

from __future__ import annotations

import fnmatch
import math
import re
import weakref
from collections.abc import Callable, Mapping
from dataclasses import FrozenInstanceError, dataclass, field, fields
from datetime import UTC, datetime
from functools import partial
from typing import Any, Generic, Literal, TypeVar

from liquid.policy.models import (
    EXECUTION_SCOPES,
    TIERS,
    PolicySet,
    Selector,
    TieringPolicy,
    format_duration,
    format_rate,
)

Action = Literal["keep", "move", "expire", "hold"]
_K = TypeVar("_K")
_V = TypeVar("_V")
_TEMP = {tier: i for i, tier in enumerate(TIERS)}  # bigger is colder
# A datetime past year 9999 cannot be built; such a change is "never" for practical purposes.
_MAX_TIMESTAMP = datetime(9999, 1, 1, tzinfo=UTC).timestamp()
# Instants a reason prints safely lie between these (see _printable).
_MIN_PRINTABLE = datetime(1, 1, 2, tzinfo=UTC).timestamp()


@dataclass(frozen=True, kw_only=True, slots=True)
class ObjectFacts:
    """What evaluation knows about one object version. All datetimes must be timezone-aware.

    ``access_score`` is the decayed read rate in reads per hour *as of* the ``now``
    passed to :func:`evaluate`. ``home_since`` is the time of the last move (defaults
    to ``created_at``). ``superseded_at`` is when a newer version of the key was
    written (``None`` while this is the current version). ``newer_noncurrent`` is how many
    live versions of the same key are newer than this one and noncurrent themselves (what
    S3's NewerNoncurrentVersions counts; 0 for the current version and the newest noncurrent one).
    """

    tenant: str
    namespace: str
    key: str
    size: int
    created_at: datetime
    home_tier: str
    content_type: str = "application/octet-stream"
    tags: Mapping[str, str] = field(default_factory=dict)
    classification: str | None = None
    last_access_at: datetime | None = None
    access_score: float = 0.0
    hits: int = 0
    home_since: datetime | None = None
    legal_hold: bool = False
    scope: str | None = None
    execution_finished_at: datetime | None = None
    superseded_at: datetime | None = None
    newer_noncurrent: int = 0

    @classmethod
    def of(cls, *values: Any) -> ObjectFacts:
        """Every field, positionally in declaration order: a third cheaper than keywords.

        The planner builds one per object per rebuild. (A frozen dataclass's ``__init__`` sets
        each field through ``object.__setattr__``; the slot descriptors are quicker.)
        """
        if len(values) != len(_FIELDS):
            raise TypeError(f"ObjectFacts.of takes {len(_FIELDS)} values, got {len(values)}")
        facts: ObjectFacts = object.__new__(cls)
        for setter, value in zip(_SETTERS, values, strict=True):
            setter(facts, value)
        return facts

    def with_home(self, home_tier: str) -> ObjectFacts:
        """The same facts with another home tier (``dataclasses.replace`` at a fraction of its cost)."""
        facts: ObjectFacts = object.__new__(ObjectFacts)
        for name, setter in zip(_FIELDS, _SETTERS, strict=True):
            setter(facts, home_tier if name == "home_tier" else getattr(self, name))
        return facts


_FIELDS = tuple(f.name for f in fields(ObjectFacts))
# Slot descriptors set a field directly, bypassing the frozen __setattr__.
_SETTERS = tuple(getattr(ObjectFacts, name).__set__ for name in _FIELDS)


class Decision:
    """Where an object should be, what to do about it, and why.

    ``action``: ``keep`` (already right), ``move`` (to ``tier``), ``expire``, or
    ``hold`` (expiry is due but a legal hold blocks it; ``tier`` is still where it
    should live). ``next_change_at`` is when the decision changes if nothing else
    happens (no reads, no new policy): ``now`` for a pending move or expiry, ``None``
    when nothing is scheduled.

    An immutable value like a frozen dataclass (equality, hash, repr, pickle), except
    that ``reason`` may be given as a function that builds it: callers read the reason
    of the few objects that change, so evaluation does not format it for every object.
    """

    # One tuple and the reason rather than six slots: a Decision is built for every
    # object evaluated, and two stores are cheaper than six.
    __slots__ = ("_decided", "_reason")
    __match_args__ = ("tier", "action", "policy", "rule", "reason", "next_change_at")

    _decided: tuple[str, Action, str | None, str | None, datetime | None]
    _reason: str | Callable[[], str]

    def __init__(
        self,
        tier: str,
        action: Action,
        policy: str | None,
        rule: str | None,
        reason: str | Callable[[], str],
        next_change_at: datetime | None,
    ) -> None:
        _SET_DECIDED(self, (tier, action, policy, rule, next_change_at))
        _SET_REASON(self, reason)

    @property
    def tier(self) -> str:
        return self._decided[0]

    @property
    def action(self) -> Action:
        return self._decided[1]

    @property
    def policy(self) -> str | None:
        return self._decided[2]

    @property
    def rule(self) -> str | None:
        return self._decided[3]

    @property
    def reason(self) -> str:
        """Why, in words (built on first read when evaluation deferred it)."""
        reason = self._reason
        if not isinstance(reason, str):
            reason = reason()
            _SET_REASON(self, reason)
        return reason

    @property
    def next_change_at(self) -> datetime | None:
        return self._decided[4]

    def _astuple(self) -> tuple[str, Action, str | None, str | None, str, datetime | None]:
        tier, action, policy, rule, next_change_at = self._decided
        return tier, action, policy, rule, self.reason, next_change_at

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._astuple() == other._astuple()

    def __hash__(self) -> int:
        return hash(self._astuple())

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={value!r}" for name, value in zip(self.__match_args__, self._astuple(), strict=True)
        )
        return f"{self.__class__.__qualname__}({fields})"

    def __reduce__(self) -> tuple[type[Decision], tuple[Any, ...]]:
        # Pickled with the reason built: the builder holds the policy and facts, and a
        # string is what the other process needs.
        return self.__class__, self._astuple()

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


# The slots' own setters, which the frozen __setattr__ does not stand in front of.
_SET_DECIDED = vars(Decision)["_decided"].__set__
_SET_REASON = vars(Decision)["_reason"].__set__


def _ts(value: datetime, name: str) -> float:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _approx(seconds: float) -> str:
    """A readable elapsed time: ``694800 → '8d'``, ``5400 → '1.5h'``, ``42.3 → '42s'``."""
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= factor:
            return f"{seconds / factor:.1f}".removesuffix(".0") + unit
    return f"{seconds:.0f}s"


def matches(selector: Selector, facts: ObjectFacts) -> bool:
    """True if every condition of ``selector`` holds for the object."""
    return _SELECTOR_TESTS.get(selector)(facts)


def select_policy(policies: PolicySet, facts: ObjectFacts) -> TieringPolicy | None:
    """The highest-priority TieringPolicy whose selector matches (ties broken by name)."""
    for test, policy, _ in _COMPILED.get(policies):
        if test(facts):
            return policy
    return None


def _selector_test(selector: Selector) -> Callable[[ObjectFacts], bool]:
    """``matches`` for one selector, with its globs compiled and its fields read once.

    The test must not refer to ``selector``: it is cached by the selector's identity.
    """
    tenants, key_prefix, tags = selector.tenants, selector.key_prefix, tuple(selector.tags.items())
    min_size, max_size = selector.min_size, selector.max_size
    classifications, scopes = selector.classifications, selector.scopes
    namespace_match = _glob_match(selector.namespaces)
    content_type_match = _glob_match(selector.content_types)
    current, noncurrent = selector.versions == "current", selector.versions == "noncurrent"
    newer = selector.newer_noncurrent_versions

    def test(facts: ObjectFacts) -> bool:
        if tenants and facts.tenant not in tenants:
            return False
        if namespace_match is not None and namespace_match(facts.namespace) is None:
            return False
        if key_prefix and not facts.key.startswith(key_prefix):
            return False
        if tags:
            for k, v in tags:
                if k not in facts.tags or str(facts.tags[k]) != v:
                    return False
        if min_size is not None and facts.size < min_size:
            return False
        if max_size is not None and facts.size > max_size:
            return False
        if content_type_match is not None and content_type_match(facts.content_type) is None:
            return False
        if classifications and facts.classification not in classifications:
            return False
        if scopes and facts.scope not in scopes:
            return False
        if current and facts.superseded_at is not None:
            return False
        if newer is not None and facts.newer_noncurrent < newer:
            return False
        return not (noncurrent and facts.superseded_at is None)

    return test


def _glob_match(globs: tuple[str, ...]) -> Callable[[str], re.Match[str] | None] | None:
    """One regex for "any of these globs matches" (``fnmatch.fnmatchcase``'s own translation)."""
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)).match


class _ByIdentity(Generic[_K, _V]):
    """Values computed once per live object and dropped when it is collected.

    Keyed by identity because policy models hold dicts and cannot be hashed; the entry
    goes when its key object does, so a reloaded policy set neither stays in memory nor
    lends its compiled form to a new object that happens to get the same id. Values must
    not refer to their key object, or it would never be collected. Two threads that miss
    at once both build the value; either result is the same, and the spare is dropped.
    """

    def __init__(self, build: Callable[[_K], _V]) -> None:
        self._build = build
        self._values: dict[int, _V] = {}

    def get(self, key: _K) -> _V:
        value = self._values.get(id(key))
        if value is None:
            value = self._values[id(key)] = self._build(key)
            weakref.finalize(key, self._values.pop, id(key), None)
        return value


_SELECTOR_TESTS: _ByIdentity[Selector, Callable[[ObjectFacts], bool]] = _ByIdentity(_selector_test)


def evaluate(
    policies: PolicySet, facts: ObjectFacts, now: datetime, *, with_next_change: bool = True
) -> Decision:
    """Decide where one object should be at ``now``.

    Args:
        policies: the loaded policy set.
        facts: the object.
        now: the evaluation time (timezone-aware); evaluation never reads a clock.
        with_next_change: compute ``next_change_at`` (a few extra evaluations); a
            planner that only needs the action may skip it.

    Raises:
        ValueError: a naive datetime, or a ``home_tier`` that is not a tier.
    """
    for test, _, ladder in _COMPILED.get(policies):
        if test(facts):
            return _decide(ladder, facts, now, with_next_change)
    _ts(now, "now")
    return Decision(facts.home_tier, "keep", None, None, "no TieringPolicy selects this object", None)


def evaluate_policy(
    policy: TieringPolicy, facts: ObjectFacts, now: datetime, *, with_next_change: bool = True
) -> Decision:
    """Like :func:`evaluate`, for a policy already selected (explain, tests)."""
    return _decide(_LADDERS.get(policy), facts, now, with_next_change)


def _decide(ladder: _Ladder, facts: ObjectFacts, now: datetime, with_next_change: bool) -> Decision:
    if facts.home_tier not in _TEMP:
        raise ValueError(f"home_tier must be one of {', '.join(TIERS)}, got {facts.home_tier!r}")
    t = _ts(now, "now")
    times = _Times.of(ladder, facts)
    tier, action, rule, _ = _place(ladder, facts, times, t, facts.access_score, explain=False)
    next_at: datetime | None = None
    if action == "move" or action == "expire":
        next_at = now
    elif with_next_change and times.start is not None:
        next_at = _next_change(ladder, facts, times, t, tier, action)
    return Decision(tier, action, ladder.name, rule, partial(_reason, ladder, facts, now), next_at)


def _reason(ladder: _Ladder, facts: ObjectFacts, now: datetime) -> str:
    """The reason for a decision, by placing the object again with the words switched on."""
    times = _Times.of(ladder, facts)
    return _place(ladder, facts, times, now.timestamp(), facts.access_score, explain=True)[3]


@dataclass(frozen=True, slots=True)
class _Ladder:
    """A TieringPolicy with what evaluation derives from it worked out once.

    Its rules as plain tuples (reading a pydantic model's fields goes through its
    ``__getattr__`` hook), the timestamps of its dates, the residency and the resting
    rule for each home tier, and the thresholds the next-change search adds to the
    object's times. Cached by the policy's identity, so it keeps only the policy's
    parts, never the policy itself.
    """

    name: str
    #: Per rule: its tier, label, temperature (bigger is colder), promoteAbove, and
    #: (maxAge, demoteAt as a timestamp, demoteAfter, demoteBelow).
    tiers: tuple[str, ...]
    labels: tuple[str, ...]
    temps: tuple[int, ...]
    promote_above: tuple[float | None, ...]
    demotions: tuple[tuple[float | None, float | None, float | None, float | None], ...]
    noncurrent: bool
    legal_hold: bool
    restore_on_access: bool
    half_life: float
    archive_after: float | None
    archive_at: float | None
    expire_after: float | None
    expire_at: float | None
    #: Per home tier: the minResidency that holds it there, and the label of its rule.
    residency: Mapping[str, float]
    at_home: Mapping[str, str | None]
    #: Next-change thresholds: durations after one of the object's times (0: the clock
    #: start, 1: the last read or the start, 2: the last move), fixed instants, and the
    #: demoteBelow rates the decaying access rate will cross.
    thresholds: tuple[tuple[int, float], ...]
    instants: tuple[float, ...]
    rates: tuple[float, ...]

    @classmethod
    def of(cls, policy: TieringPolicy) -> _Ladder:
        spec = policy.spec
        rules = spec.rules
        tiers = tuple(r.tier for r in rules)
        labels = tuple(r.label(i) for i, r in enumerate(rules))
        demote_at = tuple(None if r.demote_at is None else r.demote_at.timestamp() for r in rules)
        archive_at = None if spec.archive_at is None else spec.archive_at.timestamp()
        expire_at = None if spec.expire_at is None else spec.expire_at.timestamp()
        residency, at_home = {}, {}
        for home in TIERS:
            own = [r.min_residency for r in rules if r.tier == home and r.min_residency is not None]
            residency[home] = own[0] if own else spec.min_residency
            at_home[home] = labels[tiers.index(home)] if home in tiers else None
        after_start = [*(r.max_age for r in rules), spec.archive_after, spec.expire_after]
        after_last_ref = [r.demote_after for r in rules]
        after_move = [*(r.min_residency for r in rules), spec.min_residency]
        thresholds = [
            (base, after)
            for base, afters in enumerate((after_start, after_last_ref, after_move))
            for after in afters
            if after is not None
        ]
        rates = [r.demote_below for r in rules if r.demote_below is not None and r.demote_below > 0]
        return cls(
            name=policy.name,
            tiers=tiers,
            labels=labels,
            temps=tuple(_TEMP[tier] for tier in tiers),
            promote_above=tuple(r.promote_above for r in rules),
            demotions=tuple(
                (r.max_age, at, r.demote_after, r.demote_below)
                for r, at in zip(rules, demote_at, strict=True)
            ),
            noncurrent=spec.selector.versions == "noncurrent",
            legal_hold=spec.legal_hold,
            restore_on_access=spec.restore_on_access,
            half_life=spec.access_half_life,
            archive_after=spec.archive_after,
            archive_at=archive_at,
            expire_after=spec.expire_after,
            expire_at=expire_at,
            residency=residency,
            at_home=at_home,
            thresholds=tuple(thresholds),
            instants=tuple(at for at in (*demote_at, archive_at, expire_at) if at is not None),
            # A rate that does not decay never crosses a demoteBelow.
            rates=tuple(rates) if spec.access_half_life > 0 else (),
        )


_LADDERS = _ByIdentity(_Ladder.of)


def _compile(
    policies: PolicySet,
) -> tuple[tuple[Callable[[ObjectFacts], bool], TieringPolicy, _Ladder], ...]:
    """Each policy of a set with its selector's test and its ladder, highest priority first."""
    return tuple((_SELECTOR_TESTS.get(p.spec.selector), p, _LADDERS.get(p)) for p in policies.tiering)


_COMPILED = _ByIdentity(_compile)


# Not frozen: built for every object evaluated, and a frozen dataclass's __init__ costs
# four times a plain one. Nothing assigns to it after construction.
@dataclass(slots=True)
class _Times:
    """The object's times as epoch seconds; ``start`` is None while its clock has not started."""

    start: float | None
    since: str
    last_ref: float | None
    last_access: float | None
    home_since: float

    @classmethod
    def of(cls, ladder: _Ladder, facts: ObjectFacts) -> _Times:
        created = _ts(facts.created_at, "created_at")
        start: float | None
        if ladder.noncurrent and facts.superseded_at is not None:
            start, since = _ts(facts.superseded_at, "superseded_at"), "a newer version was written"
        elif facts.scope in EXECUTION_SCOPES:
            finished = facts.execution_finished_at
            start = _ts(finished, "execution_finished_at") if finished is not None else None
            since = "the execution finished"
        else:
            start, since = created, "created"
        last_access_at, home_since_at = facts.last_access_at, facts.home_since
        last_access = _ts(last_access_at, "last_access_at") if last_access_at else None
        last_ref = None if start is None else max(last_access or start, start)
        home_since = _ts(home_since_at, "home_since") if home_since_at else created
        return cls(start, since, last_ref, last_access, home_since)


# Reasons are only built for decisions someone reads (``explain=True``); without them,
# placing an object is a few comparisons, which is what the next-change search repeats.
# The one part of a reason that can fail, printing an instant past year 9999, is checked
# either way, so a decision fails where it always did rather than when its reason is read.


def _printable(ts: float) -> None:
    if not _MIN_PRINTABLE < ts < _MAX_TIMESTAMP:
        _iso(ts)


def _demote_cause(
    ladder: _Ladder, d: int, age: float, idle: float, score: float, t: float, explain: bool
) -> str | None:
    """Why rule ``d`` lets an object fall to the next one ("" unless explaining), or None."""
    max_age, demote_at, demote_after, demote_below = ladder.demotions[d]
    if max_age is not None and age >= max_age:
        return f"age {_approx(age)} ≥ maxAge {format_duration(max_age)}" if explain else ""
    if demote_at is not None and t >= demote_at:
        _printable(demote_at)
        return f"demoteAt {_iso(demote_at)} has passed" if explain else ""
    if demote_after is not None and idle >= demote_after:
        return f"idle {_approx(idle)} ≥ demoteAfter {format_duration(demote_after)}" if explain else ""
    if demote_below is not None and score < demote_below:
        if not explain:
            return ""
        return f"access rate {format_rate(round(score, 3))} < demoteBelow {format_rate(demote_below)}"
    return None


def _ladder(
    ladder: _Ladder, facts: ObjectFacts, times: _Times, t: float, score: float, explain: bool
) -> tuple[str, str | None, str]:
    """(tier, rule, reason) from the ladder, archive and promotion; before hysteresis."""
    assert times.start is not None and times.last_ref is not None
    age, idle = t - times.start, t - times.last_ref
    home = facts.home_tier
    if ladder.archive_after is not None and age >= ladder.archive_after:
        if not explain:
            return "archive", "archiveAfter", ""
        return (
            "archive",
            "archiveAfter",
            (f"{_approx(age)} since {times.since} ≥ archiveAfter {format_duration(ladder.archive_after)}"),
        )
    if ladder.archive_at is not None and t >= ladder.archive_at:
        _printable(ladder.archive_at)
        return "archive", "archiveAt", f"archiveAt {_iso(ladder.archive_at)} has passed" if explain else ""
    tiers, labels, temps = ladder.tiers, ladder.labels, ladder.temps
    if not tiers:
        return home, None, f"no tiering rules: stays in {home}" if explain else ""
    # Fall down the ladder while the current rule's thresholds are crossed. Promotion
    # below never goes above this rule, so age limits (maxAge, demoteAt) are never undone.
    d, why = 0, ""
    while d < len(tiers) - 1:
        cause = _demote_cause(ladder, d, age, idle, score, t, explain)
        if cause is None:
            break
        if explain:
            why = f"{labels[d]} ({tiers[d]}): {cause}"
        d += 1
    target, home_temp = tiers[d], _TEMP[home]
    if temps[d] > home_temp:
        if d == 0:
            return target, labels[0], f"{labels[0]} places objects in {target}" if explain else ""
        return target, labels[d - 1], f"demoted by {why}" if explain else ""
    if temps[d] == home_temp:
        if not explain:
            return home, labels[d], ""
        return home, labels[d], f"{labels[d]} keeps it in {home}" + (f" (after {why})" if why else "")
    # The object is colder than its activity allows: promote only on evidence of use.
    refusals = []
    for j in range(d, len(tiers)):
        if temps[j] >= home_temp:
            break
        promote_above = ladder.promote_above[j]
        if promote_above is not None:
            if score >= promote_above:
                if not explain:
                    return tiers[j], labels[j], ""
                return (
                    tiers[j],
                    labels[j],
                    f"access rate {format_rate(round(score, 3))} ≥ promoteAbove {format_rate(promote_above)}",
                )
            if explain:
                refusals.append(
                    f"access rate {format_rate(round(score, 3))} < promoteAbove {format_rate(promote_above)} "
                    f"of {labels[j]}"
                )
        elif (
            ladder.restore_on_access
            and times.last_access is not None
            and times.last_access > times.home_since
        ):
            _printable(times.last_access)
            if not explain:
                return tiers[j], labels[j], ""
            return tiers[j], labels[j], f"read at {_iso(times.last_access)} while in {home} (restoreOnAccess)"
        elif explain:
            refusals.append(
                f"not read since it moved to {home}" if ladder.restore_on_access else "restoreOnAccess is off"
            )
    at_home = ladder.at_home[home]
    if not explain:
        return home, at_home, ""
    return home, at_home, f"stays in {home}: " + ("; ".join(refusals) or "no rule brings it back")


def _place(
    ladder: _Ladder, facts: ObjectFacts, times: _Times, t: float, score: float, explain: bool
) -> tuple[str, Action, str | None, str]:
    """(tier, action, rule, reason); the reason is "" unless ``explain``."""
    home = facts.home_tier
    if times.start is None:
        if not explain:
            return home, "keep", None, ""
        return (
            home,
            "keep",
            None,
            f"scope {facts.scope}: the lifecycle clock starts when the execution finishes",
        )
    age = t - times.start
    held = facts.legal_hold or ladder.legal_hold
    expiry: tuple[str, str] | None = None
    if ladder.expire_after is not None and age >= ladder.expire_after:
        expiry = (
            "expireAfter",
            (f"{_approx(age)} since {times.since} ≥ expireAfter {format_duration(ladder.expire_after)}")
            if explain
            else "",
        )
    elif ladder.expire_at is not None and t >= ladder.expire_at:
        _printable(ladder.expire_at)
        expiry = "expireAt", f"expireAt {_iso(ladder.expire_at)} has passed" if explain else ""
    if expiry is not None and not held:
        return home, "expire", expiry[0], expiry[1]
    tier, rule, reason = _ladder(ladder, facts, times, t, score, explain)
    if tier != home:
        residency = ladder.residency[home]
        until = times.home_since + residency
        if t < until:
            _printable(until)
            if explain:
                reason = (
                    f"would move to {tier} ({reason}), but minResidency {format_duration(residency)} keeps "
                    f"it in {home} until {_iso(until)}"
                )
            tier, rule = home, "minResidency"
    if expiry is not None:
        if not explain:
            return tier, "hold", "legalHold", ""
        whose = "the object's legal hold" if facts.legal_hold else "the policy's legalHold"
        return tier, "hold", "legalHold", f"{whose} blocks expiry ({expiry[1]}); {reason}"
    return tier, ("keep" if tier == home else "move"), rule, reason


def _next_change(
    ladder: _Ladder, facts: ObjectFacts, times: _Times, now: float, tier: str, action: Action
) -> datetime | None:
    """The first future threshold at which the decision differs, assuming no reads and no moves."""
    assert times.start is not None and times.last_ref is not None
    # A list, not a set: a threshold twice is probed twice, to the same result.
    bases = (times.start, times.last_ref, times.home_since)
    future = []
    for base, after in ladder.thresholds:
        when = bases[base] + after
        if now < when < _MAX_TIMESTAMP:
            future.append(when)
    for when in ladder.instants:
        if now < when < _MAX_TIMESTAMP:
            future.append(when)
    score = facts.access_score
    for below in ladder.rates:
        if score >= below:
            when = now + ladder.half_life * math.log2(score / below)
            if now < when < _MAX_TIMESTAMP:
                future.append(when)
    future.sort()
    for when in future:
        # Thresholds are inclusive and float arithmetic is not exact: look just past each one.
        probe = when + 1e-3
        decayed = _decayed(score, probe - now, ladder.half_life)
        later_tier, later_action, _, _ = _place(ladder, facts, times, probe, decayed, explain=False)
        if later_tier != tier or later_action != action:
            return datetime.fromtimestamp(when, UTC)
    return None


def _decayed(score: float, seconds: float, half_life: float) -> float:
    if half_life <= 0:
        return 0.0
    return float(score * 0.5 ** (seconds / half_life))
