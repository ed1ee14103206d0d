"""Loader behaviours beyond the broken corpus: files, directories, YAML features, the PolicySet."""

from __future__ import annotations

from pathlib import Path

import pytest

from liquid.policy import PolicyValidationError, Problem, load_policies, load_policy_text

POLICY = """\
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {{name: {name}}}
spec:
  rules: [{{tier: warm, demoteAfter: 1d}}, {{tier: cold}}]
"""


def _problems(text: str, name: str = "p.yaml") -> list[str]:
    with pytest.raises(PolicyValidationError) as info:
        load_policy_text(text, name)
    return [str(p) for p in info.value.problems]


def test_units_become_plain_numbers() -> None:
    policies = load_policy_text(
        """
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: units}
spec:
  selector: {minSize: 4KiB, maxSize: 1.5GB}
  rules:
    - {tier: hot, demoteAfter: 1h30m, promoteAbove: 1/min, demoteBelow: 2}
    - {tier: warm, demoteAt: 2027-01-31}
    - {tier: cold}
  minResidency: 90
""",
        "units.yaml",
    )
    spec = policies.tiering[0].spec
    assert (spec.selector.min_size, spec.selector.max_size) == (4096, 1_500_000_000)
    hot = spec.rules[0]
    assert (hot.demote_after, hot.promote_above, hot.demote_below) == (5400.0, 60.0, 2.0)
    assert spec.min_residency == 90.0
    assert (
        spec.rules[1].demote_at is not None
        and spec.rules[1].demote_at.isoformat() == "2027-01-31T00:00:00+00:00"
    )


def test_documents_dump_back_in_human_units_and_reload_identically() -> None:
    policies = load_policies([Path(__file__).resolve().parents[2] / "policies"])
    import yaml

    text = yaml.safe_dump_all(policies.documents(), sort_keys=False)
    assert "2TiB" in text and "7d" in text
    again = load_policy_text(text, "dumped.yaml")
    assert again.tiering == policies.tiering
    assert again.budgets == policies.budgets
    assert again.cost_models == policies.cost_models


def test_several_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(POLICY.format(name="a"))
    (tmp_path / "b.yml").write_text(POLICY.format(name="b"))
    (tmp_path / "notes.txt").write_text("not yaml: [")
    policies = load_policies([tmp_path])
    assert sorted(p.name for p in policies.tiering) == ["a", "b"]
    assert policies.locate("TieringPolicy", "b", ("spec", "rules", 1)) == (str(tmp_path / "b.yml"), 5, 42)


def test_errors_are_collected_across_files(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(POLICY.format(name="same") + "---\n" + POLICY.format(name="BAD"))
    (tmp_path / "two.yaml").write_text(POLICY.format(name="same"))
    missing = tmp_path / "missing.yaml"
    with pytest.raises(PolicyValidationError) as info:
        load_policies([tmp_path / "one.yaml", tmp_path / "two.yaml", missing])
    assert [str(p) for p in info.value.problems] == [
        f"{tmp_path}/one.yaml:9:18: metadata.name: 'BAD' is not a valid name; allowed: 1 to 63 "
        "lowercase letters, "
        "digits and '-', starting and ending with a letter or digit (e.g. workflow-results)",
        f"{tmp_path}/two.yaml:3:18: metadata.name: duplicate TieringPolicy name 'same'; first defined at "
        f"{tmp_path}/one.yaml:1:1; allowed: a name no other TieringPolicy uses",
        f"{missing}: cannot read the file: No such file or directory; allowed: a readable UTF-8 YAML file",
    ]


def test_same_name_in_different_kinds_is_fine() -> None:
    text = (
        POLICY.format(name="acme")
        + "---\napiVersion: liquid/v1\nkind: Budget\nmetadata: {name: acme}\nspec: {maxBytes: 1GiB}\n"
    )
    policies = load_policy_text(text)
    assert [p.name for p in policies.tiering] == ["acme"] and [b.name for b in policies.budgets] == ["acme"]


def test_anchors_and_merge_keys_work() -> None:
    text = """
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: merged}
spec:
  rules:
    - &base {tier: hot, demoteAfter: 1d, minResidency: 1h}
    - <<: *base
      tier: warm
    - {tier: cold}
"""
    rules = load_policy_text(text).tiering[0].spec.rules
    assert rules[1].tier == "warm"
    assert (rules[1].demote_after, rules[1].min_residency) == (86400.0, 3600.0)


def test_yaml_11_keys_stay_names() -> None:
    # "on" and "no" are booleans in YAML 1.1 values, but as keys they are names: the
    # message must say 'on', not True.
    assert _problems("apiVersion: liquid/v1\nkind: Budget\nmetadata: {name: b}\nspec:\n  on: 1\n") == [
        "p.yaml:5:3: spec.on: unknown field 'on'; allowed: one of tenant, namespace, maxBytes,"
        " maxMonthlyCost, maxMonthlyRetrievalCost, tiers"
    ]


def test_alias_bomb_and_deep_nesting_end_in_errors() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True)
    )
    assert any("too many values" in m for m in _problems(bomb))
    deep = "a: " + "[" * 200 + "]" * 200 + "\n"
    assert any("nested too deeply" in m for m in _problems(deep))


