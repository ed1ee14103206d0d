"""Evaluation results pinned on generated objects, so optimising evaluate() cannot change an answer.

``evaluate_pinned.json`` holds seeded-random objects over the shipped policies, the
placement benchmark's policies, the evaluation table's policies and the selector-heavy
``EDGES`` below, with every Decision field (reason and next_change_at included) as the
implementation of 2026-12 computed it. The inputs live in the fixture rather than being
regenerated, so a change to the generator or to ``random`` cannot move the goalposts.

Regenerate only for an intended change of behaviour, and review the diff:
``python -m tests.policy.test_evaluate_pinned --record``.
"""

from __future__ import annotations

import fnmatch
import functools
import gc
import json
import pickle
import random
import sys
import weakref
from collections.abc import Iterator
from dataclasses import FrozenInstanceError, fields
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liquid.policy import (
    TIERS,
    Decision,
    ObjectFacts,
    PolicySet,
    evaluate,
    evaluate_policy,
    load_policies,
    load_policy_text,
    matches,
    select_policy,
)
from liquid.policy.models import SCOPES, Selector
from tests.policy.test_evaluate import POLICIES as TABLE_POLICIES

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).with_name("evaluate_pinned.json")
CASES_PER_SET = 150

# Selectors with every condition, globs with character classes, dates, a zero
# half-life, per-rule residency, promotion at several levels and an empty ladder: the
# paths the shipped policies do not reach.
EDGES = """
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: picky}
spec:
  priority: 900
  selector:
    tenants: [acme, beta]
    namespaces: ["kb-*", "docs", "img-[0-9]?"]
    keyPrefix: docs/
    tags: {embedded: "true", team: search}
    minSize: 1KiB
    maxSize: 1MiB
    contentTypes: ["text/*", "application/[jx]s*"]
    classifications: [internal, pii]
    versions: current
  rules:
    - {name: busy, tier: hot, demoteBelow: 2/h, promoteAbove: 5/h, minResidency: 10m}
    - {name: calm, tier: warm, demoteAfter: 3d, promoteAbove: 1/h}
    - {name: cold, tier: cold, maxAge: 60d}
    - {tier: archive}
  accessHalfLife: 2h
  minResidency: 1h
  archiveAt: 2031-09-01
  expireAt: 2032-01-01T12:00:00Z
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: dated}
spec:
  priority: 800
  selector: {namespaces: ["campaign*"], scopes: [workflow, permanent]}
  restoreOnAccess: false
  rules:
    - {tier: warm, demoteAt: 2031-03-01, minResidency: 2d}
    - {tier: cold, demoteAfter: 45d}
    - {tier: archive}
  accessHalfLife: 0s
  archiveAfter: 400d
  expireAfter: 1095d
  legalHold: false
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: versions}
spec:
  priority: 700
  selector: {versions: noncurrent, contentTypes: ["*/json", "text/?sv"]}
  rules:
    - {tier: cold, demoteAfter: 1h30m}
    - {tier: archive}
  expireAfter: 30d
  legalHold: true
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: bare}
spec:
  priority: 600
  selector: {classifications: [secret], minSize: 10MiB}
  archiveAfter: 90s
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: rates}
spec:
  priority: 500
  selector: {keyPrefix: "feat/"}
  rules:
    - {tier: hot, demoteBelow: 0.5/min, promoteAbove: 1/min}
    - {tier: warm, demoteBelow: 1/d, demoteAfter: 12h}
    - {tier: cold}
  accessHalfLife: 90m
  minResidency: 5m
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: single}
spec:
  priority: 1
  selector: {tenants: [solo]}
  rules: [{tier: hot}]
  minResidency: 1.5s
  archiveAfter: 2h
"""


@functools.cache
def policy_sets() -> dict[str, PolicySet]:
    """Every policy set the fixture was recorded against, by the name it records."""
    return {
        "examples": load_policies([ROOT / "policies"]),
        "demo": load_policies([ROOT / "policies" / "demo.yaml"]),
        "placement": load_policies([ROOT / "benchmarks" / "placement" / "policy.yaml"]),
        "placement-workflow": load_policies([ROOT / "benchmarks" / "placement" / "policy-workflow.yaml"]),
        "table": TABLE_POLICIES,
        "edges": load_policy_text(EDGES, "edges.yaml"),
    }


