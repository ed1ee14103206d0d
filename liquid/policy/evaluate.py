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
"""

from __future__ import annotations

import fnmatch
import math
import re
import weakref
from collections.abc import Callable, Mapping
from dataclasses import FrozenInstanceError, dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Generic, Literal, TypeVar

from liquid.policy.models import (
    EXECUTION_SCOPES,
    TIERS,
    PolicySet,
    Selector,
    TieringPolicy,
    TieringSpec,
    TierRule,
    format_duration,
    format_rate,
)

Action = Literal["keep", "move", "expire", "hold"]
_K = TypeVar("_K")
_V = TypeVar("_V")
_TEMP = {tier: i for i, tier in enumerate(TIERS)}  # bigger is colder
# A datetime past year 9999 cannot be built; such a change is "never" for practical purposes.
_MAX_TIMESTAMP = datetime(9999, 1, 1, tzinfo=UTC).timestamp()
_MIN_PRINTABLE = datetime(1, 1, 2, tzinfo=UTC).timestamp()


@dataclass(frozen=True, kw_only=True, slots=True)
class ObjectFacts:
    """What evaluation knows about one object version. All datetimes must be timezone-aware.

    ``access_score`` is the decayed read rate in reads per hour *as of* the ``now``
    passed to :func:`evaluate`. ``home_since`` is the time of the last move (defaults
    to ``created_at``). ``superseded_at`` is when a newer version of the key was
    written (``None`` while this is the current version).
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
    __slots__ = ("_fields", "_reason")
    __match_args__ = ("tier", "action", "policy", "rule", "reason", "next_change_at")

    _fields: tuple[str, Action, str | None, str | None, datetime | None]
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
        _SET_FIELDS(self, (tier, action, policy, rule, next_change_at))
        _SET_REASON(self, reason)

    @property
    def tier(self) -> str:
        return self._fields[0]

    @property
    def action(self) -> Action:
        return self._fields[1]

    @property
    def policy(self) -> str | None:
        return self._fields[2]

    @property
    def rule(self) -> str | None:
        return self._fields[3]

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
        return self._fields[4]

    def _values(self) -> tuple[str, Action, str | None, str | None, str, datetime | None]:
        tier, action, policy, rule, next_change_at = self._fields
        return tier, action, policy, rule, self.reason, next_change_at

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={value!r}" for name, value in zip(self.__match_args__, self._values(), strict=True)
        )
        return f"{self.__class__.__qualname__}({fields})"

    def __reduce__(self) -> tuple[type[Decision], tuple[Any, ...]]:
        # Pickled with the reason built: the builder holds the policy and facts, and a
        # string is what the other process needs.
        return self.__class__, self._values()

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


# The slots' own setters, which the frozen __setattr__ does not stand in front of.
_SET_FIELDS = vars(Decision)["_fields"].__set__
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
    for test, policy in _POLICY_TESTS.get(policies):
        if test(facts):
            return policy
    return None


def _selector_test(selector: Selector) -> Callable[[ObjectFacts], bool]:
    """``matches`` for one selector, with its globs compiled and its fields read once.

    The test must not refer to ``selector``: it is cached by the selector's identity.
    """
    tenants, key_prefix, classifications, scopes = (
        selector.tenants,
        selector.key_prefix,
        selector.classifications,
        selector.scopes,
    )
    namespace_match, content_type_match = (
        _glob_match(selector.namespaces),
        _glob_match(selector.content_types),
    )
    tags = tuple(selector.tags.items())
    min_size, max_size, versions = selector.min_size, selector.max_size, selector.versions

    def test(facts: ObjectFacts) -> bool:
        if tenants and facts.tenant not in tenants:
            return False
        if namespace_match is not None and namespace_match(facts.namespace) is None:
            return False
        if key_prefix and not facts.key.startswith(key_prefix):
            return False
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
        if versions == "current" and facts.superseded_at is not None:
            return False
        return not (versions == "noncurrent" and facts.superseded_at is None)

    return test


def _glob_match(globs: tuple[str, ...]) -> Callable[[str], re.Match[str] | None] | None:
    """One regex for "any of these globs matches" (``fnmatch.fnmatchcase``'s own translation)."""
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)).match


def _policy_tests(policies: PolicySet) -> tuple[tuple[Callable[[ObjectFacts], bool], TieringPolicy], ...]:
    return tuple((_SELECTOR_TESTS.get(p.spec.selector), p) for p in policies.tiering)


