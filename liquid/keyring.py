"""Keys for envelope encryption: master keys from the environment or a file, tenant data keys in the catalog.

Each tenant has data keys (random 256-bit AES keys), stored in ``tenant_data_keys`` wrapped
(AES-256-GCM) by a master key. The master keys never touch the catalog; they come from
``encryption.master_keys`` (``LIQUID_ENCRYPTION__MASTER_KEYS``) or the file
``encryption.master_keys_file`` (a mounted Kubernetes/compose secret), one key a line::

    # id   base64 of 32 random bytes (openssl rand -base64 32)
    k2     3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
    k1     AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=

The first key is the active one: new data keys are wrapped with it. Rotation:

1. Master key: put the new key first (keep the old one below it), roll the pods, run
   ``liquid keys rotate-master``: every data key is unwrapped with its old master key and
   wrapped again with the active one. Then remove the old key from the file. Objects are not
   rewritten; a catalog backup taken before the rewrap still needs the old master key.
2. A tenant's data key: ``liquid keys rotate --tenant T`` adds a new version; new objects use it,
   older objects keep naming (and using) the version they were written with.

Unwrapping fails with a :class:`~liquid.errors.KeyError_` that names the tenant, the data-key
version and the master key id, and says what to configure.

Master keys can also live in a KMS (``encryption.kms_keys``: :class:`liquid.kms.KmsKeyring`):
data keys are then wrapped by the KMS's Encrypt and unwrapped by its Decrypt, and the master key
never leaves it. Both sources can be configured at once (:class:`KeyringChain`, the KMS key
active): ``liquid keys rotate-master`` then moves every data key from the file's keys to KMS.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert

from liquid.catalog.models import TenantDataKey
from liquid.errors import ConfigError, KeyUnavailable

KEY_BYTES = 32
_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ITEM = re.compile(r"^([^\s:]+)\s*[\s:]\s*(\S+)$")


class WrongKey(Exception):
    """A master key that does not unwrap a data key; the message says why (never key bytes)."""


class MasterKeyring(Protocol):
    """Where master keys live: wraps and unwraps tenant data keys by master key id."""

    #: The master key new data keys are wrapped with.
    active_id: str

    def __contains__(self, key_id: object) -> bool: ...

    def wrap(self, key_id: str, key: bytes, context: bytes) -> bytes:
        """``key`` encrypted under master key ``key_id``, bound to ``context``."""
        ...

    def unwrap(self, key_id: str, wrapped: bytes, context: bytes) -> bytes:
        """The key :meth:`wrap` encrypted; :class:`WrongKey` if ``key_id`` or ``context`` does not match."""
        ...


class MasterKeys:
    """Master keys by id (from the environment or a file); the first is active.

    ``repr`` shows ids only, never key bytes.
    """

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        if not keys:
            raise ConfigError("envelope encryption needs at least one master key", field="encryption")
        for key_id, key in keys.items():
            if not _ID.match(key_id):
                raise ConfigError(
                    f"master key id {key_id!r} must be 1-64 of A-Z a-z 0-9 . _ -", field="encryption"
                )
            if len(key) != KEY_BYTES:
                raise ConfigError(
                    f"master key {key_id!r} is {len(key)} bytes, not {KEY_BYTES} (openssl rand -base64 32)",
                    field="encryption",
                )
        self._keys = dict(keys)
        self.active_id = next(iter(keys))

    def __repr__(self) -> str:
        return f"MasterKeys(active={self.active_id!r}, ids={list(self._keys)})"

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def aead(self, key_id: str) -> AESGCM:
        return AESGCM(self._keys[key_id])

    def wrap(self, key_id: str, key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self.aead(key_id).encrypt(nonce, key, context)

    def unwrap(self, key_id: str, wrapped: bytes, context: bytes) -> bytes:
        try:
            return self.aead(key_id).decrypt(wrapped[:12], wrapped[12:], context)
        except InvalidTag:
            raise WrongKey("the configured key under that id is not the one it was wrapped with") from None

    @classmethod
    def parse(cls, text: str, *, source: str) -> MasterKeys:
        """Keys from ``id base64`` lines (or ``id:base64`` items separated by commas); ``#`` starts a comment.

        >>> MasterKeys.parse("k1:" + "A" * 43 + "=", source="env").active_id
        'k1'
        """
        keys: dict[str, bytes] = {}
        items = [line.split("#", 1)[0].strip() for line in re.split(r"[\n,]", text)]
        for n, item in enumerate(filter(None, items), start=1):
            match = _ITEM.match(item)
            if match is None:
                # Never echo the item: it is (part of) a key.
                raise ConfigError(f"{source}: item {n} must be 'id base64key' ({len(item)} characters found)")
            key_id, encoded = match.groups()
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise ConfigError(f"{source}: master key {key_id!r} is not valid base64") from None
            if key_id in keys:
                raise ConfigError(f"{source}: master key id {key_id!r} appears twice")
            keys[key_id] = key
        return cls(keys)

    @classmethod
    def load(cls, inline: str | None, path: Path | None) -> MasterKeys:
        """From ``encryption.master_keys`` or ``encryption.master_keys_file`` (exactly one)."""
        if (inline is None) == (path is None):
            raise ConfigError(
                "envelope encryption needs exactly one of encryption.master_keys "
                "(LIQUID_ENCRYPTION__MASTER_KEYS) and encryption.master_keys_file",
                field="encryption",
            )
        if path is not None:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read encryption.master_keys_file {str(path)!r}: {exc.strerror}",
                    field="encryption",
                ) from None
            return cls.parse(text, source=str(path))
        assert inline is not None
        return cls.parse(inline, source="encryption.master_keys")


class KeyringChain:
    """Several keyrings as one (a KMS and a key file during a move to KMS); the first one's key is active."""

    def __init__(self, rings: Sequence[MasterKeyring]) -> None:
        if not rings:
            raise ConfigError("envelope encryption needs at least one master key", field="encryption")
        self.rings = list(rings)
        self.active_id = self.rings[0].active_id

    def __repr__(self) -> str:
        return f"KeyringChain({self.rings!r})"

    def __contains__(self, key_id: object) -> bool:
        return any(key_id in r for r in self.rings)

    def _ring(self, key_id: str) -> MasterKeyring:
        return next(r for r in self.rings if key_id in r)

    def wrap(self, key_id: str, key: bytes, context: bytes) -> bytes:
        return self._ring(key_id).wrap(key_id, key, context)

    def unwrap(self, key_id: str, wrapped: bytes, context: bytes) -> bytes:
        return self._ring(key_id).unwrap(key_id, wrapped, context)