# -- generating objects (only when recording) ----------------------------------------------------


class _Vocabulary:
    """Values a policy set reacts to, so generated objects land on and around its thresholds."""

    def __init__(self, policies: PolicySet) -> None:
        self.tenants = {"acme", "demo", "other", "solo", "beta"}
        self.namespaces = {"results", "kb", "audit", "artifacts", "elsewhere", "x"}
        self.prefixes = {"docs/", "feat/", "tmp/", "k/"}
        self.tags: dict[str, set[str]] = {"embedded": {"true", "false"}, "team": {"search", "ops"}}
        self.content_types = {"application/octet-stream", "text/plain", "application/json", "text/csv"}
        self.classifications = {"internal", "pii", "secret", "public"}
        self.sizes = {0, 1, 1023, 1024, 1025, 2**20 - 1, 2**20, 2**20 + 1, 10 * 2**20, 2**40}
        self.durations = {0.0, 1.0, 60.0, 3600.0, 86400.0, 30 * 86400.0, 400 * 86400.0}
        self.rates = {0.0, 0.001, 0.5, 1.0, 10.0, 100.0}
        self.instants: set[datetime] = set()
        for policy in policies.tiering:
            spec, sel = policy.spec, policy.spec.selector
            self.tenants.update(sel.tenants)
            for glob in sel.namespaces:
                self.namespaces.update(
                    {glob.replace("*", "").replace("?", "1").replace("[0-9]", "7"), glob.replace("*", "-z")}
                )
            if sel.key_prefix:
                self.prefixes.add(sel.key_prefix)
            for k, v in sel.tags.items():
                self.tags.setdefault(k, set()).add(v)
            for glob in sel.content_types:
                self.content_types.add(glob.replace("*", "md").replace("?", "t").replace("[jx]", "j"))
            self.classifications.update(sel.classifications)
            for size in (sel.min_size, sel.max_size):
                if size is not None:
                    self.sizes.update({size - 1, size, size + 1})
            times = [spec.min_residency, spec.archive_after, spec.expire_after, spec.access_half_life]
            for rule in spec.rules:
                times += [rule.demote_after, rule.max_age, rule.min_residency]
                self.rates.update(r for r in (rule.promote_above, rule.demote_below) if r is not None)
                if rule.demote_at is not None:
                    self.instants.add(rule.demote_at)
            self.durations.update(t for t in times if t is not None)
            self.instants.update(i for i in (spec.archive_at, spec.expire_at) if i is not None)


def _duration(rng: random.Random, vocab: _Vocabulary) -> float:
    """Seconds: exactly on a threshold, a hair either side of one, a sum of two, or anything."""
    pick = rng.random()
    base = rng.choice(sorted(vocab.durations))
    if pick < 0.25:
        return base
    if pick < 0.45:
        return max(0.0, base + rng.choice([-1.0, -1e-3, -1e-6, 1e-6, 1e-3, 1.0, 30.0]))
    if pick < 0.55:
        return base + rng.choice(sorted(vocab.durations))
    return 10 ** rng.uniform(0, 8.2)  # 1s to about 5 years, as many minutes as months


def _rate(rng: random.Random, vocab: _Vocabulary) -> float:
    pick = rng.random()
    base = rng.choice(sorted(vocab.rates))
    if pick < 0.3:
        return base
    if pick < 0.5:
        return base * rng.choice([0.5, 0.999, 1.001, 2.0, 1.0000001])
    if pick < 0.6:
        return 0.0
    return 10 ** rng.uniform(-4, 3)