class _ByIdentity(Generic[_K, _V]):
    """Values computed once per live object and dropped when it is collected.

    Keyed by identity because policy models hold dicts and cannot be hashed; the entry
    goes when its key object does, so a reloaded policy set neither stays in memory nor
    lends its compiled form to a new object that happens to get the same id. Values must
    not refer to their key object, or it would never be collected.
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
_POLICY_TESTS = _ByIdentity(_policy_tests)


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
    policy = select_policy(policies, facts)
    if policy is None:
        _ts(now, "now")
        return Decision(facts.home_tier, "keep", None, None, "no TieringPolicy selects this object", None)
    return evaluate_policy(policy, facts, now, with_next_change=with_next_change)


def evaluate_policy(
    policy: TieringPolicy, facts: ObjectFacts, now: datetime, *, with_next_change: bool = True
) -> Decision:
    """Like :func:`evaluate`, for a policy already selected (explain, tests)."""
    if facts.home_tier not in _TEMP:
        raise ValueError(f"home_tier must be one of {', '.join(TIERS)}, got {facts.home_tier!r}")
    t = _ts(now, "now")
    spec = policy.spec
    times = _Times.of(spec, facts)
    tier, action, rule, _ = _place(spec, facts, times, t, facts.access_score, explain=False)
    next_at: datetime | None = None
    if action in ("move", "expire"):
        next_at = now
    elif with_next_change and times.start is not None:
        next_at = _next_change(spec, facts, times, t, (tier, action))
    return Decision(tier, action, policy.name, rule, partial(_reason, spec, facts, now), next_at)


def _reason(spec: TieringSpec, facts: ObjectFacts, now: datetime) -> str:
    """The reason for a decision, by placing the object again with the words switched on."""
    return _place(spec, facts, _Times.of(spec, facts), now.timestamp(), facts.access_score, explain=True)[3]


@dataclass(frozen=True, slots=True)
class _Times:
    """The object's times as epoch seconds; ``start`` is None while its clock has not started."""

    start: float | None
    since: str
    last_ref: float | None
    last_access: float | None
    home_since: float

    @classmethod
    def of(cls, spec: TieringSpec, facts: ObjectFacts) -> _Times:
        created = _ts(facts.created_at, "created_at")
        start: float | None
        if spec.selector.versions == "noncurrent" and facts.superseded_at is not None:
            start, since = _ts(facts.superseded_at, "superseded_at"), "a newer version was written"
        elif facts.scope in EXECUTION_SCOPES:
            finished = facts.execution_finished_at
            start = _ts(finished, "execution_finished_at") if finished is not None else None
            since = "the execution finished"
        else:
            start, since = created, "created"
        last_access = _ts(facts.last_access_at, "last_access_at") if facts.last_access_at else None
        last_ref = None if start is None else max(last_access or start, start)
        home_since = _ts(facts.home_since, "home_since") if facts.home_since else created
        return cls(start, since, last_ref, last_access, home_since)


# Reasons are only built for decisions someone reads (``explain=True``); without them,
# placing an object is a few comparisons, which is what the next-change search repeats.
# The one part of a reason that can fail, printing an instant past year 9999, is checked
# either way, so a decision fails where it always did rather than when its reason is read.


def _printable(ts: float) -> None:
    if not _MIN_PRINTABLE < ts < _MAX_TIMESTAMP:
        _iso(ts)


def _demote_cause(
    rule: TierRule, age: float, idle: float, score: float, t: float, explain: bool
) -> str | None:
    """Why ``rule`` lets an object fall to the next one ("" unless explaining), or None."""
    if rule.max_age is not None and age >= rule.max_age:
        return f"age {_approx(age)} ≥ maxAge {format_duration(rule.max_age)}" if explain else ""
    if rule.demote_at is not None and t >= rule.demote_at.timestamp():
        _printable(rule.demote_at.timestamp())
        return f"demoteAt {_iso(rule.demote_at.timestamp())} has passed" if explain else ""
    if rule.demote_after is not None and idle >= rule.demote_after:
        return f"idle {_approx(idle)} ≥ demoteAfter {format_duration(rule.demote_after)}" if explain else ""
    if rule.demote_below is not None and score < rule.demote_below:
        if not explain:
            return ""
        return f"access rate {format_rate(round(score, 3))} < demoteBelow {format_rate(rule.demote_below)}"
    return None


