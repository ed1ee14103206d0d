"""Turn an S3 Lifecycle configuration (JSON) into Liquid TieringPolicies, saying what does not map.

Mapping:

- ``Filter`` (or the legacy rule-level ``Prefix``): ``Prefix`` → ``selector.keyPrefix``,
  ``Tag`` / ``And.Tags`` → ``selector.tags``, ``ObjectSizeGreaterThan N`` →
  ``minSize N+1`` and ``ObjectSizeLessThan N`` → ``maxSize N-1`` (S3 bounds are strict,
  Liquid's inclusive).
- Objects land in S3 STANDARD, which maps to ``warm``. ``Transitions`` to
  STANDARD_IA, ONEZONE_IA or INTELLIGENT_TIERING → ``cold`` (a ``warm`` rule with
  ``maxAge``/``demoteAt``, then a ``cold`` rule); to GLACIER_IR, GLACIER or
  DEEP_ARCHIVE → ``archiveAfter``/``archiveAt``. Imported policies set
  ``restoreOnAccess: false``: S3 never moves an object back by itself.
- ``Expiration.Days``/``Date`` → ``expireAfter``/``expireAt``.
- ``NoncurrentVersionTransitions``/``NoncurrentVersionExpiration`` → a second policy
  with ``selector.versions: noncurrent`` whose clock starts when a newer version is
  written, as in S3; the first policy then selects ``versions: current``.
- Not mapped, with a note: ``ExpiredObjectDeleteMarker`` (Liquid has no delete
  markers), ``NewerNoncurrentVersions`` (no version-count rules),
  ``AbortIncompleteMultipartUpload`` (Liquid writes are atomic), unknown storage
  classes, disabled rules.

Example::

    >>> docs, notes = import_s3_lifecycle({"Rules": [{"ID": "Archive logs", "Status": "Enabled",
    ...     "Filter": {"Prefix": "logs/"}, "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}],
    ...     "Expiration": {"Days": 365}}]})
    >>> docs[0]["spec"]
    {'priority': 105, 'selector': {'keyPrefix': 'logs/'}, 'restoreOnAccess': False, 'archiveAfter': '30d', \
'expireAfter': '365d'}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import yaml

from liquid.errors import PolicyError
from liquid.policy.models import API_VERSION, format_duration, to_instant

COLD_CLASSES = frozenset({"STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING"})
ARCHIVE_CLASSES = frozenset({"GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"})
DAY = 86400


def import_s3_lifecycle(
    config: Mapping[str, Any], *, tenant: str | None = None, namespace: str | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Liquid policy documents equivalent to an S3 Lifecycle configuration, and notes on what does not map.

    Args:
        config: the JSON of ``aws s3api get-bucket-lifecycle-configuration`` (``{"Rules": [...]}``),
            optionally wrapped in ``{"LifecycleConfiguration": ...}``.
        tenant: restrict every imported policy to this tenant (``selector.tenants``).
        namespace: restrict every imported policy to this namespace (S3's bucket).

    Returns:
        (documents as dicts ready for YAML, notes as sentences).

    Raises:
        PolicyError: the input is not a lifecycle configuration.
    """
    if isinstance(config, Mapping) and "LifecycleConfiguration" in config:
        config = config["LifecycleConfiguration"]
    rules = config.get("Rules") if isinstance(config, Mapping) else None
    if not isinstance(rules, list):
        raise PolicyError(
            "not an S3 Lifecycle configuration: expected a JSON object with a 'Rules' list, "
            'e.g. {"Rules": [{"ID": "...", "Status": "Enabled", "Filter": {...}, ...}]}',
            field="Rules",
        )
    docs: list[dict[str, Any]] = []
    notes: list[str] = []
    names: set[str] = set()
    for index, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            raise PolicyError(f"Rules[{index}] is not an object", field=f"Rules[{index}]")
        label = str(rule.get("ID") or f"Rules[{index}]")
        if rule.get("Status", "Enabled") != "Enabled":
            notes.append(f"rule {label!r}: Status is {rule.get('Status')!r}, so it was not imported")
            continue
        before = len(docs)
        _import_rule(
            rule, label, _unique(_slug(rule.get("ID"), index), names), tenant, namespace, docs, notes
        )
        if len(docs) == before:
            notes.append(f"rule {label!r}: nothing in it maps to Liquid, so no policy was made")
    return docs, notes


def lifecycle_yaml(docs: list[dict[str, Any]], notes: list[str], *, source: str = "") -> str:
    """The imported documents as one YAML stream, the notes as comments on top."""
    header = ["# Imported from an S3 Lifecycle configuration" + (f" ({source})" if source else "") + "."]
    header += [f"# does not map: {note}" for note in notes]
    body = yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True, allow_unicode=True)
    return "\n".join(header) + "\n" + body


