"""Read an S3 Lifecycle configuration (JSON) as strictly as S3 itself, every error with its JSON path.

:func:`parse_lifecycle` accepts what ``aws s3api get-bucket-lifecycle-configuration`` prints
(``{"Rules": [...], "TransitionDefaultMinimumObjectSize": ...}``, optionally wrapped in
``{"LifecycleConfiguration": ...}``) and rejects what ``PutBucketLifecycleConfiguration``
would reject: unknown or mis-cased keys, a missing or invalid ``Status``, filters that are
not exactly one condition, out-of-range days, misordered transitions, duplicate IDs, and so
on. Each check cites the S3 documentation it follows. Every problem is reported at once,
as ``Rules[0].Filter.Prefx: unknown key; allowed: ...``.

Sources (Amazon S3 User Guide and API Reference):

* [ELEMENTS] "Lifecycle configuration elements" (userguide/intro-lifecycle-rules.html)
* [FILTERS] "Adding filters to Lifecycle rules" (userguide/intro-lifecycle-filters.html)
* [CONFLICTS] "How Amazon S3 handles conflicts in lifecycle configurations"
  (userguide/lifecycle-conflicts.html)
* [TRANSITIONS] "Transitioning objects using Amazon S3 Lifecycle", supported transitions and
  constraints (userguide/lifecycle-transition-general-considerations.html)
* [PUT] API PutBucketLifecycleConfiguration; [RULE] API LifecycleRule; [FILTER] API
  LifecycleRuleFilter; [AND] API LifecycleRuleAndOperator; [EXPIRATION] API
  LifecycleExpiration; [TRANSITION] API Transition; [NCT] API NoncurrentVersionTransition;
  [NCE] API NoncurrentVersionExpiration; [ABORT] API AbortIncompleteMultipartUpload

Example::

    >>> parse_lifecycle({"Rules": [{"Filter": {"Prefx": "a/"}, "Expiration": {"Days": 3}}]})
    Traceback (most recent call last):
    ...
    liquid.policy.s3lifecycle.S3LifecycleError: not a valid S3 Lifecycle configuration (2 problems):
      Rules[0].Status: missing; S3 requires "Enabled" or "Disabled"
      Rules[0].Filter.Prefx: unknown key; allowed: And, ObjectSizeGreaterThan, ObjectSizeLessThan, Prefix, Tag
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from liquid.errors import PolicyError
from liquid.policy.models import to_instant

# [TRANSITION] StorageClass valid values, in the order of S3's transition waterfall
# ([TRANSITIONS]: an object only ever moves to a class further down this list).
STORAGE_CLASSES: tuple[str, ...] = (
    "STANDARD_IA",
    "INTELLIGENT_TIERING",
    "ONEZONE_IA",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
)
#: Classes whose transitions need at least 30 days ([TRANSITION] Days, [NCT] NoncurrentDays).
THIRTY_DAY_CLASSES = frozenset({"STANDARD_IA", "ONEZONE_IA"})
MAX_RULES = 1000  # [ELEMENTS] "can contain up to 1,000 rules"; [PUT] "This limit is not adjustable"
MAX_ID = 255  # [RULE] ID: "The value cannot be longer than 255 characters"
MAX_NEWER_VERSIONS = 100  # [NCE]/[NCT] NewerNoncurrentVersions: "up to 100 noncurrent versions"
MAX_TAG_KEY, MAX_TAG_VALUE = 128, 256  # S3 object tag limits (userguide/object-tagging.html)
# [TRANSITION]/[PUT] TransitionDefaultMinimumObjectSize; absent means all_storage_classes_128K.
TRANSITION_MINIMUMS = ("all_storage_classes_128K", "varies_by_storage_class")

_TOP = "(top level)"
_TOP_KEYS = ("Rules", "TransitionDefaultMinimumObjectSize")
_RULE_KEYS = (
    "ID",
    "Status",
    "Filter",
    "Prefix",
    "Expiration",
    "Transitions",
    "NoncurrentVersionExpiration",
    "NoncurrentVersionTransitions",
    "AbortIncompleteMultipartUpload",
)
_ACTION_KEYS = (
    "Expiration",
    "Transitions",
    "NoncurrentVersionExpiration",
    "NoncurrentVersionTransitions",
    "AbortIncompleteMultipartUpload",
)
_FILTER_KEYS = ("Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan", "And")
_AND_KEYS = ("Prefix", "Tags", "ObjectSizeGreaterThan", "ObjectSizeLessThan")


class S3LifecycleError(PolicyError):
    """The input is not a lifecycle configuration S3 would accept; ``problems`` lists each with its path."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        n = len(self.problems)
        super().__init__(
            f"not a valid S3 Lifecycle configuration ({n} problem{'' if n == 1 else 's'}):\n  "
            + "\n  ".join(self.problems),
            field=self.problems[0].split(":", 1)[0] if self.problems else None,
        )