def _zone(rng: random.Random) -> timezone:
    # Offsets other than UTC, so every conversion to epoch seconds has to honour them.
    return rng.choice(
        [UTC, UTC, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    )


def _instance(rng: random.Random, glob: str) -> str:
    """A string the glob matches (the globs here use ``*``, ``?`` and simple ``[...]`` classes)."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if c == "[":
            end = glob.index("]", i)
            out.append(rng.choice(glob[i + 1 : end].replace("0-9", "0123456789")))
            i = end + 1
            continue
        out.append({"*": rng.choice(["", "-a", "x1/y"]), "?": rng.choice("qz7")}.get(c, c))
        i += 1
    return "".join(out)


def _aim(rng: random.Random, sel: Selector, args: dict[str, Any], vocab: _Vocabulary) -> None:
    """Make the object meet (most of) a selector's conditions, each kept with high probability."""

    def keep() -> bool:
        return rng.random() < 0.93

    if sel.tenants and keep():
        args["tenant"] = rng.choice(sel.tenants)
    if sel.namespaces and keep():
        args["namespace"] = _instance(rng, rng.choice(sel.namespaces))
    if sel.key_prefix and keep():
        args["key"] = sel.key_prefix + args["key"]
    if sel.tags and keep():
        args["tags"] = {**args["tags"], **sel.tags}
    if sel.min_size is not None or sel.max_size is not None:
        low, high = sel.min_size or 0, sel.max_size or 2**40
        if keep():
            args["size"] = rng.choice([low, high, rng.randint(low, high)])
    if sel.content_types and keep():
        args["content_type"] = _instance(rng, rng.choice(sel.content_types))
    if sel.classifications and keep():
        args["classification"] = rng.choice(sel.classifications)
    if sel.scopes and keep():
        args["scope"] = rng.choice(sel.scopes)
    if sel.versions == "current" and keep():
        args["superseded_at"] = None
    if sel.versions == "noncurrent" and args["superseded_at"] is None and keep():
        args["superseded_at"] = args["created_at"] + timedelta(seconds=_duration(rng, vocab))


def _facts(rng: random.Random, vocab: _Vocabulary, policies: PolicySet) -> tuple[dict[str, Any], datetime]:
    """One generated object (as the keyword arguments of ObjectFacts) and the evaluation time."""
    if vocab.instants and rng.random() < 0.3:
        anchor = rng.choice(sorted(vocab.instants))
        now = anchor + timedelta(seconds=rng.choice([-86400.0, -1.0, 0.0, 1e-6, 1.0, 3600.0]))
    else:
        now = datetime(2031, 6, 1, tzinfo=UTC) + timedelta(seconds=rng.uniform(-1e8, 5e7))
    now = now.astimezone(_zone(rng))

    def before(seconds: float) -> datetime:
        return (now - timedelta(seconds=seconds)).astimezone(_zone(rng))

    created = before(_duration(rng, vocab))
    tags = {k: rng.choice(sorted(v)) for k, v in sorted(vocab.tags.items()) if rng.random() < 0.6}
    ns = rng.choice(sorted(vocab.namespaces)) if rng.random() < 0.9 else f"ns-{rng.randrange(100)}"
    args: dict[str, Any] = {
        "tenant": rng.choice(sorted(vocab.tenants)),
        "namespace": ns,
        "key": rng.choice(sorted(vocab.prefixes)) + f"obj-{rng.randrange(10**6)}",
        "size": rng.choice(sorted(vocab.sizes)) if rng.random() < 0.6 else rng.randrange(2**31),
        "created_at": created,
        "home_tier": rng.choice(TIERS),
        "content_type": rng.choice(sorted(vocab.content_types)),
        "tags": tags,
        "classification": rng.choice([None, *sorted(vocab.classifications)]),
        "last_access_at": None if rng.random() < 0.25 else before(_duration(rng, vocab)),
        "access_score": _rate(rng, vocab),
        "home_since": None if rng.random() < 0.3 else before(_duration(rng, vocab)),
        "legal_hold": rng.random() < 0.12,
        "scope": None if rng.random() < 0.5 else rng.choice(SCOPES),
        "execution_finished_at": None if rng.random() < 0.3 else before(_duration(rng, vocab)),
        "superseded_at": None if rng.random() < 0.6 else before(_duration(rng, vocab)),
    }
    if policies.tiering and rng.random() < 0.7:
        _aim(rng, rng.choice(policies.tiering).spec.selector, args, vocab)
    # A few invalid inputs: the errors are part of the behaviour too.
    odd = rng.random()
    if odd < 0.01:
        args["home_tier"] = "tepid"
    elif odd < 0.02:
        args["created_at"] = created.replace(tzinfo=None)
    elif odd < 0.03:
        now = now.replace(tzinfo=None)
    elif odd < 0.04 and args["last_access_at"] is not None:
        args["last_access_at"] = args["last_access_at"].replace(tzinfo=None)
    return args, now


# -- the fixture's format ------------------------------------------------------------------------

_TIMES = ("created_at", "last_access_at", "home_since", "execution_finished_at", "superseded_at")


_FACT_FIELDS = [f.name for f in fields(ObjectFacts)]


def _encode_facts(facts: ObjectFacts) -> list[Any]:
    """Every field in order: positions, not names, keep the fixture small."""
    return [_encode_time(getattr(facts, k)) if k in _TIMES else getattr(facts, k) for k in _FACT_FIELDS]


def _encode_time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _decode_facts(data: list[Any]) -> ObjectFacts:
    # Fields added after the fixture was pinned (newer_noncurrent) are absent: they take their
    # defaults, which is what the pinned decisions were computed with.
    args: dict[str, Any] = dict(zip(_FACT_FIELDS[: len(data)], data, strict=True))
    for k in _TIMES:
        if args[k] is not None:
            args[k] = datetime.fromisoformat(args[k])
    return ObjectFacts(**args)


def _encode_decision(d: Decision) -> list[Any]:
    when = None if d.next_change_at is None else d.next_change_at.isoformat()
    return [d.tier, d.action, d.policy, d.rule, d.reason, when]


def _outcome(call: Any) -> list[Any] | str:
    """The decision a call returns, or the error it raises."""
    try:
        return _encode_decision(call())
    except ValueError as exc:
        return f"ValueError: {exc}"


def _observe(policies: PolicySet, facts: ObjectFacts, now: datetime, other: int) -> dict[str, Any]:
    """Everything the public functions say about one object."""
    policy = policies.tiering[other] if policies.tiering else None
    decision = _outcome(lambda: evaluate(policies, facts, now))
    quick = _outcome(lambda: evaluate(policies, facts, now, with_next_change=False))
    return {
        "matches": "".join("1" if matches(p.spec.selector, facts) else "0" for p in policies.tiering),
        "selected": getattr(select_policy(policies, facts), "name", None),
        "decision": decision,
        # Without next-change only next_change_at may differ; keep the fixture small.
        "quick": quick[5] if isinstance(quick, list) and quick[:5] == decision[:5] else quick,
        # The same object under a policy that may not select it reaches more of the ladder.
        "under_other": None if policy is None else _outcome(lambda: evaluate_policy(policy, facts, now)),
    }


def _record() -> None:
    cases = []
    for name, policies in policy_sets().items():
        rng = random.Random(f"evaluate-pinned/{name}")
        vocab = _Vocabulary(policies)
        for _ in range(CASES_PER_SET):
            args, now = _facts(rng, vocab, policies)
            other = rng.randrange(len(policies.tiering)) if policies.tiering else 0
            facts = ObjectFacts(**args)
            case = {"set": name, "facts": _encode_facts(facts), "now": now.isoformat(), "other": other}
            cases.append(case | _observe(policies, facts, now, other))
    FIXTURE.write_text("[\n" + ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases) + "\n]\n")
    print(f"recorded {len(cases)} cases in {FIXTURE}")


