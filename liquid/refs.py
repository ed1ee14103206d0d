"""ResultRef: the name of one immutable object version, ``liquid://tenant/namespace/key@version``.

Tenants and namespaces are slugs (lowercase letters, digits, ``-``, ``_`` and ``.``;
1-63 characters, starting with a letter or digit). Keys are any Unicode text of at
most 1024 UTF-8 bytes without control characters, backslashes, a leading ``/``, or
empty, ``.`` and ``..`` segments; in the URI form they are percent-encoded (``/``
kept) so that ``@``, ``?``, ``#``, ``%`` and spaces in keys are unambiguous. Versions
are positive integers assigned by the catalog (at most 2**31 - 1, the catalog column's
range), one sequence per (tenant, namespace, key).

Examples:
    >>> ref = ResultRef.parse("liquid://acme/results/run-7/out.json@3")
    >>> ref.tenant, ref.namespace, ref.key, ref.version
    ('acme', 'results', 'run-7/out.json', 3)
    >>> str(ResultRef("acme", "docs", "résumé 2026.pdf", 1))
    'liquid://acme/docs/r%C3%A9sum%C3%A9%202026.pdf@1'
    >>> ResultRef.parse("liquid://acme/docs/no-version")
    Traceback (most recent call last):
    ...
    liquid.errors.InvalidRef: ref 'liquid://acme/docs/no-version' has no '@<version>' suffix; expected liquid://tenant/namespace/key@version
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from liquid.errors import InvalidInput, InvalidRef
from liquid.limits import MAX_VERSION, check_version_number

SCHEME = "liquid://"
MAX_KEY_BYTES = 1024
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_FORM = "expected liquid://tenant/namespace/key@version"


def check_slug(value: object, what: str) -> str:
    """Return a valid tenant or namespace name, else raise InvalidInput naming ``what``."""
    if not isinstance(value, str) or not _SLUG.match(value):
        raise InvalidInput(
            f"{what} {value!r} is not a valid name: use 1-63 lowercase letters, digits, '-', '_' or '.', "
            "starting with a letter or digit",
            field=what,
        )
    return value


#: ``PUT /v1/objects/{ns}/{key}/vectors`` attaches embeddings to ``key``: no object is stored
#: under a key with this ending (:func:`check_new_key`), so the path always means that.
VECTORS_SUFFIX = "/vectors"


def reserved_key_message(key: str) -> str:
    base = key.removesuffix(VECTORS_SUFFIX)
    return (
        f"key {key!r} ends in {VECTORS_SUFFIX!r}, which no object may: "
        f"PUT /v1/objects/<namespace>/{base}{VECTORS_SUFFIX} attaches embeddings to {base!r}"
    )


def check_new_key(key: object) -> str:
    """:func:`check_key` for a key being written: also refuses a key ending in ``/vectors``.

    >>> check_new_key("model/vectors")
    Traceback (most recent call last):
    ...
    liquid.errors.InvalidInput: key 'model/vectors' ends in '/vectors', which no object may: \
PUT /v1/objects/<namespace>/model/vectors attaches embeddings to 'model'
    """
    checked = check_key(key)
    if checked.endswith(VECTORS_SUFFIX):
        raise InvalidInput(reserved_key_message(checked), field="key")
    return checked


def check_key(key: object) -> str:
    """Return a valid object key, else raise InvalidInput saying what is wrong.

    >>> check_key("reports/2026/q3.parquet")
    'reports/2026/q3.parquet'
    >>> check_key("a/../b")
    Traceback (most recent call last):
    ...
    liquid.errors.InvalidInput: key 'a/../b' has a '..' segment (keys are relative paths)
    """
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"key must be a non-empty string, got {key!r}", field="key")
    try:
        n = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput(f"key {key!r} is not valid Unicode text", field="key") from None
    if n > MAX_KEY_BYTES:
        raise InvalidInput(f"key is {n} bytes of UTF-8; the limit is {MAX_KEY_BYTES}", field="key")
    bad = next((c for c in key if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise InvalidInput(f"key {key!r} contains control character U+{ord(bad):04X}", field="key")
    if "\\" in key:
        raise InvalidInput(f"key {key!r} contains a backslash; use '/' to separate parts", field="key")
    if key.startswith("/"):
        raise InvalidInput(f"key {key!r} starts with '/'; keys are relative", field="key")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            what = f"a {segment!r}" if segment else "an empty"
            raise InvalidInput(
                f"key {key!r} has {what} segment (keys are relative paths)",
                field="key",
            )
    return key


def check_version(version: object) -> int:
    """Return a valid version number (a positive int of at most 32 bits), else raise InvalidInput."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidInput(f"version must be a positive integer, got {version!r}", field="version")
    return check_version_number(version)


def format_uri(tenant: str, namespace: str, key: str, version: int) -> str:
    """The URI form of already-valid parts, without checking them again (see :class:`ResultRef`)."""
    return f"{SCHEME}{tenant}/{namespace}/{quote(key, safe='/')}@{version}"


@dataclass(frozen=True, slots=True)
class IpcHint:
    """Where a same-node shared-memory copy may be found; advisory only."""

    node: str
    path: str
    expires_at: datetime
    #: SHA-256 (hex) of the file's bytes; None for hints made before checksums were carried.
    checksum: str | None = None

    def to_json(self) -> dict[str, str]:
        out = {"node": self.node, "path": self.path, "expires_at": self.expires_at.isoformat()}
        if self.checksum is not None:
            out["checksum"] = self.checksum
        return out


