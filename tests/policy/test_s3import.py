"""S3 Lifecycle import: the AWS S3 User Guide's example configurations round-trip into policies
that validate and behave like the S3 rules, and what does not map is said."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from liquid.errors import PolicyError
from liquid.policy import ObjectFacts, evaluate, import_s3_lifecycle, lifecycle_yaml, load_policy_text
from liquid.policy.models import PolicySet

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)

# The example configurations of the S3 User Guide ("Examples of S3 Lifecycle
# configurations"), in the JSON form of `aws s3api put-bucket-lifecycle-configuration`.
PREFIX_TRANSITION_EXPIRATION = {
    "Rules": [
        {
            "ID": "Transition and Expiration Rule",
            "Filter": {"Prefix": "tax/"},
            "Status": "Enabled",
            "Transitions": [{"Days": 365, "StorageClass": "GLACIER"}],
            "Expiration": {"Days": 3650},
        }
    ]
}
TIERING_DOWN = {
    "Rules": [
        {
            "ID": "example-id",
            "Filter": {"Prefix": "documents/"},
            "Status": "Enabled",
            "Transitions": [
                {"Days": 30, "StorageClass": "STANDARD_IA"},
                {"Days": 365, "StorageClass": "GLACIER"},
            ],
            "Expiration": {"Days": 3650},
        }
    ]
}
TAG_FILTER = {
    "Rules": [
        {
            "ID": "Rule for objects with a tag",
            "Filter": {"Tag": {"Key": "key1", "Value": "value1"}},
            "Status": "Enabled",
            "Transitions": [{"Days": 365, "StorageClass": "GLACIER"}],
            "Expiration": {"Days": 3650},
        }
    ]
}
AND_FILTER_WITH_SIZE = {
    "Rules": [
        {
            "ID": "Rule with prefix, tags and size",
            "Filter": {
                "And": {
                    "Prefix": "tax/",
                    "Tags": [{"Key": "key1", "Value": "value1"}, {"Key": "key2", "Value": "value2"}],
                    "ObjectSizeGreaterThan": 500,
                    "ObjectSizeLessThan": 64000,
                }
            },
            "Status": "Enabled",
            "Transitions": [{"Days": 365, "StorageClass": "GLACIER_IR"}],
        }
    ]
}
DISABLED_RULE = {
    "Rules": [
        {
            "ID": "Rule1",
            "Filter": {"Prefix": "logs/"},
            "Status": "Enabled",
            "Transitions": [{"Days": 0, "StorageClass": "GLACIER"}],
        },
        {
            "ID": "Rule2",
            "Filter": {"Prefix": "documents/"},
            "Status": "Disabled",
            "Transitions": [{"Days": 0, "StorageClass": "GLACIER"}],
        },
    ]
}
VERSIONED_BUCKET = {
    "Rules": [
        {
            "ID": "sample-rule",
            "Filter": {"Prefix": ""},
            "Status": "Enabled",
            "Transitions": [{"Days": 30, "StorageClass": "STANDARD_IA"}],
            "NoncurrentVersionTransitions": [
                {"NoncurrentDays": 30, "StorageClass": "STANDARD_IA"},
                {"NoncurrentDays": 90, "StorageClass": "GLACIER"},
            ],
            "NoncurrentVersionExpiration": {"NoncurrentDays": 365},
        }
    ]
}
DELETE_MARKERS = {
    "Rules": [
        {
            "ID": "Rule 1",
            "Filter": {"Prefix": "logs/"},
            "Status": "Enabled",
            "Expiration": {"ExpiredObjectDeleteMarker": True},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 30, "NewerNoncurrentVersions": 2},
        }
    ]
}
ABORT_MULTIPART = {
    "Rules": [
        {
            "ID": "sample-rule",
            "Filter": {"Prefix": "SomeKeyPrefix/"},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        }
    ]
}
DATES = {
    "Rules": [
        {
            "ID": "by date",
            "Filter": {},
            "Status": "Enabled",
            "Transitions": [{"Date": "2027-01-01T00:00:00.000Z", "StorageClass": "ONEZONE_IA"}],
            "Expiration": {"Date": "2028-01-01T00:00:00.000Z"},
        }
    ]
}

ALL = [
    PREFIX_TRANSITION_EXPIRATION,
    TIERING_DOWN,
    TAG_FILTER,
    AND_FILTER_WITH_SIZE,
    DISABLED_RULE,
    VERSIONED_BUCKET,
    DELETE_MARKERS,
    ABORT_MULTIPART,
    DATES,
]


def _round_trip(config: dict[str, Any], **options: str) -> tuple[PolicySet, list[str]]:
    docs, notes = import_s3_lifecycle(config, **options)
    return load_policy_text(lifecycle_yaml(docs, notes), "imported.yaml"), notes


def _obj(key: str, age_days: float, tier: str, **extra: Any) -> ObjectFacts:
    created = NOW - age_days * DAY
    return ObjectFacts(
        tenant="t", namespace="bucket", key=key, size=1000, created_at=created, home_tier=tier, **extra
    )


def _decide(policies: PolicySet, obj: ObjectFacts) -> tuple[str, str, str | None]:
    d = evaluate(policies, obj, NOW)
    return d.tier, d.action, d.policy


@pytest.mark.parametrize("config", ALL, ids=lambda c: c["Rules"][0]["ID"])
def test_every_aws_example_imports_to_valid_policies(config: dict[str, Any]) -> None:
    policies, notes = _round_trip(config)
    # Only a configuration that imports nothing (abort-multipart) leaves an empty file.
    assert [w.message for w in policies.warnings] == (
        [] if policies.tiering else ["no policy documents in this file"]
    )
    assert policies.tiering or notes


def test_prefix_filter_transition_and_expiration() -> None:
    docs, notes = import_s3_lifecycle(PREFIX_TRANSITION_EXPIRATION)
    assert notes == []
    assert docs == [
        {
            "apiVersion": "liquid/v1",
            "kind": "TieringPolicy",
            "metadata": {
                "name": "transition-and-expiration-rule",
                "annotations": {
                    "description": "Imported from S3 Lifecycle rule 'Transition and Expiration Rule'"
                },
            },
            "spec": {
                "priority": 104,
                "selector": {"keyPrefix": "tax/"},
                "restoreOnAccess": False,
                "archiveAfter": "365d",
                "expireAfter": "3650d",
            },
        }
    ]
    policies, _ = _round_trip(PREFIX_TRANSITION_EXPIRATION)
    assert _decide(policies, _obj("tax/2024.pdf", 100, "warm")) == (
        "warm",
        "keep",
        "transition-and-expiration-rule",
    )
    assert _decide(policies, _obj("tax/2024.pdf", 366, "warm"))[:2] == ("archive", "move")
    assert _decide(policies, _obj("tax/2015.pdf", 3651, "archive"))[:2] == ("archive", "expire")
    assert _decide(policies, _obj("photos/a.jpg", 5000, "warm")) == ("warm", "keep", None)


def test_transitions_become_a_ladder() -> None:
    policies, notes = _round_trip(TIERING_DOWN)
    assert notes == []
    spec = policies.tiering[0].spec
    assert [(r.tier, r.max_age) for r in spec.rules] == [("warm", 30 * 86400.0), ("cold", None)]
    assert not spec.restore_on_access
    assert _decide(policies, _obj("documents/a", 10, "warm"))[:2] == ("warm", "keep")
    assert _decide(policies, _obj("documents/a", 31, "warm"))[:2] == ("cold", "move")
    # S3 never brings an object back: a read after the transition changes nothing.
    read = _obj(
        "documents/a", 40, "cold", last_access_at=NOW - DAY, access_score=50.0, home_since=NOW - 9 * DAY
    )
    assert _decide(policies, read)[:2] == ("cold", "keep")
    assert _decide(policies, _obj("documents/a", 366, "cold"))[:2] == ("archive", "move")


def test_tag_filter() -> None:
    policies, _ = _round_trip(TAG_FILTER)
    assert policies.tiering[0].spec.selector.tags == {"key1": "value1"}
    assert _decide(policies, _obj("x", 400, "warm", tags={"key1": "value1"}))[:2] == ("archive", "move")
    assert _decide(policies, _obj("x", 400, "warm", tags={"key1": "other"}))[2] is None


def test_and_filter_with_size_bounds_made_inclusive() -> None:
    policies, _ = _round_trip(AND_FILTER_WITH_SIZE)
    selector = policies.tiering[0].spec.selector
    assert (selector.key_prefix, selector.min_size, selector.max_size) == ("tax/", 501, 63999)
    assert selector.tags == {"key1": "value1", "key2": "value2"}
    tags = {"key1": "value1", "key2": "value2"}
    for size, selected in ((500, False), (501, True), (63999, True), (64000, False)):
        obj = ObjectFacts(
            tenant="t",
            namespace="b",
            key="tax/x",
            size=size,
            tags=tags,
            created_at=NOW - 400 * DAY,
            home_tier="warm",
        )
        assert (evaluate(policies, obj, NOW).policy is not None) is selected, size


def test_disabled_rules_are_skipped_and_said() -> None:
    docs, notes = import_s3_lifecycle(DISABLED_RULE)
    assert [d["metadata"]["name"] for d in docs] == ["rule1"]
    assert docs[0]["spec"]["archiveAfter"] == "0s"
    assert notes == ["rule 'Rule2': Status is 'Disabled', so it was not imported"]


def test_noncurrent_versions_get_their_own_policy() -> None:
    policies, notes = _round_trip(VERSIONED_BUCKET)
    assert notes == []
    names = {p.name: p for p in policies.tiering}
    assert names["sample-rule"].spec.selector.versions == "current"
    noncurrent = names["sample-rule-noncurrent"].spec
    assert noncurrent.selector.versions == "noncurrent"
    assert [(r.tier, r.max_age) for r in noncurrent.rules] == [("warm", 30 * 86400.0), ("cold", None)]
    assert (noncurrent.archive_after, noncurrent.expire_after) == (90 * 86400.0, 365 * 86400.0)
    # The current version follows its age; an old version the time since it was superseded.
    assert _decide(policies, _obj("k", 40, "warm")) == ("cold", "move", "sample-rule")
    old = _obj("k", 400, "warm", superseded_at=NOW - 10 * DAY)
    assert _decide(policies, old) == ("warm", "keep", "sample-rule-noncurrent")
    assert _decide(policies, _obj("k", 400, "cold", superseded_at=NOW - 100 * DAY))[:2] == ("archive", "move")
    assert _decide(policies, _obj("k", 800, "archive", superseded_at=NOW - 366 * DAY))[:2] == (
        "archive",
        "expire",
    )


def test_delete_markers_and_version_counts_do_not_map() -> None:
    docs, notes = import_s3_lifecycle(DELETE_MARKERS)
    assert [d["metadata"]["name"] for d in docs] == ["rule-1-noncurrent"]
    assert docs[0]["spec"]["expireAfter"] == "30d"
    assert notes == [
        "rule 'Rule 1': ExpiredObjectDeleteMarker: Liquid has no delete markers (a ref names an "
        "immutable version), "
        "so there is nothing to remove",
        "rule 'Rule 1': NewerNoncurrentVersions 2 (keep the newest N noncurrent versions) has no "
        "Liquid equivalent; "
        "every noncurrent version expires after NoncurrentDays",
    ]


def test_abort_incomplete_multipart_upload_does_not_map() -> None:
    docs, notes = import_s3_lifecycle(ABORT_MULTIPART)
    assert docs == []
    assert notes == [
        "rule 'sample-rule': AbortIncompleteMultipartUpload (7 days): Liquid writes are atomic and leave no "
        "incomplete uploads, so there is nothing to clean up",
        "rule 'sample-rule': nothing in it maps to Liquid, so no policy was made",
    ]
    text = lifecycle_yaml(docs, notes, source="lifecycle.json")
    assert text.startswith(
        "# Imported from an S3 Lifecycle configuration (lifecycle.json).\n# does not map: "
    )


def test_dates() -> None:
    policies, _ = _round_trip(DATES)
    spec = policies.tiering[0].spec
    assert spec.rules[0].demote_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert spec.expire_at == datetime(2028, 1, 1, tzinfo=UTC)
    late = ObjectFacts(tenant="t", namespace="b", key="k", size=1, created_at=NOW, home_tier="warm")
    decision = evaluate(policies, late, NOW)
    assert decision.next_change_at == datetime(2027, 1, 1, tzinfo=UTC)


def test_tenant_and_namespace_options() -> None:
    policies, _ = _round_trip(TAG_FILTER, tenant="acme", namespace="archive-bucket")
    selector = policies.tiering[0].spec.selector
    assert (selector.tenants, selector.namespaces) == (("acme",), ("archive-bucket",))


def test_unknown_storage_class_and_intelligent_tiering_are_noted() -> None:
    config = {
        "Rules": [
            {
                "ID": "mixed",
                "Status": "Enabled",
                "Filter": {},
                "Transitions": [
                    {"Days": 10, "StorageClass": "INTELLIGENT_TIERING"},
                    {"Days": 20, "StorageClass": "STANDARD_IA"},
                    {"Days": 30, "StorageClass": "REDUCED_REDUNDANCY"},
                ],
            }
        ]
    }
    docs, notes = import_s3_lifecycle(config)
    assert docs[0]["spec"]["rules"][0]["maxAge"] == "10d"
    assert len(notes) == 3
    assert "INTELLIGENT_TIERING moves objects by access pattern" in notes[0]
    assert "STANDARD_IA also maps to cold; Liquid keeps the earliest move to cold" in notes[1]
    assert "storage class 'REDUCED_REDUNDANCY' has no Liquid tier" in notes[2]


def test_wrapped_config_and_duplicate_ids() -> None:
    rule = PREFIX_TRANSITION_EXPIRATION["Rules"][0]
    docs, _ = import_s3_lifecycle({"LifecycleConfiguration": {"Rules": [rule, rule, {**rule, "ID": None}]}})
    assert [d["metadata"]["name"] for d in docs] == [
        "transition-and-expiration-rule",
        "transition-and-expiration-rule-2",
        "s3-rule-3",
    ]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "not an S3 Lifecycle configuration"),
        ({"Rules": "x"}, "not an S3 Lifecycle configuration"),
        ({"Rules": [5]}, r"Rules\[0\] is not an object"),
        ({"Rules": [{"Status": "Enabled", "Expiration": {"Days": -1}}]}, "whole number of days"),
        ({"Rules": [{"Status": "Enabled", "Expiration": {"Date": "soon"}}]}, "ISO 8601 date"),
        ({"Rules": [{"Status": "Enabled", "Filter": {"ObjectSizeGreaterThan": "big"}}]}, "byte count"),
    ],
)
def test_bad_input_is_a_policy_error(config: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        import_s3_lifecycle(config)