# -- the tests -----------------------------------------------------------------------------------


def _cases() -> Iterator[dict[str, Any]]:
    yield from json.loads(FIXTURE.read_text())


def test_fixture_covers_every_outcome() -> None:
    """The generated objects reach every action and the rare paths, or pinning them proves little."""
    decisions = [c["decision"] for c in _cases() if isinstance(c["decision"], list)]
    decisions += [c["under_other"] for c in _cases() if isinstance(c["under_other"], list)]
    assert {d[1] for d in decisions} == {"keep", "move", "expire", "hold"}
    reasons = " | ".join(d[4] for d in decisions)
    for fragment in (
        "minResidency",
        "restoreOnAccess)",
        "≥ promoteAbove",
        "< promoteAbove",
        "< demoteBelow",
        "≥ maxAge",
        "demoteAt",
        "archiveAt",
        "expireAt",
        "archiveAfter",
        "legal hold blocks",
        "legalHold blocks",
        "clock starts when",
        "newer version",
        "no tiering rules",
        "no TieringPolicy selects",
    ):
        assert fragment in reasons, fragment
    assert any(isinstance(c["decision"], str) for c in _cases())
    assert sum(d[5] is not None for d in decisions) > len(decisions) / 3


@pytest.mark.parametrize("name", list(policy_sets()))
def test_evaluation_matches_the_recorded_results(name: str) -> None:
    policies = policy_sets()[name]
    cases = [c for c in _cases() if c["set"] == name]
    assert len(cases) == CASES_PER_SET
    for case in cases:
        facts, now = _decode_facts(case["facts"]), datetime.fromisoformat(case["now"])
        observed = _observe(policies, facts, now, case["other"])
        expected = {k: case[k] for k in observed}
        assert observed == expected, (case["facts"], case["now"])


