"""Bounds on values that reach the catalog, checked where input enters (API, client, CLI, service).

PostgreSQL and Python disagree on what fits: a ``timestamptz`` reaches year 294276 but a
Python ``datetime`` stops at 9999, and the catalog's version columns are 32-bit. A value
past either limit used to be stored and then break every read of its namespace, so each
is refused up front with an :class:`~liquid.errors.InvalidInput` naming the field.

Examples:
    >>> check_version_number(2**31)
    Traceback (most recent call last):
    ...
    liquid.errors.InvalidInput: version must be at most 2147483647, got 2147483648
    >>> check_header_text("text/plain; charset=utf-8", "content_type")
    'text/plain; charset=utf-8'
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from liquid.errors import InvalidInput

#: Versions are ``int`` (32-bit) columns in the catalog.
MAX_VERSION = 2**31 - 1
#: Instants Liquid stores lie in [MIN_INSTANT, MAX_INSTANT) (UTC): both ends convert to and from
#: PostgreSQL and Python, whatever offset they are written with.
MIN_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
MAX_INSTANT = datetime(9999, 1, 1, tzinfo=UTC)


def check_version_number(version: int, field: str = "version") -> int:
    """A positive version that fits the catalog's 32-bit column."""
    if version < 1:
        raise InvalidInput(f"{field} must be a positive integer, got {version}", field=field)
    if version > MAX_VERSION:
        raise InvalidInput(f"{field} must be at most {MAX_VERSION}, got {version}", field=field)
    return version


def check_instant(value: datetime, field: str) -> datetime:
    """A timezone-aware instant within [MIN_INSTANT, MAX_INSTANT), returned in UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{field} needs a UTC offset, got {value.isoformat()!r}", field=field)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not MIN_INSTANT <= utc < MAX_INSTANT:
        raise InvalidInput(
            f"{field} {value.isoformat()!r} is outside the supported range "
            f"{MIN_INSTANT.isoformat()} .. {MAX_INSTANT.isoformat()}",
            field=field,
        )
    return utc


def expiry_from_ttl(now: datetime, seconds: float, field: str = "ttl") -> datetime:
    """``now + seconds`` for a retention, refusing non-positive, non-finite or too long ones."""
    if not seconds > 0:  # NaN included
        raise InvalidInput(f"{field} must be positive, got {seconds!r}", field=field)
    if seconds >= (MAX_INSTANT - now).total_seconds():
        raise InvalidInput(
            f"{field} of {seconds:g} seconds ends past {MAX_INSTANT.date().isoformat()}; use a shorter one",
            field=field,
        )
    return now + timedelta(seconds=seconds)


def check_header_text(value: str, field: str, *, limit: int = 255) -> str:
    """Printable ASCII of 1..limit characters: what can be stored and sent back in an HTTP header.

    Content types are echoed in ``Content-Type``; a control character or non-ASCII text there
    makes the object unreadable over HTTP (the server cannot write the header).
    """
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidInput(f"{field} must be 1-{limit} characters, got {value!r}", field=field)
    bad = next((c for c in value if not " " <= c <= "~"), None)
    if bad is not None:
        raise InvalidInput(
            f"{field} {value!r} contains U+{ord(bad):04X}; only printable ASCII is allowed", field=field
        )
    return value


def check_text(value: str | None, name: str, limit: int = 256) -> None:
    """A stored id or label (classification, trace, correlation and execution ids): None, or 1 to
    ``limit`` characters with no control character (C0, DEL or C1), else InvalidInput naming it.

    >>> check_text("run-7", "trace_id")
    >>> check_text("a\x85b", "trace_id")
    Traceback (most recent call last):
    ...
    liquid.errors.InvalidInput: trace_id must be 1-256 printable characters, got 'a\x85b'
    """
    if value is None:
        return
    if (
        not isinstance(value, str)
        or not value
        or len(value) > limit
        or any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)
    ):
        raise InvalidInput(f"{name} must be 1-{limit} printable characters, got {value!r}", field=name)


#: Retention scopes a put may name (the policy clock each starts; see the service's put).
SCOPES = ("step", "execution", "workflow", "permanent")


def check_tags(tags: Mapping[Any, Any] | None) -> dict[str, str]:
    """The tags as a dict of text, or InvalidInput (field ``tags``): keys 1-128 and values 0-256
    characters, no NUL, valid Unicode (a lone surrogate cannot be stored or sent).

    >>> check_tags({"team": "red"})
    {'team': 'red'}
    >>> check_tags({"n": 1})
    Traceback (most recent call last):
    ...
    liquid.errors.InvalidInput: tag 'n'=1: keys 1-128 and values 0-256 characters
    """
    tag_map = dict(tags or {})
    for k, v in tag_map.items():
        if (
            not isinstance(k, str)
            or not isinstance(v, str)
            or not k
            or len(k) > 128
            or len(v) > 256
            or "\x00" in k + v
        ):
            raise InvalidInput(f"tag {k!r}={v!r}: keys 1-128 and values 0-256 characters", field="tags")
        try:
            (k + v).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"tag {k!r}={v!r} is not valid Unicode text", field="tags") from None
    return tag_map