def test_empty_file_is_a_warning_not_an_error() -> None:
    policies = load_policy_text("# nothing here\n", "empty.yaml")
    assert [str(w) for w in policies.warnings] == ["empty.yaml: warning: no policy documents in this file"]
    assert load_policy_text("---\n---\n" + POLICY.format(name="x")).tiering[0].name == "x"


def test_semantic_errors_are_reported_alongside_type_errors() -> None:
    text = """\
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: both}
spec:
  priority: lots
  rules:
    - {tier: cold}
    - {tier: hot}
"""
    assert _problems(text) == [
        "p.yaml:5:13: spec.priority: expected a whole number, got 'lots'; allowed: a whole number",
        "p.yaml:8:14: spec.rules[1].tier: 'hot' cannot follow 'cold' (rules[0]): rules go from "
        "hotter to colder "
        "tiers, one rule per tier; allowed: one of archive",
    ]


def test_static_warnings_and_notes() -> None:
    text = """\
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: w}
spec:
  legalHold: true
  rules:
    - {tier: warm, maxAge: 400d}
    - {tier: cold}
  archiveAfter: 400d
  expireAfter: 365d
"""
    policies = load_policy_text(text, "w.yaml")
    assert [str(p) for p in policies.warnings] == [
        "w.yaml:7:28: warning: spec.rules[0].maxAge: maxAge 400d is not before expireAfter 365d: "
        "objects expire "
        "before they leave warm",
        "w.yaml:9:17: warning: spec.archiveAfter: archiveAfter 400d is not before expireAfter 365d: "
        "objects expire "
        "before they would be archived",
    ]
    assert [str(p) for p in policies.notes] == [
        "w.yaml:5:14: note: spec.legalHold: legalHold is true, so expireAfter/expireAt never expire "
        "anything until "
        "the hold is lifted"
    ]


def test_problem_formatting() -> None:
    assert (
        str(Problem("f.yaml", 3, 7, "spec.tiers.hot", "bad", "good"))
        == "f.yaml:3:7: spec.tiers.hot: bad; allowed: good"
    )
    assert str(Problem("f.yaml", None, None, "", "unreadable")) == "f.yaml: unreadable"
    assert str(Problem("f.yaml", 1, 1, "spec", "hmm", severity="warning")) == "f.yaml:1:1: warning: spec: hmm"


def test_policy_error_carries_field_of_first_error() -> None:
    with pytest.raises(PolicyValidationError) as info:
        load_policy_text("apiVersion: liquid/v1\nkind: Budget\nmetadata: {name: b}\nspec: {maxBytes: lots}\n")
    assert info.value.field == "spec.maxBytes"
    assert info.value.status == 400 and info.value.type == "liquid:policy"


def test_newer_noncurrent_versions_needs_noncurrent_versions() -> None:
    text = """\
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: keep-newest}
spec:
  selector: {newerNoncurrentVersions: 2}
  expireAfter: 30d
"""
    assert _problems(text) == [
        "p.yaml:5:39: spec.selector.newerNoncurrentVersions: newerNoncurrentVersions counts noncurrent "
        "versions, but versions is any; allowed: versions: noncurrent in the same selector"
    ]
    good = text.replace("{newerNoncurrentVersions: 2}", "{versions: noncurrent, newerNoncurrentVersions: 2}")
    assert load_policy_text(good, "p.yaml").tiering[0].spec.selector.newer_noncurrent_versions == 2
    assert _problems(text.replace("newerNoncurrentVersions: 2", "newerNoncurrentVersions: 0")) == [
        "p.yaml:5:39: spec.selector.newerNoncurrentVersions: 0 is out of range; allowed: a number ≥ 1"
    ]


def test_a_namespace_budget_needs_its_tenant_and_caps_tiers_only() -> None:
    head = "apiVersion: liquid/v1\nkind: Budget\nmetadata: {name: b}\nspec:\n"
    assert _problems(head + "  namespace: logs\n  tiers:\n    warm: {maxBytes: 1GiB}\n") == [
        "p.yaml:5:14: spec.namespace: a namespace Budget needs its tenant; allowed: tenant: <tenant id>"
    ]
    assert _problems(head + "  tenant: acme\n  namespace: logs\n  maxBytes: 1GiB\n") == [
        "p.yaml:7:13: spec.maxBytes: a namespace Budget caps tiers only, not maxBytes; allowed:"
        " tiers.<tier>.maxBytes / maxMonthlyCost (or a tenant Budget without namespace)"
    ]
    both = (
        head
        + "  tenant: acme\n  tiers:\n    warm: {maxBytes: 2GiB}\n---\n"
        + head.replace("name: b", "name: c")
    )
    ok = load_policy_text(
        both + "  tenant: acme\n  namespace: logs\n  tiers:\n    warm: {maxBytes: 1GiB}\n", "p.yaml"
    )
    assert [(b.spec.tenant, b.spec.namespace) for b in ok.budgets] == [("acme", None), ("acme", "logs")]
