"""Turn an S3 Lifecycle configuration (JSON) into Liquid TieringPolicies that behave like S3.

The input is first read as strictly as S3 reads it (:mod:`liquid.policy.s3lifecycle`:
whatever S3 would reject is an error with its JSON path). Then:

**Mapping.** Objects start in S3 STANDARD, which is ``warm``. Transitions to STANDARD_IA,
ONEZONE_IA or INTELLIGENT_TIERING go to ``cold`` (a ``warm`` rule with ``maxAge``/``demoteAt``,
then a ``cold`` rule); to GLACIER_IR, GLACIER or DEEP_ARCHIVE, to ``archive``
(``archiveAfter``/``archiveAt``). ``Expiration`` → ``expireAfter``/``expireAt``. A rule's filter
becomes the selector (``ObjectSizeGreaterThan N`` → ``minSize N+1``, ``ObjectSizeLessThan N`` →
``maxSize N-1``: S3's bounds are strict, Liquid's inclusive). Imported policies set
``restoreOnAccess: false``: S3 never moves an object back by itself.

**Versions.** ``Expiration``/``Transitions`` act on current versions only
(``versions: current``); ``NoncurrentVersion*`` on noncurrent ones (``versions: noncurrent``,
clock from when the newer version was written, as S3's NoncurrentDays), and
``NewerNoncurrentVersions N`` → ``newerNoncurrentVersions: N`` (the newest N are kept).

**Several matching rules.** S3 applies every matching rule; where actions conflict,
expiration wins over transition and the colder (cheaper) class wins among transitions, and
two expirations: the earlier ([CONFLICTS] in :mod:`~liquid.policy.s3lifecycle`). Liquid
applies one policy per object, so each rule is cut into *units* (one filter, one set of
actions) and every combination of units that some object can match at once becomes one
policy whose selector is the intersection of the filters and whose actions are combined as
S3 combines them: earliest expiry, earliest move to each tier. Priorities (from 101) grow with
the number of units, so for an object the policy of exactly the units it matches wins (every
other combination it matches has fewer units). Combinations whose objects always match a
further unit are left out (the larger one always wins there).

**Transitions of small objects.** S3 by default does not transition objects under 128 KiB
(``TransitionDefaultMinimumObjectSize``; a size filter on the rule overrides it), so those
transitions get ``minSize: 128KiB`` (``varies_by_storage_class``: except to GLACIER and
DEEP_ARCHIVE).

**What is not exact** (a *loss*) fails the import, listing every loss, unless ``lossy=True``:
INTELLIGENT_TIERING (access-based, imported as a plain move to cold), a second transition of
a rule into a tier it already reached (Liquid has one cold and one archive tier), and current
expiration in a versioned bucket (S3 keeps the version as noncurrent behind a delete marker;
Liquid deletes it). What Liquid already does itself or what has nothing to act on is a
*note*: disabled rules, ``ExpiredObjectDeleteMarker`` (no delete markers),
``AbortIncompleteMultipartUpload`` (stores abort failed multipart uploads and ``liquid gc``
deletes unreferenced bytes).

**Scope.** Every policy is limited to ``tenant`` and/or ``namespace``; importing for every
tenant must be asked for with ``all_tenants=True``.

Example::

    >>> result = import_s3_lifecycle({"Rules": [{"ID": "Archive logs", "Status": "Enabled",
    ...     "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 365}}]}, tenant="acme")
    >>> result.documents[0]["spec"]
    {'priority': 101, 'selector': {'tenants': ['acme'], 'keyPrefix': 'logs/', 'versions': 'current'}, \
'restoreOnAccess': False, 'expireAfter': '365d'}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import yaml

from liquid.errors import PolicyError
from liquid.policy.models import API_VERSION, format_duration
from liquid.policy.s3lifecycle import Lifecycle, Rule, Transition, When, parse_lifecycle

COLD_CLASSES = frozenset({"STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING"})
ARCHIVE_CLASSES = frozenset({"GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"})
#: Classes ``varies_by_storage_class`` lets objects under 128 KiB transition to.
SMALL_OBJECT_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
SMALL_OBJECT_LIMIT = 128 * 1024
DAY = 86400
BASE_PRIORITY = 100
#: More policies than this for one configuration is refused: split it instead.
MAX_POLICIES = 500


class S3ImportLoss(PolicyError):
    """Valid S3 that Liquid cannot express exactly; ``losses`` says what, rule by rule."""

    def __init__(self, losses: list[str]) -> None:
        self.losses = losses
        super().__init__(
            f"{len(losses)} part(s) of this configuration would not behave as on S3 "
            "(import with --lossy to accept):\n  " + "\n  ".join(losses),
            field="Rules",
        )


@dataclass
class S3Import:
    """The imported policy documents, what was lost (only with ``lossy``), and notes."""

    documents: list[dict[str, Any]]
    losses: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    scope: str = ""

    def yaml(self, *, source: str = "") -> str:
        """One YAML stream; scope, losses and notes as comments on top."""
        header = ["# Imported from an S3 Lifecycle configuration" + (f" ({source})" if source else "") + "."]
        header.append(f"# scope: {self.scope}")
        header += [f"# LOSS (imported with --lossy): {loss}" for loss in self.losses]
        header += [f"# note: {note}" for note in self.notes]
        body = yaml.safe_dump_all(self.documents, sort_keys=False, explicit_start=True, allow_unicode=True)
        return "\n".join(header) + "\n" + body


def lifecycle_yaml(result: S3Import, *, source: str = "") -> str:
    """``result.yaml(source=...)``."""
    return result.yaml(source=source)


def import_s3_lifecycle(
    config: Mapping[str, Any],
    *,
    tenant: str | None = None,
    namespace: str | None = None,
    all_tenants: bool = False,
    lossy: bool = False,
) -> S3Import:
    """Liquid policy documents that behave like an S3 Lifecycle configuration.

    Args:
        config: the JSON of ``aws s3api get-bucket-lifecycle-configuration``.
        tenant: limit every policy to this tenant.
        namespace: limit every policy to this namespace (the S3 bucket).
        all_tenants: allow neither ``tenant`` nor ``namespace`` (the policies then govern
            matching objects of every tenant).
        lossy: import even what Liquid cannot express exactly, listing it in ``losses``.

    Raises:
        S3LifecycleError: S3 itself would reject the configuration (every problem, with its path).
        S3ImportLoss: it is valid but some of it would not behave as on S3, and not ``lossy``.
        PolicyError: no scope, or overlapping rules that need too many policies.
    """
    if not tenant and not namespace and not all_tenants:
        raise PolicyError(
            "an S3 import needs a scope: a tenant and/or a namespace (the bucket), or all_tenants "
            "to govern matching objects of every tenant",
            field="scope",
        )
    lifecycle = parse_lifecycle(config)
    notes: list[str] = []
    losses: list[str] = []
    units: list[_Unit] = []
    for rule in lifecycle.rules:
        if not rule.enabled:
            notes.append(f"rule {rule.label}: Status is Disabled, so S3 does nothing with it; not imported")
            continue
        units += _units(rule, lifecycle, notes, losses)
    if losses and not lossy:
        raise S3ImportLoss(losses)
    if lifecycle.transition_minimum == "all_storage_classes_128K" and any(u.small_default for u in units):
        notes.append(
            "transitions skip objects under 128 KiB, as S3 does by default "
            "(TransitionDefaultMinimumObjectSize "
            "all_storage_classes_128K; a size filter on the rule overrides it)"
        )
    notes.append(
        "S3 acts at the first midnight UTC after creation + Days; Liquid at creation + Days exactly "
        "(up to a day earlier)"
    )
    scope: dict[str, Any] = {}
    if tenant:
        scope["tenants"] = [tenant]
    if namespace:
        scope["namespaces"] = [namespace]
    documents = _combine(units, scope)
    described = ", ".join(f"{k}={v[0]}" for k, v in scope.items()) or "every tenant and namespace"
    return S3Import(documents, losses if lossy else [], notes, described)


# -- units: one filter, one set of actions ---------------------------------------------------


@dataclass(frozen=True)
class _Unit:
    """What one rule does to the objects of one filter (a rule gives one or more units)."""

    rules: tuple[str, ...]  # labels of the S3 rules whose actions these are
    names: tuple[str, ...]  # their slugs
    versions: str  # current | noncurrent
    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    min_size: int = 0
    max_size: int | None = None
    newer: int = 0  # noncurrent: at least this many newer noncurrent versions
    cold: tuple[When, ...] = ()
    archive: tuple[When, ...] = ()
    expire: tuple[When, ...] = ()
    small_default: bool = False  # min_size comes from S3's 128 KiB transition default

    def conditions(self) -> tuple[Any, ...]:
        return (self.versions, self.prefix, self.tags, self.min_size, self.max_size, self.newer)


def _units(rule: Rule, lifecycle: Lifecycle, notes: list[str], losses: list[str]) -> list[_Unit]:
    flt = rule.filter
    base = _Unit(
        rules=(rule.label,),
        names=(_slug(rule),),
        versions="current",
        prefix=flt.prefix,
        tags=tuple(sorted(flt.tags)),
        min_size=0 if flt.greater_than is None else flt.greater_than + 1,
        max_size=None if flt.less_than is None else flt.less_than - 1,
    )
    units: list[_Unit] = []
    has_noncurrent = bool(rule.noncurrent_transitions or rule.noncurrent_expiration)
    if rule.expiration is not None:
        units.append(replace(base, expire=(rule.expiration,)))
        if has_noncurrent:
            losses.append(
                f"rule {rule.label}: Expiration on a versioned bucket (this rule has noncurrent actions) "
                "makes the current version noncurrent behind a delete marker, so S3 keeps it until "
                "NoncurrentVersionExpiration; Liquid expires (deletes) it at once"
            )
    units += _transition_units(rule, base, rule.transitions, lifecycle, losses)
    nc = replace(base, versions="noncurrent")
    if rule.noncurrent_expiration is not None:
        units.append(
            replace(nc, newer=rule.noncurrent_expiration_newer or 0, expire=(rule.noncurrent_expiration,))
        )
    units += _transition_units(rule, nc, rule.noncurrent_transitions, lifecycle, losses)
    if rule.expired_object_delete_marker:
        notes.append(
            f"rule {rule.label}: ExpiredObjectDeleteMarker: Liquid has no delete markers (a ref names an "
            "immutable version), so there is nothing to remove"
        )
    if rule.abort_multipart_days is not None:
        notes.append(
            f"rule {rule.label}: AbortIncompleteMultipartUpload ({rule.abort_multipart_days} "
            "days): Liquid does "
            "this itself: its stores abort a multipart upload that fails, and liquid gc deletes unreferenced "
            "bytes after the grace period"
        )
    return units


def _transition_units(
    rule: Rule, base: _Unit, transitions: tuple[Transition, ...], lifecycle: Lifecycle, losses: list[str]
) -> list[_Unit]:
    out: list[_Unit] = []
    reached: dict[str, str] = {}
    kind = "Transitions" if base.versions == "current" else "NoncurrentVersionTransitions"
    for t in sorted(transitions, key=lambda t: (t.when.days or 0, t.when.date or datetime.min)):
        tier = "cold" if t.storage_class in COLD_CLASSES else "archive"
        if t.storage_class == "INTELLIGENT_TIERING":
            losses.append(
                f"rule {rule.label}: {kind} to INTELLIGENT_TIERING moves objects by their access pattern; "
                "Liquid would make it a plain move to cold (its promoteAbove/demoteBelow rules do that job)"
            )
        if tier in reached:
            losses.append(
                f"rule {rule.label}: {kind} to {t.storage_class} after {reached[tier]}: both are Liquid's "
                f"{tier} tier, so this second transition would do nothing"
            )
            continue
        reached[tier] = t.storage_class
        unit = replace(
            base,
            newer=t.newer_noncurrent or 0,
            cold=(t.when,) if tier == "cold" else (),
            archive=(t.when,) if tier == "archive" else (),
        )
        small_ok = (
            lifecycle.transition_minimum == "varies_by_storage_class"
            and t.storage_class in SMALL_OBJECT_CLASSES
        )
        if not rule.filter.has_size and not small_ok:
            # S3's TransitionDefaultMinimumObjectSize: no transition of objects under 128 KiB
            # unless the rule has its own size filter ("Custom filters always take precedence").
            unit = replace(unit, min_size=max(unit.min_size, SMALL_OBJECT_LIMIT), small_default=True)
        out.append(unit)
    return out


# -- combinations: what S3 does to an object that several units match -------------------------


def _intersect(a: _Unit, b: _Unit) -> _Unit | None:
    """The unit for objects matching both (actions of both), or None when no object can."""
    if a.versions != b.versions:
        return None
    if a.prefix.startswith(b.prefix):
        prefix = a.prefix
    elif b.prefix.startswith(a.prefix):
        prefix = b.prefix
    else:
        return None
    tags = dict(a.tags)
    for k, v in b.tags:
        if tags.setdefault(k, v) != v:
            return None
    low = max(a.min_size, b.min_size)
    high = (
        b.max_size
        if a.max_size is None
        else a.max_size
        if b.max_size is None
        else min(a.max_size, b.max_size)
    )
    if high is not None and low > high:
        return None
    return _Unit(
        rules=a.rules + tuple(r for r in b.rules if r not in a.rules),
        names=a.names + tuple(n for n in b.names if n not in a.names),
        versions=a.versions,
        prefix=prefix,
        tags=tuple(sorted(tags.items())),
        min_size=low,
        max_size=high,
        newer=max(a.newer, b.newer),
        cold=a.cold + b.cold,
        archive=a.archive + b.archive,
        expire=a.expire + b.expire,
        small_default=a.small_default or b.small_default,
    )


def _implies(combo: _Unit, unit: _Unit) -> bool:
    """Every object ``combo`` selects is also selected by ``unit``."""
    return (
        combo.versions == unit.versions
        and combo.prefix.startswith(unit.prefix)
        and set(unit.tags) <= set(combo.tags)
        and combo.min_size >= unit.min_size
        and (unit.max_size is None or (combo.max_size is not None and combo.max_size <= unit.max_size))
        and combo.newer >= unit.newer
    )


def _combine(units: list[_Unit], scope: dict[str, Any]) -> list[dict[str, Any]]:
    """One policy per combination of units some object matches exactly (see the module docstring)."""
    # Units with the same conditions are one unit with both actions.
    merged: dict[tuple[Any, ...], _Unit] = {}
    for unit in units:
        key = unit.conditions()
        if key in merged:
            m = merged[key]
            merged[key] = replace(
                m,
                rules=m.rules + tuple(r for r in unit.rules if r not in m.rules),
                names=m.names + tuple(n for n in unit.names if n not in m.names),
                cold=m.cold + unit.cold,
                archive=m.archive + unit.archive,
                expire=m.expire + unit.expire,
                small_default=m.small_default or unit.small_default,
            )
        else:
            merged[key] = unit
    base = list(merged.values())
    combos: list[tuple[frozenset[int], _Unit]] = []
    seen: set[frozenset[int]] = set()

    def grow(members: frozenset[int], combo: _Unit, start: int) -> None:
        for j in range(start, len(base)):
            if j in members:
                continue
            joined = _intersect(combo, base[j])
            if joined is None:
                continue
            key = members | {j}
            if key not in seen:
                seen.add(key)
                if len(seen) > MAX_POLICIES * 4:
                    raise PolicyError(
                        f"these rules overlap in more than {MAX_POLICIES * 4} combinations; Liquid "
                        "would need "
                        "one policy for each: import the configuration in parts (e.g. by prefix)",
                        field="Rules",
                    )
                combos.append((key, joined))
                grow(key, joined, j + 1)

    for i, unit in enumerate(base):
        alone = frozenset({i})
        seen.add(alone)
        combos.append((alone, unit))
        grow(alone, unit, i + 1)
    # A combination whose objects all match a further unit never decides: the larger one wins.
    closed = [
        (members, combo)
        for members, combo in combos
        if not any(j not in members and _implies(combo, unit) for j, unit in enumerate(base))
    ]
    if len(closed) > MAX_POLICIES:
        raise PolicyError(
            f"these rules overlap so that Liquid would need {len(closed)} policies (at most {MAX_POLICIES}): "
            "import the configuration in parts (e.g. by prefix)",
            field="Rules",
        )
    names: set[str] = set()
    closed.sort(key=lambda mc: (len(mc[0]), sorted(mc[0])))
    # Distinct priorities growing with the number of units: a larger combination always wins.
    return [_document(combo, rank, scope, names) for rank, (_, combo) in enumerate(closed, start=1)]


def _earliest(whens: tuple[When, ...]) -> tuple[float | None, datetime | None]:
    days = [w.days for w in whens if w.days is not None]
    dates = [w.date for w in whens if w.date is not None]
    return (float(min(days) * DAY) if days else None), (min(dates) if dates else None)


def _document(combo: _Unit, rank: int, scope: dict[str, Any], names: set[str]) -> dict[str, Any]:
    expire_after, expire_at = _earliest(combo.expire)
    archive_after, archive_at = _earliest(combo.archive)
    cold_after, cold_at = _earliest(combo.cold)
    # S3 [CONFLICTS]: "Permanent deletion takes precedence over transition", and the colder class
    # wins among transitions. Evaluation already checks expiry, then archive, then the ladder;
    # dropping what can never happen keeps the policy readable (and free of warnings).
    if expire_after is not None:
        archive_after = None if archive_after is not None and archive_after >= expire_after else archive_after
        cold_after = None if cold_after is not None and cold_after >= expire_after else cold_after
    if archive_after is not None and cold_after is not None and cold_after >= archive_after:
        cold_after = None
    if archive_at is not None and cold_at is not None and cold_at >= archive_at:
        cold_at = None

    selector: dict[str, Any] = dict(scope)
    if combo.prefix:
        selector["keyPrefix"] = combo.prefix
    if combo.tags:
        selector["tags"] = dict(combo.tags)
    if combo.min_size:
        selector["minSize"] = combo.min_size
    if combo.max_size is not None:
        selector["maxSize"] = combo.max_size
    selector["versions"] = combo.versions
    if combo.newer:
        selector["newerNoncurrentVersions"] = combo.newer

    spec: dict[str, Any] = {"priority": BASE_PRIORITY + rank, "selector": selector}
    if cold_after is not None or cold_at is not None:
        if cold_after == 0:
            spec["rules"] = [{"name": "s3-infrequent-access", "tier": "cold"}]
        else:
            warm: dict[str, Any] = {"name": "s3-standard", "tier": "warm"}
            if cold_after is not None:
                warm["maxAge"] = format_duration(cold_after)
            if cold_at is not None:
                warm["demoteAt"] = cold_at.isoformat()
            spec["rules"] = [warm, {"name": "s3-infrequent-access", "tier": "cold"}]
    spec["restoreOnAccess"] = False
    for key, value in (
        ("archiveAfter", archive_after),
        ("archiveAt", archive_at),
        ("expireAfter", expire_after),
        ("expireAt", expire_at),
    ):
        if value is not None:
            spec[key] = format_duration(value) if isinstance(value, float) else value.isoformat()

    name = _unique(
        "-and-".join(combo.names)
        if len(combo.names) <= 3
        else f"{combo.names[0]}-and-{len(combo.names) - 1}-more",
        combo,
        names,
    )
    what = " and ".join(combo.rules)
    rules_word = (
        "rule" if len(combo.rules) == 1 else "rules (an object matching all of them; S3 applies every one)"
    )
    versions = "current versions" if combo.versions == "current" else "noncurrent versions"
    return {
        "apiVersion": API_VERSION,
        "kind": "TieringPolicy",
        "metadata": {
            "name": name,
            "annotations": {"description": f"Imported from S3 Lifecycle {rules_word} {what}, {versions}"},
        },
        "spec": spec,
    }


def _slug(rule: Rule) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", str(rule.id or "").lower()).strip("-")[:40].strip("-")
    if slug:
        return slug
    index = re.sub(r"\D", "", rule.path.rsplit("[", 1)[-1])
    return f"s3-rule-{int(index or 0) + 1}"


def _unique(stem: str, combo: _Unit, names: set[str]) -> str:
    stem = stem[:44].strip("-")
    if combo.versions == "noncurrent":
        stem += "-noncurrent"
    candidate, n = stem, 2
    while candidate in names:
        candidate, n = f"{stem}-{n}", n + 1
    names.add(candidate)
    return candidate