def test_decision_is_an_immutable_picklable_value() -> None:
    """Decisions cross process boundaries and land in sets: equality, hash, repr and pickle hold."""
    policies = policy_sets()["table"]
    now = datetime(2025, 3, 1, tzinfo=UTC)
    for case in [c for c in _cases() if c["set"] == "table"][:40]:
        facts = _decode_facts(case["facts"])
        try:
            decision = evaluate(policies, facts, now)
        except ValueError:
            continue
        twin = evaluate(policies, facts, now)
        built = Decision(*(getattr(decision, f) for f in _FIELDS))
        assert decision == twin == built and hash(decision) == hash(twin) == hash(built)
        assert decision != Decision(decision.tier, decision.action, decision.policy, decision.rule, "x", None)
        assert pickle.loads(pickle.dumps(decision)) == decision
        assert pickle.loads(pickle.dumps(twin)).reason == decision.reason
        assert (
            repr(decision)
            == repr(built)
            == ("Decision(" + ", ".join(f"{f}={getattr(decision, f)!r}" for f in _FIELDS) + ")")
        )
        with pytest.raises(FrozenInstanceError):
            decision.reason = "changed"  # type: ignore[misc]
        with pytest.raises(FrozenInstanceError):
            decision.tier = "hot"  # type: ignore[misc]


_FIELDS = ("tier", "action", "policy", "rule", "reason", "next_change_at")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python -m tests.policy.test_evaluate_pinned --record")
    _record()


@settings(max_examples=300, deadline=None)
@given(
    globs=st.lists(st.text(alphabet="ab-*?[]!^\\.", max_size=6), min_size=1, max_size=3),
    name=st.text(alphabet="ab-[]!^\\.\n", max_size=6),
)
def test_compiled_globs_match_as_fnmatch_does(globs: list[str], name: str) -> None:
    """Selectors compile their globs into one regex; it must agree with fnmatchcase, odd globs included."""
    selector = Selector.model_validate({"namespaces": globs, "contentTypes": globs[::-1]})
    facts = ObjectFacts(
        tenant="t", namespace=name, key="k", size=1, created_at=T, home_tier="hot", content_type=name
    )
    assert matches(selector, facts) == any(fnmatch.fnmatchcase(name, g) for g in globs)


def test_compiled_policies_do_not_outlive_their_policy_set() -> None:
    """Evaluation compiles each policy set once; a reloaded set must still be freed."""
    policies = load_policy_text(EDGES, "edges.yaml")
    selector = policies.tiering[0].spec.selector
    facts = ObjectFacts(tenant="solo", namespace="x", key="k", size=1, created_at=T, home_tier="hot")
    assert evaluate(policies, facts, T).policy == "single"
    assert not matches(selector, facts)
    refs: list[weakref.ref[Any]] = [weakref.ref(policies), weakref.ref(selector)]
    del policies, selector
    gc.collect()
    assert [ref() for ref in refs] == [None, None]


T = datetime(2031, 6, 1, tzinfo=UTC)
