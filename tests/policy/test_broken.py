"""The corpus of broken policy files: each gives exactly the located messages it lists.

Every ``broken/*.yaml`` ends with ``# expect: <message>`` lines (comments, so they do
not move the lines above). Regenerating them by hand is deliberate: a changed message
should be a reviewed change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from liquid.errors import PolicyError
from liquid.policy import PolicyValidationError, load_policies, load_policy_text

BROKEN = Path(__file__).parent / "broken"
CASES = sorted(BROKEN.glob("*.yaml"))


def _expected(path: Path) -> list[str]:
    return [
        line.removeprefix("# expect: ")
        for line in path.read_text().splitlines()
        if line.startswith("# expect: ")
    ]


def _messages(path: Path) -> list[str]:
    try:
        policies = load_policy_text(path.read_text(), path.name)
    except PolicyValidationError as exc:
        return [str(p) for p in exc.problems]
    return [str(p) for p in (*policies.notes, *policies.warnings)]


def test_the_corpus_covers_the_issue() -> None:
    names = {p.stem for p in CASES}
    assert {"bad-indentation", "wrong-types", "unknown-keys", "negative-sizes", "bad-durations"} <= names
    assert {"impossible-budget", "unsatisfiable-budget"} <= names


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_broken_file_gives_expected_located_messages(path: Path) -> None:
    expected = _expected(path)
    assert expected, f"{path.name} lists no '# expect:' lines"
    assert _messages(path) == expected


@pytest.mark.parametrize("path", [p for p in CASES if p.stem != "unsatisfiable-budget"], ids=lambda p: p.stem)
def test_broken_file_raises_one_policy_error_with_every_problem(path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policies([path])
    assert isinstance(info.value, PolicyValidationError)
    errors = [p for p in info.value.problems if p.severity == "error"]
    assert errors and all(p.file == str(path) and p.line is not None for p in errors)
    # The exception text is the full located list, never a pydantic dump.
    assert "validation error" not in str(info.value).lower()
    assert "pydantic" not in str(info.value).lower()
    assert str(info.value).count("\n") == len(errors)


def test_every_problem_names_a_field_path_or_is_a_syntax_error() -> None:
    for path in CASES:
        for message in _messages(path):
            location, _, rest = message.partition(": ")
            assert location.count(":") == 2, message
            assert rest.startswith(
                ("spec", "metadata", "kind", "apiVersion", "YAML syntax", "a policy", "warning")
            )