def _aad(tenant: str, version: int) -> bytes:
    # Binds a wrapped key to its row: a wrapped key copied to another tenant or version fails.
    return f"liquid-dek/{tenant}/{version}".encode()


class DataKeys:
    """Tenant data keys, created on first use and cached unwrapped in this process."""

    def __init__(self, engine: Engine, masters: MasterKeyring) -> None:
        self.engine = engine
        self.masters = masters
        self._cache: dict[tuple[str, int], bytes] = {}
        self._active: dict[str, int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DataKeys({self.masters!r}, cached={len(self._cache)})"

    def active(self, tenant: str) -> tuple[int, bytes]:
        """The version and key new objects of ``tenant`` are encrypted with (made on first use)."""
        version = self._active.get(tenant)
        if version is None:
            with self.engine.connect() as conn:
                version = conn.execute(
                    select(func.max(TenantDataKey.version)).where(TenantDataKey.tenant_id == tenant)
                ).scalar()
            if version is None:
                version = self._create(tenant, 1)
            self._active[tenant] = version
        return version, self.get(tenant, version)

    def get(self, tenant: str, version: int) -> bytes:
        """The data key ``version`` of ``tenant``, unwrapped."""
        cached = self._cache.get((tenant, version))
        if cached is not None:
            return cached
        with self.engine.connect() as conn:
            row = conn.execute(
                select(TenantDataKey.master_key_id, TenantDataKey.wrapped).where(
                    TenantDataKey.tenant_id == tenant, TenantDataKey.version == version
                )
            ).first()
        if row is None:
            raise KeyUnavailable(
                f"tenant {tenant!r} has no data key version {version} in the catalog; the object was "
                "encrypted with a key this catalog does not hold (restored from an older backup?)",
                field="encryption",
            )
        key = self._unwrap(tenant, version, row.master_key_id, row.wrapped)
        with self._lock:
            self._cache[(tenant, version)] = key
        return key

    def _unwrap(self, tenant: str, version: int, master_id: str, wrapped: bytes) -> bytes:
        if master_id not in self.masters:
            raise KeyUnavailable(
                f"data key v{version} of tenant {tenant!r} is wrapped by master key {master_id!r}, which is "
                f"not configured (have {self.masters!r}); add it back to encryption.master_keys(_file)",
                field="encryption",
            )
        try:
            return self.masters.unwrap(master_id, wrapped, _aad(tenant, version))
        except WrongKey as exc:
            raise KeyUnavailable(
                f"master key {master_id!r} does not unwrap data key v{version} of tenant {tenant!r}: {exc}",
                field="encryption",
            ) from None

    def _wrap(self, tenant: str, version: int, key: bytes) -> bytes:
        return self.masters.wrap(self.masters.active_id, key, _aad(tenant, version))

    def _create(self, tenant: str, version: int) -> int:
        key = AESGCM.generate_key(bit_length=256)
        stmt = (
            insert(TenantDataKey)
            .values(
                tenant_id=tenant,
                version=version,
                master_key_id=self.masters.active_id,
                wrapped=self._wrap(tenant, version, key),
            )
            .on_conflict_do_nothing()
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)
        # Another process may have won the race: use whatever the row now holds.
        return version

    def rotate(self, tenant: str) -> int:
        """Add a new data key version for ``tenant``; new objects use it from now on (in every process
        after they next start, or at once in this one)."""
        with self.engine.connect() as conn:
            newest = conn.execute(
                select(func.max(TenantDataKey.version)).where(TenantDataKey.tenant_id == tenant)
            ).scalar()
        version = self._create(tenant, (newest or 0) + 1)
        self._active[tenant] = version
        return version

    def rotate_master(self, *, tenant: str | None = None) -> tuple[int, list[str]]:
        """Rewrap every data key (of ``tenant``, or all) not wrapped by the active master key.

        Returns how many were rewrapped and, for the ones that could not be unwrapped, why; those
        rows keep their old wrapping (fix the key file and run it again).
        """
        done, failed = 0, []
        active = self.masters.active_id
        query = select(
            TenantDataKey.tenant_id, TenantDataKey.version, TenantDataKey.master_key_id, TenantDataKey.wrapped
        ).where(TenantDataKey.master_key_id != active)
        if tenant is not None:
            query = query.where(TenantDataKey.tenant_id == tenant)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            try:
                key = self._unwrap(row.tenant_id, row.version, row.master_key_id, row.wrapped)
            except KeyUnavailable as exc:
                failed.append(exc.detail)
                continue
            with self.engine.begin() as conn:
                # Compare-and-set on the old wrapping: a concurrent rotation wins cleanly.
                conn.execute(
                    update(TenantDataKey)
                    .where(
                        TenantDataKey.tenant_id == row.tenant_id,
                        TenantDataKey.version == row.version,
                        TenantDataKey.wrapped == row.wrapped,
                    )
                    .values(master_key_id=active, wrapped=self._wrap(row.tenant_id, row.version, key))
                )
            done += 1
        return done, failed

    def count_by_master(self, *, tenant: str | None = None) -> dict[str, int]:
        """How many data keys each master key wraps (to know when an old master key can go)."""
        query = select(TenantDataKey.master_key_id, func.count()).group_by(TenantDataKey.master_key_id)
        if tenant is not None:
            query = query.where(TenantDataKey.tenant_id == tenant)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return {r[0]: int(r[1]) for r in rows}
