"""Human units for sizes (``4KiB``, ``2GiB``, ``1.5MB``) and durations (``30d``, ``12h``, ``90s``).

Examples:
    >>> parse_size("4KiB")
    4096
    >>> parse_size(512)
    512
    >>> parse_duration("1h30m")
    5400.0
    >>> format_size(5 * 1024**3)
    '5GiB'
"""

from __future__ import annotations

import math
import re

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_size(value: int | str) -> int:
    """Bytes from an int or a string like ``"64KiB"``; raises ValueError saying what is allowed."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 4096 or '4KiB', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return value
    m = _SIZE_RE.match(str(value))
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(
            f"expected a size like 4096, '64KiB', '2GiB' or '1.5GB', got {value!r} "
            f"(units: {', '.join(u for u in _SIZE_UNITS if u)})"
        )
    number, unit = float(m.group(1)), m.group(2).lower()
    return int(number * _SIZE_UNITS[unit])


def parse_duration(value: int | float | str) -> float:
    """Seconds from a number or a string like ``"30d"``, ``"12h"``, ``"1h30m"``, ``"250ms"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30 or '12h', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value}")
        return float(value)
    text = str(value).strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(
            f"expected a duration like '90s', '15m', '12h', '30d', '2w' or '1h30m', got {value!r}"
        )
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def format_size(n: int) -> str:
    """The shortest exact binary-unit form, else one decimal: ``4096 → '4KiB'``, ``1500 → '1.5KiB'``."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            return f"{n // factor}{unit}" if n % factor == 0 else f"{n / factor:.1f}{unit}"
    return f"{n}B"


def format_money(amount: float, currency: str = "USD") -> str:
    """Money with its currency and the precision people read: cents from one unit up, else digits
    down to the first two significant ones (storage of a few KiB costs fractions of a cent).

    >>> format_money(1234.5), format_money(0.5), format_money(0.000123, "EUR"), format_money(0)
    ('1,234.50 USD', '0.50 USD', '0.00012 EUR', '0.00 USD')
    """
    a = abs(amount)
    if a >= 0.01 or a == 0:
        text = f"{amount:,.2f}"
    else:
        # Two significant digits, written out (no exponent), at most 8 decimals.
        decimals = min(8, 1 - math.floor(math.log10(a)))
        text = f"{amount:.{decimals}f}"
    return f"{text} {currency}"
