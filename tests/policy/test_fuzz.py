"""Fuzzing: whatever the YAML, loading raises PolicyError (with located problems) or succeeds."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liquid.errors import PolicyError
from liquid.policy import PolicyValidationError, load_policy_text

EXAMPLES = Path(__file__).resolve().parents[2] / "policies"
SEEDS: list[dict[str, Any]] = [
    doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc
]
FIELD_NAMES = [
    "apiVersion", "kind", "metadata", "name", "spec", "rules", "tier", "selector", "tags", "demoteAfter",
    "promoteAbove", "maxBytes", "tiers", "hot", "cold", "tenant", "expireAfter", "legalHold", "minSize",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        ["30d", "-1GiB", "2GiB", "10/h", "hot", "lukewarm", "liquid/v1", "TieringPolicy", "1e999"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load(text: str) -> None:
    try:
        load_policy_text(text, "fuzz.yaml")
    except PolicyValidationError as exc:
        assert exc.problems, "a PolicyError must carry its problems"
        for problem in exc.problems:
            assert problem.file == "fuzz.yaml" and problem.message
            str(problem)
    except PolicyError:
        raise AssertionError("the loader raises PolicyValidationError, not a bare PolicyError") from None


def _mutate(doc: Any, path: list[Any], value: Any, delete: bool) -> Any:
    doc = copy.deepcopy(doc)
    node = doc
    for step in path[:-1]:
        node = node[step]
    if delete and isinstance(node, dict):
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return doc


def _paths(doc: Any, prefix: list[Any] | None = None) -> list[list[Any]]:
    prefix = prefix or []
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, [*prefix, k])
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, [*prefix, i])
    return out


@fuzz
@given(st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    _load(text)


@fuzz
@given(st.lists(values, min_size=1, max_size=3))
def test_arbitrary_documents(docs: list[Any]) -> None:
    _load(yaml.safe_dump_all(docs))


@fuzz
@given(st.data())
def test_mutated_examples(data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(SEEDS))
    paths = _paths(seed)
    path = data.draw(st.sampled_from(paths))
    value = data.draw(values)
    doc = _mutate(seed, path, value, data.draw(st.booleans()))
    _load(yaml.safe_dump(doc, sort_keys=False))


@fuzz
@given(st.data())
def test_mangled_example_text(data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(sorted(EXAMPLES.glob("*.yaml")))).read_text()
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 40)))
    _load(text[:start] + data.draw(st.text(max_size=10)) + text[end:])
