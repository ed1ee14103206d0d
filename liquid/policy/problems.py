"""Located findings about policy files: errors, warnings and notes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from liquid.errors import PolicyError

Severity = Literal["error", "warning", "note"]


def format_path(path: Sequence[str | int]) -> str:
    """``('spec', 'rules', 0, 'demoteAfter') → 'spec.rules[0].demoteAfter'``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


@dataclass(frozen=True)
class Problem:
    """One finding, printed as ``file:line:column: path: message; allowed: what is allowed``.

    Warnings and notes carry their severity after the location:
    ``file:line:column: warning: path: message``.
    """

    file: str
    line: int | None
    column: int | None
    path: str
    message: str
    allowed: str = ""
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}:{self.column if self.column is not None else 1}"
        parts = [where]
        if self.severity != "error":
            parts.append(self.severity)
        if self.path:
            parts.append(self.path)
        text = ": ".join(parts) + ": " + self.message
        if self.allowed:
            text += f"; allowed: {self.allowed}"
        return text


class PolicyValidationError(PolicyError):
    """Policy files with errors; ``problems`` lists every one, located (file:line:column + field path)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        count = f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
        detail = f"invalid policy ({count}):\n" + "\n".join(str(p) for p in errors)
        first = errors[0] if errors else None
        super().__init__(detail, field=first.path if first else None)

    def __reduce__(self) -> tuple[type[PolicyValidationError], tuple[list[Problem]]]:
        # Rebuilt from its problems, so it crosses process boundaries (process pools) intact.
        return (type(self), (self.problems,))