def _ladder(
    spec: TieringSpec, facts: ObjectFacts, times: _Times, t: float, score: float, explain: bool
) -> tuple[str, str | None, str]:
    """(tier, rule, reason) from the ladder, archive and promotion; before hysteresis."""
    assert times.start is not None and times.last_ref is not None
    age, idle = t - times.start, t - times.last_ref
    home = facts.home_tier
    if spec.archive_after is not None and age >= spec.archive_after:
        if not explain:
            return "archive", "archiveAfter", ""
        return (
            "archive",
            "archiveAfter",
            (f"{_approx(age)} since {times.since} ≥ archiveAfter {format_duration(spec.archive_after)}"),
        )
    if spec.archive_at is not None and t >= spec.archive_at.timestamp():
        _printable(spec.archive_at.timestamp())
        if not explain:
            return "archive", "archiveAt", ""
        return "archive", "archiveAt", f"archiveAt {_iso(spec.archive_at.timestamp())} has passed"
    rules = spec.rules
    if not rules:
        return home, None, f"no tiering rules: stays in {home}" if explain else ""
    # Fall down the ladder while the current rule's thresholds are crossed. Promotion
    # below never goes above this rule, so age limits (maxAge, demoteAt) are never undone.
    d, why = 0, ""
    while d < len(rules) - 1:
        cause = _demote_cause(rules[d], age, idle, score, t, explain)
        if cause is None:
            break
        if explain:
            why = f"{rules[d].label(d)} ({rules[d].tier}): {cause}"
        d += 1
    target = rules[d]
    if _TEMP[target.tier] > _TEMP[home]:
        if d == 0:
            label = target.label(0)
            return target.tier, label, f"{label} places objects in {target.tier}" if explain else ""
        return target.tier, rules[d - 1].label(d - 1), f"demoted by {why}" if explain else ""
    if _TEMP[target.tier] == _TEMP[home]:
        if not explain:
            return home, target.label(d), ""
        return (
            home,
            target.label(d),
            f"{target.label(d)} keeps it in {home}" + (f" (after {why})" if why else ""),
        )
    # The object is colder than its activity allows: promote only on evidence of use.
    refusals = []
    for j in range(d, len(rules)):
        rule = rules[j]
        if _TEMP[rule.tier] >= _TEMP[home]:
            break
        if rule.promote_above is not None:
            if score >= rule.promote_above:
                if not explain:
                    return rule.tier, rule.label(j), ""
                return (
                    rule.tier,
                    rule.label(j),
                    f"access rate {format_rate(round(score, 3))} ≥ promoteAbove "
                    f"{format_rate(rule.promote_above)}",
                )
            if explain:
                refusals.append(
                    f"access rate {format_rate(round(score, 3))} < promoteAbove "
                    f"{format_rate(rule.promote_above)} "
                    f"of {rule.label(j)}"
                )
        elif (
            spec.restore_on_access and times.last_access is not None and times.last_access > times.home_since
        ):
            _printable(times.last_access)
            if not explain:
                return rule.tier, rule.label(j), ""
            return (
                rule.tier,
                rule.label(j),
                f"read at {_iso(times.last_access)} while in {home} (restoreOnAccess)",
            )
        elif explain:
            refusals.append(
                f"not read since it moved to {home}" if spec.restore_on_access else "restoreOnAccess is off"
            )
    at_home = next((rule.label(i) for i, rule in enumerate(rules) if rule.tier == home), None)
    if not explain:
        return home, at_home, ""
    return home, at_home, f"stays in {home}: " + ("; ".join(refusals) or "no rule brings it back")


def _place(
    spec: TieringSpec, facts: ObjectFacts, times: _Times, t: float, score: float, explain: bool
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
    held = facts.legal_hold or spec.legal_hold
    expiry: tuple[str, str] | None = None
    if spec.expire_after is not None and age >= spec.expire_after:
        expiry = (
            "expireAfter",
            (f"{_approx(age)} since {times.since} ≥ expireAfter {format_duration(spec.expire_after)}")
            if explain
            else "",
        )
    elif spec.expire_at is not None and t >= spec.expire_at.timestamp():
        _printable(spec.expire_at.timestamp())
        expiry = "expireAt", f"expireAt {_iso(spec.expire_at.timestamp())} has passed" if explain else ""
    if expiry is not None and not held:
        return home, "expire", expiry[0], expiry[1]
    tier, rule, reason = _ladder(spec, facts, times, t, score, explain)
    if tier != home:
        residency = next(
            (r.min_residency for r in spec.rules if r.tier == home and r.min_residency is not None), None
        )
        residency = spec.min_residency if residency is None else residency
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
    spec: TieringSpec, facts: ObjectFacts, times: _Times, now: float, current: tuple[str, Action]
) -> datetime | None:
    """The first future threshold at which the decision differs, assuming no reads and no moves."""
    assert times.start is not None and times.last_ref is not None
    start, last_ref = times.start, times.last_ref
    candidates: set[float] = set()
    for rule in spec.rules:
        if rule.max_age is not None:
            candidates.add(start + rule.max_age)
        if rule.demote_after is not None:
            candidates.add(last_ref + rule.demote_after)
        if rule.demote_at is not None:
            candidates.add(rule.demote_at.timestamp())
        if rule.min_residency is not None:
            candidates.add(times.home_since + rule.min_residency)
        below, score = rule.demote_below, facts.access_score
        if below is not None and below > 0 and score >= below and spec.access_half_life > 0:
            candidates.add(now + spec.access_half_life * math.log2(score / below))
    for after in (spec.archive_after, spec.expire_after):
        if after is not None:
            candidates.add(start + after)
    for at in (spec.archive_at, spec.expire_at):
        if at is not None:
            candidates.add(at.timestamp())
    candidates.add(times.home_since + spec.min_residency)
    for when in sorted(c for c in candidates if now < c < _MAX_TIMESTAMP):
        # Thresholds are inclusive and float arithmetic is not exact: look just past each one.
        probe = when + 1e-3
        score = _decayed(facts.access_score, probe - now, spec.access_half_life)
        tier, action, _, _ = _place(spec, facts, times, probe, score, explain=False)
        if (tier, action) != current:
            return datetime.fromtimestamp(when, UTC)
    return None


def _decayed(score: float, seconds: float, half_life: float) -> float:
    if half_life <= 0:
        return 0.0
    return float(score * 0.5 ** (seconds / half_life))