@dataclass(frozen=True, slots=True)
class ResultRef:
    """An immutable object version. Construction validates every part."""

    tenant: str
    namespace: str
    key: str
    version: int
    #: The URI form, made once: every read names its version by it (hot keys, headers, JSON).
    _uri: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_slug(self.tenant, "tenant")
        check_slug(self.namespace, "namespace")
        check_key(self.key)
        check_version(self.version)
        object.__setattr__(self, "_uri", format_uri(self.tenant, self.namespace, self.key, self.version))

    @classmethod
    def known(cls, tenant: str, namespace: str, key: str, version: int) -> ResultRef:
        """A ref read back from the catalog, not checked again: its parts were checked when it was written.

        For hot paths that turn many catalog rows into refs (a search's hits); never for input.
        """
        ref = object.__new__(cls)
        object.__setattr__(ref, "tenant", tenant)
        object.__setattr__(ref, "namespace", namespace)
        object.__setattr__(ref, "key", key)
        object.__setattr__(ref, "version", version)
        object.__setattr__(ref, "_uri", format_uri(tenant, namespace, key, version))
        return ref

    @property
    def uri(self) -> str:
        return self._uri

    def __hash__(self) -> int:
        # The URI names the version one-to-one, and a str caches its hash: refs key many dicts
        # on the read path (copies, counts, facts), where hashing four fields each time showed.
        return hash(self._uri)

    def __str__(self) -> str:
        return self.uri

    @classmethod
    def parse(cls, text: object) -> ResultRef:
        """Parse the URI form; every malformed input raises InvalidRef saying what is wrong."""
        if not isinstance(text, str):
            raise InvalidRef(f"ref must be a string, got {type(text).__name__}; {_FORM}", field="ref")
        if not text.startswith(SCHEME):
            raise InvalidRef(f"ref {text!r} does not start with {SCHEME!r}; {_FORM}", field="ref")
        body = text[len(SCHEME) :]
        parts = body.split("/", 2)
        if len(parts) < 3 or not parts[2]:
            raise InvalidRef(f"ref {text!r} lacks a tenant, namespace or key; {_FORM}", field="ref")
        tenant, namespace, rest = parts
        if "@" not in rest:
            raise InvalidRef(f"ref {text!r} has no '@<version>' suffix; {_FORM}", field="ref")
        quoted_key, _, version_text = rest.rpartition("@")
        if (
            not version_text.isascii()
            or not version_text.isdigit()
            or version_text.startswith("0")
            or len(version_text) > len(str(MAX_VERSION))
        ):
            raise InvalidRef(
                f"ref {text!r} has version {version_text[:20]!r}; versions are positive integers"
                f" up to {MAX_VERSION}",
                field="ref",
            )
        try:
            key = unquote(quoted_key, errors="strict")
        except UnicodeDecodeError:
            raise InvalidRef(
                f"ref {text!r} has a key that is not valid percent-encoded UTF-8", field="ref"
            ) from None
        try:
            return cls(tenant, namespace, key, int(version_text))
        except InvalidInput as exc:
            raise InvalidRef(f"ref {text!r}: {exc.detail}", field="ref") from None


def ref_json(
    ref: ResultRef,
    size: int,
    sha256: str,
    content_type: str,
    inline: bytes | memoryview | None = None,
    ipc: IpcHint | None = None,
) -> dict[str, Any]:
    """The JSON form of a ref (:meth:`RefInfo.to_json`), without making a RefInfo (a batch makes many)."""
    out: dict[str, Any] = {"uri": ref.uri, "size": size, "sha256": sha256, "content_type": content_type}
    if inline is not None:
        # b64encode is this call wrapped (and a batch resolve makes thousands)
        out["inline"] = binascii.b2a_base64(inline, newline=False).decode("ascii")
    if ipc is not None:
        out["ipc"] = ipc.to_json()
    return out


@dataclass(frozen=True, slots=True)
class RefInfo:
    """A ref with what a reader needs to fetch and check it: the JSON form of DESIGN.md."""

    ref: ResultRef
    size: int
    sha256: str
    content_type: str
    inline: bytes | None = None
    ipc: IpcHint | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return self.ref.uri

    def to_json(self) -> dict[str, Any]:
        out = ref_json(self.ref, self.size, self.sha256, self.content_type, self.inline, self.ipc)
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, data: object) -> RefInfo:
        """Validate the JSON form; raises InvalidRef naming the field at fault."""
        if not isinstance(data, dict):
            raise InvalidRef(f"ref JSON must be an object, got {type(data).__name__}", field="ref")
        ref = ResultRef.parse(data.get("uri"))
        size = data.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidRef(f"size must be a non-negative integer, got {size!r}", field="size")
        sha = data.get("sha256")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise InvalidRef(f"sha256 must be 64 lowercase hex digits, got {sha!r}", field="sha256")
        ctype = data.get("content_type", "application/octet-stream")
        if not isinstance(ctype, str) or not ctype:
            raise InvalidRef(f"content_type must be a non-empty string, got {ctype!r}", field="content_type")
        inline: bytes | None = None
        if data.get("inline") is not None:
            try:
                inline = base64.b64decode(data["inline"], validate=True)
            except (ValueError, TypeError):
                raise InvalidRef("inline is not valid base64", field="inline") from None
            if len(inline) != size:
                raise InvalidRef(f"inline holds {len(inline)} bytes but size says {size}", field="inline")
        ipc: IpcHint | None = None
        raw_ipc = data.get("ipc")
        if raw_ipc is not None:
            try:
                checksum = raw_ipc.get("checksum")
                ipc = IpcHint(
                    node=str(raw_ipc["node"]),
                    path=str(raw_ipc["path"]),
                    expires_at=datetime.fromisoformat(str(raw_ipc["expires_at"])),
                    checksum=None if checksum is None else str(checksum),
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                raise InvalidRef("ipc must have node, path and an ISO expires_at", field="ipc") from None
        return cls(ref=ref, size=size, sha256=sha, content_type=ctype, inline=inline, ipc=ipc)
