"""Redaction of text payloads before they are stored: one Protocol, a pattern-based default.

With ``redaction.enabled``, every object whose content type matches ``redaction.content_types``
(``text/*`` and JSON by default) is decoded as UTF-8, passed through the redactor, and stored
redacted: its size and SHA-256 are those of the redacted bytes, and no tier ever holds the
original. The default :class:`PatternRedactor` masks e-mail addresses and credential-looking
tokens; ``redaction.hook: "package.module:factory"`` names a callable taking the settings and
returning any :class:`Redactor`.

>>> PatternRedactor().redact("mail ops@example.com, password=hunter2, key AKIAABCDEFGHIJKLMNOP")
'mail [email], password=[redacted], key [aws-key]'
"""

from __future__ import annotations

import fnmatch
import importlib
import re
from collections.abc import Callable
from typing import Any, Protocol, cast

from liquid.config import Settings
from liquid.errors import ConfigError, InvalidInput, TooLarge


class Redactor(Protocol):
    """Turns text into the text that may be stored."""

    def redact(self, text: str) -> str: ...


#: (pattern, replacement) in order; the labelled-secret rule keeps its label and masks the value.
DEFAULT_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "[email]"),
    (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "[aws-key]"),
    (r"\bgh[pousr]_[A-Za-z0-9]{30,}\b", "[github-token]"),
    (r"\bxox[abpors]-[A-Za-z0-9-]{10,}\b", "[slack-token]"),
    (r"\bsk-[A-Za-z0-9_-]{20,}\b", "[api-key]"),
    (r"\blq_[A-Za-z0-9_-]{16,}\b", "[liquid-key]"),
    (r"(?i)\bBearer\s+[A-Za-z0-9._~+/=-]{16,}", "Bearer [redacted]"),
    (r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----", "[private-key]"),
    (
        r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret)"
        r"(\s*[:=]\s*|\"\s*:\s*\")([^\s\"',;]+)",
        r"\1\2[redacted]",
    ),
)


class PatternRedactor:
    """Regular-expression replacements applied in order (:data:`DEFAULT_PATTERNS` by default)."""

    def __init__(self, patterns: tuple[tuple[str, str], ...] = DEFAULT_PATTERNS) -> None:
        self.patterns = [(re.compile(p), r) for p, r in patterns]

    def __repr__(self) -> str:
        return f"PatternRedactor({len(self.patterns)} patterns)"

    def redact(self, text: str) -> str:
        for pattern, replacement in self.patterns:
            text = pattern.sub(replacement, text)
        return text


class PayloadRedaction:
    """Applies a :class:`Redactor` to the text payloads the settings name."""

    def __init__(self, redactor: Redactor, *, content_types: list[str], max_size: int) -> None:
        self.redactor = redactor
        self.content_types = [c.lower() for c in content_types]
        self.max_size = max_size

    def __repr__(self) -> str:
        return f"PayloadRedaction({self.redactor!r}, types={self.content_types})"

    def applies(self, content_type: str) -> bool:
        base = content_type.split(";", 1)[0].strip().lower()
        return any(fnmatch.fnmatchcase(base, pattern) for pattern in self.content_types)

    def apply(self, chunks: Any) -> bytes:
        """The redacted UTF-8 bytes of a whole payload (read into memory, at most ``max_size``)."""
        data = bytearray()
        for chunk in chunks:
            data += chunk
            if len(data) > self.max_size:
                raise TooLarge(
                    f"text is redacted in memory: at most {self.max_size} bytes (redaction.max_size)",
                    field="body",
                )
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"a text payload must be UTF-8 to be redacted: invalid byte at offset {exc.start}",
                field="body",
            ) from None
        return self.redactor.redact(text).encode("utf-8")

    @classmethod
    def from_settings(cls, settings: Settings) -> PayloadRedaction | None:
        r = settings.redaction
        if not r.enabled:
            return None
        redactor: Redactor = PatternRedactor()
        if r.hook:
            module_name, _, attr = r.hook.partition(":")
            try:
                factory = cast(
                    Callable[[Settings], Redactor], getattr(importlib.import_module(module_name), attr)
                )
            except (ImportError, AttributeError, ValueError) as exc:
                raise ConfigError(
                    f"redaction.hook {r.hook!r} cannot be loaded ({exc}); write package.module:factory",
                    field="redaction.hook",
                ) from None
            redactor = factory(settings)
        return cls(redactor, content_types=r.content_types, max_size=r.max_size)