@dataclass(frozen=True)
class When:
    """A lifecycle action's time: ``days`` after the clock start, or from ``date`` (midnight UTC)."""

    days: int | None = None
    date: datetime | None = None


@dataclass(frozen=True)
class Transition:
    storage_class: str
    when: When
    #: NoncurrentVersionTransitions only: act once this many newer noncurrent versions exist.
    newer_noncurrent: int | None = None


@dataclass(frozen=True)
class Filter:
    """The objects a rule applies to; every condition given must hold ([FILTERS]: logical AND)."""

    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    greater_than: int | None = None
    less_than: int | None = None

    @property
    def has_size(self) -> bool:
        return self.greater_than is not None or self.less_than is not None


@dataclass(frozen=True)
class Rule:
    """One rule as S3 reads it (``path`` is its place in the input, e.g. ``Rules[2]``)."""

    path: str
    id: str | None
    enabled: bool
    filter: Filter
    transitions: tuple[Transition, ...] = ()
    expiration: When | None = None
    expired_object_delete_marker: bool = False
    noncurrent_transitions: tuple[Transition, ...] = ()
    noncurrent_expiration: When | None = None
    noncurrent_expiration_newer: int | None = None
    abort_multipart_days: int | None = None
    #: Keys the rule gives (to say what is in it).
    keys: frozenset[str] = field(default_factory=frozenset)

    @property
    def label(self) -> str:
        return repr(self.id) if self.id else self.path


@dataclass(frozen=True)
class Lifecycle:
    rules: tuple[Rule, ...]
    #: Which objects transitions skip by default ([PUT] TransitionDefaultMinimumObjectSize).
    transition_minimum: str


def parse_lifecycle(config: object) -> Lifecycle:
    """The rules of an S3 Lifecycle configuration, checked as S3 checks them.

    Raises:
        S3LifecycleError: every problem found, each with its JSON path.
    """
    return _Reader().read(config)


