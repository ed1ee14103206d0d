"""S3 Lifecycle import: what S3 rejects is an error with its JSON path; the AWS S3 User Guide's
example configurations round-trip into policies that validate and behave like the S3 rules,
overlapping rules included; what Liquid cannot express fails unless --lossy; notes say the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from liquid.errors import PolicyError
from liquid.policy import (
    ObjectFacts,
    S3Import,
    S3ImportLoss,
    S3LifecycleError,
    evaluate,
    import_s3_lifecycle,
    load_policy_text,
)
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


BIG = 1024 * 1024  # above S3's 128 KiB default transition minimum


def _import(config: dict[str, Any], **options: Any) -> S3Import:
    options.setdefault("namespace", "bucket")
    return import_s3_lifecycle(config, **options)


def _round_trip(config: dict[str, Any], **options: Any) -> tuple[PolicySet, S3Import]:
    result = _import(config, **options)
    return load_policy_text(result.yaml(), "imported.yaml"), result


def _obj(key: str, age_days: float, tier: str = "warm", *, size: int = BIG, **extra: Any) -> ObjectFacts:
    created = NOW - age_days * DAY
    return ObjectFacts(
        tenant="t", namespace="bucket", key=key, size=size, created_at=created, home_tier=tier, **extra
    )


def _decide(policies: PolicySet, obj: ObjectFacts) -> tuple[str, str, str | None]:
    d = evaluate(policies, obj, NOW)
    return d.tier, d.action, d.policy


def _problems(config: object) -> tuple[str, ...]:
    with pytest.raises(S3LifecycleError) as info:
        import_s3_lifecycle(config, namespace="bucket")  # type: ignore[arg-type]
    return info.value.problems


# -- the AWS examples --------------------------------------------------------------------------


@pytest.mark.parametrize("config", ALL, ids=lambda c: c["Rules"][0]["ID"])
def test_every_aws_example_imports_to_valid_policies(config: dict[str, Any]) -> None:
    policies, result = _round_trip(config)
    assert [w.message for w in policies.warnings] == (
        [] if policies.tiering else ["no policy documents in this file"]
    )
    assert result.losses == []
    assert policies.tiering or result.notes


def test_prefix_filter_transition_and_expiration() -> None:
    result = _import(PREFIX_TRANSITION_EXPIRATION)
    assert result.losses == []
    # Expiration applies to every size; the GLACIER transition to objects of 128 KiB and more.
    specs = {d["metadata"]["name"]: d["spec"] for d in result.documents}
    assert specs == {
        "transition-and-expiration-rule": {
            "priority": 101,
            "selector": {"namespaces": ["bucket"], "keyPrefix": "tax/", "versions": "current"},
            "restoreOnAccess": False,
            "expireAfter": "3650d",
        },
        "transition-and-expiration-rule-2": {
            "priority": 102,
            "selector": {
                "namespaces": ["bucket"], "keyPrefix": "tax/", "minSize": 131072, "versions": "current",
            },
            "restoreOnAccess": False,
            "archiveAfter": "365d",
            "expireAfter": "3650d",
        },
    }  # fmt: skip
    policies, _ = _round_trip(PREFIX_TRANSITION_EXPIRATION)
    assert _decide(policies, _obj("tax/2024.pdf", 100))[:2] == ("warm", "keep")
    assert _decide(policies, _obj("tax/2024.pdf", 366))[:2] == ("archive", "move")
    assert _decide(policies, _obj("tax/2024.pdf", 366, size=1000))[:2] == ("warm", "keep")
    assert _decide(policies, _obj("tax/2015.pdf", 3651, "archive"))[:2] == ("archive", "expire")
    assert _decide(policies, _obj("tax/2015.pdf", 3651, size=10))[:2] == ("warm", "expire")
    assert _decide(policies, _obj("photos/a.jpg", 5000)) == ("warm", "keep", None)


def test_transitions_become_a_ladder() -> None:
    policies, result = _round_trip(TIERING_DOWN)
    assert result.losses == []
    big = _decide(policies, _obj("documents/a", 31))
    spec = next(p for p in policies.tiering if p.name == big[2]).spec
    assert [(r.tier, r.max_age) for r in spec.rules] == [("warm", 30 * 86400.0), ("cold", None)]
    assert not spec.restore_on_access
    assert _decide(policies, _obj("documents/a", 10))[:2] == ("warm", "keep")
    assert big[:2] == ("cold", "move")
    # S3 never brings an object back: a read after the transition changes nothing.
    read = _obj(
        "documents/a", 40, "cold", last_access_at=NOW - DAY, access_score=50.0, home_since=NOW - 9 * DAY
    )
    assert _decide(policies, read)[:2] == ("cold", "keep")
    assert _decide(policies, _obj("documents/a", 366, "cold"))[:2] == ("archive", "move")


def test_tag_filter() -> None:
    policies, _ = _round_trip(TAG_FILTER)
    assert all(p.spec.selector.tags == {"key1": "value1"} for p in policies.tiering)
    assert _decide(policies, _obj("x", 400, tags={"key1": "value1"}))[:2] == ("archive", "move")
    assert _decide(policies, _obj("x", 400, tags={"key1": "other"}))[2] is None


def test_and_filter_with_size_bounds_made_inclusive() -> None:
    policies, _ = _round_trip(AND_FILTER_WITH_SIZE)
    # A size filter on the rule replaces S3's 128 KiB transition default.
    (policy,) = policies.tiering
    selector = policy.spec.selector
    assert (selector.key_prefix, selector.min_size, selector.max_size) == ("tax/", 501, 63999)
    assert selector.tags == {"key1": "value1", "key2": "value2"}
    tags = {"key1": "value1", "key2": "value2"}
    for size, selected in ((500, False), (501, True), (63999, True), (64000, False)):
        obj = _obj("tax/x", 400, size=size, tags=tags)
        assert (evaluate(policies, obj, NOW).policy is not None) is selected, size


def test_disabled_rules_are_skipped_and_said() -> None:
    result = _import(DISABLED_RULE)
    assert [d["metadata"]["name"] for d in result.documents] == ["rule1"]
    assert result.documents[0]["spec"]["archiveAfter"] == "0s"
    assert "rule 'Rule2': Status is Disabled, so S3 does nothing with it; not imported" in result.notes


def test_noncurrent_versions_get_their_own_policies() -> None:
    policies, result = _round_trip(VERSIONED_BUCKET)
    assert result.losses == []
    noncurrent = [p for p in policies.tiering if p.spec.selector.versions == "noncurrent"]
    current = [p for p in policies.tiering if p.spec.selector.versions == "current"]
    assert len(current) == 1 and noncurrent
    # The current version follows its age; an old version the time since it was superseded.
    assert _decide(policies, _obj("k", 40))[:2] == ("cold", "move")
    old = _obj("k", 400, superseded_at=NOW - 10 * DAY)
    assert _decide(policies, old)[:2] == ("warm", "keep")
    assert _decide(policies, _obj("k", 400, "cold", superseded_at=NOW - 100 * DAY))[:2] == ("archive", "move")
    assert _decide(policies, _obj("k", 800, "archive", superseded_at=NOW - 366 * DAY))[:2] == (
        "archive",
        "expire",
    )
    # Small noncurrent versions are not transitioned (S3's 128 KiB default) but do expire.
    assert _decide(policies, _obj("k", 400, size=10, superseded_at=NOW - 100 * DAY))[:2] == ("warm", "keep")
    assert _decide(policies, _obj("k", 800, size=10, superseded_at=NOW - 366 * DAY))[:2] == ("warm", "expire")


def test_current_expiration_never_touches_noncurrent_versions() -> None:
    config = {"Rules": [{"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 7}}]}
    policies, _ = _round_trip(config)
    assert _decide(policies, _obj("k", 30))[:2] == ("warm", "expire")
    # S3: Expiration acts on the current version only; a noncurrent one stays for ever.
    assert _decide(policies, _obj("k", 30, superseded_at=NOW - 20 * DAY)) == ("warm", "keep", None)


def test_newer_noncurrent_versions_keeps_the_newest_n() -> None:
    policies, result = _round_trip(DELETE_MARKERS)
    assert result.losses == []
    (policy,) = policies.tiering
    assert policy.spec.selector.newer_noncurrent_versions == 2
    assert policy.spec.expire_after == 30 * 86400.0
    # S3 [NCE]: "If there are this many more recent noncurrent versions, Amazon S3 will take the
    # associated action": the two newest noncurrent versions stay, older ones expire after 30 days.
    for newer, action in ((0, "keep"), (1, "keep"), (2, "expire"), (5, "expire")):
        obj = _obj("logs/a", 100, superseded_at=NOW - 40 * DAY, newer_noncurrent=newer)
        assert _decide(policies, obj)[1] == action, newer
    assert (
        _decide(policies, _obj("logs/a", 100, superseded_at=NOW - 10 * DAY, newer_noncurrent=5))[1] == "keep"
    )
    assert any("ExpiredObjectDeleteMarker" in n for n in result.notes)


def test_abort_incomplete_multipart_upload_is_what_liquid_does_itself() -> None:
    result = _import(ABORT_MULTIPART)
    assert result.documents == [] and result.losses == []
    assert any("AbortIncompleteMultipartUpload (7 days): Liquid does this itself" in n for n in result.notes)


def test_dates() -> None:
    policies, _ = _round_trip(DATES)
    (policy,) = [p for p in policies.tiering if p.spec.rules]
    assert policy.spec.rules[0].demote_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert policy.spec.expire_at == datetime(2028, 1, 1, tzinfo=UTC)


def test_scope_is_required_or_explicit() -> None:
    config = {"Rules": [{"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 7}}]}
    with pytest.raises(PolicyError, match="needs a scope"):
        import_s3_lifecycle(config)
    result = import_s3_lifecycle(config, tenant="acme", namespace="bucket")
    assert result.documents[0]["spec"]["selector"]["tenants"] == ["acme"]
    assert result.documents[0]["spec"]["selector"]["namespaces"] == ["bucket"]
    assert result.scope == "tenants=acme, namespaces=bucket"
    everywhere = import_s3_lifecycle(config, all_tenants=True)
    assert "tenants" not in everywhere.documents[0]["spec"]["selector"]
    assert everywhere.scope == "every tenant and namespace"
    assert "# scope: every tenant and namespace" in everywhere.yaml()


# -- what S3 would reject ----------------------------------------------------------------------


def test_the_three_inputs_of_the_issue_fail_with_a_path() -> None:
    typo = {"Rules": [{"ID": "r", "Status": "Enabled", "Filter": {"Prefx": "a/"}, "Expiration": {"Days": 3}}]}
    assert _problems(typo) == (
        "Rules[0].Filter.Prefx: unknown key; allowed: And, ObjectSizeGreaterThan, "
        "ObjectSizeLessThan, Prefix, Tag",
    )
    lower = {"rules": [{"id": "r", "status": "Enabled", "filter": {}, "expiration": {"days": 3}}]}
    assert _problems(lower) == ("rules: unknown key (S3 keys are case-sensitive: 'Rules')",)
    lower_rule = {
        "Rules": [{"id": "r", "status": "Enabled", "filter": {"prefix": "a/"}, "expiration": {"days": 3}}]
    }
    assert _problems(lower_rule) == (
        "Rules[0].id: unknown key (S3 keys are case-sensitive: 'ID')",
        "Rules[0].status: unknown key (S3 keys are case-sensitive: 'Status')",
        "Rules[0].filter: unknown key (S3 keys are case-sensitive: 'Filter')",
        "Rules[0].expiration: unknown key (S3 keys are case-sensitive: 'Expiration')",
        "Rules[0]: no action; S3 requires at least one of Expiration, Transitions, "
        "NoncurrentVersionExpiration, "
        "NoncurrentVersionTransitions, AbortIncompleteMultipartUpload",
    )
    no_status = {"Rules": [{"ID": "r", "Filter": {"Prefix": "a/"}, "Expiration": {"Days": 3}}]}
    assert _problems(no_status) == ('Rules[0].Status: missing; S3 requires "Enabled" or "Disabled"',)


def _rule(**fields: Any) -> dict[str, Any]:
    return {"Rules": [{"ID": "r", "Status": "Enabled", "Filter": {}, **fields}]}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ([1, 2], "(top level): expected a JSON object, got an array"),
        ({"Rules": []}, "Rules: empty; S3 requires at least one rule"),
        ({}, "Rules: missing"),
        (
            {"Rules": [{"ID": "r", "Status": "enabled", "Filter": {}, "Expiration": {"Days": 1}}]},
            'Rules[0].Status: \'enabled\' is not valid; allowed: "Enabled", "Disabled"',
        ),
        (
            {"Rules": [{"ID": "r", "Status": "Enabled", "Expiration": {"Days": 1}}]},
            'Rules[0].Filter: missing; S3 requires Filter (use "Filter": {} for every object)',
        ),
        (
            {
                "Rules": [
                    {"ID": "r", "Status": "Enabled", "Prefix": "a", "Filter": {}, "Expiration": {"Days": 1}}
                ]
            },
            "Rules[0].Prefix: a rule has either Filter or the deprecated Prefix, not both",
        ),
        (
            _rule(Filter={"Prefix": "a/", "Tag": {"Key": "k", "Value": "v"}}, Expiration={"Days": 1}),
            "Rules[0].Filter: has Prefix, Tag; S3 allows exactly one of them (combine conditions with And)",
        ),
        (
            _rule(Filter={"And": {"Prefix": "a/"}}, Expiration={"Days": 1}),
            "Rules[0].Filter.And: has 1 condition; S3's And needs two or more",
        ),
        (
            _rule(
                Filter={"And": {"Tags": [{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}]}},
                Expiration={"Days": 1},
            ),
            "Rules[0].Filter.And.Tags[1].Key: 'k' appears twice; tag keys must be unique",
        ),
        (_rule(Filter={"Tag": {"Value": "v"}}, Expiration={"Days": 1}), "Rules[0].Filter.Tag.Key: missing"),
        (
            _rule(
                Filter={"And": {"ObjectSizeGreaterThan": 500, "ObjectSizeLessThan": 500}},
                Expiration={"Days": 1},
            ),
            "Rules[0].Filter.And.ObjectSizeLessThan: 500 is not above ObjectSizeGreaterThan 500: "
            "no object can match",
        ),
        (
            _rule(Filter={"ObjectSizeGreaterThan": -1}, Expiration={"Days": 1}),
            "Rules[0].Filter.ObjectSizeGreaterThan: -1 is out of range; must be at least 0",
        ),
        (
            _rule(),
            "Rules[0]: no action; S3 requires at least one of Expiration, Transitions, "
            "NoncurrentVersionExpiration, NoncurrentVersionTransitions, AbortIncompleteMultipartUpload",
        ),
        (_rule(Expiration={"Days": 0}), "Rules[0].Expiration.Days: 0 is out of range; must be at least 1"),
        (_rule(Expiration={"Days": 1.5}), "Rules[0].Expiration.Days: expected a whole number, got 1.5"),
        (_rule(Expiration={"Days": "3"}), "Rules[0].Expiration.Days: expected a whole number, got '3'"),
        (
            _rule(Expiration={"Days": 3, "ExpiredObjectDeleteMarker": True}),
            "Rules[0].Expiration: has Days, ExpiredObjectDeleteMarker; S3 requires exactly one of "
            "Days, Date and "
            "ExpiredObjectDeleteMarker",
        ),
        (
            _rule(Expiration={"Date": "2027-01-01T12:00:00Z"}),
            "Rules[0].Expiration.Date: '2027-01-01T12:00:00Z' is not midnight UTC; S3 dates are "
            "always midnight UTC",
        ),
        (
            _rule(Expiration={"Date": "soon"}),
            "Rules[0].Expiration.Date: expected an ISO 8601 date such as 2027-01-31T00:00:00Z, got 'soon'",
        ),
        (
            _rule(Transitions=[{"Days": 29, "StorageClass": "STANDARD_IA"}]),
            "Rules[0].Transitions[0].Days: 29 is out of range; must be at least 30",
        ),
        (
            _rule(Transitions=[{"Days": 10, "StorageClass": "ONEZONE_IA"}]),
            "Rules[0].Transitions[0].Days: 10 is out of range; must be at least 30",
        ),
        (
            _rule(Transitions=[{"Days": 10, "StorageClass": "COLD"}]),
            "Rules[0].Transitions[0].StorageClass: 'COLD' is not valid; allowed: STANDARD_IA, "
            "INTELLIGENT_TIERING, "
            "ONEZONE_IA, GLACIER_IR, GLACIER, DEEP_ARCHIVE",
        ),
        (
            _rule(Transitions=[{"StorageClass": "GLACIER"}]),
            "Rules[0].Transitions[0]: needs exactly one of Days and Date",
        ),
        (
            _rule(
                Transitions=[
                    {"Days": 60, "StorageClass": "GLACIER"},
                    {"Days": 90, "StorageClass": "STANDARD_IA"},
                ]
            ),
            "Rules[0].Transitions[0]: GLACIER must come after STANDARD_IA (Transitions[1]): S3 "
            "only transitions "
            "objects down its storage-class waterfall",
        ),
        (
            _rule(
                Transitions=[
                    {"Days": 90, "StorageClass": "GLACIER"},
                    {"Days": 120, "StorageClass": "GLACIER"},
                ]
            ),
            "Rules[0].Transitions[1].StorageClass: GLACIER is also the target of Transitions[0]",
        ),
        (
            _rule(Transitions=[{"Days": 90, "StorageClass": "GLACIER"}], Expiration={"Days": 90}),
            "Rules[0].Expiration: must come after every transition; Transitions[0] (GLACIER) is "
            "not before it",
        ),
        (
            _rule(Transitions=[{"Days": 90, "StorageClass": "GLACIER"}], Expiration={"Date": "2030-01-01"}),
            "Rules[0]: mixes Date and Days in Transitions/Expiration; S3 requires one form per rule",
        ),
        (
            _rule(NoncurrentVersionExpiration={"NoncurrentDays": 0}),
            "Rules[0].NoncurrentVersionExpiration.NoncurrentDays: 0 is out of range; must be at least 1",
        ),
        (
            _rule(NoncurrentVersionExpiration={"NoncurrentDays": 5, "NewerNoncurrentVersions": 101}),
            "Rules[0].NoncurrentVersionExpiration.NewerNoncurrentVersions: 101 is out of range; "
            "must be at least 1 "
            "and at most 100",
        ),
        (
            _rule(NoncurrentVersionTransitions=[{"NoncurrentDays": 5, "StorageClass": "STANDARD_IA"}]),
            "Rules[0].NoncurrentVersionTransitions[0].NoncurrentDays: 5 is out of range; must be at least 30",
        ),
        (
            _rule(NoncurrentVersionTransitions=[{"StorageClass": "GLACIER"}]),
            "Rules[0].NoncurrentVersionTransitions[0].NoncurrentDays: missing",
        ),
        (
            _rule(Transition={"Days": 5, "StorageClass": "GLACIER"}),
            "Rules[0].Transition: unknown key; allowed: AbortIncompleteMultipartUpload, Expiration, "
            "Filter, ID, NoncurrentVersionExpiration, NoncurrentVersionTransitions, Prefix, "
            "Status, Transitions",
        ),
        (
            _rule(
                Filter={"Tag": {"Key": "k", "Value": "v"}},
                AbortIncompleteMultipartUpload={"DaysAfterInitiation": 7},
            ),
            "Rules[0].AbortIncompleteMultipartUpload: S3 does not allow "
            "AbortIncompleteMultipartUpload in a rule "
            "that filters by tags",
        ),
        (
            _rule(AbortIncompleteMultipartUpload={"DaysAfterInitiation": 0}),
            "Rules[0].AbortIncompleteMultipartUpload.DaysAfterInitiation: 0 is out of range; must "
            "be at least 1",
        ),
        (
            _rule(ID="x" * 256, Expiration={"Days": 1}),
            "Rules[0].ID: 256 characters; S3 allows at most 255 ([RULE] ID)",
        ),
        (
            {"Rules": [], "TransitionDefaultMinimumObjectSize": "tiny"},
            "TransitionDefaultMinimumObjectSize: 'tiny' is not valid; allowed: all_storage_classes_128K, "
            "varies_by_storage_class",
        ),
    ],
)
def test_what_s3_rejects_is_an_error_with_a_path(config: Any, expected: str) -> None:
    assert expected in _problems(config)


def test_duplicate_ids_and_too_many_rules() -> None:
    rule = {"ID": "same", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}}
    assert _problems({"Rules": [rule, rule]}) == (
        "Rules[1].ID: 'same' is also the ID of Rules[0]; IDs must be unique",
    )
    many = [{**rule, "ID": f"r{i}"} for i in range(1001)]
    assert "Rules: 1001 rules; S3 allows at most 1000 ([ELEMENTS])" in _problems({"Rules": many})


def test_every_problem_is_reported_at_once_and_nothing_is_imported() -> None:
    config = {
        "Rules": [
            {"ID": "a", "Status": "On", "Filter": {}, "Expiration": {"Days": -1}},
            {"ID": "b", "Status": "Enabled", "Filter": {"Prefx": "x"}, "Expiration": {"Days": 1}},
        ]
    }
    problems = _problems(config)
    assert [p.split(":")[0] for p in problems] == [
        "Rules[0].Status",
        "Rules[0].Expiration.Days",
        "Rules[1].Filter.Prefx",
    ]


def test_wrapped_config() -> None:
    result = _import({"LifecycleConfiguration": PREFIX_TRANSITION_EXPIRATION})
    assert len(result.documents) == 2
    assert _problems({"LifecycleConfiguration": {"Rules": [{"ID": "r"}]}})[0].startswith(
        "LifecycleConfiguration.Rules[0].Status"
    )


# -- what Liquid cannot express ----------------------------------------------------------------


def test_losses_fail_the_import_each_listed_unless_lossy() -> None:
    config = {
        "Rules": [
            {
                "ID": "tiers",
                "Status": "Enabled",
                "Filter": {},
                "Transitions": [
                    {"Days": 30, "StorageClass": "INTELLIGENT_TIERING"},
                    {"Days": 90, "StorageClass": "GLACIER_IR"},
                    {"Days": 180, "StorageClass": "DEEP_ARCHIVE"},
                ],
            },
            {
                "ID": "versions",
                "Status": "Enabled",
                "Filter": {"Prefix": "v/"},
                "Expiration": {"Days": 10},
                "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
            },
        ]
    }
    with pytest.raises(S3ImportLoss) as info:
        _import(config)
    assert info.value.losses == [
        "rule 'tiers': Transitions to INTELLIGENT_TIERING moves objects by their access pattern; "
        "Liquid would "
        "make it a plain move to cold (its promoteAbove/demoteBelow rules do that job)",
        "rule 'tiers': Transitions to DEEP_ARCHIVE after GLACIER_IR: both are Liquid's archive tier, so this "
        "second transition would do nothing",
        "rule 'versions': Expiration on a versioned bucket (this rule has noncurrent actions) "
        "makes the current "
        "version noncurrent behind a delete marker, so S3 keeps it until NoncurrentVersionExpiration; Liquid "
        "expires (deletes) it at once",
    ]
    result = _import(config, lossy=True)
    assert result.losses == info.value.losses
    assert all(f"# LOSS (imported with --lossy): {loss}" in result.yaml() for loss in result.losses)
    load_policy_text(result.yaml(), "lossy.yaml")


# -- several matching rules: S3's outcome ------------------------------------------------------

# The configuration of the issue (a prefix-archive rule and a size-expire rule) plus an
# overlapping tag rule and a shorter expiration. What S3 does with one object, from the
# S3 User Guide "How Amazon S3 handles conflicts in lifecycle configurations":
#   * S3 applies the actions of every rule whose filter matches ("overlapping prefixes, no
#     conflict": each rule's action happens at its time);
#   * "if two expiration policies overlap, the shorter expiration policy is honored";
#   * "Permanent deletion takes precedence over transition";
#   * among transitions the lower-cost class wins (GLACIER over STANDARD_IA);
#   * transitions skip objects under 128 KiB (TransitionDefaultMinimumObjectSize default).
OVERLAPPING = {
    "Rules": [
        {
            "ID": "archive-documents",
            "Status": "Enabled",
            "Filter": {"Prefix": "documents/"},
            "Transitions": [
                {"Days": 30, "StorageClass": "STANDARD_IA"},
                {"Days": 90, "StorageClass": "GLACIER"},
            ],
        },
        {
            "ID": "expire-large",
            "Status": "Enabled",
            "Filter": {"ObjectSizeGreaterThan": 10 * BIG},
            "Expiration": {"Days": 60},
        },
        {
            "ID": "scratch",
            "Status": "Enabled",
            "Filter": {"Tag": {"Key": "kind", "Value": "scratch"}},
            "Expiration": {"Days": 7},
        },
        {"ID": "all", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 365}},
        {
            "ID": "reports-ia",
            "Status": "Enabled",
            "Filter": {"Prefix": "documents/reports/"},
            "Transitions": [
                {"Days": 45, "StorageClass": "STANDARD_IA"},
                {"Days": 60, "StorageClass": "GLACIER_IR"},
            ],
        },
    ]
}

HUGE = 20 * BIG
# (key, size, tags, age in days, home tier) → (tier, action), derived by hand from the rules above.
S3_OUTCOMES = [
    # documents/, 1 MiB: archive-documents (IA 30, GLACIER 90) + all (expire 365).
    (("documents/a", BIG, {}, 10, "warm"), ("warm", "keep")),
    (("documents/a", BIG, {}, 31, "warm"), ("cold", "move")),
    (("documents/a", BIG, {}, 91, "cold"), ("archive", "move")),
    (("documents/a", BIG, {}, 366, "archive"), ("archive", "expire")),
    # documents/, 20 MiB: also expire-large (60): the shorter expiration wins, and deletion wins over
    # the GLACIER transition at 90, which never happens. The issue's case: it does expire.
    (("documents/big", HUGE, {}, 31, "warm"), ("cold", "move")),
    (("documents/big", HUGE, {}, 61, "cold"), ("cold", "expire")),
    # documents/, small (under 128 KiB): no transition at all, only the expirations.
    (("documents/small", 1000, {}, 100, "warm"), ("warm", "keep")),
    (("documents/small", 1000, {}, 366, "warm"), ("warm", "expire")),
    # scratch tag: 7 days beats everything else that matches.
    (("documents/s", HUGE, {"kind": "scratch"}, 8, "warm"), ("warm", "expire")),
    (("other/s", 1000, {"kind": "scratch"}, 6, "warm"), ("warm", "keep")),
    (("other/s", 1000, {"kind": "scratch"}, 8, "warm"), ("warm", "expire")),
    # documents/reports/: both transition rules. STANDARD_IA at 30 (archive-documents) comes first;
    # the cheaper GLACIER_IR at 60 (reports-ia) wins over GLACIER at 90.
    (("documents/reports/q1", BIG, {}, 31, "warm"), ("cold", "move")),
    (("documents/reports/q1", BIG, {}, 61, "cold"), ("archive", "move")),
    # Anything else: only "all".
    (("photos/p", HUGE, {}, 61, "warm"), ("warm", "expire")),
    (("photos/p", BIG, {}, 364, "warm"), ("warm", "keep")),
    (("photos/p", BIG, {}, 366, "warm"), ("warm", "expire")),
]


@pytest.mark.parametrize(("facts", "outcome"), S3_OUTCOMES, ids=[f"{f[0]}-{f[3]}d" for f, _ in S3_OUTCOMES])
def test_overlapping_rules_give_s3s_outcome(facts: tuple[Any, ...], outcome: tuple[str, str]) -> None:
    policies, result = _round_trip(OVERLAPPING)
    assert result.losses == [] and not policies.warnings
    key, size, tags, age, tier = facts
    assert _decide(policies, _obj(key, age, tier, size=size, tags=tags))[:2] == outcome


def test_overlapping_rules_make_one_policy_per_combination() -> None:
    policies, _ = _round_trip(OVERLAPPING)
    obj = _obj("documents/big", 61, "cold", size=HUGE)
    chosen = next(p for p in policies.tiering if p.name == evaluate(policies, obj, NOW).policy)
    assert "'archive-documents'" in chosen.metadata.annotations["description"]
    assert "'expire-large'" in chosen.metadata.annotations["description"]
    # Every name is unique and valid; the set is bounded.
    assert len({p.name for p in policies.tiering}) == len(policies.tiering) < 40


def test_too_many_overlapping_combinations_are_refused() -> None:
    rules = [
        {
            "ID": f"t{i}",
            "Status": "Enabled",
            "Filter": {"Tag": {"Key": f"k{i}", "Value": "v"}},
            "Expiration": {"Days": i + 1},
        }
        for i in range(12)
    ]
    with pytest.raises(PolicyError, match="import the configuration in parts"):
        _import({"Rules": rules})