def _slug(rule_id: object, index: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", str(rule_id or "").lower()).strip("-")[:50].strip("-")
    return slug or f"s3-rule-{index + 1}"


def _unique(name: str, names: set[str]) -> str:
    candidate, n = name, 2
    while candidate in names or f"{candidate}-noncurrent" in names:
        candidate, n = f"{name}-{n}", n + 1
    names.update({candidate, f"{candidate}-noncurrent"})
    return candidate


def _days(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError(f"{what} must be a whole number of days ≥ 0, got {value!r}", field=what)
    return float(value * DAY)


def _size(value: object, what: str, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError(f"{what} of rule {label!r} must be a byte count ≥ 0, got {value!r}", field=what)
    return value


def _date(value: object, what: str) -> str:
    try:
        return to_instant(value).isoformat()
    except ValueError:
        raise PolicyError(f"{what} must be an ISO 8601 date, got {value!r}", field=what) from None


def _selector(rule: Mapping[str, Any], label: str, notes: list[str]) -> dict[str, Any]:
    selector: dict[str, Any] = {}
    raw = rule.get("Filter")
    flt: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    if "And" in flt and isinstance(flt["And"], Mapping):
        flt = {**flt, **flt["And"]}
    prefix = flt.get("Prefix", rule.get("Prefix"))
    if prefix:
        selector["keyPrefix"] = str(prefix)
    tags = list(flt.get("Tags") or [])
    if isinstance(flt.get("Tag"), Mapping):
        tags.append(flt["Tag"])
    if tags:
        selector["tags"] = {
            str(t.get("Key")): str(t.get("Value", "")) for t in tags if isinstance(t, Mapping)
        }
    if "ObjectSizeGreaterThan" in flt:
        selector["minSize"] = _size(flt["ObjectSizeGreaterThan"], "ObjectSizeGreaterThan", label) + 1
    if "ObjectSizeLessThan" in flt:
        less = _size(flt["ObjectSizeLessThan"], "ObjectSizeLessThan", label)
        if less < 1:
            notes.append(f"rule {label!r}: ObjectSizeLessThan {less} matches no object")
        selector["maxSize"] = max(less - 1, 0)
    return selector


def _transitions(
    items: list[Any], day_key: str, label: str, notes: list[str]
) -> tuple[tuple[str, Any] | None, tuple[str, Any] | None]:
    """The earliest cold and archive transition as ("after", seconds) or ("at", iso date)."""
    best: dict[str, tuple[str, Any]] = {}
    for item in items:
        if not isinstance(item, Mapping):
            continue
        storage_class = str(item.get("StorageClass", ""))
        tier = (
            "cold"
            if storage_class in COLD_CLASSES
            else "archive"
            if storage_class in ARCHIVE_CLASSES
            else None
        )
        if tier is None:
            notes.append(
                f"rule {label!r}: storage class {storage_class!r} has no Liquid tier "
                f"(cold: {', '.join(sorted(COLD_CLASSES))}; archive: {', '.join(sorted(ARCHIVE_CLASSES))})"
            )
            continue
        if storage_class == "INTELLIGENT_TIERING":
            notes.append(
                f"rule {label!r}: INTELLIGENT_TIERING moves objects by access pattern; imported as a plain "
                "move to cold (Liquid's demoteAfter/promoteAbove rules do the same job; consider them)"
            )
        if "NewerNoncurrentVersions" in item:
            notes.append(
                f"rule {label!r}: NewerNoncurrentVersions (keep the newest N noncurrent versions) has no "
                "Liquid equivalent; the transition applies to every noncurrent version"
            )
        if day_key in item:
            when: tuple[str, Any] = ("after", _days(item[day_key], f"{day_key} of rule {label!r}"))
        elif "Date" in item:
            when = ("at", _date(item["Date"], f"Date of rule {label!r}"))
        else:
            notes.append(
                f"rule {label!r}: a transition to {storage_class} has neither {day_key} nor Date; skipped"
            )
            continue
        if tier in best:
            notes.append(
                f"rule {label!r}: {storage_class} also maps to {tier}; Liquid keeps the earliest move "
                f"to {tier}"
            )
            if not _earlier(when, best[tier]):
                continue
        best[tier] = when
    return best.get("cold"), best.get("archive")


def _earlier(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    if a[0] == b[0] == "after":
        return float(a[1]) < float(b[1])
    if a[0] == b[0] == "at":
        return datetime.fromisoformat(a[1]) < datetime.fromisoformat(b[1])
    return False


def _lifecycle_spec(
    cold: tuple[str, Any] | None, archive: tuple[str, Any] | None, expire: tuple[str, Any] | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if cold is not None:
        if cold == ("after", 0.0):
            spec["rules"] = [{"name": "s3-infrequent-access", "tier": "cold"}]
        else:
            key, value = ("maxAge", format_duration(cold[1])) if cold[0] == "after" else ("demoteAt", cold[1])
            spec["rules"] = [
                {"name": "s3-standard", "tier": "warm", key: value},
                {"name": "s3-infrequent-access", "tier": "cold"},
            ]
    spec["restoreOnAccess"] = False
    if archive is not None:
        if archive[0] == "after":
            spec["archiveAfter"] = format_duration(archive[1])
        else:
            spec["archiveAt"] = archive[1]
    if expire is not None:
        if expire[0] == "after":
            spec["expireAfter"] = format_duration(expire[1])
        else:
            spec["expireAt"] = expire[1]
    return spec


def _import_rule(
    rule: Mapping[str, Any],
    label: str,
    name: str,
    tenant: str | None,
    namespace: str | None,
    docs: list[dict[str, Any]],
    notes: list[str],
) -> None:
    selector = _selector(rule, label, notes)
    if tenant:
        selector = {"tenants": [tenant], **selector}
    if namespace:
        selector = {"namespaces": [namespace], **selector}
    # S3 applies every matching rule; Liquid one policy per object. More specific filters
    # get a higher priority so they win where imported rules overlap.
    priority = 100 + len(selector.get("keyPrefix", "")) + 10 * len(selector.get("tags", {}))
    priority += 5 * sum(k in selector for k in ("minSize", "maxSize"))

    transitions = list(rule.get("Transitions") or [])
    if isinstance(rule.get("Transition"), Mapping):
        transitions.append(rule["Transition"])
    cold, archive = _transitions(transitions, "Days", label, notes)
    raw_expiration = rule.get("Expiration")
    expiration: Mapping[str, Any] = raw_expiration if isinstance(raw_expiration, Mapping) else {}
    expire: tuple[str, Any] | None = None
    if "Days" in expiration:
        expire = ("after", _days(expiration["Days"], f"Expiration.Days of rule {label!r}"))
    elif "Date" in expiration:
        expire = ("at", _date(expiration["Date"], f"Expiration.Date of rule {label!r}"))
    if expiration.get("ExpiredObjectDeleteMarker"):
        notes.append(
            f"rule {label!r}: ExpiredObjectDeleteMarker: Liquid has no delete markers (a ref names an "
            "immutable version), so there is nothing to remove"
        )
    if isinstance(rule.get("AbortIncompleteMultipartUpload"), Mapping):
        days = rule["AbortIncompleteMultipartUpload"].get("DaysAfterInitiation")
        notes.append(
            f"rule {label!r}: AbortIncompleteMultipartUpload ({days} days): Liquid writes are atomic and "
            "leave no incomplete uploads, so there is nothing to clean up"
        )

    nc_items = list(rule.get("NoncurrentVersionTransitions") or [])
    if isinstance(rule.get("NoncurrentVersionTransition"), Mapping):
        nc_items.append(rule["NoncurrentVersionTransition"])
    nc_cold, nc_archive = _transitions(nc_items, "NoncurrentDays", label, notes)
    nc_expiration = rule.get("NoncurrentVersionExpiration")
    nc_expire: tuple[str, Any] | None = None
    if isinstance(nc_expiration, Mapping):
        if "NoncurrentDays" in nc_expiration:
            days_key = f"NoncurrentVersionExpiration.NoncurrentDays of rule {label!r}"
            nc_expire = ("after", _days(nc_expiration["NoncurrentDays"], days_key))
        if "NewerNoncurrentVersions" in nc_expiration:
            notes.append(
                f"rule {label!r}: NewerNoncurrentVersions {nc_expiration['NewerNoncurrentVersions']} "
                "(keep the "
                "newest N noncurrent versions) has no Liquid equivalent; every noncurrent version expires "
                "after NoncurrentDays"
            )
    has_noncurrent = any(x is not None for x in (nc_cold, nc_archive, nc_expire))

    description = f"Imported from S3 Lifecycle rule {label!r}"
    if any(x is not None for x in (cold, archive, expire)):
        current_selector = {**selector, "versions": "current"} if has_noncurrent else selector
        docs.append(
            _document(name, description, priority, current_selector, _lifecycle_spec(cold, archive, expire))
        )
    if has_noncurrent:
        spec = _lifecycle_spec(nc_cold, nc_archive, nc_expire)
        docs.append(
            _document(
                f"{name}-noncurrent",
                description + " (noncurrent versions)",
                priority,
                {**selector, "versions": "noncurrent"},
                spec,
            )
        )


def _document(
    name: str, description: str, priority: int, selector: dict[str, Any], spec: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "TieringPolicy",
        "metadata": {"name": name, "annotations": {"description": description}},
        "spec": {"priority": priority, **({"selector": selector} if selector else {}), **spec},
    }