class _Reader:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    # -- generic shapes ------------------------------------------------------------------------

    def mapping(
        self, value: object, path: str, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> Mapping[str, Any] | None:
        """``value`` as an object with only ``allowed`` keys; S3's keys are case-sensitive."""
        if not isinstance(value, Mapping):
            self.fail(path, f"expected a JSON object, got {_show(value)}")
            return None
        by_folded = {k.lower(): k for k in allowed}
        for key in value:
            if key in allowed:
                continue
            proper = by_folded.get(str(key).lower())
            if proper is not None:
                # [PUT] element names are case-sensitive: S3 answers MalformedXML.
                self.fail(_child(path, key), f"unknown key (S3 keys are case-sensitive: {proper!r})")
            else:
                self.fail(_child(path, key), "unknown key; allowed: " + ", ".join(sorted(allowed)))
        for key in required:
            if key not in value and not _has_variant(value, key):
                self.fail(_child(path, key), "missing")
        # Only the known keys go on: the others are reported above.
        return {k: v for k, v in value.items() if k in allowed}

    def integer(self, value: object, path: str, minimum: int, maximum: int | None = None) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected a whole number, got {_show(value)}")
            return None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"at least {minimum}" + (f" and at most {maximum}" if maximum is not None else "")
            self.fail(path, f"{value} is out of range; must be {bound}")
            return None
        return value

    def date(self, value: object, path: str) -> datetime | None:
        try:
            instant = to_instant(value)
        except ValueError:
            self.fail(path, f"expected an ISO 8601 date such as 2027-01-31T00:00:00Z, got {_show(value)}")
            return None
        # [EXPIRATION]/[TRANSITION] Date: "The time is always midnight UTC"; S3 rejects others.
        if instant.astimezone(UTC).time() != time(0):
            self.fail(path, f"{value!r} is not midnight UTC; S3 dates are always midnight UTC")
            return None
        return instant

    def string(self, value: object, path: str) -> str | None:
        if not isinstance(value, str):
            self.fail(path, f"expected a string, got {_show(value)}")
            return None
        return value

    def items(self, value: object, path: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail(path, f"expected a JSON array, got {_show(value)}")
            return []
        return value

    # -- the configuration ---------------------------------------------------------------------

    def read(self, config: object) -> Lifecycle:
        if isinstance(config, Mapping) and set(config) == {"LifecycleConfiguration"}:
            config = config["LifecycleConfiguration"]
            root = "LifecycleConfiguration"
        else:
            root = ""
        at = (lambda key: f"{root}.{key}") if root else (lambda key: key)
        top = self.mapping(config, root or _TOP, _TOP_KEYS, ("Rules",))
        rules: list[Rule] = []
        minimum = "all_storage_classes_128K"
        if top is not None:
            if "TransitionDefaultMinimumObjectSize" in top:
                given = top["TransitionDefaultMinimumObjectSize"]
                if given not in TRANSITION_MINIMUMS:
                    self.fail(
                        at("TransitionDefaultMinimumObjectSize"),
                        f"{_show(given)} is not valid; allowed: {', '.join(TRANSITION_MINIMUMS)}",
                    )
                else:
                    minimum = given
            raw_rules = self.items(top.get("Rules", []), at("Rules")) if "Rules" in top else []
            if "Rules" in top and isinstance(top["Rules"], list) and not raw_rules:
                self.fail(at("Rules"), "empty; S3 requires at least one rule")  # [PUT] Rules: Required
            if len(raw_rules) > MAX_RULES:
                self.fail(at("Rules"), f"{len(raw_rules)} rules; S3 allows at most {MAX_RULES} ([ELEMENTS])")
            for i, raw in enumerate(raw_rules):
                rule = self.rule(raw, at(f"Rules[{i}]"))
                if rule is not None:
                    rules.append(rule)
            self.unique_ids(rules)
        if self.problems:
            raise S3LifecycleError(self.problems)
        return Lifecycle(tuple(rules), minimum)

    def unique_ids(self, rules: list[Rule]) -> None:
        # [ELEMENTS] ID element: "the ID uniquely identifies a rule"; S3 rejects a repeated ID.
        seen: dict[str, str] = {}
        for rule in rules:
            if rule.id is None:
                continue
            if rule.id in seen:
                self.fail(
                    f"{rule.path}.ID", f"{rule.id!r} is also the ID of {seen[rule.id]}; IDs must be unique"
                )
            else:
                seen[rule.id] = rule.path

    def rule(self, raw: object, path: str) -> Rule | None:
        # [RULE] Status is required; "Enabled" or "Disabled".
        data = self.mapping(raw, path, _RULE_KEYS)
        if data is None:
            return None
        before = len(self.problems)
        rule_id = None
        if "ID" in data:
            rule_id = self.string(data["ID"], f"{path}.ID")
            if rule_id is not None and len(rule_id) > MAX_ID:
                self.fail(f"{path}.ID", f"{len(rule_id)} characters; S3 allows at most {MAX_ID} ([RULE] ID)")
        status = data.get("Status")
        if "Status" not in data and not (isinstance(raw, Mapping) and _has_variant(raw, "Status")):
            self.fail(f"{path}.Status", 'missing; S3 requires "Enabled" or "Disabled"')
        elif "Status" in data and status not in ("Enabled", "Disabled"):
            self.fail(f"{path}.Status", f'{_show(status)} is not valid; allowed: "Enabled", "Disabled"')
        flt = self.rule_filter(data, path, raw if isinstance(raw, Mapping) else {})
        # [ELEMENTS]/[RULE]: a rule needs at least one action.
        if not any(key in data for key in _ACTION_KEYS):
            self.fail(path, "no action; S3 requires at least one of " + ", ".join(_ACTION_KEYS))
        transitions = tuple(self.transitions(data, path, current=True))
        expiration, delete_marker = self.expiration(data, path)
        nc_transitions = tuple(self.transitions(data, path, current=False))
        nc_expiration, nc_newer = self.noncurrent_expiration(data, path)
        abort = self.abort(data, path, flt)
        self.order(path, transitions, expiration, "Transitions", "Days", "Expiration")
        self.order(
            path, nc_transitions, nc_expiration, "NoncurrentVersionTransitions", "NoncurrentDays",
            "NoncurrentVersionExpiration",
        )  # fmt: skip
        if len(self.problems) > before or flt is None:
            return None
        return Rule(
            path=path,
            id=rule_id,
            enabled=status == "Enabled",
            filter=flt,
            transitions=transitions,
            expiration=expiration,
            expired_object_delete_marker=delete_marker,
            noncurrent_transitions=nc_transitions,
            noncurrent_expiration=nc_expiration,
            noncurrent_expiration_newer=nc_newer,
            abort_multipart_days=abort,
            keys=frozenset(data),
        )

    def rule_filter(self, data: Mapping[str, Any], path: str, raw_rule: Mapping[str, Any]) -> Filter | None:
        # [RULE] Prefix is deprecated and replaced by Filter; a rule has one or the other, and
        # "Filter is required if the LifecycleRule does not contain a Prefix element".
        if "Prefix" in data and "Filter" in data:
            self.fail(f"{path}.Prefix", "a rule has either Filter or the deprecated Prefix, not both")
            return None
        if "Prefix" in data:
            prefix = self.string(data["Prefix"], f"{path}.Prefix")
            return None if prefix is None else Filter(prefix=prefix)
        if "Filter" not in data:
            if _has_variant(raw_rule, "Filter") or _has_variant(raw_rule, "Prefix"):
                return None
            self.fail(f"{path}.Filter", 'missing; S3 requires Filter (use "Filter": {} for every object)')
            return None
        at = f"{path}.Filter"
        raw = self.mapping(data["Filter"], at, _FILTER_KEYS)
        if raw is None:
            return None
        if not raw:
            return Filter()  # [FILTER] "If the Filter element is left empty, ... applies to all objects"
        if len(raw) > 1:
            # [FILTER] "A Filter can have exactly one of Prefix, Tag, ObjectSizeGreaterThan,
            # ObjectSizeLessThan, or And specified"; combine conditions with And.
            self.fail(
                at, f"has {', '.join(raw)}; S3 allows exactly one of them (combine conditions with And)"
            )
            return None
        if "And" in raw:
            return self.and_filter(raw["And"], f"{at}.And")
        key, value = next(iter(raw.items()))
        if key == "Prefix":
            prefix = self.string(value, f"{at}.Prefix")
            return None if prefix is None else Filter(prefix=prefix)
        if key == "Tag":
            tag = self.tag(value, f"{at}.Tag")
            return None if tag is None else Filter(tags=(tag,))
        size = self.integer(value, f"{at}.{key}", 0)
        if size is None:
            return None
        return Filter(greater_than=size) if key == "ObjectSizeGreaterThan" else Filter(less_than=size)

    def and_filter(self, value: object, at: str) -> Filter | None:
        raw = self.mapping(value, at, _AND_KEYS)
        if raw is None:
            return None
        before = len(self.problems)
        prefix = self.string(raw["Prefix"], f"{at}.Prefix") if "Prefix" in raw else ""
        tags: list[tuple[str, str]] = []
        if "Tags" in raw:
            for i, item in enumerate(self.items(raw["Tags"], f"{at}.Tags")):
                tag = self.tag(item, f"{at}.Tags[{i}]")
                if tag is not None:
                    if any(k == tag[0] for k, _ in tags):
                        # [FILTERS] "if you specify multiple tags each tag key must be unique"
                        self.fail(f"{at}.Tags[{i}].Key", f"{tag[0]!r} appears twice; tag keys must be unique")
                    tags.append(tag)
        greater = less = None
        if "ObjectSizeGreaterThan" in raw:
            greater = self.integer(raw["ObjectSizeGreaterThan"], f"{at}.ObjectSizeGreaterThan", 0)
        if "ObjectSizeLessThan" in raw:
            less = self.integer(raw["ObjectSizeLessThan"], f"{at}.ObjectSizeLessThan", 0)
        # [AND] "apply a logical AND to two or more predicates": fewer is not an And.
        tag_count = len(raw["Tags"]) if isinstance(raw.get("Tags"), list) else 0
        predicates = (
            ("Prefix" in raw) + tag_count + ("ObjectSizeGreaterThan" in raw) + ("ObjectSizeLessThan" in raw)
        )
        if predicates < 2:
            self.fail(
                at, f"has {predicates} condition{'' if predicates == 1 else 's'}; S3's And needs two or more"
            )
        if greater is not None and less is not None and greater >= less:
            # [FILTERS] a size range: ObjectSizeGreaterThan must be below ObjectSizeLessThan.
            self.fail(
                f"{at}.ObjectSizeLessThan",
                f"{less} is not above ObjectSizeGreaterThan {greater}: no object can match",
            )
        if len(self.problems) > before or prefix is None:
            return None
        return Filter(prefix=prefix, tags=tuple(tags), greater_than=greater, less_than=less)

    def tag(self, value: object, at: str) -> tuple[str, str] | None:
        raw = self.mapping(value, at, ("Key", "Value"), ("Key",))
        if raw is None or "Key" not in raw:
            return None
        key = self.string(raw["Key"], f"{at}.Key")
        # [FILTERS] "If you specify only a Key element and no Value element, the rule will apply
        # only to objects that match the tag key and that do not have a value specified."
        tag_value = self.string(raw["Value"], f"{at}.Value") if "Value" in raw else ""
        if key is None or tag_value is None:
            return None
        if not 1 <= len(key) <= MAX_TAG_KEY:
            self.fail(f"{at}.Key", f"tag keys are 1 to {MAX_TAG_KEY} characters, got {len(key)}")
            return None
        if len(tag_value) > MAX_TAG_VALUE:
            self.fail(
                f"{at}.Value", f"tag values are at most {MAX_TAG_VALUE} characters, got {len(tag_value)}"
            )
            return None
        return key, tag_value

    def transitions(self, data: Mapping[str, Any], path: str, *, current: bool) -> list[Transition]:
        name = "Transitions" if current else "NoncurrentVersionTransitions"
        if name not in data:
            return []
        day_key = "Days" if current else "NoncurrentDays"
        allowed = ("Days", "Date", "StorageClass") if current else (
            "NoncurrentDays", "NewerNoncurrentVersions", "StorageClass",
        )  # fmt: skip
        out: list[Transition] = []
        items = self.items(data[name], f"{path}.{name}")
        if isinstance(data[name], list) and not items:
            self.fail(f"{path}.{name}", "empty; give at least one transition or leave the key out")
        for i, raw in enumerate(items):
            at = f"{path}.{name}[{i}]"
            item = self.mapping(raw, at, allowed, ("StorageClass",) if current else ("StorageClass", day_key))
            if item is None or "StorageClass" not in item:
                continue
            storage_class = item["StorageClass"]
            if storage_class not in STORAGE_CLASSES:
                # [TRANSITION] StorageClass valid values.
                self.fail(
                    f"{at}.StorageClass",
                    f"{_show(storage_class)} is not valid; allowed: {', '.join(STORAGE_CLASSES)}",
                )
                continue
            # [TRANSITION]/[NCT] Days: 0 or more; "If the specified storage class is STANDARD_IA or
            # ONEZONE_IA, valid values are positive integers greater than 30" (S3 accepts 30).
            least = 30 if storage_class in THIRTY_DAY_CLASSES else 0
            when: When | None = None
            if current and ("Days" in item) == ("Date" in item):
                self.fail(at, "needs exactly one of Days and Date")  # [TRANSITION] Days or Date
            elif day_key in item:
                days = self.integer(item[day_key], f"{at}.{day_key}", least)
                if days is not None:
                    when = When(days=days)
            elif "Date" in item:
                date = self.date(item["Date"], f"{at}.Date")
                if date is not None:
                    when = When(date=date)
            newer = None
            if "NewerNoncurrentVersions" in item:
                newer = self.integer(
                    item["NewerNoncurrentVersions"], f"{at}.NewerNoncurrentVersions", 1, MAX_NEWER_VERSIONS
                )
            if when is not None:
                out.append(Transition(storage_class, when, newer))
        return out

    def expiration(self, data: Mapping[str, Any], path: str) -> tuple[When | None, bool]:
        if "Expiration" not in data:
            return None, False
        at = f"{path}.Expiration"
        raw = self.mapping(data["Expiration"], at, ("Days", "Date", "ExpiredObjectDeleteMarker"))
        if raw is None:
            return None, False
        # [EXPIRATION] Days and Date are alternatives; ExpiredObjectDeleteMarker "cannot be specified
        # with Days or Date in a Lifecycle Expiration Policy".
        if len(raw) != 1:
            self.fail(
                at,
                f"has {', '.join(raw) or 'nothing'}; S3 requires exactly one of Days, Date and "
                "ExpiredObjectDeleteMarker",
            )
            return None, False
        if "Days" in raw:
            # [EXPIRATION] Days: "The value must be a non-zero positive integer."
            days = self.integer(raw["Days"], f"{at}.Days", 1)
            return (When(days=days) if days is not None else None), False
        if "Date" in raw:
            date = self.date(raw["Date"], f"{at}.Date")
            return (When(date=date) if date is not None else None), False
        marker = raw["ExpiredObjectDeleteMarker"]
        if not isinstance(marker, bool):
            self.fail(f"{at}.ExpiredObjectDeleteMarker", f"expected true or false, got {_show(marker)}")
            return None, False
        return None, marker

    def noncurrent_expiration(self, data: Mapping[str, Any], path: str) -> tuple[When | None, int | None]:
        if "NoncurrentVersionExpiration" not in data:
            return None, None
        at = f"{path}.NoncurrentVersionExpiration"
        raw = self.mapping(
            data["NoncurrentVersionExpiration"],
            at,
            ("NoncurrentDays", "NewerNoncurrentVersions"),
            ("NoncurrentDays",),
        )
        if raw is None or "NoncurrentDays" not in raw:
            return None, None
        # [NCE] NoncurrentDays: "The value must be a non-zero positive integer."
        days = self.integer(raw["NoncurrentDays"], f"{at}.NoncurrentDays", 1)
        newer = None
        if "NewerNoncurrentVersions" in raw:
            # [NCE] NewerNoncurrentVersions: "You can specify up to 100 noncurrent versions to retain."
            newer = self.integer(
                raw["NewerNoncurrentVersions"], f"{at}.NewerNoncurrentVersions", 1, MAX_NEWER_VERSIONS
            )
        return (When(days=days) if days is not None else None), newer

    def abort(self, data: Mapping[str, Any], path: str, flt: Filter | None) -> int | None:
        if "AbortIncompleteMultipartUpload" not in data:
            return None
        at = f"{path}.AbortIncompleteMultipartUpload"
        raw = self.mapping(
            data["AbortIncompleteMultipartUpload"], at, ("DaysAfterInitiation",), ("DaysAfterInitiation",)
        )
        if raw is None or "DaysAfterInitiation" not in raw:
            return None
        if flt is not None and flt.tags:
            # [ELEMENTS] "The AbortIncompleteMultipartUpload action isn't supported for filtering
            # based on object tags" (uploads in progress have no tags yet).
            self.fail(at, "S3 does not allow AbortIncompleteMultipartUpload in a rule that filters by tags")
        return self.integer(raw["DaysAfterInitiation"], f"{at}.DaysAfterInitiation", 1)  # [ABORT] positive

    def order(
        self,
        path: str,
        transitions: Sequence[Transition],
        expiration: When | None,
        name: str,
        day_key: str,
        expiration_name: str,
    ) -> None:
        """Transitions of one rule go down S3's waterfall in time, and expiration comes last."""
        forms = {"days" if t.when.days is not None else "date" for t in transitions}
        if expiration is not None:
            forms.add("days" if expiration.days is not None else "date")
        if len(forms) > 1:
            # S3 rejects a rule that mixes Date- and Days-based actions ("Found mixed 'Date' and
            # 'Days' based Expiration and Transition actions in lifecycle rule").
            self.fail(
                path, f"mixes Date and {day_key} in {name}/{expiration_name}; S3 requires one form per rule"
            )
            return
        seen: dict[str, int] = {}
        for i, t in enumerate(transitions):
            if t.storage_class in seen:
                # S3: "'StorageClass' must be different for 'Transition' actions in same 'Rule'".
                self.fail(
                    f"{path}.{name}[{i}].StorageClass",
                    f"{t.storage_class} is also the target of {name}[{seen[t.storage_class]}]",
                )
            seen[t.storage_class] = i
        ranked = sorted(
            ((STORAGE_CLASSES.index(t.storage_class), _moment(t.when), i) for i, t in enumerate(transitions)),
        )
        for (_, earlier, i), (_, later, j) in itertools.pairwise(ranked):
            if later <= earlier:
                # [TRANSITIONS] supported transitions form a waterfall: a colder class never
                # comes before (or together with) a warmer one.
                self.fail(
                    f"{path}.{name}[{j}]",
                    f"{transitions[j].storage_class} must come after {transitions[i].storage_class} "
                    f"({name}[{i}]): S3 only transitions objects down its storage-class waterfall",
                )
        if expiration is not None:
            for i, t in enumerate(transitions):
                if _moment(t.when) >= _moment(expiration):
                    # S3: "'Days' in the Expiration action ... must be greater than 'Days' in the
                    # Transition action" (likewise NoncurrentDays and Date).
                    self.fail(
                        f"{path}.{expiration_name}",
                        f"must come after every transition; {name}[{i}] ({t.storage_class}) is not before it",
                    )
                    break


def _child(path: str, key: object) -> str:
    return str(key) if path == _TOP else f"{path}.{key}"


def _has_variant(data: Mapping[str, Any], key: str) -> bool:
    """A key spelled like ``key`` in another case (already reported as mis-cased)."""
    return any(str(k).lower() == key.lower() and k != key for k in data)


def _moment(when: When) -> float:
    """Days and dates on one axis for ordering within a rule (a rule uses one form)."""
    if when.days is not None:
        return float(when.days)
    assert when.date is not None
    return (when.date - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(days=1)


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
